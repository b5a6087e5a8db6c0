//! The parking lot: workflows in a long durable sleep hold no task and no future.
//!
//! When a workflow sleeps for longer than [`Config::park_after`](crate::Config::park_after),
//! its execution ends right after the wake-up time is recorded (the row stays `PENDING`,
//! owned by this execution) and one small entry is kept here. At the wake-up time the
//! workflow is re-executed from its history: completed operations replay from their records,
//! the sleep finds its recorded wake-up time passed, and the body continues. A parked
//! workflow costs one map entry instead of a task, a timer and a suspended state machine.
//!
//! A workflow parked in a long `recv` or `get_event` is also keyed by what it waits for
//! (its [`WakeKey`]): a notification for that key re-executes it at once instead of at its
//! timeout, and it finds the message or event there.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::Notify;

use crate::codec::PortableInputs;
use crate::messages::waiters::WakeKey;
use crate::queue::worker::RunningSlot;
use crate::runtime::RuntimeInner;
use crate::workflow::context::lock;
use crate::workflow::execution::Start;
use crate::workflow::registry::WorkflowDef;

/// One parked workflow.
#[derive(Debug)]
pub(crate) struct Parked {
    pub(crate) owner_xid: Arc<str>,
    pub(crate) def: &'static WorkflowDef,
    pub(crate) deadline_ms: Option<i64>,
    /// A queued workflow keeps its place in the queue's worker concurrency while it sleeps,
    /// as a sleeping workflow does in every DBOS executor.
    pub(crate) slot: Option<RunningSlot>,
    /// What wakes it early (a parked `recv` or `get_event`), if anything.
    pub(crate) wake_on: Option<WakeKey>,
    /// How many attempts to resume it failed in a row (a database or decode error).
    pub(crate) failed_resumes: u32,
    /// The trace context of the execution that parked (see `observe::carrier`): the
    /// wake-up's span continues its trace.
    pub(crate) trace: Option<serde_json::Value>,
}

