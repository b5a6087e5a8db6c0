//! Cancellation is prompt: a cancelled workflow starts no further step, child, sleep or wait,
//! a sleeping or waiting one wakes and stops, and a step already running completes without
//! being recorded, whether the cancel comes from this process, plain SQL or DBOS's CLI. The
//! same holds when a workflow's deadline passes.

use std::time::{Duration, Instant};

use dbos_core::{step, workflow, Dbos, Error, ErrorKind};
use dbos_testkit::crash::eventually;
use dbos_testkit::runs::{bump, runs as count, Unfinished};
use dbos_testkit::TestDatabase;

/// A step that takes `ms` of wall time (a slow API call).
#[step]
async fn slow(key: String, ms: u64) -> Result<(), Error> {
    bump(&format!("{key}/slow-started"));
    tokio::time::sleep(Duration::from_millis(ms)).await;
    bump(&format!("{key}/slow-finished"));
    Ok(())
}

#[step]
async fn after(key: String) -> Result<(), Error> {
    bump(&format!("{key}/after"));
    Ok(())
}

#[workflow]
async fn slow_then_after(key: String, ms: u64) -> Result<(), Error> {
    slow(key.clone(), ms).await?;
    after(key).await
}

#[workflow]
async fn sleeps_then_after(key: String, ms: u64) -> Result<(), Error> {
    // Counts `<key>/sleep/dropped` when the body ends (or is dropped) without its sleep
    // having completed: a stop woke the sleep.
    let asleep = Unfinished::new(format!("{key}/sleep"));
    dbos_core::sleep(Duration::from_millis(ms)).await?;
    asleep.finish();
    after(key).await
}

/// The cancel poll interval of these tests.
const POLL: Duration = Duration::from_millis(200);

async fn launch(db: &TestDatabase) -> Dbos {
    launch_polling(db, POLL).await
}

async fn launch_polling(db: &TestDatabase, poll: Duration) -> Dbos {
    Dbos::launch(
        db.config("testapp")
            .park_after(Duration::from_secs(600))
            .cancel_poll_interval(poll),
    )
    .await
    .unwrap()
}

/// The documented bound of a cancel made outside the process: noticed within one
/// `cancel_poll_interval`. The slack (300 ms) is the poll's own query and the wake-up on a
/// loaded machine; a poll that waited even two intervals would break it.
fn assert_noticed_within_the_poll_interval(latency: Duration, what: &str) {
    eprintln!("{what}: stopped {latency:?} after the cancel (poll interval {POLL:?})");
    let bound = POLL + Duration::from_millis(300);
    assert!(
        latency < bound,
        "{what}: stopped {latency:?} after the cancel, beyond the poll interval {POLL:?} (+300 ms)"
    );
}

async fn cancel_with_sql(db: &TestDatabase, id: &str) {
    cancel_on(&db.connect().await, id).await;
}

/// What DBOS's cancel writes (reference §1e), on an open connection.
async fn cancel_on(client: &tokio_postgres::Client, id: &str) {
    client
        .execute(
            "UPDATE dbos.workflow_status SET status = 'CANCELLED', owner_xid = NULL, queue_name = NULL, \
             deduplication_id = NULL, started_at_epoch_ms = NULL, \
             updated_at = (EXTRACT(epoch FROM now()) * 1000)::bigint, \
             completed_at = (EXTRACT(epoch FROM now()) * 1000)::bigint \
             WHERE workflow_uuid = $1 AND status NOT IN ('SUCCESS', 'ERROR')",
            &[&id],
        )
        .await
        .unwrap();
}

/// Waits until nothing runs in `dbos` any more; returns how long that took.
async fn stopped(dbos: &Dbos, what: &str) -> Duration {
    let started = Instant::now();
    eventually(what, Duration::from_secs(10), || async {
        (dbos.running_workflows() == 0).then_some(())
    })
    .await;
    started.elapsed()
}

