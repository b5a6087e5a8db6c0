//! A controllable clock for durable time: [`TestClock`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dbos_core::clock::Clock;

/// Durable time that moves only when the test says so, as `tokio::time::pause` does for
/// in-memory time: a 30-day sleep, a day-long `recv` timeout, a week of hourly schedule
/// ticks or a queued workflow's delay pass in a moment of real time.
///
/// Give it to the runtime with [`Config::clock`](dbos_core::Config::clock), then
/// [`advance`](TestClock::advance) it: every waiter for a durable deadline it reaches wakes.
/// Workflow timeouts, polling, leases and retries stay on real time.
///
/// ```no_run
/// use std::time::Duration;
/// use dbos_testkit::{TestClock, TestDatabase};
///
/// #[dbos_testkit::test]
/// async fn a_month_passes(db: TestDatabase) {
///     let clock = TestClock::new();
///     let dbos = dbos_core::Dbos::launch(db.config("app").clock(clock.clock())).await.unwrap();
///     // ... start a workflow that sleeps 30 days, wait until it sleeps ...
///     clock.advance(Duration::from_secs(30 * 24 * 3600));
///     // ... it completes now
///     dbos.shutdown().await.unwrap();
/// }
/// ```
#[derive(Debug, Clone)]
pub struct TestClock {
    clock: Clock,
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

impl TestClock {
    /// A clock standing at the current real time, rounded down to the second (so the
    /// times rows record look like real ones, and a client's real-time stamps are not in
    /// its future).
    pub fn new() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        Self::starting_at(UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// A clock standing at `start`.
    pub fn starting_at(start: SystemTime) -> Self {
        TestClock {
            clock: Clock::manual(start),
        }
    }

    /// The clock to give the runtime ([`Config::clock`](dbos_core::Config::clock)); it
    /// shares this one's time.
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    /// The current durable time.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Moves durable time `by` forward, waking every waiter whose deadline it reaches.
    ///
    /// # Panics
    /// When the time would leave the range `SystemTime` holds.
    pub fn advance(&self, by: Duration) -> SystemTime {
        match self.clock.advance(by) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    /// How many tasks wait on this clock for a deadline it has not reached.
    pub fn sleepers(&self) -> usize {
        self.clock.sleepers()
    }

    /// Waits (in real time, up to a minute) until at least `n` tasks wait on this clock:
    /// advance after this to be sure the runtime saw the time it advances from (e.g. a
    /// schedule's loop waits for its next tick, a workflow sleeps).
    ///
    /// # Panics
    /// When fewer than `n` wait after a minute.
    pub async fn until_sleepers(&self, n: usize) {
        let give_up = std::time::Instant::now() + Duration::from_secs(60);
        while self.sleepers() < n {
            assert!(
                std::time::Instant::now() < give_up,
                "after a minute, {} task(s) wait on the test clock, not {n}",
                self.sleepers()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}
