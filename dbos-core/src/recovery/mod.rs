//! Recovering the work of executors that died, with no control plane and no table.
//!
//! Every executor holds, for its lifetime, a session-level advisory lock derived from its
//! application and executor id, on a connection of its own. When its process or machine
//! dies, Postgres ends the session and frees the lock. Every executor looks, at launch and
//! then every [`Config::recovery_interval`](crate::Config::recovery_interval), for the
//! executor ids owning `PENDING` workflows of its application version; for each it may
//! recover, it tries that id's lock. Getting it means the executor is gone: its workflows go
//! back to their queues (the internal queue for those started directly), where the normal
//! claim gives each to exactly one live executor, and the lock is released. The executor
//! that re-enqueues them wakes its queues, so it claims them at once rather than at their
//! queue's next poll. Peers racing for the same dead executor recover each workflow once:
//! the second finds nothing left.
//!
//! A free lock is not always a death: after a database restart, or after an executor lost its
//! lock connection, the executor reconnects and takes its lock back two recovery intervals
//! later. A session that has just (re)connected therefore waits
//! [`Config::recovery_grace`](crate::Config::recovery_grace) before it recovers anyone, so the
//! first executor back does not take over the work of live peers meanwhile. A process's first
//! session (a launch, such as an application restarted after a crash) need not wait when the
//! database server has been up for longer than the grace: it recovers at once every executor
//! whose lock is free and whose lock session is not connected (a live executor in its retake
//! delay has reconnected already). Otherwise it waits what is left of the grace.
//!
//! Which ids a peer may recover: generated ones (`dbos-rs-...`, the default) and those
//! matching [`Config::recover_executors_with_prefix`](crate::Config::recover_executors_with_prefix).
//! Executors of other languages hold no such lock, so their ids are never touched. A pinned
//! id is recovered by its own next launch once that launch holds the id's lock: at launch,
//! or later, when the previous process's session ends.

mod lease;

use std::sync::Arc;
use std::time::Instant;

use crate::config::GENERATED_EXECUTOR_PREFIX;
use crate::error::{ErrorKind, Result};
use crate::queue::worker::jittered;
use crate::runtime::RuntimeInner;
use crate::sysdb::executors::{executor_lock_key, LockSession};

/// A fresh executor id: `dbos-rs-<host>-<12 hex>`, unique per launch.
pub(crate) fn generated_executor_id() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{GENERATED_EXECUTOR_PREFIX}{}-{}",
        host_name(),
        &random[..12]
    )
}

/// The machine's host name, reduced to `[A-Za-z0-9-]` (at most 32 characters).
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let raw = if ok {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(32)
        .collect();
    if clean.is_empty() {
        "host".to_owned()
    } else {
        clean
    }
}

/// The streak of failed looks for dead executors, so a lasting failure is seen without a line
/// per look: a look that fails for a reason other than the connection (a role that may not
/// read a table, say) fails the same way at every look, and meanwhile this executor recovers
/// no dead peer's work. The first such failure of a streak is a WARN, the others DEBUG; the
/// first success after a warned streak says so once (INFO). Connection failures (an outage,
/// a restart) stay at DEBUG: they pass (a lost lock session has a WARN of its own).
#[derive(Debug, Default)]
struct Looks {
    warned: bool,
}

impl Looks {
    /// Logs the outcome of one look.
    fn record(&mut self, executor_id: &str, look: Result<()>) {
        match look {
            Err(e) if !self.warned && e.kind() != ErrorKind::Connection => {
                self.warned = true;
                tracing::warn!(
                    executor_id,
                    error = %e,
                    "could not look for dead executors: until a look succeeds, this executor recovers no dead \
                     executor's workflows (live peers that can look still do); trying again every recovery interval"
                );
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not look for dead executors; trying again later");
            }
            Ok(()) if self.warned => {
                self.warned = false;
                tracing::info!(
                    executor_id,
                    "looking for dead executors works again: this executor recovers their workflows again"
                );
            }
            Ok(()) => {}
        }
    }
}

fn own_key(rt: &RuntimeInner) -> i64 {
    executor_lock_key(rt.sysdb.schema(), &rt.app_name, &rt.executor_id)
}

/// How this executor proves it lives: its lock session, or (with no session connection) its
/// lease.
#[derive(Debug)]
pub(crate) enum Liveness {
    /// The lock session, and whether it holds this executor's lock.
    Lock(LockSession, bool),
    /// The lease.
    Lease(lease::Lease),
}

/// At launch: takes this executor's lock ([`claim_identity`]), or its lease where there is no
/// session connection (behind a transaction-mode pooler without a session URL).
pub(crate) async fn start(rt: &Arc<RuntimeInner>) -> Result<Liveness> {
    if rt.sysdb.has_sessions() {
        let (session, held) = claim_identity(rt).await?;
        Ok(Liveness::Lock(session, held))
    } else {
        Ok(Liveness::Lease(lease::claim(rt).await?))
    }
}

