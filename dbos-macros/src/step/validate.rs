//! The rules a `#[step]` function must follow, including the ones that involve several
//! options (retry settings without retries, a maximum wait below the first wait). Every
//! problem is reported together, each spanned and saying why.

use proc_macro2::Span;
use syn::{Receiver, Type};

use super::parse::{defaults, StepFn, StepOptions};
use crate::error::Errors;
use crate::func::Param;
use crate::recorded::{self, Role};
use crate::signature;

/// A step that follows every rule: the pieces the expansion needs.
#[derive(Debug)]
pub(crate) struct ValidStep<'a> {
    /// The parsed function.
    pub(crate) step: &'a StepFn,
    /// `T` of `Result<T, E>`.
    pub(crate) ok: &'a Type,
    /// `E` of `Result<T, E>`.
    pub(crate) err: &'a Type,
    /// The name recorded for the step.
    pub(crate) name: String,
    /// The retry policy, defaults applied.
    pub(crate) policy: Policy,
    /// The bound of each attempt, in milliseconds (never zero).
    pub(crate) timeout_millis: Option<u64>,
    /// Whether a stop of the workflow drops the attempt in flight.
    pub(crate) preemptible: bool,
}

/// The retry policy with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Policy {
    /// Attempts, the first one included.
    pub(crate) max_attempts: u32,
    /// Wait before the second attempt.
    pub(crate) interval_millis: u64,
    /// Multiplier of the wait.
    pub(crate) backoff: f64,
    /// Maximum wait.
    pub(crate) max_interval_millis: u64,
}

/// Checks the signature and the options. Returns the validated pieces when this pass found no
/// problem.
pub(crate) fn validate<'a>(step: &'a StepFn, all_errors: &mut Errors) -> Option<ValidStep<'a>> {
    let mut errors = Errors::default();
    let sig = &step.func.sig;
    let o = &step.options;
    let policy = retry_policy(o, "the step runs once", &mut errors);
    let retries = policy.max_attempts > 1;
    if let Some((0, span)) = o.timeout {
        errors.push(syn::Error::new(
            span,
            "option `timeout` must be longer than 0: it bounds each attempt, and an attempt \
             bounded by no time at all could never complete; e.g. `timeout = \"30s\"`, or no \
             `timeout` for attempts without a bound",
        ));
    }

    if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            "#[step] functions must be `async fn`: the step's result is written to the system \
             database before the workflow goes on, and that write is awaited",
        ));
    }

    let result = signature::result_types(&sig.output);
    match result {
        Some((ok, err)) => {
            for (ty, role) in [(ok, Role::Output), (err, Role::Error)] {
                recorded::check(ty, role, "#[step]", &mut errors);
                if let Some(span) = signature::impl_trait_in(ty) {
                    errors.push(syn::Error::new(
                        span,
                        "a #[step] output or error cannot be `impl Trait`: it is recorded, and \
                         decoded into a concrete type when a recovered workflow replays the step",
                    ));
                }
            }
        }
        None => errors.push(signature::not_result_error(
            sig,
            "#[step] functions",
            "the output `T` is recorded, so a workflow replayed after a crash gets the same \
             value without running the step again",
        )),
    }

    if retries {
        for param in &step.params {
            if let Param::Receiver(receiver) = param {
                if !is_shared_reference(receiver) {
                    errors.push(syn::Error::new_spanned(
                        receiver,
                        format!(
                            "a #[step] with retries (`max_attempts = {}`) cannot take `{}`: every \
                             attempt runs the body again and needs its own access to `self`, \
                             which only a shared reference can give; take `&self` (with interior \
                             mutability if needed) or remove the retries",
                            policy.max_attempts,
                            receiver_text(receiver)
                        ),
                    ));
                }
            }
        }
    }

    let name = match &o.name {
        Some(lit) if lit.value().trim().is_empty() => {
            errors.push(syn::Error::new_spanned(
                lit,
                "the step name cannot be empty: it is recorded with the step's result, and \
                 shown by DBOS's tools",
            ));
            String::new()
        }
        Some(lit) => lit.value(),
        None => {
            use syn::ext::IdentExt;
            sig.ident.unraw().to_string()
        }
    };

    let found_none = errors.is_empty();
    all_errors.append(errors);
    if !found_none {
        return None;
    }
    let (ok, err) = result?;
    Some(ValidStep {
        step,
        ok,
        err,
        name,
        policy,
        timeout_millis: o.timeout.map(|(ms, _)| ms),
        preemptible: o.preemptible.is_some_and(|(b, _)| b),
    })
}

