//! Parsing `#[transaction]`: the options and the function, into a [`TransactionFn`].

use proc_macro2::{Span, TokenStream};
use syn::LitStr;

use crate::attr::{self, Accepted, Rename};
use crate::error::{Errors, Failure};
use crate::func::{self, AnnotatedFn, Param};
use crate::source_hash::source_hash;
use crate::step::parse::{retry_option, StepOptions};

/// The options `#[transaction]` accepts.
pub(crate) const ACCEPTED: Accepted = Accepted {
    macro_name: "#[transaction]",
    keys: &[
        "name",
        "isolation",
        "datasource",
        "max_attempts",
        "interval",
        "backoff",
        "max_interval",
        "retry_if",
    ],
    renames: &[
        Rename {
            from: "isolation_level",
            to: "isolation",
            note: ", e.g. `isolation = \"repeatable_read\"`",
        },
        Rename {
            from: "data_source",
            to: "datasource",
            note: ", e.g. `datasource = \"app\"`",
        },
        Rename {
            from: "database",
            to: "datasource",
            note: ", the name of a data source configured with `Config::data_source(name, url)`",
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
    ],
};

/// An isolation level, as written in the attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isolation {
    Serializable,
    RepeatableRead,
    ReadCommitted,
}

impl Isolation {
    /// `serializable`, `repeatable_read`, `read_committed`; DBOS's spellings
    /// (`SERIALIZABLE`, `REPEATABLE READ`, `READ COMMITTED`) are accepted too.
    fn parse(text: &str) -> Option<Isolation> {
        let normalized = text.trim().to_ascii_lowercase().replace([' ', '-'], "_");
        match normalized.as_str() {
            "serializable" => Some(Isolation::Serializable),
            "repeatable_read" => Some(Isolation::RepeatableRead),
            "read_committed" => Some(Isolation::ReadCommitted),
            _ => None,
        }
    }

    /// The variant of `dbos_core::Isolation`.
    pub(crate) fn variant(self) -> &'static str {
        match self {
            Isolation::Serializable => "Serializable",
            Isolation::RepeatableRead => "RepeatableRead",
            Isolation::ReadCommitted => "ReadCommitted",
        }
    }
}

/// The options as written.
#[derive(Debug, Default)]
pub(crate) struct TransactionOptions {
    /// `name = ".."`.
    pub(crate) name: Option<LitStr>,
    /// `isolation = ".."`.
    pub(crate) isolation: Option<(Isolation, Span)>,
    /// `datasource = ".."`.
    pub(crate) datasource: Option<LitStr>,
    /// The retry options, as `#[step]` reads them.
    pub(crate) retries: StepOptions,
}

/// A `#[transaction]` function, before validation.
#[derive(Debug)]
pub(crate) struct TransactionFn {
    /// The function.
    pub(crate) func: AnnotatedFn,
    /// Its parameters, the transaction included.
    pub(crate) params: Vec<Param>,
    /// The options.
    pub(crate) options: TransactionOptions,
    /// The hash of the function's source.
    pub(crate) source_hash: String,
}

/// Parses the options; bad ones are pushed to `errors`.
pub(crate) fn options(args: TokenStream, errors: &mut Errors) -> TransactionOptions {
    let mut o = TransactionOptions::default();
    for entry in attr::parse_options(args, &ACCEPTED, errors) {
        let span = entry.key.span();
        let result = match attr::key(&entry).as_str() {
            "name" => attr::string(&entry, "name = \"reserve\"").map(|s| o.name = Some(s)),
            "datasource" => {
                attr::string(&entry, "datasource = \"app\"").map(|s| o.datasource = Some(s))
            }
            "isolation" => attr::string(&entry, "isolation = \"repeatable_read\"").and_then(|s| {
                match Isolation::parse(&s.value()) {
                    Some(level) => {
                        o.isolation = Some((level, span));
                        Ok(())
                    }
                    None => Err(syn::Error::new_spanned(
                        &s,
                        format!(
                            "option `isolation`: unknown isolation level {:?}; use \"serializable\" (the \
                             default), \"repeatable_read\" or \"read_committed\" (Postgres runs \
                             read uncommitted as read committed)",
                            s.value()
                        ),
                    )),
                }
            }),
            _ => retry_option(&entry, &mut o.retries).unwrap_or(Ok(())),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    o
}

/// Parses the function.
pub(crate) fn function(
    item: TokenStream,
    options: TransactionOptions,
) -> Result<TransactionFn, Failure> {
    let func = AnnotatedFn::parse(
        item,
        "#[transaction]",
        "a transaction whose statements commit together with its record",
    )?;
    let params = func::params(&func.sig);
    let source_hash = source_hash(&func);
    Ok(TransactionFn {
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
                name = "reserve",
                isolation = "REPEATABLE READ",
                datasource = "app",
                max_attempts = 3,
                interval = "10ms",
                retry_if = is_busy
            ),
            &mut e,
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(o.name.unwrap().value(), "reserve");
        assert_eq!(o.isolation.unwrap().0, Isolation::RepeatableRead);
        assert_eq!(o.datasource.unwrap().value(), "app");
        assert_eq!(o.retries.max_attempts.unwrap().0, 3);
        assert_eq!(o.retries.interval.unwrap().0, 10);
        assert!(o.retries.retry_if.is_some());
    }

    #[test]
    fn isolation_spellings() {
        for (text, level) in [
            ("serializable", Isolation::Serializable),
            ("SERIALIZABLE", Isolation::Serializable),
            ("read_committed", Isolation::ReadCommitted),
            ("READ COMMITTED", Isolation::ReadCommitted),
            ("repeatable-read", Isolation::RepeatableRead),
        ] {
            assert_eq!(Isolation::parse(text), Some(level), "{text}");
        }
        let e = errors(quote!(isolation = "snapshot"));
        assert!(
            e[0].contains("unknown isolation level \"snapshot\""),
            "{e:?}"
        );
        let e = errors(quote!(isolation_level = "serializable"));
        assert!(
            e[0].contains("use `isolation` instead of `isolation_level`"),
            "{e:?}"
        );
        let e = errors(quote!(data_source = "app"));
        assert!(
            e[0].contains("use `datasource` instead of `data_source`"),
            "{e:?}"
        );
    }
}
