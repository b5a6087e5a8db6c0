//! `#[workflow]`, `#[step]`, `#[transaction]` and `#[dbos_testkit::test]` used the ways they
//! are meant to be: each module is one case that must compile (and its tests pass), one file
//! per case under `<macro>/` beside this file.
//!
//! These were trybuild `pass` cases; as an ordinary test crate cargo builds them once with the
//! rest of the workspace, and trybuild (`tests/ui.rs`) is left with the compile-fail cases,
//! which it only type-checks. A `#[test]` here that only builds calls checks that the expansion
//! type-checks where the user calls it. No case launches: the cases share one binary, whose
//! workflows would all register at a launch (two share the name `checkout`, one schedules onto
//! a queue no launch here declares).

// The cases declare items `pub` where an application would (the macros must keep the
// visibility); in a test crate nothing is exported, so each would be an unreachable `pub`.
#![allow(unreachable_pub)]

mod workflow {
    mod nondeterministic_opt_out;
    // Bodies on the signature's line are the case: rustfmt would break them.
    #[rustfmt::skip]
    mod one_line_body;
    mod scheduled;
    mod workflow_with_steps;
}

mod step {
    mod step_method;
    mod step_timeout_preemptible;
}

mod transaction {
    mod transactions;
}

mod test {
    mod timeout;
}