/// The retry policy with defaults applied, and the checks on the retry options that span
/// several of them: retry settings without retries (`runs_once` says why there are none,
/// e.g. "the step runs once"), a maximum wait shorter than the first. Shared with
/// `#[transaction]`.
pub(crate) fn retry_policy(o: &StepOptions, runs_once_what: &str, errors: &mut Errors) -> Policy {
    let policy = Policy {
        max_attempts: o
            .max_attempts
            .as_ref()
            .map_or(defaults::MAX_ATTEMPTS, |(n, _)| *n),
        interval_millis: o
            .interval
            .as_ref()
            .map_or(defaults::INTERVAL_MILLIS, |(ms, _)| *ms),
        backoff: o.backoff.as_ref().map_or(defaults::BACKOFF, |(b, _)| *b),
        max_interval_millis: o
            .max_interval
            .as_ref()
            .map_or(defaults::MAX_INTERVAL_MILLIS, |(ms, _)| *ms),
    };
    let retries = policy.max_attempts > 1;
    if !retries {
        let retry_only = [
            ("interval", o.interval.as_ref().map(|(_, s)| *s)),
            ("backoff", o.backoff.as_ref().map(|(_, s)| *s)),
            ("max_interval", o.max_interval.as_ref().map(|(_, s)| *s)),
            ("retry_if", o.retry_if.as_ref().map(|(_, s)| *s)),
        ];
        let runs_once = match &o.max_attempts {
            Some(_) => "`max_attempts` is 1",
            None => "`max_attempts` defaults to 1",
        };
        for (key, span) in retry_only {
            if let Some(span) = span {
                errors.push(syn::Error::new(
                    span,
                    format!(
                        "`{key}` has no effect: {runs_once_what} because {runs_once}; set \
                         `max_attempts` to the number of attempts (e.g. `max_attempts = 3`) to \
                         retry, or remove `{key}`"
                    ),
                ));
            }
        }
    }
    if retries && policy.max_interval_millis < policy.interval_millis {
        let (span, message) = match (&o.max_interval, &o.interval) {
            (Some((_, span)), _) => (
                *span,
                format!(
                    "`max_interval` ({}) is shorter than `interval` ({}): the wait before the \
                     second attempt is `interval`, and it grows by `backoff` up to \
                     `max_interval`",
                    millis_text(policy.max_interval_millis),
                    millis_text(policy.interval_millis)
                ),
            ),
            (None, Some((_, span))) => (
                *span,
                format!(
                    "`interval` ({}) is longer than the default `max_interval` ({}), which caps \
                     every wait; set `max_interval` too",
                    millis_text(policy.interval_millis),
                    millis_text(policy.max_interval_millis)
                ),
            ),
            (None, None) => (Span::call_site(), String::new()),
        };
        if !message.is_empty() {
            errors.push(syn::Error::new(span, message));
        }
    }

    policy
}

/// `&self` or `self: &Self` (any shared reference).
fn is_shared_reference(receiver: &Receiver) -> bool {
    matches!(&*receiver.ty, Type::Reference(r) if r.mutability.is_none())
}

fn receiver_text(receiver: &Receiver) -> String {
    quote::ToTokens::to_token_stream(receiver)
        .to_string()
        .replace("& ", "&")
        .replace(" :", ":")
}

