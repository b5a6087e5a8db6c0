//! Durable workflows and steps against a real Postgres: checkpoints, replay, typed errors,
//! retries, children, sleeps, timeouts, idempotency, recovery edge cases.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use dbos_core::prelude::*;
use dbos_core::queue::Unrunnable;
use dbos_testkit::crash::eventually;
use dbos_testkit::TestDatabase;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How many times each (key, step) ran, across every runtime in this process.
static RUNS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn bump(key: &str, step: &str) -> u32 {
    let mut runs = RUNS.lock().unwrap();
    let n = runs
        .get_or_insert_with(HashMap::new)
        .entry(format!("{key}/{step}"))
        .or_default();
    *n += 1;
    *n
}

fn runs(key: &str, step: &str) -> u32 {
    RUNS.lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(&format!("{key}/{step}")).copied())
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
enum ShopError {
    #[error("card declined with code {code}")]
    Declined { code: u32 },
    #[error("flaky failure")]
    Flaky,
    #[error("{0}")]
    Durability(String),
}

impl From<dbos_core::Error> for ShopError {
    fn from(e: dbos_core::Error) -> Self {
        ShopError::Durability(e.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: String,
    cents: i64,
}

#[step]
async fn reserve(key: String, order: Order) -> Result<String, ShopError> {
    bump(&key, "reserve");
    Ok(format!("reserved {}", order.id))
}

#[step(name = "charge_card")]
async fn charge(key: String, cents: i64) -> Result<i64, ShopError> {
    bump(&key, "charge");
    if cents < 0 {
        return Err(ShopError::Declined { code: 51 });
    }
    Ok(cents * 2)
}

#[step]
async fn notify(key: String) -> Result<(), ShopError> {
    bump(&key, "notify");
    Ok(())
}

#[workflow]
async fn checkout(key: String, order: Order) -> Result<(String, i64), ShopError> {
    let r = reserve(key.clone(), order.clone()).await?;
    let paid = charge(key.clone(), order.cents).await?;
    notify(key).await?;
    Ok((r, paid))
}

async fn rows(db: &TestDatabase, sql: &str, id: &str) -> Vec<tokio_postgres::Row> {
    db.connect().await.query(sql, &[&id]).await.unwrap()
}

#[dbos_testkit::test]
async fn steps_are_checkpointed_once_and_a_second_call_replays(db: TestDatabase) {
    let dbos = db.launch().await;
    let order = Order {
        id: "o-1".into(),
        cents: 21,
    };
    let out = checkout("ck".into(), order.clone())
        .id("wf-ck")
        .on(&dbos)
        .await
        .unwrap();
    assert_eq!(out, ("reserved o-1".to_owned(), 42));

    let status = rows(&db, "SELECT status, name, serialization, executor_id, recovery_attempts, application_version FROM dbos.workflow_status WHERE workflow_uuid = $1", "wf-ck").await;
    assert_eq!(status[0].get::<_, String>(0), "SUCCESS");
    assert_eq!(status[0].get::<_, String>(1), "checkout");
    assert_eq!(status[0].get::<_, String>(2), "portable_json");
    assert_eq!(status[0].get::<_, String>(3), dbos.executor_id());
    assert_eq!(status[0].get::<_, i64>(4), 1);
    assert_eq!(status[0].get::<_, String>(5), dbos.application_version());
    let input = rows(
        &db,
        "SELECT inputs FROM dbos.workflow_input WHERE workflow_uuid = $1",
        "wf-ck",
    )
    .await;
    let input: serde_json::Value = serde_json::from_str(&input[0].get::<_, String>(0)).unwrap();
    assert_eq!(
        input,
        json!({"positionalArgs": ["ck", {"id": "o-1", "cents": 21}], "namedArgs": {}})
    );
    let output = rows(
        &db,
        "SELECT output, error FROM dbos.workflow_output WHERE workflow_uuid = $1",
        "wf-ck",
    )
    .await;
    assert_eq!(output[0].get::<_, String>(0), r#"["reserved o-1",42]"#);
    assert_eq!(output[0].get::<_, Option<String>>(1), None);

    let steps: Vec<(i32, String, Option<String>)> = db
        .steps_of("wf-ck")
        .await
        .into_iter()
        .map(|s| (s.function_id, s.function_name, s.output))
        .collect();
    assert_eq!(
        steps,
        vec![
            (
                1,
                "reserve".to_owned(),
                Some(r#""reserved o-1""#.to_owned())
            ),
            (2, "charge_card".to_owned(), Some("42".to_owned())),
            (3, "notify".to_owned(), Some("null".to_owned())),
        ]
    );

    // The same id again: the recorded outcome, no step runs again.
    let again = checkout("ck".into(), order)
        .id("wf-ck")
        .on(&dbos)
        .await
        .unwrap();
    assert_eq!(again, out);
    assert_eq!(
        (
            runs("ck", "reserve"),
            runs("ck", "charge"),
            runs("ck", "notify")
        ),
        (1, 1, 1)
    );
}

#[dbos_testkit::test]
async fn a_step_error_is_recorded_and_returns_as_the_same_typed_value(db: TestDatabase) {
    let dbos = db.launch().await;
    let order = Order {
        id: "o-2".into(),
        cents: -5,
    };
    let err = checkout("declined".into(), order.clone())
        .id("wf-declined")
        .on(&dbos)
        .await
        .unwrap_err();
    assert_eq!(err, ShopError::Declined { code: 51 });

    let step = db.step_of("wf-declined", 2).await;
    let recorded: serde_json::Value = serde_json::from_str(&step.error.unwrap()).unwrap();
    assert_eq!(
        recorded,
        json!({"name": "ShopError", "message": "card declined with code 51", "code": null, "data": {"Declined": {"code": 51}}})
    );
    let wf = rows(&db, "SELECT s.status, o.error FROM dbos.workflow_status s JOIN dbos.workflow_output o USING (workflow_uuid) WHERE workflow_uuid = $1", "wf-declined").await;
    assert_eq!(wf[0].get::<_, String>(0), "ERROR");
    assert!(wf[0].get::<_, String>(1).contains("card declined"));

    // Awaited again, through the database this time: the same typed value.
    let handle = dbos.retrieve_workflow::<(String, i64), ShopError>("wf-declined");
    assert_eq!(
        handle.result().await.unwrap_err(),
        ShopError::Declined { code: 51 }
    );
    assert_eq!(handle.status().await.unwrap(), Status::Error);
    assert_eq!(runs("declined", "charge"), 1);
    assert_eq!(runs("declined", "notify"), 0);
}

/// When each attempt of a retried step started, per key.
static ATTEMPTS: Mutex<Option<HashMap<String, Vec<std::time::Instant>>>> = Mutex::new(None);

fn attempt(key: &str) {
    ATTEMPTS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(key.to_owned())
        .or_default()
        .push(std::time::Instant::now());
}

/// The waits between the attempts recorded for `key`.
fn gaps(key: &str) -> Vec<Duration> {
    let attempts = ATTEMPTS.lock().unwrap();
    let at = attempts
        .as_ref()
        .and_then(|m| m.get(key))
        .cloned()
        .unwrap_or_default();
    at.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Waits 100 ms, then 300 ms, then 500 ms (900 ms capped by `max_interval`).
#[step(
    max_attempts = 4,
    interval = "100ms",
    backoff = 3.0,
    max_interval = "500ms"
)]
async fn flaky(key: String, failures: u32) -> Result<u32, ShopError> {
    attempt(&key);
    let n = bump(&key, "flaky");
    if n <= failures {
        return Err(ShopError::Flaky);
    }
    Ok(n)
}

fn only_flaky(e: &ShopError) -> bool {
    matches!(e, ShopError::Flaky)
}

#[step(max_attempts = 5, interval = "10ms", retry_if = only_flaky)]
async fn declines(key: String) -> Result<u32, ShopError> {
    bump(&key, "declines");
    Err(ShopError::Declined { code: 5 })
}

#[workflow]
async fn retrying(key: String, failures: u32) -> Result<u32, ShopError> {
    flaky(key, failures).await
}

#[workflow]
async fn not_retrying(key: String) -> Result<u32, ShopError> {
    declines(key).await
}

/// The checkpoints of a workflow: (function id, name, output, error, serialization).
async fn checkpoints(
    db: &TestDatabase,
    id: &str,
) -> Vec<(i32, String, Option<String>, Option<String>, Option<String>)> {
    db.steps_of(id)
        .await
        .into_iter()
        .map(|s| {
            (
                s.function_id,
                s.function_name,
                s.output,
                s.error,
                s.serialization,
            )
        })
        .collect()
}

#[dbos_testkit::test]
async fn steps_retry_with_backoff_and_record_only_the_final_result(db: TestDatabase) {
    let dbos = db.launch().await;
    assert_eq!(
        retrying("r1".into(), 2)
            .id("wf-r1")
            .on(&dbos)
            .await
            .unwrap(),
        3
    );
    assert_eq!(runs("r1", "flaky"), 3);
    assert_eq!(
        checkpoints(&db, "wf-r1").await,
        vec![(
            1,
            "flaky".into(),
            Some("3".into()),
            None,
            Some("portable_json".into())
        )],
        "one checkpoint, the successful attempt's"
    );

    // Past max_attempts, the last error is recorded.
    assert_eq!(
        retrying("r2".into(), 10)
            .id("wf-r2")
            .on(&dbos)
            .await
            .unwrap_err(),
        ShopError::Flaky
    );
    assert_eq!(runs("r2", "flaky"), 4);
    let recorded = checkpoints(&db, "wf-r2").await;
    assert_eq!(
        recorded.len(),
        1,
        "one checkpoint for four attempts: {recorded:?}"
    );
    let (function_id, name, output, error, serialization) = recorded[0].clone();
    assert_eq!((function_id, name.as_str()), (1, "flaky"));
    assert_eq!(output, None);
    assert_eq!(serialization.as_deref(), Some("portable_json"));
    let error: serde_json::Value =
        serde_json::from_str(&error.expect("the error column holds the last attempt's error"))
            .unwrap();
    assert_eq!(
        error,
        json!({"name": "ShopError", "message": "flaky failure", "code": null, "data": "Flaky"})
    );

    // The waits: 100 ms, then tripled, then capped at 500 ms. Each is at least its nominal
    // length (a timer never fires early) and at most 300 ms longer (a loaded machine), which
    // is less than the uncapped 900 ms.
    let waits = gaps("r2");
    assert_eq!(waits.len(), 3, "{waits:?}");
    for (wait, nominal) in waits.iter().zip([100, 300, 500].map(Duration::from_millis)) {
        assert!(
            *wait >= nominal && *wait < nominal + Duration::from_millis(300),
            "waits {waits:?}, expected 100 ms, 300 ms, 500 ms"
        );
    }

    // retry_if says no: one attempt.
    assert_eq!(
        not_retrying("r3".into()).on(&dbos).await.unwrap_err(),
        ShopError::Declined { code: 5 }
    );
    assert_eq!(runs("r3", "declines"), 1);
}

#[workflow]
async fn child_double(x: i64) -> Result<i64, dbos_core::Error> {
    Ok(x * 2)
}

#[workflow]
async fn parent(x: i64) -> Result<Vec<i64>, dbos_core::Error> {
    let a = child_double(x).await?;
    let b = child_double(a).id("explicit-child").await?;
    let background = child_double(b).start().await?;
    let c = background.await?;
    Ok(vec![a, b, c])
}

#[dbos_testkit::test]
async fn workflows_called_in_workflows_are_children(db: TestDatabase) {
    let dbos = db.launch().await;
    assert_eq!(parent(3).id("p").on(&dbos).await.unwrap(), vec![6, 12, 24]);
    let steps: Vec<(i32, String, Option<String>)> = db
        .steps_of("p")
        .await
        .into_iter()
        .map(|s| (s.function_id, s.function_name, s.child_workflow_id))
        .collect();
    // Each child: its start, then the wait for its result (`DBOS.getResult`, with the
    // child's id), as DBOS lays them out.
    assert_eq!(
        steps,
        vec![
            (1, "child_double".into(), Some("p-1".into())),
            (2, "DBOS.getResult".into(), Some("p-1".into())),
            (3, "child_double".into(), Some("explicit-child".into())),
            (4, "DBOS.getResult".into(), Some("explicit-child".into())),
            (5, "child_double".into(), Some("p-5".into())),
            (6, "DBOS.getResult".into(), Some("p-5".into())),
        ]
    );
    for child in ["p-1", "explicit-child", "p-5"] {
        let r = rows(
            &db,
            "SELECT parent_workflow_id, status FROM dbos.workflow_status WHERE workflow_uuid = $1",
            child,
        )
        .await;
        assert_eq!(r[0].get::<_, Option<String>>(0).as_deref(), Some("p"));
        assert_eq!(r[0].get::<_, String>(1), "SUCCESS");
    }
}

#[workflow]
async fn sleepy(ms: u64) -> Result<u64, dbos_core::Error> {
    dbos_core::sleep(Duration::from_millis(ms)).await?;
    Ok(ms)
}

#[dbos_testkit::test]
async fn durable_sleep_records_its_wake_up_time(db: TestDatabase) {
    let dbos = db.launch().await;
    let before = std::time::SystemTime::now();
    assert_eq!(sleepy(150).id("zz").on(&dbos).await.unwrap(), 150);
    assert!(before.elapsed().unwrap() >= Duration::from_millis(150));
    let r = db.steps_of("zz").await;
    assert_eq!(r[0].function_name, "DBOS.sleep");
    assert_eq!(r[0].serialization.as_deref(), Some("portable_json"));
    let wake: f64 = r[0].output.as_deref().unwrap().parse().unwrap();
    let start = before
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (wake - start - 0.15).abs() < 1.0,
        "wake-up {wake} vs start {start}"
    );
}

#[dbos_testkit::test]
async fn a_timeout_cancels_the_workflow(db: TestDatabase) {
    let dbos = db.launch().await;
    let e = sleepy(10_000)
        .id("slow")
        .timeout(Duration::from_millis(200))
        .on(&dbos)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    let r = rows(&db, "SELECT status, workflow_timeout_ms, workflow_deadline_epoch_ms IS NOT NULL FROM dbos.workflow_status WHERE workflow_uuid = $1", "slow").await;
    assert_eq!(r[0].get::<_, String>(0), "CANCELLED");
    assert_eq!(r[0].get::<_, Option<i64>>(1), Some(200));
    assert!(r[0].get::<_, bool>(2));
}

#[workflow]
async fn deterministic_helpers() -> Result<(String, f64, String), dbos_core::Error> {
    let now = dbos_core::now().await?;
    let r = dbos_core::random().await?;
    let u = dbos_core::uuid().await?;
    assert_eq!(dbos_core::step_id(), Some(3));
    assert!(dbos_core::workflow_id().is_some());
    Ok((dbos_core::codec::format_rfc3339(now), r, u))
}

#[dbos_testkit::test]
async fn now_random_and_uuid_are_recorded_as_steps(db: TestDatabase) {
    let dbos = db.launch().await;
    let (now, r, u) = deterministic_helpers().id("det").on(&dbos).await.unwrap();
    assert!((0.0..1.0).contains(&r));
    let recorded: Vec<(String, String)> = db
        .steps_of("det")
        .await
        .into_iter()
        .map(|s| (s.function_name, s.output.unwrap()))
        .collect();
    assert_eq!(
        recorded[0],
        ("dbos_core::now".to_owned(), format!("\"{now}\""))
    );
    assert_eq!(recorded[1].0, "dbos_core::random");
    assert_eq!(recorded[1].1.parse::<f64>().unwrap(), r);
    assert_eq!(
        recorded[2],
        ("dbos_core::uuid".to_owned(), format!("\"{u}\""))
    );
    assert_eq!(dbos_core::workflow_id(), None, "outside a workflow");
}

#[dbos_testkit::test]
async fn one_id_cannot_name_two_workflows(db: TestDatabase) {
    let dbos = db.launch().await;
    child_double(1).id("shared-id").on(&dbos).await.unwrap();
    let e = sleepy(1).id("shared-id").on(&dbos).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConflictingWorkflow);
    assert!(
        e.to_string().contains("child_double") && e.to_string().contains("sleepy"),
        "{e}"
    );
}

#[dbos_testkit::test]
async fn a_step_outside_a_workflow_is_a_plain_call(db: TestDatabase) {
    let _dbos = db.launch().await;
    assert_eq!(charge("plain".into(), 4).await.unwrap(), 8);
    let n: i64 = db
        .connect()
        .await
        .query_one("SELECT count(*) FROM dbos.operation_outputs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[dbos_testkit::test]
async fn workflows_start_by_name_with_json_arguments(db: TestDatabase) {
    let dbos = db.launch().await;
    let h = dbos
        .start_workflow_by_name("child_double", vec![json!(21)], Some("by-name".into()))
        .await
        .unwrap();
    assert_eq!(h.id(), "by-name");
    assert_eq!(h.result().await.unwrap(), json!(42));
    let e = dbos
        .start_workflow_by_name("no_such_workflow", vec![], None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WorkflowFunctionNotFound);
    let versions: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM dbos.application_versions WHERE version_name = $1",
            &[&dbos.application_version()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 1, "the application version is registered");
}

#[dbos_testkit::test]
async fn replay_detects_a_changed_history(db: TestDatabase) {
    let config = db
        .config("testapp")
        .executor_id("history-check")
        .application_version("v-hist");
    // A pending workflow of this executor whose first checkpoint names another operation.
    let first = Dbos::launch(config.clone()).await.unwrap();
    first.shutdown().await.unwrap();
    let client = db.connect().await;
    client
        .batch_execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, executor_id, application_version, application_name, serialization, recovery_attempts)
             VALUES ('changed', 'PENDING', 'checkout', 'history-check', 'v-hist', 'testapp', 'portable_json', 1);
             INSERT INTO dbos.workflow_input (workflow_uuid, inputs) VALUES ('changed', '{\"positionalArgs\":[\"chg\",{\"id\":\"o\",\"cents\":1}],\"namedArgs\":{}}');
             INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output, serialization)
             VALUES ('changed', 1, 'old_step_name', '\"x\"', 'portable_json');",
        )
        .await
        .unwrap();
    let dbos = Dbos::launch(config).await.unwrap();
    let e = dbos
        .retrieve_workflow::<(String, i64), ShopError>("changed")
        .result()
        .await
        .unwrap_err();
    let ShopError::Durability(msg) = e else {
        panic!("unexpected {e:?}")
    };
    assert!(
        msg.contains("old_step_name") && msg.contains("reserve") && msg.contains("step 1"),
        "{msg}"
    );
    assert_eq!(
        runs("chg", "reserve"),
        0,
        "the mismatching step did not run"
    );
}

