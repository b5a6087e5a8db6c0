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
    // trybuild builds the cases as their own crate in `target/tests/trybuild` with its own
    // flags, so it builds every dependency (dbos-core, tokio, rustls, ...) again and links a
    // binary per passing case. The workspace's `[profile.dev]` does not reach that crate: its
    // cargo would default to full debug info, which made those builds and links the bulk of
    // this test's time. No case reads debug info (a panic still names its line).
    std::env::set_var("CARGO_PROFILE_DEV_DEBUG", "false");
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
