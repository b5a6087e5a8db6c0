//! `dbos-rs`: the command line for workflows in a DBOS system database, written by this
//! library or by any DBOS SDK. DBOS's CLI verbs and flags (`workflow list|get|steps|cancel|
//! resume|fork`, `workflow queue list`, `migrate`, `-s/--sys-db-url`, `--schema`,
//! `DBOS_SYSTEM_DATABASE_URL`) work the same here, so habits and scripts carry over; the
//! binary is named `dbos-rs` so it can sit beside DBOS's `dbos`.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod aggregate;
mod args;
mod commands;
mod dashboard;
mod export;
mod messages;
mod output;
mod postgres;
mod schedule;
mod time;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use dbos_core::{Error, ErrorKind};

/// Where the system database URL came from, for errors about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlFrom {
    Flag,
    Environment,
    Nowhere,
}

impl UrlFrom {
    /// Where `-s/--sys-db-url` got its value: the deepest subcommand that saw it decides
    /// (the option is global, so it may come before or after the command).
    fn of(matches: &clap::ArgMatches) -> UrlFrom {
        let mut found = UrlFrom::Nowhere;
        let mut level = Some(matches);
        while let Some(m) = level {
            match m.value_source("sys_db_url") {
                Some(clap::parser::ValueSource::CommandLine) => found = UrlFrom::Flag,
                Some(clap::parser::ValueSource::EnvVariable) => found = UrlFrom::Environment,
                _ => {}
            }
            level = m.subcommand().map(|(_, sub)| sub);
        }
        found
    }
}

/// Prints an error as one line: what was wrong (with the causes its message does not say
/// already) and what to do.
fn report(e: &Error, url_from: UrlFrom) {
    // The message names the workflow already; the step context is for library callers.
    let mut message = match e.workflow_id() {
        Some(id) if !e.message().contains(id) => e.to_string(),
        _ => e.message().to_owned(),
    };
    for cause in e.causes() {
        message.push_str(": ");
        message.push_str(&cause);
    }
    let mut message = message.replace('\n', "; ");
    let about_the_url = matches!(
        e.kind(),
        ErrorKind::Connection | ErrorKind::Tls | ErrorKind::Config
    );
    let hint = match (e.kind(), url_from) {
        (_, UrlFrom::Environment) if about_the_url => {
            " (the URL came from DBOS_SYSTEM_DATABASE_URL; -s/--sys-db-url overrides it)"
        }
        (_, UrlFrom::Flag) if about_the_url => " (the URL came from -s/--sys-db-url)",
        (ErrorKind::NonExistentWorkflow, _) => " (list workflows with `dbos-rs workflow list`)",
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
    let matches = args::Cli::command().get_matches();
    let cli = match args::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let url_from = UrlFrom::of(&matches);
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
            report(&e, url_from);
            ExitCode::FAILURE
        }
    }
}
