//! A `#[transaction]` holds one pooled connection until it has its result; what it asks of the
//! same database meanwhile (settling a lost `COMMIT` acknowledgement, a `set_event` from the
//! body) must not wait for another connection of an exhausted pool. With one pooled
//! connection, or as many concurrent settles as pooled connections, it used to wait forever.
//! And a `COMMIT` still in progress on the server after 5 s is ended by terminating its
//! backend, so the settle does not wait for it.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dbos_core::{
    transaction, workflow, Config, DataSourceConfig, Dbos, Error, ErrorKind, Transaction,
};
use dbos_testkit::proxy::Proxy;
use dbos_testkit::runs::{bump, runs};
use dbos_testkit::TestDatabase;

fn db_error(e: tokio_postgres::Error) -> Error {
    Error::new(ErrorKind::Database, e.to_string())
}

/// Adds 1 to counter `id`; the first two runs under `barrier` wait for each other inside
/// their transactions (so both hold a pooled connection at once).
#[transaction]
async fn add(
    tx: &Transaction<'_>,
    id: String,
    run_key: String,
    barrier: bool,
) -> Result<i32, Error> {
    let run = bump(&run_key);
    let n: i32 = tx
        .query_one(
            "UPDATE counters SET n = n + 1 WHERE id = $1 RETURNING n",
            &[&id],
        )
        .await
        .map_err(db_error)?
        .get(0);
    if barrier && bump("pool/barrier-runs") <= 2 {
        static BARRIER: OnceLock<tokio::sync::Barrier> = OnceLock::new();
        let barrier = BARRIER.get_or_init(|| tokio::sync::Barrier::new(2));
        let _ = tokio::time::timeout(Duration::from_secs(30), barrier.wait()).await;
    }
    let _ = run;
    Ok(n)
}

#[transaction(datasource = "app", name = "app_add")]
async fn app_add(tx: &Transaction<'_>, id: String, run_key: String) -> Result<i32, Error> {
    bump(&run_key);
    let n: i32 = tx
        .query_one(
            "UPDATE counters SET n = n + 1 WHERE id = $1 RETURNING n",
            &[&id],
        )
        .await
        .map_err(db_error)?
        .get(0);
    Ok(n)
}

/// Sets an event from the body: a write to the system database while the transaction holds
/// a connection of it.
#[transaction]
async fn add_and_tell(tx: &Transaction<'_>, id: String) -> Result<i32, Error> {
    let n: i32 = tx
        .query_one(
            "UPDATE counters SET n = n + 1 WHERE id = $1 RETURNING n",
            &[&id],
        )
        .await
        .map_err(db_error)?
        .get(0);
    dbos_core::set_event("added", &n).await?;
    Ok(n)
}

#[workflow]
async fn adds(id: String, where_: String, barrier: bool) -> Result<i32, Error> {
    let key = dbos_core::workflow_id().unwrap_or_default();
    match where_.as_str() {
        "app" => app_add(id, format!("{key}/tx")).await,
        "event" => add_and_tell(id).await,
        _ => add(id, format!("{key}/tx"), barrier).await,
    }
}

async fn counters(url: &str, ids: &[&str]) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS counters (id text PRIMARY KEY, n int NOT NULL)")
        .await
        .unwrap();
    for id in ids {
        client
            .execute("INSERT INTO counters VALUES ($1, 0)", &[id])
            .await
            .unwrap();
    }
    client
}

