//! Step timeouts (`#[step(timeout = "..")]`, `StepOptions::timeout`): each attempt is bounded;
//! an attempt past the bound is dropped and counts as a failed attempt (retried if attempts
//! remain); a step whose last attempt timed out records DBOS's `DBOSStepTimeoutError`, and a
//! recovered or forked run returns that error without running the step again.

use std::time::Duration;

use dbos_core::manage::ForkOptions;
use dbos_core::{step, workflow, Dbos, Error, ErrorKind, StepOptions};
use dbos_testkit::crash::{eventually, run_then_kill};
use dbos_testkit::runs::{bump, runs, Unfinished};
use dbos_testkit::TestDatabase;

/// Hangs (60 s) on its first attempt, answers at once on later ones.
#[step(max_attempts = 3, interval = "10ms", timeout = "300ms")]
async fn hangs_once(key: String) -> Result<u32, Error> {
    let attempt = bump(&format!("{key}/attempts"));
    let guard = Unfinished::new(key.clone());
    if attempt == 1 {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    guard.finish();
    Ok(attempt)
}

#[workflow]
async fn retries_past_a_timeout(key: String) -> Result<u32, Error> {
    hangs_once(key).await
}

/// Always hangs: every attempt times out.
#[step(max_attempts = 2, interval = "10ms", timeout = "200ms")]
async fn always_hangs(key: String) -> Result<u32, Error> {
    bump(&format!("{key}/attempts"));
    let _guard = Unfinished::new(key.clone());
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(0)
}

/// For the key `crash`, blocks (60 s) the first time it runs: a place to crash at.
#[step]
async fn gate(key: String) -> Result<(), Error> {
    if bump(&format!("{key}/gate")) == 1 && key == "crash" {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    Ok(())
}

/// Runs the hanging step, then `gate`, then returns the hanging step's result.
#[workflow]
async fn times_out_then_gate(key: String) -> Result<u32, Error> {
    let stuck = always_hangs(key.clone()).await;
    gate(key).await?;
    stuck
}

async fn step_error(db: &TestDatabase, id: &str, function_id: i32) -> Option<serde_json::Value> {
    let step = db
        .steps_of(id)
        .await
        .into_iter()
        .find(|s| s.function_id == function_id)?;
    step.error.map(|text| serde_json::from_str(&text).unwrap())
}

/// Long enough for anything that must happen on a loaded machine; far below the 60 s a
/// hanging attempt would take if the timeout did not drop it.
const PATIENCE: Duration = Duration::from_secs(20);

#[dbos_testkit::test]
async fn an_attempt_past_its_timeout_is_dropped_and_retried(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp")).await.unwrap();
    let out = tokio::time::timeout(
        PATIENCE,
        retries_past_a_timeout("retry".into())
            .id("t-retry")
            .on(&dbos),
    )
    .await
    .expect("a hanging attempt is dropped at its timeout, not awaited")
    .unwrap();
    assert_eq!(out, 2, "the second attempt's output");
    assert_eq!(runs("retry/attempts"), 2);
    assert_eq!(
        runs("retry/dropped"),
        1,
        "the first attempt's future was dropped"
    );
    assert_eq!(step_error(&db, "t-retry", 1).await, None);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn an_exhausted_step_records_dbos_step_timeout_error_and_a_fork_replays_it(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp")).await.unwrap();
    let e = tokio::time::timeout(
        PATIENCE,
        times_out_then_gate("exhaust".into())
            .id("t-exhaust")
            .on(&dbos),
    )
    .await
    .expect("every attempt is dropped at its timeout")
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StepTimeout, "{e:?}");
    assert_eq!(runs("exhaust/attempts"), 2, "both attempts ran");
    assert_eq!(runs("exhaust/dropped"), 2, "and both were dropped");
    // Recorded as DBOS Python records its own step timeout error.
    let recorded = step_error(&db, "t-exhaust", 1).await.unwrap();
    assert_eq!(recorded["name"], "DBOSStepTimeoutError", "{recorded}");
    assert_eq!(
        recorded["message"],
        "DBOS Error 18: Step always_hangs was cancelled after exceeding its timeout of 0.2 seconds",
    );

    // A fork from step 2 copies the recorded error: it is returned again, and the step
    // does not run.
    let fork = dbos
        .fork_workflow("t-exhaust", 2, &ForkOptions::new().workflow_id("t-fork"))
        .await
        .unwrap()
        .typed::<u32, Error>();
    let e = tokio::time::timeout(PATIENCE, fork.result())
        .await
        .expect("the fork finishes")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StepTimeout, "{e:?}");
    assert_eq!(runs("exhaust/attempts"), 2, "the fork did not run the step");
    assert_eq!(step_error(&db, "t-fork", 1).await.unwrap(), recorded);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_recovered_workflow_returns_the_recorded_timeout_without_running_the_step(
    db: TestDatabase,
) {
    run_then_kill(
        db.config("testapp"),
        |dbos| async move {
            times_out_then_gate("crash".into())
                .id("t-crash")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        },
        "the timed-out step to be recorded and the gate to block",
        || runs("crash/gate") == 1,
    )
    .await;
    assert_eq!(runs("crash/attempts"), 2);
    let dbos = Dbos::launch(db.config("testapp")).await.unwrap();
    let handle = dbos.retrieve_workflow::<u32, Error>("t-crash");
    let e = tokio::time::timeout(PATIENCE, handle.result())
        .await
        .expect("the recovered workflow finishes")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StepTimeout, "{e:?}");
    assert_eq!(runs("crash/gate"), 2, "recovery ran the gate again");
    assert_eq!(
        runs("crash/attempts"),
        2,
        "recovery replayed the recorded timeout instead of running the step"
    );
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn by_hand(key: String, timeout_ms: u64) -> Result<u32, Error> {
    let options = StepOptions {
        timeout: Some(Duration::from_millis(timeout_ms)),
        ..StepOptions::DEFAULT
    };
    dbos_core::run_step("hangs_by_hand", options, || {
        let key = key.clone();
        async move {
            bump(&format!("{key}/attempts"));
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, Error>(0)
        }
    })
    .await
}

#[dbos_testkit::test]
async fn run_step_takes_the_timeout_and_refuses_zero(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp")).await.unwrap();
    let e = tokio::time::timeout(PATIENCE, by_hand("hand".into(), 150).id("t-hand").on(&dbos))
        .await
        .expect("the attempt is dropped at its timeout")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StepTimeout, "{e:?}");
    let recorded = step_error(&db, "t-hand", 1).await.unwrap();
    assert_eq!(recorded["name"], "DBOSStepTimeoutError", "{recorded}");

    // A zero timeout: a typed error naming the step, nothing run, no step recorded.
    let e = by_hand("zero".into(), 0)
        .id("t-zero")
        .on(&dbos)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e:?}");
    assert!(
        e.message()
            .contains("step `hangs_by_hand` has a timeout of 0"),
        "{e}"
    );
    assert_eq!(runs("zero/attempts"), 0);
    assert_eq!(db.steps_of("t-zero").await.len(), 0);

    // Outside a workflow the timeout bounds the plain call too.
    let options = StepOptions {
        timeout: Some(Duration::from_millis(100)),
        ..StepOptions::DEFAULT
    };
    let e = dbos_core::run_step("outside", options, || async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<u32, Error>(0)
    })
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StepTimeout, "{e:?}");
    eventually("nothing left running", PATIENCE, || async {
        (dbos.running_workflows() == 0).then_some(())
    })
    .await;
    dbos.shutdown().await.unwrap();
}

