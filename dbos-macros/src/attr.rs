//! `key = value` options of the attribute macros: parsing, the generic duplicate-key and
//! unknown-key checks, and typed readers for the values.
//!
//! Every reader returns a spanned error that names the option, shows an example of a valid
//! value, and says why the rule exists.

use std::collections::HashSet;
use std::fmt::Display;
use std::str::FromStr;

use proc_macro2::TokenStream;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, ExprUnary, Ident, Lit, LitStr, Token};

use crate::error::Errors;

/// One option as written: `key = value`, or a bare `key` (always an error, reported by the
/// readers with an example of the value the key needs).
#[derive(Debug)]
pub(crate) struct OptionEntry {
    /// The option's name.
    pub(crate) key: Ident,
    /// The value after `=`, if any.
    pub(crate) value: Option<Expr>,
}

impl Parse for OptionEntry {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        // `parse_any` so that keywords (`crate`, `type`) reach the unknown-option check and
        // get its helpful message instead of "expected identifier".
        let key = Ident::parse_any(input)?;
        if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            let value: Expr = input.parse()?;
            return Ok(OptionEntry {
                key,
                value: Some(value),
            });
        }
        if input.is_empty() || input.peek(Token![,]) {
            return Ok(OptionEntry { key, value: None });
        }
        Err(input.error(format_args!(
            "expected `=` after `{key}`: options are written `key = value`, separated by commas"
        )))
    }
}

/// What one macro accepts.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// How the macro is written in messages, e.g. `#[workflow]`.
    pub(crate) macro_name: &'static str,
    /// Every accepted key, in the order they are listed in messages.
    pub(crate) keys: &'static [&'static str],
    /// Names people are likely to try (older names, DBOS's other SDKs), each with the accepted
    /// key it corresponds to and a short explanation.
    pub(crate) renames: &'static [Rename],
}

/// A likely wrong name for an option, and the accepted name to suggest.
#[derive(Debug)]
pub(crate) struct Rename {
    /// The name that was written.
    pub(crate) from: &'static str,
    /// The accepted key to use instead.
    pub(crate) to: &'static str,
    /// Why, or how the value changes; appended to the hint.
    pub(crate) note: &'static str,
}

/// Parses the macro's arguments into entries. Syntax errors, unknown keys and duplicate keys
/// are pushed to `errors`; the returned entries have known keys, each at most once (the first
/// occurrence wins).
pub(crate) fn parse_options(
    args: TokenStream,
    accepted: &Accepted,
    errors: &mut Errors,
) -> Vec<OptionEntry> {
    let parsed = match Punctuated::<OptionEntry, Token![,]>::parse_terminated.parse2(args) {
        Ok(p) => p,
        Err(e) => {
            errors.push(e);
            return Vec::new();
        }
    };
    let mut entries = Vec::new();
    for entry in parsed {
        let key = entry.key.unraw().to_string();
        if !accepted.keys.contains(&key.as_str()) {
            errors.push(unknown_option(&entry.key, &key, accepted));
            continue;
        }
        entries.push(entry);
    }
    reject_duplicates(entries, accepted, errors)
}

/// Keeps the first occurrence of every key and reports every later one. The one generic
/// duplicate check, so no macro repeats an `if x.is_some()` per option.
fn reject_duplicates(
    entries: Vec<OptionEntry>,
    accepted: &Accepted,
    errors: &mut Errors,
) -> Vec<OptionEntry> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut kept = Vec::new();
    for entry in entries {
        let key = entry.key.unraw().to_string();
        if seen.contains(&key) {
            errors.push(syn::Error::new(
                entry.key.span(),
                format!(
                    "duplicate option `{key}` in {}: each option may be given once, otherwise \
                     it would be unclear which value applies; remove one of them",
                    accepted.macro_name
                ),
            ));
            continue;
        }
        seen.insert(key);
        kept.push(entry);
    }
    kept
}

fn unknown_option(ident: &Ident, key: &str, accepted: &Accepted) -> syn::Error {
    let list = accepted
        .keys
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut message = format!(
        "unknown option `{key}` for {}; accepted options are: {list}",
        accepted.macro_name
    );
    if let Some(rename) = accepted.renames.iter().find(|r| r.from == key) {
        message.push_str(&format!(
            "\nhelp: use `{}` instead of `{key}`{}",
            rename.to, rename.note
        ));
    } else if let Some(close) = closest(key, accepted.keys) {
        message.push_str(&format!("\nhelp: did you mean `{close}`?"));
    }
    syn::Error::new(ident.span(), message)
}

