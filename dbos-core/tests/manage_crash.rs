//! Management across crashes: an executor's runtime is dropped abruptly mid-step, and
//! - its stuck `PENDING` workflow, resumed from a client, is finished by another executor
//!   without re-running its recorded steps;
//! - a workflow cancelled before the crash is not recovered by the relaunched executor, and
//!   runs to completion once resumed;
//! - a fork interrupted by a crash is recovered, and its copied steps never run;
//! - a delete retried after a lost connection reports what its first attempt did: the ids
//!   it deleted as deleted, ids that never existed as missing.

use std::time::Duration;

use dbos_core::manage::{ForkOptions, Resumed};
use dbos_core::{step, workflow, Client, Config, Dbos, Error, ErrorKind, Status};
use dbos_testkit::crash::{eventually, IsolatedRuntime};
use dbos_testkit::proxy::Proxy;
use dbos_testkit::runs::{bump, runs};
use dbos_testkit::TestDatabase;

/// Step `n` of `key`; hangs forever on its run number `hang_on_run` (0: never).
#[step]
async fn numbered(key: String, n: u32, hang_on_run: u32) -> Result<u32, Error> {
    let run = bump(&format!("{key}/{n}"));
    if run == hang_on_run {
        std::future::pending::<()>().await;
    }
    Ok(n * n)
}

/// Four steps; step `hang_at` hangs on its run number `hang_on_run` (counted across every
/// workflow of `key`).
#[workflow]
async fn four_steps(key: String, hang_at: u32, hang_on_run: u32) -> Result<Vec<u32>, Error> {
    let mut out = Vec::new();
    for n in 1..=4 {
        let hang = if n == hang_at { hang_on_run } else { 0 };
        out.push(numbered(key.clone(), n, hang).await?);
    }
    Ok(out)
}

fn config(db: &TestDatabase, executor: &str) -> Config {
    db.config("testapp")
        .executor_id(executor)
        .application_version("v-manage")
        .cancel_poll_interval(Duration::from_millis(100))
}

/// Starts `key` on an isolated runtime of `executor`, waits until step `hang_at` runs, and
/// kills the runtime there.
async fn crash_during(db: &TestDatabase, executor: &str, key: &str, hang_at: u32) {
    let rt = IsolatedRuntime::new();
    let (c, k) = (config(db, executor), key.to_owned());
    rt.run(async move {
        let dbos = Dbos::launch(c).await.unwrap();
        four_steps(k.clone(), hang_at, 1)
            .id(k)
            .on(&dbos)
            .start()
            .await
            .unwrap();
    })
    .await;
    let step = format!("{key}/{hang_at}");
    eventually("the step to start", Duration::from_secs(10), || async {
        (runs(&step) == 1).then_some(())
    })
    .await;
    rt.abort();
}

