//! Workflows written by DBOS Python (`dbos==3.4.0`): our CLI and `Client` list, inspect,
//! cancel, resume and fork them, and a DBOS Python worker then runs what we resumed or forked
//! (recorded steps replayed, copied steps not re-run), counted by the Python steps' own rows.

use std::process::Output;

use dbos_core::manage::{ForkOptions, ListWorkflows, Payload};
use dbos_core::{Client, Status};
use dbos_testkit::python::run_python;
use dbos_testkit::TestDatabase;
use serde_json::{json, Value};

const APP: &str = r#"
import os, sys, time
import psycopg
from dbos import DBOS, DBOSPortableJSONSerializer, SetWorkflowID

url, phase = sys.argv[1], sys.argv[2]
pg_url = url.replace("postgres://", "postgresql://", 1)

def log(step):
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("INSERT INTO py_runs (workflow_id, step) VALUES (%s, %s)", (DBOS.workflow_id, step))

@DBOS.step()
def step_one(x):
    log("one")
    return x + 1

@DBOS.step()
def step_two(x):
    log("two")
    return x * 2

@DBOS.step()
def step_three(x):
    log("three")
    return x - 3

@DBOS.workflow()
def py_three(x):
    return {"result": step_three(step_two(step_one(x)))}

@DBOS.workflow()
def py_fails(x):
    step_one(x)
    raise ValueError(f"python failure {x}")

@DBOS.workflow()
def py_slow(x):
    a = step_one(x)
    DBOS.sleep(2)
    return step_two(a)

DBOS(config={
    "name": "pyapp",
    "system_database_url": pg_url,
    "application_version": "v1",
    "executor_id": "py-" + phase,
    "serializer": DBOSPortableJSONSerializer(),
})
DBOS.launch()

def runs(wf, step):
    with psycopg.connect(pg_url) as c:
        return c.execute("SELECT count(*) FROM py_runs WHERE workflow_id = %s AND step = %s", (wf, step)).fetchone()[0]

if phase == "seed":
    with SetWorkflowID("py-done"):
        py_three(5)
    try:
        with SetWorkflowID("py-fail"):
            py_fails(7)
    except ValueError:
        pass
    with SetWorkflowID("py-stuck"):
        DBOS.start_workflow(py_slow, 1)
    while runs("py-stuck", "one") == 0:
        time.sleep(0.05)
    time.sleep(0.3)
    # Dies mid-workflow: py-stuck stays PENDING with its first step recorded.
    os._exit(0)
else:
    for wf in sys.argv[3:]:
        print(wf, DBOS.retrieve_workflow(wf).get_result(), flush=True)
    DBOS.destroy()
"#;

