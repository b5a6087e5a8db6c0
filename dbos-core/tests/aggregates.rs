//! Aggregates: workflow counts grouped by status / name / queue / executor / version / time
//! bucket with the listing's filters, and step counts, errors and durations per function
//! (DBOS's `get_workflow_aggregates` / `get_step_aggregates`), on a runtime and a client;
//! bad groupings refused before anything runs.

use std::collections::BTreeMap;
use std::time::Duration;

use dbos_core::manage::{
    GroupBy, ListWorkflows, StepAggregates, StepGroupBy, WorkflowAggregate, WorkflowAggregates,
    TIME_BUCKET,
};
use dbos_core::{step, workflow, Client, Dbos, Error, ErrorKind, Queue, Status};
use dbos_testkit::crash::run_then_kill;
use dbos_testkit::runs::{bump, runs};
use dbos_testkit::TestDatabase;
use serde_json::{json, Value};

#[step]
async fn nap(ms: u64) -> Result<u64, Error> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

#[step]
async fn refuse(code: i32) -> Result<(), Error> {
    Err(Error::new(
        ErrorKind::WorkflowFailed,
        format!("refused {code}"),
    ))
}

#[workflow]
async fn agg_ok(ms: u64) -> Result<u64, Error> {
    Ok(nap(ms).await? + nap(ms * 2).await?)
}

#[workflow]
async fn agg_fails(code: i32) -> Result<(), Error> {
    let _ = refuse(code).await;
    Err(Error::new(
        ErrorKind::WorkflowFailed,
        format!("failed {code}"),
    ))
}

/// Nobody serves it: what is enqueued stays `ENQUEUED`.
static AGG_PARKED: Queue = Queue::new("agg-parked");

/// `group` as a compact map for comparisons.
fn counts(rows: &[WorkflowAggregate]) -> BTreeMap<String, u64> {
    rows.iter()
        .map(|r| (Value::from_iter(r.group.clone()).to_string(), r.count))
        .collect()
}

fn key(pairs: Value) -> String {
    pairs.to_string()
}

