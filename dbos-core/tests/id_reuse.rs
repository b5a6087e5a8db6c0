//! The id reuse policy (DBOS 3.x `WorkflowIDReusePolicy`): by default a start with an id in
//! use returns that workflow; with `IdReusePolicy::Reject` it is refused with
//! `ErrorKind::WorkflowIdInUse`, without attaching and without writing anything; inside a
//! workflow the refusal is what the parent records, so a replay is refused the same way.

use std::time::Duration;

use dbos_core::manage::ForkOptions;
use dbos_core::{step, workflow, Client, Dbos, Error, ErrorKind, IdReusePolicy, Queue};
use dbos_testkit::crash::eventually;
use dbos_testkit::runs::{bump, runs};
use dbos_testkit::TestDatabase;

#[workflow]
async fn counted(key: String, ms: u64) -> Result<u32, Error> {
    let n = bump(&key);
    dbos_core::sleep(Duration::from_millis(ms)).await?;
    Ok(n)
}

#[step]
async fn after(key: String) -> Result<(), Error> {
    bump(&format!("{key}/after"));
    Ok(())
}

/// Starts `counted` as a child with the id `child_id` under the `reject` policy; returns the
/// kind of the refusal (or "started").
#[workflow]
async fn starts_a_child(key: String, child_id: String) -> Result<String, Error> {
    let answer = match counted(key.clone(), 0)
        .id(child_id)
        .id_reuse_policy(IdReusePolicy::Reject)
        .start()
        .await
    {
        Ok(_) => "started".to_owned(),
        Err(e) => format!("{:?}", e.kind()),
    };
    after(key).await?;
    Ok(answer)
}

static JOBS: Queue = Queue::new("jobs");

