//! Parsing `#[workflow]`: the options and the function, into a [`WorkflowFn`].

use proc_macro2::{Span, TokenStream};
use syn::LitStr;

use crate::attr::{self, Accepted, Rename};
use crate::error::{Errors, Failure};
use crate::func::{self, AnnotatedFn, Param};
use crate::source_hash::source_hash;

/// The options `#[workflow]` accepts.
pub(crate) const ACCEPTED: Accepted = Accepted {
    macro_name: "#[workflow]",
    keys: &[
        "name",
        "max_recovery_attempts",
        "schedule",
        "timezone",
        "automatic_backfill",
        "queue",
        "required_roles",
    ],
    renames: &[
        Rename {
            from: "max_retries",
            to: "max_recovery_attempts",
            note: ": a workflow is not retried, it is recovered after a crash, at most this many times",
        },
        Rename {
            from: "cron",
            to: "schedule",
            note: ": the cron expression of a scheduled workflow, e.g. `schedule = \"0 */5 * * * *\"`",
        },
        Rename {
            from: "max_attempts",
            to: "max_recovery_attempts",
            note: ": `max_attempts` is a #[step] option; a workflow is recovered after a crash, at most this many times",
        },
    ],
};

/// The default of `max_recovery_attempts`, as in DBOS's other SDKs.
pub(crate) const DEFAULT_MAX_RECOVERY_ATTEMPTS: i32 = 100;

/// The options as written; `None` when not given (or given with an invalid value, which is
/// reported).
#[derive(Debug, Default)]
pub(crate) struct WorkflowOptions {
    /// `name = ".."`.
    pub(crate) name: Option<LitStr>,
    /// `max_recovery_attempts = N`.
    pub(crate) max_recovery_attempts: Option<(i32, Span)>,
    /// `schedule = "cron"`.
    pub(crate) schedule: Option<LitStr>,
    /// `timezone = "Europe/Paris"`.
    pub(crate) timezone: Option<LitStr>,
    /// `automatic_backfill` (or `= true`), with the key's span.
    pub(crate) automatic_backfill: Option<(bool, Span)>,
    /// `queue = "name"`.
    pub(crate) queue: Option<LitStr>,
    /// `required_roles = ["admin", ..]` (never empty).
    pub(crate) required_roles: Option<Vec<LitStr>>,
}

/// A `#[workflow]` function, before validation.
#[derive(Debug)]
pub(crate) struct WorkflowFn {
    /// The function.
    pub(crate) func: AnnotatedFn,
    /// Its parameters.
    pub(crate) params: Vec<Param>,
    /// The options.
    pub(crate) options: WorkflowOptions,
    /// The hash of the function's source.
    pub(crate) source_hash: String,
}

/// Parses the options; bad ones are pushed to `errors`.
pub(crate) fn options(args: TokenStream, errors: &mut Errors) -> WorkflowOptions {
    let mut options = WorkflowOptions::default();
    for entry in attr::parse_options(args, &ACCEPTED, errors) {
        let result = match attr::key(&entry).as_str() {
            "name" => attr::string(&entry, "name = \"checkout\"").map(|s| options.name = Some(s)),
            "max_recovery_attempts" => attr::int_at_least::<i32>(
                &entry,
                1,
                "it counts how many times recovery may start the workflow again after a crash, and the first run counts",
                "max_recovery_attempts = 10",
            )
            .map(|n| options.max_recovery_attempts = Some((n, entry.key.span()))),
            "schedule" => attr::string(&entry, "schedule = \"0 */5 * * * *\"")
                .map(|s| options.schedule = Some(s)),
            "timezone" => attr::string(&entry, "timezone = \"Europe/Paris\"")
                .map(|s| options.timezone = Some(s)),
            "queue" => attr::string(&entry, "queue = \"reports\"").map(|s| options.queue = Some(s)),
            "required_roles" => attr::string_list(
                &entry,
                "role",
                "a start must be authenticated with one of them, and an empty list would refuse every \
                 start; leave the option out for a workflow anyone may start",
                "required_roles = [\"admin\"]",
            )
            .map(|roles| options.required_roles = Some(roles)),
            "automatic_backfill" => attr::flag(&entry, "automatic_backfill")
                .map(|b| options.automatic_backfill = Some((b, entry.key.span()))),
            _ => Ok(()),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    options
}

/// Parses the function.
pub(crate) fn function(item: TokenStream, options: WorkflowOptions) -> Result<WorkflowFn, Failure> {
    let func = AnnotatedFn::parse(item, "#[workflow]", "a durable workflow")?;
    let params = func::params(&func.sig);
    let source_hash = source_hash(&func);
    Ok(WorkflowFn {
        func,
        params,
        options,
        source_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn errors(args: TokenStream) -> Vec<String> {
        let mut errors = Errors::default();
        options(args, &mut errors);
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn options_parse() {
        let mut e = Errors::default();
        let o = options(quote!(name = "checkout", max_recovery_attempts = 5), &mut e);
        assert!(e.is_empty());
        assert_eq!(o.name.unwrap().value(), "checkout");
        assert_eq!(o.max_recovery_attempts.unwrap().0, 5);
    }

    #[test]
    fn option_errors() {
        let e = errors(quote!(max_recovery_attempts = 0));
        assert!(e[0].contains("must be at least 1"), "{e:?}");
        let e = errors(quote!(max_recovery_attempts = 99999999999));
        assert!(e[0].contains("number too large"), "{e:?}");
        let e = errors(quote!(max_retries = 3));
        assert!(
            e[0].contains("use `max_recovery_attempts` instead"),
            "{e:?}"
        );
        let e = errors(quote!(name = checkout));
        assert!(e[0].contains("takes a string literal"), "{e:?}");
        let e = errors(quote!(retries = "q"));
        assert!(
            e[0].contains("accepted options are: `name`, `max_recovery_attempts`, `schedule`"),
            "{e:?}"
        );
    }

    #[test]
    fn not_a_function() {
        let err = function(
            quote!(
                struct S;
            ),
            WorkflowOptions::default(),
        )
        .unwrap_err();
        assert!(err.error.to_string().contains("applies to an `async fn`"));
    }

    #[test]
    fn unparsable_body_is_kept_as_tokens() {
        let f = function(
            quote!(async fn f() -> Result<(), E> { let = ; }),
            WorkflowOptions::default(),
        )
        .unwrap();
        assert!(f.func.block.is_none());
        assert!(f.func.body.to_string().contains("let ="));
    }
}