#[dbos_testkit::test]
async fn workflow_counts_group_by_each_column_and_bucket(db: TestDatabase) {
    let dbos = db.launch().await;
    for i in 0..3 {
        agg_ok(1).id(format!("agg-ok-{i}")).on(&dbos).await.unwrap();
    }
    for i in 0..2 {
        agg_fails(i)
            .id(format!("agg-bad-{i}"))
            .on(&dbos)
            .await
            .unwrap_err();
    }
    for i in 0..2 {
        agg_ok(1)
            .id(format!("agg-q-{i}"))
            .on(&dbos)
            .enqueue(&AGG_PARKED)
            .await
            .unwrap();
    }
    let sql = db.connect().await;
    // Another application's workflows, at known creation times (two one-minute buckets),
    // with their own executor and version: outside the runtime's default scope.
    sql.batch_execute(
        "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, executor_id, application_version,
                                           application_name, created_at, queue_name)
         VALUES ('other-1', 'SUCCESS', 'theirs', 'exec-x', 'v9', 'otherapp', 1700000040000, NULL),
                ('other-2', 'SUCCESS', 'theirs', 'exec-x', 'v9', 'otherapp', 1700000100000, NULL),
                ('other-3', 'ERROR',   'theirs', 'exec-y', 'v9', 'otherapp', 1700000160001, 'their-q');",
    )
    .await
    .unwrap();

    // By status: this application's workflows only.
    let by_status = dbos
        .workflow_aggregates(
            &WorkflowAggregates::new(ListWorkflows::new()).group_by(GroupBy::Status),
        )
        .await
        .unwrap();
    assert_eq!(
        counts(&by_status),
        BTreeMap::from([
            (key(json!({"status": "ENQUEUED"})), 2),
            (key(json!({"status": "ERROR"})), 2),
            (key(json!({"status": "SUCCESS"})), 3),
        ])
    );

    // By status and queue together: each combination its own group, null for no queue.
    let by_two = dbos
        .workflow_aggregates(
            &WorkflowAggregates::new(ListWorkflows::new())
                .group_by(GroupBy::Status)
                .group_by(GroupBy::QueueName),
        )
        .await
        .unwrap();
    assert_eq!(
        counts(&by_two),
        BTreeMap::from([
            (
                key(json!({"queue_name": "agg-parked", "status": "ENQUEUED"})),
                2
            ),
            (key(json!({"queue_name": null, "status": "ERROR"})), 2),
            (key(json!({"queue_name": null, "status": "SUCCESS"})), 3),
        ])
    );

    // By name, with a listing filter (only errors and successes).
    let by_name = dbos
        .workflow_aggregates(
            &WorkflowAggregates::new(
                ListWorkflows::new()
                    .status(Status::Error)
                    .status(Status::Success),
            )
            .group_by(GroupBy::Name),
        )
        .await
        .unwrap();
    assert_eq!(
        counts(&by_name),
        BTreeMap::from([
            (key(json!({"name": "agg_fails"})), 2),
            (key(json!({"name": "agg_ok"})), 3),
        ])
    );

    // Every grouping agrees with counting the listing by hand.
    let listed = dbos.list_workflows(&ListWorkflows::new()).await.unwrap();
    for g in [
        GroupBy::Status,
        GroupBy::Name,
        GroupBy::QueueName,
        GroupBy::ExecutorId,
        GroupBy::ApplicationVersion,
    ] {
        let mut by_hand: BTreeMap<String, u64> = BTreeMap::new();
        for w in &listed {
            let v = match g {
                GroupBy::Status => Some(w.status.as_str().to_owned()),
                GroupBy::Name => Some(w.name.clone()),
                GroupBy::QueueName => w.queue_name.clone(),
                GroupBy::ExecutorId => w.executor_id.clone(),
                GroupBy::ApplicationVersion => w.app_version.clone(),
            };
            *by_hand.entry(key(json!({g.key(): v}))).or_default() += 1;
        }
        let rows = dbos
            .workflow_aggregates(&WorkflowAggregates::new(ListWorkflows::new()).group_by(g))
            .await
            .unwrap();
        assert_eq!(counts(&rows), by_hand, "grouped by {}", g.key());
    }

    // Time buckets of one minute over the other application's rows, from a client, with
    // executor: created_at truncated to the bucket's start.
    let client = Client::connect(db.url()).await.unwrap();
    let buckets = client
        .workflow_aggregates(
            &WorkflowAggregates::new(ListWorkflows::new().application_name("otherapp"))
                .group_by(GroupBy::ExecutorId)
                .time_bucket(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let theirs: Vec<(Value, u64)> = buckets
        .iter()
        .filter(|r| {
            r.group["executor_id"]
                .as_str()
                .is_some_and(|e| e.starts_with("exec-"))
        })
        .map(|r| (Value::from_iter(r.group.clone()), r.count))
        .collect();
    assert_eq!(
        theirs,
        vec![
            (
                json!({"executor_id": "exec-x", TIME_BUCKET: 1_700_000_040_000_i64}),
                1
            ),
            (
                json!({"executor_id": "exec-x", TIME_BUCKET: 1_700_000_100_000_i64}),
                1
            ),
            (
                json!({"executor_id": "exec-y", TIME_BUCKET: 1_700_000_160_000_i64}),
                1
            ),
        ],
        "{buckets:?}"
    );
    // A bucket alone, two minutes wide: the first two rows share one.
    let only_buckets = client
        .workflow_aggregates(
            &WorkflowAggregates::new(ListWorkflows::new().name("theirs"))
                .time_bucket(Duration::from_secs(120)),
        )
        .await
        .unwrap();
    assert_eq!(
        counts(&only_buckets),
        BTreeMap::from([
            (key(json!({TIME_BUCKET: 1_700_000_040_000_i64})), 2),
            (key(json!({TIME_BUCKET: 1_700_000_160_000_i64})), 1),
        ])
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn step_counts_errors_and_durations_per_function(db: TestDatabase) {
    let dbos = db.launch().await;
    let mut ids = Vec::new();
    for (i, ms) in [20_u64, 40, 60].into_iter().enumerate() {
        let id = format!("agg-steps-{i}");
        agg_ok(ms).id(id.clone()).on(&dbos).await.unwrap();
        ids.push(id);
    }
    for i in 0..2 {
        let id = format!("agg-steps-bad-{i}");
        agg_fails(i).id(id.clone()).on(&dbos).await.unwrap_err();
        ids.push(id);
    }
    // The durations by hand, from the listed steps.
    let mut by_hand: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for id in &ids {
        for s in dbos.list_workflow_steps(id).await.unwrap() {
            let d = s.completed_at_epoch_ms.unwrap() - s.started_at_epoch_ms.unwrap();
            by_hand.entry(s.function_name).or_default().push(d);
        }
    }
    let rows = dbos
        .step_aggregates(&StepAggregates::new().group_by(StepGroupBy::FunctionName))
        .await
        .unwrap();
    let by_name: BTreeMap<String, _> = rows
        .iter()
        .map(|r| (r.group["function_name"].as_str().unwrap().to_owned(), r))
        .collect();
    assert_eq!(
        by_name.keys().collect::<Vec<_>>(),
        by_hand.keys().collect::<Vec<_>>()
    );
    for (name, durations) in &by_hand {
        let r = by_name[name];
        assert_eq!(r.count, durations.len() as u64, "{name}");
        assert_eq!(r.min_duration_ms, durations.iter().min().copied(), "{name}");
        assert_eq!(r.max_duration_ms, durations.iter().max().copied(), "{name}");
        let avg = durations.iter().sum::<i64>() as f64 / durations.len() as f64;
        assert!(
            (r.avg_duration_ms.unwrap() - avg).abs() < 1e-6,
            "{name}: {r:?} vs {avg}"
        );
    }
    // The naps: six of them (20/40, 40/80, 60/120 ms), none failed, each at least as long
    // as it slept.
    let nap = by_name
        .values()
        .find(|r| r.group["function_name"].as_str().unwrap().ends_with("nap"))
        .unwrap();
    assert_eq!((nap.count, nap.errors), (6, 0));
    assert!(nap.min_duration_ms.unwrap() >= 20, "{nap:?}");
    assert!(nap.max_duration_ms.unwrap() >= 120, "{nap:?}");
    let refused = by_name
        .values()
        .find(|r| {
            r.group["function_name"]
                .as_str()
                .unwrap()
                .ends_with("refuse")
        })
        .unwrap();
    assert_eq!((refused.count, refused.errors), (2, 2));

    // By outcome, filtered to the failing function, from a client.
    let client = Client::connect(db.url()).await.unwrap();
    let refuse_name = refused.group["function_name"].as_str().unwrap().to_owned();
    let outcomes = client
        .step_aggregates(
            &StepAggregates::new()
                .group_by(StepGroupBy::Status)
                .function_name(refuse_name)
                .workflow_id_prefix("agg-steps-"),
        )
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].group["status"], json!("ERROR"));
    assert_eq!(outcomes[0].count, 2);
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn asks_badly(which: u32) -> Result<(), Error> {
    let dbos = Dbos::current()?;
    let e = match which {
        0 => dbos
            .workflow_aggregates(&WorkflowAggregates::new(ListWorkflows::new()))
            .await
            .unwrap_err(),
        1 => dbos
            .workflow_aggregates(
                &WorkflowAggregates::new(ListWorkflows::new()).time_bucket(Duration::ZERO),
            )
            .await
            .unwrap_err(),
        _ => dbos
            .step_aggregates(&StepAggregates::new().time_bucket(Duration::from_micros(10)))
            .await
            .unwrap_err(),
    };
    Err(e)
}

#[dbos_testkit::test]
async fn bad_groupings_are_refused_before_anything_runs(db: TestDatabase) {
    let dbos = db.launch().await;
    // Unknown grouping names (as the CLI parses them).
    for bad in ["state", "", "function_name"] {
        let e = bad.parse::<GroupBy>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.message().contains("queue_name"), "{e}");
    }
    assert_eq!("queue_name".parse::<GroupBy>().unwrap(), GroupBy::QueueName);
    let e = "name".parse::<StepGroupBy>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

    let refused = |e: Error, words: &str| {
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.message().contains(words), "{e}");
    };
    let all = ListWorkflows::new();
    refused(
        dbos.workflow_aggregates(&WorkflowAggregates::new(all.clone()))
            .await
            .unwrap_err(),
        "group by",
    );
    refused(
        dbos.workflow_aggregates(
            &WorkflowAggregates::new(all.clone())
                .group_by(GroupBy::Name)
                .time_bucket(Duration::ZERO),
        )
        .await
        .unwrap_err(),
        "1 ms",
    );
    refused(
        dbos.workflow_aggregates(
            &WorkflowAggregates::new(all.clone())
                .group_by(GroupBy::Name)
                .group_by(GroupBy::Name),
        )
        .await
        .unwrap_err(),
        "twice",
    );
    refused(
        dbos.workflow_aggregates(
            &WorkflowAggregates::new(all.clone().limit(5)).group_by(GroupBy::Name),
        )
        .await
        .unwrap_err(),
        "limit",
    );
    refused(
        dbos.step_aggregates(&StepAggregates::new())
            .await
            .unwrap_err(),
        "group by",
    );
    refused(
        dbos.step_aggregates(
            &StepAggregates::new()
                .group_by(StepGroupBy::FunctionName)
                .function_name(" "),
        )
        .await
        .unwrap_err(),
        "blank",
    );

    // Inside a workflow, a refused aggregate is not run, so nothing is recorded for it.
    for which in 0..3 {
        let id = format!("asks-badly-{which}");
        let e = asks_badly(which)
            .id(id.clone())
            .on(&dbos)
            .await
            .unwrap_err();
        assert!(
            e.message().contains("group by") || e.message().contains("1 ms"),
            "{e}"
        );
        assert!(dbos.list_workflow_steps(&id).await.unwrap().is_empty());
    }
    dbos.shutdown().await.unwrap();
}