#[workflow(max_recovery_attempts = 2)]
async fn fragile(x: i64) -> Result<i64, dbos_core::Error> {
    Ok(x)
}

#[dbos_testkit::test]
async fn unknown_names_bad_inputs_and_exhausted_recoveries_are_handled(db: TestDatabase) {
    let config = db
        .config("testapp")
        .executor_id("edge")
        .application_version("v-edge");
    Dbos::launch(config.clone())
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    let client = db.connect().await;
    client
        .batch_execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, executor_id, application_version, application_name, serialization, recovery_attempts)
             VALUES ('unknown', 'PENDING', 'not_in_this_binary', 'edge', 'v-edge', 'testapp', 'portable_json', 1),
                    ('pickled', 'PENDING', 'fragile', 'edge', 'v-edge', 'testapp', 'py_pickle', 1),
                    ('exhausted', 'PENDING', 'fragile', 'edge', 'v-edge', 'testapp', 'portable_json', 3),
                    ('fine', 'PENDING', 'fragile', 'edge', 'v-edge', 'testapp', 'portable_json', 1);
             INSERT INTO dbos.workflow_input (workflow_uuid, inputs) VALUES
                    ('unknown', '{\"positionalArgs\":[1]}'), ('pickled', 'gASVGwAAAAAAAAB9lC4='),
                    ('exhausted', '{\"positionalArgs\":[1]}'), ('fine', '{\"positionalArgs\":[7]}');",
        )
        .await
        .unwrap();
    let dbos = Dbos::launch(config).await.unwrap();
    assert_eq!(
        dbos.retrieve_workflow::<i64, dbos_core::Error>("fine")
            .result()
            .await
            .unwrap(),
        7
    );
    let e = dbos
        .retrieve_workflow::<i64, dbos_core::Error>("exhausted")
        .result()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MaxRecoveryAttemptsExceeded);
    // The others are not claimed: they wait on the internal queue for an executor that can
    // run them, data intact (and not held by this one).
    for (id, input) in [
        ("unknown", "{\"positionalArgs\":[1]}"),
        ("pickled", "gASVGwAAAAAAAAB9lC4="),
    ] {
        let r = rows(&db, "SELECT s.status, i.inputs, s.queue_name, s.owner_xid FROM dbos.workflow_status s JOIN dbos.workflow_input i USING (workflow_uuid) WHERE workflow_uuid = $1", id).await;
        assert_eq!(r[0].get::<_, String>(0), "ENQUEUED", "{id}");
        assert_eq!(r[0].get::<_, String>(1), input, "{id}");
        assert_eq!(
            r[0].get::<_, Option<String>>(2).as_deref(),
            Some("_dbos_internal_queue"),
            "{id}"
        );
        assert_eq!(r[0].get::<_, Option<String>>(3), None, "{id}");
    }
    // And an operator can list them, with the reason this executor leaves them.
    let mut listed: Vec<(String, Unrunnable)> = dbos
        .list_unrunnable_workflows(Duration::ZERO)
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.workflow.workflow_id, u.reason))
        .collect();
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        listed,
        vec![
            (
                "pickled".to_owned(),
                Unrunnable::ForeignEncoding("py_pickle".to_owned())
            ),
            ("unknown".to_owned(), Unrunnable::NotRegistered),
        ]
    );
    assert!(dbos
        .list_unrunnable_workflows(Duration::from_secs(3600))
        .await
        .unwrap()
        .is_empty());
}

