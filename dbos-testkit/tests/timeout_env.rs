//! `DBOS_TESTKIT_TIMEOUT` replaces a test's own timeout. Alone in its binary: it sets the
//! variable for the whole process.

use std::time::{Duration, Instant};

use dbos_testkit::TestDatabase;

#[test]
fn the_environment_variable_replaces_the_test_s_timeout() {
    std::env::set_var(dbos_testkit::ENV_TIMEOUT, "1s");
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(|| {
            // Its own limit is an hour; the variable's second applies.
            dbos_testkit::__private::run_test(
                "timeout_env::hangs",
                Some(Duration::from_secs(3600)),
                |_db: TestDatabase| std::future::pending::<()>(),
            )
        }));
    });
    let payload = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the variable's timeout did not apply")
        .expect_err("the test must time out");
    let message = payload.downcast::<String>().map(|s| *s).unwrap_or_default();
    assert!(message.contains("timed out after 1s"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let name = dbos_testkit::database::database_name("timeout_env::hangs");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let admin = dbos_testkit::cluster().await.connect("postgres").await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
    });
}
