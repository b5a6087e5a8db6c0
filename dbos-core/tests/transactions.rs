//! `#[transaction]` against real Postgres: the statements and their record commit in one
//! transaction (system database) or with a completion row (data source); errors roll back and
//! replay as the same value; serialization failures are retried; a lost commit
//! acknowledgement is settled without running the body again; the crash window between a
//! data source's commit and the checkpoint does not run the body again.

use std::sync::OnceLock;
use std::time::Duration;

use dbos_core::{step, transaction, workflow, Config, Dbos, Error, ErrorKind, Transaction};
use dbos_testkit::crash::{eventually, IsolatedRuntime};
use dbos_testkit::proxy::Proxy;
use dbos_testkit::runs::{bump, runs};
use dbos_testkit::TestDatabase;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
enum ShopError {
    #[error("`{0}` is out of stock")]
    OutOfStock(String),
    #[error("database: {0}")]
    Db(String),
    #[error("durability: {0}")]
    Dbos(String),
}

impl From<Error> for ShopError {
    fn from(e: Error) -> Self {
        ShopError::Dbos(e.to_string())
    }
}

impl From<tokio_postgres::Error> for ShopError {
    fn from(e: tokio_postgres::Error) -> Self {
        ShopError::Db(e.to_string())
    }
}

/// A recorded row: step id and three text columns.
type Recorded = (i32, Option<String>, Option<String>, Option<String>);

