//! Wake-ups, not polling: who waits here for which message, event or stream, and what wakes
//! them.
//!
//! A waiter registers its key ([`WakeKey`]: a channel and the payload DBOS notifies on it,
//! `<destination>::<topic>` or `<workflow>::<key>`) *before* it looks at the table, and waits
//! on the key's [`Signal`] after. Three things fire a signal:
//! - the listener connection ([`serve`]), on a notification from any process (messages by the
//!   schema's trigger, events and streams by their writers after commit);
//! - this process's own writers of events and streams, at once after commit (they also queue
//!   the `pg_notify` for other processes, coalesced as DBOS does);
//! - a full re-check of every registered key, when the listener (re)connects and every
//!   second while it is away, so a notification lost with a broken connection delays a
//!   waiter by at most that second and never strands it. Behind a transaction-mode pooler
//!   with no session URL there is no listener: the re-check runs every
//!   [`Config::wait_poll_interval`](crate::Config::wait_poll_interval) (100 ms by default),
//!   one statement per channel and only while something waits.
//!
//! Workflows parked in a long `recv` or `get_event` are keyed in the parking lot the same
//! way: a signal for their key re-executes them early.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::runtime::RuntimeInner;
use crate::sysdb::listener::{
    ListenerEvent, EVENTS_CHANNEL, NOTIFICATIONS_CHANNEL, STREAMS_CHANNEL,
};
use crate::workflow::context::lock;

/// How often registered keys are re-checked while the listener is away.
pub(crate) const FALLBACK_POLL: Duration = Duration::from_secs(1);
/// How often they are re-checked when there is no listener at all (no session connection).
pub(crate) const NO_LISTENER_POLL: Duration = Duration::from_millis(100);
/// How long writers' notifications are gathered before one `pg_notify` statement sends them
/// (DBOS's `notification_coalesce_sec`).
const COALESCE: Duration = Duration::from_millis(10);
/// Keys checked per query in a full re-check.
const CHECK_CHUNK: usize = 1000;

/// A notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Channel {
    /// `dbos_notifications_channel`: a message was sent (`<destination>::<topic>`).
    Messages,
    /// `dbos_workflow_events_channel`: an event was set (`<workflow>::<key>`).
    Events,
    /// `dbos_streams_channel`: a stream was written (`<workflow>::<key>`).
    Streams,
}

impl Channel {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Channel::Messages => NOTIFICATIONS_CHANNEL,
            Channel::Events => EVENTS_CHANNEL,
            Channel::Streams => STREAMS_CHANNEL,
        }
    }

    fn from_name(name: &str) -> Option<Channel> {
        [Channel::Messages, Channel::Events, Channel::Streams]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// What a waiter waits for: a channel and a payload `<workflow>::<topic or key>`.
///
/// Equality, hashing and order look at the channel and the payload only (a notification
/// names no split point).
#[derive(Debug, Clone)]
pub(crate) struct WakeKey {
    channel: Channel,
    payload: Arc<str>,
    /// Where the workflow id ends in the payload; `u32::MAX` when unknown.
    split: u32,
}

impl WakeKey {
    pub(crate) fn new(channel: Channel, workflow_id: &str, name: &str) -> WakeKey {
        WakeKey {
            channel,
            payload: format!("{workflow_id}::{name}").into(),
            split: u32::try_from(workflow_id.len()).unwrap_or(u32::MAX),
        }
    }

    /// The same key in a fresh allocation (for what outlives the allocations around it).
    pub(crate) fn relocated(&self) -> WakeKey {
        WakeKey {
            channel: self.channel,
            payload: Arc::from(&*self.payload),
            split: self.split,
        }
    }

    fn heard(channel: Channel, payload: &str) -> WakeKey {
        WakeKey {
            channel,
            payload: payload.into(),
            split: u32::MAX,
        }
    }

    /// The workflow id and the topic or key.
    fn parts(&self) -> Option<(&str, &str)> {
        let at = usize::try_from(self.split).ok()?;
        let wf = self.payload.get(..at)?;
        let name = self.payload.get(at + 2..)?;
        Some((wf, name))
    }
}

impl PartialEq for WakeKey {
    fn eq(&self, other: &Self) -> bool {
        self.channel == other.channel && self.payload == other.payload
    }
}

impl Eq for WakeKey {}

impl Hash for WakeKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.channel.hash(state);
        self.payload.hash(state);
    }
}

