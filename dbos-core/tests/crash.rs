//! Crash tests in-process: the executor's runtime is dropped abruptly mid-workflow (no
//! graceful anything), relaunched with the same executor id, and recovers. Also: two live
//! executions of one workflow id never both record (owner fencing).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dbos_core::{step, workflow, Dbos, Error, ErrorKind};
use dbos_testkit::crash::{eventually, IsolatedRuntime};
use dbos_testkit::runs::{bump, runs};
use dbos_testkit::TestDatabase;

#[step]
async fn numbered(key: String, n: u32, hang_first_time_at: u32) -> Result<u32, Error> {
    let count = bump(&format!("{key}/{n}"));
    if n == hang_first_time_at && count == 1 {
        std::future::pending::<()>().await;
    }
    Ok(n * n)
}

#[workflow]
async fn five_steps(key: String, hang_at: u32) -> Result<(String, Vec<u32>), Error> {
    let id = dbos_core::uuid().await?;
    let mut out = Vec::new();
    for n in 1..=5 {
        out.push(numbered(key.clone(), n, hang_at).await?);
    }
    Ok((id, out))
}

#[dbos_testkit::test]
async fn abort_after_step_two_then_relaunch_recovers(db: TestDatabase) {
    let config = db
        .config("testapp")
        .executor_id("crash-exec")
        .application_version("v-crash");

    // An uncrashed run, for comparison.
    let reference = {
        let dbos = Dbos::launch(config.clone()).await.unwrap();
        let r = five_steps("ref".into(), 0)
            .id("reference")
            .on(&dbos)
            .await
            .unwrap();
        dbos.shutdown().await.unwrap();
        r
    };

    let first = IsolatedRuntime::new();
    let c = config.clone();
    first
        .run(async move {
            let dbos = Dbos::launch(c).await.unwrap();
            five_steps("crash".into(), 3)
                .id("crashing")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        })
        .await;
    eventually("step 3 to start", Duration::from_secs(10), || async {
        (runs("crash/3") == 1).then_some(())
    })
    .await;
    first.abort();

    let recorded: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'crashing'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        recorded, 3,
        "uuid, step 1 and step 2 were recorded before the crash"
    );

    let dbos = Dbos::launch(config).await.unwrap();
    let (id, squares) = dbos
        .retrieve_workflow::<(String, Vec<u32>), Error>("crashing")
        .result()
        .await
        .unwrap();
    assert_eq!(squares, reference.1, "the result equals an uncrashed run's");
    assert_eq!(
        (1..=5)
            .map(|n| runs(&format!("crash/{n}")))
            .collect::<Vec<_>>(),
        vec![1, 1, 2, 1, 1],
        "completed steps never ran again; only the step in flight at the crash ran twice"
    );
    let recorded_uuid: String = db
        .connect()
        .await
        .query_one("SELECT output FROM dbos.operation_outputs WHERE workflow_uuid = 'crashing' AND function_id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        recorded_uuid,
        format!("\"{id}\""),
        "the uuid drawn before the crash was replayed, not redrawn"
    );
    let row = db
        .connect()
        .await
        .query_one(
            "SELECT recovery_attempts, queue_name FROM dbos.workflow_status WHERE workflow_uuid = 'crashing'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("_dbos_internal_queue"),
        "a workflow started directly is recovered through the internal queue"
    );
}

#[workflow]
async fn long_sleep(seconds: u64) -> Result<u64, Error> {
    dbos_core::sleep(Duration::from_secs(seconds)).await?;
    Ok(seconds)
}

/// The wake-up time `DBOS.sleep` recorded for a workflow, once it is recorded.
async fn recorded_wake_up(db: &TestDatabase, workflow_id: &str) -> Option<SystemTime> {
    let rows = db
        .connect()
        .await
        .query(
            "SELECT output FROM dbos.operation_outputs WHERE workflow_uuid = $1 AND function_name = 'DBOS.sleep'",
            &[&workflow_id],
        )
        .await
        .unwrap();
    assert!(rows.len() <= 1, "one sleep, one checkpoint");
    let seconds: f64 = rows.first()?.get::<_, String>(0).parse().unwrap();
    Some(UNIX_EPOCH + Duration::from_secs_f64(seconds))
}

