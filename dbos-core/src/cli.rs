//! Command-line entry points an application binary mounts, for what only a binary that holds
//! the workflows' code can do. Today: the replay check, "will this build finish the
//! workflows in flight?" as one command in CI or before a deploy.
//!
//! ```no_run
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     let mut args = std::env::args().skip(1);
//!     if args.next().as_deref() == Some("replay-check") {
//!         // `my-app replay-check --name checkout --status PENDING -s $DATABASE_URL`
//!         return dbos_core::cli::replay_check_main(args).await;
//!     }
//!     // ... the application's own main
//!     std::process::ExitCode::SUCCESS
//! }
//! ```

use std::process::ExitCode;

use crate::error::{Error, Result};
use crate::manage::ListWorkflows;
use crate::replay::{ReplayReport, Replayer};
use crate::workflow::call::Status;

/// The replay check's usage, printed by `--help` and after a bad argument.
pub const REPLAY_CHECK_USAGE: &str = "\
usage: <app> replay-check [options]
Replays recorded workflows with this binary's code, read-only, and reports the first
divergence of each. Exit status: 0 every history replays, 1 some diverged, 2 error.
options (as `dbos-rs workflow list`):
  -s, --sys-db-url URL           the system database (default: $DBOS_SYSTEM_DATABASE_URL)
  -w, --workflow-id ID           this workflow (repeatable)
  -n, --name NAME                workflows of this name
  -v, --application-version V    workflows of this application version
  -S, --status S[,S...]          workflows with these statuses (e.g. PENDING)
  -t, --start-time RFC3339       workflows created at or after this time
  -e, --end-time RFC3339         workflows created before this time
  -a, --application-name NAME    workflows of this application
  -l, --limit N                  at most N workflows (default: all)
  -o, --offset N                 skip the first N";

/// Parses the replay check's arguments (without the program and verb) and runs it.
///
/// # Errors
/// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for an unknown option,
/// a missing or malformed value, or no database URL; what [`Replayer::connect`] and
/// [`Replayer::check`] fail with.
pub async fn replay_check<I: IntoIterator<Item = String>>(args: I) -> Result<ReplayReport> {
    let (url, query) = parse(args)?;
    Replayer::connect(url).await?.check(&query).await
}

/// [`replay_check`] as a program: prints the report (or the error and the usage) and returns
/// the exit status: success when every history replays, 1 when one diverged, 2 on error.
pub async fn replay_check_main<I: IntoIterator<Item = String>>(args: I) -> ExitCode {
    let args: Vec<String> = args.into_iter().collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{REPLAY_CHECK_USAGE}");
        return ExitCode::SUCCESS;
    }
    match replay_check(args).await {
        Ok(report) => {
            print!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("replay-check: {e}");
            if e.kind() == crate::ErrorKind::InvalidArgument {
                eprintln!("{REPLAY_CHECK_USAGE}");
            }
            ExitCode::from(2)
        }
    }
}

fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<(String, ListWorkflows)> {
    let mut url = std::env::var("DBOS_SYSTEM_DATABASE_URL").ok();
    let mut q = ListWorkflows::new();
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (flag, None),
        };
        let mut value = || -> Result<String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| Error::invalid(format!("replay-check: `{flag}` needs a value")))
        };
        q = match flag.as_str() {
            "-s" | "--sys-db-url" => {
                url = Some(value()?);
                q
            }
            "-w" | "--workflow-id" => q.id(value()?),
            "-n" | "--name" => q.name(value()?),
            "-v" | "--application-version" => q.app_version(value()?),
            "-a" | "--application-name" => q.application_name(value()?),
            "-S" | "--status" => {
                let mut q = q;
                for s in value()?.split(',').filter(|s| !s.is_empty()) {
                    let status = Status::from_name(&s.to_ascii_uppercase()).ok_or_else(|| {
                        Error::invalid(format!(
                            "replay-check: unknown status `{s}` (PENDING, SUCCESS, ERROR, ENQUEUED, DELAYED, \
                             CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED)"
                        ))
                    })?;
                    q = q.status(status);
                }
                q
            }
            "-t" | "--start-time" => q.created_after(time(&flag, &value()?)?),
            "-e" | "--end-time" => q.created_before(time(&flag, &value()?)?),
            "-l" | "--limit" => q.limit(number(&flag, &value()?)?),
            "-o" | "--offset" => q.offset(number(&flag, &value()?)?),
            other => {
                return Err(Error::invalid(format!(
                    "replay-check: unknown option `{other}`"
                )))
            }
        };
    }
    let url = url.ok_or_else(|| {
        Error::invalid(
            "replay-check: no system database: pass -s <url> or set DBOS_SYSTEM_DATABASE_URL",
        )
    })?;
    Ok((url, q))
}

fn time(flag: &str, s: &str) -> Result<std::time::SystemTime> {
    crate::codec::parse_rfc3339(s).ok_or_else(|| {
        Error::invalid(format!(
            "replay-check: `{flag} {s}` is not an RFC 3339 time (e.g. 2026-01-31T12:00:00Z)"
        ))
    })
}

fn number(flag: &str, s: &str) -> Result<u32> {
    s.parse()
        .map_err(|_| Error::invalid(format!("replay-check: `{flag} {s}` is not a whole number")))
}