impl PartialOrd for WakeKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WakeKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.channel, &*self.payload).cmp(&(other.channel, &*other.payload))
    }
}

/// The wake-up signal of one key, shared by its waiters.
#[derive(Debug, Default)]
struct Signal {
    /// Bumped at every wake-up: a waiter that saw another value missed nothing.
    generation: AtomicU64,
    notify: Notify,
}

/// The keys waited on, each with its signal and how many registrations hold it.
#[derive(Debug, Default)]
struct Registry {
    keys: Mutex<HashMap<WakeKey, Entry>>,
}

#[derive(Debug)]
struct Entry {
    signal: Arc<Signal>,
    /// The live [`WaitGuard`]s of the key, counted under the map's lock: the entry goes
    /// when the last one drops, whoever else holds the signal for a moment (a `fire`).
    guards: usize,
}

impl Registry {
    /// Registers one waiter of `key`: its signal, and the generation it has seen.
    fn register(&self, key: &WakeKey) -> (Arc<Signal>, u64) {
        let mut keys = lock(&self.keys);
        let entry = keys.entry(key.clone()).or_insert_with(|| Entry {
            signal: Arc::default(),
            guards: 0,
        });
        entry.guards += 1;
        let seen = entry.signal.generation.load(Ordering::SeqCst);
        (entry.signal.clone(), seen)
    }

    fn deregister(&self, key: &WakeKey) {
        let mut keys = lock(&self.keys);
        let last = match keys.get_mut(key) {
            Some(entry) => {
                entry.guards = entry.guards.saturating_sub(1);
                entry.guards == 0
            }
            None => false,
        };
        if last {
            keys.remove(key);
            // After a burst of waiters (that then parked), give the room back.
            if keys.capacity() > 1024 && keys.len() < keys.capacity() / 8 {
                let len = keys.len();
                keys.shrink_to(len * 2);
            }
        }
    }

    fn fire(&self, key: &WakeKey) {
        let signal = lock(&self.keys).get(key).map(|e| e.signal.clone());
        if let Some(signal) = signal {
            signal.generation.fetch_add(1, Ordering::SeqCst);
            signal.notify.notify_waiters();
        }
    }

    fn live_keys(&self) -> Vec<WakeKey> {
        lock(&self.keys).keys().cloned().collect()
    }
}

/// The waiters of one runtime, and the notifications its writers owe other processes.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    registry: Arc<Registry>,
    listening: AtomicBool,
    outgoing: Mutex<HashSet<(Channel, Arc<str>)>>,
    flush: Notify,
}

impl Waiters {
    /// Whether the listener connection is up (otherwise waits poll).
    pub(crate) fn listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    fn fire(&self, key: &WakeKey) {
        self.registry.fire(key);
    }

    fn live_keys(&self) -> Vec<WakeKey> {
        self.registry.live_keys()
    }

    fn queue_notify(&self, key: &WakeKey) {
        lock(&self.outgoing).insert((key.channel, key.payload.clone()));
        self.flush.notify_one();
    }
}

/// One waiter's registration: registered before looking at the table, so a wake-up
/// between the look and the wait is not missed. Dropping it deregisters.
pub(crate) struct WaitGuard {
    registry: Arc<Registry>,
    key: WakeKey,
    signal: Arc<Signal>,
    seen: u64,
}

impl std::fmt::Debug for WaitGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitGuard")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl WaitGuard {
    /// Registers interest in `key`.
    pub(crate) fn register(runtime: &Arc<RuntimeInner>, key: WakeKey) -> WaitGuard {
        Self::register_in(&runtime.waiters.registry, key)
    }

    fn register_in(registry: &Arc<Registry>, key: WakeKey) -> WaitGuard {
        let (signal, seen) = registry.register(&key);
        WaitGuard {
            registry: registry.clone(),
            key,
            signal,
            seen,
        }
    }

    pub(crate) fn key(&self) -> &WakeKey {
        &self.key
    }

    /// Whether the key was signalled since registration (or the last wait).
    pub(crate) fn fired(&self) -> bool {
        self.signal.generation.load(Ordering::SeqCst) != self.seen
    }

    /// Waits up to `timeout` for a signal; `true` when signalled (possibly before the call).
    pub(crate) async fn wait(&mut self, timeout: Duration) -> bool {
        let notified = self.signal.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = self.signal.generation.load(Ordering::SeqCst);
        if now != self.seen {
            self.seen = now;
            return true;
        }
        let woken = tokio::select! {
            _ = notified => true,
            _ = tokio::time::sleep(timeout) => false,
        };
        self.seen = self.signal.generation.load(Ordering::SeqCst);
        woken
    }
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.registry.deregister(&self.key);
    }
}

