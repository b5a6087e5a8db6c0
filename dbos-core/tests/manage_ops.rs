//! Cancel, resume, fork, rewind and delete, with DBOS's semantics: what runs again and what
//! is replayed, counted by the steps' own side effects.

use std::time::Duration;

use dbos_core::manage::{ForkOptions, ListWorkflows, Payload, Resumed, RewindOptions};
use dbos_core::{step, workflow, Dbos, Error, ErrorKind, Queue, Status};
use dbos_testkit::crash::eventually;
use dbos_testkit::runs::{bump, runs as count};
use dbos_testkit::TestDatabase;
use serde_json::{json, Value};

#[step]
async fn s1(key: String) -> Result<i64, Error> {
    bump(&format!("{key}/s1"));
    Ok(1)
}

#[step]
async fn s2(key: String) -> Result<i64, Error> {
    bump(&format!("{key}/s2"));
    Ok(2)
}

#[step]
async fn s3(key: String) -> Result<i64, Error> {
    bump(&format!("{key}/s3"));
    Ok(3)
}

#[workflow]
async fn kid(key: String) -> Result<i64, Error> {
    bump(&format!("{key}/kid"));
    Ok(10)
}

/// Steps: 1 `s1`, 2 `s2`, 3 child start `kid`, 4 `DBOS.getResult`, 5 `s3`.
#[workflow]
async fn three(key: String) -> Result<i64, Error> {
    let a = s1(key.clone()).await?;
    let b = s2(key.clone()).await?;
    let k = kid(key.clone()).start().await?.result().await?;
    let c = s3(key).await?;
    Ok(a + b + k + c)
}

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
async fn slow_then_after(key: String, ms: u64) -> Result<String, Error> {
    s1(key.clone()).await?;
    slow(key.clone(), ms).await?;
    after(key.clone()).await?;
    Ok(format!("{key} done"))
}

#[workflow]
async fn sleeper(key: String, ms: u64) -> Result<(), Error> {
    dbos_core::sleep(Duration::from_millis(ms)).await?;
    after(key).await
}

#[workflow]
async fn sleepy_parent(key: String) -> Result<(), Error> {
    let child = sleeper(format!("{key}-child"), 60_000)
        .id(format!("{key}-child"))
        .start()
        .await?;
    let _ = child.result().await;
    after(key).await
}

static PARKED: Queue = Queue::new("parked");
static RESUMEQ: Queue = Queue::new("resumeq");

async fn launch(db: &TestDatabase) -> Dbos {
    Dbos::launch(
        db.config("testapp")
            .queue(&RESUMEQ)
            .park_after(Duration::from_secs(600))
            .cancel_poll_interval(Duration::from_millis(200)),
    )
    .await
    .unwrap()
}

/// The status of workflow `id`, whose row must exist.
async fn status(db: &TestDatabase, id: &str) -> String {
    db.status_of(id)
        .await
        .unwrap_or_else(|| panic!("no workflow `{id}`"))
}

async fn step_names(dbos: &Dbos, id: &str) -> Vec<String> {
    dbos.list_workflow_steps(id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.function_name)
        .collect()
}

