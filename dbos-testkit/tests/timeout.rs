//! A test that hangs fails at its timeout, with a panic naming the test and its database,
//! and the database is kept for inspection.

use std::time::{Duration, Instant};

use dbos_testkit::database::database_name;
use dbos_testkit::TestDatabase;

/// The panic message of `f`, which must panic within a minute. It runs on its own thread, so
/// a runner that ignores its timeout fails this test instead of hanging it.
fn panic_message(f: impl FnOnce() + Send + 'static) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    let payload = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the runner did not stop the test at its timeout")
        .expect_err("the test must fail");
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_default(),
    }
}

/// Whether the cluster holds a database of this name.
fn database_exists(name: &str) -> bool {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin = dbos_testkit::cluster().await.connect("postgres").await;
        admin
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 1
    })
}

fn drop_database(name: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin = dbos_testkit::cluster().await.connect("postgres").await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
    });
}

#[test]
fn a_hanging_test_fails_at_its_timeout_naming_itself_and_its_kept_database() {
    let path = "timeout::hangs_forever";
    let started = Instant::now();
    let message = panic_message(|| {
        dbos_testkit::__private::run_test(
            path,
            Some(Duration::from_millis(1500)),
            |_db: TestDatabase| std::future::pending::<()>(),
        )
    });
    let elapsed = started.elapsed();
    let name = database_name(path);
    assert!(message.contains("timed out after 1.5s"), "{message}");
    assert!(message.contains(path), "names the test: {message}");
    assert!(message.contains(&name), "names the database: {message}");
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(30),
        "failed at the timeout, not before or long after: {elapsed:?}"
    );
    assert!(
        database_exists(&name),
        "the database is kept for inspection"
    );
    drop_database(&name);
}

#[test]
fn a_test_that_finishes_in_time_passes_and_drops_its_database() {
    let path = "timeout::finishes_in_time";
    dbos_testkit::__private::run_test(
        path,
        Some(Duration::from_secs(60)),
        |db: TestDatabase| async move {
            assert_eq!(db.name(), database_name("timeout::finishes_in_time"));
        },
    );
    assert!(!database_exists(&database_name(path)));
}

// The option reaches the runner: without it this test would wait for the 120 s default.
#[dbos_testkit::test(timeout = "1s")]
#[should_panic(expected = "timed out after 1s")]
async fn the_timeout_option_sets_the_limit(_db: TestDatabase) {
    std::future::pending::<()>().await;
}
