//! The per-queue dequeue loop of an executor, and the background sweeps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::observe;
use crate::queue::Queue;
use crate::runtime::RuntimeInner;
use crate::sysdb::queues::Dequeued;
use crate::sysdb::workflows::{now_ms, INTERNAL_QUEUE};
use crate::workflow::context::lock;

/// What this executor runs from one queue right now (worker concurrency is per process).
#[derive(Debug, Default)]
pub(crate) struct LocalCounts {
    total: i64,
    per_partition: HashMap<String, i64>,
}

/// Released when a dequeued workflow's execution ends; frees its place and wakes the
/// queue's loop so the place is refilled at once.
#[derive(Debug)]
pub(crate) struct RunningSlot {
    counts: Arc<Mutex<LocalCounts>>,
    partition: Option<String>,
    signal: Arc<tokio::sync::Notify>,
}

impl Drop for RunningSlot {
    fn drop(&mut self) {
        lock(&self.counts).release(self.partition.as_deref(), 1);
        self.signal.notify_one();
    }
}

impl LocalCounts {
    fn take(&mut self, partition: Option<&str>, n: i64) {
        self.total += n;
        if let Some(p) = partition {
            *self.per_partition.entry(p.to_owned()).or_default() += n;
        }
    }

    fn release(&mut self, partition: Option<&str>, n: i64) {
        self.total -= n;
        if let Some(p) = partition {
            if let Some(count) = self.per_partition.get_mut(p) {
                *count -= n;
                if *count <= 0 {
                    self.per_partition.remove(p);
                }
            }
        }
    }
}

/// Places taken before a claim (so nothing else can count them as free while the claim is
/// on its way); what the claim did not fill is given back when this is dropped, also when
/// the claim fails.
struct Reservation {
    counts: Arc<Mutex<LocalCounts>>,
    partition: Option<String>,
    left: i64,
}

impl Reservation {
    /// Turns one reserved place into the running slot of a claimed workflow.
    fn slot(&mut self, signal: &Arc<tokio::sync::Notify>) -> RunningSlot {
        self.left -= 1;
        RunningSlot {
            counts: self.counts.clone(),
            partition: self.partition.clone(),
            signal: signal.clone(),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.left > 0 {
            lock(&self.counts).release(self.partition.as_deref(), self.left);
        }
    }
}

/// A small xorshift generator for jitter and partition order (no cryptographic use).
fn random_u64() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes(bytes[..8].try_into().unwrap_or([7; 8]))
}

/// `interval` scaled by a factor in [0.95, 1.05].
pub(crate) fn jittered(interval: Duration) -> Duration {
    let unit = (random_u64() % 10_001) as f64 / 10_000.0;
    interval.mul_f64(0.95 + unit * 0.10)
}

