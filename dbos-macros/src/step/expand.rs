//! The code `#[step]` generates, from a validated function only; and the stub emitted instead
//! when there were errors.

use proc_macro2::{Delimiter, Group, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, Pat, PatIdent};

use super::parse::StepFn;
use super::validate::ValidStep;
use crate::func::{fake_return, Param};
use crate::signature;

/// The expansion of a valid step. The signature stays the user's `async fn` (parameters only
/// lose `mut` or get a generated name when the retrying body re-binds them); the body becomes
/// a call to `dbos_core::__private::run_step`, which records the result inside a workflow and
/// retries according to the options. The `StepDef` static, its registration and the
/// compile-time assertions are items inside the body, which works in `impl` blocks too.
pub(crate) fn expand(v: &ValidStep<'_>) -> TokenStream {
    let step = v.step;
    let func = &step.func;
    let (ok, err) = (v.ok, v.err);
    let def = format_ident!("__DBOS_STEP_{}", func.sig.ident.unraw());
    let name = &v.name;
    let hash = &step.source_hash;
    let p = &v.policy;
    let (max_attempts, interval, backoff, max_interval) = (
        p.max_attempts,
        p.interval_millis,
        p.backoff,
        p.max_interval_millis,
    );

    let timeout = match v.timeout_millis {
        Some(ms) => quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
        None => quote!(::core::option::Option::None),
    };
    let preemptible = v.preemptible;

    // Bound to a typed local first: a function with the wrong signature is reported at the
    // path, and the call's argument is a plain name (see the span of the call below).
    let retry_if = match &step.options.retry_if {
        Some((path, _)) => quote_spanned! {path.span()=>
            let __dbos_retry_if: ::core::option::Option<fn(&#err) -> bool> =
                ::core::option::Option::Some(#path);
        },
        None => quote! {
            let __dbos_retry_if: ::core::option::Option<fn(&#err) -> bool> =
                ::core::option::Option::None;
        },
    };

    let body_inner = crate::func::block_contents(&func.body);
    let fake_return = fake_return(&func.sig.output, ok, err);
    // The statements of the body, not the block: `{ Ok(x) }` inside another block would trip
    // `unused_braces` in the user's code.
    let run_body = quote_spanned!(func.body_span()=> async move { #fake_return #body_inner });

    let mut sig = func.sig.clone();
    let attempt = if p.max_attempts > 1 {
        let rebinds = rebind_for_retries(&mut sig, &step.params);
        let helper = (!rebinds.is_empty()).then(|| clone_helper(STEP_CLONE));
        quote! {
            {
                #helper
                move || {
                    #(#rebinds)*
                    #run_body
                }
            }
        }
    } else {
        quote! {
            {
                let mut __dbos_once = ::core::option::Option::Some(move || #run_body);
                move || match __dbos_once.take() {
                    ::core::option::Option::Some(__dbos_body) => __dbos_body(),
                    ::core::option::Option::None => {
                        ::core::unreachable!("a step without retries runs once")
                    }
                }
            }
        }
    };

    // The call and its `.await` are spanned at the first token of the return type (`Result`),
    // and `T` and `E` are inferred rather than written as turbofish arguments: every unmet
    // bound of `run_step` (on the call, on the future it returns, on the `.await`) is then
    // reported at that one place, which the compiler reports once. An
    // `assert_portable::<T>()` would be a second place, and a second error.
    let at = return_type_span(&func.sig);
    let mut arguments = Group::new(
        Delimiter::Parenthesis,
        quote_spanned!(at=> &#def, __dbos_retry_if, __dbos_attempt),
    );
    arguments.set_span(at);
    let call = quote_spanned!(at=> ::dbos_core::__private::run_step #arguments .await);
    let run = quote! {
        #retry_if
        let __dbos_attempt = #attempt;
        #call
    };

    let attrs = &func.attrs;
    let vis = &func.vis;
    quote! {
        #(#attrs)*
        #vis #sig {
            #[allow(non_upper_case_globals)]
            static #def: ::dbos_core::__private::StepDef = ::dbos_core::__private::StepDef {
                name: #name,
                source_hash: #hash,
                options: ::dbos_core::__private::StepOptions {
                    max_attempts: #max_attempts,
                    interval: ::core::time::Duration::from_millis(#interval),
                    backoff: #backoff,
                    max_interval: ::core::time::Duration::from_millis(#max_interval),
                    timeout: #timeout,
                    preemptible: #preemptible,
                },
            };
            ::dbos_core::__private::inventory::submit! {
                ::dbos_core::__private::StepRegistration(&#def)
            }
            #run
        }
    }
}

/// Prepares the parameters of a retrying step: each attempt runs the body on fresh clones, so
/// the signature's parameters become plain names (`mut` moves to the clone; a pattern such as
/// `(a, b): (u32, u32)` gets a generated name and is destructured from the clone), and one
/// `let` per parameter re-binds it, spanned at the parameter so a type that is not `Clone` is
/// reported there. A `&self` receiver is a shared reference, copied into every attempt.
pub(crate) fn rebind_for_retries(sig: &mut syn::Signature, params: &[Param]) -> Vec<TokenStream> {
    let mut rebinds = Vec::new();
    for (index, (input, param)) in sig.inputs.iter_mut().zip(params).enumerate() {
        let FnArg::Typed(pt) = input else { continue };
        let span = pt.span();
        match param {
            Param::Named(named) => {
                let (mutability, ident) = (&named.mutability, &named.ident);
                if let Pat::Ident(pi) = &mut *pt.pat {
                    pi.mutability = None;
                }
                let clone = clone_call(&named.ty, quote!(#ident));
                rebinds.push(quote_spanned! {span=>
                    let #mutability #ident = #clone;
                });
            }
            Param::Pattern(original) => {
                let generated = format_ident!("__dbos_arg{}", index);
                *pt.pat = Pat::Ident(PatIdent {
                    attrs: Vec::new(),
                    by_ref: None,
                    mutability: None,
                    ident: generated.clone(),
                    subpat: None,
                });
                let pat = &original.pat;
                let clone = clone_call(&original.ty, quote!(#generated));
                rebinds.push(quote_spanned! {span=>
                    let #pat = #clone;
                });
            }
            Param::Receiver(_) => {}
        }
    }
    rebinds
}

/// The span of the return type's first token (a span covering several tokens cannot be made
/// on a stable compiler).
pub(crate) fn return_type_span(sig: &syn::Signature) -> Span {
    match &sig.output {
        syn::ReturnType::Type(_, ty) => ty.to_token_stream().into_iter().next().map(|t| t.span()),
        syn::ReturnType::Default => None,
    }
    .unwrap_or_else(|| sig.ident.span())
}

/// What the `Clone` diagnostic of a re-run argument says: message, label, note.
pub(crate) struct CloneDiagnostic {
    pub(crate) message: &'static str,
    pub(crate) label: &'static str,
    pub(crate) note: &'static str,
}

const STEP_CLONE: CloneDiagnostic = CloneDiagnostic {
    message: "`{Self}` must implement `Clone` to be an argument of a #[step] with retries",
    label: "needed because the step retries",
    note: "every attempt of a step with `max_attempts` > 1 runs the body on a fresh clone of the arguments, because a failed attempt may have consumed them; implement `Clone`, pass a shared handle such as `Arc<T>`, or remove the retries",
};

/// A trait whose unmet bound explains why a parameter of a body that runs again must be
/// `Clone`.
pub(crate) fn clone_helper(d: CloneDiagnostic) -> TokenStream {
    let CloneDiagnostic {
        message,
        label,
        note,
    } = d;
    quote! {
        #[diagnostic::on_unimplemented(
            message = #message,
            label = #label,
            note = #note
        )]
        trait __DbosRetryArgument {
            fn __dbos_clone(&self) -> Self;
        }
        impl<T: ::core::clone::Clone> __DbosRetryArgument for T {
            fn __dbos_clone(&self) -> Self {
                ::core::clone::Clone::clone(self)
            }
        }
    }
}

/// Clones a parameter for one attempt, spanned at its type so a type that is not `Clone` is
/// reported there (naming the type, rather than letting it be inferred, also keeps the
/// compiler from suggesting to borrow the parameter). `impl Trait` cannot be named, so such a
/// parameter's type is inferred.
fn clone_call(ty: &syn::Type, value: TokenStream) -> TokenStream {
    if signature::impl_trait_in(ty).is_some() {
        quote_spanned!(ty.span()=> __DbosRetryArgument::__dbos_clone(&#value))
    } else {
        quote_spanned!(ty.span()=> <#ty as __DbosRetryArgument>::__dbos_clone(&#value))
    }
}

/// What to emit when there were errors: the function as written, made `async` if it was not,
/// so callers that `.await` it (as they would a step) get no further errors.
pub(crate) fn fallback(step: &StepFn) -> TokenStream {
    let func = &step.func;
    let mut sig = func.sig.clone();
    sig.asyncness = Some(Default::default());
    let (attrs, vis, body) = (&func.attrs, &func.vis, &func.body);
    quote!(#(#attrs)* #vis #sig #body)
}