fn check(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn dbos_rs_json(args: &[&str]) -> Value {
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.push("--json".into());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_dbos-rs"))
            .env_remove("DBOS_SYSTEM_DATABASE_URL")
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = check(&out, "dbos-rs");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[dbos_testkit::test]
async fn our_cli_and_client_operate_dbos_python_workflows(db: TestDatabase) {
    let url = db.url();
    let s = url.as_str();
    let sql = db.connect().await;
    sql.batch_execute("CREATE TABLE py_runs (id bigserial PRIMARY KEY, workflow_id text NOT NULL, step text NOT NULL)")
        .await
        .unwrap();
    check(&run_python(APP, &[s, "seed"]).await, "the Python seed");
    let runs = |wf: &'static str, step: &'static str| {
        let sql = &sql;
        async move {
            sql.query_one(
                "SELECT count(*) FROM py_runs WHERE workflow_id = $1 AND step = $2",
                &[&wf, &step],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };

    // Listing and inspecting, through the CLI.
    let listed = dbos_rs_json(&["workflow", "list", "-s", s]).await;
    let by_id = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["workflow_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not listed: {listed}"))
    };
    assert_eq!(by_id("py-done")["status"], "SUCCESS");
    assert_eq!(by_id("py-done")["name"], "py_three");
    assert_eq!(
        by_id("py-done")["input"],
        json!({"args": [5], "kwargs": {}})
    );
    assert_eq!(by_id("py-done")["output"], json!({"result": 9}));
    assert_eq!(by_id("py-fail")["status"], "ERROR");
    assert_eq!(by_id("py-fail")["error"], "python failure 7");
    assert_eq!(by_id("py-stuck")["status"], "PENDING");
    assert_eq!(by_id("py-stuck")["executor_id"], "py-seed");
    let steps = dbos_rs_json(&["workflow", "steps", "py-done", "-s", s]).await;
    let outputs: Vec<&Value> = steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["output"])
        .collect();
    assert_eq!(outputs, vec![&json!(6), &json!(12), &json!(9)]);
    let got = dbos_rs_json(&["workflow", "get", "py-stuck", "-s", s]).await;
    assert_eq!(got["app_version"], "v1");

    // And through the client.
    let client = Client::connect(url.clone()).await.unwrap();
    let done = client
        .list_workflows(
            &ListWorkflows::new()
                .name("py_three")
                .application_name("pyapp"),
        )
        .await
        .unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].output, Some(Payload::Decoded(json!({"result": 9}))));
    let steps = client.list_workflow_steps("py-stuck").await.unwrap();
    assert_eq!(
        steps
            .iter()
            .map(|s| s.function_name.as_str())
            .collect::<Vec<_>>(),
        vec!["step_one", "DBOS.sleep"]
    );
    let failed = client.get_workflow("py-fail").await.unwrap();
    assert_eq!(
        failed
            .error
            .as_ref()
            .and_then(|e| e.decoded())
            .map(|e| e.name.as_str()),
        Some("ValueError")
    );

    // The stuck workflow: cancelled and resumed by our CLI; a fork of the finished one by
    // our CLI (from step 3) and one by our client (from step 2).
    dbos_rs_json(&["workflow", "cancel", "py-stuck", "-s", s]).await;
    assert_eq!(
        client.get_workflow_status("py-stuck").await.unwrap(),
        Status::Cancelled
    );
    let resumed = dbos_rs_json(&["workflow", "resume", "py-stuck", "-s", s]).await;
    assert_eq!(resumed["status"], "ENQUEUED");
    let forked = dbos_rs_json(&[
        "workflow",
        "fork",
        "py-done",
        "-S",
        "3",
        "-f",
        "py-fork-3",
        "-s",
        s,
    ])
    .await;
    assert_eq!(forked["forked_from"], "py-done");
    client
        .fork_workflow("py-done", 2, &ForkOptions::new().workflow_id("py-fork-2"))
        .await
        .unwrap();

    // A DBOS Python worker (another executor) runs them from the internal queue.
    let out = check(
        &run_python(APP, &[s, "worker", "py-stuck", "py-fork-3", "py-fork-2"]).await,
        "the Python worker",
    );
    assert!(out.contains("py-stuck 4"), "{out}");
    assert!(out.contains("py-fork-3 {'result': 9}"), "{out}");
    assert!(out.contains("py-fork-2 {'result': 9}"), "{out}");
    assert_eq!(
        (runs("py-stuck", "one").await, runs("py-stuck", "two").await),
        (1, 1),
        "the recorded step was not re-run"
    );
    assert_eq!(
        (
            runs("py-fork-3", "one").await,
            runs("py-fork-3", "two").await,
            runs("py-fork-3", "three").await
        ),
        (0, 0, 1),
        "the copied steps were not re-run"
    );
    assert_eq!(
        (
            runs("py-fork-2", "one").await,
            runs("py-fork-2", "two").await,
            runs("py-fork-2", "three").await
        ),
        (0, 1, 1)
    );
    let info = client.get_workflow("py-stuck").await.unwrap();
    assert_eq!(
        (info.status, info.executor_id.as_deref()),
        (Status::Success, Some("py-worker"))
    );
    assert_eq!(info.output, Some(Payload::Decoded(json!(4))));
}