/// The accepted key within two edits of `key`, if any (for typos such as `intervall`).
fn closest<'a>(key: &str, keys: &[&'a str]) -> Option<&'a str> {
    keys.iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The key of an entry, without a raw-identifier prefix.
pub(crate) fn key(entry: &OptionEntry) -> String {
    entry.key.unraw().to_string()
}

/// The value of an entry, or an error at the key showing what to write.
fn value<'a>(entry: &'a OptionEntry, example: &str) -> syn::Result<&'a Expr> {
    entry.value.as_ref().ok_or_else(|| {
        syn::Error::new(
            entry.key.span(),
            format!("option `{}` needs a value, e.g. `{example}`", key(entry)),
        )
    })
}

/// A string literal value, e.g. `name = "checkout"`.
pub(crate) fn string(entry: &OptionEntry, example: &str) -> syn::Result<LitStr> {
    match value(entry, example)? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.clone()),
        other => Err(syn::Error::new_spanned(
            other,
            format!(
                "option `{}` takes a string literal, e.g. `{example}`",
                key(entry)
            ),
        )),
    }
}

/// A flag: the bare key (`automatic_backfill`) or a boolean literal (`automatic_backfill = false`).
pub(crate) fn flag(entry: &OptionEntry, example: &str) -> syn::Result<bool> {
    match &entry.value {
        None => Ok(true),
        Some(Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        })) => Ok(b.value),
        Some(other) => Err(syn::Error::new_spanned(
            other,
            format!(
                "option `{}` is a flag: write `{example}` or `{example} = false`",
                key(entry)
            ),
        )),
    }
}

/// An integer literal value of at least `min`, e.g. `max_attempts = 3`.
pub(crate) fn int_at_least<N>(
    entry: &OptionEntry,
    min: N,
    why: &str,
    example: &str,
) -> syn::Result<N>
where
    N: FromStr + PartialOrd + Display + Copy,
    N::Err: Display,
{
    let expr = value(entry, example)?;
    let below = || {
        syn::Error::new_spanned(
            expr,
            format!(
                "option `{}` must be at least {min}: {why}; e.g. `{example}`",
                key(entry)
            ),
        )
    };
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => {
            let n: N = i.base10_parse().map_err(|e| {
                syn::Error::new_spanned(
                    i,
                    format!("option `{}`: {e}; e.g. `{example}`", key(entry)),
                )
            })?;
            if n < min {
                return Err(below());
            }
            Ok(n)
        }
        Expr::Unary(ExprUnary {
            op: syn::UnOp::Neg(_),
            ..
        }) => Err(below()),
        other => Err(syn::Error::new_spanned(
            other,
            format!(
                "option `{}` takes an integer literal, e.g. `{example}`",
                key(entry)
            ),
        )),
    }
}

/// A float (or integer) literal value of at least `min`, e.g. `backoff = 1.5`.
pub(crate) fn float_at_least(
    entry: &OptionEntry,
    min: f64,
    why: &str,
    example: &str,
) -> syn::Result<f64> {
    let expr = value(entry, example)?;
    let below = || {
        syn::Error::new_spanned(
            expr,
            format!(
                "option `{}` must be at least {min:?}: {why}; e.g. `{example}`",
                key(entry)
            ),
        )
    };
    let n: f64 = match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Float(f), ..
        }) => f.base10_parse()?,
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse()?,
        Expr::Unary(ExprUnary {
            op: syn::UnOp::Neg(_),
            ..
        }) => return Err(below()),
        other => {
            return Err(syn::Error::new_spanned(
                other,
                format!(
                    "option `{}` takes a number literal, e.g. `{example}`",
                    key(entry)
                ),
            ))
        }
    };
    if !n.is_finite() || n < min {
        return Err(below());
    }
    Ok(n)
}