#[step]
async fn slow_step(key: String, ms: u64) -> Result<(), ShopError> {
    bump(&key, "slow");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(())
}

#[workflow]
async fn two_slow_steps(key: String) -> Result<u32, ShopError> {
    slow_step(key.clone(), 400).await?;
    notify(key.clone()).await?;
    Ok(runs(&key, "slow"))
}

#[dbos_testkit::test]
async fn graceful_shutdown_lets_the_step_finish_and_recovery_completes(db: TestDatabase) {
    let config = db
        .config("testapp")
        .executor_id("graceful")
        .application_version("v-graceful");
    let dbos = Dbos::launch(config.clone()).await.unwrap();
    let handle = two_slow_steps("gs".into())
        .id("gs")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("the slow step to start", Duration::from_secs(5), || async {
        (runs("gs", "slow") == 1).then_some(())
    })
    .await;
    dbos.shutdown().await.unwrap();
    assert_eq!(
        db.steps_of("gs").await.len(),
        1,
        "the in-flight step finished and was recorded; the next did not start"
    );
    assert_eq!(runs("gs", "notify"), 0);
    drop(handle);
    let dbos = Dbos::launch(config).await.unwrap();
    let out = dbos
        .retrieve_workflow::<u32, ShopError>("gs")
        .result()
        .await
        .unwrap();
    assert_eq!(out, 1, "the slow step was not run again");
    assert_eq!(runs("gs", "notify"), 1);
}