/// Hangs on its first run for `key` only (the run the executor is killed in).
#[step]
async fn hang_once(key: String) -> Result<(), Error> {
    if bump(&key) == 1 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

/// Counts `agg_ok` workflows and the steps of `agg-replay-*`, then hangs on its first run.
#[workflow]
async fn counter() -> Result<(u64, u64), Error> {
    let dbos = Dbos::current()?;
    let workflows = dbos
        .workflow_aggregates(
            &WorkflowAggregates::new(ListWorkflows::new().name("agg_ok")).group_by(GroupBy::Name),
        )
        .await?;
    let steps = dbos
        .step_aggregates(
            &StepAggregates::new()
                .group_by(StepGroupBy::FunctionName)
                .workflow_id_prefix("agg-replay-"),
        )
        .await?;
    hang_once("agg-counter".into()).await?;
    Ok((
        workflows.iter().map(|r| r.count).sum(),
        steps.iter().map(|r| r.count).sum(),
    ))
}

#[dbos_testkit::test]
async fn aggregates_inside_a_workflow_are_recorded_and_replayed(db: TestDatabase) {
    let config = || db.config("testapp").executor_id("agg-replay");
    let dbos = Dbos::launch(config()).await.unwrap();
    agg_ok(1).id("agg-replay-1").on(&dbos).await.unwrap();
    dbos.shutdown().await.unwrap();

    run_then_kill(
        config(),
        |dbos| async move {
            counter().id("agg-counter").on(&dbos).start().await.unwrap();
        },
        "the counter to reach its hanging step",
        || runs("agg-counter") == 1,
    )
    .await;

    // Behind its back, before it is recovered: two more workflows, four more steps.
    db.connect()
        .await
        .batch_execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, application_name)
             VALUES ('agg-replay-2', 'SUCCESS', 'agg_ok', 'testapp'),
                    ('agg-replay-3', 'SUCCESS', 'agg_ok', 'testapp');
             INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output)
             SELECT w, f, 'nap', '1' FROM unnest(ARRAY['agg-replay-2', 'agg-replay-3']) AS w,
                                          generate_series(1, 2) AS f;",
        )
        .await
        .unwrap();
    let dbos = Dbos::launch(config()).await.unwrap();
    let counted = dbos
        .retrieve_workflow::<(u64, u64), Error>("agg-counter")
        .result()
        .await
        .unwrap();
    assert_eq!(runs("agg-counter"), 2, "the counter was recovered");
    assert_eq!(counted, (1, 2), "the recorded counts, not today's (3, 6)");
    let names: Vec<String> = dbos
        .list_workflow_steps("agg-counter")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.function_name)
        .collect();
    assert_eq!(
        names[..2],
        ["DBOS.getWorkflowAggregates", "DBOS.getStepAggregates"]
    );
    dbos.shutdown().await.unwrap();
}
