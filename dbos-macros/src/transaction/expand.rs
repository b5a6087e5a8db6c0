//! The code `#[transaction]` generates, from a validated function only; and the stub emitted
//! instead when there were errors.

use proc_macro2::{Delimiter, Group, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;

use super::parse::TransactionFn;
use super::validate::ValidTransaction;
use crate::func::{fake_return, Param};
use crate::step::expand::{clone_helper, rebind_for_retries, return_type_span, CloneDiagnostic};

const TRANSACTION_CLONE: CloneDiagnostic = CloneDiagnostic {
    message: "`{Self}` must implement `Clone` to be an argument of a #[transaction]",
    label: "needed because the transaction may run again",
    note: "the body of a #[transaction] runs again when the database asks for it (a serialization failure or a deadlock) and when its own error is retried, each time on a fresh clone of the arguments; implement `Clone` or pass a shared handle such as `Arc<T>`",
};

/// The expansion of a valid transaction. The signature is the user's without the transaction
/// parameter (callers call it without one); the body becomes a loop driving
/// `dbos_core::__private::TransactionRun`: take a pooled connection (or the replayed result),
/// begin the transaction, run the body with the transaction and fresh clones of the
/// arguments, then let the run record and commit, or run again. The `TransactionDef` static
/// and its registration are items inside the body.
pub(crate) fn expand(v: &ValidTransaction<'_>) -> TokenStream {
    let t = v.tx;
    let func = &t.func;
    let err = v.err;
    let def = format_ident!("__DBOS_TRANSACTION_{}", func.sig.ident.unraw());
    let name = &v.name;
    let hash = &t.source_hash;
    let p = &v.policy;
    let (max_attempts, interval, backoff, max_interval) = (
        p.max_attempts,
        p.interval_millis,
        p.backoff,
        p.max_interval_millis,
    );
    let isolation = format_ident!("{}", v.isolation.variant());
    let data_source = match &v.datasource {
        Some(ds) => quote!(::core::option::Option::Some(#ds)),
        None => quote!(::core::option::Option::None),
    };
    let retry_if = match &t.options.retries.retry_if {
        Some((path, _)) => quote_spanned! {path.span()=>
            let __dbos_retry_if: ::core::option::Option<fn(&#err) -> bool> =
                ::core::option::Option::Some(#path);
        },
        None => quote! {
            let __dbos_retry_if: ::core::option::Option<fn(&#err) -> bool> =
                ::core::option::Option::None;
        },
    };

    // The signature without the transaction; every other parameter is re-bound to a fresh
    // clone for each run of the body.
    let mut sig = func.sig.clone();
    let tx_param = v.tx_param;
    sig.inputs = sig
        .inputs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != v.tx_index)
        .map(|(_, input)| input.clone())
        .collect::<Punctuated<_, syn::Token![,]>>();
    let params: Vec<&Param> = t
        .params
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != v.tx_index)
        .map(|(_, p)| p)
        .collect();
    let owned: Vec<Param> = params.iter().map(|p| clone_param(p)).collect();
    let rebinds = rebind_for_retries(&mut sig, &owned);
    let helper = (!rebinds.is_empty()).then(|| clone_helper(TRANSACTION_CLONE));
    let (tx_pat, tx_ty) = (&tx_param.pat, &tx_param.ty);

    let body = &func.body;
    let fake_return = fake_return(&func.sig.output, v.ok, err);
    let run_body = quote_spanned!(func.body_span()=> async move { #fake_return #body });

    // The run is created by the one call whose bounds (`T` storable, `E` a workflow error)
    // are checked, spanned at the return type: a type that does not qualify is reported
    // there, once.
    let at = return_type_span(&func.sig);
    let mut arguments = Group::new(
        Delimiter::Parenthesis,
        quote_spanned!(at=> &#def, __dbos_retry_if),
    );
    arguments.set_span(at);
    let new_run = quote_spanned!(at=> ::dbos_core::__private::transaction_run #arguments);

    let attrs = &func.attrs;
    let vis = &func.vis;
    quote! {
        #(#attrs)*
        #vis #sig {
            #[allow(non_upper_case_globals)]
            static #def: ::dbos_core::__private::TransactionDef = ::dbos_core::__private::TransactionDef {
                name: #name,
                source_hash: #hash,
                options: ::dbos_core::__private::TransactionOptions {
                    isolation: ::dbos_core::__private::Isolation::#isolation,
                    data_source: #data_source,
                    retries: ::dbos_core::__private::StepOptions {
                        max_attempts: #max_attempts,
                        interval: ::core::time::Duration::from_millis(#interval),
                        backoff: #backoff,
                        max_interval: ::core::time::Duration::from_millis(#max_interval),
                        timeout: ::core::option::Option::None,
                        preemptible: false,
                    },
                },
            };
            ::dbos_core::__private::inventory::submit! {
                ::dbos_core::__private::TransactionRegistration(&#def)
            }
            #retry_if
            let mut __dbos_run = #new_run;
            loop {
                let ::core::option::Option::Some(mut __dbos_conn) = __dbos_run.connect().await else {
                    break;
                };
                let ::core::option::Option::Some(__dbos_tx) = __dbos_run.begin(&mut __dbos_conn).await else {
                    continue;
                };
                let __dbos_result = {
                    #helper
                    #(#rebinds)*
                    let #tx_pat: #tx_ty = &__dbos_tx;
                    __dbos_run.scope(#run_body).await
                };
                if __dbos_run.finish(__dbos_tx, __dbos_result).await {
                    break;
                }
            }
            __dbos_run.into_result()
        }
    }
}

/// A parameter, copied (the shared rebinding code takes owned parameters).
fn clone_param(p: &Param) -> Param {
    match p {
        Param::Named(n) => Param::Named(crate::func::NamedParam {
            attrs: n.attrs.clone(),
            mutability: n.mutability,
            ident: n.ident.clone(),
            ty: n.ty.clone(),
        }),
        Param::Receiver(r) => Param::Receiver(r.clone()),
        Param::Pattern(pt) => Param::Pattern(pt.clone()),
    }
}

/// What to emit when there were errors: the function as written, made `async` if it was not,
/// and, when its first argument is the transaction, without that argument (bound in the body
/// to a value that is never produced), so callers that call it as a transaction (without one,
/// then `.await`) get no further errors.
pub(crate) fn fallback(t: &TransactionFn) -> TokenStream {
    let func = &t.func;
    let mut sig = func.sig.clone();
    sig.asyncness = Some(Default::default());
    let (attrs, vis, body) = (&func.attrs, &func.vis, &func.body);
    let first_typed = sig
        .inputs
        .iter()
        .position(|i| matches!(i, syn::FnArg::Typed(_)));
    let tx = first_typed.and_then(|i| match sig.inputs.iter().nth(i) {
        Some(syn::FnArg::Typed(pt)) if super::validate::is_transaction_type(&pt.ty) => {
            Some((i, pt.clone()))
        }
        _ => None,
    });
    match tx {
        Some((index, pt)) => {
            sig.inputs = sig
                .inputs
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .map(|(_, input)| input.clone())
                .collect::<Punctuated<_, syn::Token![,]>>();
            let (pat, ty) = (&pt.pat, &pt.ty);
            quote! {
                #(#attrs)*
                #[allow(unreachable_code, unused_variables)]
                #vis #sig {
                    let #pat: #ty = loop {};
                    #body
                }
            }
        }
        None => quote!(#(#attrs)* #vis #sig #body),
    }
}