async fn exec(client: &tokio_postgres::Client, sql: &str) {
    client.batch_execute(sql).await.unwrap();
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

// ---------------------------------------------------------------------------------------
// The system database.

/// Adds 1 to the counter `id` and returns its new value; counts its runs under `run_key`.
#[transaction]
async fn add_one(tx: &Transaction<'_>, id: String, run_key: String) -> Result<i32, ShopError> {
    bump(&run_key);
    let row = tx
        .query_one(
            "UPDATE counters SET n = n + 1 WHERE id = $1 RETURNING n",
            &[&id],
        )
        .await?;
    Ok(row.get(0))
}

#[workflow]
async fn add_twice(id: String) -> Result<(i32, i32), ShopError> {
    let key = dbos_core::workflow_id().unwrap_or_default();
    let a = add_one(id.clone(), format!("{key}/1")).await?;
    let b = add_one(id, format!("{key}/2")).await?;
    Ok((a, b))
}

#[dbos_testkit::test]
async fn statements_and_checkpoint_commit_in_one_transaction(db: TestDatabase) {
    let dbos = db.launch().await;
    let client = db.connect().await;
    exec(&client, "CREATE TABLE counters (id text PRIMARY KEY, n int NOT NULL); INSERT INTO counters VALUES ('c', 0)").await;

    let out = add_twice("c".into()).id("same-db").await.unwrap();
    assert_eq!(out, (1, 2));
    assert_eq!((runs("same-db/1"), runs("same-db/2")), (1, 1));
    type Row = (i32, String, Option<String>, Option<String>, Option<String>);
    let got: Vec<Row> = db
        .steps_of("same-db")
        .await
        .into_iter()
        .map(|s| {
            (
                s.function_id,
                s.function_name,
                s.output,
                s.error,
                s.serialization,
            )
        })
        .collect();
    // The output's encoding is named, as DBOS reads it (checked: with it left NULL, this
    // fails).
    let pj = Some("portable_json".to_string());
    assert_eq!(
        got,
        vec![
            (1, "add_one".into(), Some("1".into()), None, pj.clone()),
            (2, "add_one".into(), Some("2".into()), None, pj)
        ]
    );
    // One transaction: the counter's last version and the second checkpoint were written by
    // the same transaction (one commit, not two).
    let same: bool = client
        .query_one(
            "SELECT (SELECT xmin::text FROM counters WHERE id = 'c') =
                    (SELECT xmin::text FROM dbos.operation_outputs WHERE workflow_uuid = 'same-db' AND function_id = 2)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        same,
        "the statement and its checkpoint committed separately"
    );

    // The workflow id is an idempotency key: nothing runs again.
    let again = add_twice("c".into()).id("same-db").await.unwrap();
    assert_eq!(again, (1, 2));
    assert_eq!((runs("same-db/1"), runs("same-db/2")), (1, 1));

    // Outside a workflow: a plain transaction, nothing recorded.
    let n = add_one("c".into(), "plain".into()).await.unwrap();
    assert_eq!((n, runs("plain")), (3, 1));
    let recorded: i64 = client
        .query_one("SELECT count(*) FROM dbos.operation_outputs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 2);
    dbos.shutdown().await.unwrap();
}

/// Takes `qty` from the stock of `sku`; a stock that would go negative is the function's own
/// error, returned after the `UPDATE` ran (so only the rollback undoes it).
#[transaction(isolation = "read_committed")]
async fn take(tx: &Transaction<'_>, sku: String, qty: i32) -> Result<i32, ShopError> {
    bump(&format!("take/{sku}"));
    let left: i32 = tx
        .query_one(
            "UPDATE stock SET n = n - $2 WHERE sku = $1 RETURNING n",
            &[&sku, &qty],
        )
        .await?
        .get(0);
    if left < 0 {
        return Err(ShopError::OutOfStock(sku));
    }
    Ok(left)
}

static HANG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

#[step]
async fn hang_while_told() -> Result<(), Error> {
    while HANG.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[workflow]
async fn take_then_wait(sku: String) -> Result<Option<ShopError>, ShopError> {
    let taken = take(sku, 5).await;
    hang_while_told().await?;
    Ok(taken.err())
}

#[dbos_testkit::test]
async fn an_error_rolls_back_and_replays_as_the_same_value(db: TestDatabase) {
    let client = db.connect().await;
    let config = db
        .config("testapp")
        .executor_id("tx-error")
        .application_version("v-tx-error");
    let first = IsolatedRuntime::new();
    let c = config.clone();
    first
        .run(async move {
            let dbos = Dbos::launch(c).await.unwrap();
            let client = dbos.system_database().client().await.unwrap();
            client
                .batch_execute("CREATE TABLE stock (sku text PRIMARY KEY, n int NOT NULL); INSERT INTO stock VALUES ('mug', 3)")
                .await
                .unwrap();
            take_then_wait("mug".into())
                .id("tx-error")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        })
        .await;
    eventually(
        "the transaction's error to be recorded",
        Duration::from_secs(20),
        || async {
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'tx-error'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (n == 1).then_some(())
        },
    )
    .await;
    first.abort();

    let row = client
        .query_one(
            "SELECT o.function_name, o.output, o.error, (SELECT n FROM stock WHERE sku = 'mug')
               FROM dbos.operation_outputs o WHERE workflow_uuid = 'tx-error' AND function_id = 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "take");
    assert_eq!(row.get::<_, Option<String>>(1), None);
    let error: serde_json::Value = serde_json::from_str(&row.get::<_, String>(2)).unwrap();
    assert_eq!(error["name"], "ShopError");
    assert_eq!(error["message"], "`mug` is out of stock");
    assert_eq!(row.get::<_, i32>(3), 3, "the UPDATE was rolled back");

    // Recovered: the transaction is replayed from its record, as the same typed error.
    HANG.store(false, std::sync::atomic::Ordering::SeqCst);
    let dbos = Dbos::launch(config).await.unwrap();
    let out = dbos
        .retrieve_workflow::<Option<ShopError>, ShopError>("tx-error")
        .result()
        .await
        .unwrap();
    assert_eq!(out, Some(ShopError::OutOfStock("mug".into())));
    assert_eq!(runs("take/mug"), 1, "the body did not run again");
    dbos.shutdown().await.unwrap();
}

/// Write skew: reads every balance, then withdraws 50 from one account if the total allows.
/// The first two runs wait for each other after the read, so two concurrent calls always
/// conflict under SERIALIZABLE.
#[transaction]
async fn withdraw(tx: &Transaction<'_>, account: i32) -> Result<i32, ShopError> {
    let run = bump("withdraw");
    let total: i64 = tx
        .query_one("SELECT sum(balance) FROM accounts", &[])
        .await?
        .get(0);
    if run <= 2 {
        static BARRIER: OnceLock<tokio::sync::Barrier> = OnceLock::new();
        let barrier = BARRIER.get_or_init(|| tokio::sync::Barrier::new(2));
        let _ = tokio::time::timeout(Duration::from_secs(10), barrier.wait()).await;
    }
    if total < 50 {
        return Err(ShopError::OutOfStock("money".into()));
    }
    let left: i32 = tx
        .query_one(
            "UPDATE accounts SET balance = balance - 50 WHERE id = $1 RETURNING balance",
            &[&account],
        )
        .await?
        .get(0);
    Ok(left)
}

#[workflow]
async fn withdraw_once(account: i32) -> Result<i32, ShopError> {
    withdraw(account).await
}

#[dbos_testkit::test]
async fn serialization_failures_are_retried_and_not_recorded(db: TestDatabase) {
    let dbos = db.launch().await;
    let client = db.connect().await;
    exec(&client, "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL); INSERT INTO accounts VALUES (1, 100), (2, 100)").await;
    let a = withdraw_once(1).id("w-1").start().await.unwrap();
    let b = withdraw_once(2).id("w-2").start().await.unwrap();
    assert_eq!(a.result().await.unwrap(), 50);
    assert_eq!(b.result().await.unwrap(), 50);
    assert!(
        runs("withdraw") >= 3,
        "one of the two conflicting transactions ran again ({} runs)",
        runs("withdraw")
    );
    let errors: i64 = client
        .query_one(
            "SELECT count(*) FROM dbos.operation_outputs WHERE error IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        errors, 0,
        "a serialization failure is not the transaction's error"
    );
    let total: i64 = client
        .query_one("SELECT sum(balance) FROM accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 100, "each account was debited once");
    dbos.shutdown().await.unwrap();
}

/// Lost update under REPEATABLE READ: the snapshot is taken, both runs wait for each other,
/// then both update the same row; the second `UPDATE` fails with 40001 inside the body, and
/// `?` turns that into the function's own error type.
#[transaction(isolation = "repeatable_read")]
async fn add_one_rr(tx: &Transaction<'_>) -> Result<i32, ShopError> {
    let run = bump("add_one_rr");
    tx.query_one("SELECT n FROM counters WHERE id = 'rr'", &[])
        .await?;
    if run <= 2 {
        static BARRIER: OnceLock<tokio::sync::Barrier> = OnceLock::new();
        let barrier = BARRIER.get_or_init(|| tokio::sync::Barrier::new(2));
        let _ = tokio::time::timeout(Duration::from_secs(10), barrier.wait()).await;
    }
    let n: i32 = tx
        .query_one(
            "UPDATE counters SET n = n + 1 WHERE id = 'rr' RETURNING n",
            &[],
        )
        .await?
        .get(0);
    Ok(n)
}

#[workflow]
async fn add_one_rr_once(_x: i32) -> Result<i32, ShopError> {
    add_one_rr().await
}

#[dbos_testkit::test]
async fn a_serialization_failure_converted_by_the_body_is_retried(db: TestDatabase) {
    let dbos = db.launch().await;
    let client = db.connect().await;
    exec(&client, "CREATE TABLE counters (id text PRIMARY KEY, n int NOT NULL); INSERT INTO counters VALUES ('rr', 0)").await;
    let a = add_one_rr_once(1).id("rr-1").start().await.unwrap();
    let b = add_one_rr_once(2).id("rr-2").start().await.unwrap();
    let mut got = vec![a.result().await.unwrap(), b.result().await.unwrap()];
    got.sort();
    assert_eq!(got, vec![1, 2], "no update was lost");
    assert_eq!(
        runs("add_one_rr"),
        3,
        "the transaction whose UPDATE failed ran again, once"
    );
    dbos.shutdown().await.unwrap();
}

/// The same lost update, through the `_raw` methods: the failure comes out of `execute_raw`
/// (and a read goes through `query_raw`'s rows stream).
#[transaction(isolation = "repeatable_read")]
async fn add_one_raw(tx: &Transaction<'_>) -> Result<i32, ShopError> {
    use futures_util::StreamExt;
    let run = bump("add_one_raw");
    let rows = tx
        .query_raw(
            "SELECT n FROM counters WHERE id = 'raw'",
            std::iter::empty::<i32>(),
        )
        .await?;
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows.next().await {
        row?;
    }
    if run <= 2 {
        static BARRIER: OnceLock<tokio::sync::Barrier> = OnceLock::new();
        let barrier = BARRIER.get_or_init(|| tokio::sync::Barrier::new(2));
        let _ = tokio::time::timeout(Duration::from_secs(10), barrier.wait()).await;
    }
    tx.execute_raw(
        "UPDATE counters SET n = n + 1 WHERE id = 'raw'",
        std::iter::empty::<i32>(),
    )
    .await?;
    Ok(run as i32)
}

#[workflow]
async fn add_one_raw_once(_x: i32) -> Result<i32, ShopError> {
    add_one_raw().await
}

#[dbos_testkit::test]
async fn a_serialization_failure_from_the_raw_methods_is_retried(db: TestDatabase) {
    let dbos = db.launch().await;
    let client = db.connect().await;
    exec(&client, "CREATE TABLE counters (id text PRIMARY KEY, n int NOT NULL); INSERT INTO counters VALUES ('raw', 0)").await;
    let a = add_one_raw_once(1).id("raw-1").start().await.unwrap();
    let b = add_one_raw_once(2).id("raw-2").start().await.unwrap();
    a.result().await.unwrap();
    b.result().await.unwrap();
    let n: i32 = client
        .query_one("SELECT n FROM counters WHERE id = 'raw'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "no update was lost");
    assert_eq!(
        runs("add_one_raw"),
        3,
        "the transaction whose execute_raw failed ran again, once"
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_lost_commit_acknowledgement_is_settled_without_running_again(db: TestDatabase) {
    let client = db.connect().await;
    exec(&client, "CREATE TABLE counters (id text PRIMARY KEY, n int NOT NULL); INSERT INTO counters VALUES ('lost', 0)").await;
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let dbos = Dbos::launch(
        db.config("testapp")
            .system_database_url(proxy.url(&db.url())),
    )
    .await
    .unwrap();
    // The COMMIT of the transaction that carries this workflow's id reaches the server 300 ms
    // after the client's connection was cut: the client sees an error, and for 300 ms the
    // transaction is still in progress on the server.
    proxy.cut_after_commit(b"lost-ack", Duration::from_millis(300));
    let out = add_twice("lost".into()).id("lost-ack").await.unwrap();
    assert_eq!(proxy.fired(), 1, "the COMMIT was held back");
    assert_eq!(out, (1, 2));
    assert_eq!(
        (runs("lost-ack/1"), runs("lost-ack/2")),
        (1, 1),
        "the body ran once: the lost acknowledgement was settled by asking the database"
    );
    let n: i32 = client
        .query_one("SELECT n FROM counters WHERE id = 'lost'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    dbos.shutdown().await.unwrap();
}

/// Outside a workflow too (a plain transaction, nothing recorded): a transaction whose
/// `COMMIT` acknowledgement is lost returns only once the database says it committed, so its
/// write is visible when the call returns, and its body does not run again. (Checked: with
/// the transaction id taken as "none assigned", the call returned at once, before the held
/// `COMMIT` landed; with a wrong id, the body ran again.)
#[dbos_testkit::test]
async fn a_lost_commit_acknowledgement_outside_a_workflow_is_settled_before_the_call_returns(
    db: TestDatabase,
) {
    let client = db.connect().await;
    exec(&client, "CREATE TABLE counters (id text PRIMARY KEY, n int NOT NULL); INSERT INTO counters VALUES ('plain-lost', 0)").await;
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let dbos = Dbos::launch(
        db.config("testapp")
            .system_database_url(proxy.url(&db.url())),
    )
    .await
    .unwrap();
    // The COMMIT of the transaction that updates this counter reaches the server 500 ms after
    // the client's connection was cut.
    proxy.cut_after_commit(b"plain-lost", Duration::from_millis(500));
    let out = add_one("plain-lost".into(), "plain-lost/1".into())
        .await
        .unwrap();
    let n: i32 = client
        .query_one("SELECT n FROM counters WHERE id = 'plain-lost'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(proxy.fired(), 1, "the COMMIT was held back");
    assert_eq!(
        (out, n),
        (1, 1),
        "the call returned once its commit was settled: its write is visible"
    );
    assert_eq!(runs("plain-lost/1"), 1, "the body ran once");
    dbos.shutdown().await.unwrap();
}

/// A body that swallows a failed statement and returns `Ok`: the transaction was aborted,
/// so the call fails (and the failure is recorded) instead of committing half of it.
#[transaction]
async fn ignores_an_error(tx: &Transaction<'_>) -> Result<i32, Error> {
    let _ = tx
        .execute("INSERT INTO no_such_table VALUES (1)", &[])
        .await;
    Ok(1)
}

/// `query_one` finding no row: an error of the body (no SQLSTATE, not a broken connection),
/// recorded at once rather than retried.
#[transaction]
async fn finds_nothing(tx: &Transaction<'_>) -> Result<i32, ShopError> {
    bump("finds_nothing");
    Ok(tx.query_one("SELECT 1 WHERE false", &[]).await?.get(0))
}

#[workflow]
async fn ignoring(_x: i32) -> Result<String, Error> {
    let nothing = finds_nothing().await;
    Ok(match ignores_an_error().await {
        Ok(v) => format!("ok {v}"),
        Err(e) => format!("{:?}: {}", e.kind(), e.message()),
    } + &format!(" / {nothing:?}"))
}

#[dbos_testkit::test]
async fn a_body_that_ignores_a_failed_statement_fails(db: TestDatabase) {
    let dbos = db.launch().await;
    let out = ignoring(1).id("ignoring").await.unwrap();
    assert!(out.starts_with("Database: the body of transaction `ignores_an_error` returned Ok after one of its statements failed"), "{out}");
    assert!(
        out.ends_with(r#" / Err(Db("query returned an unexpected number of rows"))"#),
        "{out}"
    );
    assert_eq!(
        runs("finds_nothing"),
        1,
        "a statement's own error is not retried"
    );
    let client = db.connect().await;
    let errors: i64 = client
        .query_one(
            "SELECT count(error) FROM dbos.operation_outputs WHERE workflow_uuid = 'ignoring'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(errors, 2, "both errors are recorded");
    dbos.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// A separate data source.

#[transaction(datasource = "app", name = "app_add_one")]
async fn app_add_one(tx: &Transaction<'_>, id: String, run_key: String) -> Result<i32, ShopError> {
    bump(&run_key);
    let row = tx
        .query_one(
            "UPDATE counters SET n = n + 1 WHERE id = $1 RETURNING n",
            &[&id],
        )
        .await?;
    Ok(row.get(0))
}

#[workflow]
async fn app_add_twice(id: String) -> Result<(i32, i32), ShopError> {
    let key = dbos_core::workflow_id().unwrap_or_default();
    let a = app_add_one(id.clone(), format!("{key}/1")).await?;
    let b = app_add_one(id, format!("{key}/2")).await?;
    Ok((a, b))
}

fn app_config(db: &TestDatabase, system_url: String) -> Config {
    db.config("testapp")
        .system_database_url(system_url)
        .data_source("app", db.sibling_url("app"))
        .executor_id("tx-app")
        .application_version("v-tx-app")
}

async fn app_client(db: &TestDatabase) -> tokio_postgres::Client {
    connect(&db.sibling_url("app")).await
}

#[dbos_testkit::test]
async fn a_data_source_commits_its_statements_with_a_completion_row(db: TestDatabase) {
    let dbos = Dbos::launch(app_config(&db, db.url())).await.unwrap();
    let app = dbos.data_source("app").unwrap();
    assert_eq!(app.schema(), "dbos");
    app.client()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE counters (id text PRIMARY KEY, n int NOT NULL); INSERT INTO counters VALUES ('c', 0)")
        .await
        .unwrap();

    let out = app_add_twice("c".into()).id("app-1").await.unwrap();
    assert_eq!(out, (1, 2));
    let client = app_client(&db).await;
    let rows = client
        .query(
            "SELECT step_id, output, error, serialization FROM dbos.datasource_outputs
              WHERE workflow_id = 'app-1' ORDER BY step_id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<Recorded> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, Some("1".into()), None, Some("portable_json".into())),
            (2, Some("2".into()), None, Some("portable_json".into()))
        ]
    );
    let same: bool = client
        .query_one(
            "SELECT (SELECT xmin::text FROM counters WHERE id = 'c') =
                    (SELECT xmin::text FROM dbos.datasource_outputs WHERE workflow_id = 'app-1' AND step_id = 2)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        same,
        "the statement and its completion row committed separately"
    );
    let version: i64 = client
        .query_one("SELECT version FROM dbos.dbos_datasource_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 1);
    // The checkpoints are in the system database, as for any step, with the outputs.
    let checkpoints: Vec<(String, Option<String>)> = db
        .steps_of("app-1")
        .await
        .into_iter()
        .map(|s| (s.function_name, s.output))
        .collect();
    let name = || "app_add_one".to_owned();
    assert_eq!(
        checkpoints,
        [(name(), Some("1".into())), (name(), Some("2".into()))]
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_crash_between_the_data_source_commit_and_the_checkpoint_does_not_run_again(
    db: TestDatabase,
) {
    // The system database through a proxy that goes away just before the first
    // transaction's checkpoint reaches it: the data source has committed, the system
    // database has not heard of it, and the process dies there.
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let first = IsolatedRuntime::new();
    let config = app_config(&db, proxy.url(&db.url()));
    let marker = "crash-window";
    proxy.cut_when_sent(b"app_add_one");
    first
        .run(async move {
            let dbos = Dbos::launch(config).await.unwrap();
            dbos.data_source("app")
                .unwrap()
                .client()
                .await
                .unwrap()
                .batch_execute("CREATE TABLE counters (id text PRIMARY KEY, n int NOT NULL); INSERT INTO counters VALUES ('c', 0)")
                .await
                .unwrap();
            app_add_twice("c".into())
                .id(marker)
                .on(&dbos)
                .start()
                .await
                .unwrap();
        })
        .await;
    eventually(
        "the checkpoint to be cut off",
        Duration::from_secs(20),
        || async { (proxy.fired() == 1).then_some(()) },
    )
    .await;
    first.abort();

    let app = app_client(&db).await;
    let committed: i64 = app
        .query_one(
            "SELECT count(*) FROM dbos.datasource_outputs WHERE workflow_id = 'crash-window'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        committed, 1,
        "the first transaction committed in the data source"
    );
    assert_eq!(
        db.steps_of("crash-window").await.len(),
        0,
        "its checkpoint never reached the system database"
    );

    // Recovery (directly, no proxy): the first transaction's recorded output is adopted.
    let dbos = Dbos::launch(app_config(&db, db.url())).await.unwrap();
    let out = dbos
        .retrieve_workflow::<(i32, i32), ShopError>("crash-window")
        .result()
        .await
        .unwrap();
    assert_eq!(out, (1, 2), "the workflow got the recorded output");
    assert_eq!(
        (runs("crash-window/1"), runs("crash-window/2")),
        (1, 1),
        "the body that committed before the crash did not run again"
    );
    let n: i32 = app
        .query_one("SELECT n FROM counters WHERE id = 'c'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    dbos.shutdown().await.unwrap();
}

/// A runtime whose data source `app` (with a counter `c` at 0) is reached through a proxy.
async fn launch_with_proxied_app(db: &TestDatabase) -> (Proxy, Dbos) {
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let config = db
        .config("testapp")
        .data_source("app", proxy.url(&db.sibling_url("app")));
    let dbos = Dbos::launch(config).await.unwrap();
    dbos.data_source("app")
        .unwrap()
        .client()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE counters (id text PRIMARY KEY, n int NOT NULL); INSERT INTO counters VALUES ('c', 0)")
        .await
        .unwrap();
    (proxy, dbos)
}

#[dbos_testkit::test]
async fn a_lost_commit_acknowledgement_in_a_data_source_is_settled(db: TestDatabase) {
    let (proxy, dbos) = launch_with_proxied_app(&db).await;
    proxy.cut_after_commit(b"app-lost", Duration::from_millis(300));
    let out = app_add_twice("c".into()).id("app-lost").await.unwrap();
    assert_eq!((proxy.fired(), out), (1, (1, 2)));
    assert_eq!((runs("app-lost/1"), runs("app-lost/2")), (1, 1));
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_transaction_in_a_data_source_the_runtime_lacks_fails_clearly(db: TestDatabase) {
    let dbos = db.launch().await;
    let e = app_add_one("c".into(), "missing".into()).await.unwrap_err();
    match e {
        ShopError::Dbos(message) => assert!(
            message.contains("runs in data source `app`, which this runtime does not have"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(runs("missing"), 0);
    let e = Dbos::launch(db.config("other").data_source("app", "mysql://nope"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.to_string().contains("the URL of data source `app`"),
        "{e}"
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn dbos_python_and_this_library_share_a_data_source_schema(db: TestDatabase) {
    // Created by this library at launch: DBOS Python accepts it as migrated (version 1 of 1).
    let ours = db.sibling_url("app");
    let dbos = Dbos::launch(db.config("testapp").data_source("app", &ours))
        .await
        .unwrap();
    dbos.shutdown().await.unwrap();
    let check = r#"
import sys
import sqlalchemy as sa
from dbos._datasource_migration import get_datasource_migration_versions, verify_datasource_migrations
url = sa.make_url(sys.argv[1]).set(drivername="postgresql+psycopg")
engine = sa.create_engine(url)
with engine.connect() as conn:
    verify_datasource_migrations(conn, "dbos", url)
    print(get_datasource_migration_versions(conn, "dbos"))
"#;
    let out = dbos_testkit::python::run_python(check, &[&ours]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "(1, 1)");

    // Created by DBOS Python: this library uses it as it is.
    let theirs = db.sibling_url("py");
    let create = r#"
import sys
from dbos._datasource_migration import migrate_datasource_database
migrate_datasource_database(sys.argv[1], None, None)
"#;
    connect(&db.url())
        .await
        .batch_execute(&format!("CREATE DATABASE \"{}_py\"", db.name()))
        .await
        .unwrap();
    let out = dbos_testkit::python::run_python(create, &[&theirs]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dbos = Dbos::launch(db.config("testapp").data_source("app", &theirs))
        .await
        .unwrap();
    dbos.data_source("app")
        .unwrap()
        .client()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE counters (id text PRIMARY KEY, n int NOT NULL); INSERT INTO counters VALUES ('c', 0)")
        .await
        .unwrap();
    assert_eq!(
        app_add_twice("c".into()).id("py-schema").await.unwrap(),
        (1, 2)
    );
    let rows: i64 = connect(&theirs)
        .await
        .query_one(
            "SELECT count(*) FROM dbos.datasource_outputs WHERE workflow_id = 'py-schema'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 2);
    dbos.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// The body must not end the library's transaction.

/// Adds 1 to counter `id`, then runs `ending` (a `COMMIT`, a `ROLLBACK`, ...) itself.
#[transaction]
async fn ends_its_transaction(
    tx: &Transaction<'_>,
    id: String,
    ending: String,
) -> Result<i32, Error> {
    bump(&format!("ends/{id}"));
    let n: i32 = tx
        .query_one(
            "UPDATE counters SET n = n + 1 WHERE id = $1 RETURNING n",
            &[&id],
        )
        .await
        .map_err(|e| Error::new(ErrorKind::Database, e.to_string()))?
        .get(0);
    tx.batch_execute(&ending)
        .await
        .map_err(|e| Error::new(ErrorKind::Database, e.to_string()))?;
    Ok(n)
}

#[transaction(datasource = "app", name = "app_ends_its_transaction")]
async fn app_ends_its_transaction(
    tx: &Transaction<'_>,
    id: String,
    ending: String,
) -> Result<i32, Error> {
    bump(&format!("ends/{id}"));
    let n: i32 = tx
        .query_one(
            "UPDATE counters SET n = n + 1 WHERE id = $1 RETURNING n",
            &[&id],
        )
        .await
        .map_err(|e| Error::new(ErrorKind::Database, e.to_string()))?
        .get(0);
    tx.batch_execute(&ending)
        .await
        .map_err(|e| Error::new(ErrorKind::Database, e.to_string()))?;
    Ok(n)
}

#[workflow]
async fn ending(id: String, ending: String, in_app: bool) -> Result<String, Error> {
    let r = if in_app {
        app_ends_its_transaction(id, ending).await
    } else {
        ends_its_transaction(id, ending).await
    };
    Ok(match r {
        Ok(n) => format!("ok {n}"),
        Err(e) => format!("{:?}: {}", e.kind(), e.message()),
    })
}

#[dbos_testkit::test]
async fn a_body_that_commits_or_rolls_back_itself_is_refused(db: TestDatabase) {
    let dbos = Dbos::launch(app_config(&db, db.url())).await.unwrap();
    let create = "CREATE TABLE counters (id text PRIMARY KEY, n int NOT NULL)";
    let client = db.connect().await;
    exec(&client, create).await;
    let app = app_client(&db).await;
    exec(&app, create).await;
    for (in_app, data) in [(false, &client), (true, &app)] {
        for end in ["COMMIT", "ROLLBACK", "COMMIT; BEGIN", "ROLLBACK AND CHAIN"] {
            let id = format!("ends-{in_app}-{}", end.replace([' ', ';'], "-"));
            data.execute("INSERT INTO counters VALUES ($1, 0)", &[&id])
                .await
                .unwrap();
            let out = ending(id.clone(), end.into(), in_app)
                .id(&id)
                .on(&dbos)
                .await
                .unwrap();
            assert!(
                out.starts_with("InvalidArgument: the body of transaction")
                    && out.contains("ended the transaction itself"),
                "{id}: {out}"
            );
            let recorded: Option<String> = client
                .query_one(
                    "SELECT error FROM dbos.operation_outputs WHERE workflow_uuid = $1 AND function_id = 1",
                    &[&id],
                )
                .await
                .unwrap()
                .get(0);
            assert!(
                recorded.is_some_and(|e| e.contains("ended the transaction itself")),
                "{id}: the refusal is recorded as the operation's error"
            );
            // The idempotency key replays the recorded refusal without running the body.
            let again = ending(id.clone(), end.into(), in_app)
                .id(&id)
                .on(&dbos)
                .await
                .unwrap();
            assert_eq!(again, out, "{id}");
            assert_eq!(runs(&format!("ends/{id}")), 1, "{id}");
            // No completion row in the data source was left to be adopted as a success.
            let completions: i64 = app
                .query_one(
                    "SELECT count(*) FROM dbos.datasource_outputs WHERE workflow_id = $1",
                    &[&id],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(completions, 0, "{id}");
        }
    }
    dbos.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// The function's own retry policy.

fn out_of_stock(e: &ShopError) -> bool {
    matches!(e, ShopError::OutOfStock(_))
}

/// Adds 1 to counter `id`, then fails with its own error (`OutOfStock` when `retried`, which
/// `retry_if` retries, else `Db`, which it does not) until its third run; returns the
/// counter's value and the attempt it ran as.
#[transaction(max_attempts = 3, interval = "20ms", retry_if = out_of_stock)]
async fn add_on_third(
    tx: &Transaction<'_>,
    id: String,
    run_key: String,
    retried: bool,
) -> Result<(i32, u32), ShopError> {
    let run = bump(&run_key);
    let row = tx
        .query_one(
            "UPDATE counters SET n = n + 1 WHERE id = $1 RETURNING n",
            &[&id],
        )
        .await?;
    if run < 3 {
        return Err(match retried {
            true => ShopError::OutOfStock(format!("run {run}")),
            false => ShopError::Db(format!("run {run}")),
        });
    }
    Ok((row.get(0), dbos_core::step_attempt().unwrap_or(0)))
}

#[workflow]
async fn adds_on_third(id: String, retried: bool) -> Result<(i32, u32), ShopError> {
    let key = dbos_core::workflow_id().unwrap_or_default();
    add_on_third(id, key, retried).await
}

#[dbos_testkit::test]
async fn the_functions_own_errors_are_retried_by_its_policy_and_rolled_back(db: TestDatabase) {
    let dbos = db.launch().await;
    let client = db.connect().await;
    exec(&client, "CREATE TABLE counters (id text PRIMARY KEY, n int NOT NULL); INSERT INTO counters VALUES ('c', 0)").await;
    let counter = || async {
        let n: i32 = db
            .connect()
            .await
            .query_one("SELECT n FROM counters WHERE id = 'c'", &[])
            .await
            .unwrap()
            .get(0);
        n
    };

    // Two failed attempts, rolled back; the third commits as attempt 3, recorded once.
    let out = adds_on_third("c".into(), true).id("own-1").await.unwrap();
    assert_eq!((out, runs("own-1"), counter().await), ((1, 3), 3, 1));
    let recorded: Vec<(String, Option<String>, Option<String>)> = db
        .steps_of("own-1")
        .await
        .into_iter()
        .map(|s| (s.function_name, s.output, s.error))
        .collect();
    assert_eq!(
        recorded,
        [("add_on_third".into(), Some("[1,3]".into()), None)]
    );

    // `retry_if` says no: the first error is final, rolled back, recorded and replayed.
    let e = adds_on_third("c".into(), false)
        .id("own-2")
        .await
        .unwrap_err();
    assert_eq!((e, runs("own-2")), (ShopError::Db("run 1".into()), 1));
    assert_eq!(counter().await, 1);
    let again = adds_on_third("c".into(), false)
        .id("own-2")
        .await
        .unwrap_err();
    assert_eq!((again, runs("own-2")), (ShopError::Db("run 1".into()), 1));

    // Outside a workflow the same policy applies (no attempt number: not a step).
    let out = add_on_third("c".into(), "own-plain".into(), true)
        .await
        .unwrap();
    assert_eq!((out, runs("own-plain"), counter().await), ((2, 0), 3, 2));
    dbos.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Another execution's record, and the reads a first run does not make.

static RECORDED_GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();
static RECORDED_BODIES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Adds 1 to counter `id`; its first run waits for the test's go before it returns.
#[transaction(isolation = "read_committed")]
async fn add_after_go(tx: &Transaction<'_>, id: String) -> Result<i32, ShopError> {
    let row = tx
        .query_one(
            "UPDATE counters SET n = n + 1 WHERE id = $1 RETURNING n",
            &[&id],
        )
        .await?;
    if RECORDED_BODIES.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
        RECORDED_GATE.notified().await;
    }
    Ok(row.get(0))
}

#[workflow]
async fn adds_after_go(id: String) -> Result<i32, ShopError> {
    add_after_go(id).await
}

#[dbos_testkit::test]
async fn a_step_another_execution_recorded_first_rolls_back_and_takes_its_result(db: TestDatabase) {
    let dbos = db.launch().await;
    let client = db.connect().await;
    exec(&client, "CREATE TABLE counters (id text PRIMARY KEY, n int NOT NULL); INSERT INTO counters VALUES ('c', 0)").await;
    let h = adds_after_go("c".into())
        .id("recorded-first")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("the body to run", Duration::from_secs(20), || async {
        (RECORDED_BODIES.load(std::sync::atomic::Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    // Another execution of the workflow records this step while the body runs: the
    // checkpoint's primary key refuses this one's.
    exec(
        &client,
        "INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output, serialization)
         VALUES ('recorded-first', 1, 'add_after_go', '42', 'portable_json')",
    )
    .await;
    RECORDED_GATE.notify_one();
    let out = tokio::time::timeout(Duration::from_secs(60), h.result())
        .await
        .expect("the workflow ended");
    assert_eq!(out, Ok(42), "the recorded result is the step's");
    let n: i32 = client
        .query_one("SELECT n FROM counters WHERE id = 'c'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        (n, RECORDED_BODIES.load(std::sync::atomic::Ordering::SeqCst)),
        (0, 1),
        "rolled back, not run again"
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_first_run_reads_nothing_from_the_completion_table(db: TestDatabase) {
    let (proxy, dbos) = launch_with_proxied_app(&db).await;
    // The completion table's read, were it sent, would cut the data source off.
    proxy.cut_when_sent(b"SELECT output, error, serialization FROM");
    let out = tokio::time::timeout(Duration::from_secs(30), async {
        app_add_twice("c".into()).id("first-run").await
    })
    .await;
    assert_eq!(proxy.fired(), 0, "a first run read the completion table");
    assert_eq!(out.expect("the workflow ended").unwrap(), (1, 2));
    dbos.shutdown().await.unwrap();
}

/// Adds 1 to counter `refused`; on its first run under `run_key`, its connection's backend
/// ends itself first (the server ends the session under the body).
#[transaction(datasource = "app", name = "app_cut_once")]
async fn app_cut_once(tx: &Transaction<'_>, run_key: String) -> Result<i32, ShopError> {
    if bump(&run_key) == 1 {
        tx.execute("SELECT pg_terminate_backend(pg_backend_pid())", &[])
            .await?;
    }
    let row = tx
        .query_one(
            "UPDATE counters SET n = n + 1 WHERE id = 'refused' RETURNING n",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// A connection that breaks under the body is an outage: the transaction runs again on a new
/// one. A data source that answers but refuses every new connection (its database no longer
/// accepts connections) is not: a transaction outside a workflow fails with the server's
/// error at once, instead of retrying it forever, and its body never ran.
#[dbos_testkit::test]
async fn a_broken_connection_runs_again_and_a_refused_one_fails_the_call(db: TestDatabase) {
    let dbos = Dbos::launch(app_config(&db, db.url())).await.unwrap();
    let app = app_client(&db).await;
    exec(&app, "CREATE TABLE counters (id text PRIMARY KEY, n int NOT NULL); INSERT INTO counters VALUES ('refused', 0)").await;
    assert_eq!(
        app_add_one("refused".into(), "refused/1".into())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        app_cut_once("refused/cut".into()).await.unwrap(),
        2,
        "the transaction whose connection broke ran again"
    );
    assert_eq!(runs("refused/cut"), 2);
    let name: String = app
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    let admin = db.connect().await;
    let allow = |on: bool| format!("ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS {on}");
    exec(&admin, &allow(false)).await;
    // The pooled connections go too: the next call must open a new one.
    eventually(
        "every connection to the data source to end",
        Duration::from_secs(30),
        || async {
            let ended = admin
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    &[&name],
                )
                .await
                .unwrap();
            ended.is_empty().then_some(())
        },
    )
    .await;
    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        app_add_one("refused".into(), "refused/2".into()),
    )
    .await
    .expect("a refused connection fails the call; it is not retried like an outage");
    match refused {
        Err(ShopError::Dbos(message)) => assert!(
            message.contains("not currently accepting connections"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(runs("refused/2"), 0, "the body never ran");
    exec(&admin, &allow(true)).await;
    assert_eq!(
        app_add_one("refused".into(), "refused/3".into())
            .await
            .unwrap(),
        3,
        "nothing of the refused call committed"
    );
    dbos.shutdown().await.unwrap();
}