/// Everything a start could write about workflow `id`, as text.
async fn snapshot(db: &TestDatabase, id: &str) -> String {
    let c = db.connect().await;
    let status = c
        .query_one(
            "SELECT status, name, updated_at, creator_xid, owner_xid, recovery_attempts, executor_id, queue_name \
             FROM dbos.workflow_status WHERE workflow_uuid = $1",
            &[&id],
        )
        .await
        .unwrap();
    let inputs: String = c
        .query_one(
            "SELECT inputs FROM dbos.workflow_input WHERE workflow_uuid = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    let (rows, steps): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM dbos.workflow_status), (SELECT count(*) FROM dbos.operation_outputs)",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    format!(
        "{:?} {:?} {} {:?} {:?} {} {:?} {:?} inputs={inputs} workflows={rows} steps={steps}",
        status.get::<_, String>(0),
        status.get::<_, String>(1),
        status.get::<_, i64>(2),
        status.get::<_, Option<String>>(3),
        status.get::<_, Option<String>>(4),
        status.get::<_, i64>(5),
        status.get::<_, Option<String>>(6),
        status.get::<_, Option<String>>(7),
    )
}

#[dbos_testkit::test]
async fn reject_refuses_an_id_in_use_without_attaching_or_writing(db: TestDatabase) {
    // Never parked: the running workflow's row stays as its start wrote it.
    let dbos = Dbos::launch(
        db.config("testapp")
            .queue(&JOBS)
            .park_after(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    // A finished workflow.
    assert_eq!(
        counted("done".into(), 0)
            .id("r-done")
            .on(&dbos)
            .await
            .unwrap(),
        1
    );
    let before = snapshot(&db, "r-done").await;
    // Let the clock move, so a rewritten `updated_at` would show.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let e = counted("done".into(), 0)
        .id("r-done")
        .id_reuse_policy(IdReusePolicy::Reject)
        .on(&dbos)
        .start()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WorkflowIdInUse, "{e:?}");
    assert_eq!(e.workflow_id(), Some("r-done"));
    assert!(
        e.message()
            .contains("`r-done` is already in use by workflow `counted` (status SUCCESS)"),
        "{e}"
    );
    // Awaited directly and enqueued, the same refusal.
    let e = counted("done".into(), 0)
        .id("r-done")
        .id_reuse_policy(IdReusePolicy::Reject)
        .on(&dbos)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WorkflowIdInUse, "{e:?}");
    let e = counted("done".into(), 0)
        .id("r-done")
        .id_reuse_policy(IdReusePolicy::Reject)
        .on(&dbos)
        .enqueue(&JOBS)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WorkflowIdInUse, "{e:?}");
    assert_eq!(snapshot(&db, "r-done").await, before, "nothing written");
    assert_eq!(runs("done"), 1, "nothing ran again");

    // A running workflow: refused too (its status named), not attached to.
    let running = counted("running".into(), 60_000)
        .id("r-running")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let c = db.connect().await;
    eventually("the workflow to sleep", Duration::from_secs(20), || async {
        let slept: i64 = c
            .query_one(
                "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'r-running'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (slept == 1).then_some(())
    })
    .await;
    let before = snapshot(&db, "r-running").await;
    let e = counted("running".into(), 0)
        .id("r-running")
        .id_reuse_policy(IdReusePolicy::Reject)
        .on(&dbos)
        .start()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WorkflowIdInUse, "{e:?}");
    assert!(e.message().contains("(status PENDING)"), "{e}");
    assert_eq!(snapshot(&db, "r-running").await, before, "nothing written");

    // The default policy returns the workflow in use.
    let same = counted("done".into(), 0)
        .id("r-done")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    assert_eq!(same.result().await.unwrap(), 1);
    // An id not in use starts under either policy.
    let fresh = counted("fresh".into(), 0)
        .id("r-fresh")
        .id_reuse_policy(IdReusePolicy::Reject)
        .on(&dbos)
        .await
        .unwrap();
    assert_eq!(fresh, 1);
    dbos.cancel_workflow(running.id()).await.unwrap();
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_client_reject_refuses_an_id_in_use_without_attaching_or_writing(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").queue(&JOBS))
        .await
        .unwrap();
    let client = Client::builder(db.url())
        .application_name("testapp")
        .connect()
        .await
        .unwrap();
    assert_eq!(
        counted("client-done".into(), 0)
            .id("rc-done")
            .on(&dbos)
            .await
            .unwrap(),
        1
    );
    let before = snapshot(&db, "rc-done").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // By name, by a typed call with the option on the client, and on the call.
    let e = client
        .enqueue("counted", "jobs")
        .arg("client-done")
        .arg(&0)
        .id("rc-done")
        .id_reuse_policy(IdReusePolicy::Reject)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WorkflowIdInUse, "{e:?}");
    assert_eq!(e.workflow_id(), Some("rc-done"));
    assert!(
        e.message()
            .contains("`rc-done` is already in use by workflow `counted` (status SUCCESS)"),
        "{e}"
    );
    let e = client
        .enqueue_workflow(counted("client-done".into(), 0).id("rc-done"), &JOBS)
        .id_reuse_policy(IdReusePolicy::Reject)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WorkflowIdInUse, "{e:?}");
    let e = client
        .enqueue_workflow(
            counted("client-done".into(), 0)
                .id("rc-done")
                .id_reuse_policy(IdReusePolicy::Reject),
            &JOBS,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WorkflowIdInUse, "{e:?}");
    assert_eq!(snapshot(&db, "rc-done").await, before, "nothing written");
    assert_eq!(runs("client-done"), 1, "nothing ran again");
    // The default policy attaches; an id not in use is enqueued under Reject and runs.
    let same = client
        .enqueue_workflow(counted("client-done".into(), 0).id("rc-done"), &JOBS)
        .await
        .unwrap();
    assert_eq!(same.result().await.unwrap(), 1);
    let fresh = client
        .enqueue_workflow(counted("client-fresh".into(), 0).id("rc-fresh"), &JOBS)
        .id_reuse_policy(IdReusePolicy::Reject)
        .await
        .unwrap();
    let ran = tokio::time::timeout(Duration::from_secs(60), fresh.result())
        .await
        .expect("the enqueued workflow finishes")
        .unwrap();
    assert_eq!(ran, 1);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_child_refused_by_reject_is_recorded_as_refused_and_replays_so(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp")).await.unwrap();
    counted("taken".into(), 0)
        .id("r-taken")
        .on(&dbos)
        .await
        .unwrap();
    let answer = starts_a_child("parent".into(), "r-taken".into())
        .id("r-parent")
        .on(&dbos)
        .await
        .unwrap();
    assert_eq!(answer, "WorkflowIdInUse");
    assert_eq!(runs("taken"), 1, "the existing child did not run again");
    // The parent's step 1 records the refusal, not a link to the existing child.
    let c = db.connect().await;
    let step = db.step_of("r-parent", 1).await;
    assert_eq!(step.function_name, "counted");
    assert_eq!(
        step.child_workflow_id, None,
        "not linked to the existing child"
    );
    let error: serde_json::Value = serde_json::from_str(&step.error.unwrap()).unwrap();
    assert_eq!(
        error["name"], "dbos_core::Error::WorkflowIdInUse",
        "{error}"
    );
    let parent: Option<String> = c
        .query_one(
            "SELECT parent_workflow_id FROM dbos.workflow_status WHERE workflow_uuid = 'r-taken'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(parent, None, "the existing workflow is left as it was");

    // A fork from step 2 replays the recorded refusal.
    let fork = dbos
        .fork_workflow("r-parent", 2, &ForkOptions::new().workflow_id("r-fork"))
        .await
        .unwrap()
        .typed::<String, Error>();
    assert_eq!(fork.result().await.unwrap(), "WorkflowIdInUse");
    assert_eq!(runs("taken"), 1);
    dbos.shutdown().await.unwrap();
}
