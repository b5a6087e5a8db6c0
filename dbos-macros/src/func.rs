//! The annotated function, as both macros see it: parsed with a fallback that keeps a body
//! syn cannot parse as raw tokens, and its parameters classified.

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{
    Attribute, Block, FnArg, Pat, PatType, Receiver, ReturnType, Signature, Type, Visibility,
};

use crate::determinism;
use crate::error::Failure;

/// An annotated function.
#[derive(Debug)]
pub(crate) struct AnnotatedFn {
    /// Outer attributes, doc comments included.
    pub(crate) attrs: Vec<Attribute>,
    /// Visibility.
    pub(crate) vis: Visibility,
    /// The signature as written.
    pub(crate) sig: Signature,
    /// The body, as a `{ .. }` group of tokens, exactly as written.
    pub(crate) body: TokenStream,
    /// The body parsed, when syn could parse it. When it could not (a syntax error, or syntax
    /// newer than syn), the body is emitted as tokens and the compiler reports the problem at
    /// its exact place; checks that need the syntax tree are skipped.
    pub(crate) block: Option<Block>,
}

impl Parse for AnnotatedFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let sig: Signature = input.parse()?;
        let body: TokenTree = input.parse()?;
        match &body {
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => {}
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "expected the function body `{ ... }`",
                ))
            }
        }
        let body = TokenStream::from(body);
        let block = syn::parse2::<Block>(body.clone()).ok();
        Ok(AnnotatedFn {
            attrs,
            vis,
            sig,
            body,
            block,
        })
    }
}

impl AnnotatedFn {
    /// Parses the item a macro is applied to. `macro_name` and `what` (e.g. "a durable
    /// workflow") complete the error for an item that is not a function; on that error the
    /// item is emitted as it was, minus `#[nondeterministic]` attributes.
    pub(crate) fn parse(item: TokenStream, macro_name: &str, what: &str) -> Result<Self, Failure> {
        syn::parse2::<AnnotatedFn>(item.clone()).map_err(|_| {
            let message = format!(
                "{macro_name} applies to an `async fn` with a body: it turns the function into {what}"
            );
            let error = match syn::parse2::<syn::Item>(item.clone()) {
                Ok(other) => syn::Error::new_spanned(item_head(&other), message),
                Err(_) => syn::Error::new(proc_macro2::Span::call_site(), message),
            };
            Failure { error, replacement: Some(determinism::strip_opt_out(item)) }
        })
    }

    /// The function exactly as written.
    pub(crate) fn as_written(&self) -> TokenStream {
        let (attrs, vis, sig, body) = (&self.attrs, &self.vis, &self.sig, &self.body);
        quote!(#(#attrs)* #vis #sig #body)
    }

    /// The span of the body's braces.
    pub(crate) fn body_span(&self) -> proc_macro2::Span {
        self.body
            .clone()
            .into_iter()
            .next()
            .map_or_else(proc_macro2::Span::call_site, |tree| tree.span())
    }

    /// The tokens that define the function's behavior, for the source hash: everything but
    /// doc comments.
    pub(crate) fn source_tokens(&self) -> TokenStream {
        let attrs = self.attrs.iter().filter(|a| !a.path().is_ident("doc"));
        let (vis, sig, body) = (&self.vis, &self.sig, &self.body);
        quote!(#(#attrs)* #vis #sig #body)
    }
}

/// The keyword of an item that is not a function, to point the error at.
fn item_head(item: &syn::Item) -> TokenStream {
    use syn::Item;
    match item {
        Item::Struct(i) => i.struct_token.to_token_stream(),
        Item::Enum(i) => i.enum_token.to_token_stream(),
        Item::Union(i) => i.union_token.to_token_stream(),
        Item::Impl(i) => i.impl_token.to_token_stream(),
        Item::Mod(i) => i.mod_token.to_token_stream(),
        Item::Trait(i) => i.trait_token.to_token_stream(),
        Item::Const(i) => i.const_token.to_token_stream(),
        Item::Static(i) => i.static_token.to_token_stream(),
        Item::Type(i) => i.type_token.to_token_stream(),
        Item::Use(i) => i.use_token.to_token_stream(),
        Item::Fn(i) => i.sig.fn_token.to_token_stream(),
        other => other.to_token_stream().into_iter().take(1).collect(),
    }
}

/// One parameter of the function.
#[derive(Debug)]
pub(crate) enum Param {
    /// `x: T` or `mut x: T`.
    Named(NamedParam),
    /// `self`, `&self`, `&mut self`, `self: Arc<Self>`, ...
    Receiver(Receiver),
    /// Any other pattern: `(a, b): (u32, u32)`, `_: T`, `ref x: T`.
    Pattern(PatType),
}

/// A parameter bound to a plain name.
#[derive(Debug)]
pub(crate) struct NamedParam {
    /// Attributes on the parameter.
    pub(crate) attrs: Vec<Attribute>,
    /// `mut`, if written.
    pub(crate) mutability: Option<syn::Token![mut]>,
    /// The name.
    pub(crate) ident: syn::Ident,
    /// The type.
    pub(crate) ty: Box<Type>,
}

/// Classifies the parameters of a signature.
pub(crate) fn params(sig: &Signature) -> Vec<Param> {
    sig.inputs
        .iter()
        .map(|arg| match arg {
            FnArg::Receiver(r) => Param::Receiver(r.clone()),
            FnArg::Typed(pt) => match &*pt.pat {
                Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                    Param::Named(NamedParam {
                        attrs: pt.attrs.clone(),
                        mutability: pi.mutability,
                        ident: pi.ident.clone(),
                        ty: pt.ty.clone(),
                    })
                }
                _ => Param::Pattern(pt.clone()),
            },
        })
        .collect()
}

/// The tokens inside a `{ .. }` body, to be spliced into a generated block after other
/// statements; the body itself when it is not one brace group, or when it opens with an inner
/// attribute (`#![..]`), which must stay first in its block.
pub(crate) fn block_contents(body: &TokenStream) -> TokenStream {
    let mut tokens = body.clone().into_iter();
    match (tokens.next(), tokens.next()) {
        (Some(proc_macro2::TokenTree::Group(g)), None)
            if g.delimiter() == proc_macro2::Delimiter::Brace =>
        {
            let inner = g.stream();
            let mut it = inner.clone().into_iter();
            let inner_attribute = matches!(
                (it.next(), it.next()),
                (Some(proc_macro2::TokenTree::Punct(a)), Some(proc_macro2::TokenTree::Punct(b)))
                    if a.as_char() == '#' && b.as_char() == '!'
            );
            if inner_attribute {
                body.clone()
            } else {
                inner
            }
        }
        _ => body.clone(),
    }
}

/// A statement that never runs but tells the compiler, before it reads the body, that the
/// body's value is `Result<T, E>`: `?` conversions are then inferred, and a wrong return type
/// is reported against the user's return type. Spanned at the return type.
pub(crate) fn fake_return(output: &ReturnType, ok: &Type, err: &Type) -> TokenStream {
    let span = match output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => Span::call_site(),
    };
    quote_spanned! {span=>
        #[allow(
            unknown_lints,
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::needless_return,
            clippy::let_unit_value
        )]
        if false {
            let __dbos_fake_return: ::core::result::Result<#ok, #err> = loop {};
            return __dbos_fake_return;
        }
    }
}