/// Keeps this executor's lock or lease and recovers dead executors until shutdown.
pub(crate) async fn serve_liveness(rt: Arc<RuntimeInner>, liveness: Liveness) {
    match liveness {
        Liveness::Lock(session, held) => serve(rt, session, held).await,
        Liveness::Lease(lease) => lease::serve(rt, lease).await,
    }
}

/// Whether peers may recover executor `executor`'s work (a generated id, or one with a
/// configured prefix).
fn recoverable(rt: &RuntimeInner, executor: &str) -> bool {
    rt.config
        .recoverable_prefixes
        .iter()
        .any(|p| executor.starts_with(p.as_str()))
}

/// At launch: opens the lock session and takes this executor's lock; with it, recovers this
/// executor id's own `PENDING` workflows (a pinned id coming back). Without it (another
/// process holds the same pinned id, or the session of this id's previous incarnation has
/// not ended yet), leaves them: [`serve`] keeps trying the lock and recovers them once it
/// has it.
pub(crate) async fn claim_identity(rt: &Arc<RuntimeInner>) -> Result<(LockSession, bool)> {
    let session = rt
        .sysdb
        .lock_session(&rt.executor_id, rt.config.vanished_executor_timeout)
        .await?;
    let held = session.try_lock(own_key(rt)).await?;
    if held {
        recover_own(rt).await?;
    } else {
        tracing::warn!(
            executor_id = %rt.executor_id,
            "another session holds executor id `{}`: its pending workflows are left to it while it lives, and \
             recovered here once it is gone. Give each process its own id, or leave the id unset to have one \
             generated",
            rt.executor_id
        );
    }
    Ok((session, held))
}

/// Re-enqueues this executor id's `PENDING` workflows, except those running or parked in this
/// process: the work of an earlier process that used this id. Called once this executor
/// holds its lock, so that process is gone.
async fn recover_own(rt: &Arc<RuntimeInner>) -> Result<()> {
    let recovered = rt
        .sysdb
        .requeue_pending(
            &rt.executor_id,
            &rt.app_version,
            &rt.app_name,
            &rt.alive_here(),
        )
        .await?;
    if !recovered.is_empty() {
        crate::observe::metrics::recovered(true, recovered.len());
        tracing::info!(
            count = recovered.len(),
            executor_id = %rt.executor_id,
            "recovering this executor id's pending workflows"
        );
        rt.wake_all_queues();
    }
    Ok(())
}

/// Looks for dead executors every `recovery_interval` until shutdown, keeping this
/// executor's lock held.
///
/// The lock session says something every interval (and is exempt from the server's
/// `idle_session_timeout`), so neither the server nor a proxy that ends idle connections
/// frees a live executor's lock; a session that fails or stops answering counts as lost.
///
/// If the lock's connection is lost, this executor looked dead to its peers for a moment (a
/// network partition looks the same as a terminated session): it opens a new session and
/// waits two recovery intervals before taking its lock back, so a live peer that noticed
/// recovers its work meanwhile, and its own executions of that work are fenced off (the
/// watchdog stops them). The work moves once per loss, never back and forth. After a
/// database restart every executor waits the same way; the peers' recovery grace (longer)
/// keeps them from taking over each other's work then.
pub(crate) async fn serve(rt: Arc<RuntimeInner>, mut session: LockSession, mut held: bool) {
    let interval = rt.config.recovery_interval;
    let mut retake_after = Instant::now();
    // The launch's session: it did not just see its connection drop.
    let mut first_session = true;
    let mut looks = Looks::default();
    loop {
        loop {
            if !held && Instant::now() >= retake_after {
                held = take_own_lock(&rt, &session).await;
                if held {
                    if let Err(e) = recover_own(&rt).await {
                        tracing::debug!(error = %e, "could not recover this executor id's work; trying again later");
                        // Let go, so the next look takes the lock and recovers again.
                        let _ = session.unlock(own_key(&rt)).await;
                        held = false;
                    }
                }
            }
            looks.record(
                &rt.executor_id,
                recover_dead_peers(&rt, &session, first_session).await,
            );
            if let Err(e) = session.ping(rt.config.vanished_executor_timeout).await {
                tracing::debug!(error = %e, "the lock session failed");
                break;
            }
            tokio::select! {
                _ = rt.shutdown.cancelled() => return,
                _ = session.closed() => break,
                _ = tokio::time::sleep(jittered(interval)) => {}
            }
        }
        if rt.shutdown.is_cancelled() {
            return;
        }
        tracing::warn!(
            executor_id = %rt.executor_id,
            "lost the connection holding this executor's lock: live peers may now recover this executor's \
             workflows (its executions of them then stop before their next step)"
        );
        session = match rt
            .sysdb
            .lock_session(&rt.executor_id, rt.config.vanished_executor_timeout)
            .await
        {
            Ok(s) => s,
            Err(_) => return, // shutting down
        };
        retake_after = Instant::now() + interval * 2;
        held = false;
        first_session = false;
    }
}

