//! `dbos-rs`: the command line for workflows in a DBOS system database, written by this
//! library or by any DBOS SDK. DBOS's CLI verbs and flags (`workflow list|get|steps|cancel|
//! resume|fork`, `workflow queue list`, `migrate`, `-s/--sys-db-url`, `--schema`,
//! `DBOS_SYSTEM_DATABASE_URL`) work the same here, so habits and scripts carry over; the
//! binary is named `dbos-rs` so it can sit beside DBOS's `dbos`.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod args;
mod commands;
mod output;
mod postgres;
mod time;

use std::process::ExitCode;

use clap::Parser;
use dbos_core::{Error, ErrorKind};

/// Prints an error as one line saying what was wrong and what to do.
fn report(e: &Error) {
    // The message names the workflow already; the step context is for library callers.
    let mut message = match e.workflow_id() {
        Some(id) if !e.message().contains(id) => e.to_string(),
        _ => e.message().to_owned(),
    }
    .replace('\n', "; ");
    let hint = match e.kind() {
        ErrorKind::Connection => {
            " (check the URL given with -s/--sys-db-url or DBOS_SYSTEM_DATABASE_URL, and that the server is running)"
        }
        ErrorKind::NonExistentWorkflow => " (list workflows with `dbos-rs workflow list`)",
        _ => "",
    };
    message.push_str(hint);
    eprintln!("error: {message}");
}

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        eprintln!("error: dbos-rs failed unexpectedly ({what}); please report this");
    }));
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}
