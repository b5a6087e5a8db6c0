//! Compile-time behavior of `#[workflow]`, `#[step]`, `#[transaction]` and `#[dbos_testkit::test]`: one case per
//! diagnostic, with the compiler's output committed next to it (`tests/ui/<macro>/fail/<mistake>.stderr`; `test` is
//! `#[dbos_testkit::test]`). The uses that must compile are `tests/pass/main.rs`.
//!
//! Regenerate the `.stderr` files after an intended change with
//! `TRYBUILD=overwrite cargo test -p dbos-macros --test ui`, and review the diff like code:
//! each message must point at the user's code and say why. The output depends on the
//! compiler version, so run this on the toolchain CI uses.

#[test]
fn ui() {
    // Only compile-fail cases: trybuild then only type-checks (`cargo check`) the cases and
    // their dependencies, all cases in one cargo run. A single `pass` case would make it build
    // and link every dependency (dbos-core, tokio, rustls, ...) again in `target/tests/trybuild`
    // and each case as a binary, one cargo run per case: that was most of this test's time. The
    // cases that must compile are an ordinary test crate, `tests/pass/main.rs`.
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/workflow/fail/*.rs");
    t.compile_fail("tests/ui/step/fail/*.rs");
    t.compile_fail("tests/ui/test/fail/*.rs");
    t.compile_fail("tests/ui/transaction/fail/*.rs");
}