/// Takes this executor's lock on `session`; `false` while another process holds it.
async fn take_own_lock(rt: &RuntimeInner, session: &LockSession) -> bool {
    match session.try_lock(own_key(rt)).await {
        Ok(true) => {
            tracing::info!(executor_id = %rt.executor_id, "holding this executor's lock");
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::debug!(error = %e, "could not take this executor's lock; retrying");
            false
        }
    }
}

/// When `session` may read a free lock as a death: `Settled` once it has been up for the
/// recovery grace; before that, only if it is the launch's session (`first_session`) and the
/// database server has been up for the grace (`Launch`: then also only executors whose lock
/// session is not connected); else not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    Settled,
    Launch,
    NotYet,
}

async fn trust(rt: &RuntimeInner, session: &LockSession, first_session: bool) -> Result<Trust> {
    let grace = rt.config.recovery_grace;
    if session.since.elapsed() >= grace {
        return Ok(Trust::Settled);
    }
    if first_session && session.server_uptime().await? >= grace {
        return Ok(Trust::Launch);
    }
    Ok(Trust::NotYet)
}

/// One look: every executor owning `PENDING` work of this version whose lock is free (and
/// whose id peers may recover) gets its workflows re-enqueued, once this session may read a
/// free lock as a death (see the module's documentation).
async fn recover_dead_peers(
    rt: &Arc<RuntimeInner>,
    session: &LockSession,
    first_session: bool,
) -> Result<()> {
    let trust = trust(rt, session, first_session).await?;
    if trust == Trust::NotYet {
        return Ok(());
    }
    let candidates = rt
        .sysdb
        .pending_executors(&rt.app_version, &rt.app_name, &rt.executor_id)
        .await?;
    for executor in candidates {
        if !recoverable(rt, &executor) {
            continue;
        }
        if trust == Trust::Launch && session.lock_session_open(&executor).await? {
            continue; // alive, taking its lock back
        }
        let key = executor_lock_key(rt.sysdb.schema(), &rt.app_name, &executor);
        if !session.try_lock(key).await? {
            continue; // alive
        }
        // An executor behind a transaction-mode pooler holds a lease, not the lock.
        match rt.sysdb.lease_alive(&rt.app_name, &executor).await {
            Ok(false) => {}
            alive => {
                session.unlock(key).await?;
                alive?;
                continue;
            }
        }
        let recovered = rt
            .sysdb
            .requeue_pending(&executor, &rt.app_version, &rt.app_name, &[])
            .await;
        session.unlock(key).await?;
        let recovered = recovered?;
        if !recovered.is_empty() {
            crate::observe::metrics::recovered(false, recovered.len());
            tracing::info!(
                dead_executor = %executor,
                count = recovered.len(),
                "an executor is gone (its lock is free); its pending workflows are back on their queues"
            );
            rt.wake_all_queues();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines `looks` logs at INFO and above for the outcomes `looks_out`, in order.
    fn logged(looks_out: Vec<Result<()>>) -> Vec<String> {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let mut looks = Looks::default();
            for look in looks_out {
                looks.record("exec-1", look);
            }
        });
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    fn denied() -> Result<()> {
        Err(Error::new(
            ErrorKind::Database,
            "permission denied for table dbos_rs_executor_leases",
        ))
    }

    fn cut() -> Result<()> {
        Err(Error::new(ErrorKind::Connection, "connection closed"))
    }

    #[test]
    fn a_lasting_failure_to_look_for_dead_executors_warns_once_per_streak() {
        let lines = logged(vec![denied(), denied(), denied(), Ok(()), Ok(()), denied()]);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        for i in [0, 2] {
            assert!(lines[i].contains("WARN"), "{lines:#?}");
            assert!(
                lines[i].contains("could not look for dead executors"),
                "{lines:#?}"
            );
            assert!(lines[i].contains("recovers no dead"), "{lines:#?}");
            assert!(lines[i].contains("permission denied"), "{lines:#?}");
            assert!(lines[i].contains("exec-1"), "{lines:#?}");
        }
        assert!(lines[1].contains("INFO"), "{lines:#?}");
        assert!(lines[1].contains("works again"), "{lines:#?}");
    }

    #[test]
    fn connection_failures_to_look_for_dead_executors_do_not_warn() {
        assert_eq!(
            logged(vec![cut(), cut(), Ok(()), cut()]),
            Vec::<String>::new()
        );
        // A streak that began with the connection warns at its first other failure.
        let lines = logged(vec![cut(), denied(), cut(), denied()]);
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains("WARN"), "{lines:#?}");
        assert!(lines[0].contains("permission denied"), "{lines:#?}");
    }
}