#[dbos_testkit::test]
async fn an_error_recorded_by_another_language_is_a_typed_portable_error(db: TestDatabase) {
    let dbos = db.launch().await;
    db.connect()
        .await
        .batch_execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, serialization)
             VALUES ('from-python', 'ERROR', 'py_wf', 'portable_json');
             INSERT INTO dbos.workflow_output (workflow_uuid, error)
             VALUES ('from-python', '{\"name\":\"ValueError\",\"message\":\"boom 3\",\"code\":5,\"data\":{\"retryable\":true}}');
             INSERT INTO dbos.workflow_status (workflow_uuid, status, name, serialization)
             VALUES ('pickled-out', 'SUCCESS', 'py_wf', 'py_pickle');
             INSERT INTO dbos.workflow_output (workflow_uuid, output) VALUES ('pickled-out', 'gASVBQAAAAAAAABLKS4=');",
        )
        .await
        .unwrap();
    let e = dbos
        .retrieve_workflow::<i64, dbos_core::Error>("from-python")
        .result()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WorkflowFailed);
    let p = e.portable().expect("the portable error is attached");
    assert_eq!(
        (p.name.as_str(), p.message.as_str()),
        ("ValueError", "boom 3")
    );
    assert_eq!(p.code, Some(json!(5)));
    assert_eq!(p.data, Some(json!({"retryable": true})));

    // A typed application error gets the same information through From<dbos_core::Error>.
    let e = dbos
        .retrieve_workflow::<i64, ShopError>("from-python")
        .result()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ShopError::Durability(m) if m.contains("ValueError: boom 3")),
        "{e:?}"
    );

    // A value in a foreign encoding is reported, never misread.
    let e = dbos
        .retrieve_workflow::<i64, dbos_core::Error>("pickled-out")
        .result()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialization);
    assert!(e.to_string().contains("py_pickle"), "{e}");
}