/// Wakes whoever waits here for `key`: live waiters and parked workflows.
pub(crate) fn wake(rt: &RuntimeInner, key: &WakeKey) {
    rt.waiters.fire(key);
    rt.parking.wake_keyed(key);
}

/// After this process committed a write of an event or a stream: wakes its readers here
/// at once, and queues the notification for other processes.
pub(crate) fn announce_write(rt: &RuntimeInner, key: &WakeKey) {
    wake(rt, key);
    rt.waiters.queue_notify(key);
}

/// Serves the runtime's waiters until shutdown: the listener connection, the fallback
/// polling while it is away, and the coalesced notifications of this process's writers.
pub(crate) async fn serve(rt: Arc<RuntimeInner>) {
    tokio::join!(listen(rt.clone()), notify(rt));
}

async fn listen(rt: Arc<RuntimeInner>) {
    if !rt.sysdb.has_sessions() {
        // No session to LISTEN on (behind a transaction-mode pooler): waits poll.
        let every = rt.config.wait_poll_interval.unwrap_or(NO_LISTENER_POLL);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => check_all(&rt).await,
                _ = rt.shutdown.cancelled() => return,
            }
        }
    }
    let fallback = rt.config.wait_poll_interval.unwrap_or(FALLBACK_POLL);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stop = rt.shutdown.clone();
    let sysdb = rt.sysdb.clone();
    let listener = tokio::spawn(async move { sysdb.listen(tx, stop).await });
    loop {
        let listening = rt.waiters.listening();
        tokio::select! {
            event = rx.recv() => match event {
                Some(ListenerEvent::Notification { channel, payload }) => {
                    if let Some(channel) = Channel::from_name(&channel) {
                        wake(&rt, &WakeKey::heard(channel, &payload));
                    }
                }
                Some(ListenerEvent::Connected) => {
                    rt.waiters.listening.store(true, Ordering::SeqCst);
                    // Whatever was announced while it was away was missed: look for it.
                    check_all(&rt).await;
                }
                Some(ListenerEvent::Disconnected) => {
                    rt.waiters.listening.store(false, Ordering::SeqCst);
                }
                None => break,
            },
            _ = tokio::time::sleep(fallback), if !listening => check_all(&rt).await,
            _ = rt.shutdown.cancelled() => break,
        }
    }
    rt.waiters.listening.store(false, Ordering::SeqCst);
    let _ = listener.await;
}

/// Looks at the tables for every key waited on here (live and parked) and wakes those with
/// something to find.
async fn check_all(rt: &Arc<RuntimeInner>) {
    let mut keys: HashSet<WakeKey> = rt.waiters.live_keys().into_iter().collect();
    keys.extend(rt.parking.wake_keys());
    let (mut messages, mut events) = (Vec::new(), Vec::new());
    for key in keys {
        match key.channel {
            Channel::Messages => messages.push(key),
            Channel::Events => events.push(key),
            // A stream reader re-reads at its own offset: waking it is the check.
            Channel::Streams => wake(rt, &key),
        }
    }
    for (keys, events) in [(messages, false), (events, true)] {
        for chunk in keys.chunks(CHECK_CHUNK) {
            let pairs: Vec<(&str, &str)> = chunk.iter().filter_map(|k| k.parts()).collect();
            let found = if events {
                rt.sysdb.present_events(&pairs).await
            } else {
                rt.sysdb.pending_messages(&pairs).await
            };
            match found {
                Ok(found) => {
                    let channel = if events {
                        Channel::Events
                    } else {
                        Channel::Messages
                    };
                    for (wf, name) in found {
                        wake(rt, &WakeKey::new(channel, &wf, &name));
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "could not re-check the waits; trying again later");
                    return;
                }
            }
        }
    }
}

