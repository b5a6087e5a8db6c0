//! Messages, events and streams across languages, with the pinned DBOS Python (3.4.0):
//! Python's `DBOSClient.send` and SQL's `dbos.send_message` reach our `recv`; our events
//! and streams are read by `DBOSClient.get_event` / `read_stream` (woken by our
//! notifications); a Python workflow's event and stream are read by ours.

use std::time::Duration;

use dbos_core::{workflow, Error, ErrorKind};
use dbos_testkit::python::run_python;
use dbos_testkit::TestDatabase;
use futures_util::StreamExt;
use serde_json::{json, Value};

fn python_ok(out: &std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[workflow]
async fn py_inbox() -> Result<Vec<Value>, Error> {
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            dbos_core::recv::<Value>("greeting", Duration::from_secs(60))
                .await?
                .unwrap_or(Value::Null),
        );
    }
    // A pickled message (Python's default encoding) is refused, not misread.
    let refused = match dbos_core::recv::<Value>("pickled", Duration::from_secs(60)).await {
        Ok(v) => json!({ "unexpected": v }),
        Err(e) => json!({ "kind": format!("{:?}", e.kind()), "message": e.to_string() }),
    };
    got.push(refused);
    Ok(got)
}

const PY_SEND: &str = r#"
import sys
from dbos import DBOSClient, WorkflowSerializationFormat
url, dest = sys.argv[1], sys.argv[2]
c = DBOSClient(system_database_url=url)
c.send(dest, {"from": "python", "n": 3}, "greeting", idempotency_key="py-1",
       serialization_type=WorkflowSerializationFormat.PORTABLE)
c.send(dest, {"from": "python", "pickled": True}, "pickled")
c.destroy()
"#;

#[dbos_testkit::test]
async fn python_and_sql_sends_reach_our_recv(db: TestDatabase) {
    let dbos = db.launch().await;
    let h = py_inbox().id("py-inbox").on(&dbos).start().await.unwrap();
    python_ok(
        &run_python(PY_SEND, &[&db.url(), "py-inbox"]).await,
        "DBOSClient.send",
    );
    db.connect()
        .await
        .execute(
            "SELECT dbos.send_message('py-inbox', '{\"from\": \"sql\"}'::json, 'greeting', 'sql-1')",
            &[],
        )
        .await
        .unwrap();
    let got = h.result().await.unwrap();
    assert_eq!(got[0], json!({"from": "python", "n": 3}));
    assert_eq!(got[1], json!({"from": "sql"}));
    assert_eq!(got[2]["kind"], "Serialization", "{}", got[2]);
    let message = got[2]["message"].as_str().unwrap();
    assert!(
        message.contains("py_pickle") && message.contains("`pickled`"),
        "{message}"
    );
    let rows: Vec<(String, String, bool)> = db
        .connect()
        .await
        .query(
            "SELECT message_uuid, serialization, consumed FROM dbos.notifications ORDER BY topic, message_uuid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows[0],
        (
            "py-1::py-inbox".to_owned(),
            "portable_json".to_owned(),
            true
        )
    );
    assert_eq!(
        rows[1],
        ("sql-1".to_owned(), "portable_json".to_owned(), true)
    );
    assert_eq!(rows[2].1, "py_pickle");
    assert!(!rows[2].2, "the pickled message stays unconsumed");
}

#[workflow]
async fn publisher() -> Result<(), Error> {
    let _: Option<bool> = dbos_core::recv("go", Duration::from_secs(60)).await?;
    // Set after the Python reader is waiting: only a notification wakes it in time.
    dbos_core::sleep(Duration::from_millis(1500)).await?;
    dbos_core::set_event("status", &json!({"phase": "paid", "cents": 1999})).await?;
    dbos_core::write_stream("log", &"line 1").await?;
    dbos_core::write_stream("log", &json!({"n": 2})).await?;
    dbos_core::close_stream("log").await
}

/// Waits with a listener (so only a notification, or its 60 s re-check, wakes it).
const PY_READ: &str = r#"
import sys, json, time
from dbos import DBOSClient, WorkflowSerializationFormat
url, wf = sys.argv[1], sys.argv[2]
c = DBOSClient(system_database_url=url, use_listen_notify=True)
time.sleep(0.5)
c.send(wf, True, "go", serialization_type=WorkflowSerializationFormat.PORTABLE)
t0 = time.time()
event = c.get_event(wf, "status", timeout_seconds=20)
waited = time.time() - t0
stream = list(c.read_stream(wf, "log", timeout_seconds=20))
print(json.dumps({"event": event, "waited": waited, "stream": stream}))
c.destroy()
"#;

