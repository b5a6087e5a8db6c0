//! The one funnel every macro result goes through.

use proc_macro::TokenStream;

/// Turns an expansion result into tokens. On error, the user's original item is emitted
/// unchanged next to the `compile_error!`s, so the function still exists and callers get no
/// cascade of "cannot find function" errors.
pub(crate) fn funnel(
    result: syn::Result<proc_macro2::TokenStream>,
    original: TokenStream,
) -> TokenStream {
    match result {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            let mut out = proc_macro2::TokenStream::from(original);
            out.extend(err.into_compile_error());
            out.into()
        }
    }
}

/// Collects several errors and reports them together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
