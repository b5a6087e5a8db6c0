//! `#[dbos_testkit::test]`: an async test that receives a fresh database.
//!
//! Options: `timeout = ".."` (a duration string), the longest the test may run before it
//! fails; without it the testkit's default applies (see `dbos_testkit::test`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn};

use crate::attr::{self, Accepted, Rename};
use crate::error::Errors;

/// The options `#[dbos_testkit::test]` accepts.
const ACCEPTED: Accepted = Accepted {
    macro_name: "#[dbos_testkit::test]",
    keys: &["timeout"],
    renames: &[
        Rename {
            from: "timeout_secs",
            to: "timeout",
            note: ", which takes a duration string with its unit, e.g. `timeout = \"60s\"`",
        },
        Rename {
            from: "timeout_ms",
            to: "timeout",
            note: ", which takes a duration string with its unit, e.g. `timeout = \"500ms\"`",
        },
    ],
};

const TIMEOUT_EXAMPLE: &str = "timeout = \"60s\"";

/// The options as parsed: the timeout in milliseconds, if one was given.
#[derive(Debug, Default)]
struct TestOptions {
    timeout_ms: Option<u64>,
}

fn parse_options(args: TokenStream, errors: &mut Errors) -> TestOptions {
    let mut options = TestOptions::default();
    for entry in attr::parse_options(args, &ACCEPTED, errors) {
        // `timeout` is the only accepted key; parse_options dropped every other one.
        match attr::duration_millis(&entry, TIMEOUT_EXAMPLE) {
            Ok(0) => errors.push(syn::Error::new_spanned(
                // A value is present: `duration_millis` succeeded.
                entry.value.as_ref().map_or_else(
                    || {
                        let key = &entry.key;
                        quote!(#key)
                    },
                    |v| quote!(#v),
                ),
                format!(
                    "option `timeout` must be longer than zero: a test with no time to run fails \
                     before it starts; e.g. `{TIMEOUT_EXAMPLE}`"
                ),
            )),
            Ok(ms) => options.timeout_ms = Some(ms),
            Err(e) => errors.push(e),
        }
    }
    options
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let options = parse_options(args, &mut errors);
    let func: ItemFn = syn::parse2(item)?;
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

    let timeout = match options.timeout_ms {
        Some(ms) => quote!(::core::option::Option::Some(
            ::core::time::Duration::from_millis(#ms)
        )),
        None => quote!(::core::option::Option::None),
    };
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
                #timeout,
                |__dbos_db: ::dbos_testkit::__private::TestDatabase| async move {
                    #(#setups)*
                    #name(#(#arg_idents),*).await
                },
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(args: TokenStream) -> Vec<String> {
        let item = quote!(
            async fn t() {}
        );
        match expand(args, item) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_timeout_is_passed_to_the_runner() {
        let out = expand(
            quote!(timeout = "1.5s"),
            quote!(
                async fn t() {}
            ),
        )
        .unwrap()
        .to_string();
        assert!(out.contains("from_millis (1500u64)"), "{out}");
        let out = expand(
            TokenStream::new(),
            quote!(
                async fn t() {}
            ),
        )
        .unwrap()
        .to_string();
        assert!(out.contains("Option :: None"), "{out}");
    }

    #[test]
    fn bad_timeouts_say_what_is_wrong() {
        let e = messages(quote!(timeout = "0s"));
        assert!(e[0].contains("must be longer than zero"), "{e:?}");
        let e = messages(quote!(timeout = 60));
        assert!(e[0].contains("takes a duration string"), "{e:?}");
        let e = messages(quote!(timeout = "60"));
        assert!(e[0].contains("has no unit"), "{e:?}");
        let e = messages(quote!(time_out = "60s"));
        assert!(e[0].contains("did you mean `timeout`?"), "{e:?}");
        let e = messages(quote!(timeout_secs = 60));
        assert!(e[0].contains("use `timeout` instead"), "{e:?}");
    }
}
