//! `#[workflow]`: turns an `async fn` into a durable workflow.
//!
//! parse ([`parse`]) → validate ([`validate`], which also runs the determinism guard over the
//! body) → expand ([`expand`]). Every problem is collected and reported together; on error the
//! function is replaced by a stub with the signature the expansion would have had.

mod expand;
mod parse;
mod validate;

use proc_macro2::{Span, TokenStream};

use crate::error::{Errors, Failure};

/// Expands `#[workflow(args)] item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> Result<TokenStream, Failure> {
    let mut errors = Errors::default();
    let options = parse::options(args, &mut errors);
    let wf = match parse::function(item, options) {
        Ok(wf) => wf,
        Err(mut failure) => {
            if let Err(option_errors) = errors.finish() {
                failure.error.combine(option_errors);
            }
            return Err(failure);
        }
    };
    let valid = validate::validate(&wf, &mut errors);
    match (valid, errors.finish()) {
        (Some(valid), Ok(())) => Ok(expand::expand(&valid)),
        (_, Err(error)) => Err(Failure {
            error,
            replacement: Some(expand::fallback(&wf)),
        }),
        (None, Ok(())) => Err(Failure {
            error: syn::Error::new(
                Span::call_site(),
                "internal error in #[workflow]: validation failed without an error",
            ),
            replacement: Some(expand::fallback(&wf)),
        }),
    }
}
