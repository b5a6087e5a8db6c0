//! Parsing `#[step]`: the options and the function, into a [`StepFn`].

use proc_macro2::{Span, TokenStream};
use syn::LitStr;

use crate::attr::{self, Accepted, Rename};
use crate::error::{Errors, Failure};
use crate::func::{self, AnnotatedFn, Param};
use crate::source_hash::source_hash;

/// The options `#[step]` accepts.
pub(crate) const ACCEPTED: Accepted = Accepted {
    macro_name: "#[step]",
    keys: &[
        "name",
        "max_attempts",
        "interval",
        "backoff",
        "max_interval",
        "retry_if",
        "timeout",
        "preemptible",
    ],
    renames: &[
        Rename {
            from: "timeout_seconds",
            to: "timeout",
            note: ", which takes a duration string such as \"30s\"",
        },
        Rename {
            from: "retries_allowed",
            to: "max_attempts",
            note: ": instead of a flag, give the number of attempts, e.g. `max_attempts = 3`",
        },
        Rename {
            from: "max_retries",
            to: "max_attempts",
            note: ", which counts the first attempt too: `max_retries = 2` is `max_attempts = 3`",
        },
        Rename {
            from: "retries",
            to: "max_attempts",
            note: ", which counts the first attempt too: 2 retries is `max_attempts = 3`",
        },
        Rename {
            from: "max_recovery_attempts",
            to: "max_attempts",
            note: ": `max_recovery_attempts` is a #[workflow] option",
        },
        Rename {
            from: "interval_seconds",
            to: "interval",
            note: ", which takes a duration string such as \"1.5s\"",
        },
        Rename {
            from: "base_interval",
            to: "interval",
            note: ", which takes a duration string such as \"1.5s\"",
        },
        Rename {
            from: "backoff_rate",
            to: "backoff",
            note: "",
        },
        Rename {
            from: "backoff_factor",
            to: "backoff",
            note: "",
        },
    ],
};

/// Defaults, as in DBOS's other SDKs.
pub(crate) mod defaults {
    /// One attempt: no retries.
    pub(crate) const MAX_ATTEMPTS: u32 = 1;
    /// 1 s before the second attempt.
    pub(crate) const INTERVAL_MILLIS: u64 = 1_000;
    /// The wait doubles after each attempt.
    pub(crate) const BACKOFF: f64 = 2.0;
    /// The wait never exceeds an hour.
    pub(crate) const MAX_INTERVAL_MILLIS: u64 = 3_600_000;
}

/// The options as written, each with the span of its key; `None` when not given (or given with
/// an invalid value, which is reported).
#[derive(Debug, Default)]
pub(crate) struct StepOptions {
    /// `name = ".."`.
    pub(crate) name: Option<LitStr>,
    /// `max_attempts = N`.
    pub(crate) max_attempts: Option<(u32, Span)>,
    /// `interval = ".."`, in milliseconds.
    pub(crate) interval: Option<(u64, Span)>,
    /// `backoff = x`.
    pub(crate) backoff: Option<(f64, Span)>,
    /// `max_interval = ".."`, in milliseconds.
    pub(crate) max_interval: Option<(u64, Span)>,
    /// `retry_if = path`.
    pub(crate) retry_if: Option<(syn::Path, Span)>,
    /// `timeout = ".."`, in milliseconds (zero is refused by validation).
    pub(crate) timeout: Option<(u64, Span)>,
    /// `preemptible` or `preemptible = bool`.
    pub(crate) preemptible: Option<(bool, Span)>,
}

/// A `#[step]` function, before validation.
#[derive(Debug)]
pub(crate) struct StepFn {
    /// The function.
    pub(crate) func: AnnotatedFn,
    /// Its parameters.
    pub(crate) params: Vec<Param>,
    /// The options.
    pub(crate) options: StepOptions,
    /// The hash of the function's source.
    pub(crate) source_hash: String,
}