#[dbos_testkit::test]
async fn python_reads_our_events_and_streams(db: TestDatabase) {
    let dbos = db.launch().await;
    let h = publisher().id("rs-pub").on(&dbos).start().await.unwrap();
    let out = python_ok(
        &run_python(PY_READ, &[&db.url(), "rs-pub"]).await,
        "the Python reader",
    );
    h.result().await.unwrap();
    let got: Value = serde_json::from_str(out.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!(got["event"], json!({"phase": "paid", "cents": 1999}));
    assert_eq!(got["stream"], json!(["line 1", {"n": 2}]));
    let waited = got["waited"].as_f64().unwrap();
    assert!(
        waited < 10.0,
        "the Python reader was not woken by our notification (waited {waited} s)"
    );
}

const PY_WORKFLOW: &str = r#"
import sys
from dbos import DBOS, SetWorkflowID, WorkflowSerializationFormat
url = sys.argv[1]
DBOS(config={"name": "py-peer", "system_database_url": url, "application_version": "py-v1",
             "executor_id": "py-exec"})

@DBOS.workflow(serialization_type=WorkflowSerializationFormat.PORTABLE)
def py_publisher(n):
    DBOS.set_event("status", {"phase": "done", "n": n})
    for i in range(n):
        DBOS.write_stream("log", f"py line {i}")
    DBOS.close_stream("log")
    return n

DBOS.launch()
with SetWorkflowID("py-pub"):
    assert py_publisher(3) == 3
DBOS.destroy()
print("done")
"#;

#[dbos_testkit::test]
async fn we_read_a_python_workflows_event_and_stream(db: TestDatabase) {
    let dbos = db.launch().await;
    let out = python_ok(
        &run_python(PY_WORKFLOW, &[&db.url()]).await,
        "the Python workflow",
    );
    assert!(out.contains("done"), "{out}");
    let status: Option<Value> = dbos
        .get_event("py-pub", "status", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(status, Some(json!({"phase": "done", "n": 3})));
    let lines: Vec<String> = dbos
        .read_stream::<String>("py-pub", "log")
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(lines, vec!["py line 0", "py line 1", "py line 2"]);
    let all = dbos.get_all_events("py-pub").await.unwrap();
    assert_eq!(all.len(), 1);
    let e = dbos
        .get_event::<u32>("py-pub", "status", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialization);
}

/// A Python workflow that receives `n` messages on "seq" once told to "go".
const PY_FIFO_READER: &str = r#"
import sys, json
from dbos import DBOS, SetWorkflowID, WorkflowSerializationFormat
url, n = sys.argv[1], int(sys.argv[2])
DBOS(config={"name": "py-peer", "system_database_url": url, "application_version": "py-v1",
             "executor_id": "py-exec"})

@DBOS.workflow(serialization_type=WorkflowSerializationFormat.PORTABLE)
def py_fifo(n):
    DBOS.recv("go", timeout_seconds=60)
    return [DBOS.recv("seq", timeout_seconds=60) for _ in range(n)]

DBOS.launch()
with SetWorkflowID("py-fifo"):
    handle = DBOS.start_workflow(py_fifo, n)
print("ready", flush=True)
print(json.dumps(handle.get_result()), flush=True)
DBOS.destroy()
"#;

#[dbos_testkit::test]
async fn a_dbos_python_reader_receives_a_batch_between_the_messages_around_it(db: TestDatabase) {
    const N: u32 = 50;
    let dbos = db.launch().await;
    let mut py =
        dbos_testkit::python::spawn_python(PY_FIFO_READER, &[&db.url(), &(N + 2).to_string()])
            .await;
    assert_eq!(py.read_line(Duration::from_secs(120)).await, "ready");
    // DBOS Python orders by `created_at_epoch_ms` alone: each message needs its own
    // millisecond, in the order sent, none in the future.
    dbos.send("py-fifo", &0_u32, "seq").await.unwrap();
    dbos.send_batch(
        (1..=N)
            .map(|i| dbos_core::Message::new("py-fifo", &i).topic("seq"))
            .collect(),
    )
    .await
    .unwrap();
    dbos.send("py-fifo", &(N + 1), "seq").await.unwrap();
    dbos.send("py-fifo", &true, "go").await.unwrap();
    let line = py.read_line(Duration::from_secs(120)).await;
    let got: Vec<u32> =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(got, (0..=N + 1).collect::<Vec<_>>());
    assert!(
        py.wait(Duration::from_secs(60)).await,
        "the Python reader failed"
    );
}