/// Polls `queue` until shutdown: claims whenever a place frees up (or a workflow is
/// enqueued here), and at the queue's polling interval otherwise. The queue's limits are
/// re-read from its `dbos.queues` row once per polling interval, so a change made there (by
/// DBOS tooling, SQL, another deploy) applies within one interval.
pub(crate) async fn serve(rt: Arc<RuntimeInner>, queue: Queue) {
    let counts = Arc::new(Mutex::new(LocalCounts::default()));
    let mut served = Served::new(queue);
    let signal = rt.queue_signal(served.queue.name());
    let mut backoff = 1.0f64;
    loop {
        served.refresh(&rt).await;
        match poll_once(&rt, &served.queue, &counts, &signal).await {
            Ok(Poll { contended, full }) => {
                backoff = if contended {
                    (backoff * 2.0).min(8.0)
                } else {
                    (backoff * 0.9).max(1.0)
                };
                if full && !rt.shutdown.is_cancelled() {
                    // A full batch: more may be waiting; poll again right away.
                    tokio::task::yield_now().await;
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!(queue = served.queue.name(), error = %e, "dequeue failed; retrying");
                backoff = (backoff * 2.0).min(8.0);
            }
        }
        served.report_unrunnable(&rt).await;
        served.count_depth(&rt).await;
        tokio::select! {
            _ = rt.shutdown.cancelled() => return,
            _ = tokio::time::sleep(jittered(served.queue.polling_interval.mul_f64(backoff))) => {}
            _ = signal.notified() => {}
        }
    }
}

/// How long work may wait before it is reported as runnable by no executor here.
const UNRUNNABLE_AFTER: Duration = Duration::from_secs(30);
/// How often the same unrunnable work is reported again.
const REPORT_AGAIN_AFTER: Duration = Duration::from_secs(600);

/// How often the queue-depth gauge is refreshed (once per polling interval when that is
/// longer): one index-only count per queue, not one per dequeue.
const DEPTH_EVERY: Duration = Duration::from_secs(5);

/// A queue as this executor serves it: the definition in force and when it was read.
struct Served {
    queue: Queue,
    read_at: Instant,
    checked_at: Instant,
    reported: HashMap<(String, String), Instant>,
    /// When the queue's depth was last counted (`None`: not yet).
    counted_at: Option<Instant>,
}

impl Served {
    fn new(queue: Queue) -> Self {
        Served {
            queue,
            read_at: Instant::now(),
            checked_at: Instant::now(),
            reported: HashMap::new(),
            counted_at: None,
        }
    }

    /// Refreshes the queue-depth gauge when it is [`DEPTH_EVERY`] (or a polling interval) old.
    async fn count_depth(&mut self, rt: &RuntimeInner) {
        let every = DEPTH_EVERY.max(self.queue.polling_interval);
        if self.counted_at.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        self.counted_at = Some(Instant::now());
        match rt.sysdb.queue_depth(self.queue.name(), &rt.app_name).await {
            Ok((enqueued, pending)) => {
                observe::metrics::queue_depth(self.queue.name(), enqueued, pending)
            }
            Err(e) => tracing::debug!(error = %e, "could not count the queue's workflows"),
        }
    }

    /// Re-reads the queue's row once per polling interval (the internal queue has none).
    async fn refresh(&mut self, rt: &RuntimeInner) {
        if self.queue.name() == INTERNAL_QUEUE
            || self.read_at.elapsed() < self.queue.polling_interval
        {
            return;
        }
        self.read_at = Instant::now();
        match rt.sysdb.queue_row(self.queue.name()).await {
            Ok(Some((_, Some(stored)))) => {
                let stored = Queue {
                    on_conflict: self.queue.on_conflict,
                    ..stored
                };
                if stored != self.queue {
                    match stored.validate() {
                        Ok(()) => {
                            tracing::info!(
                                queue = stored.name(),
                                "the queue's limits changed in dbos.queues; applying them"
                            );
                            self.queue = stored;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the queue's row in dbos.queues is invalid; keeping the limits in force")
                        }
                    }
                }
            }
            Ok(Some((_, None))) => {
                tracing::warn!(queue = self.queue.name(), "the queue's row in dbos.queues has limits out of range; keeping the limits in force")
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "could not read the queue's row; keeping its limits")
            }
        }
    }

    /// Reports (at WARN, once per ten minutes per kind) work waiting on the queue that this
    /// executor could claim but cannot run. It stays queued for an executor that can.
    async fn report_unrunnable(&mut self, rt: &RuntimeInner) {
        if self.checked_at.elapsed() < UNRUNNABLE_AFTER {
            return;
        }
        self.checked_at = Instant::now();
        let who = rt.dequeuer();
        let found = rt
            .sysdb
            .unrunnable_queued(self.queue.name(), who, UNRUNNABLE_AFTER.as_millis() as i64)
            .await;
        for (name, serialization, count) in found.unwrap_or_default() {
            let key = (name.clone(), serialization.clone());
            if self
                .reported
                .get(&key)
                .is_some_and(|at| at.elapsed() < REPORT_AGAIN_AFTER)
            {
                continue;
            }
            self.reported.insert(key, Instant::now());
            let why = if rt.registry.get(&name).is_none() {
                format!("no #[workflow] named `{name}` is registered in this binary")
            } else {
                format!(
                    "its inputs are encoded as `{serialization}`, which this library does not read"
                )
            };
            tracing::warn!(
                queue = self.queue.name(), workflow = %name, count,
                "{count} workflow(s) have waited on this queue for over {UNRUNNABLE_AFTER:?} and this executor cannot run \
                 them ({why}); they stay ENQUEUED for an executor that can (another build, or a worker in another language)"
            );
        }
    }
}

