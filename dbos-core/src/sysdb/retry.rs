//! Riding out database outages: every system-database statement is retried on
//! connection-class failures with capped exponential backoff.
//!
//! Two windows apply. A standalone [`SystemDatabase`](super::SystemDatabase) (and a runtime
//! while it launches) gives up after its `retry_for`, so a wrong URL or a server that never
//! comes up is reported. A launched runtime retries for as long as the database is
//! unreachable: an outage only delays work, it never ends an execution without its
//! outcome. Either way the retrying stops at once when the handle is closed (shutdown).
//!
//! An outage is logged at WARN once, when the first statement fails, and at INFO when a
//! statement succeeds again; the failures in between are logged at DEBUG.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind, Result};

const FIRST_DELAY: Duration = Duration::from_millis(50);
/// The longest wait between two attempts while the database stays unreachable: short, so
/// work resumes within a second or two of the database coming back.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Capped exponential backoff, the one formula of every wait between two runs (statements
/// during an outage, a step's or a transaction's retries, a transaction's conflicts): the
/// wait after the `n`th failure (1-based) is `first × factor^(n−1)`, at most `max`.
pub(crate) fn backoff(first: Duration, factor: f64, max: Duration, n: u32) -> Duration {
    let grown = first.as_secs_f64() * factor.powi(n.saturating_sub(1).min(1024) as i32);
    // `min` also turns a NaN (0 × ∞) into the cap.
    Duration::from_secs_f64(grown.min(max.as_secs_f64()).max(0.0))
}

/// The retry policy and outage state shared by every clone of one database handle.
#[derive(Debug)]
pub(crate) struct Resilience {
    /// How long a transient failure is retried while `forever` is off.
    retry_for: Duration,
    /// Set once a runtime has launched on the handle: retry until the database is back.
    forever: AtomicBool,
    /// Cancelled when the handle closes: retrying stops with a shutdown error.
    stop: CancellationToken,
    /// Set when the runtime shuts down: transient failures are reported, not retried (the
    /// statements still run while the database is up).
    give_up: AtomicBool,
    /// Whether an outage is in progress (fast path for the common, healthy case).
    down: AtomicBool,
    down_since: Mutex<Option<Instant>>,
}

impl Resilience {
    pub(crate) fn new(retry_for: Duration) -> Self {
        Resilience {
            retry_for,
            forever: AtomicBool::new(false),
            stop: CancellationToken::new(),
            give_up: AtomicBool::new(false),
            down: AtomicBool::new(false),
            down_since: Mutex::new(None),
        }
    }

    /// From now on, retry transient failures until the database is back.
    pub(crate) fn retry_forever(&self) {
        self.forever.store(true, Ordering::Relaxed);
    }

    /// Stops every retry loop (and makes new ones fail at once).
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }

    /// From now on, report transient failures instead of retrying them (shutdown: work
    /// that cannot reach the database is recovered later).
    pub(crate) fn give_up(&self) {
        self.give_up.store(true, Ordering::Relaxed);
    }

    /// The error a statement gets once the handle is closed.
    pub(crate) fn stopped_error(what: &str) -> Error {
        Error::new(
            ErrorKind::NotLaunched,
            format!("{what}: the runtime is shutting down and its connection pool is closed"),
        )
    }

    fn succeeded(&self) {
        if self.down.load(Ordering::Relaxed) {
            let since = self
                .down_since
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            self.down.store(false, Ordering::Relaxed);
            if let Some(since) = since {
                tracing::info!(
                    outage = ?since.elapsed(),
                    "the system database is reachable again; work continues"
                );
            }
        }
    }

    /// Records a failed attempt; the first of an outage is logged: at INFO while connecting
    /// (`forever` off: the caller waits up to `retry_for`, then gets the error), at WARN once
    /// launched (work waits until the database is back).
    fn failed(&self, what: &str, e: &Error, forever: bool) {
        let mut since = self.down_since.lock().unwrap_or_else(|p| p.into_inner());
        crate::observe::metrics::sysdb_retry(since.is_none());
        if since.is_none() {
            *since = Some(Instant::now());
            self.down.store(true, Ordering::Relaxed);
            if forever {
                tracing::warn!(
                    error = %e,
                    "the system database is unreachable ({what}); retrying this and every other statement until it is back"
                );
            } else {
                tracing::info!(
                    "waiting for the system database ({what}), for up to {:?}: {e}",
                    self.retry_for
                );
            }
        } else {
            tracing::debug!(error = %e, "{what}: still unreachable");
        }
    }

    /// Starts retrying one operation.
    pub(crate) fn attempts(&self) -> Attempts<'_> {
        Attempts {
            resilience: self,
            start: Instant::now(),
            failures: 0,
        }
    }

    /// Runs `op` (given the attempt number, 1-based) until it succeeds, fails with a
    /// non-transient error, the retry window closes, or the handle is closed.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_on(what, || std::future::ready(Ok(())), |(), n| op(n))
            .await
    }

    /// [`run`](Self::run) with a connection: each attempt checks one out with `checkout`
    /// (a failure to get one is an attempt's failure too) and gives it to `op`.
    pub(crate) async fn run_on<C, T, K, KFut, F, Fut>(
        &self,
        what: &str,
        checkout: K,
        mut op: F,
    ) -> Result<T>
    where
        K: Fn() -> KFut,
        KFut: Future<Output = Result<C>>,
        F: FnMut(C, u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempts = self.attempts();
        loop {
            attempts.check_open(what)?;
            let result = match checkout().await {
                Ok(client) => op(client, attempts.number()).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => return Ok(attempts.succeeded(v)),
                Err(e) => attempts.failed(what, e).await?,
            }
        }
    }
}

