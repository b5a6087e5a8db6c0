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
//! - One ephemeral Postgres cluster per checkout ([`cluster`]), started on demand from the
//!   installed server binaries and shared by parallel test processes.
//! - A fresh, empty database per test ([`TestDatabase`]), named from a hash of the test's
//!   path, dropped when the test passes and kept for inspection when it fails.
//! - A primary with a streaming standby for failover tests ([`replication`]).
//! - What a test receives depends on its signature: any argument type implementing
//!   [`TestArg`] (`TestDatabase`, `Dbos`, `SystemDatabase`).

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod cluster;
pub mod crash;
pub mod database;
pub mod proxy;
pub mod python;
pub mod replication;

pub use cluster::{cluster, TestCluster};
pub use database::TestDatabase;

/// Marks an `async fn` as a test that receives a fresh database.
///
/// The test may take any number of arguments whose types implement [`TestArg`], and may
/// return `()` or a `Result<(), E: Debug>`. It runs on a multi-threaded tokio runtime.
/// The database is dropped when the test passes and kept (its name printed) when it fails.
pub use dbos_macros::test;

use std::future::Future;

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

#[doc(hidden)]
/// Not public API: used by the code `#[dbos_testkit::test]` generates.
pub mod __private {
    pub use crate::{TestArg, TestDatabase, TestResult};
    use futures_util::FutureExt;
    use std::future::Future;
    use std::panic::AssertUnwindSafe;

    /// Runs one test: creates its database, runs the body, drops or keeps the database.
    pub fn run_test<F, Fut, R>(test_path: &str, body: F)
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
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("dbos-testkit: cannot build a tokio runtime");
        // Each test in its own runtime scope: a runtime it launches is the one its workflow
        // calls use, whatever other tests of the process launch.
        runtime.block_on(dbos_core::Dbos::scope(async {
            let db = TestDatabase::create(test_path).await;
            let outcome = AssertUnwindSafe(body(db.clone())).catch_unwind().await;
            match outcome {
                Ok(r) => match r.into_outcome() {
                    Ok(()) => db.drop_database().await,
                    Err(e) => {
                        keep_notice(&db);
                        panic!("test returned an error: {e}");
                    }
                },
                Err(panic) => {
                    keep_notice(&db);
                    std::panic::resume_unwind(panic);
                }
            }
        }));
    }

    fn keep_notice(db: &TestDatabase) {
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
