//! Options no executor could honour are refused before anything is written: a fork, rewind
//! or resume onto a queue whose partitioning does not match the partition key given (the
//! internal queue is not partitioned), from a runtime and from a client (which reads the
//! queue's recorded definition). And what these operations put on a queue runs. Work put on
//! a queue nobody registered is warned of at once and listed as unrunnable.

use std::time::Duration;

use dbos_core::manage::{ForkOptions, Resumed, RewindOptions};
use dbos_core::queue::Unrunnable;
use dbos_core::{workflow, Client, Dbos, Error, ErrorKind, Queue};
use dbos_testkit::logs::CapturedLogs;
use dbos_testkit::TestDatabase;

#[workflow]
async fn plus_one(x: u32) -> Result<u32, Error> {
    Ok(x + 1)
}

static PLAIN: Queue = Queue::new("opts_plain");
static PARTS: Queue = Queue::new("opts_parts").partition_concurrency(1);

async fn launch(db: &TestDatabase) -> Dbos {
    Dbos::launch(db.config("testapp").queue(&PLAIN).queue(&PARTS))
        .await
        .unwrap()
}

async fn rows(db: &TestDatabase) -> i64 {
    db.connect()
        .await
        .query_one("SELECT count(*) FROM dbos.workflow_status", &[])
        .await
        .unwrap()
        .get(0)
}

