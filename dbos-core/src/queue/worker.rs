//! The per-queue dequeue loop of an executor, and the background sweeps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::Result;
use crate::queue::Queue;
use crate::runtime::RuntimeInner;
use crate::sysdb::queues::{Dequeued, Dequeuer};
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
/// enqueued here), and at the queue's polling interval otherwise.
pub(crate) async fn serve(rt: Arc<RuntimeInner>, queue: Queue) {
    let counts = Arc::new(Mutex::new(LocalCounts::default()));
    claim_loop(&rt, &queue, &counts).await;
}

async fn claim_loop(rt: &Arc<RuntimeInner>, queue: &Queue, counts: &Arc<Mutex<LocalCounts>>) {
    let signal = rt.queue_signal(queue.name());
    let mut backoff = 1.0f64;
    loop {
        match poll_once(rt, queue, counts, &signal).await {
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
                tracing::warn!(queue = queue.name(), error = %e, "dequeue failed; retrying");
                backoff = (backoff * 2.0).min(8.0);
            }
        }
        tokio::select! {
            _ = rt.shutdown.cancelled() => return,
            _ = tokio::time::sleep(jittered(queue.polling_interval.mul_f64(backoff))) => {}
            _ = signal.notified() => {}
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
    let who = Dequeuer {
        executor_id: &rt.executor_id,
        app_version: &rt.app_version,
        app_name: &rt.app_name,
    };
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
        match rt
            .sysdb
            .dequeue(queue, partition.as_deref(), reserved.left, who)
            .await?
        {
            Dequeued::Contended => contended = true,
            Dequeued::Claimed(claimed) => {
                full |= claimed.len() as i64 == BATCH;
                for c in claimed {
                    let slot = reserved.slot(signal);
                    rt.dispatch_claimed(c, Some(slot));
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
        match rt.sysdb.sweep(&rt.app_name).await {
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
        }
    }
}
