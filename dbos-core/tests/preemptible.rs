//! Preemptible steps (`#[step(preemptible)]`, `StepOptions::preemptible`): when the workflow
//! is cancelled (from any process) or passes its deadline, the attempt in flight is dropped at
//! once and nothing is recorded. A step that is not preemptible runs to completion after a
//! cancel, unrecorded (the existing behaviour, `cancel.rs`).

use std::time::{Duration, Instant};

use dbos_core::client::Client;
use dbos_core::{step, workflow, Dbos, Error, ErrorKind};
use dbos_testkit::crash::eventually;
use dbos_testkit::runs::{bump, runs, Unfinished};
use dbos_testkit::TestDatabase;

async fn sleeps(key: &str, ms: u64) {
    bump(&format!("{key}/started"));
    let guard = Unfinished::new(key);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    guard.finish();
    bump(&format!("{key}/finished"));
}

#[step(preemptible)]
async fn preemptible_sleep(key: String, ms: u64) -> Result<(), Error> {
    sleeps(&key, ms).await;
    Ok(())
}

#[step]
async fn plain_sleep(key: String, ms: u64) -> Result<(), Error> {
    sleeps(&key, ms).await;
    Ok(())
}

#[step]
async fn after(key: String) -> Result<(), Error> {
    bump(&format!("{key}/after"));
    Ok(())
}

#[workflow]
async fn runs_preemptible(key: String, ms: u64) -> Result<(), Error> {
    preemptible_sleep(key.clone(), ms).await?;
    after(key).await
}

#[workflow]
async fn runs_plain(key: String, ms: u64) -> Result<(), Error> {
    plain_sleep(key.clone(), ms).await?;
    after(key).await
}

/// The cancel poll interval of these tests.
const POLL: Duration = Duration::from_millis(200);

async fn launch(db: &TestDatabase) -> Dbos {
    Dbos::launch(
        db.config("testapp")
            .park_after(Duration::from_secs(600))
            .cancel_poll_interval(POLL),
    )
    .await
    .unwrap()
}

async fn started(key: &str) {
    eventually("the step to start", Duration::from_secs(20), || async {
        (runs(&format!("{key}/started")) == 1).then_some(())
    })
    .await;
}

#[dbos_testkit::test]
async fn a_client_cancel_drops_a_preemptible_step_within_the_poll_interval(db: TestDatabase) {
    let dbos = launch(&db).await;
    let client = Client::connect(db.url()).await.unwrap();
    let handle = runs_preemptible("pre".into(), 60_000)
        .id("p-pre")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    started("pre").await;
    client.cancel_workflow("p-pre").await.unwrap();
    let cancelled = Instant::now();
    eventually(
        "the step's future to be dropped",
        Duration::from_secs(20),
        || async { (runs("pre/dropped") == 1).then_some(()) },
    )
    .await;
    let latency = cancelled.elapsed();
    eprintln!("a client's cancel dropped the preemptible step {latency:?} after it (poll interval {POLL:?})");
    // The documented bound: a cancel from another process is noticed within one poll
    // interval; the slack (300 ms) is the poll's own query and the wake-up on a loaded
    // machine.
    assert!(
        latency < POLL + Duration::from_millis(300),
        "the preemptible step was dropped {latency:?} after the cancel, beyond the poll interval {POLL:?} (+300 ms)"
    );
    let e = handle.result().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AwaitedWorkflowCancelled, "{e:?}");
    eventually("the execution to end", Duration::from_secs(20), || async {
        (dbos.running_workflows() == 0).then_some(())
    })
    .await;
    assert_eq!(runs("pre/finished"), 0, "the step never ran to its end");
    assert_eq!(runs("pre/after"), 0);
    assert_eq!(db.steps_of("p-pre").await.len(), 0, "nothing recorded");

    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_plain_step_runs_to_completion_after_the_cancel(db: TestDatabase) {
    let dbos = launch(&db).await;
    let client = Client::connect(db.url()).await.unwrap();
    let handle = runs_plain("plain".into(), 1_500)
        .id("p-plain")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    started("plain").await;
    client.cancel_workflow("p-plain").await.unwrap();
    let e = handle.result().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AwaitedWorkflowCancelled, "{e:?}");
    eventually(
        "the running step to complete",
        Duration::from_secs(20),
        || async { (runs("plain/finished") == 1).then_some(()) },
    )
    .await;
    assert_eq!(runs("plain/dropped"), 0, "a plain step is not dropped");
    assert_eq!(runs("plain/after"), 0);
    assert_eq!(db.steps_of("p-plain").await.len(), 0, "and not recorded");
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_deadline_drops_a_preemptible_step(db: TestDatabase) {
    let dbos = launch(&db).await;
    let started_at = Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(20),
        runs_preemptible("deadline".into(), 60_000)
            .id("p-deadline")
            .timeout(Duration::from_millis(400))
            .on(&dbos),
    )
    .await
    .expect("the deadline ends the workflow")
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    eventually(
        "the step's future to be dropped",
        Duration::from_secs(20),
        || async { (runs("deadline/dropped") == 1).then_some(()) },
    )
    .await;
    eprintln!(
        "deadline 400 ms: step dropped after {:?}",
        started_at.elapsed()
    );
    assert_eq!(runs("deadline/finished"), 0);
    assert_eq!(db.steps_of("p-deadline").await.len(), 0);
    dbos.shutdown().await.unwrap();
}