/// A duration string value, in whole milliseconds, e.g. `interval = "500ms"`.
pub(crate) fn duration_millis(entry: &OptionEntry, example: &str) -> syn::Result<u64> {
    let lit = match value(entry, example)? {
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => s.clone(),
        other => {
            return Err(syn::Error::new_spanned(
                other,
                format!(
                    "option `{}` takes a duration string such as \"500ms\", \"1.5s\", \"2m\" or \"1h\", e.g. `{example}`",
                    key(entry)
                ),
            ))
        }
    };
    parse_duration_millis(&lit.value()).map_err(|why| {
        syn::Error::new(
            lit.span(),
            format!("option `{}`: {why}; e.g. `{example}`", key(entry)),
        )
    })
}

/// A non-empty array of non-blank string literals, e.g. `required_roles = ["admin"]`;
/// `what` says what each string is, and `why_one` why an empty list is refused.
pub(crate) fn string_list(
    entry: &OptionEntry,
    what: &str,
    why_one: &str,
    example: &str,
) -> syn::Result<Vec<LitStr>> {
    let expr = value(entry, example)?;
    let Expr::Array(array) = expr else {
        return Err(syn::Error::new_spanned(
            expr,
            format!(
                "option `{}` takes an array of string literals, e.g. `{example}`",
                key(entry)
            ),
        ));
    };
    if array.elems.is_empty() {
        return Err(syn::Error::new_spanned(
            array,
            format!(
                "option `{}` must name at least one {what}: {why_one}; e.g. `{example}`",
                key(entry)
            ),
        ));
    }
    array
        .elems
        .iter()
        .map(|e| match e {
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) if !s.value().trim().is_empty() => Ok(s.clone()),
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => Err(syn::Error::new_spanned(
                s,
                format!(
                    "option `{}`: a {what} cannot be blank; e.g. `{example}`",
                    key(entry)
                ),
            )),
            other => Err(syn::Error::new_spanned(
                other,
                format!(
                    "option `{}` takes an array of string literals, e.g. `{example}`",
                    key(entry)
                ),
            )),
        })
        .collect()
}

/// A path value naming a function, e.g. `retry_if = errors::is_transient`.
pub(crate) fn path(entry: &OptionEntry, example: &str) -> syn::Result<syn::Path> {
    match value(entry, example)? {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => Ok(p.path.clone()),
        other => Err(syn::Error::new_spanned(
            other,
            format!(
                "option `{}` takes the path of a function, e.g. `{example}`",
                key(entry)
            ),
        )),
    }
}

