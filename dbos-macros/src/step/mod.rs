//! `#[step]`: records an `async fn`'s result when it runs inside a workflow, and retries it.
//!
//! parse ([`parse`]) → validate ([`validate`]) → expand ([`expand`]). Every problem is
//! collected and reported together; on error the function is emitted as written (made `async` if it
//! was not).

pub(crate) mod expand;
pub(crate) mod parse;
pub(crate) mod validate;

use proc_macro2::{Span, TokenStream};

use crate::error::{Errors, Failure};

/// Expands `#[step(args)] item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> Result<TokenStream, Failure> {
    let mut errors = Errors::default();
    let options = parse::options(args, &mut errors);
    let step = match parse::function(item, options) {
        Ok(step) => step,
        Err(mut failure) => {
            if let Err(option_errors) = errors.finish() {
                failure.error.combine(option_errors);
            }
            return Err(failure);
        }
    };
    let valid = validate::validate(&step, &mut errors);
    match (valid, errors.finish()) {
        (Some(valid), Ok(())) => Ok(expand::expand(&valid)),
        (_, Err(error)) => Err(Failure {
            error,
            replacement: Some(expand::fallback(&step)),
        }),
        (None, Ok(())) => Err(Failure {
            error: syn::Error::new(
                Span::call_site(),
                "internal error in #[step]: validation failed without an error",
            ),
            replacement: Some(expand::fallback(&step)),
        }),
    }
}
