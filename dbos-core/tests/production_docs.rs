//! The SQL of the "Running in production" chapter runs against a real system database and
//! does what the chapter says.

use dbos_core::{step, transaction, workflow, Error, Transaction};
use dbos_testkit::runs::{bump, runs};
use dbos_testkit::TestDatabase;

#[step]
async fn double(n: u32) -> Result<u32, Error> {
    Ok(n * 2)
}

#[workflow]
async fn doubled_twice(n: u32) -> Result<u32, Error> {
    let once = double(n).await?;
    double(once).await
}

/// The ```sql blocks of the chapter.
fn sql_blocks() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src/production.md");
    let chapter = std::fs::read_to_string(path).unwrap();
    chapter
        .split("```sql\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap().to_owned())
        .collect()
}

#[dbos_testkit::test]
async fn the_production_chapter_s_queries_run_and_its_retention_deletes_only_old_work(
    db: TestDatabase,
) {
    let dbos = db.launch().await;
    for (id, n) in [("old", 1), ("recent", 2)] {
        assert_eq!(doubled_twice(n).id(id).on(&dbos).await.unwrap(), n * 4);
    }
    let client = db.connect().await;
    // "old" finished 40 days ago.
    client
        .execute(
            "UPDATE dbos.workflow_status SET completed_at = completed_at - 40 * 86400 * 1000::bigint \
             WHERE workflow_uuid = 'old'",
            &[],
        )
        .await
        .unwrap();

    let blocks = sql_blocks();
    let (retention, monitoring): (Vec<_>, Vec<_>) =
        blocks.iter().partition(|b| b.contains("DELETE"));
    assert_eq!(retention.len(), 1, "one retention query");
    assert!(!monitoring.is_empty(), "monitoring queries");
    for block in monitoring {
        client
            .simple_query(block)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{block}"));
    }
    client.simple_query(retention[0]).await.unwrap();

    let left = |table: &'static str| {
        let client = &client;
        async move {
            client
                .query(
                    &format!("SELECT DISTINCT workflow_uuid FROM dbos.{table} ORDER BY 1"),
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    for table in [
        "workflow_status",
        "workflow_input",
        "workflow_output",
        "operation_outputs",
    ] {
        assert_eq!(left(table).await, ["recent"], "{table}");
    }
    dbos.shutdown().await.unwrap();
}

#[step]
async fn napping_step(ms: u64) -> Result<u64, Error> {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    Ok(ms)
}

#[workflow]
async fn busy(ms: u64) -> Result<u64, Error> {
    let mut total = 0;
    for _ in 0..5 {
        total += napping_step(ms).await?;
    }
    Ok(total)
}

/// Sets an event from the body of a transaction: a write to the system database while the
/// transaction holds one of its pooled connections (it takes a side connection).
#[transaction]
async fn tell_while_holding(tx: &Transaction<'_>, i: u32) -> Result<u32, Error> {
    tx.query_one("SELECT 1", &[])
        .await
        .map_err(|e| Error::new(dbos_core::ErrorKind::Database, e.to_string()))?;
    bump("budget/telling");
    dbos_core::set_event("told", &i).await?;
    Ok(i)
}

#[workflow]
async fn telling(i: u32) -> Result<u32, Error> {
    tell_while_holding(i).await
}

/// Client connections to the test database other than `except` (the sampler's own and the
/// test's lock holder; the server's own workers, an autovacuum for one, are not clients):
/// all of them, the executor's lock session, its listener, and those waiting for a lock.
async fn connections(
    client: &tokio_postgres::Client,
    db: &TestDatabase,
    dbos: &dbos_core::Dbos,
    except: i32,
) -> [i64; 4] {
    let row = client
        .query_one(
            "SELECT count(*),
                    count(*) FILTER (WHERE application_name = left($2, 63)),
                    count(*) FILTER (WHERE application_name = $3),
                    count(*) FILTER (WHERE wait_event_type = 'Lock')
               FROM pg_stat_activity
              WHERE datname = $1 AND backend_type = 'client backend'
                AND pid <> pg_backend_pid() AND pid <> $4",
            &[
                &db.name(),
                &format!("dbos-rs lock {}", dbos.executor_id()),
                &dbos_core::sysdb::LISTENER_APPLICATION_NAME,
                &except,
            ],
        )
        .await
        .unwrap();
    [row.get(0), row.get(1), row.get(2), row.get(3)]
}

/// The connection budget of the chapter: an executor under load holds at most `pool_size`
/// pooled connections, 2 side connections, its lock session and its notification listener
/// on the system database's server, and the last two come on top of a full pool.
///
/// The side connections are driven to their limit first: as many transactions as pooled
/// connections each set an event from the body while the test holds every event write
/// back with a table lock, so each body asks for a side connection at once and holds it.
#[dbos_testkit::test]
async fn an_executor_holds_at_most_its_pool_plus_four_connections(db: TestDatabase) {
    const POOL: i64 = 3;
    let dbos = dbos_core::Dbos::launch(db.config("testapp").pool_size(POOL as usize))
        .await
        .unwrap();
    let client = db.connect().await;
    let (mut most, mut locks, mut listeners) = (0i64, 0i64, 0i64);

    let blocker = db.connect().await;
    let blocker_pid: i32 = blocker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    blocker
        .batch_execute("BEGIN; LOCK TABLE dbos.workflow_events IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut tellers = Vec::new();
    for i in 0..POOL as u32 {
        tellers.push(
            telling(i)
                .id(format!("budget-tell-{i}"))
                .on(&dbos)
                .start()
                .await
                .unwrap(),
        );
    }
    dbos_testkit::crash::eventually(
        "every transaction's body to hold a pooled connection and set its event",
        std::time::Duration::from_secs(60),
        || async { (runs("budget/telling") == POOL as u32).then_some(()) },
    )
    .await;
    let waiting_writes = dbos_testkit::crash::eventually(
        "the bodies' event writes to wait for the lock",
        std::time::Duration::from_secs(60),
        || async {
            let [.., waiting] = connections(&client, &db, &dbos, blocker_pid).await;
            (waiting >= 2).then_some(waiting)
        },
    )
    .await;
    // A third side connection, if the pool allowed one, would be opened by now; watch a
    // little longer for it.
    let mut most_waiting = waiting_writes;
    for _ in 0..100 {
        let [all, lock, listener, waiting] = connections(&client, &db, &dbos, blocker_pid).await;
        most = most.max(all);
        locks = locks.max(lock);
        listeners = listeners.max(listener);
        most_waiting = most_waiting.max(waiting);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    blocker.batch_execute("COMMIT").await.unwrap();
    for (i, teller) in tellers.into_iter().enumerate() {
        assert_eq!(teller.result().await.unwrap(), i as u32);
    }
    assert_eq!(
        most_waiting, 2,
        "the bodies' event writes share the two side connections"
    );
    let mut handles = Vec::new();
    for i in 0..24 {
        handles.push(
            busy(40)
                .id(format!("budget-{i}"))
                .on(&dbos)
                .start()
                .await
                .unwrap(),
        );
    }
    let results = tokio::spawn(async move {
        let mut out = Vec::new();
        for h in handles {
            out.push(h.result().await.unwrap());
        }
        out
    });
    loop {
        let [all, lock, listener, _] = connections(&client, &db, &dbos, blocker_pid).await;
        most = most.max(all);
        locks = locks.max(lock);
        listeners = listeners.max(listener);
        if results.is_finished() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(results.await.unwrap(), vec![200; 24]);
    eprintln!("pool_size {POOL}: at most {most} connections on the server");
    assert_eq!((locks, listeners), (1, 1), "one lock session, one listener");
    assert!(
        most <= POOL + 4,
        "{most} connections with pool_size {POOL}: the chapter's budget is pool_size + 4"
    );
    assert!(
        most >= POOL + 2,
        "{most} connections: the lock session and the listener come on top of a full pool"
    );
    dbos.shutdown().await.unwrap();
}
