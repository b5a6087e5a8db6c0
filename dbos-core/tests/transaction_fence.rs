//! The ownership fence of `#[transaction]` at every isolation level: a transaction whose
//! workflow is cancelled or taken over by another process while its body runs must not
//! commit (neither its statements nor its checkpoint), and a later resume runs it again.
//!
//! The cancel and the takeover are written by another connection (as another process would),
//! after the body's first statement took its snapshot, with a cancel poll far longer than the
//! test: only the fence at commit time can notice.
//!
//! A new claim handed to the running execution itself (a resume of the workflow, dequeued by
//! this executor while the body runs) is not a lost ownership: the fence refuses the record
//! made under the old token, and the transaction runs again under the new one.

use std::time::Duration;

use dbos_core::{transaction, workflow, Config, Dbos, Error, Transaction};
use dbos_testkit::crash::eventually;
use dbos_testkit::runs::{bump, runs};
use dbos_testkit::TestDatabase;

/// The body every fenced transaction runs: adds 1 to counter `key` (taking the snapshot),
/// then waits until the test says go.
async fn add_then_wait(tx: &Transaction<'_>, key: &str) -> Result<i32, Error> {
    let db = |e: tokio_postgres::Error| Error::new(dbos_core::ErrorKind::Database, e.to_string());
    let n: i32 = tx
        .query_one(
            "UPDATE fence_counters SET n = n + 1 WHERE id = $1 RETURNING n",
            &[&key],
        )
        .await
        .map_err(db)?
        .get(0);
    bump(&format!("{key}/started"));
    for _ in 0..3_000 {
        if runs(&format!("{key}/go")) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(n)
}

#[transaction(isolation = "serializable")]
async fn fenced_serializable(tx: &Transaction<'_>, key: String) -> Result<i32, Error> {
    add_then_wait(tx, &key).await
}

#[transaction(isolation = "repeatable_read")]
async fn fenced_repeatable_read(tx: &Transaction<'_>, key: String) -> Result<i32, Error> {
    add_then_wait(tx, &key).await
}

#[transaction(isolation = "read_committed")]
async fn fenced_read_committed(tx: &Transaction<'_>, key: String) -> Result<i32, Error> {
    add_then_wait(tx, &key).await
}

#[transaction(datasource = "app")]
async fn fenced_in_data_source(tx: &Transaction<'_>, key: String) -> Result<i32, Error> {
    add_then_wait(tx, &key).await
}

#[workflow]
async fn fenced_workflow(level: String, key: String) -> Result<i32, Error> {
    match level.as_str() {
        "serializable" => fenced_serializable(key).await,
        "repeatable_read" => fenced_repeatable_read(key).await,
        "read_committed" => fenced_read_committed(key).await,
        _ => fenced_in_data_source(key).await,
    }
}

const LEVELS: [&str; 3] = ["serializable", "repeatable_read", "read_committed"];

/// How another process interferes while the body waits.
#[derive(Clone, Copy, Debug)]
enum Interference {
    /// What DBOS's cancel writes.
    Cancel,
    /// Another executor's claim: a new ownership token.
    Takeover,
}

impl Interference {
    fn done(self) -> &'static str {
        match self {
            Interference::Cancel => "cancelled",
            Interference::Takeover => "taken over",
        }
    }
}

fn config(db: &TestDatabase, pool_size: usize) -> Config {
    db.config("testapp")
        .pool_size(pool_size)
        .data_source("app", db.sibling_url("app"))
        .cancel_poll_interval(Duration::from_secs(600))
        .park_after(Duration::from_secs(600))
}

async fn counter(client: &tokio_postgres::Client, key: &str) -> i32 {
    client
        .query_one("SELECT n FROM fence_counters WHERE id = $1", &[&key])
        .await
        .unwrap()
        .get(0)
}

/// Runs one fenced transaction at `level`, interferes while its body waits, and checks that
/// nothing committed; then resumes the workflow and checks that the transaction ran and
/// committed once. `tag` keeps the workflow ids (and their run counters) of one test apart
/// from another's.
async fn interfere(db: &TestDatabase, dbos: &Dbos, tag: &str, level: &str, how: Interference) {
    let id = format!("fence-{tag}{how:?}-{level}");
    let key = id.clone();
    let data = if level == "data_source" {
        dbos_testkit_connect(&db.sibling_url("app")).await
    } else {
        db.connect().await
    };
    data.execute("INSERT INTO fence_counters VALUES ($1, 0)", &[&key])
        .await
        .unwrap();
    let handle = fenced_workflow(level.into(), key.clone())
        .id(&id)
        .on(dbos)
        .start()
        .await
        .unwrap();
    eventually(
        "the body to take its snapshot and wait",
        Duration::from_secs(30),
        || async { (runs(&format!("{key}/started")) >= 1).then_some(()) },
    )
    .await;
    let sql = match how {
        Interference::Cancel => {
            "UPDATE dbos.workflow_status SET status = 'CANCELLED', owner_xid = NULL, queue_name = NULL, \
             deduplication_id = NULL, started_at_epoch_ms = NULL, \
             updated_at = (EXTRACT(epoch FROM now()) * 1000)::bigint \
             WHERE workflow_uuid = $1"
        }
        Interference::Takeover => {
            "UPDATE dbos.workflow_status SET owner_xid = 'another-executors-claim', executor_id = 'another-executor' \
             WHERE workflow_uuid = $1"
        }
    };
    db.connect().await.execute(sql, &[&id]).await.unwrap();
    bump(&format!("{key}/go"));

    if let Interference::Cancel = how {
        let outcome = tokio::time::timeout(Duration::from_secs(60), handle.result())
            .await
            .unwrap_or_else(|_| panic!("{id}: the cancelled workflow's handle never answered"));
        assert!(
            outcome.is_err(),
            "{id}: a cancelled workflow has no result: {outcome:?}"
        );
    }
    // The execution that lost its ownership stops; wait until nothing of it runs.
    eventually(
        "the fenced execution to stop",
        Duration::from_secs(60),
        || async { (dbos.running_workflows() == 0).then_some(()) },
    )
    .await;
    assert_eq!(
        counter(&data, &key).await,
        0,
        "{id}: the statements of a transaction whose workflow was {} committed",
        how.done()
    );
    assert_eq!(
        db.steps_of(&id).await.len(),
        0,
        "{id}: a transaction whose workflow was {} recorded a checkpoint",
        how.done()
    );

    // A later resume runs the transaction (it never committed) and records it.
    dbos.resume_workflow(&id).await.unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        dbos.retrieve_workflow::<i32, Error>(&id).result(),
    )
    .await
    .unwrap_or_else(|_| panic!("{id}: the resumed workflow did not finish"))
    .unwrap();
    assert_eq!(
        out, 1,
        "{id}: the resumed transaction ran on the untouched counter"
    );
    assert_eq!(counter(&data, &key).await, 1);
    assert_eq!(db.steps_of(&id).await.len(), 1);
}

