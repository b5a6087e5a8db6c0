//! What an operator needs around a waiting workflow: the steps listing says what a wait's
//! recorded deadline is, and `send`, `get-event`, `events` and `read-stream` reach the
//! workflow without SQL.

mod common;

use std::time::Duration;

use common::{dbos_rs, fails, json_of, ok, ok_with_note};
use dbos_core::{step, workflow, Error};
use dbos_testkit::crash::eventually;
use dbos_testkit::TestDatabase;
use serde_json::{json, Value};

#[step]
async fn prepare(order: String) -> Result<String, Error> {
    Ok(format!("{order} ready"))
}

/// Prepares an order, pauses briefly, then waits up to two minutes for an approval.
#[workflow]
async fn approval(order: String) -> Result<String, Error> {
    prepare(order.clone()).await?;
    dbos_core::sleep(Duration::from_millis(20)).await?;
    let answer: Option<String> = dbos_core::recv("approve", Duration::from_secs(120)).await?;
    Ok(answer.unwrap_or_else(|| "timed out".to_owned()))
}

/// Waits for an approval, publishing its progress as events and a stream.
#[workflow]
async fn review(order: String) -> Result<String, Error> {
    dbos_core::set_event("stage", &"waiting").await?;
    dbos_core::write_stream("log", &format!("{order} started")).await?;
    let answer: Option<String> = dbos_core::recv("approve", Duration::from_secs(120)).await?;
    let answer = answer.unwrap_or_else(|| "timed out".to_owned());
    dbos_core::set_event("stage", &format!("approved by {answer}")).await?;
    dbos_core::set_event("amount", &42).await?;
    dbos_core::write_stream("log", &answer).await?;
    dbos_core::close_stream("log").await?;
    Ok(answer)
}

/// The table row of step `id`.
fn row(table: &str, id: u32) -> String {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&id.to_string()))
        .unwrap_or_else(|| panic!("no step {id}: {table}"))
        .to_owned()
}

/// A recv's deadline is recorded as a `DBOS.sleep` at the next step id that "completes" at
/// the deadline: the listing names it the deadline of the wait before it (still waiting, or
/// the recorded `DBOS.recv`), gives its time, and no two-minute duration. A real sleep
/// stays a sleep.
#[dbos_testkit::test]
async fn a_waits_deadline_is_labelled_as_such(db: TestDatabase) {
    let dbos = db.launch().await;
    let url = db.url();
    let s = url.as_str();
    let handle = approval("order-7".into())
        .id("wf-approve")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually(
        "the recv to record its deadline",
        Duration::from_secs(20),
        || async {
            let steps = json_of(&["workflow", "steps", "wf-approve", "-s", s]).await;
            (steps.as_array().unwrap().len() == 3).then_some(())
        },
    )
    .await;
    let table = ok(&["workflow", "steps", "wf-approve", "-s", s]).await;
    let sleep = row(&table, 2);
    assert!(
        sleep.contains("DBOS.sleep") && !sleep.contains("deadline"),
        "{table}"
    );
    let deadline = row(&table, 4);
    assert!(
        deadline.contains("DBOS.sleep: deadline of step 3 (still waiting)")
            && deadline.contains("until 20"),
        "{table}"
    );
    assert!(
        !deadline.contains(" ms"),
        "a deadline is no duration: {table}"
    );

    dbos.send("wf-approve", &"yes", "approve").await.unwrap();
    assert_eq!(handle.result().await.unwrap(), "yes");
    let table = ok(&["workflow", "steps", "wf-approve", "-s", s]).await;
    assert!(row(&table, 3).contains("DBOS.recv"), "{table}");
    let deadline = row(&table, 4);
    assert!(
        deadline.contains("DBOS.sleep: deadline of step 3 (DBOS.recv)")
            && !deadline.contains(" ms"),
        "{table}"
    );
    // JSON keeps DBOS's step objects as they are.
    let steps: Value = json_of(&["workflow", "steps", "wf-approve", "-s", s]).await;
    assert_eq!(steps[3]["function_name"], "DBOS.sleep");
    dbos.shutdown().await.unwrap();
}

