//! What a workflow does is recorded, whatever its outcome: a refused or deduplicated enqueue,
//! the result of a workflow it awaited, the wake-up time of a sleep. A replay after a crash
//! gives the same answers even when the world changed meanwhile.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dbos_core::{step, workflow, Dbos, Error, Queue};
use dbos_testkit::crash::run_then_kill;
use dbos_testkit::TestDatabase;

/// Nobody serves this queue: what is enqueued on it stays active (holding its
/// deduplication id) until the test frees it.
static UNSERVED: Queue = Queue::new("unserved");

static HANGS: AtomicU32 = AtomicU32::new(0);
static REACHED: AtomicU32 = AtomicU32::new(0);

/// Hangs the first time it runs (the process is then killed there).
#[step]
async fn hang_the_first_time() -> Result<(), Error> {
    REACHED.fetch_add(1, Ordering::SeqCst);
    if HANGS.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[workflow]
async fn job(n: u32) -> Result<u32, Error> {
    Ok(n + 1)
}

#[workflow]
async fn enqueues_a_duplicate() -> Result<(String, String), Error> {
    let refused = match job(1).enqueue(&UNSERVED).deduplication_id("the-key").await {
        Ok(h) => format!("enqueued {}", h.id()),
        Err(e) => format!("refused: {:?}", e.kind()),
    };
    let existing = job(2)
        .enqueue(&UNSERVED)
        .deduplication_id("the-key")
        .return_existing_on_duplicate()
        .await?;
    hang_the_first_time().await?;
    Ok((refused, existing.id().to_owned()))
}

#[dbos_testkit::test]
async fn a_deduplicated_enqueue_replays_as_it_first_happened(db: TestDatabase) {
    let config = db
        .config("testapp")
        .executor_id("dedup-exec")
        .application_version("v-dedup");
    let dbos = Dbos::launch(config.clone()).await.unwrap();
    let holder = job(0)
        .id("holder")
        .on(&dbos)
        .enqueue(&UNSERVED)
        .deduplication_id("the-key")
        .await
        .unwrap();
    dbos.shutdown().await.unwrap();

    run_then_kill(
        config.clone(),
        |dbos| async move {
            enqueues_a_duplicate()
                .id("dup-parent")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        },
        "the parent to reach its hanging step",
        || REACHED.load(Ordering::SeqCst) == 1,
    )
    .await;

    // The key is free now: a fresh enqueue would succeed.
    db.connect()
        .await
        .execute(
            "UPDATE dbos.workflow_status SET status = 'CANCELLED', deduplication_id = NULL, queue_name = NULL \
             WHERE workflow_uuid = 'holder'",
            &[],
        )
        .await
        .unwrap();

    let dbos = Dbos::launch(config).await.unwrap();
    let (refused, existing) = dbos
        .retrieve_workflow::<(String, String), Error>("dup-parent")
        .result()
        .await
        .unwrap();
    assert_eq!(refused, "refused: QueueDeduplicated");
    assert_eq!(existing, holder.id());
    let steps: Vec<(i32, String, Option<String>, bool)> = db
        .steps_of("dup-parent")
        .await
        .into_iter()
        .map(|s| {
            (
                s.function_id,
                s.function_name,
                s.child_workflow_id,
                s.error.is_some(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            (1, "job".to_owned(), None, true),
            (2, "job".to_owned(), Some("holder".to_owned()), false),
            (3, "hang_the_first_time".to_owned(), None, false),
        ]
    );
    let queued: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM dbos.workflow_status WHERE name = 'job'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 1, "the replay enqueued nothing new");
    dbos.shutdown().await.unwrap();
}

static CHILD_REACHED: AtomicU32 = AtomicU32::new(0);
static CHILD_HANGS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn hang_once_after_the_child() -> Result<(), Error> {
    CHILD_REACHED.fetch_add(1, Ordering::SeqCst);
    if CHILD_HANGS.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[workflow]
async fn awaits_a_child() -> Result<u32, Error> {
    let value = job(41).await?;
    hang_once_after_the_child().await?;
    Ok(value)
}

#[dbos_testkit::test]
async fn an_awaited_result_replays_from_its_record_even_without_the_child(db: TestDatabase) {
    let config = db
        .config("testapp")
        .executor_id("child-exec")
        .application_version("v-child");
    run_then_kill(
        config.clone(),
        |dbos| async move {
            awaits_a_child()
                .id("waiter")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        },
        "the parent to pass its child",
        || CHILD_REACHED.load(Ordering::SeqCst) == 1,
    )
    .await;
    // The child's rows are gone (deleted, garbage-collected): the parent's record suffices.
    db.connect()
        .await
        .batch_execute(
            "DELETE FROM dbos.workflow_output WHERE workflow_uuid = 'waiter-1';
             DELETE FROM dbos.workflow_input WHERE workflow_uuid = 'waiter-1';
             DELETE FROM dbos.workflow_status WHERE workflow_uuid = 'waiter-1';",
        )
        .await
        .unwrap();
    let dbos = Dbos::launch(config).await.unwrap();
    let value = dbos
        .retrieve_workflow::<u32, Error>("waiter")
        .result()
        .await
        .unwrap();
    assert_eq!(value, 42);
    let step = db.step_of("waiter", 2).await;
    assert_eq!(step.function_name, "DBOS.getResult");
    assert_eq!(step.output.as_deref(), Some("42"));
    assert_eq!(step.child_workflow_id.as_deref(), Some("waiter-1"));
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn enqueues_a_child() -> Result<String, Error> {
    let started = job(1).start().await?;
    let queued = job(2).enqueue(&UNSERVED).await?;
    started.result().await?;
    Ok(queued.id().to_owned())
}

#[dbos_testkit::test]
async fn children_inherit_the_deadline_whether_started_or_enqueued(db: TestDatabase) {
    let dbos = db.launch().await;
    let queued = enqueues_a_child()
        .id("deadline-parent")
        .timeout(Duration::from_secs(3600))
        .on(&dbos)
        .await
        .unwrap();
    let deadlines: Vec<(String, Option<i64>)> = db
        .connect()
        .await
        .query(
            "SELECT workflow_uuid, workflow_deadline_epoch_ms FROM dbos.workflow_status \
             WHERE workflow_uuid IN ('deadline-parent', 'deadline-parent-1', $1) ORDER BY workflow_uuid",
            &[&queued],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(deadlines.len(), 3);
    let parent = deadlines[0].1.expect("the parent has a deadline");
    for (id, deadline) in &deadlines {
        assert_eq!(
            *deadline,
            Some(parent),
            "{id} inherits the parent's deadline"
        );
    }
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn naps_briefly() -> Result<(), Error> {
    dbos_core::sleep(Duration::from_millis(300)).await
}

#[dbos_testkit::test]
async fn a_sleep_is_recorded_as_completing_at_its_wake_up_time(db: TestDatabase) {
    let dbos = db.launch().await;
    naps_briefly().id("napper").on(&dbos).await.unwrap();
    let step = db.step_of("napper", 1).await;
    let wake_secs: f64 = step.output.unwrap().parse().unwrap();
    let (started, completed) = (
        step.started_at_epoch_ms.unwrap(),
        step.completed_at_epoch_ms.unwrap(),
    );
    let wake_ms = (wake_secs * 1000.0).round() as i64;
    assert!(
        (completed - wake_ms).abs() <= 1,
        "completion {completed} = wake-up time {wake_ms}"
    );
    assert!(completed - started >= 290, "{started} → {completed}");
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn waits_for_nothing() -> Result<Option<u32>, Error> {
    dbos_core::recv::<u32>("nobody-sends", Duration::from_millis(300)).await
}

#[dbos_testkit::test]
async fn a_receive_deadline_is_recorded_as_completing_when_recorded_as_dbos_does(db: TestDatabase) {
    // DBOS 3.4 records a timed wait's deadline as an instant (the wait may end long before
    // it); only a sleep's row completes at its wake-up time.
    let dbos = db.launch().await;
    assert_eq!(
        waits_for_nothing().id("waiter").on(&dbos).await.unwrap(),
        None
    );
    let row = db
        .connect()
        .await
        .query_one(
            "SELECT output, started_at_epoch_ms, completed_at_epoch_ms FROM dbos.operation_outputs \
             WHERE workflow_uuid = 'waiter' AND function_name = 'DBOS.sleep'",
            &[],
        )
        .await
        .unwrap();
    let wake_secs: f64 = row.get::<_, String>(0).parse().unwrap();
    let (started, completed): (i64, i64) = (row.get(1), row.get(2));
    let wake_ms = (wake_secs * 1000.0).round() as i64;
    assert!(
        wake_ms - completed >= 200,
        "completed when recorded ({completed}), well before the deadline ({wake_ms})"
    );
    assert!(
        completed >= started,
        "completion {completed} after start {started}"
    );
    assert!(
        (wake_ms - started - 300).abs() <= 50,
        "the deadline is the start plus the timeout: {started} → {wake_ms}"
    );
    dbos.shutdown().await.unwrap();
}