/// Sends the notifications of this process's event and stream writes, gathered for
/// [`COALESCE`] into one statement. A failed batch is dropped: readers also poll.
async fn notify(rt: Arc<RuntimeInner>) {
    loop {
        let stopping = tokio::select! {
            _ = rt.waiters.flush.notified() => false,
            _ = rt.shutdown.cancelled() => true,
        };
        if !stopping {
            tokio::select! {
                _ = tokio::time::sleep(COALESCE) => {}
                _ = rt.shutdown.cancelled() => {}
            }
        }
        let batch: Vec<(Channel, Arc<str>)> = lock(&rt.waiters.outgoing).drain().collect();
        if !batch.is_empty() {
            let pairs: Vec<(&str, &str)> = batch.iter().map(|(c, p)| (c.name(), &**p)).collect();
            if let Err(e) = rt.sysdb.notify_all(&pairs).await {
                tracing::debug!(error = %e, count = pairs.len(), "could not send notifications; readers will find the rows by polling");
            }
        }
        if stopping || rt.shutdown.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `fire` holds the key's signal for a moment after leaving the map's lock; a guard
    /// dropped in that moment must still remove the key (it used to judge "last waiter" by
    /// the signal's reference count, and leaked the entry).
    #[test]
    fn a_guard_dropped_during_a_fire_leaves_no_entry() {
        let registry = Arc::new(Registry::default());
        let key = WakeKey::new(Channel::Messages, "wf", "topic");
        let rounds = 50_000;
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let firing = {
            let (registry, key, barrier) = (registry.clone(), key.clone(), barrier.clone());
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    barrier.wait();
                    for _ in 0..8 {
                        registry.fire(&key);
                    }
                }
            })
        };
        let mut leaked = 0;
        for _ in 0..rounds {
            let a = WaitGuard::register_in(&registry, key.clone());
            let b = WaitGuard::register_in(&registry, key.clone());
            barrier.wait();
            drop(a);
            drop(b);
            // Nobody waits now: the fire thread may still be signalling, but the key is gone.
            if !lock(&registry.keys).is_empty() {
                leaked += 1;
                lock(&registry.keys).clear();
            }
        }
        firing.join().expect("the firing thread ends");
        assert_eq!(leaked, 0, "entries left behind in {rounds} rounds");
    }

    /// A wait ends at its timeout when nothing fires (a waiter that woke at once would poll
    /// its table in a loop), and at once when its key fired since its last wait or fires
    /// during it; a fire is seen once.
    #[tokio::test]
    async fn a_wait_ends_at_its_timeout_or_at_a_fire_and_sees_each_fire_once() {
        let registry = Arc::new(Registry::default());
        let key = WakeKey::new(Channel::Messages, "wf", "topic");
        let mut guard = WaitGuard::register_in(&registry, key.clone());
        assert!(!guard.fired(), "nothing fired yet");
        let started = std::time::Instant::now();
        assert!(
            !guard.wait(Duration::from_millis(300)).await,
            "not signalled"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(290),
            "the wait ended after {:?}, before its timeout",
            started.elapsed()
        );

        registry.fire(&key);
        assert!(guard.fired(), "the fire is seen before the wait");
        let started = std::time::Instant::now();
        assert!(
            guard.wait(Duration::from_secs(60)).await,
            "signalled before the call"
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(!guard.fired(), "the wait took the fire");

        let firing = {
            let (registry, key) = (registry.clone(), key.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                registry.fire(&key);
            })
        };
        let started = std::time::Instant::now();
        assert!(
            guard.wait(Duration::from_secs(60)).await,
            "signalled during the call"
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        firing.await.expect("the firing task ends");
        assert!(!guard.fired());
    }

    #[test]
    fn the_key_stays_while_any_guard_holds_it() {
        let registry = Arc::new(Registry::default());
        let key = WakeKey::new(Channel::Events, "wf", "k");
        let a = WaitGuard::register_in(&registry, key.clone());
        let b = WaitGuard::register_in(&registry, key.clone());
        drop(a);
        assert_eq!(registry.live_keys(), vec![key.clone()]);
        registry.fire(&key);
        assert!(b.fired(), "the remaining guard is still signalled");
        drop(b);
        assert!(registry.live_keys().is_empty());
    }
}