async fn row(db: &TestDatabase, id: &str) -> (String, Option<String>, Option<String>) {
    let r = db
        .connect()
        .await
        .query_one(
            "SELECT status, queue_name, queue_partition_key FROM dbos.workflow_status WHERE workflow_uuid = $1",
            &[&id],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

fn invalid(e: Error, says: &str) {
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e:?}");
    assert!(e.to_string().contains(says), "`{e}` should say `{says}`");
}

/// Waits (generously) for a workflow's result: a workflow nobody can dequeue fails here.
async fn result_of(dbos: &Dbos, id: &str) -> u32 {
    let handle = dbos.retrieve_workflow::<u32, Error>(id);
    tokio::time::timeout(Duration::from_secs(60), handle.result())
        .await
        .unwrap_or_else(|_| panic!("workflow `{id}` never ran"))
        .unwrap()
}

#[dbos_testkit::test]
async fn forks_and_rewinds_no_queue_could_run_are_refused(db: TestDatabase) {
    let dbos = launch(&db).await;
    let client = Client::connect(db.url()).await.unwrap();
    plus_one(1).id("orig").on(&dbos).await.unwrap();
    let before = rows(&db).await;

    let forks = [
        (ForkOptions::new().partition_key("eu"), "internal queue"),
        (
            ForkOptions::new()
                .queue("_dbos_internal_queue")
                .partition_key("eu"),
            "internal queue",
        ),
        (ForkOptions::new().queue("opts_parts"), "partition_key"),
        (
            ForkOptions::new().queue("opts_plain").partition_key("eu"),
            "not partitioned",
        ),
    ];
    for (options, says) in &forks {
        invalid(
            dbos.fork_workflow("orig", 1, options).await.unwrap_err(),
            says,
        );
        // A client knows the queues from their recorded definitions.
        invalid(
            client.fork_workflow("orig", 1, options).await.unwrap_err(),
            says,
        );
    }
    let rewinds = [
        (RewindOptions::new().partition_key("eu"), "internal queue"),
        (RewindOptions::new().queue("opts_parts"), "partition_key"),
        (
            RewindOptions::new().queue("opts_plain").partition_key("eu"),
            "not partitioned",
        ),
    ];
    for (options, says) in &rewinds {
        invalid(
            dbos.rewind_workflow("orig", 1, options).await.unwrap_err(),
            says,
        );
        invalid(
            client
                .rewind_workflow("orig", 1, options)
                .await
                .unwrap_err(),
            says,
        );
    }
    assert_eq!(rows(&db).await, before, "no fork was written");
    assert_eq!(row(&db, "orig").await.0, "SUCCESS", "nothing was rewound");

    // The matching options are accepted, and what they enqueue runs.
    dbos.fork_workflow(
        "orig",
        1,
        &ForkOptions::new()
            .workflow_id("fork-eu")
            .queue("opts_parts")
            .partition_key("eu"),
    )
    .await
    .unwrap();
    assert_eq!(result_of(&dbos, "fork-eu").await, 2);
    client
        .fork_workflow(
            "orig",
            1,
            &ForkOptions::new()
                .workflow_id("fork-plain")
                .queue("opts_plain"),
        )
        .await
        .unwrap();
    assert_eq!(result_of(&dbos, "fork-plain").await, 2);
    dbos.rewind_workflow(
        "orig",
        1,
        &RewindOptions::new().queue("opts_parts").partition_key("us"),
    )
    .await
    .unwrap();
    assert_eq!(result_of(&dbos, "orig").await, 2);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_resumed_workflow_runs_wherever_it_is_resumed(db: TestDatabase) {
    let dbos = launch(&db).await;
    let client = Client::connect(db.url()).await.unwrap();
    // Workflows cancelled before they ran, one with a partition key.
    let hold = Duration::from_secs(3600);
    for (id, x) in [("held-eu", 1), ("held-eu-2", 2), ("held-eu-3", 3)] {
        plus_one(x)
            .id(id)
            .on(&dbos)
            .enqueue(&PARTS)
            .partition_key("eu")
            .delay(hold)
            .await
            .unwrap();
    }
    plus_one(10)
        .id("held-plain")
        .on(&dbos)
        .enqueue(&PLAIN)
        .delay(hold)
        .await
        .unwrap();
    dbos.cancel_workflows(&["held-eu", "held-eu-2", "held-eu-3", "held-plain"])
        .await
        .unwrap();

    // Onto a partitioned queue, a workflow without a partition key would never be
    // dequeued: refused, nothing changed.
    for e in [
        dbos.resume_workflow_on_queue("held-plain", "opts_parts")
            .await
            .unwrap_err(),
        client
            .resume_workflow_on_queue("held-plain", "opts_parts")
            .await
            .unwrap_err(),
    ] {
        invalid(e, "partition key");
    }
    assert_eq!(row(&db, "held-plain").await.0, "CANCELLED");

    // The internal queue (not partitioned) runs a workflow that had a partition.
    assert!(matches!(
        dbos.resume_workflow("held-eu").await.unwrap(),
        Resumed::Enqueued { .. }
    ));
    assert_eq!(result_of(&dbos, "held-eu").await, 2);
    // So does a plain queue.
    client
        .resume_workflow_on_queue("held-eu-2", "opts_plain")
        .await
        .unwrap();
    assert_eq!(result_of(&dbos, "held-eu-2").await, 3);
    // Back onto its partitioned queue it keeps its partition.
    dbos.resume_workflow_on_queue("held-eu-3", "opts_parts")
        .await
        .unwrap();
    assert_eq!(result_of(&dbos, "held-eu-3").await, 4);
    assert_eq!(
        row(&db, "held-eu-3").await,
        (
            "SUCCESS".to_owned(),
            Some("opts_parts".to_owned()),
            Some("eu".to_owned())
        )
    );
    // And the plain one resumes onto a plain queue.
    dbos.resume_workflow_on_queue("held-plain", "opts_plain")
        .await
        .unwrap();
    assert_eq!(result_of(&dbos, "held-plain").await, 11);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn timeouts_and_delays_beyond_a_century_mean_never(db: TestDatabase) {
    let dbos = launch(&db).await;
    let client = Client::connect(db.url()).await.unwrap();
    // Each would overflow a cast or a sum: a negative timeout cancelled the workflow at
    // once, a fork's timeout overflowed the dequeue's `now + timeout` (and stopped the
    // internal queue), a delay ended before it began.
    plus_one(1)
        .id("start-max")
        .timeout(Duration::MAX)
        .on(&dbos)
        .start()
        .await
        .unwrap();
    assert_eq!(result_of(&dbos, "start-max").await, 2);
    plus_one(2)
        .id("enqueue-max")
        .timeout(Duration::MAX)
        .on(&dbos)
        .enqueue(&PLAIN)
        .await
        .unwrap();
    assert_eq!(result_of(&dbos, "enqueue-max").await, 3);
    client
        .enqueue("plus_one", "opts_plain")
        .arg(&3)
        .id("client-max")
        .timeout(Duration::MAX)
        .await
        .unwrap();
    assert_eq!(result_of(&dbos, "client-max").await, 4);
    dbos.fork_workflow(
        "start-max",
        1,
        &ForkOptions::new()
            .workflow_id("fork-max")
            .timeout(Duration::MAX),
    )
    .await
    .unwrap();
    assert_eq!(result_of(&dbos, "fork-max").await, 2);

    for (id, queued) in [
        (
            "delay-max",
            plus_one(4)
                .id("delay-max")
                .on(&dbos)
                .enqueue(&PLAIN)
                .delay(Duration::MAX)
                .await
                .map(drop),
        ),
        (
            "client-delay-max",
            client
                .enqueue("plus_one", "opts_plain")
                .arg(&5)
                .id("client-delay-max")
                .delay(Duration::MAX)
                .await
                .map(drop),
        ),
    ] {
        queued.unwrap();
        let r = db
            .connect()
            .await
            .query_one(
                "SELECT status, delay_until_epoch_ms - (EXTRACT(epoch FROM now()) * 1000)::bigint
                   FROM dbos.workflow_status WHERE workflow_uuid = $1",
                &[&id],
            )
            .await
            .unwrap();
        let (status, wait): (String, i64) = (r.get(0), r.get(1));
        assert_eq!(status, "DELAYED", "{id}");
        let years = wait / (365 * 24 * 3600 * 1000);
        assert!((99..=100).contains(&years), "{id} waits {years} years");
    }
    // Workflows deadlines are in range: the timeout sweep and listings read them.
    let far: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT max(workflow_timeout_ms) FROM dbos.workflow_status",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(far, 100 * 365 * 24 * 3600 * 1000, "clamped to 100 years");
    dbos.shutdown().await.unwrap();
}

/// The WARN lines captured in `logs` that name `queue` as not registered, taken out of the
/// capture.
fn warnings_about(logs: &CapturedLogs, queue: &str) -> Vec<String> {
    let warned = format!("queue `{queue}` is not registered");
    logs.take()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(&warned))
        .map(str::to_owned)
        .collect()
}

/// Declared in code, but in no executor's `Config`.
static NOWHERE: Queue = Queue::new("opts_nowhere");

#[dbos_testkit::test]
async fn work_on_a_queue_nobody_registered_is_warned_of_and_listed(db: TestDatabase) {
    use std::future::IntoFuture;
    use tracing::instrument::WithSubscriber;
    let dbos = launch(&db).await;
    let client = Client::connect(db.url()).await.unwrap();
    let logs = CapturedLogs::default();
    // A queue another executor registered has a row in `dbos.queues`.
    db.connect()
        .await
        .batch_execute("INSERT INTO dbos.queues (name) VALUES ('opts_elsewhere')")
        .await
        .unwrap();

    plus_one(1)
        .id("lost-call")
        .on(&dbos)
        .enqueue(&NOWHERE)
        .into_future()
        .with_subscriber(logs.subscriber("warn"))
        .await
        .unwrap();
    let warned = warnings_about(&logs, "opts_nowhere");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("lost-call"),
        "names the workflow: {}",
        warned[0]
    );
    assert!(
        warned[0].contains("Config::queue"),
        "says what to do: {}",
        warned[0]
    );
    client
        .enqueue("plus_one", "opts_typo")
        .arg(&2)
        .id("lost-client")
        .into_future()
        .with_subscriber(logs.subscriber("warn"))
        .await
        .unwrap();
    assert_eq!(warnings_about(&logs, "opts_typo").len(), 1);
    dbos.enqueue_by_name(
        "plus_one",
        "opts_typo",
        vec![serde_json::json!(3)],
        Some("lost-by-name".into()),
    )
    .into_future()
    .with_subscriber(logs.subscriber("warn"))
    .await
    .unwrap();
    assert_eq!(warnings_about(&logs, "opts_typo").len(), 1);
    dbos.fork_workflow(
        "lost-call",
        1,
        &ForkOptions::new()
            .workflow_id("lost-fork")
            .queue("opts_typo"),
    )
    .with_subscriber(logs.subscriber("warn"))
    .await
    .unwrap();
    assert_eq!(warnings_about(&logs, "opts_typo").len(), 1);

    // Registered queues, here or elsewhere, draw no warning.
    plus_one(4)
        .id("served")
        .on(&dbos)
        .enqueue(&PLAIN)
        .into_future()
        .with_subscriber(logs.subscriber("warn"))
        .await
        .unwrap();
    client
        .enqueue("plus_one", "opts_elsewhere")
        .arg(&5)
        .id("elsewhere")
        .into_future()
        .with_subscriber(logs.subscriber("warn"))
        .await
        .unwrap();
    let text = logs.text();
    assert!(!text.contains("is not registered"), "{text}");

    tokio::time::sleep(Duration::from_millis(20)).await;
    let unrunnable: Vec<(String, Unrunnable)> = dbos
        .list_unrunnable_workflows(Duration::ZERO)
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.workflow.workflow_id, u.reason))
        .collect();
    assert_eq!(
        unrunnable,
        vec![
            ("lost-call".to_owned(), Unrunnable::QueueNotRegistered),
            ("lost-client".to_owned(), Unrunnable::QueueNotRegistered),
            ("lost-by-name".to_owned(), Unrunnable::QueueNotRegistered),
            ("lost-fork".to_owned(), Unrunnable::QueueNotRegistered),
        ],
        "not the work on registered queues"
    );
    assert!(dbos
        .list_unrunnable_workflows(Duration::from_secs(3600))
        .await
        .unwrap()
        .is_empty());
    dbos.shutdown().await.unwrap();
}
