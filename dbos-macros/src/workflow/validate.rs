//! The rules a `#[workflow]` function must follow, each reported as a spanned error that says
//! why the rule exists. All problems are reported together.

use syn::{Ident, LitStr, Type};

use super::parse::{WorkflowFn, DEFAULT_MAX_RECOVERY_ATTEMPTS};
use crate::determinism;
use crate::error::Errors;
use crate::func::{NamedParam, Param};
use crate::recorded::{self, Role};
use crate::signature;

/// A workflow that follows every rule: the pieces the expansion needs.
#[derive(Debug)]
pub(crate) struct ValidWorkflow<'a> {
    /// The parsed function.
    pub(crate) wf: &'a WorkflowFn,
    /// Every parameter (all are plain names).
    pub(crate) params: Vec<&'a NamedParam>,
    /// `T` of `Result<T, E>`.
    pub(crate) ok: &'a Type,
    /// `E` of `Result<T, E>`.
    pub(crate) err: &'a Type,
    /// The durable name.
    pub(crate) name: String,
    /// Recoveries allowed.
    pub(crate) max_recovery_attempts: i32,
    /// The static schedule, if the workflow has one.
    pub(crate) schedule: Option<StaticSchedule>,
    /// Roles one of which a start needs (empty: none).
    pub(crate) required_roles: Vec<String>,
}

/// `#[workflow(schedule = .., timezone = .., automatic_backfill, queue = ..)]`, checked.
#[derive(Debug)]
pub(crate) struct StaticSchedule {
    pub(crate) cron: String,
    pub(crate) timezone: Option<String>,
    pub(crate) automatic_backfill: bool,
    pub(crate) queue: Option<String>,
}

/// Checks the schedule options: a cron expression in DBOS's dialect (5 fields, or 6 with
/// seconds first: the runtime's `schedule::cron` parses the same way), an IANA zone, and the
/// `(scheduled_at, context)` signature; the other schedule options only with `schedule`.
fn check_schedule(wf: &WorkflowFn, params: usize, errors: &mut Errors) -> Option<StaticSchedule> {
    let o = &wf.options;
    let Some(cron) = &o.schedule else {
        let orphans = [
            o.timezone.as_ref().map(|t| t.span()),
            o.queue.as_ref().map(|q| q.span()),
            o.automatic_backfill.map(|(_, span)| span),
        ];
        for span in orphans.into_iter().flatten() {
            errors.push(syn::Error::new(
                span,
                "this option applies to scheduled workflows only: add `schedule = \"<cron>\"`",
            ));
        }
        return None;
    };
    let text = cron.value();
    let fields = text.split_whitespace().count();
    let parsed = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(&text);
    if !(5..=6).contains(&fields) && !text.trim_start().starts_with('@') {
        errors.push(syn::Error::new(
            cron.span(),
            format!(
                "cron schedule `{text}` has {fields} field(s): give 5 (minute hour day-of-month month \
                 day-of-week) or 6 (with seconds first, e.g. `*/10 * * * * *` for every 10 seconds)"
            ),
        ));
    } else if let Err(e) = parsed {
        errors.push(syn::Error::new(
            cron.span(),
            format!("cron schedule `{text}` is not valid: {e}"),
        ));
    }
    if let Some(zone) = &o.timezone {
        if zone.value().parse::<chrono_tz::Tz>().is_err() {
            errors.push(syn::Error::new(
                zone.span(),
                format!(
                    "time zone `{}` is not an IANA time zone name (e.g. `Europe/Paris`, \
                     `America/New_York`, `UTC`)",
                    zone.value()
                ),
            ));
        }
    }
    if params != 2 {
        errors.push(syn::Error::new_spanned(
            &wf.func.sig.inputs,
            "a scheduled workflow takes two arguments, `(scheduled_at, context)`: the tick's time \
             (e.g. `dbos_core::schedule::chrono::DateTime<Utc>`) and the schedule's context \
             (e.g. `serde_json::Value`)",
        ));
    }
    Some(StaticSchedule {
        cron: text,
        timezone: o.timezone.as_ref().map(LitStr::value),
        automatic_backfill: o.automatic_backfill.is_some_and(|(b, _)| b),
        queue: o.queue.as_ref().map(LitStr::value),
    })
}