/// The attempts at one operation.
#[derive(Debug)]
pub(crate) struct Attempts<'a> {
    resilience: &'a Resilience,
    start: Instant,
    /// The attempts that failed so far.
    failures: u32,
}

impl Attempts<'_> {
    /// The current attempt, 1-based.
    pub(crate) fn number(&self) -> u32 {
        self.failures.saturating_add(1)
    }

    /// Fails once the handle is closed.
    pub(crate) fn check_open(&self, what: &str) -> Result<()> {
        if self.resilience.stop.is_cancelled() {
            return Err(Resilience::stopped_error(what));
        }
        Ok(())
    }

    /// Records a success (ending an outage) and passes the value through.
    pub(crate) fn succeeded<T>(&self, v: T) -> T {
        self.resilience.succeeded();
        v
    }

    /// After a failure: waits and returns `Ok` when the operation should be tried again,
    /// or returns the error to report.
    pub(crate) async fn failed(&mut self, what: &str, e: Error) -> Result<()> {
        if !e.is_transient() {
            return Err(e);
        }
        let r = self.resilience;
        if r.give_up.load(Ordering::Relaxed) {
            return Err(e);
        }
        let forever = r.forever.load(Ordering::Relaxed);
        let delay = backoff(FIRST_DELAY, 2.0, MAX_DELAY, self.number());
        if !forever && self.start.elapsed() + delay >= r.retry_for {
            return Err(e);
        }
        r.failed(what, &e, forever);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = r.stop.cancelled() => return Err(Resilience::stopped_error(what)),
        }
        self.failures = self.failures.saturating_add(1);
        Ok(())
    }
}

/// The retry state of an operation that cannot borrow its [`Resilience`] for its whole
/// life (a transaction driven step by step by generated code): the same policy as
/// [`Attempts`], kept by value.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RetryState {
    /// When the first attempt failed.
    start: Option<Instant>,
    /// The attempts that failed so far.
    failures: u32,
}

impl Resilience {
    /// [`Attempts::failed`] for a caller keeping its own [`RetryState`]: waits and returns
    /// `Ok` when the operation should be tried again, or returns the error to report.
    pub(crate) async fn pause(&self, state: &mut RetryState, what: &str, e: Error) -> Result<()> {
        let mut attempts = Attempts {
            resilience: self,
            start: *state.start.get_or_insert_with(Instant::now),
            failures: state.failures,
        };
        attempts.failed(what, e).await?;
        state.failures = attempts.failures;
        Ok(())
    }

    /// Ends an outage after an operation kept by [`RetryState`] succeeded.
    pub(crate) fn recovered(&self) {
        self.succeeded();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorKind};

    #[tokio::test]
    async fn retries_transient_then_succeeds_and_stops_on_permanent() {
        let r = Resilience::new(Duration::from_secs(5));
        let v = r
            .run("t", |n| async move {
                if n < 3 {
                    Err(Error::new(ErrorKind::Connection, "refused"))
                } else {
                    Ok(n)
                }
            })
            .await
            .unwrap();
        assert_eq!(v, 3);
        assert!(!r.down.load(Ordering::Relaxed), "the outage ended");

        let mut calls = 0;
        let e = r
            .run::<(), _, _>("t", |_| {
                calls += 1;
                async { Err(Error::new(ErrorKind::Database, "syntax")) }
            })
            .await
            .unwrap_err();
        assert_eq!((calls, e.kind()), (1, ErrorKind::Database));
    }

    #[tokio::test]
    async fn a_bounded_window_gives_up_and_forever_does_not() {
        let r = Resilience::new(Duration::from_millis(300));
        let mut calls = 0;
        let e = r
            .run::<(), _, _>("t", |_| {
                calls += 1;
                async { Err(Error::new(ErrorKind::Connection, "refused")) }
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Connection);
        assert!(calls >= 3, "retried {calls} times within the window");

        r.retry_forever();
        let started = Instant::now();
        let v = r
            .run("t", |n| async move {
                // Fails for longer than the bounded window would allow.
                if started.elapsed() < Duration::from_millis(700) {
                    Err(Error::new(ErrorKind::Connection, "refused"))
                } else {
                    Ok(n)
                }
            })
            .await
            .unwrap();
        assert!(v > 3, "{v} attempts");
    }

    #[tokio::test]
    async fn a_closed_handle_runs_nothing_more() {
        // Not even a first attempt: a dedicated session (a lock, a listener) opened after
        // shutdown would outlive the runtime.
        let r = Resilience::new(Duration::from_secs(5));
        r.stop();
        let mut calls = 0;
        let e = r
            .run("t", |_| {
                calls += 1;
                async { Ok(()) }
            })
            .await
            .unwrap_err();
        assert_eq!((calls, e.kind()), (0, ErrorKind::NotLaunched));
    }

    #[tokio::test]
    async fn stopping_ends_a_retry_loop_with_a_shutdown_error() {
        let r = std::sync::Arc::new(Resilience::new(Duration::from_secs(60)));
        r.retry_forever();
        let r2 = r.clone();
        let task = tokio::spawn(async move {
            r2.run::<(), _, _>("t", |_| async {
                Err(Error::new(ErrorKind::Connection, "refused"))
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        r.stop();
        let e = tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("stops at once")
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotLaunched);
    }
}