/// Parses `"500ms"`, `"1.5s"`, `"2m"`, `"1h"`: an integer or decimal number followed by one of
/// the units `ms`, `s`, `m`, `h`, with no space. The result must be a whole number of
/// milliseconds. The error says what is wrong, without the option's name.
pub(crate) fn parse_duration_millis(text: &str) -> Result<u64, String> {
    const FORMS: &str =
        "a number followed by ms, s, m or h, like \"500ms\", \"1.5s\", \"2m\" or \"1h\"";
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("{text:?} is not a duration: expected {FORMS}"));
    }
    let unit_millis: u128 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => {
            return Err(format!(
                "{text:?} has no unit, and a bare number would be ambiguous: write {number:?} followed by ms, s, m or h, like \"{number}ms\" or \"{number}s\""
            ))
        }
        other => {
            return Err(format!(
                "{text:?} has the unknown unit {other:?}: expected {FORMS}"
            ))
        }
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() || (number.contains('.') && fraction.is_empty()) || fraction.contains('.') {
        return Err(format!("{text:?} is not a duration: expected {FORMS}"));
    }
    let too_large = || format!("{text:?} is too large for a duration");
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let mut millis = whole.checked_mul(unit_millis).ok_or_else(too_large)?;
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().map_err(|_| too_large())?;
        let scale = 10u128
            .checked_pow(u32::try_from(fraction.len()).map_err(|_| too_large())?)
            .ok_or_else(too_large)?;
        let scaled = digits.checked_mul(unit_millis).ok_or_else(too_large)?;
        if scaled % scale != 0 {
            return Err(format!(
                "{text:?} is not a whole number of milliseconds, the resolution steps are scheduled with"
            ));
        }
        millis = millis.checked_add(scaled / scale).ok_or_else(too_large)?;
    }
    u64::try_from(millis).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    const ACCEPTED: Accepted = Accepted {
        macro_name: "#[test_macro]",
        keys: &["name", "max_attempts", "interval"],
        renames: &[Rename {
            from: "retries_allowed",
            to: "max_attempts",
            note: " (the number of attempts)",
        }],
    };

    fn parse(args: TokenStream) -> (Vec<OptionEntry>, Vec<String>) {
        let mut errors = Errors::default();
        let entries = parse_options(args, &ACCEPTED, &mut errors);
        let messages = match errors.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        };
        (entries, messages)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_millis("500ms"), Ok(500));
        assert_eq!(parse_duration_millis("1s"), Ok(1_000));
        assert_eq!(parse_duration_millis("1.5s"), Ok(1_500));
        assert_eq!(parse_duration_millis("0.25m"), Ok(15_000));
        assert_eq!(parse_duration_millis("2m"), Ok(120_000));
        assert_eq!(parse_duration_millis("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_millis("0s"), Ok(0));
        assert_eq!(parse_duration_millis("1.000s"), Ok(1_000));
    }

    #[test]
    fn bad_durations() {
        assert!(parse_duration_millis("500")
            .unwrap_err()
            .contains("no unit"));
        assert!(parse_duration_millis("5sec")
            .unwrap_err()
            .contains("unknown unit \"sec\""));
        assert!(parse_duration_millis("")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_duration_millis("ms")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_duration_millis(".5s")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_duration_millis("5.s")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_duration_millis("1.2.3s")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_duration_millis("1 s")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration_millis("1.0005s")
            .unwrap_err()
            .contains("whole number of milliseconds"));
        assert!(parse_duration_millis("99999999999999999999999h")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn known_options_parse() {
        let (entries, errors) = parse(quote!(name = "x", max_attempts = 3));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(entries.len(), 2);
        assert_eq!(string(&entries[0], "").unwrap().value(), "x");
        assert_eq!(int_at_least::<u32>(&entries[1], 1, "", "").unwrap(), 3);
    }

    #[test]
    fn unknown_option_lists_accepted_keys() {
        let (entries, errors) = parse(quote!(nmae = "x"));
        assert!(entries.is_empty());
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].contains("unknown option `nmae` for #[test_macro]"),
            "{}",
            errors[0]
        );
        assert!(
            errors[0].contains("`name`, `max_attempts`, `interval`"),
            "{}",
            errors[0]
        );
        assert!(errors[0].contains("did you mean `name`?"), "{}", errors[0]);
    }

    #[test]
    fn rename_hint() {
        let (_, errors) = parse(quote!(retries_allowed = 3));
        assert!(
            errors[0].contains("use `max_attempts` instead of `retries_allowed`"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn keyword_key_is_an_unknown_option() {
        let (_, errors) = parse(quote!(crate = "x"));
        assert!(
            errors[0].contains("unknown option `crate`"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn duplicates_are_reported_once_each() {
        let (entries, errors) = parse(quote!(name = "a", name = "b", name = "c"));
        assert_eq!(entries.len(), 1);
        assert_eq!(errors.len(), 2);
        assert!(
            errors[0].contains("duplicate option `name`"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn missing_value_and_missing_equals() {
        let (entries, errors) = parse(quote!(name));
        assert!(errors.is_empty());
        let e = string(&entries[0], "name = \"checkout\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("needs a value, e.g. `name = \"checkout\"`"),
            "{e}"
        );

        let (_, errors) = parse(quote!(name("x")));
        assert!(
            errors[0].contains("expected `=` after `name`"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn typed_readers_reject_wrong_kinds() {
        let (entries, _) = parse(quote!(name = 3, max_attempts = 0, interval = -1));
        assert!(string(&entries[0], "")
            .unwrap_err()
            .to_string()
            .contains("takes a string literal"));
        let e = int_at_least::<u32>(&entries[1], 1, "because", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be at least 1: because"), "{e}");
        let e = int_at_least::<u32>(&entries[2], 1, "because", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be at least 1"), "{e}");
        let e = float_at_least(&entries[2], 1.0, "because", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be at least 1.0"), "{e}");
        assert!(path(&entries[0], "")
            .unwrap_err()
            .to_string()
            .contains("path of a function"));
        assert!(duration_millis(&entries[0], "")
            .unwrap_err()
            .to_string()
            .contains("duration string"));
    }
}