#[dbos_testkit::test]
async fn cancel_stops_before_the_next_step_releases_dedup_and_reaches_descendants(
    db: TestDatabase,
) {
    let dbos = launch(&db).await;
    // A step in progress completes unrecorded; nothing after it starts.
    let h = slow_then_after("c1".into(), 800)
        .id("c1")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually(
        "the slow step to start",
        Duration::from_secs(10),
        || async { (count("c1/slow-started") == 1).then_some(()) },
    )
    .await;
    dbos.cancel_workflow("c1").await.unwrap();
    assert_eq!(
        h.result().await.unwrap_err().kind(),
        ErrorKind::AwaitedWorkflowCancelled
    );
    eventually(
        "the slow step to finish",
        Duration::from_secs(10),
        || async { (count("c1/slow-finished") == 1).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count("c1/after"), 0);
    assert_eq!(
        step_names(&dbos, "c1").await,
        vec!["s1"],
        "the slow step was not recorded"
    );
    let info = dbos.get_workflow("c1").await.unwrap();
    assert_eq!(info.status, Status::Cancelled);
    assert!(info.completed_at.is_some() && info.queue_name.is_none());

    // The deduplication id is released.
    let enqueue = |id: &'static str| {
        let dbos = dbos.clone();
        async move {
            slow_then_after(id.into(), 1)
                .id(id)
                .on(&dbos)
                .enqueue(&PARKED)
                .deduplication_id("invoice-1")
                .await
        }
    };
    enqueue("d1").await.unwrap();
    assert_eq!(
        enqueue("d2").await.unwrap_err().kind(),
        ErrorKind::QueueDeduplicated
    );
    dbos.cancel_workflow("d1").await.unwrap();
    enqueue("d3")
        .await
        .expect("the deduplication id is free once its holder is cancelled");

    // Descendants: the parent and its sleeping child, in one call.
    sleepy_parent("tree".into())
        .id("tree")
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
    let mut cancelled = dbos.cancel_workflow_and_descendants("tree").await.unwrap();
    cancelled.sort();
    assert_eq!(cancelled, vec!["tree", "tree-child"]);
    eventually("both to stop", Duration::from_secs(10), || async {
        (dbos.running_workflows() == 0).then_some(())
    })
    .await;
    assert_eq!(status(&db, "tree-child").await, "CANCELLED");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count("tree/after") + count("tree-child/after"), 0);
    // Finished workflows stay finished; a second cancel changes nothing.
    three("done".into()).id("done").on(&dbos).await.unwrap();
    assert!(dbos
        .cancel_workflow_and_descendants("done")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(status(&db, "done").await, "SUCCESS");
    assert_eq!(
        dbos.cancel_workflow("nobody").await.unwrap_err().kind(),
        ErrorKind::NonExistentWorkflow
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn resume_continues_from_the_last_checkpoint(db: TestDatabase) {
    let dbos = launch(&db).await;
    let h = slow_then_after("r1".into(), 600)
        .id("r1")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually(
        "the slow step to start",
        Duration::from_secs(10),
        || async { (count("r1/slow-started") == 1).then_some(()) },
    )
    .await;
    dbos.cancel_workflow("r1").await.unwrap();
    eventually(
        "the cancelled step to finish",
        Duration::from_secs(10),
        || async { (count("r1/slow-finished") == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        dbos.resume_workflow("r1").await.unwrap(),
        Resumed::Enqueued {
            queue: "_dbos_internal_queue".into()
        }
    );
    let out: String = dbos
        .retrieve_workflow::<String, Error>("r1")
        .result()
        .await
        .unwrap();
    assert_eq!(out, "r1 done");
    drop(h);
    // The recorded step was replayed; the step in progress at the cancel ran again.
    assert_eq!(
        (count("r1/s1"), count("r1/slow-started"), count("r1/after")),
        (1, 2, 1)
    );
    let info = dbos.get_workflow("r1").await.unwrap();
    assert_eq!(info.status, Status::Success);
    assert_eq!(
        info.recovery_attempts, 1,
        "a resume resets the count; its dequeue makes it 1"
    );
    assert_eq!(
        info.queue_name.as_deref(),
        Some("_dbos_internal_queue"),
        "it ran from the internal queue"
    );

    // Finished workflows: a clear no-op.
    assert_eq!(
        dbos.resume_workflow("r1").await.unwrap(),
        Resumed::AlreadyFinished(Status::Success)
    );
    assert_eq!(
        dbos.get_workflow("r1").await.unwrap().updated_at,
        info.updated_at
    );

    // A dead-lettered workflow resumes onto a queue of our choice.
    slow_then_after("r2".into(), 300)
        .id("r2")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually(
        "r2's slow step to start",
        Duration::from_secs(10),
        || async { (count("r2/slow-started") == 1).then_some(()) },
    )
    .await;
    dbos.cancel_workflow("r2").await.unwrap();
    db.connect()
        .await
        .batch_execute(
            "UPDATE dbos.workflow_status SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', recovery_attempts = 150
              WHERE workflow_uuid = 'r2'",
        )
        .await
        .unwrap();
    assert_eq!(
        dbos.resume_workflow_on_queue("r2", "resumeq")
            .await
            .unwrap(),
        Resumed::Enqueued {
            queue: "resumeq".into()
        }
    );
    let out: String = dbos.retrieve_workflow::<String, Error>("r2").await.unwrap();
    assert_eq!(out, "r2 done");
    assert_eq!((count("r2/s1"), count("r2/after")), (1, 1));

    assert_eq!(
        dbos.resume_workflow("nobody").await.unwrap_err().kind(),
        ErrorKind::NonExistentWorkflow
    );
    assert_eq!(
        dbos.resume_workflow_on_queue("r2", " ")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn fork_copies_the_steps_before_n_and_runs_the_rest(db: TestDatabase) {
    let dbos = launch(&db).await;
    assert_eq!(three("f".into()).id("f-orig").on(&dbos).await.unwrap(), 16);
    let sql = db.connect().await;
    // Events and stream entries the original wrote at steps 1, 2 and 5.
    sql.batch_execute(
        "INSERT INTO dbos.workflow_events_history (workflow_uuid, function_id, key, value, serialization) VALUES
             ('f-orig', 1, 'progress', '\"one\"', 'portable_json'),
             ('f-orig', 2, 'other', '\"two\"', 'portable_json'),
             ('f-orig', 5, 'progress', '\"five\"', 'portable_json');
         INSERT INTO dbos.workflow_events (workflow_uuid, key, value, serialization) VALUES
             ('f-orig', 'progress', '\"five\"', 'portable_json'), ('f-orig', 'other', '\"two\"', 'portable_json');
         INSERT INTO dbos.streams (workflow_uuid, key, value, \"offset\", function_id, serialization) VALUES
             ('f-orig', 'log', '\"a\"', 0, 1, 'portable_json'), ('f-orig', 'log', '\"b\"', 1, 5, 'portable_json');",
    )
    .await
    .unwrap();

    // From step 5: steps 1-4 copied (the child reused), step 5 runs again.
    let fork = dbos
        .fork_workflow("f-orig", 5, &ForkOptions::new().workflow_id("f-5"))
        .await
        .unwrap();
    assert_eq!(fork.id(), "f-5");
    assert_eq!(fork.typed::<i64, Error>().result().await.unwrap(), 16);
    assert_eq!(
        (count("f/s1"), count("f/s2"), count("f/kid"), count("f/s3")),
        (1, 1, 1, 2)
    );
    let steps = dbos.list_workflow_steps("f-5").await.unwrap();
    assert_eq!(steps.len(), 5);
    assert_eq!(
        steps[2].child_workflow_id.as_deref(),
        Some("f-orig-3"),
        "the child is reused"
    );
    assert!(dbos
        .list_workflows(&ListWorkflows::new().id("f-5-3"))
        .await
        .unwrap()
        .is_empty());
    let info = dbos.get_workflow("f-5").await.unwrap();
    assert_eq!(info.forked_from.as_deref(), Some("f-orig"));
    assert_eq!(info.name, "three");
    assert_eq!(
        info.input
            .and_then(|i| i.decoded().cloned())
            .unwrap()
            .positional_args,
        vec![json!("f")]
    );
    assert!(dbos.get_workflow("f-orig").await.unwrap().was_forked_from);
    assert_eq!(
        dbos.list_workflows(&ListWorkflows::new().forked_from("f-orig"))
            .await
            .unwrap()
            .len(),
        1
    );

    // From step 3, the copies of events and streams stop before it too.
    dbos_testkit::fork_and_wait(&dbos, "f-orig", 3, "f-3")
        .await
        .unwrap();
    let events: Vec<(String, String)> = sql
        .query(
            "SELECT key, value FROM dbos.workflow_events WHERE workflow_uuid = 'f-3' ORDER BY key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        events,
        vec![
            ("other".into(), "\"two\"".into()),
            ("progress".into(), "\"one\"".into())
        ]
    );
    let history: i64 = sql
        .query_one(
            "SELECT count(*) FROM dbos.workflow_events_history WHERE workflow_uuid = 'f-3'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(history, 2);
    let stream: Vec<i32> = sql
        .query(
            "SELECT \"offset\" FROM dbos.streams WHERE workflow_uuid = 'f-3'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stream, vec![0]);
    // A new child was started for the fork (the copied history stops before its start).
    assert_eq!(count("f/kid"), 2);
    assert_eq!((count("f/s1"), count("f/s2")), (1, 1));

    // Restart: everything runs again under a new id.
    let restarted = dbos
        .restart_workflow("f-orig", &ForkOptions::new())
        .await
        .unwrap();
    assert_ne!(restarted.id(), "f-orig");
    assert_eq!(restarted.result().await.unwrap(), json!(16));
    assert_eq!((count("f/s1"), count("f/s3")), (2, 4));

    // A fork from right after the last step replays everything and runs nothing.
    let all = dbos
        .fork_workflow("f-orig", 6, &ForkOptions::new())
        .await
        .unwrap();
    assert_eq!(all.result().await.unwrap(), json!(16));
    assert_eq!((count("f/s1"), count("f/s3")), (2, 4));

    // Beyond the history: a typed error naming the last step; nothing is written.
    let e = dbos
        .fork_workflow("f-orig", 7, &ForkOptions::new().workflow_id("f-7"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSuchStep, "{e}");
    assert_eq!((e.step_id(), e.step_name()), (Some(5), Some("s3")));
    assert!(e.to_string().contains("step 1 to 6"), "{e}");
    assert_eq!(
        dbos.get_workflow("f-7").await.unwrap_err().kind(),
        ErrorKind::NonExistentWorkflow
    );
    for (id, step, options, kind) in [
        ("f-orig", 0, ForkOptions::new(), ErrorKind::InvalidArgument),
        (
            "f-orig",
            2,
            ForkOptions::new().workflow_id("f-5"),
            ErrorKind::ConflictingWorkflow,
        ),
        (
            "f-orig",
            2,
            ForkOptions::new().queue(""),
            ErrorKind::InvalidArgument,
        ),
        (
            "f-orig",
            2,
            ForkOptions::new().timeout(Duration::ZERO),
            ErrorKind::InvalidArgument,
        ),
        (
            "nobody",
            1,
            ForkOptions::new(),
            ErrorKind::NonExistentWorkflow,
        ),
    ] {
        let e = dbos.fork_workflow(id, step, &options).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{e}");
    }

    // Options: version, queue and timeout are recorded on the fork.
    let parked = dbos
        .fork_workflow(
            "f-orig",
            2,
            &ForkOptions::new()
                .workflow_id("f-parked")
                .app_version("v9")
                .queue("parked")
                .timeout(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let info = dbos.get_workflow(parked.id()).await.unwrap();
    assert_eq!(info.status, Status::Enqueued);
    assert_eq!(info.queue_name.as_deref(), Some("parked"));
    assert_eq!(info.app_version.as_deref(), Some("v9"));
    assert_eq!(info.workflow_timeout_ms, Some(60_000));
    assert_eq!(info.application_name.as_deref(), Some("testapp"));
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn rewind_reruns_a_finished_workflow_from_step_n_under_its_id(db: TestDatabase) {
    let dbos = launch(&db).await;
    three("w".into()).id("w").on(&dbos).await.unwrap();
    let sql = db.connect().await;
    sql.batch_execute(
        "INSERT INTO dbos.workflow_events_history (workflow_uuid, function_id, key, value, serialization) VALUES
             ('w', 1, 'progress', '\"one\"', 'portable_json'), ('w', 5, 'progress', '\"five\"', 'portable_json'),
             ('w', 5, 'late', '\"only late\"', 'portable_json');
         INSERT INTO dbos.workflow_events (workflow_uuid, key, value, serialization) VALUES
             ('w', 'progress', '\"five\"', 'portable_json'), ('w', 'late', '\"only late\"', 'portable_json');
         INSERT INTO dbos.streams (workflow_uuid, key, value, \"offset\", function_id, serialization) VALUES
             ('w', 'log', '\"a\"', 0, 1, 'portable_json'), ('w', 'log', '\"b\"', 1, 5, 'portable_json'),
             ('w', 'log', '\"__DBOS_STREAM_CLOSED__\"', 2, 5, 'portable_json');
         INSERT INTO dbos.notifications (message_uuid, destination_uuid, topic, message, serialization, consumed, consumed_by_function_id) VALUES
             ('kept', 'w', 't', '1', 'portable_json', TRUE, 1),
             ('consumed-late', 'w', 't', '2', 'portable_json', TRUE, 4),
             ('unconsumed', 'w', 't', '3', 'portable_json', FALSE, NULL);",
    )
    .await
    .unwrap();
    // Beyond the history plus one: a typed error naming the last step, nothing changed.
    let e = dbos
        .rewind_workflow("w", 7, &RewindOptions::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSuchStep, "{e}");
    assert_eq!(e.step_id(), Some(5));
    assert_eq!(status(&db, "w").await, "SUCCESS");
    dbos.rewind_workflow("w", 4, &RewindOptions::new())
        .await
        .unwrap();
    let out: i64 = dbos.retrieve_workflow::<i64, Error>("w").await.unwrap();
    assert_eq!(out, 16);
    assert_eq!(
        (count("w/s1"), count("w/s2"), count("w/kid"), count("w/s3")),
        (1, 1, 1, 2),
        "steps before 4 replayed, 4 and 5 ran again"
    );
    assert_eq!(status(&db, "w").await, "SUCCESS");
    let events: Vec<(String, String)> = sql
        .query(
            "SELECT key, value FROM dbos.workflow_events WHERE workflow_uuid = 'w' ORDER BY key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        events,
        vec![("progress".into(), "\"one\"".into())],
        "events back to their value before step 4"
    );
    let stream: Vec<i32> = sql
        .query(
            "SELECT \"offset\" FROM dbos.streams WHERE workflow_uuid = 'w' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stream, vec![0, 1], "only the close marker goes");
    let messages: Vec<String> = sql
        .query(
            "SELECT message_uuid FROM dbos.notifications WHERE destination_uuid = 'w'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(messages, vec!["kept"]);

    // Active workflows are refused; cancel first.
    sleeper("w2".into(), 60_000)
        .id("w2")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let e = dbos
        .rewind_workflow("w2", 1, &RewindOptions::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("cancel it first"), "{e}");
    dbos.cancel_workflow("w2").await.unwrap();
    // A cancelled workflow rewound onto a queue nobody serves waits there.
    dbos.rewind_workflow(
        "w2",
        1,
        &RewindOptions::new().queue("parked").app_version("v2"),
    )
    .await
    .unwrap();
    let info = dbos.get_workflow("w2").await.unwrap();
    assert_eq!(
        (
            info.status,
            info.queue_name.as_deref(),
            info.app_version.as_deref()
        ),
        (Status::Enqueued, Some("parked"), Some("v2"))
    );
    assert!(dbos.list_workflow_steps("w2").await.unwrap().is_empty());
    assert_eq!(
        dbos.rewind_workflow("nobody", 1, &RewindOptions::new())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NonExistentWorkflow
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn delete_removes_everything_recorded_with_descendants(db: TestDatabase) {
    let dbos = launch(&db).await;
    three("del".into()).id("del").on(&dbos).await.unwrap();
    three("keep".into()).id("keep").on(&dbos).await.unwrap();
    let sql = db.connect().await;
    sql.batch_execute(
        "INSERT INTO dbos.workflow_events (workflow_uuid, key, value) VALUES ('del', 'k', '1'), ('del-3', 'k', '1');
         INSERT INTO dbos.streams (workflow_uuid, key, value, \"offset\") VALUES ('del', 's', '1', 0);
         INSERT INTO dbos.notifications (destination_uuid, topic, message) VALUES ('del-3', 't', '1');",
    )
    .await
    .unwrap();
    let mut deleted = dbos.delete_workflow_and_descendants("del").await.unwrap();
    deleted.sort();
    assert_eq!(deleted, vec!["del", "del-3"]);
    for table in [
        "workflow_status",
        "workflow_input",
        "workflow_output",
        "operation_outputs",
        "workflow_events",
        "streams",
    ] {
        let n: i64 = sql
            .query_one(
                &format!(
                    "SELECT count(*) FROM dbos.{table} WHERE workflow_uuid IN ('del', 'del-3')"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table}");
    }
    let n: i64 = sql
        .query_one(
            "SELECT count(*) FROM dbos.notifications WHERE destination_uuid = 'del-3'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    assert_eq!(status(&db, "keep").await, "SUCCESS");
    assert_eq!(
        dbos.delete_workflow("del").await.unwrap_err().kind(),
        ErrorKind::NonExistentWorkflow
    );
    // Without descendants the child stays.
    dbos.delete_workflow("keep").await.unwrap();
    assert_eq!(status(&db, "keep-3").await, "SUCCESS");
    // A workflow running here stops at once when deleted.
    sleeper("gone".into(), 60_000)
        .id("gone")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("it to run", Duration::from_secs(10), || async {
        (dbos.running_workflows() == 1).then_some(())
    })
    .await;
    dbos.delete_workflow("gone").await.unwrap();
    eventually("it to stop", Duration::from_secs(10), || async {
        (dbos.running_workflows() == 0).then_some(())
    })
    .await;
    assert_eq!(count("gone/after"), 0);
    let _: Option<Payload<Value>> = None;
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn bulk_cancel_resume_and_delete_act_on_all_given_ids_or_none(db: TestDatabase) {
    let dbos = launch(&db).await;
    for id in ["bulk-1", "bulk-2", "bulk-3"] {
        // Nobody serves PARKED: they wait there.
        three(id.into())
            .id(id)
            .on(&dbos)
            .enqueue(&PARKED)
            .await
            .unwrap();
    }
    three("bulk-done".into())
        .id("bulk-done")
        .on(&dbos)
        .await
        .unwrap();

    let e = dbos
        .cancel_workflows(&["bulk-1", "bulk-2", "nope", "nada"])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonExistentWorkflow, "{e}");
    assert!(
        e.to_string().contains("`nope`") && e.to_string().contains("`nada`"),
        "{e}"
    );
    assert_eq!(
        status(&db, "bulk-1").await,
        "ENQUEUED",
        "nothing was cancelled"
    );
    let e = dbos.cancel_workflows(&[]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

    let client = dbos_core::Client::connect(db.url()).await.unwrap();
    let mut cancelled = client
        .cancel_workflows(&["bulk-1", "bulk-2", "bulk-done"])
        .await
        .unwrap();
    cancelled.sort();
    assert_eq!(
        cancelled,
        vec!["bulk-1", "bulk-2"],
        "a finished one stays as it is"
    );
    assert_eq!(status(&db, "bulk-2").await, "CANCELLED");
    assert_eq!(status(&db, "bulk-done").await, "SUCCESS");

    let e = dbos
        .resume_workflows(&["bulk-1", "nope"])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonExistentWorkflow, "{e}");
    assert_eq!(
        status(&db, "bulk-1").await,
        "CANCELLED",
        "nothing was resumed"
    );
    let answers = dbos
        .resume_workflows(&["bulk-1", "bulk-2", "bulk-done"])
        .await
        .unwrap();
    assert_eq!(answers.len(), 3);
    assert!(
        matches!(answers[0].1, Resumed::Enqueued { .. }),
        "{answers:?}"
    );
    assert!(
        matches!(answers[1].1, Resumed::Enqueued { .. }),
        "{answers:?}"
    );
    assert_eq!(answers[2].1, Resumed::AlreadyFinished(Status::Success));
    for id in ["bulk-1", "bulk-2"] {
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            dbos.retrieve_workflow::<i64, Error>(id).result(),
        )
        .await
        .expect("the resumed workflow runs from the internal queue")
        .unwrap();
        assert_eq!(out, 16);
        assert_eq!(count(&format!("{id}/s3")), 1);
    }

    let e = client
        .delete_workflows(&["bulk-1", "bulk-3", "nope"])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonExistentWorkflow, "{e}");
    assert_eq!(
        status(&db, "bulk-3").await,
        "ENQUEUED",
        "nothing was deleted"
    );
    let mut deleted = dbos.delete_workflows(&["bulk-1", "bulk-3"]).await.unwrap();
    deleted.sort();
    assert_eq!(deleted, vec!["bulk-1", "bulk-3"]);
    let left: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid IN ('bulk-1', 'bulk-3')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    client.close();
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn kid_alt() -> Result<i64, Error> {
    Ok(100)
}

#[dbos_testkit::test]
async fn a_fork_can_replace_a_child_started_before_its_step(db: TestDatabase) {
    let dbos = launch(&db).await;
    assert_eq!(
        three("rc".into()).id("rc-parent").on(&dbos).await.unwrap(),
        16
    );
    let old_child = dbos
        .list_workflow_steps("rc-parent")
        .await
        .unwrap()
        .into_iter()
        .find_map(|s| s.child_workflow_id)
        .expect("the child start is recorded");
    assert_eq!(kid_alt().id("rc-new-kid").on(&dbos).await.unwrap(), 100);

    // From step 4 (awaiting the child): the copied start names the replacement, so the
    // fork awaits it instead of reusing the old child.
    let fork = dbos
        .fork_workflow(
            "rc-parent",
            4,
            &ForkOptions::new()
                .workflow_id("rc-fork")
                .replace_child(old_child.clone(), "rc-new-kid"),
        )
        .await
        .unwrap();
    assert_eq!(fork.result().await.unwrap(), json!(106));
    let children: Vec<Option<String>> = dbos
        .list_workflow_steps("rc-fork")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.child_workflow_id)
        .collect();
    assert!(
        children.contains(&Some("rc-new-kid".to_owned())),
        "{children:?}"
    );
    assert!(!children.contains(&Some(old_child.clone())), "{children:?}");

    // Without a replacement the old child is reused.
    let plain = dbos
        .fork_workflow("rc-parent", 4, &ForkOptions::new().workflow_id("rc-plain"))
        .await
        .unwrap();
    assert_eq!(plain.result().await.unwrap(), json!(16));
    assert_eq!(count("rc/kid"), 1, "the old child never ran again");

    let e = dbos
        .fork_workflow("rc-parent", 4, &ForkOptions::new().replace_child(" ", "x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    dbos.shutdown().await.unwrap();
}