/// Checks the signature, the options and (with the determinism guard) the body. Returns the
/// validated pieces when this pass found no problem.
pub(crate) fn validate<'a>(
    wf: &'a WorkflowFn,
    all_errors: &mut Errors,
) -> Option<ValidWorkflow<'a>> {
    let mut errors = Errors::default();
    let errors = &mut errors;
    let sig = &wf.func.sig;

    if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            "#[workflow] functions must be `async fn`: a workflow awaits its steps and child \
             workflows, and the runtime drives it as a future that it can resume on another \
             executor after a crash",
        ));
    }
    if let Some(unsafety) = sig.unsafety {
        errors.push(syn::Error::new_spanned(
            unsafety,
            "#[workflow] functions cannot be `unsafe`: recovery calls them from the runtime, \
             which cannot uphold a safety contract",
        ));
    }
    if let Some(constness) = sig.constness {
        errors.push(syn::Error::new_spanned(
            constness,
            "#[workflow] functions cannot be `const`: a workflow runs at run time, against the \
             system database",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            "#[workflow] functions cannot declare an ABI: the macro replaces the function with \
             a Rust function that returns a `dbos_core::WorkflowCall`",
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "#[workflow] functions cannot be generic: recovery finds a workflow by name and \
             needs concrete types to decode its recorded arguments and output; write a \
             workflow per concrete type, calling a shared generic helper",
        ));
    } else if let Some(where_clause) = &sig.generics.where_clause {
        errors.push(syn::Error::new_spanned(
            where_clause,
            "#[workflow] functions cannot have a `where` clause: recovery needs concrete \
             types to decode the recorded arguments and output",
        ));
    }

    let self_type = |ty: &Type, errors: &mut Errors| {
        if let Some(span) = signature::self_type_in(ty) {
            errors.push(syn::Error::new(
                span,
                "write the type's name instead of `Self` in a #[workflow] signature: the macro \
                 generates items that decode and check the recorded types, and those items \
                 cannot refer to `Self`",
            ));
        }
    };

    let mut params = Vec::new();
    for param in &wf.params {
        match param {
            Param::Named(named) => {
                if let Some(span) = signature::impl_trait_in(&named.ty) {
                    errors.push(syn::Error::new(
                        span,
                        "#[workflow] arguments cannot be `impl Trait`: that makes the workflow \
                         generic, and recovery needs a concrete type to decode the recorded \
                         argument into",
                    ));
                }
                self_type(&named.ty, errors);
                recorded::check(&named.ty, Role::Argument, "#[workflow]", errors);
                params.push(named);
            }
            Param::Receiver(receiver) => errors.push(syn::Error::new_spanned(
                receiver,
                "#[workflow] functions cannot take `self`: after a crash, recovery calls the \
                 workflow by name with its recorded arguments and has no `self` to pass; pass \
                 what you need as serializable arguments, or make this method a #[step]",
            )),
            Param::Pattern(pat_type) => errors.push(syn::Error::new_spanned(
                &pat_type.pat,
                "#[workflow] arguments must be plain names such as `order: Order`: arguments are \
                 recorded as positional JSON values and, on recovery, decoded back into a \
                 variable of that name; take the whole value and destructure it in the body",
            )),
        }
    }

    let result = signature::result_types(&sig.output);
    match result {
        Some((ok, err)) => {
            for (ty, role) in [(ok, Role::Output), (err, Role::Error)] {
                if let Some(span) = signature::impl_trait_in(ty) {
                    errors.push(syn::Error::new(
                        span,
                        "a #[workflow] output or error cannot be `impl Trait`: it is recorded, \
                         and decoded into a concrete type when a caller awaits the workflow",
                    ));
                }
                self_type(ty, errors);
                recorded::check(ty, role, "#[workflow]", errors);
            }
        }
        None => errors.push(signature::not_result_error(
            sig,
            "#[workflow] functions",
            "the output `T` is recorded when the workflow finishes",
        )),
    }

    for attr in wf.func.attrs.iter().filter(|a| determinism::is_opt_out(a)) {
        errors.push(syn::Error::new_spanned(
            attr,
            format!(
                "`#[{}]` goes on a statement inside the workflow body, not on the workflow: \
                 a workflow must replay the same way after a crash, so only single statements \
                 can be exempted from the determinism check (move non-deterministic work into \
                 a #[step])",
                determinism::OPT_OUT
            ),
        ));
    }

    let name = match &wf.options.name {
        Some(lit) if lit.value().trim().is_empty() => {
            errors.push(syn::Error::new_spanned(
                lit,
                "the workflow name cannot be empty: it is the workflow's durable identity in \
                 the system database, which recovery uses to find this function",
            ));
            String::new()
        }
        Some(lit) => lit.value(),
        None => default_name(&sig.ident),
    };

    if let Some(block) = &wf.func.block {
        for span in signature::self_in_body(block) {
            errors.push(syn::Error::new(
                span,
                "write the type's name instead of `Self` in a #[workflow] body: the body is \
                 moved into the workflow's registration, outside the `impl` block, where \
                 `Self` means nothing",
            ));
        }
        determinism::check(block, errors);
    }

    let schedule = check_schedule(wf, wf.params.len(), errors);
    let found_none = errors.is_empty();
    all_errors.append(std::mem::take(errors));
    if !found_none {
        return None;
    }
    let (ok, err) = result?;
    Some(ValidWorkflow {
        wf,
        params,
        ok,
        err,
        name,
        max_recovery_attempts: wf
            .options
            .max_recovery_attempts
            .map_or(DEFAULT_MAX_RECOVERY_ATTEMPTS, |(n, _)| n),
        schedule,
        required_roles: wf
            .options
            .required_roles
            .iter()
            .flatten()
            .map(LitStr::value)
            .collect(),
    })
}