#[workflow]
async fn nap(key: String, ms: u64) -> Result<u32, ShopError> {
    reserve(
        key.clone(),
        Order {
            id: "nap".into(),
            cents: 1,
        },
    )
    .await?;
    dbos_core::sleep(Duration::from_millis(ms)).await?;
    notify(key.clone()).await?;
    Ok(runs(&key, "reserve"))
}

#[dbos_testkit::test]
async fn a_long_sleep_parks_the_workflow_and_it_resumes_on_time(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").park_after(Duration::from_millis(500)))
        .await
        .unwrap();
    let handle = nap("nap".into(), 1500)
        .id("napper")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("the workflow to park", Duration::from_secs(5), || async {
        (dbos.parked_workflows() == 1).then_some(())
    })
    .await;
    assert_eq!(
        handle.status().await.unwrap(),
        Status::Pending,
        "a parked workflow is still pending"
    );
    let wake: f64 = rows(
        &db,
        "SELECT output FROM dbos.operation_outputs WHERE workflow_uuid = $1 AND function_name = 'DBOS.sleep'",
        "napper",
    )
    .await[0]
        .get::<_, String>(0)
        .parse()
        .unwrap();
    let wake = std::time::UNIX_EPOCH + Duration::from_secs_f64(wake);
    assert_eq!(
        handle.result().await.unwrap(),
        1,
        "the step before the sleep replayed; it did not run again"
    );
    let finished = std::time::SystemTime::now();
    assert!(
        finished >= wake,
        "woke {:?} before the recorded wake-up",
        wake.duration_since(finished).unwrap_or_default()
    );
    let late = finished.duration_since(wake).unwrap_or_default();
    assert!(
        late < Duration::from_millis(2500),
        "resumed {late:?} after the recorded wake-up"
    );
    assert_eq!((runs("nap", "reserve"), runs("nap", "notify")), (1, 1));
    assert_eq!(dbos.parked_workflows(), 0);
}

