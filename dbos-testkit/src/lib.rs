//! Test fixtures for `dbos-core`, modelled on `#[sqlx::test]`.
//!
//! ```no_run
//! use dbos_testkit::TestDatabase;
//!
//! #[dbos_testkit::test]
//! async fn schema_is_created(db: TestDatabase) {
//!     let dbos = db.launch().await;
//!     assert_eq!(dbos.migration().version(), 125);
//! }
//! ```
//!
//! - One ephemeral Postgres cluster per checkout ([`cluster()`]), started on demand from the
//!   installed server binaries and shared by parallel test processes.
//! - A fresh, empty database per test ([`TestDatabase`]), named from a hash of the test's
//!   path, dropped when the test passes and kept for inspection when it fails.
//! - A primary with a streaming standby for failover tests ([`replication`]).
//! - What a test receives depends on its signature: any argument type implementing
//!   [`TestArg`] (`TestDatabase`, `Dbos`, `SystemDatabase`).
//! - The admin server's fixture ([`admin`], with the `admin` feature): a runtime serving
//!   the admin API on a free port, an HTTP client for it, and workflows to seed it with.
//! - Durable time under the test's control ([`TestClock`]): give it to the runtime with
//!   `Config::clock` and [`advance`](TestClock::advance) it; sleeps, timed waits, schedule
//!   ticks and queue delays follow it.
//! - A test that runs past its timeout (120 s unless it sets one, `DBOS_TESTKIT_TIMEOUT`
//!   overrides) fails with a panic naming it and its kept database; see [`test`].

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

#[cfg(feature = "admin")]
pub mod admin;
pub mod clock;
pub mod cluster;
pub mod crash;
pub mod database;
pub mod logs;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod pgbouncer;
pub mod proxy;
pub mod python;
pub mod replay;
pub mod replication;
pub mod runs;

pub use clock::TestClock;
pub use cluster::{cluster, TestCluster};
pub use database::{RecordedStep, TestDatabase};
pub use replay::{fork_and_wait, replay, replay_check};

/// Marks an `async fn` as a test that receives a fresh database.
///
/// The test may take any number of arguments whose types implement [`TestArg`], and may
/// return `()` or a `Result<(), E: Debug>`. It runs on a multi-threaded tokio runtime.
/// The database is dropped when the test passes and kept (its name printed) when it fails.
///
/// # Timeout
///
/// A test fails when it runs longer than its timeout: [`DEFAULT_TIMEOUT`] (120 s), or its own,
/// given as a duration string:
///
/// ```no_run
/// #[dbos_testkit::test(timeout = "30s")]
/// async fn finishes_quickly(db: dbos_testkit::TestDatabase) {
///     let _dbos = db.launch().await;
/// }
/// ```
///
/// The failure is a panic naming the test and its database, which is kept for inspection as
/// for any failure. `DBOS_TESTKIT_TIMEOUT` ([`ENV_TIMEOUT`]) replaces every test's timeout, its
/// own included: `DBOS_TESTKIT_TIMEOUT=600s` on a slow machine, `none` under a debugger. The
/// timeout stops a test that awaits forever; a test that blocks its thread in synchronous code
/// is not interrupted.
pub use dbos_macros::test;

use std::future::Future;
use std::time::Duration;

use dbos_core::sysdb::SystemDatabase;
use dbos_core::Dbos;

/// A value a test can receive as an argument, built from its fresh database.
pub trait TestArg: Sized {
    /// Builds the value.
    fn setup(db: &TestDatabase) -> impl Future<Output = Self> + Send;
}

impl TestArg for TestDatabase {
    async fn setup(db: &TestDatabase) -> Self {
        db.clone()
    }
}

impl TestArg for Dbos {
    async fn setup(db: &TestDatabase) -> Self {
        db.launch().await
    }
}

impl TestArg for SystemDatabase {
    async fn setup(db: &TestDatabase) -> Self {
        SystemDatabase::connect(&db.url(), "dbos", &Default::default())
            .await
            .unwrap_or_else(|e| panic!("dbos-testkit: could not connect to `{}`: {e}", db.name()))
    }
}

/// What a test body may return.
pub trait TestResult {
    /// `Err` with a description when the test failed.
    fn into_outcome(self) -> Result<(), String>;
}

