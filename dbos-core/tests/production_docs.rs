//! The SQL of the "Running in production" chapter runs against a real system database and
//! does what the chapter says.

use dbos_core::{step, workflow, Error};
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

/// The connection budget of the chapter: an executor under load holds at most `pool_size`
/// pooled connections, 2 side connections, its lock session and its notification listener
/// on the system database's server, and the last two come on top of a full pool.
#[dbos_testkit::test]
async fn an_executor_holds_at_most_its_pool_plus_four_connections(db: TestDatabase) {
    const POOL: i64 = 3;
    let dbos = dbos_core::Dbos::launch(db.config("testapp").pool_size(POOL as usize))
        .await
        .unwrap();
    let client = db.connect().await;
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
    let (mut most, mut locks, mut listeners) = (0i64, 0i64, 0i64);
    loop {
        let row = client
            .query_one(
                "SELECT count(*),
                        count(*) FILTER (WHERE application_name = left($2, 63)),
                        count(*) FILTER (WHERE application_name = $3)
                   FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[
                    &db.name(),
                    &format!("dbos-rs lock {}", dbos.executor_id()),
                    &dbos_core::sysdb::LISTENER_APPLICATION_NAME,
                ],
            )
            .await
            .unwrap();
        most = most.max(row.get(0));
        locks = locks.max(row.get(1));
        listeners = listeners.max(row.get(2));
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
