//! What an operator needs around a waiting workflow: the steps listing says what a wait's
//! recorded deadline is, and `send`, `get-event`, `events` and `read-stream` reach the
//! workflow without SQL.

mod common;

use std::time::Duration;

use common::{json_of, ok};
use dbos_core::{step, workflow, Error};
use dbos_testkit::crash::eventually;
use dbos_testkit::TestDatabase;
use serde_json::Value;

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
