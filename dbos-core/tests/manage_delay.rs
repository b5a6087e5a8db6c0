//! Moving the wake-up time of a delayed workflow: postponed, released early, refused once it
//! is no longer delayed, recorded inside a workflow.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use dbos_core::manage::DelaySet;
use dbos_core::{step, workflow, Client, Dbos, Error, ErrorKind, Queue, Status};
use dbos_testkit::crash::run_then_kill;
use dbos_testkit::TestDatabase;

static LATER: Queue = Queue::new("later").polling_interval(Duration::from_millis(50));

#[workflow]
async fn reminder(n: u32) -> Result<u32, Error> {
    Ok(n * 10)
}

async fn delay_row(db: &TestDatabase, id: &str) -> (String, Option<i64>) {
    let r = db
        .connect()
        .await
        .query_one(
            "SELECT status, delay_until_epoch_ms FROM dbos.workflow_status WHERE workflow_uuid = $1",
            &[&id],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[dbos_testkit::test]
async fn a_delayed_workflow_is_released_early_or_postponed_and_others_are_left_alone(
    db: TestDatabase,
) {
    let dbos = Dbos::launch(db.config("testapp").queue(&LATER))
        .await
        .unwrap();
    let early = reminder(1)
        .id("early")
        .on(&dbos)
        .enqueue(&LATER)
        .delay(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(delay_row(&db, "early").await.0, "DELAYED");
    let before = now_ms();
    match dbos
        .set_workflow_delay("early", Duration::ZERO)
        .await
        .unwrap()
    {
        DelaySet::Delayed { until_epoch_ms } => {
            assert!(until_epoch_ms >= before && until_epoch_ms <= now_ms())
        }
        other => panic!("{other:?}"),
    }
    let out = tokio::time::timeout(Duration::from_secs(20), early.result())
        .await
        .expect("released by the next delay sweep, not after an hour")
        .unwrap();
    assert_eq!(out, 10);

    reminder(2)
        .id("postponed")
        .on(&dbos)
        .enqueue(&LATER)
        .delay(Duration::from_secs(30))
        .await
        .unwrap();
    let client = Client::connect(db.url()).await.unwrap();
    let until = SystemTime::now() + Duration::from_secs(7200);
    let answer = client
        .set_workflow_delay_until("postponed", until)
        .await
        .unwrap();
    let until_ms = until
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert_eq!(
        answer,
        DelaySet::Delayed {
            until_epoch_ms: until_ms
        }
    );
    assert_eq!(
        delay_row(&db, "postponed").await,
        ("DELAYED".to_owned(), Some(until_ms))
    );

    // No longer delayed: nothing changes, and the answer says why.
    assert_eq!(
        dbos.set_workflow_delay("early", Duration::from_secs(60))
            .await
            .unwrap(),
        DelaySet::NotDelayed(Status::Success)
    );
    assert_eq!(delay_row(&db, "early").await.0, "SUCCESS");
    let e = client
        .set_workflow_delay("nobody", Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonExistentWorkflow, "{e}");
    let e = client
        .set_workflow_delay_until("postponed", SystemTime::UNIX_EPOCH - Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    client.close();
    dbos.shutdown().await.unwrap();
}

static HANGS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn hang_the_first_time() -> Result<(), Error> {
    if HANGS.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[workflow]
async fn snoozes(target: String) -> Result<bool, Error> {
    let answer = Dbos::current()?
        .set_workflow_delay(&target, Duration::from_secs(600))
        .await?;
    hang_the_first_time().await?;
    Ok(matches!(answer, DelaySet::Delayed { .. }))
}

#[dbos_testkit::test]
async fn a_delay_change_inside_a_workflow_is_recorded_and_not_repeated(db: TestDatabase) {
    let config = db.config("testapp").executor_id("delay-exec");
    // Nobody serves this queue here: the target stays DELAYED.
    let dbos = Dbos::launch(config.clone()).await.unwrap();
    reminder(3)
        .id("target")
        .on(&dbos)
        .enqueue(&LATER)
        .delay(Duration::from_secs(60))
        .await
        .unwrap();
    dbos.shutdown().await.unwrap();

    run_then_kill(
        config.clone(),
        |dbos| async move {
            snoozes("target".into())
                .id("snoozer")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        },
        "the snoozer to reach its hanging step",
        || HANGS.load(Ordering::SeqCst) == 1,
    )
    .await;
    // An operator moves it meanwhile; the recovered workflow must not move it back.
    db.connect()
        .await
        .execute(
            "UPDATE dbos.workflow_status SET delay_until_epoch_ms = 42 WHERE workflow_uuid = 'target'",
            &[],
        )
        .await
        .unwrap();
    let dbos = Dbos::launch(config).await.unwrap();
    let changed = dbos
        .retrieve_workflow::<bool, Error>("snoozer")
        .result()
        .await
        .unwrap();
    assert!(changed, "the replay returns the recorded answer");
    assert_eq!(HANGS.load(Ordering::SeqCst), 2);
    let (_, until) = delay_row(&db, "target").await;
    assert_eq!(until, Some(42), "the change was not made again");
    let op = db.step_of("snoozer", 1).await.function_name;
    assert_eq!(op, "DBOS.setWorkflowDelay");
    dbos.shutdown().await.unwrap();
}

/// A workflow operating through a client (say, on another application's workflows).
#[workflow]
async fn operator(url: String, target: String) -> Result<bool, Error> {
    let client = Client::connect(url).await?;
    let set = client
        .set_workflow_delay(&target, Duration::from_secs(7200))
        .await?;
    client
        .update_workflow_attributes(&target, Some(serde_json::json!({"moved": true})))
        .await?;
    client.close();
    Ok(matches!(set, DelaySet::Delayed { .. }))
}

#[dbos_testkit::test]
async fn a_clients_delay_and_attribute_changes_are_recorded_inside_a_workflow(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").queue(&LATER))
        .await
        .unwrap();
    reminder(1)
        .id("target")
        .on(&dbos)
        .enqueue(&LATER)
        .delay(Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(operator(db.url(), "target".into())
        .id("operator")
        .on(&dbos)
        .await
        .unwrap());
    // The same operations as through the runtime, under DBOS's names: a replay returns
    // them instead of changing the target again.
    let ops = db.step_names("operator").await;
    assert_eq!(
        ops,
        vec!["DBOS.setWorkflowDelay", "DBOS.updateWorkflowAttributes"]
    );
    dbos.shutdown().await.unwrap();
}