const PY_STEP_ERROR: &str = r#"
import sys, json
from dbos import DBOSClient
c = DBOSClient(system_database_url=sys.argv[1])
steps = c.list_workflow_steps(sys.argv[2])
e = steps[0]["error"]
print(json.dumps([steps[0]["function_name"], type(e).__name__, getattr(e, "name", None), str(e)]))
c.destroy()
"#;

/// DBOS Python's client reads the timeout we recorded as its own step timeout error.
#[dbos_testkit::test]
async fn dbos_python_reads_the_recorded_timeout_as_its_own_error(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp")).await.unwrap();
    let e = tokio::time::timeout(
        PATIENCE,
        times_out_then_gate("interop".into())
            .id("t-interop")
            .on(&dbos),
    )
    .await
    .expect("every attempt is dropped at its timeout")
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StepTimeout, "{e:?}");
    let out = dbos_testkit::python::run_python(PY_STEP_ERROR, &[&db.url(), "t-interop"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(seen[0], "always_hangs");
    assert_eq!(seen[1], "PortableWorkflowError", "{seen}");
    assert_eq!(seen[2], "DBOSStepTimeoutError", "{seen}");
    assert!(
        seen[3]
            .as_str()
            .unwrap()
            .contains("exceeding its timeout of 0.2 seconds"),
        "{seen}"
    );
    dbos.shutdown().await.unwrap();
}
