//! Durable time: the one clock the runtime reads for the times it records and waits for.
//!
//! Durable time is every time a workflow's history depends on: a durable sleep's wake-up
//! time, [`now()`](crate::now), the deadline of a `recv` or `get_event` timeout, a schedule's
//! ticks and a queued workflow's delay. The runtime reads it from its [`Clock`]
//! ([`Config::clock`](crate::Config::clock)): the system clock by default, or a manual clock
//! that moves only when a test advances it, as `tokio::time::pause` does for in-memory time
//! (`dbos_testkit::TestClock`). Every waiter for a durable deadline also wakes when a manual
//! clock is advanced past it, so a 30-day sleep ends as soon as the test says 30 days passed.
//!
//! Liveness timing stays on real time whatever the clock: workflow timeouts, leases and
//! heartbeats, polling intervals, retries and their backoff, the recovery of dead executors,
//! and the timestamps that only record when something happened (`created_at`, a step's
//! `started_at_epoch_ms`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::error::{Error, Result};

/// The source of durable time: [`Clock::system`] (the default), or [`Clock::manual`],
/// which stands still until [`advance`](Clock::advance)d.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use dbos_core::clock::Clock;
///
/// let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
/// let clock = Clock::manual(start);
/// assert_eq!(clock.now(), start);
/// clock.advance(Duration::from_secs(30 * 24 * 3600)).unwrap();
/// assert_eq!(clock.now(), start + Duration::from_secs(30 * 24 * 3600));
/// let config = dbos_core::Config::new("shop").clock(clock);
/// # let _ = config;
/// ```
#[derive(Clone, Default)]
pub struct Clock {
    /// `None`: the system clock (no allocation, no lock: the default path reads
    /// `SystemTime::now()` as before).
    manual: Option<Arc<Manual>>,
}

#[derive(Debug)]
struct Manual {
    time: watch::Sender<SystemTime>,
    /// How many tasks wait for a deadline on this clock now.
    sleepers: AtomicUsize,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::system()"),
            Some(m) => write!(f, "Clock::manual(at {:?})", *m.time.borrow()),
        }
    }
}

/// Counts one sleeper of a manual clock while it lives.
struct Sleeping<'a>(&'a AtomicUsize);

impl<'a> Sleeping<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Sleeping(count)
    }
}

impl Drop for Sleeping<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Clock {
    /// The system clock: durable time is real time (the default).
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// A clock that reads `start` until [`advance`](Clock::advance)d: for tests, where a
    /// month of durable time should pass in a moment (`dbos_testkit::TestClock` wraps one).
    /// Clones share the time.
    pub fn manual(start: SystemTime) -> Self {
        let (time, _) = watch::channel(start);
        Clock {
            manual: Some(Arc::new(Manual {
                time,
                sleepers: AtomicUsize::new(0),
            })),
        }
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    /// The current durable time.
    pub fn now(&self) -> SystemTime {
        match &self.manual {
            None => SystemTime::now(),
            Some(m) => *m.time.borrow(),
        }
    }

    /// The current durable time in milliseconds since the Unix epoch (as the system
    /// database stores times).
    pub fn now_ms(&self) -> i64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or_default()
    }

    /// Moves a manual clock `by` forward and wakes everything waiting for a deadline it
    /// now reaches; returns the new time.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) on the system
    /// clock (real time cannot be advanced: give the runtime a [`Clock::manual`]), or when
    /// the time would leave the range `SystemTime` holds.
    pub fn advance(&self, by: Duration) -> Result<SystemTime> {
        let Some(m) = &self.manual else {
            return Err(Error::invalid(
                "the system clock cannot be advanced: launch the runtime with a manual clock \
                 (`Config::clock(Clock::manual(start))`, or `dbos_testkit::TestClock`) to control durable time",
            ));
        };
        let mut result = Ok(SystemTime::UNIX_EPOCH);
        m.time.send_modify(|now| match now.checked_add(by) {
            Some(t) => {
                *now = t;
                result = Ok(t);
            }
            None => {
                result = Err(Error::invalid(format!(
                    "advancing the clock from {now:?} by {by:?} leaves the range of times this platform holds"
                )))
            }
        });
        result
    }

    /// How many tasks wait on this manual clock for a deadline it has not reached (0 on
    /// the system clock): a test advances once the runtime waits, e.g. once a schedule's
    /// loop sleeps until its next tick.
    pub fn sleepers(&self) -> usize {
        self.manual
            .as_ref()
            .map_or(0, |m| m.sleepers.load(Ordering::SeqCst))
    }

    /// Waits until durable time reaches `deadline`: a timer on the system clock; on a
    /// manual clock, until an [`advance`](Clock::advance) reaches it.
    pub async fn sleep_until(&self, deadline: SystemTime) {
        match &self.manual {
            None => {
                if let Ok(left) = deadline.duration_since(SystemTime::now()) {
                    tokio::time::sleep(left).await;
                }
            }
            Some(m) => {
                let mut time = m.time.subscribe();
                if *time.borrow_and_update() >= deadline {
                    return;
                }
                let _counted = Sleeping::new(&m.sleepers);
                // The sender lives in `m`, which this borrows: the wait ends only by reaching
                // the deadline.
                let _ = time.wait_for(|now| *now >= deadline).await;
            }
        }
    }

    /// A future that completes at the next [`advance`](Clock::advance) after this call (never,
    /// on the system clock): for loops that poll durable time on a real-time interval, so a
    /// test's advance is seen at once. It subscribes when called, not when first polled, so
    /// an advance between the call and the await is not missed.
    pub(crate) fn advanced(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let watch = self.manual.as_ref().map(|m| m.time.subscribe());
        async move {
            match watch {
                None => std::future::pending::<()>().await,
                Some(mut time) => {
                    let _ = time.changed().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_cannot_be_advanced() {
        let e = Clock::system().advance(Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("manual clock"), "{e}");
    }

    #[tokio::test]
    async fn a_manual_sleeper_wakes_when_the_clock_reaches_its_deadline() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = Clock::manual(start);
        let deadline = start + Duration::from_secs(3600);
        let c = clock.clone();
        let sleeper = tokio::spawn(async move { c.sleep_until(deadline).await });
        while clock.sleepers() == 0 {
            tokio::task::yield_now().await;
        }
        clock.advance(Duration::from_secs(1800)).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sleeper.is_finished(), "woke before its deadline");
        assert_eq!(clock.now_ms(), 1_000_000 + 1_800_000);
        clock.advance(Duration::from_secs(1800)).unwrap();
        tokio::time::timeout(Duration::from_secs(10), sleeper)
            .await
            .expect("the advance did not wake the sleeper")
            .unwrap();
        assert_eq!(clock.sleepers(), 0);
        assert!(clock.advance(Duration::MAX).is_err());
    }
}