/// `1500` → `1.5s`, `60000` → `1m`: for messages.
fn millis_text(ms: u64) -> String {
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms >= size && ms.is_multiple_of((size / 10).max(1)) {
            let whole = ms / size;
            let tenths = (ms % size) / (size / 10);
            return if tenths == 0 {
                format!("{whole}{unit}")
            } else {
                format!("{whole}.{tenths}{unit}")
            };
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::parse;
    use proc_macro2::TokenStream;
    use quote::quote;

    fn check(args: TokenStream, item: TokenStream) -> Result<Policy, Vec<String>> {
        let mut errors = Errors::default();
        let options = parse::options(args, &mut errors);
        let step = parse::function(item, options).unwrap();
        let valid = validate(&step, &mut errors);
        match errors.finish() {
            Ok(()) => Ok(valid.unwrap().policy),
            Err(e) => Err(e.into_iter().map(|e| e.to_string()).collect()),
        }
    }

    #[test]
    fn defaults() {
        let p = check(
            quote!(),
            quote!(
                async fn s() -> Result<u32, E> {
                    Ok(1)
                }
            ),
        )
        .unwrap();
        assert_eq!(
            p,
            Policy {
                max_attempts: 1,
                interval_millis: 1_000,
                backoff: 2.0,
                max_interval_millis: 3_600_000
            }
        );
    }

    #[test]
    fn retry_settings_need_retries() {
        let e = check(
            quote!(interval = "1s", retry_if = f),
            quote!(
                async fn s() -> Result<u32, E> {
                    Ok(1)
                }
            ),
        )
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].contains(
                "`interval` has no effect: the step runs once because `max_attempts` defaults to 1"
            ),
            "{e:?}"
        );
        assert!(e[1].contains("`retry_if` has no effect"), "{e:?}");
    }

    #[test]
    fn max_interval_must_cover_interval() {
        let e = check(
            quote!(max_attempts = 2, interval = "1m", max_interval = "10s"),
            quote!(
                async fn s() -> Result<u32, E> {
                    Ok(1)
                }
            ),
        )
        .unwrap_err();
        assert!(
            e[0].contains("`max_interval` (10s) is shorter than `interval` (1m)"),
            "{e:?}"
        );
        let e = check(
            quote!(max_attempts = 2, interval = "2h"),
            quote!(
                async fn s() -> Result<u32, E> {
                    Ok(1)
                }
            ),
        )
        .unwrap_err();
        assert!(
            e[0].contains("longer than the default `max_interval` (1h)"),
            "{e:?}"
        );
    }

    #[test]
    fn receivers_with_retries() {
        let ok = check(
            quote!(max_attempts = 2),
            quote!(
                async fn s(&self) -> Result<u32, E> {
                    Ok(1)
                }
            ),
        );
        assert!(ok.is_ok());
        let ok = check(
            quote!(max_attempts = 2),
            quote!(
                async fn s(self: &Self) -> Result<u32, E> {
                    Ok(1)
                }
            ),
        );
        assert!(ok.is_ok());
        for receiver in [
            quote!(self),
            quote!(mut self),
            quote!(&mut self),
            quote!(self: Arc<Self>),
        ] {
            let e = check(
                quote!(max_attempts = 2),
                quote!(async fn s(#receiver) -> Result<u32, E> { Ok(1) }),
            )
            .unwrap_err();
            assert!(
                e[0].contains("with retries (`max_attempts = 2`) cannot take"),
                "{e:?}"
            );
        }
        // Without retries the body runs once, so any receiver works.
        assert!(check(
            quote!(),
            quote!(
                async fn s(mut self) -> Result<u32, E> {
                    Ok(1)
                }
            )
        )
        .is_ok());
    }

    #[test]
    fn signature_rules() {
        let e = check(
            quote!(),
            quote!(
                fn s() -> u32 {
                    1
                }
            ),
        )
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("must be `async fn`"));
        assert!(e[1].contains("must return `Result<T, E>`"));
    }

    #[test]
    fn zero_timeout_is_refused() {
        let item = quote!(
            async fn s() -> Result<u32, E> {
                Ok(1)
            }
        );
        let e = check(quote!(timeout = "0s"), item.clone()).unwrap_err();
        assert!(e[0].contains("`timeout` must be longer than 0"), "{e:?}");
        assert!(check(quote!(timeout = "1ms"), item).is_ok());
    }

    #[test]
    fn durations_in_messages() {
        assert_eq!(millis_text(500), "500ms");
        assert_eq!(millis_text(1_500), "1.5s");
        assert_eq!(millis_text(60_000), "1m");
        assert_eq!(millis_text(3_600_000), "1h");
        assert_eq!(millis_text(1_234), "1234ms");
    }
}