#[workflow]
async fn starts_a_conflicting_child() -> Result<String, dbos_core::Error> {
    match sleepy(1).id("taken-id").await {
        Err(e) => Ok(format!("{:?}", e.kind())),
        Ok(_) => Ok("no conflict".to_owned()),
    }
}

#[dbos_testkit::test]
async fn a_child_id_conflict_reaches_the_parent_instead_of_stopping_it(db: TestDatabase) {
    let dbos = db.launch().await;
    child_double(1).id("taken-id").on(&dbos).await.unwrap();
    let out = starts_a_conflicting_child()
        .id("parent-of-conflict")
        .on(&dbos)
        .await
        .unwrap();
    assert_eq!(out, "ConflictingWorkflow");
    let status = dbos
        .retrieve_workflow::<String, dbos_core::Error>("parent-of-conflict")
        .status()
        .await
        .unwrap();
    assert_eq!(
        status,
        Status::Success,
        "the parent handled the error and finished"
    );
}

static OTHER_TOOL: std::sync::OnceLock<tokio_postgres::Client> = std::sync::OnceLock::new();

/// Another tool wrote an output row for this workflow while it was still running.
#[step]
async fn stray_output() -> Result<(), Error> {
    OTHER_TOOL
        .get()
        .expect("set by the test")
        .execute(
            "INSERT INTO dbos.workflow_output (workflow_uuid, output) VALUES ('stray-output', '\"stale\"')",
            &[],
        )
        .await
        .expect("write the stray row");
    Ok(())
}

