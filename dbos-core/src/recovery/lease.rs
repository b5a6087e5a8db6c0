//! Executor liveness without a session: a lease per executor, behind a transaction-mode
//! pooler when no session URL is configured (see [`crate::sysdb::executors`]).
//!
//! The executor takes its lease at launch (recovering its own id's `PENDING` work once it
//! holds it, as with the lock) and renews it every [`renew_every`] in a statement of its own;
//! the lease lasts [`Config::vanished_executor_timeout`](crate::Config::vanished_executor_timeout).
//! A peer recovers an executor once its lease has expired: it takes the lease itself (so two
//! peers do not both work at it, and the executor, should it come back, sees it lost),
//! re-enqueues the work and lets the lease go. A live executor's lease never expires while it
//! can reach the database; one that could not (a partition, an outage longer than the lease)
//! finds its lease taken at its next renewal, stops counting as holding it and takes it back
//! two recovery intervals later, as an executor that lost its lock session does: its
//! executions of the work that moved are fenced off by ownership.
//!
//! Rows do not pile up with restarts: a shutdown deletes its lease, a peer that recovered an
//! executor's work deletes that executor's, and once per lease time a healthy executor
//! deletes its application's leases that expired long ago (executors killed with nothing left
//! to recover; `SystemDatabase::clear_expired_leases`).
//!
//! An expired lease is not always a death: after an outage of the database (or the pooler)
//! longer than the lease, every lease has expired. So an executor recovers peers only once
//! its own renewals have succeeded without a break for
//! [`Config::recovery_grace`](crate::Config::recovery_grace) (longer than two recovery
//! intervals), by when live peers have renewed theirs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::queue::worker::jittered;
use crate::runtime::RuntimeInner;
use crate::Config;

/// How often the lease is renewed: every recovery interval, and at least three times per
/// lease.
pub(crate) fn renew_every(config: &Config) -> Duration {
    config
        .recovery_interval
        .min(config.vanished_executor_timeout / 3)
}

/// This executor's lease: the token it holds it under (one per launch), and whether it
/// holds it.
#[derive(Debug)]
pub(crate) struct Lease {
    holder: String,
    held: bool,
}

/// At launch: creates the lease table if needed and takes this executor's lease; with it,
/// recovers this executor id's own `PENDING` workflows.
pub(crate) async fn claim(rt: &Arc<RuntimeInner>) -> Result<Lease> {
    rt.sysdb.ensure_lease_table().await?;
    let holder = format!("{}:{}", rt.executor_id, uuid::Uuid::new_v4().simple());
    let held = take_own(rt, &holder).await?;
    if held {
        super::recover_own(rt).await?;
    } else {
        tracing::warn!(
            executor_id = %rt.executor_id,
            "another process holds the lease of executor id `{}`: its pending workflows are left to it while it \
             lives, and recovered here once its lease has expired",
            rt.executor_id
        );
    }
    Ok(Lease { holder, held })
}

async fn take_own(rt: &RuntimeInner, holder: &str) -> Result<bool> {
    rt.sysdb
        .take_lease(
            &rt.app_name,
            &rt.executor_id,
            holder,
            rt.config.vanished_executor_timeout,
        )
        .await
}

