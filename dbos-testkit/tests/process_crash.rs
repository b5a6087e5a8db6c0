//! A real OS process running a workflow is killed with SIGKILL mid-step and restarted:
//! completed steps never run again, the workflow completes, and its result equals an
//! uncrashed run's.

use std::time::Duration;

use dbos_testkit::crash::{eventually, ChildProcess};
use dbos_testkit::TestDatabase;

const SUBJECT: &str = env!("CARGO_BIN_EXE_dbos-crash-subject");

async fn counters(db: &TestDatabase) -> Vec<(i32, i64)> {
    let client = db.connect().await;
    match client
        .query("SELECT step, runs FROM crash_counters ORDER BY step", &[])
        .await
    {
        Ok(rows) => rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        Err(_) => Vec::new(),
    }
}

#[dbos_testkit::test]
async fn sigkill_mid_workflow_then_restart_recovers_without_rerunning_completed_steps(
    db: TestDatabase,
) {
    let url = db.url();
    let env = [
        ("DBOS_SYSTEM_DATABASE_URL", url.as_str()),
        ("DBOS__VMID", "proc-exec"),
        ("RUST_LOG", "warn"),
    ];
    let first = ChildProcess::spawn(SUBJECT, &[], &env);
    eventually(
        "step 3 to start in the first process",
        Duration::from_secs(60),
        || async {
            counters(&db)
                .await
                .iter()
                .any(|&(s, n)| s == 3 && n == 1)
                .then_some(())
        },
    )
    .await;
    first.kill9().await;
    assert_eq!(counters(&db).await, vec![(1, 1), (2, 1), (3, 1)]);
    let status: String = db
        .connect()
        .await
        .query_one(
            "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = 'proc-crash'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        status, "PENDING",
        "the killed process left its workflow pending"
    );

    let second = ChildProcess::spawn(SUBJECT, &[], &env);
    assert_eq!(second.wait(Duration::from_secs(60)).await, Some(0));
    // Steps 1 and 2 never ran again; step 3 ran twice (it was killed mid-step); 4 and 5 once.
    assert_eq!(
        counters(&db).await,
        vec![(1, 1), (2, 1), (3, 2), (4, 1), (5, 1)]
    );
    let client = db.connect().await;
    let row = client
        .query_one(
            "SELECT s.status, o.output FROM dbos.workflow_status s JOIN dbos.workflow_output o USING (workflow_uuid)
              WHERE workflow_uuid = 'proc-crash'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "SUCCESS");
    assert_eq!(
        row.get::<_, String>(1),
        "[10,20,30,40,50]",
        "the same result as an uncrashed run"
    );
    let steps: i64 = client
        .query_one(
            "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'proc-crash'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(steps, 5, "each step recorded exactly once");
}