#[dbos_testkit::test]
async fn a_local_cancel_wakes_a_sleep_and_nothing_after_it_runs(db: TestDatabase) {
    // A cancel through this process acts at once, not at the next poll: with a poll interval
    // of a minute, the workflow still stops within a second.
    let dbos = launch_polling(&db, Duration::from_secs(60)).await;
    let h = sleeps_then_after("local".into(), 60_000)
        .id("c-local")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    // Cancel once the sleep is recorded, so the cancel lands while the workflow sleeps; a
    // fixed delay (200 ms) let a loaded machine cancel it before it reached the sleep.
    eventually(
        "the sleep to be recorded",
        Duration::from_secs(10),
        || async { (db.step_names("c-local").await == ["DBOS.sleep"]).then_some(()) },
    )
    .await;
    let cancelled = Instant::now();
    dbos.cancel_workflow("c-local").await.unwrap();
    stopped(&dbos, "the sleeping workflow to stop").await;
    let latency = cancelled.elapsed();
    eprintln!("local cancel to stop: {latency:?}");
    assert!(
        latency < Duration::from_secs(1),
        "a local cancel took {latency:?} to stop the workflow"
    );
    // The execution stops at once whatever its body does; the sleep itself must be woken
    // too, not left sleeping out its minute in the background.
    eventually(
        "the stopped body's sleep to end",
        Duration::from_secs(1),
        || async { (count("local/sleep/dropped") == 1).then_some(()) },
    )
    .await;
    let e = h.result().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AwaitedWorkflowCancelled, "{e:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count("local/after"), 0);
    assert_eq!(db.step_names("c-local").await, vec!["DBOS.sleep"]);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_cancel_from_sql_stops_a_sleeping_workflow_within_the_poll_interval(db: TestDatabase) {
    // The worst case, measured: a cancel committed just after a poll waits for the next one.
    // A is cancelled and stops at a poll; B is cancelled right then, so it is noticed one
    // full interval later. The default interval (500 ms), bound = interval + 300 ms: a poll
    // that waited even two intervals fails this (checked).
    let poll = Duration::from_millis(500);
    let dbos = launch_polling(&db, poll).await;
    for (key, id) in [("sql", "c-sql"), ("sql-b", "c-sql-b")] {
        sleeps_then_after(key.into(), 60_000)
            .id(id)
            .on(&dbos)
            .start()
            .await
            .unwrap();
    }
    eventually("both workflows to run", Duration::from_secs(10), || async {
        (dbos.running_workflows() == 2).then_some(())
    })
    .await;
    let sql = db.connect().await;
    cancel_on(&sql, "c-sql").await;
    let cancelled = Instant::now();
    eventually("A to stop", Duration::from_secs(10), || async {
        (dbos.running_workflows() == 1).then_some(())
    })
    .await;
    let first = cancelled.elapsed();
    cancel_on(&sql, "c-sql-b").await;
    let worst = stopped(&dbos, "B to stop").await;
    eprintln!(
        "a cancel in SQL: stopped {first:?} after it (a random moment), {worst:?} after it \
         (right after a poll); poll interval {poll:?}"
    );
    for latency in [first, worst] {
        assert!(
            latency < poll + Duration::from_millis(300),
            "a cancel in SQL stopped its workflow {latency:?} after it, beyond the poll interval {poll:?} (+300 ms)"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count("sql/after") + count("sql-b/after"), 0);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_step_running_at_the_cancel_completes_unrecorded_and_the_next_never_starts(
    db: TestDatabase,
) {
    let dbos = launch(&db).await;
    let h = slow_then_after("mid".into(), 1_500)
        .id("c-mid")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually(
        "the slow step to start",
        Duration::from_secs(10),
        || async { (count("mid/slow-started") == 1).then_some(()) },
    )
    .await;
    cancel_with_sql(&db, "c-mid").await;
    let cancelled = Instant::now();
    // The caller does not wait for the step (1.5 s): the execution is stopped, and the
    // caller answered, within the poll interval.
    let e = tokio::time::timeout(Duration::from_secs(5), h.result())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AwaitedWorkflowCancelled, "{e:?}");
    assert_noticed_within_the_poll_interval(
        cancelled.elapsed(),
        "a cancel in SQL during a step, as its caller saw it",
    );
    eventually(
        "the running step to complete",
        Duration::from_secs(10),
        || async { (count("mid/slow-finished") == 1).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count("mid/after"), 0, "no step starts after the cancel");
    assert!(
        db.step_names("c-mid").await.is_empty(),
        "the step that completed after the cancel is not recorded"
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn the_dbos_cli_cancel_is_honoured(db: TestDatabase) {
    let dbos = launch(&db).await;
    sleeps_then_after("cli".into(), 60_000)
        .id("c-cli")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out =
        dbos_testkit::python::dbos_cli(&["workflow", "cancel", "c-cli", "-s", &db.url()]).await;
    assert!(
        out.status.success(),
        "dbos workflow cancel: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let latency = stopped(&dbos, "the workflow cancelled by DBOS's CLI to stop").await;
    // Measured from the CLI's exit: its cancel committed before that.
    assert_noticed_within_the_poll_interval(latency, "a cancel by DBOS's CLI");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count("cli/after"), 0);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_deadline_passing_during_a_step_stops_the_workflow_there(db: TestDatabase) {
    let dbos = launch(&db).await;
    let e = slow_then_after("deadline".into(), 1_500)
        .id("c-deadline")
        .timeout(Duration::from_millis(400))
        .on(&dbos)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    eventually(
        "the running step to complete",
        Duration::from_secs(10),
        || async { (count("deadline/slow-finished") == 1).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count("deadline/after"), 0);
    assert!(db.step_names("c-deadline").await.is_empty());
    dbos.shutdown().await.unwrap();
}

/// Plain code between two steps: no durable operation is in progress while it runs. It
/// waits until the test releases it (`<key>/release`), so the cancel always lands first
/// however slow the machine is.
#[workflow]
async fn works_between_steps(key: String) -> Result<(), Error> {
    after(format!("{key}-first")).await?;
    bump(&format!("{key}/between"));
    while count(&format!("{key}/release")) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bump(&format!("{key}/released"));
    after(key).await
}

/// A cancel that lands while the workflow runs its own code (between steps, where nothing
/// reads the database) stops it before its next step: that step's body never runs. The
/// stop is the execution's own flag: the step's checkpoint would be refused by the owner
/// fence anyway, but only after its body ran (checked: with `ExecutionControl::stopped`
/// answering `None`, the step after the cancel runs once).
#[dbos_testkit::test]
async fn a_cancel_between_steps_stops_the_workflow_before_its_next_step_runs(db: TestDatabase) {
    let dbos = launch(&db).await;
    let h = works_between_steps("between".into())
        .id("c-between")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually(
        "the workflow to reach its own code",
        Duration::from_secs(10),
        || async { (count("between/between") == 1).then_some(()) },
    )
    .await;
    dbos.cancel_workflow("c-between").await.unwrap();
    let e = h.result().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AwaitedWorkflowCancelled, "{e:?}");
    // Only now does the body go on to its next step.
    bump("between/release");
    eventually(
        "the body to pass its own wait",
        Duration::from_secs(10),
        || async { (count("between/released") == 1).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        count("between/after"),
        0,
        "the step after the cancel never ran"
    );
    assert_eq!(db.step_names("c-between").await, vec!["after"]);
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn long_child(ms: u64) -> Result<(), Error> {
    dbos_core::sleep(Duration::from_millis(ms)).await
}

#[workflow]
async fn waits_for_a_child(key: String) -> Result<(), Error> {
    let child = long_child(60_000)
        .id(format!("{key}-child"))
        .start()
        .await?;
    // Whatever the child's outcome, carry on: only a stop of this workflow ends it here.
    let _ = child.result().await;
    after(key).await
}

#[dbos_testkit::test]
async fn a_workflow_waiting_for_a_child_wakes_when_cancelled(db: TestDatabase) {
    let dbos = launch(&db).await;
    waits_for_a_child("waiter".into())
        .id("c-waiter")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually(
        "parent and child to run",
        Duration::from_secs(10),
        || async { (dbos.running_workflows() == 2).then_some(()) },
    )
    .await;
    cancel_with_sql(&db, "c-waiter").await;
    let cancelled = Instant::now();
    eventually(
        "the waiting parent to stop",
        Duration::from_secs(10),
        || async { (dbos.running_workflows() == 1).then_some(()) },
    )
    .await;
    assert_noticed_within_the_poll_interval(cancelled.elapsed(), "a cancel of a waiting parent");
    // The child ends now; a parent still waiting would take its answer and carry on.
    dbos.cancel_workflow("waiter-child").await.unwrap();
    stopped(&dbos, "the child to stop").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count("waiter/after"), 0);
    assert_eq!(db.step_names("c-waiter").await, vec!["long_child"]);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_parked_workflow_cancelled_while_it_sleeps_does_not_resume(db: TestDatabase) {
    let dbos = Dbos::launch(
        db.config("testapp")
            .park_after(Duration::from_millis(100))
            .cancel_poll_interval(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    // Long enough that the cancel lands well before the wake-up on a loaded machine.
    sleeps_then_after("parked".into(), 3_000)
        .id("c-parked")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("the workflow to park", Duration::from_secs(10), || async {
        (dbos.parked_workflows() == 1).then_some(())
    })
    .await;
    cancel_with_sql(&db, "c-parked").await;
    eventually(
        "the wake-up time to pass",
        Duration::from_secs(10),
        || async { (dbos.parked_workflows() == 0).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count("parked/after"), 0);
    assert_eq!(dbos.running_workflows(), 0);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn cancelling_an_unknown_workflow_is_a_typed_error(db: TestDatabase) {
    let dbos = launch(&db).await;
    let e = dbos.cancel_workflow("nobody").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonExistentWorkflow);
    // Finished workflows are left as they are.
    after("done".into()).await.unwrap();
    slow_then_after("done".into(), 1)
        .id("c-done")
        .on(&dbos)
        .await
        .unwrap();
    dbos.cancel_workflow("c-done").await.unwrap();
    assert_eq!(db.status_of("c-done").await.as_deref(), Some("SUCCESS"));
    dbos.shutdown().await.unwrap();
}