async fn dbos_testkit_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

async fn setup(db: &TestDatabase, pool_size: usize) -> Dbos {
    let dbos = Dbos::launch(config(db, pool_size)).await.unwrap();
    let create = "CREATE TABLE fence_counters (id text PRIMARY KEY, n int NOT NULL)";
    db.connect().await.batch_execute(create).await.unwrap();
    dbos.data_source("app")
        .unwrap()
        .client()
        .await
        .unwrap()
        .batch_execute(create)
        .await
        .unwrap();
    dbos
}

#[dbos_testkit::test]
async fn a_cancel_committed_while_the_body_runs_stops_the_commit_at_every_level(db: TestDatabase) {
    let dbos = setup(&db, 10).await;
    for level in LEVELS {
        interfere(&db, &dbos, "", level, Interference::Cancel).await;
    }
    interfere(&db, &dbos, "", "data_source", Interference::Cancel).await;
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_takeover_while_the_body_runs_stops_the_commit_at_every_level(db: TestDatabase) {
    let dbos = setup(&db, 10).await;
    for level in LEVELS {
        interfere(&db, &dbos, "", level, Interference::Takeover).await;
    }
    interfere(&db, &dbos, "", "data_source", Interference::Takeover).await;
    dbos.shutdown().await.unwrap();
}

/// A fenced transaction's refused record is looked into (who owns the workflow now, what
/// was recorded) while the body's connection is still checked out: with one pooled
/// connection that look-up takes a side connection instead of waiting for the one the
/// transaction holds. (Checked: with `finish` not marking the task as holding a pooled
/// connection, the cancelled workflow's handle never answers.)
#[dbos_testkit::test]
async fn a_refused_record_is_looked_into_with_one_pooled_connection(db: TestDatabase) {
    let dbos = setup(&db, 1).await;
    for level in ["serializable", "read_committed"] {
        interfere(&db, &dbos, "one-", level, Interference::Cancel).await;
        interfere(&db, &dbos, "one-", level, Interference::Takeover).await;
    }
    dbos.shutdown().await.unwrap();
}

/// Resumes workflow `id` while its transaction's body waits: this executor dequeues it and
/// hands the new claim to the running execution. The transaction must commit once, under the
/// new claim (running again when its snapshot predates the claim), and not stop the
/// execution: that would leave the workflow pending, claimed here, with no execution.
async fn hand_over(db: &TestDatabase, dbos: &Dbos, level: &str) {
    let id = format!("fence-handover-{level}");
    let key = id.clone();
    let data = if level == "data_source" {
        dbos_testkit_connect(&db.sibling_url("app")).await
    } else {
        db.connect().await
    };
    data.execute("INSERT INTO fence_counters VALUES ($1, 0)", &[&key])
        .await
        .unwrap();
    let handle = fenced_workflow(level.into(), key.clone())
        .id(&id)
        .on(dbos)
        .start()
        .await
        .unwrap();
    eventually(
        "the body to take its snapshot and wait",
        Duration::from_secs(30),
        || async { (runs(&format!("{key}/started")) >= 1).then_some(()) },
    )
    .await;
    db.resume_until_claimed_again(dbos, &id).await;
    // The claim is handed to the execution right after it commits, in the same task.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        dbos.running_workflows(),
        1,
        "{id}: the claim attached to the running execution (no second body)"
    );
    bump(&format!("{key}/go"));
    let out = tokio::time::timeout(Duration::from_secs(60), handle.result())
        .await
        .unwrap_or_else(|_| panic!("{id}: the workflow never finished after the hand-over"))
        .unwrap();
    assert_eq!(out, 1, "{id}: the counter, added to once");
    // At SERIALIZABLE the fence reads the workflow's row in the body's snapshot, taken before
    // the claim: the body runs again on a new one. A data source's fence reads the system
    // database afresh and sees the new claim, so its transaction commits at once.
    let expected_runs = if level == "data_source" { 1 } else { 2 };
    assert_eq!(
        runs(&format!("{key}/started")),
        expected_runs,
        "{id}: the body's runs"
    );
    assert_eq!(counter(&data, &key).await, 1);
    assert_eq!(db.steps_of(&id).await.len(), 1);
}

#[dbos_testkit::test]
async fn a_claim_handed_to_the_running_execution_commits_its_transaction_once(db: TestDatabase) {
    let dbos = setup(&db, 10).await;
    hand_over(&db, &dbos, "serializable").await;
    hand_over(&db, &dbos, "data_source").await;
    dbos.shutdown().await.unwrap();
}