/// An operator releases a workflow waiting on `recv` with `dbos-rs workflow send` (once per
/// idempotency key), and reads what it wrote with `get-event`, `events` and `read-stream`.
#[dbos_testkit::test]
async fn an_operator_releases_a_waiting_workflow_and_reads_what_it_wrote(db: TestDatabase) {
    let dbos = db.launch().await;
    let url = db.url();
    let s = url.as_str();
    let handle = review("order-9".into())
        .id("wf-review")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("the workflow to wait", Duration::from_secs(20), || async {
        let steps = json_of(&["workflow", "steps", "wf-review", "-s", s]).await;
        (steps.as_array().unwrap().len() == 3).then_some(())
    })
    .await;

    // What it wrote so far.
    assert_eq!(
        ok(&["workflow", "get-event", "wf-review", "stage", "-s", s])
            .await
            .trim(),
        "\"waiting\""
    );
    let table = ok(&["workflow", "events", "wf-review", "-s", s]).await;
    assert!(
        table.starts_with("KEY") && table.contains("stage  \"waiting\""),
        "{table}"
    );
    let e = fails(&["workflow", "get-event", "wf-review", "amount", "-s", s]).await;
    assert!(
        e.contains("has not set event `amount`") && e.contains("dbos-rs workflow events wf-review"),
        "{e}"
    );
    // A stream still being written: what is there, then a word that it is still open.
    let (values, note) = ok_with_note(&[
        "workflow",
        "read-stream",
        "wf-review",
        "log",
        "--timeout",
        "3",
        "-s",
        s,
    ])
    .await;
    assert_eq!(values, "\"order-9 started\"\n");
    assert!(
        note.contains("still open") && note.contains("-o/--offset 1"),
        "{note}"
    );

    // Bad input is refused before anything is sent; a missing workflow at once.
    let e = fails(&[
        "workflow",
        "send",
        "wf-review",
        "yes",
        "--topic",
        "approve",
        "-s",
        s,
    ])
    .await;
    assert!(
        e.contains("is not JSON") && e.contains("'\"approved\"'"),
        "{e}"
    );
    let e = fails(&["workflow", "send", "nobody", "\"yes\"", "-s", s]).await;
    assert!(e.contains("nobody"), "{e}");
    let started = std::time::Instant::now();
    let e = fails(&[
        "workflow",
        "get-event",
        "nobody",
        "stage",
        "--timeout",
        "60",
        "-s",
        s,
    ])
    .await;
    assert!(e.contains("no workflow has the id `nobody`"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "it waited out the timeout"
    );

    // The approval: sent twice with one idempotency key, delivered once.
    let send = [
        "workflow",
        "send",
        "wf-review",
        "\"yes\"",
        "--topic",
        "approve",
        "--idempotency-key",
        "ticket-17",
        "-s",
        s,
    ];
    let out = ok(&send).await;
    assert!(
        out.contains("sent \"yes\" to workflow wf-review on topic `approve`"),
        "{out}"
    );
    ok(&send).await;
    assert_eq!(handle.result().await.unwrap(), "yes");
    let delivered: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM dbos.notifications WHERE destination_uuid = 'wf-review'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(delivered, 1);

    // What it wrote in the end.
    assert_eq!(
        json_of(&["workflow", "get-event", "wf-review", "stage", "-s", s]).await,
        json!("approved by yes")
    );
    assert_eq!(
        json_of(&["workflow", "events", "wf-review", "-s", s]).await,
        json!({"stage": "approved by yes", "amount": 42})
    );
    let (values, note) =
        ok_with_note(&["workflow", "read-stream", "wf-review", "log", "-s", s]).await;
    assert_eq!(values, "\"order-9 started\"\n\"yes\"\n");
    assert!(
        note.contains("end of stream `log`") && note.contains("2 values"),
        "{note}"
    );
    let out = dbos_rs(&[
        "workflow",
        "read-stream",
        "wf-review",
        "log",
        "-o",
        "1",
        "--json",
        "-s",
        s,
    ])
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "\"yes\"\n");
    dbos.shutdown().await.unwrap();
}