/// Renews the lease and looks for dead executors until shutdown; lets the lease go then.
pub(crate) async fn serve(rt: Arc<RuntimeInner>, lease: Lease) {
    let every = renew_every(&rt.config);
    let Lease {
        holder: me,
        mut held,
    } = lease;
    let lease = rt.config.vanished_executor_timeout;
    let mut retake_after = Instant::now();
    // Since when every renewal has succeeded (None: the last one failed).
    let mut healthy_since = held.then(Instant::now);
    // When the leases of dead executors are next cleared (once per lease time).
    let mut sweep_at = Instant::now();
    let mut looks = super::Looks::default();
    loop {
        let step = if held {
            rt.sysdb
                .renew_lease(&rt.app_name, &rt.executor_id, &me, lease)
                .await
        } else if Instant::now() >= retake_after {
            take_own(&rt, &me).await
        } else {
            Ok(false)
        };
        match step {
            Ok(true) => {
                if !held {
                    tracing::info!(executor_id = %rt.executor_id, "holding this executor's lease");
                    if let Err(e) = super::recover_own(&rt).await {
                        tracing::debug!(error = %e, "could not recover this executor id's work; trying again later");
                    }
                }
                held = true;
                healthy_since.get_or_insert_with(Instant::now);
            }
            Ok(false) if held => {
                tracing::warn!(
                    executor_id = %rt.executor_id,
                    "this executor's lease expired and a peer took it: live peers may now recover this executor's \
                     workflows (its executions of them then stop before their next step)"
                );
                held = false;
                healthy_since = None;
                retake_after = Instant::now() + rt.config.recovery_interval * 2;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(error = %e, "could not renew this executor's lease; retrying");
                healthy_since = None;
            }
        }
        if healthy_since.is_some_and(|t| t.elapsed() >= rt.config.recovery_grace) {
            looks.record(&rt.executor_id, recover_dead_peers(&rt, &me).await);
            if Instant::now() >= sweep_at {
                sweep_at = Instant::now() + lease;
                clear_dead_leases(&rt).await;
            }
        }
        tokio::select! {
            _ = rt.shutdown.cancelled() => break,
            _ = tokio::time::sleep(jittered(every)) => {}
        }
    }
    if held {
        let _ = rt
            .sysdb
            .release_lease(&rt.app_name, &rt.executor_id, &me)
            .await;
    }
}

/// One look: every executor owning `PENDING` work of this version (whose id peers may
/// recover) whose lease has expired gets its workflows re-enqueued, under its lease taken
/// for the time of the recovery.
async fn recover_dead_peers(rt: &Arc<RuntimeInner>, me: &str) -> Result<()> {
    let candidates = rt
        .sysdb
        .pending_executors(&rt.app_version, &rt.app_name, &rt.executor_id)
        .await?;
    for executor in candidates {
        if !super::recoverable(rt, &executor) {
            continue;
        }
        if !rt
            .sysdb
            .take_lease(
                &rt.app_name,
                &executor,
                me,
                rt.config.vanished_executor_timeout,
            )
            .await?
        {
            continue; // alive
        }
        let recovered = rt
            .sysdb
            .requeue_pending(&executor, &rt.app_version, &rt.app_name, &[])
            .await;
        rt.sysdb.release_lease(&rt.app_name, &executor, me).await?;
        let recovered = recovered?;
        if !recovered.is_empty() {
            crate::observe::metrics::recovered(false, recovered.len());
            tracing::info!(
                dead_executor = %executor,
                count = recovered.len(),
                "an executor is gone (its lease expired); its pending workflows are back on their queues"
            );
            rt.wake_all_queues();
        }
    }
    Ok(())
}

/// How long after its expiry a lease is deleted: a lease time and the recovery grace, by when
/// every live peer has had its chance to recover the executor's work (which deletes the lease
/// too) and the executor, were it alive, to find its lease lost.
fn cleared_after(rt: &RuntimeInner) -> Duration {
    rt.config.vanished_executor_timeout + rt.config.recovery_grace
}

/// Deletes this application's leases that expired [`cleared_after`] ago: those of executors
/// that died with nothing left to recover, which would otherwise stay forever, one per
/// killed process.
async fn clear_dead_leases(rt: &RuntimeInner) {
    match rt
        .sysdb
        .clear_expired_leases(&rt.app_name, cleared_after(rt))
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::debug!(count = n, "deleted the leases of executors gone long ago"),
        Err(e) => {
            tracing::debug!(error = %e, "could not delete expired executor leases; trying again later")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_renewed_every_recovery_interval_and_at_least_three_times_per_lease() {
        let config = Config::new("app")
            .recovery_interval(Duration::from_secs(2))
            .vanished_executor_timeout(Duration::from_secs(30));
        assert_eq!(renew_every(&config), Duration::from_secs(2));
        let config = config.vanished_executor_timeout(Duration::from_secs(3));
        assert_eq!(renew_every(&config), Duration::from_secs(1));
    }
}
