//! Compile-time behavior of `#[workflow]`, `#[step]`, `#[transaction]` and `#[dbos_testkit::test]`: one case per
//! diagnostic, with the compiler's output committed next to it (`tests/ui/<macro>/fail/<mistake>.stderr`; `test` is
//! `#[dbos_testkit::test]`).
//!
//! Regenerate the `.stderr` files after an intended change with
//! `TRYBUILD=overwrite cargo test -p dbos-macros --test ui`, and review the diff like code:
//! each message must point at the user's code and say why. The output depends on the
//! compiler version, so run this on the toolchain CI uses.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/workflow/pass/*.rs");
    t.pass("tests/ui/step/pass/*.rs");
    t.pass("tests/ui/test/pass/*.rs");
    t.pass("tests/ui/transaction/pass/*.rs");
    t.compile_fail("tests/ui/workflow/fail/*.rs");
    t.compile_fail("tests/ui/step/fail/*.rs");
    t.compile_fail("tests/ui/test/fail/*.rs");
    t.compile_fail("tests/ui/transaction/fail/*.rs");
}