#[dbos_testkit::test]
async fn a_recovered_sleep_waits_only_the_remainder(db: TestDatabase) {
    let config = db
        .config("testapp")
        .executor_id("sleep-exec")
        .application_version("v-sleep");
    let first = IsolatedRuntime::new();
    let c = config.clone();
    first
        .run(async move {
            let dbos = Dbos::launch(c).await.unwrap();
            long_sleep(6).id("sleeper").on(&dbos).start().await.unwrap();
        })
        .await;
    let wake = eventually(
        "the sleep's checkpoint",
        Duration::from_secs(10),
        || async { recorded_wake_up(&db, "sleeper").await },
    )
    .await;
    // Crash two seconds before the recorded wake-up, four seconds into the sleep: a sleep
    // restarted by recovery would end four seconds after the recorded wake-up.
    let crash_at = wake - Duration::from_secs(2);
    if let Ok(wait) = crash_at.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    first.abort();
    let dbos = Dbos::launch(config).await.unwrap();
    assert_eq!(
        dbos.retrieve_workflow::<u64, Error>("sleeper")
            .result()
            .await
            .unwrap(),
        6
    );
    let finished = SystemTime::now();
    assert!(
        finished >= wake,
        "woke {:?} before the recorded wake-up",
        wake.duration_since(finished).unwrap_or_default()
    );
    let late = finished.duration_since(wake).unwrap_or_default();
    assert!(
        late < Duration::from_secs(3),
        "finished {late:?} after the recorded wake-up: the sleep restarted instead of resuming"
    );
    assert_eq!(
        recorded_wake_up(&db, "sleeper").await,
        Some(wake),
        "recovery replayed the checkpoint; it did not record a new wake-up time"
    );
}

static GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[step]
async fn gated(key: String) -> Result<String, Error> {
    let n = bump(&format!("{key}/gated"));
    if n == 1 {
        GATE.notified().await;
        return Ok("first execution".into());
    }
    Ok("second execution".into())
}

#[step]
async fn after(key: String) -> Result<(), Error> {
    bump(&format!("{key}/after"));
    Ok(())
}

#[workflow]
async fn fenced(key: String) -> Result<String, Error> {
    let who = gated(key.clone()).await?;
    after(key).await?;
    Ok(who)
}

#[dbos_testkit::test]
async fn two_live_executions_of_one_workflow_never_both_record(db: TestDatabase) {
    let config = db
        .config("testapp")
        .executor_id("fence-exec")
        .application_version("v-fence");
    let old = Dbos::launch(config.clone()).await.unwrap();
    let old_handle = fenced("fence".into())
        .id("fenced")
        .on(&old)
        .start()
        .await
        .unwrap();
    eventually(
        "the first execution to block",
        Duration::from_secs(10),
        || async { (runs("fence/gated") == 1).then_some(()) },
    )
    .await;

    // A second executor takes the workflow over while the first still runs: a resume onto a
    // queue only it serves (what DBOS's resume-to-queue writes).
    let new = Dbos::launch(
        config
            .executor_id("fence-exec-2")
            .queue(&dbos_core::Queue::new("fence-q")),
    )
    .await
    .unwrap();
    db.connect()
        .await
        .execute(
            "UPDATE dbos.workflow_status SET status = 'ENQUEUED', owner_xid = NULL, queue_name = 'fence-q', \
             started_at_epoch_ms = NULL WHERE workflow_uuid = 'fenced'",
            &[],
        )
        .await
        .unwrap();
    let winner = new
        .retrieve_workflow::<String, Error>("fenced")
        .result()
        .await
        .unwrap();
    assert_eq!(winner, "second execution");

    // The first execution wakes up, fails its fence, records nothing, and reports the winner.
    GATE.notify_waiters();
    assert_eq!(old_handle.result().await.unwrap(), "second execution");
    assert_eq!(
        runs("fence/after"),
        1,
        "the loser did not continue past its lost checkpoint"
    );
    assert_eq!(
        recorded_outputs(&db, "fenced").await,
        vec![
            (1, Some("\"second execution\"".into())),
            (2, Some("null".into()))
        ]
    );
}

/// Stands in for another execution of the same workflow: while this execution runs the step,
/// the other one records step 1 first (it started before ownership changed hands).
static OTHER_EXECUTION: std::sync::OnceLock<tokio_postgres::Client> = std::sync::OnceLock::new();

