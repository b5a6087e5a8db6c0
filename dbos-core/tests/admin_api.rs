//! The admin HTTP API over real HTTP (the testkit's client, `dbos_testkit::admin`) against
//! real rows: DBOS's endpoints and shapes (field names checked against DBOS Python's own
//! classes), the operations' effects, JSON errors for bad input, the token, the refusal of a
//! non-loopback address without one, and keyset pagination.

use std::time::Duration;

use dbos_core::admin::{serve, AdminServer};
use dbos_core::manage::ListWorkflows;
use dbos_core::schedule::chrono::{self, DateTime, Datelike, Utc};
use dbos_core::schedule::Schedule;
use dbos_core::{step, workflow, Client, Dbos, Error, ErrorKind, Queue};
use dbos_testkit::admin::{
    self, first, run_checkout, run_refused, schedule_status, status_of, AdminApi, Answer,
};
use dbos_testkit::crash::eventually;
use dbos_testkit::runs::{bump, runs as count};
use dbos_testkit::TestDatabase;
use serde_json::{json, Value};

#[step]
async fn hold(key: String) -> Result<(), Error> {
    bump(&format!("{key}/held"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(())
}

#[workflow]
async fn held(key: String) -> Result<i64, Error> {
    hold(key.clone()).await?;
    first(key).await
}

/// Sets an event twice, writes a stream entry, receives one message.
#[workflow]
async fn talker(key: String) -> Result<String, Error> {
    dbos_core::set_event("stage", &"one").await?;
    dbos_core::set_event("stage", &"two").await?;
    dbos_core::write_stream("log", &json!({"line": 1})).await?;
    let got: Option<String> = dbos_core::recv("greeting", Duration::from_secs(30)).await?;
    Ok(format!("{key}: {}", got.unwrap_or_default()))
}

static LIMITED: Queue = Queue::new("limited")
    .concurrency(3)
    .worker_concurrency(2)
    .rate_limit(10, Duration::from_secs(2));

async fn launch(db: &TestDatabase) -> (Dbos, AdminApi) {
    admin::launch(
        db.config("testapp")
            .queue(&LIMITED)
            .cancel_poll_interval(Duration::from_millis(100)),
    )
    .await
}

/// The field names of DBOS Python's `WorkflowsOutput` and `WorkflowSteps`, the classes its
/// admin server answers with (dbos-transact-py `dbos/_conductor/protocol.py`; the admin
/// server left the Python core in 3.x, so the pinned 3.4.0 venv does not have them to read).
const DBOS_WORKFLOW_FIELDS: &[&str] = &[
    "WorkflowUUID",
    "Status",
    "WorkflowName",
    "WorkflowClassName",
    "WorkflowConfigName",
    "AuthenticatedUser",
    "AssumedRole",
    "AuthenticatedRoles",
    "Input",
    "Output",
    "Error",
    "CreatedAt",
    "UpdatedAt",
    "QueueName",
    "ApplicationVersion",
    "ExecutorID",
    "WorkflowTimeoutMS",
    "WorkflowDeadlineEpochMS",
    "DeduplicationID",
    "Priority",
    "QueuePartitionKey",
    "ForkedFrom",
    "WasForkedFrom",
    "ParentWorkflowID",
    "DequeuedAt",
    "DelayUntilEpochMS",
    "CompletedAt",
    "Attributes",
    "ScheduleName",
    "ApplicationName",
];
const DBOS_STEP_FIELDS: &[&str] = &[
    "function_id",
    "function_name",
    "output",
    "error",
    "child_workflow_id",
    "started_at_epoch_ms",
    "completed_at_epoch_ms",
];

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[dbos_testkit::test]
async fn dbos_endpoints_answer_in_dbos_shapes(db: TestDatabase) {
    let (dbos, api) = launch(&db).await;
    run_checkout(&dbos, "ord-a1").await;
    run_refused(&dbos, "ord-b1").await;
    run_checkout(&dbos, "other-c1").await;

    let health = api.get("/dbos-healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "healthy"));

    // The listing: every workflow, oldest first, in DBOS's shape.
    let all = api.post_json("/workflows", json!({})).await;
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["WorkflowUUID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["ord-a1", "ord-b1", "other-c1"]);
    let mut ours: Vec<String> = all[0].as_object().unwrap().keys().cloned().collect();
    ours.retain(|k| k != "RecoveryAttempts");
    ours.sort();
    assert_eq!(ours, sorted(DBOS_WORKFLOW_FIELDS), "WorkflowsOutput fields");
    // Inputs and outputs only when asked for, as in DBOS.
    assert_eq!(all[0]["Output"], Value::Null);
    assert_eq!(all[0]["Status"], "SUCCESS");
    assert_eq!(all[0]["WorkflowName"], "testkit.checkout");
    assert!(all[0]["CreatedAt"].as_str().unwrap().parse::<i64>().is_ok());
    assert_eq!(all[0]["RecoveryAttempts"], "1");

    // Filters: status, name, prefix, order, limit, outputs.
    let failed = api
        .post(
            "/workflows",
            json!({"status": "ERROR", "load_output": true}),
        )
        .await
        .json();
    assert_eq!(failed.as_array().unwrap().len(), 1);
    assert_eq!(failed[0]["WorkflowUUID"], "ord-b1");
    assert!(
        failed[0]["Error"]
            .as_str()
            .unwrap()
            .contains("card ord-b1 declined"),
        "{failed}"
    );
    let named = api
        .post(
            "/workflows",
            json!({"workflow_name": ["testkit.checkout"], "sort_desc": true}),
        )
        .await
        .json();
    let named: Vec<&str> = named
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["WorkflowUUID"].as_str().unwrap())
        .collect();
    assert_eq!(named, vec!["other-c1", "ord-a1"]);
    let prefixed = api.post("/workflows", json!({"workflow_id_prefix": "ord-", "limit": 1, "load_input": true, "load_output": true})).await.json();
    assert_eq!(prefixed.as_array().unwrap().len(), 1);
    assert_eq!(prefixed[0]["Output"], "6");
    assert_eq!(
        serde_json::from_str::<Value>(prefixed[0]["Input"].as_str().unwrap()).unwrap(),
        json!({"args": ["ord-a1"], "kwargs": {}})
    );
    let by_id = api
        .post("/workflows", json!({"workflow_uuids": ["ord-b1", "nope"]}))
        .await
        .json();
    assert_eq!(by_id.as_array().unwrap().len(), 1);
    let later = api
        .post("/workflows", json!({"start_time": "2999-01-01T00:00:00Z"}))
        .await
        .json();
    assert_eq!(later, json!([]));

    // One workflow, with its input and outcome.
    let one = api.get_json("/workflows/ord-a1").await;
    assert_eq!(one["Output"], "6");
    assert_eq!(one["Status"], "SUCCESS");

    // Its steps, in DBOS's shape.
    let steps = api.get_json("/workflows/ord-a1/steps").await;
    let names: Vec<&str> = steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["function_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["first", "second", "third"]);
    let mut ours: Vec<String> = steps[0].as_object().unwrap().keys().cloned().collect();
    ours.sort();
    assert_eq!(ours, sorted(DBOS_STEP_FIELDS), "WorkflowSteps fields");
    assert_eq!(steps[1]["function_id"], 2);
    assert_eq!(steps[1]["output"], "2");
    let started: i64 = steps[0]["started_at_epoch_ms"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let completed: i64 = steps[0]["completed_at_epoch_ms"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(started <= completed);

    // Unknown workflows: 404 with a message.
    api.get("/workflows/nope")
        .await
        .assert_error(404, "get of an unknown id");
    api.get("/workflows/nope/steps")
        .await
        .assert_error(404, "steps of an unknown id");
    api.post("/workflows/nope/cancel", json!({}))
        .await
        .assert_error(404, "cancel of an unknown id");

    // Queue metadata: DBOS's keys, limits left out when absent.
    let queues = api.get_json("/dbos-workflow-queues-metadata").await;
    let limited = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "limited")
        .expect("the queue is listed");
    assert_eq!(
        limited,
        &json!({"name": "limited", "concurrency": 3, "workerConcurrency": 2, "rateLimit": {"limit": 10, "period": 2.0}})
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn operations_act_on_real_rows(db: TestDatabase) {
    let (dbos, api) = launch(&db).await;

    // Cancel a running workflow: it stops before its next step.
    held("h1".into()).id("h1").on(&dbos).start().await.unwrap();
    eventually(
        "the held step to start",
        Duration::from_secs(20),
        || async { (count("h1/held") == 1).then_some(()) },
    )
    .await;
    let Answer { status, body } = api.post("/workflows/h1/cancel", json!({})).await;
    assert_eq!((status, body.as_str()), (204, ""));
    assert_eq!(status_of(&db, "h1").await, "CANCELLED");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(count("h1/first"), 0, "nothing ran after the cancel");

    // Resume: it continues from its checkpoint and finishes.
    let Answer { status, .. } = api.post("/workflows/h1/resume", json!({})).await;
    assert_eq!(status, 204);
    eventually(
        "the resumed workflow to finish",
        Duration::from_secs(30),
        || async { (status_of(&db, "h1").await == "SUCCESS").then_some(()) },
    )
    .await;

    // Fork from step 2 under a given id: step 1 is copied, 2 and 3 run again.
    run_checkout(&dbos, "f1").await;
    let Answer { status, body } = api
        .post(
            "/workflows/f1/fork",
            json!({"start_step": 2, "new_workflow_id": "f1-fork"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"workflow_id": "f1-fork"})
    );
    eventually("the fork to finish", Duration::from_secs(30), || async {
        (status_of(&db, "f1-fork").await == "SUCCESS").then_some(())
    })
    .await;
    assert_eq!(
        (count("f1/first"), count("f1/second"), count("f1/third")),
        (1, 2, 2)
    );
    let fork = api.get("/workflows/f1-fork").await.json();
    assert_eq!(fork["ForkedFrom"], "f1");
    // The same id again: 409; a step past the history: 400.
    api.post(
        "/workflows/f1/fork",
        json!({"start_step": 2, "new_workflow_id": "f1-fork"}),
    )
    .await
    .assert_error(409, "a fork onto a taken id");
    api.post("/workflows/f1/fork", json!({"start_step": 99}))
        .await
        .assert_error(400, "a fork past the history");
    api.post("/workflows/f1/fork", json!({"start_step": 0}))
        .await
        .assert_error(400, "a fork from step 0");

    // Restart: a new workflow from step 1.
    let Answer { status, body } = api.post("/workflows/f1/restart", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let restarted = serde_json::from_str::<Value>(&body).unwrap()["workflow_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(restarted, "f1");
    eventually("the restart to finish", Duration::from_secs(30), || async {
        (status_of(&db, &restarted).await == "SUCCESS").then_some(())
    })
    .await;
    assert_eq!(count("f1/first"), 2);

    // Recovery of a dead executor's pending workflow: back on the internal queue.
    let version = api.get("/workflows/f1").await.json()["ApplicationVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let pg = db.connect().await;
    pg.execute(
        "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, executor_id, application_version, application_name)
         VALUES ('orphan', 'PENDING', 'no_such_workflow', 'dead-executor', $1, 'testapp')",
        &[&version],
    )
    .await
    .unwrap();
    let Answer { status, body } = api
        .post("/dbos-workflow-recovery", json!(["dead-executor"]))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!(["orphan"])
    );
    assert_eq!(status_of(&db, "orphan").await, "ENQUEUED");
    let again = api
        .post_json("/dbos-workflow-recovery", json!(["dead-executor"]))
        .await;
    assert_eq!(again, json!([]), "recovery is idempotent");

    // Global timeout: active workflows created before the cutoff are cancelled.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let Answer { status, .. } = api
        .post(
            "/dbos-global-timeout",
            json!({"cutoff_epoch_timestamp_ms": now_ms + 1000}),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(status_of(&db, "orphan").await, "CANCELLED");

    // Garbage collection: keep the newest 2 workflows; older finished ones are deleted.
    let Answer { status, body } = api
        .post("/dbos-garbage-collect", json!({"rows_threshold": 2}))
        .await;
    assert_eq!(status, 204, "{body}");
    let left: i64 = pg
        .query_one("SELECT count(*) FROM dbos.workflow_status", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 2);
    api.get("/workflows/h1")
        .await
        .assert_error(404, "a collected workflow");

    // Deactivate: answered as DBOS answers it.
    let answer = api.get("/deactivate").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "deactivated"));
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn the_dashboard_reads_events_messages_streams_and_queues(db: TestDatabase) {
    let (dbos, api) = launch(&db).await;
    let h = talker("t1".into())
        .id("t1")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("the stream entry", Duration::from_secs(20), || async {
        let x = api.get("/api/workflows/t1/exchanges").await.json();
        (x["streams"].as_array().is_some_and(|s| !s.is_empty())).then_some(())
    })
    .await;
    dbos.send("t1", &"hello", "greeting").await.unwrap();
    assert_eq!(h.result().await.unwrap(), "t1: hello");
    let x = api.get_json("/api/workflows/t1/exchanges").await;
    assert_eq!(x["events"], json!([{"key": "stage", "value": "two"}]));
    let history: Vec<&Value> = x["events_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["value"])
        .collect();
    assert_eq!(history, vec![&json!("one"), &json!("two")]);
    assert_eq!(x["streams"][0]["key"], "log");
    assert_eq!(x["streams"][0]["value"], json!({"line": 1}));
    assert_eq!(x["messages"][0]["topic"], "greeting");
    assert_eq!(x["messages"][0]["value"], "hello");
    assert_eq!(x["messages"][0]["consumed"], true);
    api.get("/api/workflows/nope/exchanges")
        .await
        .assert_error(404, "exchanges of an unknown id");

    let queues = api.get("/api/queues").await.json();
    let limited = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "limited")
        .unwrap();
    assert_eq!(limited["concurrency"], 3);
    assert_eq!(limited["enqueued"], 0);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn bad_requests_get_json_errors_and_nothing_panics(db: TestDatabase) {
    let (dbos, api) = launch(&db).await;
    run_checkout(&dbos, "e1").await;
    let garbage: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"null".to_vec(),
        b"[1, 2".to_vec(),
        b"\"text\"".to_vec(),
        b"{\"status\": 7}".to_vec(),
        b"{\"status\": \"FINISHED\"}".to_vec(),
        b"{\"limit\": 0}".to_vec(),
        b"{\"limit\": 1e40}".to_vec(),
        b"{\"start_time\": \"soon\"}".to_vec(),
        b"{\"start_time\": 2, \"end_time\": 1}".to_vec(),
        b"{\"unknown_key\": 1}".to_vec(),
        b"{\"start_step\": -3}".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        "[".repeat(10_000).into_bytes(),
    ];
    for path in [
        "/workflows",
        "/queues",
        "/workflows/e1/fork",
        "/dbos-garbage-collect",
        "/dbos-global-timeout",
        "/dbos-workflow-recovery",
    ] {
        for body in &garbage {
            let answer = api.call("POST", path, body).await;
            assert!(
                (400..500).contains(&answer.status),
                "POST {path} {:?}: {answer:?}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            );
            answer.json();
        }
    }
    api.post("/dbos-garbage-collect", json!({}))
        .await
        .assert_error(400, "a collection that deletes nothing");
    api.get("/no/such/path")
        .await
        .assert_error(404, "an unknown path");
    api.get("/workflows")
        .await
        .assert_error(405, "a listing with GET");
    api.post("/workflows/%20/cancel", json!({}))
        .await
        .assert_error(400, "a blank id");
    // Still serving, and nothing was changed by the bad requests.
    assert_eq!(api.get("/dbos-healthz").await.status, 200);
    assert_eq!(status_of(&db, "e1").await, "SUCCESS");
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_client_serves_it_and_the_token_guards_it(db: TestDatabase) {
    let dbos = db.launch().await;
    run_checkout(&dbos, "k1").await;
    let client = Client::connect(db.url()).await.unwrap();
    let admin = serve(&client, AdminServer::new(0).token("s3cret"))
        .await
        .unwrap();
    let addr = admin.address();
    assert!(addr.ip().is_loopback());
    let api = AdminApi::new(addr);

    let missing = api.call("POST", "/workflows", b"{}").await;
    missing.assert_error(401, "no token");
    let wrong = api
        .clone()
        .with_token("guess")
        .call("POST", "/workflows", b"{}")
        .await;
    wrong.assert_error(401, "a wrong token");
    api.call("POST", "/workflows/k1/cancel", b"")
        .await
        .assert_error(401, "a cancel without the token");
    api.call("GET", "/api/queues", b"")
        .await
        .assert_error(401, "the dashboard's reads without the token");
    let Answer { status, body } = api
        .clone()
        .with_token("s3cret")
        .call("POST", "/workflows", b"{}")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()[0]["WorkflowUUID"],
        "k1"
    );
    // Open without it: the health check and the page (which holds no data).
    assert_eq!(api.get("/dbos-healthz").await.status, 200);
    let page = api.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<html"), "{}", page.body);
    admin.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "stopped listening"
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_non_loopback_address_without_a_token_is_refused(db: TestDatabase) {
    let open = AdminServer::new(0).bind("0.0.0.0".parse().unwrap());
    let e = Dbos::launch(db.config("testapp").admin_server(open.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("without a token"), "{e}");
    let dbos = db.launch().await;
    let client = Client::connect(db.url()).await.unwrap();
    assert_eq!(
        serve(&client, open.clone()).await.unwrap_err().kind(),
        ErrorKind::Config
    );
    // With a token it listens on every address.
    let shared = serve(&client, open.token("t0ken")).await.unwrap();
    assert!(shared.address().ip().is_unspecified());
    // A port in use: an I/O error saying so.
    let taken = serve(&client, AdminServer::new(shared.address().port())).await;
    assert_eq!(taken.unwrap_err().kind(), ErrorKind::Io);
    shared.shutdown().await;
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn keyset_pages_cover_every_row_once_with_ties(db: TestDatabase) {
    let (dbos, api) = launch(&db).await;
    // 25 workflows, created in 3 distinct milliseconds: ties decide by id.
    let pg = db.connect().await;
    for i in 0..25 {
        pg.execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, created_at, application_name)
             VALUES ($1, 'SUCCESS', 'paged', $2, 'testapp')",
            &[&format!("p{:02}", (i * 7) % 25), &(1_000_000 + i64::from(i % 3))],
        )
        .await
        .unwrap();
    }
    for newest_first in [false, true] {
        let mut seen: Vec<(i64, String)> = Vec::new();
        let mut after: Option<Value> = None;
        for _page in 0..10 {
            let mut filter =
                json!({"workflow_name": "paged", "limit": 10, "sort_desc": newest_first});
            if let Some(a) = &after {
                filter["page_after"] = a.clone();
            }
            let page = api.post_json("/workflows", filter).await;
            let rows = page.as_array().unwrap();
            if rows.is_empty() {
                break;
            }
            assert!(seen.len() < 25, "a page past the last row: {page}");
            assert!(rows.len() <= 10);
            for r in rows {
                seen.push((
                    r["CreatedAt"].as_str().unwrap().parse().unwrap(),
                    r["WorkflowUUID"].as_str().unwrap().to_owned(),
                ));
            }
            let last = seen.last().unwrap();
            after = Some(json!({"created_at": last.0, "workflow_id": last.1}));
        }
        let mut want = seen.clone();
        want.sort();
        if newest_first {
            want.reverse();
        }
        assert_eq!(seen, want, "pages in order (newest first: {newest_first})");
        want.dedup();
        assert_eq!(
            want.len(),
            25,
            "every row once (newest first: {newest_first})"
        );
    }
    dbos.shutdown().await.unwrap();
}

async fn runs_of(db: &TestDatabase, schedule: &str) -> i64 {
    db.connect()
        .await
        .query_one(
            "SELECT count(*) FROM dbos.workflow_status WHERE schedule_name = $1",
            &[&schedule],
        )
        .await
        .unwrap()
        .get(0)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[dbos_testkit::test]
async fn queues_show_throughput_per_minute_and_the_oldest_waiting_workflow(db: TestDatabase) {
    let (dbos, api) = launch(&db).await;
    let now = now_ms();
    // Rows of another version, so this runtime does not dequeue the waiting ones.
    let pg = db.connect().await;
    let row = |id: &str, status: &str, app: &str, created: i64, completed: Option<i64>| {
        let pg = &pg;
        let (id, status, app) = (id.to_owned(), status.to_owned(), app.to_owned());
        async move {
            pg.execute(
                "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, queue_name, application_name,
                                                   application_version, created_at, completed_at)
                 VALUES ($1, $2, 'seeded', 'limited', $3, 'elsewhere', $4, $5)",
                &[&id, &status, &app, &created, &completed],
            )
            .await
            .unwrap();
        }
    };
    // Each created minutes before it completed: the minute counted is the completion's.
    let two_ago = now - 2 * 60_000;
    let five_ago = now - 5 * 60_000;
    // (name, status, how many, created, completed): the last ones outside the 15 minutes.
    let finished = [
        ("done-2", "SUCCESS", 3, two_ago - 180_000, two_ago),
        ("done-5", "ERROR", 2, five_ago - 240_000, five_ago),
        (
            "done-20",
            "SUCCESS",
            4,
            now - 21 * 60_000,
            now - 20 * 60_000,
        ),
    ];
    for (name, status, n, created, completed) in finished {
        for i in 0..n {
            let id = format!("{name}-{i}");
            row(&id, status, "testapp", created, Some(completed + i)).await;
        }
    }
    row("w-new", "ENQUEUED", "testapp", now - 1_000, None).await;
    row("w-old", "ENQUEUED", "testapp", now - 600_000, None).await;
    // Older still, but another application's: not this dashboard's.
    row("w-foreign", "ENQUEUED", "otherapp", now - 900_000, None).await;

    let queues = api.get_json("/api/queues").await;
    let limited = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "limited")
        .unwrap();
    let minutes = limited["throughput"].as_array().unwrap();
    assert_eq!(minutes.len(), 15, "{limited}");
    let count_at = |t: i64| {
        let minute = t / 60_000 * 60_000;
        minutes
            .iter()
            .find(|m| m["minute"] == minute)
            .unwrap_or_else(|| panic!("minute {minute} not shown: {limited}"))["completed"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(count_at(two_ago), 3);
    assert_eq!(count_at(five_ago), 2);
    let total: i64 = minutes
        .iter()
        .map(|m| m["completed"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 5, "{limited}");
    // Oldest first, one minute apart, the current minute last.
    for pair in minutes.windows(2) {
        assert_eq!(
            pair[1]["minute"].as_i64().unwrap() - pair[0]["minute"].as_i64().unwrap(),
            60_000
        );
    }
    assert!(minutes[14]["minute"].as_i64().unwrap() >= now / 60_000 * 60_000);
    assert_eq!(
        limited["oldest_waiting"],
        json!({"workflow_id": "w-old", "created_at": now - 600_000})
    );
    assert_eq!(limited["enqueued"], 2);
    dbos.shutdown().await.unwrap();
}

/// The scan nodes of a plan on `workflow_status`, with their index.
fn scans_of(node: &Value, out: &mut Vec<String>) {
    if node["Relation Name"] == "workflow_status" || node["Node Type"] == "Bitmap Index Scan" {
        out.push(
            format!(
                "{} {}",
                node["Node Type"].as_str().unwrap_or("?"),
                node["Index Name"].as_str().unwrap_or("")
            )
            .trim()
            .to_owned(),
        );
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        scans_of(child, out);
    }
}

#[dbos_testkit::test]
async fn queue_throughput_reads_the_window_through_the_completed_at_index(db: TestDatabase) {
    let dbos = db.launch().await;
    let now = now_ms();
    // 30,000 workflows completed over 30 days on four queues: about 10 in the last 15 minutes.
    let pg = db.connect().await;
    pg.execute(
        "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, queue_name, application_name,
                                           created_at, completed_at)
         SELECT 'wf-' || g, 'SUCCESS', 'seeded', 'q-' || (g % 4), 'testapp',
                $1::bigint - g::bigint * 86400, $1::bigint - g::bigint * 86400 + 5
           FROM generate_series(1, 30000) AS g",
        &[&now],
    )
    .await
    .unwrap();
    pg.batch_execute("ANALYZE dbos.workflow_status")
        .await
        .unwrap();
    let since = std::time::SystemTime::now() - Duration::from_secs(15 * 60);
    let explained =
        dbos_core::admin::explain_queue_throughput(dbos.system_database(), since, Some("testapp"))
            .await
            .unwrap();
    let plan = &explained[0]["Plan"];
    let mut scans = Vec::new();
    scans_of(plan, &mut scans);
    eprintln!(
        "throughput plan: {scans:?}, {} ms",
        explained[0]["Execution Time"]
    );
    assert!(
        scans.iter().any(|s| s.ends_with("idx_workflow_status_completed_at"))
            && !scans.iter().any(|s| s.starts_with("Seq Scan")),
        "the throughput query does not read its window through the completed_at index: {scans:?}\n{explained}"
    );
    dbos.shutdown().await.unwrap();
}

/// Rows of `workflow_status` a plan read (returned, plus removed by filters).
fn rows_read(node: &Value) -> f64 {
    let mut n = 0.0;
    if node["Relation Name"] == "workflow_status" {
        n += node["Actual Rows"].as_f64().unwrap_or(0.0)
            * node["Actual Loops"].as_f64().unwrap_or(1.0)
            + node["Rows Removed by Filter"].as_f64().unwrap_or(0.0);
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        n += rows_read(child);
    }
    n
}

const PAGED: i64 = 100_000;

#[dbos_testkit::test(timeout = "300s")]
async fn pages_of_100k_workflows_cost_the_same_at_any_depth(db: TestDatabase) {
    let (dbos, api) = launch(&db).await;
    // 100,000 finished workflows over about 12 days, two per millisecond tick at times
    // (creation-time ties), in one statement.
    let pg = db.connect().await;
    let now = now_ms();
    pg.execute(
        "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, queue_name, application_name,
                                           application_version, created_at, updated_at, completed_at)
         SELECT 'pg-' || lpad(g::text, 6, '0'), CASE WHEN g % 50 = 0 THEN 'ERROR' ELSE 'SUCCESS' END,
                'paged_' || (g % 10), 'q-' || (g % 3), 'testapp', 'elsewhere',
                $1::bigint - ($2::bigint - g / 2) * 20000, $1::bigint - ($2::bigint - g / 2) * 20000 + 5,
                $1::bigint - ($2::bigint - g / 2) * 20000 + 5
           FROM generate_series(1, $2::bigint) AS g",
        &[&now, &PAGED],
    )
    .await
    .unwrap();
    pg.batch_execute("ANALYZE dbos.workflow_status")
        .await
        .unwrap();
    // The row before each measured page, newest first, as the page's "Older" button sends it.
    let cursor_at = |position: i64| {
        let pg = &pg;
        async move {
            let r = pg
                .query_one(
                    "SELECT created_at, workflow_uuid FROM dbos.workflow_status
                      ORDER BY created_at DESC, workflow_uuid DESC OFFSET $1 LIMIT 1",
                    &[&position],
                )
                .await
                .unwrap();
            (r.get::<_, i64>(0), r.get::<_, String>(1))
        }
    };
    let page = 50;
    let mut report = Vec::new();
    for (what, before) in [
        ("first", None),
        ("middle", Some(PAGED / 2 - 1)),
        ("last", Some(PAGED - page - 1)),
    ] {
        let cursor = match before {
            Some(position) => Some(cursor_at(position).await),
            None => None,
        };
        let mut body = json!({"sort_desc": true, "limit": page + 1});
        let mut offset_body = body.clone();
        let mut q = ListWorkflows::new()
            .newest_first()
            .limit(page as u32 + 1)
            .without_input()
            .without_output();
        if let (Some((created, id)), Some(position)) = (&cursor, before) {
            body["page_after"] = json!({"created_at": created, "workflow_id": id});
            offset_body["offset"] = json!(position + 1);
            q = q.page_after(*created, id.clone());
        }
        // The page's rows are the right ones: the ones after the cursor, in order.
        let rows = api.post_json("/workflows", body.clone()).await;
        let ids: Vec<&str> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["WorkflowUUID"].as_str().unwrap())
            .collect();
        let first_expected = cursor_at(before.map_or(0, |p| p + 1)).await.1;
        assert_eq!(ids[0], first_expected, "{what} page");
        assert_eq!(
            ids.len() as i64,
            if what == "last" { page } else { page + 1 },
            "{what} page"
        );
        // Its cost: the API call end to end (best of ten, alternating), the plan, and the
        // same page by offset for comparison.
        let mut keyset = Duration::MAX;
        let mut by_offset = Duration::MAX;
        for _ in 0..10 {
            let t = std::time::Instant::now();
            api.post_json("/workflows", body.clone()).await;
            keyset = keyset.min(t.elapsed());
            let t = std::time::Instant::now();
            let same = api.post_json("/workflows", offset_body.clone()).await;
            by_offset = by_offset.min(t.elapsed());
            assert_eq!(same, rows, "{what} page by offset");
        }
        let explained =
            dbos_core::manage::explain_list_workflows(dbos.system_database(), &q, Some("testapp"))
                .await
                .unwrap();
        let mut scans = Vec::new();
        scans_of(&explained[0]["Plan"], &mut scans);
        let read = rows_read(&explained[0]["Plan"]);
        eprintln!(
            "{what:>6} page: keyset {:>7.2} ms (plan {:>6.2} ms, {read} rows read via {scans:?}); offset {:>7.2} ms",
            keyset.as_secs_f64() * 1000.0,
            explained[0]["Execution Time"].as_f64().unwrap_or(-1.0),
            by_offset.as_secs_f64() * 1000.0,
        );
        report.push((what, scans, read));
    }
    // Every keyset page reads a page's worth of rows through the creation-time index,
    // however deep: never the table.
    for (what, scans, read) in &report {
        assert!(
            scans
                .iter()
                .any(|s| s.contains("workflow_status_created_at_index"))
                && !scans.iter().any(|s| s.starts_with("Seq Scan")),
            "{what} page: {scans:?}"
        );
        assert!(*read < 500.0, "{what} page read {read} rows: {scans:?}");
    }
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn schedules_list_their_next_ticks_and_pause_resume_and_trigger(db: TestDatabase) {
    let (dbos, api) = launch(&db).await;
    // Ticks at 03:00 UTC every day, and 09:30 in Paris on weekdays: none fires during the test.
    dbos.create_schedule(
        &Schedule::new("nightly", "testkit.scheduled", "0 3 * * *").context(json!("n")),
    )
    .await
    .unwrap();
    dbos.create_schedule(
        &Schedule::new("paris", "testkit.scheduled", "30 9 * * 1-5").timezone("Europe/Paris"),
    )
    .await
    .unwrap();
    let before = Utc::now();
    let listed = api.get_json("/api/schedules").await;
    let after = Utc::now();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["schedule_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["nightly", "paris"]);
    let nightly = &listed[0];
    assert_eq!(nightly["status"], "ACTIVE");
    assert_eq!(nightly["workflow_name"], "testkit.scheduled");
    assert_eq!(nightly["last_fired_at"], Value::Null);
    // The next five 03:00 UTC after now, one a day.
    let ticks: Vec<DateTime<Utc>> = nightly["next_ticks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            DateTime::parse_from_rfc3339(t.as_str().unwrap())
                .unwrap()
                .to_utc()
        })
        .collect();
    assert_eq!(ticks.len(), 5, "{nightly}");
    assert!(
        ticks[0] > before && ticks[0] <= after + chrono::Duration::days(1),
        "{ticks:?}"
    );
    for (i, t) in ticks.iter().enumerate() {
        assert_eq!(t.format("%H:%M:%S").to_string(), "03:00:00");
        if i > 0 {
            assert_eq!(*t - ticks[i - 1], chrono::Duration::days(1));
        }
    }
    // Paris: 09:30 local with the zone's offset, weekdays only.
    let paris = listed[1]["next_ticks"].as_array().unwrap();
    assert_eq!(paris.len(), 5);
    for t in paris {
        let t = DateTime::parse_from_rfc3339(t.as_str().unwrap()).unwrap();
        assert_eq!(t.format("%H:%M").to_string(), "09:30", "{t}");
        assert!(t.offset().local_minus_utc() == 3600 || t.offset().local_minus_utc() == 7200);
        assert!(!matches!(
            t.weekday(),
            chrono::Weekday::Sat | chrono::Weekday::Sun
        ));
    }

    // Pause: the row says so, the listing too; resume undoes it.
    let paused = api.post("/api/schedules/nightly/pause", json!({})).await;
    assert_eq!(paused.status, 204, "{}", paused.body);
    assert_eq!(schedule_status(&db, "nightly").await, "PAUSED");
    assert_eq!(api.get_json("/api/schedules").await[0]["status"], "PAUSED");
    assert_eq!(
        api.post("/api/schedules/nightly/resume", json!({}))
            .await
            .status,
        204
    );
    assert_eq!(schedule_status(&db, "nightly").await, "ACTIVE");
    api.post("/api/schedules/nightly/pause", json!({})).await;

    // Trigger: runs the workflow now with the context, even paused.
    let started = api
        .post_json("/api/schedules/nightly/trigger", json!({}))
        .await;
    let id = started["workflow_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sched-nightly-trigger-"), "{id}");
    eventually(
        "the triggered run to finish",
        Duration::from_secs(30),
        || async { (status_of(&db, &id).await == "SUCCESS").then_some(()) },
    )
    .await;
    let run = api.get_json(&format!("/workflows/{id}")).await;
    assert_eq!(run["Output"], "n");
    assert_eq!(run["ScheduleName"], "nightly");

    // Unknown schedules: 404.
    for action in ["pause", "resume", "trigger"] {
        api.post(&format!("/api/schedules/nope/{action}"), json!({}))
            .await
            .assert_error(404, action);
    }
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test(timeout = "120s")]
async fn deactivate_stops_this_executors_schedules(db: TestDatabase) {
    let (dbos, api) = admin::launch(
        db.config("testapp")
            .scheduler_polling_interval(Duration::from_millis(200)),
    )
    .await;
    dbos.create_schedule(&dbos_core::schedule::Schedule::new(
        "every-second",
        "testkit.scheduled",
        "* * * * * *",
    ))
    .await
    .unwrap();
    eventually("two scheduled runs", Duration::from_secs(30), || async {
        (runs_of(&db, "every-second").await >= 2).then_some(())
    })
    .await;
    let answer = api.get("/deactivate").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "deactivated"));
    // A tick already on its way may still land; then nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stopped = runs_of(&db, "every-second").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        runs_of(&db, "every-second").await,
        stopped,
        "a deactivated executor fired a schedule"
    );
    // Its queues still run work.
    run_checkout(&dbos, "after").await;
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn scraped(key: String) -> Result<i64, Error> {
    first(key).await
}

/// `GET /metrics` renders the Prometheus recorder the application installed and handed over,
/// behind the token; before it is handed over the route says how.
#[dbos_testkit::test]
async fn metrics_are_scraped_from_the_applications_prometheus_recorder(db: TestDatabase) {
    // The application's recorder, installed before launching (this test alone installs one
    // in this binary; other tests' metrics land in it too, under their own labels).
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this binary");
    let dbos = Dbos::launch(
        db.config("testapp")
            .admin_server(AdminServer::new(0).token("m3trics")),
    )
    .await
    .unwrap();
    let open = AdminApi::new(dbos.admin_address().expect("the admin server listens"));
    let api = open.clone().with_token("m3trics");

    let before = api.get("/metrics").await;
    before.assert_error(404, "no recorder handed over yet");
    assert!(before.body.contains("expose_prometheus"), "{}", before.body);

    dbos_core::admin::expose_prometheus(handle.clone()).unwrap();
    let again = dbos_core::admin::expose_prometheus(handle).unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Config);

    scraped("p1".into()).id("p1").on(&dbos).await.unwrap();
    open.get("/metrics")
        .await
        .assert_error(401, "a scrape without the token");
    let scrape = api.get("/metrics").await;
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    let body = scrape.body;
    assert!(
        body.lines()
            .any(|l| l == "dbos_workflows_started_total{workflow=\"scraped\"} 1"),
        "the workflow's start in Prometheus's text format: {body}"
    );
    assert!(
        body.contains("# HELP dbos_workflows_started_total "),
        "described at launch: {body}"
    );
    assert!(
        body.contains("dbos_step_duration_seconds"),
        "histograms rendered too: {body}"
    );
    dbos.shutdown().await.unwrap();
}