async fn counter(client: &tokio_postgres::Client, id: &str) -> i32 {
    client
        .query_one("SELECT n FROM counters WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

/// Runs workflow `id` within a bound far above what it needs (a hang fails the test).
async fn within(dbos: &Dbos, id: &str, counter: &str, where_: &str, barrier: bool) -> i32 {
    tokio::time::timeout(
        Duration::from_secs(60),
        adds(counter.into(), where_.into(), barrier).id(id).on(dbos),
    )
    .await
    .unwrap_or_else(|_| panic!("{id}: the transaction hung"))
    .unwrap()
}

fn config(db: &TestDatabase, system_url: String, pool_size: usize) -> Config {
    db.config("testapp")
        .system_database_url(system_url)
        .pool_size(pool_size)
}

#[dbos_testkit::test]
async fn a_lost_commit_acknowledgement_is_settled_with_one_pooled_connection(db: TestDatabase) {
    let client = counters(&db.url(), &["one"]).await;
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let dbos = Dbos::launch(config(&db, proxy.url(&db.url()), 1))
        .await
        .unwrap();
    proxy.cut_after_commit(b"pool-one", Duration::from_millis(300));
    assert_eq!(within(&dbos, "pool-one", "one", "system", false).await, 1);
    assert_eq!(proxy.fired(), 1, "the COMMIT was held back");
    assert_eq!(runs("pool-one/tx"), 1, "settled, not run again");
    assert_eq!(counter(&client, "one").await, 1);
    dbos.shutdown().await.unwrap();

    // The same in a data source of one pooled connection.
    let app_url = db.sibling_url("app");
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let dbos = Dbos::launch(
        db.config("testapp")
            .add_data_source(DataSourceConfig::url("app", proxy.url(&app_url)).pool_size(1)),
    )
    .await
    .unwrap();
    let app = counters(&app_url, &["one"]).await;
    proxy.cut_after_commit(b"pool-app-one", Duration::from_millis(300));
    assert_eq!(within(&dbos, "pool-app-one", "one", "app", false).await, 1);
    assert_eq!(proxy.fired(), 1, "the COMMIT was held back");
    assert_eq!(runs("pool-app-one/tx"), 1, "settled, not run again");
    assert_eq!(counter(&app, "one").await, 1);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn as_many_concurrent_settles_as_pooled_connections_finish(db: TestDatabase) {
    let client = counters(&db.url(), &["a", "b"]).await;
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let dbos = Dbos::launch(config(&db, proxy.url(&db.url()), 2))
        .await
        .unwrap();
    // Both transactions wait for each other inside the body, so each holds one of the two
    // pooled connections when its COMMIT's acknowledgement is lost.
    proxy.cut_after_commits(b"conc-settle", Duration::from_millis(300), 2);
    let (a, b) = tokio::join!(
        within(&dbos, "conc-settle-a", "a", "system", true),
        within(&dbos, "conc-settle-b", "b", "system", true)
    );
    assert_eq!((a, b), (1, 1));
    assert_eq!(proxy.fired(), 2, "both COMMITs were held back");
    assert_eq!((runs("conc-settle-a/tx"), runs("conc-settle-b/tx")), (1, 1));
    assert_eq!(
        (counter(&client, "a").await, counter(&client, "b").await),
        (1, 1)
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_commit_still_in_progress_after_five_seconds_is_ended_and_run_again(db: TestDatabase) {
    let client = counters(&db.url(), &["slow"]).await;
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let dbos = Dbos::launch(config(&db, proxy.url(&db.url()), 1))
        .await
        .unwrap();
    // The COMMIT would reach the server only after 60 s; the settle terminates the backend
    // still holding the transaction after 5 s, so it aborts and runs again.
    proxy.cut_after_commit(b"slow-commit", Duration::from_secs(60));
    let started = Instant::now();
    assert_eq!(
        within(&dbos, "slow-commit", "slow", "system", false).await,
        1
    );
    let took = started.elapsed();
    assert_eq!(proxy.fired(), 1, "the COMMIT was held back");
    assert_eq!(
        runs("slow-commit/tx"),
        2,
        "the terminated transaction aborted and ran again (without the terminate, the held COMMIT commits after 60 s)"
    );
    assert!(
        took >= Duration::from_secs(5),
        "terminated only after 5 s: {took:?}"
    );
    assert_eq!(
        counter(&client, "slow").await,
        1,
        "the aborted attempt left nothing"
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_body_that_sets_an_event_works_with_one_pooled_connection(db: TestDatabase) {
    let client = counters(&db.url(), &["told"]).await;
    let dbos = Dbos::launch(config(&db, db.url(), 1)).await.unwrap();
    assert_eq!(within(&dbos, "pool-event", "told", "event", false).await, 1);
    let value: Option<i32> = dbos
        .get_event("pool-event", "added", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(value, Some(1));
    assert_eq!(counter(&client, "told").await, 1);
    dbos.shutdown().await.unwrap();
}
