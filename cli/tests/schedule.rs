//! `dbos-rs schedule list|get|pause|resume|delete|backfill|trigger` against a live database
//! whose executor runs what the verbs enqueue.

use std::time::Duration;

mod common;

use common::{fails, json_of, ok};
use dbos_core::schedule::chrono::{DateTime, Utc};
use dbos_core::schedule::Schedule;
use dbos_core::{workflow, Dbos, Error};
use dbos_testkit::crash::eventually;
use dbos_testkit::TestDatabase;
use serde_json::{json, Value};

#[workflow]
async fn report(scheduled_at: DateTime<Utc>, context: Value) -> Result<String, Error> {
    Ok(format!("{scheduled_at} {}", context["to"]))
}

async fn status_of(db: &TestDatabase, id: &str) -> Option<String> {
    db.connect()
        .await
        .query_opt(
            "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = $1",
            &[&id],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[dbos_testkit::test]
async fn every_schedule_verb_on_a_live_database(db: TestDatabase) {
    let dbos = Dbos::launch(
        db.config("testapp")
            .scheduler_polling_interval(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let url = db.url();
    let s = url.as_str();
    // New Year in Paris: nothing fires by itself during the test.
    dbos.create_schedule(
        &Schedule::new("cli-report", "report", "0 0 0 1 1 *")
            .timezone("Europe/Paris")
            .context(json!({"to": "ops"})),
    )
    .await
    .unwrap();
    dbos.create_schedule(&Schedule::new("cli-other", "report", "0 0 1 1 *"))
        .await
        .unwrap();

    let list = json_of(&["schedule", "list", "-s", s]).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["schedule_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cli-other", "cli-report"]);
    let table = ok(&["schedule", "list", "-s", s]).await;
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("Europe/Paris"), "{table}");

    let one = json_of(&["schedule", "get", "cli-report", "-s", s]).await;
    assert_eq!(one["status"], "ACTIVE");
    assert_eq!(one["context"], json!({"to": "ops"}));
    assert_eq!(one["cron_timezone"], "Europe/Paris");
    assert_eq!(one["workflow_name"], "report");
    assert_eq!(one["application_name"], "testapp");

    ok(&["schedule", "pause", "cli-report", "-s", s]).await;
    let paused = json_of(&["schedule", "list", "-S", "PAUSED", "-s", s]).await;
    assert_eq!(paused.as_array().unwrap().len(), 1);
    assert_eq!(paused[0]["schedule_name"], "cli-report");
    ok(&["schedule", "resume", "cli-report", "-s", s]).await;
    let one = json_of(&["schedule", "get", "cli-report", "-s", s]).await;
    assert_eq!(one["status"], "ACTIVE");

    // Three New Years in Paris between these times.
    let filled = json_of(&[
        "schedule",
        "backfill",
        "cli-report",
        "--start",
        "2023-06-01T00:00:00Z",
        "--end",
        "2026-06-01T00:00:00Z",
        "-s",
        s,
    ])
    .await;
    let ids: Vec<&str> = filled["workflow_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "sched-cli-report-2024-01-01T00:00:00+01:00",
            "sched-cli-report-2025-01-01T00:00:00+01:00",
            "sched-cli-report-2026-01-01T00:00:00+01:00",
        ]
    );
    let triggered = json_of(&["schedule", "trigger", "cli-report", "-s", s]).await;
    let trigger_id = triggered["workflow_id"].as_str().unwrap().to_owned();
    assert!(
        trigger_id.starts_with("sched-cli-report-trigger-"),
        "{trigger_id}"
    );
    for id in ids.iter().copied().chain([trigger_id.as_str()]) {
        eventually(&format!("{id} to run"), Duration::from_secs(30), || async {
            (status_of(&db, id).await.as_deref() == Some("SUCCESS")).then_some(())
        })
        .await;
    }
    let runs = json_of(&["workflow", "list", "-s", s]).await;
    assert_eq!(runs.as_array().unwrap().len(), 4);
    // The runs of one schedule, by its name.
    let other = json_of(&["schedule", "trigger", "cli-other", "-s", s]).await;
    let other_id = other["workflow_id"].as_str().unwrap().to_owned();
    eventually(
        &format!("{other_id} to run"),
        Duration::from_secs(30),
        || async { (status_of(&db, &other_id).await.as_deref() == Some("SUCCESS")).then_some(()) },
    )
    .await;
    let listed = |name: &'static str| async move {
        let rows = json_of(&["workflow", "list", "--schedule-name", name, "-s", s]).await;
        let mut ids: Vec<String> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["workflow_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let mut report_ids: Vec<String> = ids.iter().map(|i| (*i).to_owned()).collect();
    report_ids.push(trigger_id.clone());
    report_ids.sort();
    assert_eq!(listed("cli-report").await, report_ids);
    assert_eq!(listed("cli-other").await, std::slice::from_ref(&other_id));

    ok(&["schedule", "delete", "cli-other", "-s", s]).await;
    let list = json_of(&["schedule", "list", "-s", s]).await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // An operator's typo is an error, not a silent no-op.
    for verb in ["get", "pause", "resume", "delete", "trigger"] {
        let e = fails(&["schedule", verb, "cli-nope", "-s", s]).await;
        assert!(e.contains("no schedule named `cli-nope`"), "{verb}: {e}");
    }
    let e = fails(&["schedule", "list", "-S", "SLEEPING", "-s", s]).await;
    assert!(e.contains("ACTIVE or PAUSED"), "{e}");
    let e = fails(&[
        "schedule",
        "backfill",
        "cli-report",
        "--start",
        "yesterday",
        "--end",
        "now",
        "-s",
        s,
    ])
    .await;
    assert!(e.contains("--start"), "{e}");
    dbos.shutdown().await.unwrap();
}