/// What one poll saw.
pub(crate) struct Poll {
    /// Another executor held the rows; back off.
    pub(crate) contended: bool,
    /// A batch was claimed to its limit; more may be waiting.
    pub(crate) full: bool,
}

/// The most rows one poll claims.
const BATCH: i64 = 1000;

/// One poll: claims what the limits allow and starts it. Returns whether contention with
/// another executor was seen (the caller backs off).
pub(crate) async fn poll_once(
    rt: &Arc<RuntimeInner>,
    queue: &Queue,
    counts: &Arc<Mutex<LocalCounts>>,
    signal: &Arc<tokio::sync::Notify>,
) -> Result<Poll> {
    let partitions: Vec<Option<String>> = if queue.partitioned {
        let mut keys = rt.sysdb.partition_keys(queue.name(), &rt.app_name).await?;
        // Visit partitions in random order so no partition starves the others.
        for i in (1..keys.len()).rev() {
            keys.swap(i, (random_u64() % (i as u64 + 1)) as usize);
        }
        keys.into_iter().map(Some).collect()
    } else {
        vec![None]
    };
    let who = rt.dequeuer();
    let mut contended = false;
    let mut full = false;
    for partition in partitions {
        let mut reserved = {
            let mut c = lock(counts);
            let mut free = queue
                .worker_concurrency
                .map_or(i64::MAX, |w| i64::from(w) - c.total);
            if let (Some(pw), Some(p)) = (queue.partition_worker_concurrency, &partition) {
                free = free.min(i64::from(pw) - c.per_partition.get(p).copied().unwrap_or(0));
            }
            let free = free.clamp(0, BATCH);
            c.take(partition.as_deref(), free);
            Reservation {
                counts: counts.clone(),
                partition: partition.clone(),
                left: free,
            }
        };
        let asked = reserved.left;
        match rt
            .sysdb
            .dequeue(queue, partition.as_deref(), reserved.left, who)
            .await?
        {
            Dequeued::Contended => contended = true,
            Dequeued::Claimed(claimed) => {
                full |= claimed.len() as i64 == BATCH;
                if asked > 0 {
                    let now = now_ms();
                    let waits = claimed.iter().filter_map(|c| Some(now - c.enqueued_at?));
                    observe::metrics::dequeued(queue.name(), claimed.len(), waits);
                }
                for c in claimed {
                    let slot = reserved.slot(signal);
                    rt.dispatch_claimed(c, Some(slot), Some(queue.name()));
                }
            }
        }
    }
    Ok(Poll { contended, full })
}

/// Runs the sweeps every second until shutdown (only one process per application sweeps at
/// a time; the others find the lock taken).
pub(crate) async fn sweeps(rt: Arc<RuntimeInner>) {
    loop {
        // Delays end in durable time: a test clock's advance starts the next sweep at once
        // (subscribed before this one reads the clock, so none is missed).
        let advanced = rt.config.clock.advanced();
        match rt.sysdb.sweep(&rt.app_name, rt.config.clock.now_ms()).await {
            Ok(Some((enqueued, cancelled))) => {
                if enqueued > 0 {
                    tracing::debug!(enqueued, "delayed workflows are now enqueued");
                    rt.wake_all_queues();
                }
                if cancelled > 0 {
                    tracing::info!(cancelled, "cancelled workflows past their deadline");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "the background sweeps failed; retrying"),
        }
        tokio::select! {
            _ = rt.shutdown.cancelled() => return,
            _ = tokio::time::sleep(jittered(Duration::from_secs(1))) => {}
            _ = advanced => {}
        }
    }
}