#[step]
async fn raced_step() -> Result<String, Error> {
    bump("raced/step");
    OTHER_EXECUTION
        .get()
        .expect("the test sets the other execution's connection")
        .execute(
            "INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output, serialization)
             VALUES ('raced', 1, 'raced_step', '\"recorded by the other execution\"', 'portable_json')",
            &[],
        )
        .await
        .expect("the other execution records step 1");
    Ok("recorded by this execution".into())
}

#[workflow]
async fn raced(key: String) -> Result<(String, String), Error> {
    let first = raced_step().await?;
    after(key).await?;
    Ok((first, "finished".into()))
}

#[dbos_testkit::test]
async fn a_step_recorded_first_by_another_execution_is_adopted(db: TestDatabase) {
    let _ = OTHER_EXECUTION.set(db.connect().await);
    let dbos = db.launch().await;
    let out = raced("raced".into()).id("raced").on(&dbos).await.unwrap();
    assert_eq!(
        out,
        (
            "recorded by the other execution".to_string(),
            "finished".to_string()
        ),
        "the step's one recorded result is the one every execution continues with"
    );
    assert_eq!(runs("raced/step"), 1);
    assert_eq!(runs("raced/after"), 1, "the workflow went on past the race");
    assert_eq!(
        recorded_outputs(&db, "raced").await,
        vec![
            (1, Some("\"recorded by the other execution\"".into())),
            (2, Some("null".into()))
        ]
    );
}

#[step]
async fn handed_step(key: String) -> Result<String, Error> {
    bump(&format!("{key}/step"));
    Ok("recorded once".into())
}

#[workflow]
async fn handed_over(key: String) -> Result<String, Error> {
    let out = handed_step(key.clone()).await?;
    after(key).await?;
    Ok(out)
}

/// A step whose record runs after a new claim of its workflow was handed to its execution
/// (a resume while it runs): the record's fence, carrying the old claim, refuses, and the
/// step is recorded again under the new one, once. Taking that refusal for a lost
/// ownership would stop the execution and leave the workflow pending, claimed here, with
/// nothing running it. The test holds the checkpoint table locked against inserts (SHARE:
/// reads go on) so that the record's statement waits until the claim has been handed over.
#[dbos_testkit::test]
async fn a_step_recorded_under_a_claim_handed_over_mid_record_is_recorded_once(db: TestDatabase) {
    let dbos = db.launch().await;
    let mut locker = db.connect().await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE dbos.operation_outputs IN SHARE MODE")
        .await
        .unwrap();
    let h = handed_over("handed".into())
        .id("handed")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    db.until_blocked_on_lock("%INSERT INTO%operation_outputs%")
        .await;
    db.resume_until_claimed_again(&dbos, "handed").await;
    // The claim is handed to the execution right after it commits, in the same task.
    tokio::time::sleep(Duration::from_secs(2)).await;
    tx.rollback().await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), h.result())
        .await
        .expect("the workflow finished after the hand-over")
        .unwrap();
    assert_eq!(out, "recorded once");
    assert_eq!(runs("handed/step"), 1, "one body");
    assert_eq!(runs("handed/after"), 1);
    assert_eq!(
        recorded_outputs(&db, "handed").await,
        vec![
            (1, Some("\"recorded once\"".into())),
            (2, Some("null".into()))
        ]
    );
    dbos.shutdown().await.unwrap();
}

/// Lets [`taken_step`] return once the test has moved the workflow's ownership.
static TAKEN_GO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What [`taken_over`]'s step call returned: `Some(None)` for a result, else the error's kind.
static TAKEN_SAW: std::sync::Mutex<Option<Option<ErrorKind>>> = std::sync::Mutex::new(None);

#[step]
async fn taken_step(key: String) -> Result<String, Error> {
    bump(&format!("{key}/step"));
    while !TAKEN_GO.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok("this execution's result".into())
}

#[workflow]
async fn taken_over(key: String) -> Result<String, Error> {
    let out = taken_step(key.clone()).await;
    *TAKEN_SAW.lock().unwrap() = Some(out.as_ref().err().map(|e| e.kind()));
    after(key).await?;
    out
}

