//! The code `#[workflow]` generates, from a validated function only; and the stub emitted
//! instead when there were errors.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use super::parse::WorkflowFn;
use super::validate::ValidWorkflow;
use crate::determinism;
use crate::func::fake_return;
use crate::signature;

/// The expansion of a valid workflow:
///
/// - the function itself becomes a plain `fn` with the same name, visibility, attributes
///   and arguments, returning `dbos_core::WorkflowCall<T, E>` (which runs the workflow when
///   awaited, or `.start()`ed);
/// - inside it, one hidden static holds the `WorkflowDef` (whose `invoke` decodes the
///   recorded arguments and runs the original body) and the function that builds the call
///   (encoding the arguments); the static is registered with `inventory`.
///
/// Every use of a recorded type that carries a bound (assertion, encoding, decoding, erasing
/// the outcome) sits in that one static's initializer, through closures, and is spanned at
/// the user's type. The compiler reports one unsatisfied bound once per place within one
/// body, so a type that is not storable gives one error at the type, not one per use.
///
/// The hidden items live in the function's body so that a workflow that is an associated
/// function of an `impl` block works too, and a `#[cfg]` on the function removes them with it.
pub(crate) fn expand(v: &ValidWorkflow<'_>) -> TokenStream {
    let func = &v.wf.func;
    let attrs = &func.attrs;
    let vis = &func.vis;
    let ident = &func.sig.ident;
    let (ok, err) = (v.ok, v.err);
    let def = format_ident!("__DBOS_WORKFLOW_{}", ident.unraw());
    let name = &v.name;
    let hash = &v.wf.source_hash;
    let max_recovery_attempts = v.max_recovery_attempts;
    let required_roles = &v.required_roles;
    let here = quote_spanned!(ident.span()=> file: ::core::file!(), line: ::core::line!(),);

    let outer_params = v.params.iter().map(|p| {
        let (attrs, ident, ty) = (&p.attrs, &p.ident, &p.ty);
        quote!(#(#attrs)* #ident: #ty)
    });
    let idents: Vec<_> = v.params.iter().map(|p| &p.ident).collect();
    let types: Vec<_> = v.params.iter().map(|p| &*p.ty).collect();
    let helper_params: Vec<_> = (0..v.params.len())
        .map(|i| format_ident!("__dbos_arg{}", i))
        .collect();

    let assertions = types
        .iter()
        .copied()
        .chain([ok])
        .map(|ty| quote_spanned!(ty.span()=> ::dbos_core::__private::assert_portable::<#ty>();))
        .chain([
            quote_spanned!(err.span()=> ::dbos_core::__private::assert_workflow_error::<#err>();),
        ]);
    let encodes = types.iter().zip(&helper_params).map(
        |(ty, param)| quote_spanned!(ty.span()=> ::dbos_core::__private::encode_arg::<#ty>(#param)),
    );
    let decodes = v.params.iter().enumerate().map(|(index, p)| {
        let (mutability, ident, ty) = (&p.mutability, &p.ident, &p.ty);
        let arg_name = ident.unraw().to_string();
        quote_spanned! {ty.span()=>
            let #mutability #ident: #ty =
                ::dbos_core::__private::Args::decode::<#ty>(&__dbos_args, #index, #arg_name)?;
        }
    });
    let unused_args = v
        .params
        .is_empty()
        .then(|| quote!(::core::mem::drop(__dbos_args);));

    let body = determinism::strip_opt_out(func.body.clone());
    // The statements of the body, not the block: `{ Ok(x) }` inside another block would trip
    // `unused_braces` in the user's code.
    let body_inner = crate::func::block_contents(&body);
    let fake_return = fake_return(&func.sig.output, ok, err);
    // Spanned at the body, so a body that is not `Send` is reported there.
    let send_checked = quote_spanned! {func.body_span()=>
        ::dbos_core::__private::workflow_future_must_be_send(async move {
            #unused_args
            #(#decodes)*
            let __dbos_result: ::core::result::Result<#ok, #err> =
                async move {  #fake_return #body_inner  }.await;
            ::dbos_core::__private::erase_outcome::<#ok, #err>(__dbos_result)
        })
    };

    let schedule = v.schedule.as_ref().map(|s| {
        let cron = &s.cron;
        let some = |v: &Option<String>| match v {
            Some(v) => quote!(::core::option::Option::Some(#v)),
            None => quote!(::core::option::Option::None),
        };
        let (timezone, queue) = (some(&s.timezone), some(&s.queue));
        let backfill = s.automatic_backfill;
        quote! {
            ::dbos_core::__private::inventory::submit! {
                ::dbos_core::__private::ScheduleRegistration {
                    workflow: #name,
                    cron: #cron,
                    timezone: #timezone,
                    automatic_backfill: #backfill,
                    queue: #queue,
                }
            }
        }
    });

    quote! {
        #(#attrs)*
        #vis fn #ident(#(#outer_params),*) -> ::dbos_core::WorkflowCall<#ok, #err> {
            #[allow(non_upper_case_globals)]
            static #def: (
                ::dbos_core::__private::WorkflowDef,
                fn(
                    &'static ::dbos_core::__private::WorkflowDef,
                    #(&#types),*
                ) -> ::dbos_core::WorkflowCall<#ok, #err>,
            ) = (
                ::dbos_core::__private::WorkflowDef {
                    name: #name,
                    #here
                    source_hash: #hash,
                    max_recovery_attempts: #max_recovery_attempts,
                    required_roles: &[#(#required_roles),*],
                    invoke: |__dbos_args| {
                        #(#assertions)*
                        #send_checked
                    },
                },
                |__dbos_def, #(#helper_params),*| {
                    ::dbos_core::__private::workflow_call::<#ok, #err>(
                        __dbos_def,
                        ::std::vec![#(#encodes),*],
                    )
                },
            );
            ::dbos_core::__private::inventory::submit! {
                ::dbos_core::__private::WorkflowRegistration(&#def.0)
            }
            #schedule
            (#def.1)(&#def.0, #(&#idents),*)
        }
    }
}

/// What to emit when there were errors: a stub with the signature the expansion would have
/// had, so call sites (`checkout(order).id("a").await`) produce no further errors; or, when
/// the return type is not `Result<T, E>` (there is no such signature), the function as
/// written. Either way without `#[nondeterministic]` attributes.
///
/// The stub keeps the body in a future that is never run: the body's own type errors are
/// still reported, and its imports and arguments count as used, so the macro's error does
/// not come with "unused" warnings.
pub(crate) fn fallback(wf: &WorkflowFn) -> TokenStream {
    let func = &wf.func;
    let Some((ok, err)) = signature::result_types(&func.sig.output) else {
        return determinism::strip_opt_out(func.as_written());
    };
    let mut sig = func.sig.clone();
    sig.asyncness = None;
    sig.abi = None;
    sig.output = syn::parse_quote!(-> ::dbos_core::WorkflowCall<#ok, #err>);
    let attrs = &func.attrs;
    let vis = &func.vis;
    let body = &func.body;
    let fake_return = fake_return(&func.sig.output, ok, err);
    determinism::strip_opt_out(quote! {
        #(#attrs)*
        #[allow(unused_mut, unreachable_code)]
        #vis #sig {
            let _ = async move { #fake_return #body };
            ::core::unimplemented!()
        }
    })
}
