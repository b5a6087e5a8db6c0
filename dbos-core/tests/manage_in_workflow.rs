//! Management operations called inside a workflow body are durable operations, recorded
//! under DBOS 3.4's names: a recovered workflow gets the recorded answers back (a listing is
//! not re-read, a status is not looked up again) and a write (fork, cancel, resume, rewind,
//! delete) is never made a second time. Each test kills the executor after the operations
//! ran, changes the database behind the workflow's back, and relaunches.

use dbos_core::manage::{ForkOptions, ListWorkflows, Resumed, RewindOptions};
use dbos_core::{step, workflow, Client, Config, Dbos, Error, Status};
use dbos_testkit::crash::run_then_kill;
use dbos_testkit::runs::{bump, runs};
use dbos_testkit::TestDatabase;

#[workflow]
async fn plain(n: u32) -> Result<u32, Error> {
    Ok(n + 1)
}

/// Hangs on its first run for `key` only (the run the executor is killed in).
#[step]
async fn hang_once(key: String) -> Result<(), Error> {
    if bump(&key) == 1 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

fn config(db: &TestDatabase) -> Config {
    db.config("testapp").executor_id("mgmt-in-wf")
}

#[workflow]
async fn forker(source: String) -> Result<String, Error> {
    let fork = Dbos::current()?
        .fork_workflow(&source, 1, &ForkOptions::new().queue("nobody-serves-this"))
        .await?;
    hang_once("forker".into()).await?;
    Ok(fork.id().to_owned())
}

#[dbos_testkit::test]
async fn a_fork_inside_a_workflow_killed_before_it_finishes_exists_once(db: TestDatabase) {
    let dbos = Dbos::launch(config(&db)).await.unwrap();
    plain(1).id("fork-source").on(&dbos).await.unwrap();
    dbos.shutdown().await.unwrap();

    run_then_kill(
        config(&db),
        |dbos| async move {
            forker("fork-source".into())
                .id("forker")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        },
        "the forker to reach its hanging step",
        || runs("forker") == 1,
    )
    .await;

    let dbos = Dbos::launch(config(&db)).await.unwrap();
    let fork_id = dbos
        .retrieve_workflow::<String, Error>("forker")
        .result()
        .await
        .unwrap();
    assert_eq!(runs("forker"), 2, "the forker was recovered");
    let forks = dbos
        .list_workflows(&ListWorkflows::new().forked_from("fork-source"))
        .await
        .unwrap();
    let ids: Vec<&str> = forks.iter().map(|w| w.workflow_id.as_str()).collect();
    assert_eq!(
        ids,
        vec![fork_id.as_str()],
        "exactly one fork, the recorded one"
    );
    let ops = db.steps_of("forker").await;
    assert_eq!(ops[0].function_id, 1);
    assert_eq!(ops[0].function_name, "DBOS.forkWorkflow");
    assert_eq!(
        ops[0].output.as_deref(),
        Some(serde_json::to_string(&fork_id).unwrap().as_str()),
        "the fork's id is the recorded output, as JSON text"
    );
    dbos.shutdown().await.unwrap();
}

/// What the reader saw, as it returns it.
type Seen = (Vec<String>, Vec<String>, Vec<String>, Status, Status);

#[workflow]
async fn reader() -> Result<Seen, Error> {
    let dbos = Dbos::current()?;
    let listed = dbos
        .list_workflows(&ListWorkflows::new().id_prefix("target-"))
        .await?;
    let queued = dbos
        .list_queued_workflows(&ListWorkflows::new().id_prefix("target-"))
        .await?;
    let steps = dbos.list_workflow_steps("target-done").await?;
    let status = dbos
        .retrieve_workflow::<u32, Error>("target-queued")
        .status()
        .await?;
    let info = dbos.get_workflow("target-queued").await?;
    hang_once("reader".into()).await?;
    Ok((
        listed.into_iter().map(|w| w.workflow_id).collect(),
        queued.into_iter().map(|w| w.workflow_id).collect(),
        steps.into_iter().map(|s| s.function_name).collect(),
        status,
        info.status,
    ))
}

#[workflow]
async fn two_steps() -> Result<u32, Error> {
    dbos_core::run_step("one", dbos_core::StepOptions::DEFAULT, || async {
        Ok::<_, Error>(1)
    })
    .await?;
    dbos_core::run_step("two", dbos_core::StepOptions::DEFAULT, || async {
        Ok::<_, Error>(2)
    })
    .await
}

#[dbos_testkit::test]
async fn listings_and_statuses_read_inside_a_workflow_replay_their_recorded_answers(
    db: TestDatabase,
) {
    let dbos = Dbos::launch(config(&db)).await.unwrap();
    two_steps().id("target-done").on(&dbos).await.unwrap();
    let client = Client::connect(db.url()).await.unwrap();
    client
        .enqueue("plain", "nobody-serves-this")
        .id("target-queued")
        .arg(&3u32)
        .await
        .unwrap();
    dbos.shutdown().await.unwrap();

    run_then_kill(
        config(&db),
        |dbos| async move {
            reader().id("reader").on(&dbos).start().await.unwrap();
        },
        "the reader to reach its hanging step",
        || runs("reader") == 1,
    )
    .await;

    // Behind the workflow's back: a new workflow, a cancel, a step more.
    client
        .enqueue("plain", "nobody-serves-this")
        .id("target-new")
        .arg(&4u32)
        .await
        .unwrap();
    client.cancel_workflow("target-queued").await.unwrap();

    let dbos = Dbos::launch(config(&db)).await.unwrap();
    let seen = dbos
        .retrieve_workflow::<Seen, Error>("reader")
        .result()
        .await
        .unwrap();
    assert_eq!(runs("reader"), 2, "the reader was recovered");
    assert_eq!(
        seen,
        (
            vec!["target-done".to_owned(), "target-queued".to_owned()],
            vec!["target-queued".to_owned()],
            vec!["one".to_owned(), "two".to_owned()],
            Status::Enqueued,
            Status::Enqueued,
        ),
        "the recovered reader sees what it saw before the crash"
    );
    let names = db.step_names("reader").await;
    assert_eq!(
        names,
        [
            "DBOS.listWorkflows",
            "DBOS.listQueuedWorkflows",
            "DBOS.listWorkflowSteps",
            "DBOS.getStatus",
            "DBOS.getStatus",
            "hang_once",
        ]
    );
    client.close();
    dbos.shutdown().await.unwrap();
}

/// What the writer's operations answered.
type Wrote = (Vec<String>, Resumed, Vec<String>);

#[workflow]
async fn writer() -> Result<Wrote, Error> {
    let dbos = Dbos::current()?;
    let cancelled = dbos.cancel_workflows(&["w-cancel"]).await?;
    let resumed = dbos
        .resume_workflow_on_queue("w-resume", "nobody-serves-this")
        .await?;
    dbos.rewind_workflow(
        "w-rewind",
        1,
        &RewindOptions::new().queue("nobody-serves-this"),
    )
    .await?;
    let deleted = dbos.delete_workflows(&["w-delete"]).await?;
    hang_once("writer".into()).await?;
    Ok((cancelled, resumed, deleted))
}

#[dbos_testkit::test]
async fn writes_inside_a_workflow_are_recorded_and_never_made_twice(db: TestDatabase) {
    let dbos = Dbos::launch(config(&db)).await.unwrap();
    let client = Client::connect(db.url()).await.unwrap();
    for id in ["w-cancel", "w-resume"] {
        client
            .enqueue("plain", "nobody-serves-this")
            .id(id)
            .arg(&1u32)
            .await
            .unwrap();
    }
    client.cancel_workflow("w-resume").await.unwrap();
    plain(2).id("w-rewind").on(&dbos).await.unwrap();
    plain(3).id("w-delete").on(&dbos).await.unwrap();
    dbos.shutdown().await.unwrap();

    run_then_kill(
        config(&db),
        |dbos| async move {
            writer().id("writer").on(&dbos).start().await.unwrap();
        },
        "the writer to reach its hanging step",
        || runs("writer") == 1,
    )
    .await;
    assert_eq!(db.status_of("w-cancel").await.as_deref(), Some("CANCELLED"));
    assert_eq!(db.status_of("w-resume").await.as_deref(), Some("ENQUEUED"));
    assert_eq!(db.status_of("w-rewind").await.as_deref(), Some("ENQUEUED"));
    assert_eq!(db.status_of("w-delete").await, None);

    // An operator undoes each change meanwhile; the recovered writer must not redo any.
    client
        .resume_workflow_on_queue("w-cancel", "nobody-serves-this")
        .await
        .unwrap();
    client.cancel_workflow("w-resume").await.unwrap();
    client.cancel_workflow("w-rewind").await.unwrap();
    let operator = operator(&db).await;
    plain(4).id("w-delete").on(&operator).await.unwrap();
    operator.shutdown().await.unwrap();

    let dbos = Dbos::launch(config(&db)).await.unwrap();
    let wrote = dbos
        .retrieve_workflow::<Wrote, Error>("writer")
        .result()
        .await
        .unwrap();
    assert_eq!(runs("writer"), 2, "the writer was recovered");
    assert_eq!(
        wrote,
        (
            vec!["w-cancel".to_owned()],
            Resumed::Enqueued {
                queue: "nobody-serves-this".to_owned()
            },
            vec!["w-delete".to_owned()],
        ),
        "the recovered writer gets the recorded answers"
    );
    assert_eq!(db.status_of("w-cancel").await.as_deref(), Some("ENQUEUED"));
    assert_eq!(db.status_of("w-resume").await.as_deref(), Some("CANCELLED"));
    assert_eq!(db.status_of("w-rewind").await.as_deref(), Some("CANCELLED"));
    assert_eq!(db.status_of("w-delete").await.as_deref(), Some("SUCCESS"));
    let names = db.step_names("writer").await;
    assert_eq!(
        names,
        [
            "DBOS.cancelWorkflow",
            "DBOS.resumeWorkflow",
            "DBOS.rewindWorkflow",
            "DBOS.deleteWorkflow",
            "hang_once",
        ]
    );
    client.close();
    dbos.shutdown().await.unwrap();
}

/// A short-lived runtime of another executor (it recovers nothing of the killed one), to
/// create workflows before the killed executor is relaunched.
async fn operator(db: &TestDatabase) -> Dbos {
    Dbos::launch(db.config("testapp").executor_id("operator"))
        .await
        .unwrap()
}

#[workflow]
async fn missing_target() -> Result<String, Error> {
    let answer = match Dbos::current()?.cancel_workflow("never-existed").await {
        Ok(()) => "cancelled".to_owned(),
        Err(e) => format!("{:?}", e.kind()),
    };
    hang_once("misser".into()).await?;
    Ok(answer)
}

#[dbos_testkit::test]
async fn an_error_of_a_management_operation_inside_a_workflow_replays(db: TestDatabase) {
    run_then_kill(
        config(&db),
        |dbos| async move {
            missing_target()
                .id("misser")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        },
        "the misser to reach its hanging step",
        || runs("misser") == 1,
    )
    .await;
    // The target appears meanwhile: the replay still gets the recorded error.
    let operator = operator(&db).await;
    plain(5).id("never-existed").on(&operator).await.unwrap();
    operator.shutdown().await.unwrap();
    let dbos = Dbos::launch(config(&db)).await.unwrap();
    let answer = dbos
        .retrieve_workflow::<String, Error>("misser")
        .result()
        .await
        .unwrap();
    assert_eq!(answer, "NonExistentWorkflow");
    assert_eq!(
        db.status_of("never-existed").await.as_deref(),
        Some("SUCCESS")
    );
    let ops = db.steps_of("misser").await;
    assert_eq!(ops[0].function_name, "DBOS.cancelWorkflow");
    dbos.shutdown().await.unwrap();
}

/// Waits until the test releases it: plain code, no durable operation (the workflow is
/// cancelled meanwhile and must not notice until its next operation).
async fn wait_for_release(key: &str) {
    bump(&format!("{key}/waiting"));
    while runs(&format!("{key}/released")) == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[workflow]
async fn late_forker(source: String) -> Result<String, Error> {
    wait_for_release("late-forker").await;
    let fork = Dbos::current()?
        .fork_workflow(&source, 1, &ForkOptions::new().queue("nobody-serves-this"))
        .await?;
    Ok(fork.id().to_owned())
}

#[dbos_testkit::test]
async fn a_workflow_cancelled_elsewhere_makes_no_fork_before_it_notices(db: TestDatabase) {
    // The executor would notice the cancel only after a minute: the fork's own transaction
    // is what must refuse it.
    let dbos = Dbos::launch(config(&db).cancel_poll_interval(std::time::Duration::from_secs(60)))
        .await
        .unwrap();
    plain(6).id("late-source").on(&dbos).await.unwrap();
    let handle = late_forker("late-source".into())
        .id("late-forker")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    dbos_testkit::crash::eventually(
        "the forker to wait",
        std::time::Duration::from_secs(10),
        || async { (runs("late-forker/waiting") == 1).then_some(()) },
    )
    .await;
    let client = Client::connect(db.url()).await.unwrap();
    client.cancel_workflow("late-forker").await.unwrap();
    bump("late-forker/released");
    let e = handle.result().await.unwrap_err();
    assert_eq!(
        e.kind(),
        dbos_core::ErrorKind::AwaitedWorkflowCancelled,
        "{e}"
    );
    // The step completes after the cancel and the body goes on to the fork: wait until
    // the execution ended.
    dbos_testkit::crash::eventually(
        "the forker's execution to end",
        std::time::Duration::from_secs(10),
        || async { (dbos.running_workflows() == 0).then_some(()) },
    )
    .await;
    let forks = client
        .list_workflows(&ListWorkflows::new().forked_from("late-source"))
        .await
        .unwrap();
    assert!(
        forks.is_empty(),
        "a cancelled workflow made a fork: {forks:?}"
    );
    let names = db.step_names("late-forker").await;
    assert!(
        names.is_empty(),
        "nothing recorded after the cancel: {names:?}"
    );
    client.close();
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn waiting_victim() -> Result<(), Error> {
    wait_for_release("victim").await;
    Ok(())
}

#[workflow]
async fn canceller(target: String) -> Result<String, Error> {
    Dbos::current()?.cancel_workflow(&target).await?;
    Ok("cancelled".to_owned())
}

/// A write inside a workflow that the database fails (not one that changed nothing) is no
/// answer to record: the execution stops with nothing recorded, and the workflow, resumed
/// once the database accepts the write, makes it then. Recording the failure instead would
/// replay it as the cancel's error forever.
#[dbos_testkit::test]
async fn a_database_failure_of_a_write_inside_a_workflow_is_not_recorded_as_its_answer(
    db: TestDatabase,
) {
    let dbos = Dbos::launch(config(&db)).await.unwrap();
    let victim = waiting_victim()
        .id("victim")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    dbos_testkit::crash::eventually(
        "the victim to wait",
        std::time::Duration::from_secs(30),
        || async { (runs("victim/waiting") == 1).then_some(()) },
    )
    .await;
    // The database refuses to cancel the victim (an error of the statement, not a refusal
    // the library could answer with).
    let admin = db.connect().await;
    admin
        .batch_execute(
            "CREATE FUNCTION refuse_victim_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'the test refuses to cancel the victim'; END $$;
             CREATE TRIGGER refuse_victim_cancel BEFORE UPDATE ON dbos.workflow_status FOR EACH ROW
               WHEN (OLD.workflow_uuid = 'victim' AND NEW.status = 'CANCELLED')
               EXECUTE FUNCTION refuse_victim_cancel();",
        )
        .await
        .unwrap();
    canceller("victim".into())
        .id("canceller")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    dbos_testkit::crash::eventually(
        "the canceller's execution to stop",
        std::time::Duration::from_secs(60),
        || async { (dbos.running_workflows() == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        db.status_of("canceller").await.as_deref(),
        Some("PENDING"),
        "a failed write leaves its workflow to be recovered"
    );
    assert_eq!(
        db.steps_of("canceller").await,
        vec![],
        "a failed write records nothing"
    );
    admin
        .batch_execute("DROP TRIGGER refuse_victim_cancel ON dbos.workflow_status")
        .await
        .unwrap();
    dbos.resume_workflow("canceller").await.unwrap();
    let resumed = dbos.retrieve_workflow::<String, Error>("canceller");
    let answer = tokio::time::timeout(std::time::Duration::from_secs(60), resumed.result())
        .await
        .expect("the resumed canceller finishes")
        .expect("the resumed canceller makes its cancel");
    assert_eq!(answer, "cancelled");
    assert_eq!(db.status_of("victim").await.as_deref(), Some("CANCELLED"));
    let ops = db.steps_of("canceller").await;
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0].function_name, "DBOS.cancelWorkflow");
    bump("victim/released");
    assert!(victim.result().await.is_err(), "the victim was cancelled");
    dbos.shutdown().await.unwrap();
}
