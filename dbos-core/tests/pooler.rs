//! Through a connection pooler (the real PgBouncer, started by the testkit): in session mode
//! everything works; in transaction mode, where named prepared statements, `LISTEN` and
//! session advisory locks do not survive from one transaction to the next, launch and
//! `Client::connect` refuse at once with an error naming the pooler mode and what to do,
//! instead of failing later on `prepared statement "s3" does not exist` or hanging.

use std::time::Duration;

use dbos_core::prelude::*;
use dbos_core::ErrorKind;
use dbos_testkit::pgbouncer::{PgBouncer, PoolMode};
use dbos_testkit::TestDatabase;

#[step]
async fn add(a: i64, b: i64) -> Result<i64, dbos_core::Error> {
    Ok(a + b)
}

#[workflow]
async fn two_steps(x: i64) -> Result<i64, dbos_core::Error> {
    let y = add(x, 1).await?;
    add(y, 10).await
}

/// Bounds every launch here: a pooler must never make one hang.
const BOUND: Duration = Duration::from_secs(60);

fn assert_names_the_pooler(e: &dbos_core::Error) {
    assert_eq!(e.kind(), ErrorKind::Config, "{e:?}");
    let text = e.to_string();
    for words in [
        "transaction-mode connection pooler",
        "prepared statements",
        "LISTEN",
        "advisory locks",
        "session",
    ] {
        assert!(text.contains(words), "`{words}` missing from: {text}");
    }
}

#[dbos_testkit::test(timeout = "180s")]
async fn launch_through_a_transaction_mode_pooler_fails_with_a_clear_error(db: TestDatabase) {
    let bouncer = PgBouncer::start(db.cluster(), PoolMode::Transaction).await;
    let config = db
        .config("pooled")
        .system_database_url(bouncer.url(&db.url()));
    let launched = tokio::time::timeout(BOUND, Dbos::launch(config))
        .await
        .expect("launch through a transaction-mode pooler must not hang");
    let e = launched.expect_err("launch through a transaction-mode pooler must be refused");
    assert_names_the_pooler(&e);

    // A client (which never creates nor migrates) is refused the same way, once the
    // schema exists (made directly).
    db.launch().await.shutdown().await.unwrap();
    let connected = tokio::time::timeout(
        BOUND,
        dbos_core::client::Client::connect(bouncer.url(&db.url())),
    )
    .await
    .expect("a client connecting through a transaction-mode pooler must not hang");
    let e = connected.expect_err("a client through a transaction-mode pooler must be refused");
    assert_names_the_pooler(&e);
}

#[dbos_testkit::test(timeout = "180s")]
async fn a_transaction_mode_pooler_with_one_server_connection_is_refused_without_waiting(
    db: TestDatabase,
) {
    // One server connection: while the check's second connection holds it in a
    // transaction, a statement on the first would wait for it (until PgBouncer's
    // query_wait_timeout, two minutes) — the check must not send one.
    let bouncer = PgBouncer::start_with_pool(db.cluster(), PoolMode::Transaction, 1).await;
    let config = db
        .config("pooled")
        .system_database_url(bouncer.url(&db.url()));
    let launched = tokio::time::timeout(BOUND, Dbos::launch(config))
        .await
        .expect("launch through a one-connection transaction-mode pooler must not hang");
    assert_names_the_pooler(&launched.expect_err("must be refused"));
}

#[dbos_testkit::test(timeout = "180s")]
async fn a_session_mode_pooler_runs_workflows_normally(db: TestDatabase) {
    // In session mode every client connection holds a server connection: the pooler's pool
    // must cover all of the runtime's (see the server count below).
    let bouncer = PgBouncer::start_with_pool(db.cluster(), PoolMode::Session, 30).await;
    let config = db
        .config("pooled")
        .system_database_url(bouncer.url(&db.url()));
    let dbos = tokio::time::timeout(BOUND, Dbos::launch(config))
        .await
        .expect("launch through a session-mode pooler must not hang")
        .expect("launch through a session-mode pooler");
    let out = tokio::time::timeout(BOUND, two_steps(5).id("pooled-wf").on(&dbos))
        .await
        .expect("the workflow must not hang")
        .unwrap();
    assert_eq!(out, 16);
    let steps = db
        .connect()
        .await
        .query(
            "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'pooled-wf'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(steps[0].get::<_, i64>(0), 2);
    let servers: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    eprintln!("server connections held for one runtime with pool_size 4: {servers}");
    // The documented budget: the pool, its two side connections, the notification
    // listener and the executor lock.
    assert!(servers <= 4 + 4, "{servers} server connections");
    dbos.shutdown().await.unwrap();
}