/// Parses the options; bad ones are pushed to `errors`.
pub(crate) fn options(args: TokenStream, errors: &mut Errors) -> StepOptions {
    let mut o = StepOptions::default();
    for entry in attr::parse_options(args, &ACCEPTED, errors) {
        let result = match attr::key(&entry).as_str() {
            "name" => attr::string(&entry, "name = \"charge_card\"").map(|s| o.name = Some(s)),
            "timeout" => attr::duration_millis(&entry, "timeout = \"30s\"")
                .map(|ms| o.timeout = Some((ms, entry.key.span()))),
            "preemptible" => attr::flag(&entry, "preemptible")
                .map(|b| o.preemptible = Some((b, entry.key.span()))),
            _ => retry_option(&entry, &mut o).unwrap_or(Ok(())),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    o
}

/// Reads one of the retry options (`max_attempts`, `interval`, `backoff`, `max_interval`,
/// `retry_if`) into `o`; `None` when `entry` is not one of them. Shared with
/// `#[transaction]`, whose own errors are retried the same way.
pub(crate) fn retry_option(
    entry: &attr::OptionEntry,
    o: &mut StepOptions,
) -> Option<syn::Result<()>> {
    let span = entry.key.span();
    Some(match attr::key(entry).as_str() {
        "max_attempts" => attr::int_at_least::<u32>(
            entry,
            1,
            "it counts every attempt, the first one included (1 means no retries)",
            "max_attempts = 3",
        )
        .map(|n| o.max_attempts = Some((n, span))),
        "interval" => attr::duration_millis(entry, "interval = \"500ms\"")
            .map(|ms| o.interval = Some((ms, span))),
        "backoff" => attr::float_at_least(
            entry,
            1.0,
            "the wait is multiplied by it after each failed attempt, and a wait that shrinks \
             would retry faster the longer a dependency is down",
            "backoff = 2.0",
        )
        .map(|b| o.backoff = Some((b, span))),
        "max_interval" => attr::duration_millis(entry, "max_interval = \"1m\"")
            .map(|ms| o.max_interval = Some((ms, span))),
        "retry_if" => {
            attr::path(entry, "retry_if = is_transient").map(|p| o.retry_if = Some((p, span)))
        }
        _ => return None,
    })
}

/// Parses the function.
pub(crate) fn function(item: TokenStream, options: StepOptions) -> Result<StepFn, Failure> {
    let func = AnnotatedFn::parse(item, "#[step]", "a step whose result is recorded")?;
    let params = func::params(&func.sig);
    let source_hash = source_hash(&func);
    Ok(StepFn {
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
    fn all_options_parse() {
        let mut e = Errors::default();
        let o = options(
            quote!(
                name = "charge",
                max_attempts = 3,
                interval = "500ms",
                backoff = 1.5,
                max_interval = "1m",
                retry_if = errors::is_transient,
                timeout = "30s",
                preemptible
            ),
            &mut e,
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(o.timeout.unwrap().0, 30_000);
        assert!(o.preemptible.unwrap().0);
        assert_eq!(o.name.unwrap().value(), "charge");
        assert_eq!(o.max_attempts.unwrap().0, 3);
        assert_eq!(o.interval.unwrap().0, 500);
        assert_eq!(o.backoff.unwrap().0, 1.5);
        assert_eq!(o.max_interval.unwrap().0, 60_000);
        let path = o.retry_if.unwrap().0;
        assert_eq!(quote!(#path).to_string(), "errors :: is_transient");
    }

    #[test]
    fn integer_backoff_is_accepted() {
        let mut e = Errors::default();
        let o = options(quote!(backoff = 3), &mut e);
        assert!(e.is_empty());
        assert_eq!(o.backoff.unwrap().0, 3.0);
    }

    #[test]
    fn option_errors() {
        let e = errors(quote!(max_attempts = 0));
        assert!(
            e[0].contains("must be at least 1: it counts every attempt"),
            "{e:?}"
        );
        let e = errors(quote!(interval = "500"));
        assert!(
            e[0].contains("option `interval`: \"500\" has no unit"),
            "{e:?}"
        );
        let e = errors(quote!(interval = 500));
        assert!(e[0].contains("takes a duration string"), "{e:?}");
        let e = errors(quote!(backoff = 0.5));
        assert!(e[0].contains("must be at least 1.0"), "{e:?}");
        let e = errors(quote!(retry_if = "is_transient"));
        assert!(e[0].contains("path of a function"), "{e:?}");
        let e = errors(quote!(retries_allowed = true));
        assert!(
            e[0].contains("use `max_attempts` instead of `retries_allowed`"),
            "{e:?}"
        );
        let e = errors(quote!(timeout = "30"));
        assert!(
            e[0].contains("option `timeout`: \"30\" has no unit"),
            "{e:?}"
        );
        let e = errors(quote!(timeout_seconds = 30));
        assert!(
            e[0].contains("use `timeout` instead of `timeout_seconds`"),
            "{e:?}"
        );
        let e = errors(quote!(preemptible = 1));
        assert!(e[0].contains("option `preemptible` is a flag"), "{e:?}");
        let e = errors(quote!(max_attempts = 2, max_attempts = 3));
        assert!(
            e[0].contains("duplicate option `max_attempts` in #[step]"),
            "{e:?}"
        );
    }

    #[test]
    fn several_errors_are_all_reported() {
        let e = errors(quote!(max_attempts = 0, interval = "1x", bogus = 1));
        assert_eq!(e.len(), 3, "{e:?}");
    }
}
