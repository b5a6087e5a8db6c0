//! The code `#[step]` generates, from a validated function only; and the stub emitted instead
//! when there were errors.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, Pat, PatIdent};

use super::parse::StepFn;
use super::validate::ValidStep;
use crate::func::{fake_return, Param};

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
    let (max_attempts, interval, backoff, max_interval) =
        (p.max_attempts, p.interval_millis, p.backoff, p.max_interval_millis);

    let retry_if = match &step.options.retry_if {
        Some((path, _)) => quote_spanned! {path.span()=>
            ::core::option::Option::Some(#path as fn(&#err) -> bool)
        },
        None => quote!(::core::option::Option::None),
    };

    let body = &func.body;
    let fake_return = fake_return(&func.sig.output, ok, err);
    let run_body = quote_spanned!(func.body_span()=> async move { #fake_return #body });

    let mut sig = func.sig.clone();
    let attempt = if p.max_attempts > 1 {
        let rebinds = rebind_for_retries(&mut sig, step);
        let helper = (!rebinds.is_empty()).then(clone_helper);
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

    // The assertions sit in the same body as `run_step`, at the user's types: the compiler
    // reports an unsatisfied bound once per place within one body, so a type that is not
    // storable gives one error, at the type. They are statements, not nested items, so they
    // may name the function's generic parameters and `Self`.
    let assertions = [
        quote_spanned!(ok.span()=> ::dbos_core::__private::assert_portable::<#ok>();),
        quote_spanned!(err.span()=> ::dbos_core::__private::assert_workflow_error::<#err>();),
    ];
    let run = quote! {
        #(#assertions)*
        ::dbos_core::__private::run_step::<#ok, #err, _, _>(&#def, #retry_if, #attempt).await
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
fn rebind_for_retries(sig: &mut syn::Signature, step: &StepFn) -> Vec<TokenStream> {
    let mut rebinds = Vec::new();
    for (index, (input, param)) in sig.inputs.iter_mut().zip(&step.params).enumerate() {
        let FnArg::Typed(pt) = input else { continue };
        let span = pt.span();
        match param {
            Param::Named(named) => {
                let (mutability, ident) = (&named.mutability, &named.ident);
                if let Pat::Ident(pi) = &mut *pt.pat {
                    pi.mutability = None;
                }
                rebinds.push(quote_spanned! {span=>
                    let #mutability #ident = __dbos_clone_argument(&#ident);
                });
            }
            Param::Pattern(original) => {
                let generated = format_ident!("__dbos_arg{}", index);
                pt.pat = Box::new(Pat::Ident(PatIdent {
                    attrs: Vec::new(),
                    by_ref: None,
                    mutability: None,
                    ident: generated.clone(),
                    subpat: None,
                }));
                let pat = &original.pat;
                rebinds.push(quote_spanned! {span=>
                    let #pat = __dbos_clone_argument(&#generated);
                });
            }
            Param::Receiver(_) => {}
        }
    }
    rebinds
}

/// A helper whose bound explains why a parameter of a retrying step must be `Clone`.
fn clone_helper() -> TokenStream {
    quote! {
        #[diagnostic::on_unimplemented(
            message = "`{Self}` must implement `Clone` to be an argument of a #[step] with retries",
            label = "not `Clone`",
            note = "every attempt of a step with `max_attempts` > 1 runs the body on a fresh clone of the arguments, because a failed attempt may have consumed them; derive or implement `Clone`, pass a reference-counted handle, or remove the retries"
        )]
        trait __DbosRetryArgument: ::core::clone::Clone {}
        impl<T: ::core::clone::Clone> __DbosRetryArgument for T {}
        fn __dbos_clone_argument<T: __DbosRetryArgument>(value: &T) -> T {
            ::core::clone::Clone::clone(value)
        }
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
