//! Attribute macros for `dbos-core` and `dbos-testkit`.
//!
//! Use them through their re-exports (`dbos_core::workflow`, `dbos_testkit::test`), which
//! carry the documentation. Each macro is a thin entry point: parse → validate → expand live
//! in their own modules and work on `proc_macro2` types, and every error is reported together
//! with the user's original item so one mistake gives one error.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod error;
mod test_attr;

use proc_macro::TokenStream;

/// `#[dbos_testkit::test]`: see `dbos_testkit::test`.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    error::funnel(test_attr::expand(args.into(), item.clone().into()), item)
}