#[workflow]
async fn outlives_a_stray_output() -> Result<String, Error> {
    stray_output().await?;
    Ok("ours".into())
}

#[dbos_testkit::test]
async fn the_outcome_overwrites_an_output_row_written_by_another_tool(db: TestDatabase) {
    let _ = OTHER_TOOL.set(db.connect().await);
    let dbos = db.launch().await;
    let out = outlives_a_stray_output()
        .id("stray-output")
        .on(&dbos)
        .await
        .unwrap();
    assert_eq!(out, "ours");
    let row = db
        .connect()
        .await
        .query_one(
            "SELECT s.status, o.output FROM dbos.workflow_status s JOIN dbos.workflow_output o USING (workflow_uuid)
              WHERE workflow_uuid = 'stray-output'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "SUCCESS");
    assert_eq!(row.get::<_, String>(1), "\"ours\"");
}

static CANCEL_GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[step]
async fn waits_at_the_gate(key: String) -> Result<(), Error> {
    bump(&key, "gate");
    CANCEL_GATE.notified().await;
    Ok(())
}

#[step]
async fn after_the_gate(key: String) -> Result<(), Error> {
    bump(&key, "after");
    Ok(())
}

#[workflow]
async fn cancellable(key: String) -> Result<(), Error> {
    waits_at_the_gate(key.clone()).await?;
    after_the_gate(key).await
}

