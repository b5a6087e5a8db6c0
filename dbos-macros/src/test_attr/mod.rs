//! `#[dbos_testkit::test]`: an async test that receives a fresh database.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn};

use crate::error::Errors;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    if !args.is_empty() {
        return Err(syn::Error::new_spanned(
            args,
            "#[dbos_testkit::test] takes no options: the test's arguments (TestDatabase, Dbos, SystemDatabase) say what it needs",
        ));
    }
    let func: ItemFn = syn::parse2(item)?;
    let mut errors = Errors::default();
    if func.sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            func.sig.fn_token,
            "#[dbos_testkit::test] functions must be `async fn`: the test runs on a tokio runtime",
        ));
    }
    if !func.sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &func.sig.generics,
            "test functions cannot be generic",
        ));
    }
    let mut arg_idents = Vec::new();
    let mut setups = Vec::new();
    for (i, arg) in func.sig.inputs.iter().enumerate() {
        match arg {
            FnArg::Receiver(r) => errors.push(syn::Error::new_spanned(
                r,
                "test functions cannot take `self`",
            )),
            FnArg::Typed(pt) => {
                let local = format_ident!("__dbos_arg{}", i);
                let ty = &pt.ty;
                setups.push(quote_spanned! {ty.span()=>
                    let #local = <#ty as ::dbos_testkit::__private::TestArg>::setup(&__dbos_db).await;
                });
                arg_idents.push(local);
            }
        }
    }
    errors.finish()?;

    let attrs = &func.attrs;
    let vis = &func.vis;
    let name = &func.sig.ident;
    let inner = {
        let mut f = func.clone();
        f.attrs.clear();
        f.vis = syn::Visibility::Inherited;
        f
    };
    Ok(quote! {
        #[::core::prelude::v1::test]
        #(#attrs)*
        #vis fn #name() {
            #inner
            ::dbos_testkit::__private::run_test(
                ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#name)),
                |__dbos_db: ::dbos_testkit::__private::TestDatabase| async move {
                    #(#setups)*
                    #name(#(#arg_idents),*).await
                },
            );
        }
    })
}