impl TestResult for () {
    fn into_outcome(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Debug> TestResult for Result<(), E> {
    fn into_outcome(self) -> Result<(), String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

/// The timeout of a test that sets none: long enough for the slowest test of this workspace
/// on a loaded two-core machine, short enough that a hang fails the run instead of stalling it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Environment variable replacing the timeout of every test (its own `timeout = ".."` and the
/// default): a duration such as `300s` or `10m`, or `none` for no timeout (under a debugger).
pub const ENV_TIMEOUT: &str = "DBOS_TESTKIT_TIMEOUT";

/// The timeout a test runs with: `$DBOS_TESTKIT_TIMEOUT` when set (`env`), else the test's
/// own, else [`DEFAULT_TIMEOUT`]. `Ok(None)` means no timeout.
///
/// # Errors
/// A description of the problem when `env` is not a duration.
pub fn effective_timeout(
    per_test: Option<Duration>,
    env: Option<&str>,
) -> Result<Option<Duration>, String> {
    match env.map(str::trim) {
        None | Some("") => Ok(Some(per_test.unwrap_or(DEFAULT_TIMEOUT))),
        Some("none") => Ok(None),
        Some(text) => match parse_duration(text) {
            Some(d) if !d.is_zero() => Ok(Some(d)),
            _ => Err(format!(
                "{ENV_TIMEOUT}={text:?} is not a timeout: write a duration such as 300s, 10m or 1h \
                 (a number and one of ms, s, m, h), or `none` for no timeout"
            )),
        },
    }
}

/// `"500ms"`, `"1.5s"`, `"10m"`, `"1h"`: a number followed by one of `ms`, `s`, `m`, `h`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

#[doc(hidden)]
/// Not public API: used by the code `#[dbos_testkit::test]` generates.
pub mod __private {
    pub use crate::{TestArg, TestDatabase, TestResult};
    use futures_util::FutureExt;
    use std::future::Future;
    use std::panic::AssertUnwindSafe;
    use std::time::Duration;

    /// How the timed part of a test ended.
    enum Ended {
        /// The body finished (or panicked, carried here to be resumed outside the runtime).
        Finished(Result<Result<(), String>, Box<dyn std::any::Any + Send>>),
        /// The timeout passed first.
        TimedOut,
    }

    /// Runs one test: creates its database, runs the body within the timeout (see
    /// [`effective_timeout`](crate::effective_timeout)), then drops the database, or keeps it
    /// when the test failed or timed out.
    ///
    /// # Panics
    /// When the test fails, with the body's panic, its error, or a timeout message naming
    /// the test and its database.
    pub fn run_test<F, Fut, R>(test_path: &str, timeout: Option<Duration>, body: F)
    where
        F: FnOnce(TestDatabase) -> Fut,
        Fut: Future<Output = R>,
        R: TestResult,
    {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
        let env = std::env::var(crate::ENV_TIMEOUT).ok();
        let timeout = crate::effective_timeout(timeout, env.as_deref())
            .unwrap_or_else(|e| panic!("dbos-testkit: {e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("dbos-testkit: cannot build a tokio runtime");
        let mut created: Option<TestDatabase> = None;
        let ended = runtime.block_on(async {
            let created = &mut created;
            // Each test in its own runtime scope: a runtime it launches is the one its
            // workflow calls use, whatever other tests of the process launch.
            let timed = dbos_core::Dbos::scope(async move {
                let db = TestDatabase::create(test_path).await;
                *created = Some(db.clone());
                let outcome = AssertUnwindSafe(body(db)).catch_unwind().await;
                outcome.map(TestResult::into_outcome)
            });
            match timeout {
                Some(limit) => match tokio::time::timeout(limit, timed).await {
                    Ok(outcome) => Ended::Finished(outcome),
                    Err(_) => Ended::TimedOut,
                },
                None => Ended::Finished(timed.await),
            }
        });
        match ended {
            Ended::Finished(Ok(Ok(()))) => {
                if let Some(db) = &created {
                    runtime.block_on(db.drop_database());
                }
            }
            Ended::Finished(Ok(Err(e))) => {
                keep_notice(created.as_ref());
                panic!("test returned an error: {e}");
            }
            Ended::Finished(Err(panic)) => {
                keep_notice(created.as_ref());
                std::panic::resume_unwind(panic);
            }
            Ended::TimedOut => {
                keep_notice(created.as_ref());
                // Whatever the body left running (a task stuck in blocking code, a child
                // process being waited for) must not hold the failure up.
                runtime.shutdown_background();
                let limit = timeout.unwrap_or_default();
                panic!(
                    "dbos-testkit: test `{test_path}` timed out after {limit:?}; its database `{}` is kept for \
                     inspection. A slow machine can raise every test's limit with {}=300s, one test with \
                     #[dbos_testkit::test(timeout = \"..\")]",
                    crate::database::database_name(test_path),
                    crate::ENV_TIMEOUT,
                );
            }
        }
    }

    fn keep_notice(db: Option<&TestDatabase>) {
        let Some(db) = db else {
            return;
        };
        eprintln!(
            "dbos-testkit: kept database `{}` of failed test `{}` for inspection: {}",
            db.name(),
            db.test_path(),
            dbos_core::sysdb::redact_url(&db.url())
        );
        eprintln!(
            "dbos-testkit: the password is in {}; the database is dropped when this test next runs",
            db.cluster().postgres().root().join("password").display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{effective_timeout, DEFAULT_TIMEOUT, ENV_TIMEOUT};
    use std::time::Duration;

    #[test]
    fn the_environment_replaces_every_timeout() {
        let own = Some(Duration::from_secs(5));
        assert_eq!(effective_timeout(None, None), Ok(Some(DEFAULT_TIMEOUT)));
        assert_eq!(effective_timeout(own, None), Ok(own));
        assert_eq!(effective_timeout(own, Some("")), Ok(own));
        assert_eq!(
            effective_timeout(own, Some("300s")),
            Ok(Some(Duration::from_secs(300)))
        );
        assert_eq!(
            effective_timeout(None, Some("10m")),
            Ok(Some(Duration::from_secs(600)))
        );
        assert_eq!(
            effective_timeout(None, Some("1.5s")),
            Ok(Some(Duration::from_millis(1500)))
        );
        assert_eq!(
            effective_timeout(None, Some("250ms")),
            Ok(Some(Duration::from_millis(250)))
        );
        assert_eq!(effective_timeout(own, Some("none")), Ok(None));
        for bad in ["300", "5 minutes", "0s", "-1s", "s"] {
            let e = effective_timeout(own, Some(bad)).unwrap_err();
            assert!(e.contains(ENV_TIMEOUT) && e.contains("300s"), "{bad}: {e}");
        }
    }
}