#[dbos_testkit::test]
async fn a_stuck_pending_workflow_resumed_from_a_client_finishes_elsewhere(db: TestDatabase) {
    crash_during(&db, "doomed", "stuck", 3).await;
    let client = Client::connect(db.url()).await.unwrap();
    let info = client.get_workflow("stuck").await.unwrap();
    assert_eq!(info.status, Status::Pending);
    assert_eq!(info.executor_id.as_deref(), Some("doomed"));
    // A live executor of the same version does not take another executor's work by itself.
    let survivor = Dbos::launch(config(&db, "survivor")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs("stuck/3"), 1);
    assert_eq!(
        client.resume_workflow("stuck").await.unwrap(),
        Resumed::Enqueued {
            queue: "_dbos_internal_queue".into()
        }
    );
    let out = client
        .retrieve_workflow::<Vec<u32>, Error>("stuck")
        .result()
        .await
        .unwrap();
    assert_eq!(out, vec![1, 4, 9, 16]);
    assert_eq!(
        (1..=4)
            .map(|n| runs(&format!("stuck/{n}")))
            .collect::<Vec<_>>(),
        vec![1, 1, 2, 1],
        "recorded steps replayed; the step in flight at the crash ran again"
    );
    let info = client.get_workflow("stuck").await.unwrap();
    assert_eq!(info.executor_id.as_deref(), Some("survivor"));
    survivor.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_cancel_survives_the_crash_and_a_resume_finishes_the_work(db: TestDatabase) {
    let rt = IsolatedRuntime::new();
    let c = config(&db, "exec-1");
    rt.run(async move {
        let dbos = Dbos::launch(c).await.unwrap();
        four_steps("cc".into(), 2, 1)
            .id("cc")
            .on(&dbos)
            .start()
            .await
            .unwrap();
    })
    .await;
    eventually("step 2 to start", Duration::from_secs(10), || async {
        (runs("cc/2") == 1).then_some(())
    })
    .await;
    let client = Client::connect(db.url()).await.unwrap();
    client.cancel_workflow("cc").await.unwrap();
    rt.abort();

    // The same executor comes back: its recovery leaves the cancelled workflow alone.
    let dbos = Dbos::launch(config(&db, "exec-1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        client.get_workflow("cc").await.unwrap().status,
        Status::Cancelled
    );
    assert_eq!((runs("cc/2"), runs("cc/3")), (1, 0));
    client.resume_workflow("cc").await.unwrap();
    let out = dbos
        .retrieve_workflow::<Vec<u32>, Error>("cc")
        .result()
        .await
        .unwrap();
    assert_eq!(out, vec![1, 4, 9, 16]);
    assert_eq!(
        (1..=4)
            .map(|n| runs(&format!("cc/{n}")))
            .collect::<Vec<_>>(),
        vec![1, 2, 1, 1]
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_fork_interrupted_by_a_crash_is_recovered_without_its_copied_steps(db: TestDatabase) {
    // The original runs to completion.
    {
        let dbos = Dbos::launch(config(&db, "exec-f")).await.unwrap();
        four_steps("orig".into(), 3, 2)
            .id("orig")
            .on(&dbos)
            .await
            .unwrap();
        dbos.shutdown().await.unwrap();
    }
    // Forked from step 3; an executor picks the fork up and dies inside step 3: the fork's
    // first run of it is the second run of `orig/3`, on which the step hangs.
    let client = Client::connect(db.url()).await.unwrap();
    let fork = client
        .fork_workflow("orig", 3, &ForkOptions::new().workflow_id("orig-fork"))
        .await
        .unwrap();
    assert_eq!(runs("orig/3"), 1);
    let rt = IsolatedRuntime::new();
    let c = config(&db, "exec-f");
    rt.run(async move {
        // Its background tasks keep serving the internal queue until the abort.
        drop(Dbos::launch(c).await.unwrap());
    })
    .await;
    eventually(
        "the fork's step 3 to start",
        Duration::from_secs(15),
        || async { (runs("orig/3") == 2).then_some(()) },
    )
    .await;
    rt.abort();
    let dbos = Dbos::launch(config(&db, "exec-f")).await.unwrap();
    let out = fork.typed::<Vec<u32>, Error>().result().await.unwrap();
    assert_eq!(out, vec![1, 4, 9, 16]);
    assert_eq!(
        (1..=4)
            .map(|n| runs(&format!("orig/{n}")))
            .collect::<Vec<_>>(),
        vec![1, 1, 3, 2],
        "the copied steps never ran for the fork; step 3 ran again after the crash"
    );
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn trivial(x: u32) -> Result<u32, Error> {
    Ok(x)
}

/// The delete statement's text (not in the look-ups that precede it).
const DELETE_STATEMENT: &[u8] = b"dops AS (DELETE";

#[dbos_testkit::test]
async fn a_retried_delete_reports_what_its_first_attempt_did(db: TestDatabase) {
    let dbos = db.launch().await;
    trivial(1).id("doomed").on(&dbos).await.unwrap();
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let client = Client::connect(proxy.url(&db.url())).await.unwrap();

    // The first attempt of a delete of an id that never existed dies before it reaches the
    // server; the retry finds the id missing, and must say so (not "deleted").
    proxy.cut_when_sent(DELETE_STATEMENT);
    let deleting = tokio::spawn({
        let client = client.clone();
        async move { client.delete_workflow("never-there").await }
    });
    // The server seems down for a moment (the proxy refuses connections once it cut).
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.refuse(false);
    let e = deleting.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonExistentWorkflow, "{e}");
    assert!(e.to_string().contains("never-there"), "{e}");
    assert!(proxy.fired() >= 1, "the first attempt was cut");

    // The first attempt deletes, and its acknowledgement is lost: the retry finds the id
    // gone, and reports it deleted.
    proxy.cut_after_commit(DELETE_STATEMENT, Duration::from_millis(100));
    assert_eq!(
        client
            .delete_workflow_and_descendants("doomed")
            .await
            .unwrap(),
        vec!["doomed".to_owned()]
    );
    assert!(
        proxy.fired() >= 2,
        "the first commit's acknowledgement was lost"
    );
    dbos.shutdown().await.unwrap();
}
