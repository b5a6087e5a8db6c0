//! Stopping a local Postgres nobody uses any more.
//!
//! A process that starts or reuses the server through [`LocalPostgresBuilder::start`]
//! holds a *use lease*: a shared `flock` on `<folder>/users`, kept until
//! [`LocalPostgres::release`] or until the process exits (the kernel drops the lock even
//! when the process is killed). A server started with
//! [`stop_when_unused`](super::LocalPostgresBuilder::stop_when_unused) gets a watchdog: a
//! small detached shell loop, running as the server's account, that stops the server once
//! it has been unused for the idle limit. Unused means both:
//! - no process holds a lease (an exclusive `flock` on `users` succeeds), and
//! - no client is connected (`pg_stat_activity` lists no client backend but its own query),
//!   which covers clients that hold no lease (`psql`, another language's DBOS, the CLI).
//!
//! Before it stops the server it takes the folder's start lock and checks again, so it never
//! stops a server a starting process has just decided to reuse: that process holds the start
//! lock until it holds its lease. The watchdog exits, stopping nothing, when the server stops
//! or restarts by other means, or when someone asks the server to stay
//! (`<folder>/keep-running`, written by a start without an idle limit).
//!
//! [`LocalPostgresBuilder::start`]: super::LocalPostgresBuilder::start
//! [`LocalPostgres::release`]: super::LocalPostgres::release

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::account::{self, ServerAccount};
use super::SUPERUSER;
use crate::error::{Error, Result};

/// The file whose shared locks are the use leases.
pub(super) const USERS_FILE: &str = "users";
/// The marker asking a running watchdog to leave the server running.
pub(super) const KEEP_RUNNING_FILE: &str = "keep-running";

/// The watchdog loop. Arguments: `$1` folder, `$2` binaries folder, `$3` port, `$4` idle
/// limit in seconds, `$5` poll interval in seconds; the superuser and its password come in
/// `PGUSER` and `PGPASSWORD`.
/// The subshell runs in the background so the `sh` we start exits at once: the loop is
/// adopted by init and no process of ours has to wait for it. Its first line is a comment so
/// that `ps` shows what the process is.
const SCRIPT: &str = r#"# dbos local Postgres idle watchdog (stops the server once unused)
root=$1 bin=$2 port=$3 idle=$4 poll=$5
(
  exec </dev/null >>"$root/server.log" 2>&1
  pid_of_server() { head -n 1 "$root/data/postmaster.pid" 2>/dev/null; }
  server=$(pid_of_server)
  [ -n "$server" ] || exit 0
  # In use: a process holds a lease, or a client is connected. When the count cannot be
  # read (too many connections, say) the server counts as in use.
  in_use() {
    if ! flock -n -x 8 8<"$root/users"; then return 0; fi
    [ -x "$bin/psql" ] || return 1
    clients=$(PGHOST=127.0.0.1 PGPORT=$port PGDATABASE=postgres PGCONNECT_TIMEOUT=10 \
      PGAPPNAME=dbos-local-postgres-watchdog "$bin/psql" -X -q -A -t -c \
      "select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()" \
      2>/dev/null) || return 0
    [ "$clients" != 0 ]
  }
  quiet=0
  while sleep "$poll"; do
    [ -e "$root/keep-running" ] && exit 0
    [ "$(pid_of_server)" = "$server" ] || exit 0
    if in_use; then quiet=0; continue; fi
    quiet=$((quiet + poll))
    [ "$quiet" -ge "$idle" ] || continue
    # Under the start lock: a process that has just chosen to reuse the server holds it
    # until its lease is taken, so this second look sees it.
    stopped=$(
      exec 9<"$root/lock"
      flock -x 9
      if [ ! -e "$root/keep-running" ] && [ "$(pid_of_server)" = "$server" ] && ! in_use; then
        echo "dbos local Postgres watchdog: unused for ${quiet}s (limit ${idle}s), stopping the server" >&2
        "$bin/pg_ctl" -D "$root/data" -m fast -w stop >&2 && echo yes
      fi
    )
    [ "$stopped" = yes ] && exit 0
    quiet=0
  done
) &
"#;

/// Holds this process's use lease on the server in `root` until dropped.
pub(super) fn take_lease(root: &Path) -> Result<File> {
    let path = root.join(USERS_FILE);
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(format!("could not open {}", path.display()), e))?;
    file.lock_shared()
        .map_err(|e| Error::io(format!("could not lock {}", path.display()), e))?;
    Ok(file)
}

/// Starts the watchdog of the server just started in `root`, stopping it after `idle`
/// unused. Requires `sh` and `flock` (util-linux); without them the server keeps running,
/// as it did before watchdogs, and a warning says so.
pub(super) fn spawn(
    root: &Path,
    bin_dir: &Path,
    port: u16,
    password: &str,
    idle: Duration,
    account: Option<&ServerAccount>,
) -> Result<()> {
    // Within what any shell's arithmetic holds (68 years).
    let idle_secs = idle.as_secs_f64().ceil().clamp(1.0, f64::from(i32::MAX)) as u64;
    let poll_secs = (idle_secs / 3).clamp(1, 30);
    let mut cmd = account::command(Path::new("sh"), account);
    {
        use std::os::unix::process::CommandExt;
        // Its own process group: Ctrl-C on the application does not reach it.
        cmd.process_group(0);
    }
    cmd.current_dir(root)
        .env("PGPASSWORD", password)
        .env("PGUSER", SUPERUSER)
        .arg("-c")
        .arg(SCRIPT)
        .arg("dbos-local-postgres-watchdog")
        .arg(root)
        .arg(bin_dir)
        .arg(port.to_string())
        .arg(idle_secs.to_string())
        .arg(poll_secs.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !flock_available() {
        tracing::warn!(
            "`flock` (util-linux) is not installed, so the local Postgres cannot stop itself when \
             unused; stop it with `dbos-rs postgres stop`"
        );
        return Ok(());
    }
    let status = cmd.status().map_err(|e| {
        Error::io(
            "could not start the local Postgres's idle watchdog (sh)".to_owned(),
            e,
        )
    })?;
    if !status.success() {
        tracing::warn!(%status, "the local Postgres's idle watchdog did not start; the server keeps running until stopped");
    }
    tracing::debug!(idle_secs, poll_secs, root = %root.display(), "local Postgres idle watchdog started");
    Ok(())
}

fn flock_available() -> bool {
    Command::new("flock")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
