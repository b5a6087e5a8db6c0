//! The admin HTTP API over real HTTP (a hyper client on a TCP connection) against real
//! rows: DBOS's endpoints and shapes (field names checked against DBOS Python's own
//! classes), the operations' effects, JSON errors for bad input, the token, the refusal of a
//! non-loopback address without one, and keyset pagination.

use std::net::SocketAddr;
use std::time::Duration;

use dbos_core::admin::{serve, AdminServer};
use dbos_core::{step, workflow, Client, Dbos, Error, ErrorKind, Queue};
use dbos_testkit::crash::eventually;
use dbos_testkit::runs::{bump, runs as count};
use dbos_testkit::TestDatabase;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};

/// One request over a fresh connection: (status, body).
async fn call(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    call(addr, None, "GET", path, b"").await
}

async fn post(addr: SocketAddr, path: &str, body: Value) -> (u16, String) {
    call(addr, None, "POST", path, body.to_string().as_bytes()).await
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A JSON error with a message.
fn assert_error(answer: &(u16, String), status: u16, what: &str) {
    assert_eq!(answer.0, status, "{what}: {}", answer.1);
    let v = json_of(&answer.1);
    assert!(
        v["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no error message in {v}"
    );
}

#[step]
async fn first(key: String) -> Result<i64, Error> {
    bump(&format!("{key}/first"));
    Ok(1)
}

#[step]
async fn second(key: String) -> Result<i64, Error> {
    bump(&format!("{key}/second"));
    Ok(2)
}

#[step]
async fn third(key: String) -> Result<i64, Error> {
    bump(&format!("{key}/third"));
    Ok(3)
}

#[workflow]
async fn three_steps(key: String) -> Result<i64, Error> {
    Ok(first(key.clone()).await? + second(key.clone()).await? + third(key).await?)
}

#[step]
async fn refuse(key: String) -> Result<i64, Error> {
    Err(Error::new(
        ErrorKind::InvalidArgument,
        format!("card {key} declined"),
    ))
}

#[workflow]
async fn failing(key: String) -> Result<i64, Error> {
    refuse(key).await
}

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

async fn launch(db: &TestDatabase) -> (Dbos, SocketAddr) {
    let dbos = Dbos::launch(
        db.config("testapp")
            .queue(&LIMITED)
            .cancel_poll_interval(Duration::from_millis(100))
            .admin_server(AdminServer::new(0)),
    )
    .await
    .unwrap();
    let addr = dbos.admin_address().expect("the admin server listens");
    (dbos, addr)
}

async fn status_of(db: &TestDatabase, id: &str) -> String {
    db.connect()
        .await
        .query_one(
            "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
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
    let (dbos, addr) = launch(&db).await;
    let ok = three_steps("a1".into())
        .id("ord-a1")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    assert_eq!(ok.result().await.unwrap(), 6);
    let bad = failing("b1".into())
        .id("ord-b1")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    assert!(bad.result().await.is_err());
    three_steps("c1".into())
        .id("other-c1")
        .on(&dbos)
        .start()
        .await
        .unwrap()
        .result()
        .await
        .unwrap();

    let health = get(addr, "/dbos-healthz").await;
    assert_eq!(health, (200, "healthy".to_owned()));

    // The listing: every workflow, oldest first, in DBOS's shape.
    let (status, body) = post(addr, "/workflows", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let all = json_of(&body);
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
    assert_eq!(all[0]["WorkflowName"], "three_steps");
    assert!(all[0]["CreatedAt"].as_str().unwrap().parse::<i64>().is_ok());
    assert_eq!(all[0]["RecoveryAttempts"], "1");

    // Filters: status, name, prefix, order, limit, outputs.
    let failed = json_of(
        &post(
            addr,
            "/workflows",
            json!({"status": "ERROR", "load_output": true}),
        )
        .await
        .1,
    );
    assert_eq!(failed.as_array().unwrap().len(), 1);
    assert_eq!(failed[0]["WorkflowUUID"], "ord-b1");
    assert!(
        failed[0]["Error"]
            .as_str()
            .unwrap()
            .contains("card b1 declined"),
        "{failed}"
    );
    let named = json_of(
        &post(
            addr,
            "/workflows",
            json!({"workflow_name": ["three_steps"], "sort_desc": true}),
        )
        .await
        .1,
    );
    let named: Vec<&str> = named
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["WorkflowUUID"].as_str().unwrap())
        .collect();
    assert_eq!(named, vec!["other-c1", "ord-a1"]);
    let prefixed = json_of(
        &post(addr, "/workflows", json!({"workflow_id_prefix": "ord-", "limit": 1, "load_input": true, "load_output": true})).await.1,
    );
    assert_eq!(prefixed.as_array().unwrap().len(), 1);
    assert_eq!(prefixed[0]["Output"], "6");
    assert_eq!(
        json_of(prefixed[0]["Input"].as_str().unwrap()),
        json!({"args": ["a1"], "kwargs": {}})
    );
    let by_id = json_of(
        &post(
            addr,
            "/workflows",
            json!({"workflow_uuids": ["ord-b1", "nope"]}),
        )
        .await
        .1,
    );
    assert_eq!(by_id.as_array().unwrap().len(), 1);
    let later = json_of(
        &post(
            addr,
            "/workflows",
            json!({"start_time": "2999-01-01T00:00:00Z"}),
        )
        .await
        .1,
    );
    assert_eq!(later, json!([]));

    // One workflow, with its input and outcome.
    let (status, body) = get(addr, "/workflows/ord-a1").await;
    assert_eq!(status, 200, "{body}");
    let one = json_of(&body);
    assert_eq!(one["Output"], "6");
    assert_eq!(one["Status"], "SUCCESS");

    // Its steps, in DBOS's shape.
    let (status, body) = get(addr, "/workflows/ord-a1/steps").await;
    assert_eq!(status, 200, "{body}");
    let steps = json_of(&body);
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
    assert_error(
        &get(addr, "/workflows/nope").await,
        404,
        "get of an unknown id",
    );
    assert_error(
        &get(addr, "/workflows/nope/steps").await,
        404,
        "steps of an unknown id",
    );
    assert_error(
        &post(addr, "/workflows/nope/cancel", json!({})).await,
        404,
        "cancel of an unknown id",
    );

    // Queue metadata: DBOS's keys, limits left out when absent.
    let (status, body) = get(addr, "/dbos-workflow-queues-metadata").await;
    assert_eq!(status, 200, "{body}");
    let queues = json_of(&body);
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
    let (dbos, addr) = launch(&db).await;

    // Cancel a running workflow: it stops before its next step.
    held("h1".into()).id("h1").on(&dbos).start().await.unwrap();
    eventually(
        "the held step to start",
        Duration::from_secs(20),
        || async { (count("h1/held") == 1).then_some(()) },
    )
    .await;
    let (status, body) = post(addr, "/workflows/h1/cancel", json!({})).await;
    assert_eq!((status, body.as_str()), (204, ""));
    assert_eq!(status_of(&db, "h1").await, "CANCELLED");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(count("h1/first"), 0, "nothing ran after the cancel");

    // Resume: it continues from its checkpoint and finishes.
    let (status, _) = post(addr, "/workflows/h1/resume", json!({})).await;
    assert_eq!(status, 204);
    eventually(
        "the resumed workflow to finish",
        Duration::from_secs(30),
        || async { (status_of(&db, "h1").await == "SUCCESS").then_some(()) },
    )
    .await;

    // Fork from step 2 under a given id: step 1 is copied, 2 and 3 run again.
    three_steps("f1".into())
        .id("f1")
        .on(&dbos)
        .start()
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    let (status, body) = post(
        addr,
        "/workflows/f1/fork",
        json!({"start_step": 2, "new_workflow_id": "f1-fork"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body), json!({"workflow_id": "f1-fork"}));
    eventually("the fork to finish", Duration::from_secs(30), || async {
        (status_of(&db, "f1-fork").await == "SUCCESS").then_some(())
    })
    .await;
    assert_eq!(
        (count("f1/first"), count("f1/second"), count("f1/third")),
        (1, 2, 2)
    );
    let fork = json_of(&get(addr, "/workflows/f1-fork").await.1);
    assert_eq!(fork["ForkedFrom"], "f1");
    // The same id again: 409; a step past the history: 400.
    assert_error(
        &post(
            addr,
            "/workflows/f1/fork",
            json!({"start_step": 2, "new_workflow_id": "f1-fork"}),
        )
        .await,
        409,
        "a fork onto a taken id",
    );
    assert_error(
        &post(addr, "/workflows/f1/fork", json!({"start_step": 99})).await,
        400,
        "a fork past the history",
    );
    assert_error(
        &post(addr, "/workflows/f1/fork", json!({"start_step": 0})).await,
        400,
        "a fork from step 0",
    );

    // Restart: a new workflow from step 1.
    let (status, body) = post(addr, "/workflows/f1/restart", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let restarted = json_of(&body)["workflow_id"].as_str().unwrap().to_owned();
    assert_ne!(restarted, "f1");
    eventually("the restart to finish", Duration::from_secs(30), || async {
        (status_of(&db, &restarted).await == "SUCCESS").then_some(())
    })
    .await;
    assert_eq!(count("f1/first"), 2);

    // Recovery of a dead executor's pending workflow: back on the internal queue.
    let version = json_of(&get(addr, "/workflows/f1").await.1)["ApplicationVersion"]
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
    let (status, body) = post(addr, "/dbos-workflow-recovery", json!(["dead-executor"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body), json!(["orphan"]));
    assert_eq!(status_of(&db, "orphan").await, "ENQUEUED");
    let (_, again) = post(addr, "/dbos-workflow-recovery", json!(["dead-executor"])).await;
    assert_eq!(json_of(&again), json!([]), "recovery is idempotent");

    // Global timeout: active workflows created before the cutoff are cancelled.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (status, _) = post(
        addr,
        "/dbos-global-timeout",
        json!({"cutoff_epoch_timestamp_ms": now_ms + 1000}),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(status_of(&db, "orphan").await, "CANCELLED");

    // Garbage collection: keep the newest 2 workflows; older finished ones are deleted.
    let (status, body) = post(addr, "/dbos-garbage-collect", json!({"rows_threshold": 2})).await;
    assert_eq!(status, 204, "{body}");
    let left: i64 = pg
        .query_one("SELECT count(*) FROM dbos.workflow_status", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 2);
    assert_error(
        &get(addr, "/workflows/h1").await,
        404,
        "a collected workflow",
    );

    // Deactivate: answered as DBOS answers it.
    assert_eq!(
        get(addr, "/deactivate").await,
        (200, "deactivated".to_owned())
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn the_dashboard_reads_events_messages_streams_and_queues(db: TestDatabase) {
    let (dbos, addr) = launch(&db).await;
    let h = talker("t1".into())
        .id("t1")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("the stream entry", Duration::from_secs(20), || async {
        let x = json_of(&get(addr, "/api/workflows/t1/exchanges").await.1);
        (x["streams"].as_array().is_some_and(|s| !s.is_empty())).then_some(())
    })
    .await;
    dbos.send("t1", &"hello", "greeting").await.unwrap();
    assert_eq!(h.result().await.unwrap(), "t1: hello");
    let (status, body) = get(addr, "/api/workflows/t1/exchanges").await;
    assert_eq!(status, 200, "{body}");
    let x = json_of(&body);
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
    assert_error(
        &get(addr, "/api/workflows/nope/exchanges").await,
        404,
        "exchanges of an unknown id",
    );

    let queues = json_of(&get(addr, "/api/queues").await.1);
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
    let (dbos, addr) = launch(&db).await;
    three_steps("e1".into())
        .id("e1")
        .on(&dbos)
        .start()
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
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
            let answer = call(addr, None, "POST", path, body).await;
            assert!(
                (400..500).contains(&answer.0),
                "POST {path} {:?}: {answer:?}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            );
            json_of(&answer.1);
        }
    }
    assert_error(
        &post(addr, "/dbos-garbage-collect", json!({})).await,
        400,
        "a collection that deletes nothing",
    );
    assert_error(&get(addr, "/no/such/path").await, 404, "an unknown path");
    assert_error(&get(addr, "/workflows").await, 405, "a listing with GET");
    assert_error(
        &post(addr, "/workflows/%20/cancel", json!({})).await,
        400,
        "a blank id",
    );
    // Still serving, and nothing was changed by the bad requests.
    assert_eq!(get(addr, "/dbos-healthz").await.0, 200);
    assert_eq!(status_of(&db, "e1").await, "SUCCESS");
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_client_serves_it_and_the_token_guards_it(db: TestDatabase) {
    let dbos = db.launch().await;
    three_steps("k1".into())
        .id("k1")
        .on(&dbos)
        .start()
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    let client = Client::connect(db.url()).await.unwrap();
    let admin = serve(&client, AdminServer::new(0).token("s3cret"))
        .await
        .unwrap();
    let addr = admin.address();
    assert!(addr.ip().is_loopback());

    let missing = call(addr, None, "POST", "/workflows", b"{}").await;
    assert_error(&missing, 401, "no token");
    let wrong = call(addr, Some("guess"), "POST", "/workflows", b"{}").await;
    assert_error(&wrong, 401, "a wrong token");
    assert_error(
        &call(addr, None, "POST", "/workflows/k1/cancel", b"").await,
        401,
        "a cancel without the token",
    );
    assert_error(
        &call(addr, None, "GET", "/api/queues", b"").await,
        401,
        "the dashboard's reads without the token",
    );
    let (status, body) = call(addr, Some("s3cret"), "POST", "/workflows", b"{}").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)[0]["WorkflowUUID"], "k1");
    // Open without it: the health check and the page (which holds no data).
    assert_eq!(get(addr, "/dbos-healthz").await.0, 200);
    let page = get(addr, "/").await;
    assert_eq!(page.0, 200);
    assert!(page.1.contains("<html"), "{}", page.1);
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
    let (dbos, addr) = launch(&db).await;
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
            let (status, body) = post(addr, "/workflows", filter).await;
            assert_eq!(status, 200, "{body}");
            let page = json_of(&body);
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

#[workflow]
async fn ticked(
    _scheduled_at: chrono::DateTime<chrono::Utc>,
    _context: Value,
) -> Result<(), Error> {
    Ok(())
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

#[dbos_testkit::test(timeout = "120s")]
async fn deactivate_stops_this_executors_schedules(db: TestDatabase) {
    let dbos = Dbos::launch(
        db.config("testapp")
            .scheduler_polling_interval(Duration::from_millis(200))
            .admin_server(AdminServer::new(0)),
    )
    .await
    .unwrap();
    let addr = dbos.admin_address().unwrap();
    dbos.create_schedule(&dbos_core::schedule::Schedule::new(
        "every-second",
        "ticked",
        "* * * * * *",
    ))
    .await
    .unwrap();
    eventually("two scheduled runs", Duration::from_secs(30), || async {
        (runs_of(&db, "every-second").await >= 2).then_some(())
    })
    .await;
    assert_eq!(
        get(addr, "/deactivate").await,
        (200, "deactivated".to_owned())
    );
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
    three_steps("after".into())
        .id("after")
        .on(&dbos)
        .start()
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    dbos.shutdown().await.unwrap();
}