/// The wait before the next attempt to resume a parked workflow whose resume failed
/// `failures` times in a row: 1 s, doubling, at most a minute.
fn resume_retry_delay(failures: u32) -> Duration {
    Duration::from_secs(1 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

#[derive(Debug, Default)]
struct Lot {
    /// Parked workflows by (wake-up time in epoch ms, workflow id).
    by_time: BTreeMap<(i64, Arc<str>), Parked>,
    /// Wake-up time by workflow id.
    by_id: HashMap<Arc<str>, i64>,
    /// The parked workflows that a notification wakes early, by key.
    by_key: BTreeSet<(WakeKey, Arc<str>)>,
}

impl Lot {
    /// Takes `id` out, with its entry and the id's shared allocation.
    fn take(&mut self, id: &str) -> Option<(Arc<str>, Parked)> {
        let (id, wake_ms) = self.by_id.remove_entry(id)?;
        let parked = self.by_time.remove(&(wake_ms, id.clone()))?;
        crate::observe::metrics::parked(-1);
        if let Some(key) = &parked.wake_on {
            self.by_key.remove(&(key.clone(), id.clone()));
        }
        Some((id, parked))
    }

    /// Puts `parked` in, waking at `wake_ms`. One allocation of the id serves the three
    /// indexes: parked workflows are many and small, and what they keep allocated should be
    /// as little as possible.
    fn put(&mut self, id: Arc<str>, wake_ms: i64, parked: Parked) {
        if let Some(key) = &parked.wake_on {
            self.by_key.insert((key.clone(), id.clone()));
        }
        self.by_id.insert(id.clone(), wake_ms);
        self.by_time.insert((wake_ms, id), parked);
        crate::observe::metrics::parked(1);
    }
}

impl Drop for Lot {
    /// What is still parked when the runtime goes leaves this process's count.
    fn drop(&mut self) {
        crate::observe::metrics::parked(-(self.by_id.len() as i64));
    }
}

/// The parked workflows of one runtime.
#[derive(Debug, Default)]
pub(crate) struct ParkingLot {
    lot: Mutex<Lot>,
    changed: Notify,
}

impl ParkingLot {
    pub(crate) fn park(&self, wake_ms: i64, id: &str, parked: Parked) {
        {
            let mut lot = lock(&self.lot);
            drop(lot.take(id));
            lot.put(id.into(), wake_ms, parked);
        }
        self.changed.notify_one();
    }

    /// Takes `id` out of the lot (it was cancelled, or claimed again to run now), returning
    /// the queue place it held, if any.
    pub(crate) fn remove(&self, id: &str) -> Option<RunningSlot> {
        lock(&self.lot).take(id)?.1.slot
    }

    /// Re-executes `id` now instead of at its wake-up time (what it waited for arrived).
    pub(crate) fn wake_now(&self, id: &str) {
        {
            let mut lot = lock(&self.lot);
            let Some((id, parked)) = lot.take(id) else {
                return;
            };
            lot.put(id, i64::MIN, parked);
        }
        self.changed.notify_one();
    }

    /// Re-executes now every workflow parked waiting for `key`.
    pub(crate) fn wake_keyed(&self, key: &WakeKey) {
        let ids: Vec<Arc<str>> = {
            let lot = lock(&self.lot);
            if lot.by_key.is_empty() {
                return;
            }
            lot.by_key
                .range((key.clone(), Arc::<str>::from(""))..)
                .take_while(|(k, _)| k == key)
                .map(|(_, id)| id.clone())
                .collect()
        };
        for id in ids {
            self.wake_now(&id);
        }
    }

    /// The keys parked workflows wait for.
    pub(crate) fn wake_keys(&self) -> Vec<WakeKey> {
        let lot = lock(&self.lot);
        let mut keys: Vec<WakeKey> = lot.by_key.iter().map(|(k, _)| k.clone()).collect();
        keys.dedup();
        keys
    }

    /// The ids of the parked workflows.
    pub(crate) fn ids(&self) -> Vec<String> {
        lock(&self.lot)
            .by_id
            .keys()
            .map(|k| k.to_string())
            .collect()
    }

    /// The parked workflows with the ownership token each was parked under.
    fn owners(&self) -> Vec<(Arc<str>, Arc<str>)> {
        lock(&self.lot)
            .by_time
            .iter()
            .map(|((_, id), p)| (id.clone(), p.owner_xid.clone()))
            .collect()
    }

    /// Takes `id` out if it is still parked under `owner_xid` (not re-parked by a new
    /// claim meanwhile); its queue place, if any, is released.
    fn drop_stale(&self, id: &str, owner_xid: &str) {
        let mut lot = lock(&self.lot);
        let Some(&wake_ms) = lot.by_id.get(id) else {
            return;
        };
        let same = lot
            .by_time
            .get(&(wake_ms, Arc::<str>::from(id)))
            .is_some_and(|p| *p.owner_xid == *owner_xid);
        if same {
            drop(lot.take(id));
        }
    }

    /// How many workflows are parked.
    pub(crate) fn len(&self) -> usize {
        lock(&self.lot).by_id.len()
    }

    fn take_due(&self, now_ms: i64) -> (Vec<(Arc<str>, Parked)>, Option<i64>) {
        let mut lot = lock(&self.lot);
        let mut due = Vec::new();
        while let Some(entry) = lot.by_time.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let ((_, id), parked) = entry.remove_entry();
            lot.by_id.remove(&id);
            if let Some(key) = &parked.wake_on {
                lot.by_key.remove(&(key.clone(), id.clone()));
            }
            due.push((id, parked));
        }
        crate::observe::metrics::parked(-(due.len() as i64));
        (due, lot.by_time.keys().next().map(|k| k.0))
    }
}

/// How often the parked workflows are checked against the database: one cancelled,
/// taken over or deleted by another process leaves memory within this, instead of at its
/// wake-up time (up to a century away for a `recv`).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Drops the entries of parked workflows that are no longer `PENDING` under the token they
/// were parked with, every [`SWEEP_EVERY`], until shutdown. One query per sweep.
async fn sweep(rt: Arc<RuntimeInner>) {
    loop {
        tokio::select! {
            _ = rt.shutdown.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
        let parked = rt.parking.owners();
        if parked.is_empty() {
            continue;
        }
        let ids: Vec<&str> = parked.iter().map(|(id, _)| &**id).collect();
        let owners: Vec<&str> = parked.iter().map(|(_, o)| &**o).collect();
        let live = match rt.sysdb.still_parked(&ids, &owners).await {
            Ok(live) => live,
            Err(e) => {
                tracing::debug!(error = %e, "could not check the parked workflows; trying again later");
                continue;
            }
        };
        for (id, owner) in &parked {
            if !live.contains(&**id) {
                tracing::info!(workflow_id = %id, "a parked workflow was cancelled, finished, taken over or deleted elsewhere; dropping its entry");
                rt.parking.drop_stale(id, owner);
            }
        }
    }
}

/// Wakes parked workflows when their time comes, and sweeps out the ones ended elsewhere,
/// until shutdown.
pub(crate) async fn serve(rt: Arc<RuntimeInner>) {
    rt.spawn_task(sweep(rt.clone()));
    let clock = &rt.config.clock;
    loop {
        // Wake-up times are durable time: read from the runtime's clock, and waited for on
        // it (a test clock's advance wakes this loop).
        let (due, next) = rt.parking.take_due(clock.now_ms());
        for (id, parked) in due {
            let rt2 = rt.clone();
            rt.spawn_task(async move { resume(rt2, id, parked).await });
        }
        let next = async {
            match next {
                Some(at) => {
                    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(at).unwrap_or(0));
                    clock.sleep_until(at).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = rt.shutdown.cancelled() => return,
            _ = next => {}
            _ = rt.parking.changed.notified() => {}
        }
    }
}

/// Re-executes a parked workflow from its history, under the same ownership, if it is
/// still its to run: a workflow cancelled, resumed elsewhere or deleted while it slept is
/// left alone. When its state cannot be read or its inputs do not decode, it stays parked
/// and is tried again later (its row stays `PENDING` and owned by this live executor, so
/// nobody else would recover it).
async fn resume(rt: Arc<RuntimeInner>, id: Arc<str>, mut parked: Parked) {
    let failure = match Box::pin(rt.sysdb.parked_state(&id, &parked.owner_xid)).await {
        Ok(None) => {
            tracing::info!(workflow_id = %id, "a parked workflow was cancelled, taken over or deleted while it slept; not resuming it");
            return;
        }
        Ok(Some((text, serialization))) => {
            match PortableInputs::from_text(&text, serialization.as_deref()) {
                Ok(inputs) => {
                    rt.spawn_execution(
                        Start {
                            def: parked.def,
                            args: inputs.positional_args,
                            id: id.to_string(),
                            owner_xid: parked.owner_xid.to_string(),
                            fresh: false,
                            first_run: false,
                            deadline_ms: parked.deadline_ms,
                            slot: parked.slot,
                            identity: None,
                            trace: parked.trace,
                            span: None,
                        },
                        None,
                    );
                    return;
                }
                Err(e) => e,
            }
        }
        Err(e) => e,
    };
    parked.failed_resumes = parked.failed_resumes.saturating_add(1);
    let delay = resume_retry_delay(parked.failed_resumes);
    tracing::warn!(
        workflow_id = %id, error = %failure, attempts = parked.failed_resumes,
        "could not resume a parked workflow; it stays parked and is tried again in {delay:?}"
    );
    // Kept in the lot, whose times are durable time: on a test's manual clock the retry
    // comes with the advance past it.
    let retry_ms = rt.config.clock.now_ms() + delay.as_millis() as i64;
    rt.parking.park(retry_ms, &id, parked);
}