/// The function's name without a raw-identifier prefix.
fn default_name(ident: &Ident) -> String {
    use syn::ext::IdentExt;
    ident.unraw().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::parse;
    use proc_macro2::TokenStream;
    use quote::quote;

    fn check(args: TokenStream, item: TokenStream) -> Vec<String> {
        let mut errors = Errors::default();
        let options = parse::options(args, &mut errors);
        let wf = parse::function(item, options).unwrap();
        let valid = validate(&wf, &mut errors);
        match errors.finish() {
            Ok(()) => {
                assert!(valid.is_some());
                Vec::new()
            }
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn schedule_options_are_checked() {
        let wf = quote!(
            async fn tick(at: DateTime<Utc>, context: Value) -> Result<(), E> {
                Ok(())
            }
        );
        let ok = check(
            quote!(
                schedule = "0 */5 * * * *",
                timezone = "Europe/Paris",
                automatic_backfill,
                queue = "q"
            ),
            wf.clone(),
        );
        assert!(ok.is_empty(), "{ok:?}");
        let e = check(quote!(schedule = "*/5 * * *"), wf.clone());
        assert!(e[0].contains("has 4 field(s)"), "{e:?}");
        let e = check(quote!(schedule = "0 99 * * *"), wf.clone());
        assert!(e[0].contains("is not valid"), "{e:?}");
        let e = check(
            quote!(schedule = "* * * * *", timezone = "Europe/Pariss"),
            wf.clone(),
        );
        assert!(e[0].contains("not an IANA time zone"), "{e:?}");
        let e = check(
            quote!(schedule = "* * * * *"),
            quote!(
                async fn tick(context: Value) -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(e[0].contains("takes two arguments"), "{e:?}");
        let e = check(quote!(timezone = "UTC", automatic_backfill), wf);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e.iter().all(|m| m.contains("scheduled workflows only")),
            "{e:?}"
        );
    }

    #[test]
    fn a_valid_workflow() {
        let e = check(
            quote!(name = "checkout"),
            quote!(
                pub async fn checkout(order: Order, mut n: u32) -> Result<Receipt, ShopError> {
                    Ok(r)
                }
            ),
        );
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn every_signature_problem_is_reported() {
        let e = check(
            quote!(),
            quote!(
                fn w<T>(&self, (a, b): (u32, u32), c: impl Display) -> u32 {
                    1
                }
            ),
        );
        let expected = [
            "must be `async fn`",
            "cannot be generic",
            "impl Trait",
            "cannot take `self`",
            "plain names",
            "must return `Result<T, E>`",
        ];
        assert_eq!(e.len(), expected.len(), "{e:#?}");
        for want in expected {
            assert!(
                e.iter().any(|m| m.contains(want)),
                "missing {want:?} in {e:#?}"
            );
        }
    }

    #[test]
    fn self_type_is_rejected() {
        let e = check(
            quote!(),
            quote!(
                async fn w(x: Self) -> Result<Vec<Self>, E> {
                    Ok(vec![x])
                }
            ),
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("instead of `Self`"), "{e:?}");
    }

    #[test]
    fn self_in_body_is_rejected() {
        let e = check(
            quote!(),
            quote!(
                async fn w() -> Result<u32, E> {
                    Self::helper();
                    let x: Self = y;
                    Ok(1)
                }
            ),
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].contains("instead of `Self` in a #[workflow] body"),
            "{e:?}"
        );
        let e = check(
            quote!(),
            quote!(
                async fn w() -> Result<u32, E> {
                    struct S;
                    impl S {
                        fn n() -> Self {
                            S
                        }
                    }
                    Ok(1)
                }
            ),
        );
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn empty_name() {
        let e = check(
            quote!(name = ""),
            quote!(
                async fn w() -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(e[0].contains("cannot be empty"), "{e:?}");
    }

    #[test]
    fn body_is_guarded() {
        let e = check(
            quote!(),
            quote!(
                async fn w() -> Result<(), E> {
                    tokio::spawn(x);
                    Ok(())
                }
            ),
        );
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("runs concurrently"), "{e:?}");
    }

    #[test]
    fn opt_out_on_the_function() {
        let e = check(
            quote!(),
            quote!(
                #[nondeterministic]
                async fn w() -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(
            e[0].contains("goes on a statement inside the workflow body"),
            "{e:?}"
        );
    }

    #[test]
    fn raw_name_default() {
        let mut errors = Errors::default();
        let wf = parse::function(
            quote!(
                async fn r#match() -> Result<(), E> {
                    Ok(())
                }
            ),
            Default::default(),
        )
        .unwrap();
        let valid = validate(&wf, &mut errors).unwrap();
        assert_eq!(valid.name, "match");
        assert_eq!(valid.max_recovery_attempts, DEFAULT_MAX_RECOVERY_ATTEMPTS);
    }
}
