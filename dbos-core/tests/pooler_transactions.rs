//! `#[transaction]`s on the system database through a transaction-mode pooler (the real
//! PgBouncer, started by the testkit) with fewer server connections than transactions
//! running at once. A transaction holds its server connection from its first statement to
//! its `COMMIT`; if it asked for a second one meanwhile (its checkpoint or fence on another
//! connection, a `send` or `set_event` from its body on a side connection), transactions
//! holding every server would wait for each other until PgBouncer's `query_wait_timeout`.

use std::time::{Duration, Instant};

use dbos_core::prelude::*;
use dbos_core::{Error, ErrorKind, Transaction};
use dbos_testkit::pgbouncer::{PgBouncer, PoolMode, SERVER_POOL_SIZE};
use dbos_testkit::runs::bump;
use dbos_testkit::TestDatabase;

/// What a stall at the pooler waits for before PgBouncer gives up on the waiting client:
/// short, so that a stall fails the test at once.
const QUERY_WAIT: Duration = Duration::from_secs(10);

fn db_error(e: tokio_postgres::Error) -> Error {
    Error::new(ErrorKind::Database, e.to_string())
}

/// Holds its server connection for 200 ms, writes a row for `i`, and (by `body`) sets an
/// event or sends a message to its own workflow from inside the transaction.
#[transaction]
async fn hold_and_write(tx: &Transaction<'_>, i: i64, body: String) -> Result<i64, Error> {
    bump(&format!("{body}/{i}"));
    tx.batch_execute("SELECT pg_sleep(0.2)")
        .await
        .map_err(db_error)?;
    tx.execute(
        "INSERT INTO pooltx_writes (body, i) VALUES ($1, $2)",
        &[&body, &i],
    )
    .await
    .map_err(db_error)?;
    match body.as_str() {
        "event" => dbos_core::set_event("written", &i).await?,
        "send" => {
            let me = dbos_core::workflow_id().unwrap_or_default();
            dbos_core::send(me, &i, "written").await?;
        }
        _ => {}
    }
    Ok(i)
}

#[workflow]
async fn pooled(i: i64, body: String) -> Result<i64, Error> {
    hold_and_write(i, body).await
}

/// A runtime through `bouncer` with room in its own pool for every transaction of a round.
fn config(db: &TestDatabase, bouncer: &PgBouncer, session: bool) -> dbos_core::Config {
    let mut config = db
        .config("pooltx")
        .system_database_url(bouncer.url(&db.url()))
        .pool_size(16);
    if session {
        config = config.session_url(db.url());
    }
    config
}

/// Rounds of 6, 9 and 12 transactions at once, each holding its server connection for
/// 200 ms, behind a pooler of 5: every one finishes, with its write and (per `body`) its
/// event or message exactly once, and none waits at the pooler for a server connection.
async fn transactions_at_once(db: &TestDatabase, body: &str, session: bool) {
    let bouncer = PgBouncer::start_with_query_wait(
        db.cluster(),
        PoolMode::Transaction,
        SERVER_POOL_SIZE,
        QUERY_WAIT,
    )
    .await;
    let direct = db.connect().await;
    direct
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS pooltx_writes (body text NOT NULL, i bigint NOT NULL)",
        )
        .await
        .unwrap();
    let dbos = Dbos::launch(config(db, &bouncer, session)).await.unwrap();
    let mut first = 0_i64;
    for n in [6_i64, 9, 12] {
        let ids: Vec<i64> = (first..first + n).collect();
        first += n;
        let started = Instant::now();
        let runs = futures_util::future::join_all(ids.iter().map(|&i| {
            let dbos = dbos.clone();
            let body = body.to_owned();
            async move {
                let id = format!("pooltx-{body}-{i}");
                tokio::time::timeout(Duration::from_secs(60), pooled(i, body).id(id).on(&dbos))
                    .await
            }
        }))
        .await;
        let took = started.elapsed();
        eprintln!("{body} (session URL: {session}): {n} transactions at once took {took:?}");
        for (&i, run) in ids.iter().zip(runs) {
            match run {
                Ok(Ok(out)) => assert_eq!(out, i),
                Ok(Err(e)) => panic!("{body}: transaction {i} failed after {took:?}: {e}"),
                Err(_) => panic!("{body}: transaction {i} did not finish within 60 s"),
            }
        }
        let waited = bouncer.waited_lines();
        assert!(
            waited.is_empty(),
            "{body}, {n} at once: clients waited {QUERY_WAIT:?} for a server connection: {waited:#?}"
        );
        // 200 ms each, five at a time: about half a second per five, far below the wait.
        assert!(took < QUERY_WAIT, "{body}, {n} at once: {took:?}");
    }
    // Each write, event and message exactly once.
    let counts = |sql: &'static str| {
        let direct = &direct;
        let body = body.to_owned();
        async move {
            direct
                .query(sql, &[&body])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
                .collect::<Vec<_>>()
        }
    };
    let once: Vec<(i64, i64)> = (0..first).map(|i| (i, 1)).collect();
    assert_eq!(
        counts("SELECT i, count(*) FROM pooltx_writes WHERE body = $1 GROUP BY i ORDER BY i").await,
        once
    );
    let outputs = "SELECT substr(workflow_uuid, length('pooltx-' || $1 || '-') + 1)::bigint, count(*)
                     FROM dbos.operation_outputs
                    WHERE workflow_uuid LIKE 'pooltx-' || $1 || '-%' AND function_name LIKE '%hold_and_write'
                    GROUP BY 1 ORDER BY 1";
    assert_eq!(counts(outputs).await, once);
    match body {
        "event" => assert_eq!(
            counts(
                "SELECT value::bigint, count(*) FROM dbos.workflow_events_history
                  WHERE workflow_uuid LIKE 'pooltx-' || $1 || '-%' AND key = 'written'
                  GROUP BY 1 ORDER BY 1"
            )
            .await,
            once
        ),
        "send" => assert_eq!(
            counts(
                "SELECT message::bigint, count(*) FROM dbos.notifications
                  WHERE destination_uuid LIKE 'pooltx-' || $1 || '-%' AND topic = 'written'
                  GROUP BY 1 ORDER BY 1"
            )
            .await,
            once
        ),
        _ => {}
    }
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test(timeout = "300s")]
async fn more_transactions_at_once_than_the_pooler_has_server_connections_all_finish(
    db: TestDatabase,
) {
    transactions_at_once(&db, "write", false).await;
}

#[dbos_testkit::test(timeout = "300s")]
async fn transactions_that_set_an_event_behind_a_pooler_all_finish(db: TestDatabase) {
    transactions_at_once(&db, "event", true).await;
}

#[dbos_testkit::test(timeout = "300s")]
async fn transactions_that_send_behind_a_pooler_all_finish(db: TestDatabase) {
    transactions_at_once(&db, "send", true).await;
}
