//! The hot statements stay on the index that makes them cheap even when the table's
//! statistics are stale: a claim reads a handful of dequeue-index entries whatever the
//! backlog, and a finish does not scan the other pending workflows. (Counted with
//! `pg_stat_user_indexes`, not timed.)

use std::time::Duration;

use dbos_core::prelude::*;
use dbos_testkit::crash::eventually;
use dbos_testkit::TestDatabase;

#[workflow]
async fn backlog_item(x: i64) -> Result<i64, Error> {
    Ok(x)
}

static BACKLOG: Queue = Queue::new("backlog").worker_concurrency(8);

const QUEUED: i64 = 600;

#[dbos_testkit::test]
async fn claims_and_finishes_read_a_bounded_number_of_index_entries(db: TestDatabase) {
    // The schema, then statistics taken while the table is empty (as on a new deployment),
    // kept stale for the whole test.
    db.launch().await.shutdown().await.unwrap();
    let sql = db.connect().await;
    sql.batch_execute(
        "ANALYZE dbos.workflow_status;
         ALTER TABLE dbos.workflow_status SET (autovacuum_enabled = false);",
    )
    .await
    .unwrap();
    // A backlog written by DBOS's own SQL function, then counters from zero.
    sql.execute(
        "SELECT dbos.enqueue_workflow('backlog_item', 'backlog', ARRAY[g::text::json])
           FROM generate_series(1, $1::bigint) AS g",
        &[&QUEUED],
    )
    .await
    .unwrap();
    sql.execute("SELECT pg_stat_reset()", &[]).await.unwrap();

    let dbos = Dbos::launch(db.config("testapp").queue(&BACKLOG))
        .await
        .unwrap();
    eventually("the backlog to drain", Duration::from_secs(120), || async {
        let done: i64 = sql
            .query_one(
                "SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (done == QUEUED).then_some(())
    })
    .await;
    // Closing the connections flushes their statistics.
    dbos.shutdown().await.unwrap();
    let read = |index: &'static str| {
        let sql = &sql;
        async move {
            let row = sql
                .query_one(
                    "SELECT COALESCE(sum(idx_scan), 0)::bigint, COALESCE(sum(idx_tup_read), 0)::bigint
                       FROM pg_stat_user_indexes WHERE indexrelname = $1",
                    &[&index],
                )
                .await
                .unwrap();
            (row.get::<_, i64>(0), row.get::<_, i64>(1))
        }
    };
    let (scans, entries) = eventually(
        "the claims' statistics",
        Duration::from_secs(10),
        || async {
            let (scans, entries) = read("idx_workflow_status_in_flight_v2").await;
            (scans > 0).then_some((scans, entries))
        },
    )
    .await;
    // Each claim of up to 8 rows walks a few entries; reading the backlog would be hundreds.
    assert!(
        entries <= scans * 30,
        "claims read {entries} dequeue-index entries in {scans} scans: the backlog is being scanned"
    );
    let (_, pending_entries) = read("idx_workflow_status_pending").await;
    assert!(
        pending_entries < QUEUED,
        "finishes read {pending_entries} entries of the pending-workflows index for {QUEUED} workflows: \
         they look the row up through the other pending workflows"
    );
}
