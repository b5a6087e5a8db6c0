//! Schedules shared with the pinned DBOS Python (3.4.0): a schedule its client creates is
//! run by our executor, and one we create is listed, read and paused by its client.

use std::sync::Mutex;
use std::time::Duration;

use dbos_core::schedule::chrono::{DateTime, Utc};
use dbos_core::schedule::{Schedule, ScheduleStatus};
use dbos_core::{workflow, Dbos, Error};
use dbos_testkit::crash::eventually;
use dbos_testkit::python::run_python;
use dbos_testkit::TestDatabase;
use serde_json::{json, Value};

static SEEN: Mutex<Vec<(DateTime<Utc>, Value)>> = Mutex::new(Vec::new());

#[workflow]
async fn py_scheduled(scheduled_at: DateTime<Utc>, context: Value) -> Result<(), Error> {
    SEEN.lock().unwrap().push((scheduled_at, context));
    Ok(())
}

/// The workflow of the tick-id comparison (kept apart from `SEEN`, which another test reads).
#[workflow]
async fn ids_only(_scheduled_at: DateTime<Utc>, _context: Value) -> Result<(), Error> {
    Ok(())
}

fn python_ok(out: &std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const PY_CREATE: &str = r#"
import sys
from dbos import DBOSClient, DBOSPortableJSONSerializer
c = DBOSClient(system_database_url=sys.argv[1], application_name="testapp",
               serializer=DBOSPortableJSONSerializer())
c.create_schedule(schedule_name="made-in-python", workflow_name="py_scheduled",
                  schedule="* * * * * *", context={"from": "python", "n": 2})
c.destroy()
pickling = DBOSClient(system_database_url=sys.argv[1], application_name="testapp")
pickling.create_schedule(schedule_name="pickled", workflow_name="py_scheduled",
                         schedule="* * * * * *", context={"from": "pickle"})
pickling.destroy()
"#;

const PY_READ: &str = r#"
import json, sys
from dbos import DBOSClient, DBOSPortableJSONSerializer
c = DBOSClient(system_database_url=sys.argv[1], application_name="testapp",
               serializer=DBOSPortableJSONSerializer())
listed = {s["schedule_name"]: s for s in c.list_schedules()}
one = c.get_schedule("made-in-rust")
c.pause_schedule("made-in-rust")
print(json.dumps({
    "names": sorted(listed),
    "context": one["context"],
    "status": one["status"],
    "cron_timezone": one["cron_timezone"],
    "workflow_name": one["workflow_name"],
}))
c.destroy()
"#;

#[dbos_testkit::test(timeout = "120s")]
async fn python_created_schedules_run_here_and_ours_are_pythons_to_read(db: TestDatabase) {
    let dbos = Dbos::launch(
        db.config("testapp")
            .scheduler_polling_interval(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    python_ok(
        &run_python(PY_CREATE, &[&db.url()]).await,
        "DBOSClient.create_schedule",
    );
    let info = dbos.get_schedule("made-in-python").await.unwrap().unwrap();
    assert_eq!(info.status, ScheduleStatus::Active);
    assert_eq!(info.application_name.as_deref(), Some("testapp"));
    assert_eq!(
        info.context.decoded(),
        Some(&json!({"from": "python", "n": 2}))
    );
    // Our executor fires it: runs with the schedule's name, the context as Python wrote it.
    eventually(
        "two runs of the Python schedule",
        Duration::from_secs(30),
        || async { (SEEN.lock().unwrap().len() >= 2).then_some(()) },
    )
    .await;
    assert!(SEEN
        .lock()
        .unwrap()
        .iter()
        .all(|(_, c)| c == &json!({"from": "python", "n": 2})));
    let runs: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM dbos.workflow_status
              WHERE schedule_name = 'made-in-python' AND workflow_uuid LIKE 'sched-made-in-python-%+00:00'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(runs >= 2, "{runs}");
    dbos.delete_schedule("made-in-python").await.unwrap();
    // A pickled context (Python's default serializer) is shown as stored and never fired.
    let pickled = dbos.get_schedule("pickled").await.unwrap().unwrap();
    assert!(
        pickled.context.raw_text().is_some(),
        "{:?}",
        pickled.context
    );
    let fired: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM dbos.workflow_status WHERE schedule_name = 'pickled'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(fired, 0);
    dbos.delete_schedule("pickled").await.unwrap();

    dbos.create_schedule(
        &Schedule::new("made-in-rust", "py_scheduled", "0 0 9 * * 1-5")
            .timezone("Asia/Tokyo")
            .context(json!({"from": "rust"})),
    )
    .await
    .unwrap();
    let out = python_ok(
        &run_python(PY_READ, &[&db.url()]).await,
        "DBOSClient.list_schedules",
    );
    let seen: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        seen,
        json!({
            "names": ["made-in-rust"],
            "context": {"from": "rust"},
            "status": "ACTIVE",
            "cron_timezone": "Asia/Tokyo",
            "workflow_name": "py_scheduled",
        })
    );
    let info = dbos.get_schedule("made-in-rust").await.unwrap().unwrap();
    assert_eq!(info.status, ScheduleStatus::Paused, "paused by Python");
    dbos.shutdown().await.unwrap();
}

/// The tick ids DBOS Python's backfill computes (its `croniter` walk and `isoformat()` ids),
/// one a line.
const PY_TICK_IDS: &str = r#"
import sys
from datetime import datetime
from zoneinfo import ZoneInfo
from croniter import croniter
name, cron, zone, start, end = sys.argv[1:6]
tz = ZoneInfo(zone)
start = datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(tz)
end = datetime.fromisoformat(end.replace("Z", "+00:00"))
it = croniter(cron, start, second_at_beginning=True)
while True:
    t = it.get_next(datetime)
    if t >= end:
        break
    print(f"sched-{name}-{t.isoformat()}")
"#;

#[dbos_testkit::test(timeout = "120s")]
async fn tick_ids_match_dbos_pythons_including_daylight_saving(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp")).await.unwrap();
    let cases = [
        (
            "utc-seconds",
            "*/15 * * * * *",
            "UTC",
            "2026-12-06T20:00:00Z",
            "2026-12-06T20:01:00Z",
        ),
        (
            "paris-daily",
            "0 9 * * *",
            "Europe/Paris",
            "2026-03-27T12:00:00Z",
            "2026-04-01T12:00:00Z",
        ),
        (
            "ny-hourly",
            "0 0 * * * *",
            "America/New_York",
            "2026-11-01T03:30:00Z",
            "2026-11-01T08:30:00Z",
        ),
        (
            "paris-fall",
            "0 */30 * * * *",
            "Europe/Paris",
            "2026-10-24T23:45:00Z",
            "2026-10-25T02:15:00Z",
        ),
    ];
    for (name, cron, zone, start, end) in cases {
        let python = python_ok(
            &run_python(PY_TICK_IDS, &[name, cron, zone, start, end]).await,
            "croniter",
        );
        let python: Vec<&str> = python.lines().collect();
        dbos.create_schedule(&Schedule::new(name, "ids_only", cron).timezone(zone))
            .await
            .unwrap();
        let at = |t: &str| std::time::SystemTime::from(DateTime::parse_from_rfc3339(t).unwrap());
        let ours: Vec<String> = dbos
            .backfill_schedule(name, at(start), at(end))
            .await
            .unwrap()
            .iter()
            .map(|h| h.id().to_owned())
            .collect();
        assert!(!ours.is_empty());
        assert_eq!(ours, python, "{name}");
    }
    dbos.shutdown().await.unwrap();
}
