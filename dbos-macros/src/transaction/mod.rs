//! `#[transaction]`: a step whose SQL and whose record commit in one database transaction.
//!
//! parse ([`parse`]) → validate ([`validate`]) → expand ([`expand`]). Every problem is
//! collected and reported together; on error the function is emitted as written (made
//! `async`, and without its transaction argument when that came first), so callers get no
//! cascade of errors.

mod expand;
mod parse;
mod validate;

use proc_macro2::{Span, TokenStream};

use crate::error::{Errors, Failure};

/// Expands `#[transaction(args)] item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> Result<TokenStream, Failure> {
    let mut errors = Errors::default();
    let options = parse::options(args, &mut errors);
    let tx = match parse::function(item, options) {
        Ok(tx) => tx,
        Err(mut failure) => {
            if let Err(option_errors) = errors.finish() {
                failure.error.combine(option_errors);
            }
            return Err(failure);
        }
    };
    let valid = validate::validate(&tx, &mut errors);
    match (valid, errors.finish()) {
        (Some(valid), Ok(())) => Ok(expand::expand(&valid)),
        (_, Err(error)) => Err(Failure {
            error,
            replacement: Some(expand::fallback(&tx)),
        }),
        (None, Ok(())) => Err(Failure {
            error: syn::Error::new(
                Span::call_site(),
                "internal error in #[transaction]: validation failed without an error",
            ),
            replacement: Some(expand::fallback(&tx)),
        }),
    }
}
