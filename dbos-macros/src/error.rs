//! The one funnel every macro result goes through.

use proc_macro::TokenStream;

/// Why an expansion failed, and what to emit in place of the user's item.
///
/// `replacement` is `None` when the user's original item should be emitted unchanged, or the
/// tokens to emit instead (a stub with the signature the successful expansion would have had,
/// or the original item cleaned of attributes only the macro understands). Either way the
/// function keeps existing, so one mistake gives one error and not a cascade at call sites.
#[derive(Debug)]
pub(crate) struct Failure {
    /// Every error found, combined.
    pub(crate) error: syn::Error,
    /// What to emit instead of the original item, if not the original item itself.
    pub(crate) replacement: Option<proc_macro2::TokenStream>,
}

impl From<syn::Error> for Failure {
    fn from(error: syn::Error) -> Self {
        Failure {
            error,
            replacement: None,
        }
    }
}

/// Turns an expansion result into tokens. On error, the user's original item (or the
/// replacement the expansion chose, see [`Failure`]) is emitted next to the
/// `compile_error!`s, so the function still exists and callers get no cascade of "cannot find
/// function" errors.
pub(crate) fn funnel<E: Into<Failure>>(
    result: Result<proc_macro2::TokenStream, E>,
    original: TokenStream,
) -> TokenStream {
    match result {
        Ok(tokens) => tokens.into(),
        Err(failure) => {
            let Failure { error, replacement } = failure.into();
            let mut out = replacement.unwrap_or_else(|| original.into());
            out.extend(error.into_compile_error());
            out.into()
        }
    }
}

/// Collects several errors and reports them together.
#[derive(Debug, Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Adds one error.
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    /// Adds every error of `other`.
    pub(crate) fn append(&mut self, other: Errors) {
        if let Some(e) = other.0 {
            self.push(e);
        }
    }

    /// Whether no error was pushed.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// `Err` with every pushed error combined, or `Ok` when there was none.
    pub(crate) fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