#[dbos_testkit::test]
async fn cancel_stops_a_running_workflow_and_rewrites_only_unfinished_or_dead_lettered_ones(
    db: TestDatabase,
) {
    let dbos = db.launch().await;
    // A running workflow stops at its next durable operation.
    let running = cancellable("cx".into())
        .id("cancel-running")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually(
        "the first step to start",
        Duration::from_secs(10),
        || async { (runs("cx", "gate") == 1).then_some(()) },
    )
    .await;
    dbos.cancel_workflow("cancel-running").await.unwrap();
    CANCEL_GATE.notify_waiters();
    let e = running.result().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AwaitedWorkflowCancelled, "{e:?}");
    assert_eq!(running.status().await.unwrap(), Status::Cancelled);
    assert_eq!(
        runs("cx", "after"),
        0,
        "no operation started after the cancel"
    );

    // Finished workflows: SUCCESS and ERROR stay; a dead-lettered one becomes CANCELLED.
    db.connect()
        .await
        .batch_execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, serialization) VALUES
                 ('done-ok', 'SUCCESS', 'child_double', 'portable_json'),
                 ('done-err', 'ERROR', 'child_double', 'portable_json'),
                 ('dead-lettered', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', 'child_double', 'portable_json')",
        )
        .await
        .unwrap();
    for id in ["done-ok", "done-err", "dead-lettered"] {
        dbos.cancel_workflow(id).await.unwrap();
    }
    let status = |id: &'static str| {
        let db = &db;
        async move {
            rows(
                db,
                "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = $1",
                id,
            )
            .await[0]
                .get::<_, String>(0)
        }
    };
    assert_eq!(status("done-ok").await, "SUCCESS");
    assert_eq!(status("done-err").await, "ERROR");
    assert_eq!(status("dead-lettered").await, "CANCELLED", "as DBOS does");

    let e = dbos.cancel_workflow("no-such-workflow").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonExistentWorkflow);
}