/// A record refused because the workflow's ownership moved to another claim (not one
/// handed to this execution) stops the execution at once, with the ownership error: it
/// does not retry its record in a loop until the executor's periodic check (here once
/// every ten minutes) notices the takeover.
#[dbos_testkit::test]
async fn a_record_refused_for_a_lost_ownership_stops_the_execution_at_once(db: TestDatabase) {
    let dbos = Dbos::launch(
        db.config("testapp")
            .cancel_poll_interval(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    let _handle = taken_over("taken".into())
        .id("taken")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("the step to run", Duration::from_secs(10), || async {
        (runs("taken/step") == 1).then_some(())
    })
    .await;
    db.connect()
        .await
        .execute(
            "UPDATE dbos.workflow_status SET owner_xid = 'someone-else' WHERE workflow_uuid = 'taken'",
            &[],
        )
        .await
        .unwrap();
    TAKEN_GO.store(true, std::sync::atomic::Ordering::SeqCst);
    eventually("the execution to stop", Duration::from_secs(20), || async {
        (TAKEN_SAW.lock().unwrap().is_some() && dbos.running_workflows() == 0).then_some(())
    })
    .await;
    assert_eq!(
        *TAKEN_SAW.lock().unwrap(),
        Some(Some(ErrorKind::ConflictingWorkflowId)),
        "the step call failed with the ownership error"
    );
    assert_eq!(
        runs("taken/after"),
        0,
        "nothing ran past the refused record"
    );
    assert_eq!(recorded_outputs(&db, "taken").await, vec![]);
    dbos.shutdown().await.unwrap();
}

/// Lets [`finishes_after_a_takeover`] return once the test has written another execution's
/// outcome.
static FINISH_GO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[workflow]
async fn finishes_after_a_takeover(key: String) -> Result<String, Error> {
    after(key).await?;
    // Not a step: nothing is recorded between the step above and the outcome.
    while !FINISH_GO.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok("this execution's result".into())
}

/// An outcome refused because another execution finished the workflow first (it claimed
/// the workflow after this execution's last step and before its outcome) is not this
/// execution's to report: the handle gives the recorded outcome, and the row stays as the
/// other execution wrote it. The executor's periodic check runs once every ten minutes, so
/// nothing tells the execution before its outcome's statement does.
#[dbos_testkit::test]
async fn an_outcome_refused_after_a_takeover_is_not_reported(db: TestDatabase) {
    let dbos = Dbos::launch(
        db.config("testapp")
            .cancel_poll_interval(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    let handle = finishes_after_a_takeover("late".into())
        .id("late")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("the step's record", Duration::from_secs(10), || async {
        (recorded_outputs(&db, "late").await.len() == 1).then_some(())
    })
    .await;
    db.connect()
        .await
        .batch_execute(
            "UPDATE dbos.workflow_status SET status = 'SUCCESS', owner_xid = NULL,
                    completed_at = (EXTRACT(epoch FROM now()) * 1000)::bigint - 1000
              WHERE workflow_uuid = 'late';
             INSERT INTO dbos.workflow_output (workflow_uuid, output)
             VALUES ('late', '\"the other execution''s result\"');",
        )
        .await
        .unwrap();
    FINISH_GO.store(true, std::sync::atomic::Ordering::SeqCst);
    let got = tokio::time::timeout(Duration::from_secs(20), handle.result())
        .await
        .expect("the handle answers");
    assert_eq!(got.unwrap(), "the other execution's result");
    let output: String = db
        .connect()
        .await
        .query_one(
            "SELECT output FROM dbos.workflow_output WHERE workflow_uuid = 'late'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(output, "\"the other execution's result\"");
    assert_eq!(runs("late/after"), 1);
    dbos.shutdown().await.unwrap();
}

/// Stands in for another execution running other code: while this execution runs the step,
/// the other one records step 1 under another operation's name.
static OTHER_CODE: std::sync::OnceLock<tokio_postgres::Client> = std::sync::OnceLock::new();

/// What [`raced_by_other_code`]'s step call returned: `Some(None)` for a result, else the
/// error's kind.
static OTHER_CODE_SAW: std::sync::Mutex<Option<Option<ErrorKind>>> = std::sync::Mutex::new(None);

#[step]
async fn raced_by_other_step() -> Result<String, Error> {
    bump("other-code/step");
    OTHER_CODE
        .get()
        .expect("the test sets the other execution's connection")
        .execute(
            "INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output, serialization)
             VALUES ('other-code', 1, 'some_other_step', '\"recorded by other code\"', 'portable_json')",
            &[],
        )
        .await
        .expect("the other execution records step 1");
    Ok("recorded by this execution".into())
}

#[workflow]
async fn raced_by_other_code(key: String) -> Result<String, Error> {
    let first = raced_by_other_step().await;
    *OTHER_CODE_SAW.lock().unwrap() = Some(first.as_ref().err().map(|e| e.kind()));
    after(key).await?;
    first
}

/// The adoption above holds only for the same operation: a step another execution recorded
/// under another name (it runs other code) is refused, and the execution stops there: the
/// step call fails with `ConflictingWorkflowId`, nothing after it runs, nothing more is
/// recorded, and the workflow is left PENDING, not finished with either result.
#[dbos_testkit::test]
async fn a_step_recorded_first_under_another_name_stops_the_execution(db: TestDatabase) {
    let _ = OTHER_CODE.set(db.connect().await);
    let dbos = db.launch().await;
    let _handle = raced_by_other_code("other-code".into())
        .id("other-code")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("the execution to stop", Duration::from_secs(20), || async {
        (OTHER_CODE_SAW.lock().unwrap().is_some() && dbos.running_workflows() == 0).then_some(())
    })
    .await;
    assert_eq!(
        *OTHER_CODE_SAW.lock().unwrap(),
        Some(Some(ErrorKind::ConflictingWorkflowId)),
        "the step call was refused, not answered with the other code's result"
    );
    assert_eq!(runs("other-code/step"), 1);
    assert_eq!(
        runs("other-code/after"),
        0,
        "nothing ran past the refused record"
    );
    assert_eq!(
        recorded_outputs(&db, "other-code").await,
        vec![(1, Some("\"recorded by other code\"".into()))]
    );
    assert_eq!(db.status_of("other-code").await.as_deref(), Some("PENDING"));
    dbos.shutdown().await.unwrap();
}

/// Which code [`changes_code`] runs at its first step: 0 the old, 1 the new.
static CODE_CHANGED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[step]
async fn old_first_step() -> Result<String, Error> {
    Ok("old step".into())
}

#[step]
async fn new_first_step() -> Result<String, Error> {
    Ok("new step".into())
}

#[workflow]
async fn changes_code() -> Result<String, Error> {
    if CODE_CHANGED.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        old_first_step().await
    } else {
        new_first_step().await
    }
}

/// An execution whose code runs another operation where its history records one (the code
/// changed while the workflow was in flight: here a fork past the step, run by the new code)
/// does not take the recorded result for the new operation: it fails with `UnexpectedStep`,
/// naming both.
#[dbos_testkit::test]
async fn a_recorded_step_under_another_name_is_not_replayed_for_new_code(db: TestDatabase) {
    let dbos = db.launch().await;
    let old = changes_code().id("changes-code").on(&dbos).await.unwrap();
    assert_eq!(old, "old step");
    CODE_CHANGED.store(1, std::sync::atomic::Ordering::SeqCst);
    let changed = dbos_testkit::fork_and_wait(&dbos, "changes-code", 2, "changes-code-forked")
        .await
        .unwrap_err();
    assert_eq!(changed.kind(), ErrorKind::UnexpectedStep, "{changed}");
    let message = changed.to_string();
    assert!(
        message.contains("old_first_step") && message.contains("new_first_step"),
        "{message}"
    );
    dbos.shutdown().await.unwrap();
}

/// The durable time of the two sleep tests below. The clock is frozen there (never
/// advanced), so a sleep's checkpoint completes at a time the test knows in advance: its
/// wake-up time, as DBOS records it.
const FROZEN_SECS: u64 = 2_000_000_000;

/// Another execution's connection, one per test below (the tests of this file share a
/// process, each with its own database).
static RACED_SLEEP_DB: std::sync::OnceLock<tokio_postgres::Client> = std::sync::OnceLock::new();
static TAKEN_SLEEP_DB: std::sync::OnceLock<tokio_postgres::Client> = std::sync::OnceLock::new();

/// Records `workflow_id`'s step 1 as a `DBOS.sleep` waking at `wake_secs` and completing
/// at `completed_ms`, as another execution would, through its connection `other`.
async fn record_a_sleep_as_another_execution(
    other: &std::sync::OnceLock<tokio_postgres::Client>,
    workflow_id: &str,
    wake_secs: u64,
    completed_ms: i64,
) {
    let output = serde_json::to_string(&(wake_secs as f64)).unwrap();
    other
        .get()
        .expect("the test sets the other execution's connection")
        .execute(
            "INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output, serialization,
                                                 started_at_epoch_ms, completed_at_epoch_ms)
             VALUES ($1, 1, 'DBOS.sleep', $2, 'portable_json', $3, $3)",
            &[&workflow_id, &output, &completed_ms],
        )
        .await
        .expect("the other execution records step 1");
}

#[workflow]
async fn sleeps_a_second_raced() -> Result<u64, Error> {
    // Another execution records this sleep first, completing in the same millisecond as this
    // one's record would (the wake-up time, one second from the frozen now) but waking now.
    record_a_sleep_as_another_execution(
        &RACED_SLEEP_DB,
        "raced-sleep",
        FROZEN_SECS,
        (FROZEN_SECS as i64 + 1) * 1000,
    )
    .await;
    dbos_core::sleep(Duration::from_secs(1)).await?;
    let woke = dbos_core::now().await?;
    Ok(woke.duration_since(UNIX_EPOCH).unwrap().as_secs())
}

/// A checkpoint recorded first by another execution, with this record's completion time but
/// another output, is that execution's, not a retry of this record that committed unseen:
/// its wake-up time is adopted. Kills the `record_missed` mutants that take a row matching
/// on the completion time alone (or with the output compared the wrong way) for this
/// record's own: the sleep then waits for its own wake-up time, on a clock that never moves.
#[dbos_testkit::test]
async fn another_execution_s_checkpoint_with_this_completion_time_is_adopted(db: TestDatabase) {
    let _ = RACED_SLEEP_DB.set(db.connect().await);
    let clock = dbos_testkit::TestClock::starting_at(UNIX_EPOCH + Duration::from_secs(FROZEN_SECS));
    let dbos = Dbos::launch(db.config("testapp").clock(clock.clock()))
        .await
        .unwrap();
    let handle = sleeps_a_second_raced()
        .id("raced-sleep")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(20), handle.result())
        .await
        .expect("the sleep waited for its own wake-up time instead of the one recorded first")
        .unwrap();
    assert_eq!(
        woke, FROZEN_SECS,
        "the workflow woke at the recorded wake-up time"
    );
    dbos.shutdown().await.unwrap();
}

/// What the body of `sleeps_after_a_takeover` got back from its sleep.
static SLEEP_ANSWER: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();

#[workflow]
async fn sleeps_after_a_takeover() -> Result<(), Error> {
    // This sleep's own checkpoint, exactly as its record writes it (as if the record committed
    // and its acknowledgement was lost), then another executor takes the workflow over.
    record_a_sleep_as_another_execution(
        &TAKEN_SLEEP_DB,
        "taken-sleep",
        FROZEN_SECS,
        FROZEN_SECS as i64 * 1000,
    )
    .await;
    TAKEN_SLEEP_DB
        .get()
        .unwrap()
        .execute(
            "UPDATE dbos.workflow_status SET owner_xid = 'another-execution' WHERE workflow_uuid = 'taken-sleep'",
            &[],
        )
        .await
        .unwrap();
    let answer = dbos_core::sleep(Duration::ZERO).await;
    let _ = SLEEP_ANSWER.set(answer.as_ref().map(|_| ()).map_err(|e| e.to_string()));
    if answer.is_ok() {
        after("taken-sleep".into()).await?;
    }
    answer
}

/// A record whose row reads as its own but whose workflow is owned by another execution now
/// stops the execution: the new owner decides what comes next. Kills the `record_missed`
/// mutant that accepts a row of its own without the ownership (`owned || ours`): the body
/// then goes on to its next step.
#[dbos_testkit::test]
async fn a_record_of_its_own_after_a_takeover_stops_the_execution(db: TestDatabase) {
    let _ = TAKEN_SLEEP_DB.set(db.connect().await);
    let clock = dbos_testkit::TestClock::starting_at(UNIX_EPOCH + Duration::from_secs(FROZEN_SECS));
    let dbos = Dbos::launch(db.config("testapp").clock(clock.clock()))
        .await
        .unwrap();
    let _handle = sleeps_after_a_takeover()
        .id("taken-sleep")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let answer = eventually("the sleep to answer", Duration::from_secs(20), || async {
        SLEEP_ANSWER.get().cloned()
    })
    .await;
    assert!(
        answer.is_err(),
        "the sleep went on after the workflow was taken over: {answer:?}"
    );
    assert_eq!(runs("taken-sleep/after"), 0, "the next step never ran");
    dbos.shutdown().await.unwrap();
}

/// The checkpoints recorded for a workflow: (function id, output), in step order.
async fn recorded_outputs(db: &TestDatabase, workflow_id: &str) -> Vec<(i32, Option<String>)> {
    db.connect()
        .await
        .query(
            "SELECT function_id, output FROM dbos.operation_outputs WHERE workflow_uuid = $1 ORDER BY 1",
            &[&workflow_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// How long the test cluster's server has been up.
async fn server_uptime(db: &TestDatabase) -> Duration {
    let secs: f64 = db
        .connect()
        .await
        .query_one(
            "SELECT extract(epoch FROM now() - pg_postmaster_start_time())::float8",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    Duration::from_secs_f64(secs.max(0.0))
}

/// An application restarted after a crash (a new process, so a new generated executor id,
/// and the default recovery settings) continues its interrupted workflow within seconds: it
/// does not wait out the recovery grace (10 s) before taking over the work of the process it
/// replaces, whose lock is free and whose lock session is gone. A live peer's work stays
/// where it is. Before, the step after the crash ran 10 to 12 s after the relaunch.
#[dbos_testkit::test]
async fn a_restarted_app_continues_its_work_within_seconds(db: TestDatabase) {
    // The fast path applies once the database server has been up for the recovery grace
    // (after a server restart, every executor's lock is free while it reconnects).
    let grace = Duration::from_secs(10);
    let up = server_uptime(&db).await;
    if up < grace + Duration::from_secs(1) {
        tokio::time::sleep(grace + Duration::from_secs(1) - up).await;
    }
    let config = db.config("testapp").application_version("v-restart");
    // A live peer with work of its own, hanging in a step.
    let peer = Dbos::launch(config.clone()).await.unwrap();
    five_steps("restart-peer".into(), 2)
        .id("restart-peer")
        .on(&peer)
        .start()
        .await
        .unwrap();

    let first = IsolatedRuntime::new();
    let c = config.clone();
    first
        .run(async move {
            let dbos = Dbos::launch(c).await.unwrap();
            five_steps("restart".into(), 2)
                .id("restart")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        })
        .await;
    eventually("both step 2s to start", Duration::from_secs(10), || async {
        (runs("restart/2") == 1 && runs("restart-peer/2") == 1).then_some(())
    })
    .await;
    first.abort();
    let killed = std::time::Instant::now();

    let restarted = Dbos::launch(config).await.unwrap();
    eventually(
        "the interrupted step to run again",
        Duration::from_secs(30),
        || async { (runs("restart/2") == 2).then_some(()) },
    )
    .await;
    let resumed = killed.elapsed();
    eprintln!("restart: the interrupted step ran again {resumed:?} after the kill");
    assert!(
        resumed < Duration::from_secs(5),
        "the restarted app resumed its work {resumed:?} after the kill (documented: within a few seconds)"
    );
    let (_, squares) = restarted
        .retrieve_workflow::<(String, Vec<u32>), Error>("restart")
        .result()
        .await
        .unwrap();
    assert_eq!(squares, vec![1, 4, 9, 16, 25]);
    // The live peer's workflow was not taken: still its own, never recovered.
    let row = db
        .connect()
        .await
        .query_one(
            "SELECT executor_id, recovery_attempts FROM dbos.workflow_status WHERE workflow_uuid = 'restart-peer'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), peer.executor_id());
    assert_eq!(
        row.get::<_, i64>(1),
        1,
        "the live peer's work was recovered"
    );
    assert_eq!(runs("restart-peer/2"), 1);
    restarted.shutdown().await.unwrap();
    peer.shutdown_with_timeout(Duration::from_millis(200))
        .await
        .unwrap();
}
