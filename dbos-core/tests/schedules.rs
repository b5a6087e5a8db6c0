//! Scheduled workflows: schedules stored in `dbos.workflow_schedules` as DBOS 3.4 stores
//! them, fired by every executor with no coordinator and exactly one run per tick.

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use dbos_core::schedule::chrono::{DateTime, SecondsFormat, Utc};
use dbos_core::schedule::{ListSchedules, Schedule, ScheduleStatus};
use dbos_core::{workflow, Client, Config, Dbos, Error, ErrorKind, Queue};
use dbos_testkit::crash::eventually;
use dbos_testkit::TestDatabase;
use serde_json::{json, Value};

/// Every execution of a scheduled run: (schedule tag from the context, scheduled time).
static RUNS: Mutex<Vec<(String, DateTime<Utc>)>> = Mutex::new(Vec::new());

#[workflow]
async fn ticked(scheduled_at: DateTime<Utc>, context: Value) -> Result<String, Error> {
    let tag = context["tag"].as_str().unwrap_or("untagged").to_owned();
    RUNS.lock().unwrap().push((tag.clone(), scheduled_at));
    Ok(tag)
}

#[workflow]
async fn failing_tick(_scheduled_at: DateTime<Utc>, _context: Value) -> Result<(), Error> {
    Err(Error::new(
        ErrorKind::InvalidArgument,
        "this run fails on purpose",
    ))
}

fn executions(tag: &str) -> Vec<DateTime<Utc>> {
    RUNS.lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| t == tag)
        .map(|(_, at)| *at)
        .collect()
}

fn config(db: &TestDatabase, executor: &str) -> Config {
    db.config("testapp")
        .executor_id(executor)
        .scheduler_polling_interval(Duration::from_millis(200))
}

/// The runs of a schedule in the database: (workflow id, status).
async fn runs_of(db: &TestDatabase, schedule: &str) -> Vec<(String, String)> {
    db.connect()
        .await
        .query(
            "SELECT workflow_uuid, status FROM dbos.workflow_status WHERE schedule_name = $1 ORDER BY workflow_uuid",
            &[&schedule],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn tick_id(schedule: &str, t: DateTime<Utc>) -> String {
    format!(
        "sched-{schedule}-{}",
        t.to_rfc3339_opts(SecondsFormat::Secs, false)
    )
}

#[dbos_testkit::test(timeout = "120s")]
async fn three_executors_make_exactly_one_run_per_tick(db: TestDatabase) {
    let executors = [
        Dbos::launch(config(&db, "sched-a")).await.unwrap(),
        Dbos::launch(config(&db, "sched-b")).await.unwrap(),
        Dbos::launch(config(&db, "sched-c")).await.unwrap(),
    ];
    executors[0]
        .create_schedule(
            &Schedule::new("every-second", "ticked", "* * * * * *")
                .context(json!({"tag": "three"})),
        )
        .await
        .unwrap();
    // ~20 ticks fired by three executors.
    eventually("20 finished runs", Duration::from_secs(90), || async {
        let done = runs_of(&db, "every-second")
            .await
            .iter()
            .filter(|(_, s)| s == "SUCCESS")
            .count();
        (done >= 20).then_some(())
    })
    .await;
    executors[1].delete_schedule("every-second").await.unwrap();
    // Let every tick already enqueued finish (and any loop notice the deletion).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows = runs_of(&db, "every-second").await;
    eventually("every run to finish", Duration::from_secs(30), || async {
        let rows = runs_of(&db, "every-second").await;
        rows.iter().all(|(_, s)| s == "SUCCESS").then_some(())
    })
    .await;
    let ran = executions("three");
    let distinct: BTreeSet<DateTime<Utc>> = ran.iter().copied().collect();
    assert_eq!(distinct.len(), ran.len(), "a tick ran twice: {ran:?}");
    assert!(rows.len() >= 20);
    let rows = runs_of(&db, "every-second").await;
    assert_eq!(
        ran.len(),
        rows.len(),
        "one execution per run row, one run row per tick"
    );
    // No tick skipped between the first and the last, and each run's id is its tick's.
    let first = *distinct.first().unwrap();
    let last = *distinct.last().unwrap();
    assert_eq!(
        (last - first).num_seconds() + 1,
        distinct.len() as i64,
        "ticks were skipped: {distinct:?}"
    );
    let ids: HashSet<String> = rows.into_iter().map(|(id, _)| id).collect();
    for t in &distinct {
        assert!(
            ids.contains(&tick_id("every-second", *t)),
            "no run {}",
            tick_id("every-second", *t)
        );
    }
    for dbos in executors {
        dbos.shutdown().await.unwrap();
    }
}

#[dbos_testkit::test(timeout = "120s")]
async fn rows_and_runs_are_stored_as_dbos_stores_them(db: TestDatabase) {
    // Created before any executor runs (a `Client` on the migrated schema), so the row is
    // read as created: a running scheduler may fire the per-second schedule (and set
    // `last_fired_at`) before the test reads it.
    db.migrate().await;
    let client = Client::builder(db.url())
        .application_name("testapp")
        .connect()
        .await
        .unwrap();
    client
        .create_schedule(
            &Schedule::new("stored", "ticked", "* * * * * *")
                .context(json!({"tag": "stored", "n": 1}))
                .timezone("America/New_York"),
        )
        .await
        .unwrap();
    client.close();
    let conn = db.connect().await;
    let row = conn
        .query_one(
            "SELECT schedule_id, workflow_name, workflow_class_name, schedule, status, context, last_fired_at,
                    automatic_backfill, cron_timezone, queue_name, application_name
               FROM dbos.workflow_schedules WHERE schedule_name = 'stored'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0).len(), 36, "a UUID schedule id");
    assert_eq!(row.get::<_, String>(1), "ticked");
    assert_eq!(row.get::<_, Option<String>>(2), None);
    assert_eq!(row.get::<_, String>(3), "* * * * * *");
    assert_eq!(row.get::<_, String>(4), "ACTIVE");
    assert_eq!(row.get::<_, String>(5), r#"{"n":1,"tag":"stored"}"#);
    assert_eq!(row.get::<_, Option<String>>(6), None);
    assert!(!row.get::<_, bool>(7));
    assert_eq!(
        row.get::<_, Option<String>>(8).as_deref(),
        Some("America/New_York")
    );
    assert_eq!(row.get::<_, Option<String>>(9), None);
    assert_eq!(row.get::<_, Option<String>>(10).as_deref(), Some("testapp"));

    let dbos = Dbos::launch(config(&db, "rows")).await.unwrap();
    let run = eventually("a finished run", Duration::from_secs(30), || async {
        runs_of(&db, "stored")
            .await
            .into_iter()
            .find(|(_, s)| s == "SUCCESS")
            .map(|(id, _)| id)
    })
    .await;
    let r = conn
        .query_one(
            "SELECT ws.queue_name, ws.application_name, ws.application_version, wi.inputs, ws.name
               FROM dbos.workflow_status ws JOIN dbos.workflow_input wi USING (workflow_uuid)
              WHERE ws.workflow_uuid = $1",
            &[&run],
        )
        .await
        .unwrap();
    // Enqueued on the internal queue (the column stays once it ran, as in DBOS).
    assert_eq!(
        r.get::<_, Option<String>>(0).as_deref(),
        Some("_dbos_internal_queue")
    );
    assert_eq!(r.get::<_, Option<String>>(1).as_deref(), Some("testapp"));
    assert_eq!(
        r.get::<_, Option<String>>(2).as_deref(),
        Some(dbos.application_version())
    );
    assert_eq!(r.get::<_, Option<String>>(4).as_deref(), Some("ticked"));
    // The id carries the tick in the schedule's zone, as DBOS Python's isoformat() does.
    let local = run.strip_prefix("sched-stored-").unwrap();
    assert!(
        local.ends_with("-05:00") || local.ends_with("-04:00"),
        "{run}"
    );
    let tick = DateTime::parse_from_rfc3339(local)
        .unwrap()
        .with_timezone(&Utc);
    let inputs: Value = serde_json::from_str(&r.get::<_, String>(3)).unwrap();
    assert_eq!(
        inputs,
        json!({
            "positionalArgs": [tick.to_rfc3339_opts(SecondsFormat::Millis, true), {"n": 1, "tag": "stored"}],
            "namedArgs": {}
        })
    );
    let fired = eventually("last_fired_at", Duration::from_secs(10), || async {
        conn.query_one(
            "SELECT last_fired_at FROM dbos.workflow_schedules WHERE schedule_name = 'stored'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, Option<String>>(0)
    })
    .await;
    let fired_at = DateTime::parse_from_rfc3339(&fired).unwrap();
    assert_eq!(fired_at.timestamp_subsec_nanos(), 0, "{fired}");
    assert!(
        fired.ends_with("-05:00") || fired.ends_with("-04:00"),
        "{fired}"
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test(timeout = "120s")]
async fn a_paused_schedule_does_not_fire_until_resumed(db: TestDatabase) {
    let dbos = Dbos::launch(config(&db, "pauser")).await.unwrap();
    dbos.create_schedule(
        &Schedule::new("pausable", "ticked", "* * * * * *").context(json!({"tag": "pausable"})),
    )
    .await
    .unwrap();
    eventually("two runs", Duration::from_secs(30), || async {
        (runs_of(&db, "pausable").await.len() >= 2).then_some(())
    })
    .await;
    dbos.pause_schedule("pausable").await.unwrap();
    let info = dbos.get_schedule("pausable").await.unwrap().unwrap();
    assert_eq!(info.status, ScheduleStatus::Paused);
    // Within a polling interval (200 ms) plus a tick already on its way, firing stops.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let paused = runs_of(&db, "pausable").await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        runs_of(&db, "pausable").await.len(),
        paused,
        "a paused schedule fired"
    );
    dbos.resume_schedule("pausable").await.unwrap();
    eventually("runs after the resume", Duration::from_secs(30), || async {
        (runs_of(&db, "pausable").await.len() >= paused + 2).then_some(())
    })
    .await;
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test(timeout = "120s")]
async fn missed_ticks_run_only_with_automatic_backfill(db: TestDatabase) {
    // The schedules exist before any executor runs; both last fired 8 seconds ago.
    // A first launch migrates the database; then the executor is down.
    Dbos::launch(config(&db, "migrator"))
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    let client = Client::builder(db.url())
        .application_name("testapp")
        .connect()
        .await
        .unwrap();
    for (name, backfill) in [("catch-up", true), ("skip", false)] {
        client
            .create_schedule(
                &Schedule::new(name, "ticked", "* * * * * *")
                    .context(json!({"tag": name}))
                    .automatic_backfill(backfill),
            )
            .await
            .unwrap();
    }
    let down_since = Utc::now() - dbos_core::schedule::chrono::Duration::seconds(8);
    let down_since = down_since
        .with_timezone(&Utc)
        .to_rfc3339_opts(SecondsFormat::Secs, false);
    let down_since_at = DateTime::parse_from_rfc3339(&down_since)
        .unwrap()
        .with_timezone(&Utc);
    db.connect()
        .await
        .execute(
            "UPDATE dbos.workflow_schedules SET last_fired_at = $1",
            &[&down_since],
        )
        .await
        .unwrap();
    let launched_at = Utc::now();
    let dbos = Dbos::launch(config(&db, "backfiller")).await.unwrap();
    // Every tick after the last fired one, up to the launch, runs for `catch-up`.
    let mut missed = Vec::new();
    let mut t = down_since_at + dbos_core::schedule::chrono::Duration::seconds(1);
    while t < launched_at {
        missed.push(t);
        t += dbos_core::schedule::chrono::Duration::seconds(1);
    }
    assert!(missed.len() >= 6, "{missed:?}");
    eventually(
        "the missed ticks to run",
        Duration::from_secs(30),
        || async {
            let ids: HashSet<String> = runs_of(&db, "catch-up")
                .await
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            missed
                .iter()
                .all(|t| ids.contains(&tick_id("catch-up", *t)))
                .then_some(())
        },
    )
    .await;
    // `skip` fires live ticks, none of the missed ones.
    eventually("a live tick of `skip`", Duration::from_secs(30), || async {
        (!runs_of(&db, "skip").await.is_empty()).then_some(())
    })
    .await;
    let ids: HashSet<String> = runs_of(&db, "skip")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for t in &missed {
        assert!(
            !ids.contains(&tick_id("skip", *t)),
            "missed tick {t} ran without backfill"
        );
    }
    dbos.shutdown().await.unwrap();
    client.close();
}

#[dbos_testkit::test(timeout = "120s")]
async fn a_failing_run_does_not_stop_the_schedule(db: TestDatabase) {
    let dbos = Dbos::launch(config(&db, "failer")).await.unwrap();
    dbos.create_schedule(&Schedule::new("failing", "failing_tick", "* * * * * *"))
        .await
        .unwrap();
    eventually("three failed runs", Duration::from_secs(30), || async {
        let runs = runs_of(&db, "failing").await;
        (runs.iter().filter(|(_, s)| s == "ERROR").count() >= 3).then_some(())
    })
    .await;
    dbos.shutdown().await.unwrap();
}

static ON_QUEUE: Queue = Queue::new("scheduled-work").polling_interval(Duration::from_millis(100));

#[dbos_testkit::test(timeout = "120s")]
async fn bad_input_is_refused_with_a_typed_error_and_nothing_written(db: TestDatabase) {
    let dbos = Dbos::launch(config(&db, "bad").queue(&ON_QUEUE))
        .await
        .unwrap();
    let ok = Schedule::new("good", "ticked", "0 0 * * *");
    let cases = [
        (
            Schedule::new("b1", "ticked", "* * * *"),
            ErrorKind::InvalidArgument,
        ),
        (
            Schedule::new("b2", "ticked", "61 * * * *"),
            ErrorKind::InvalidArgument,
        ),
        (
            Schedule::new("b3", "ticked", "not a cron"),
            ErrorKind::InvalidArgument,
        ),
        (
            Schedule::new("b4", "ticked", "* * * * *").timezone("Mars/Olympus_Mons"),
            ErrorKind::InvalidArgument,
        ),
        (
            Schedule::new("b5", "no_such_workflow", "* * * * *"),
            ErrorKind::WorkflowFunctionNotFound,
        ),
        (
            Schedule::new("b6", "ticked", "* * * * *").queue("undeclared"),
            ErrorKind::InvalidArgument,
        ),
        (
            Schedule::new(" ", "ticked", "* * * * *"),
            ErrorKind::InvalidArgument,
        ),
    ];
    for (schedule, kind) in &cases {
        let e = dbos.create_schedule(schedule).await.unwrap_err();
        assert_eq!(e.kind(), *kind, "{}: {e}", schedule.name());
    }
    dbos.create_schedule(&ok).await.unwrap();
    let e = dbos
        .create_schedule(&Schedule::new("good", "ticked", "* * * * *"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConflictingSchedule, "{e}");
    // apply: one bad schedule in the set writes none of it.
    let e = dbos
        .apply_schedules(&[
            Schedule::new("good", "ticked", "*/5 * * * *"),
            Schedule::new("new-one", "ticked", "* * * *"),
        ])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let all = dbos.list_schedules(&ListSchedules::new()).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].schedule, "0 0 * * *");
    // A declared queue is accepted.
    dbos.create_schedule(&Schedule::new("queued", "ticked", "0 0 * * *").queue("scheduled-work"))
        .await
        .unwrap();
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test(timeout = "120s")]
async fn apply_replaces_definitions_atomically_and_keeps_status(db: TestDatabase) {
    let dbos = Dbos::launch(config(&db, "apply")).await.unwrap();
    dbos.apply_schedules(&[
        Schedule::new("a", "ticked", "0 0 * * *"),
        Schedule::new("b", "ticked", "0 1 * * *"),
    ])
    .await
    .unwrap();
    let id_a = dbos.get_schedule("a").await.unwrap().unwrap().schedule_id;
    dbos.pause_schedule("a").await.unwrap();
    dbos.apply_schedules(&[
        Schedule::new("a", "ticked", "0 2 * * *").context(json!(7)),
        Schedule::new("c", "ticked", "0 3 * * *"),
    ])
    .await
    .unwrap();
    let a = dbos.get_schedule("a").await.unwrap().unwrap();
    assert_eq!(a.schedule_id, id_a);
    assert_eq!(a.schedule, "0 2 * * *");
    assert_eq!(a.status, ScheduleStatus::Paused);
    assert_eq!(a.context.decoded(), Some(&json!(7)));
    let names: Vec<String> = dbos
        .list_schedules(&ListSchedules::new())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.schedule_name)
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    let paused = dbos
        .list_schedules(&ListSchedules::new().status(ScheduleStatus::Paused))
        .await
        .unwrap();
    assert_eq!(paused.len(), 1);
    // A name another application owns fails the whole set.
    db.connect()
        .await
        .execute("UPDATE dbos.workflow_schedules SET application_name = 'other' WHERE schedule_name = 'b'", &[])
        .await
        .unwrap();
    let e = dbos
        .apply_schedules(&[
            Schedule::new("d", "ticked", "0 4 * * *"),
            Schedule::new("b", "ticked", "0 5 * * *"),
        ])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConflictingSchedule, "{e}");
    assert!(dbos.get_schedule("d").await.unwrap().is_none());
    dbos.delete_schedule("a").await.unwrap();
    dbos.delete_schedule("never-existed").await.unwrap();
    assert!(dbos.get_schedule("a").await.unwrap().is_none());
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn manages_schedules(name: String) -> Result<usize, Error> {
    let dbos = Dbos::current()?;
    dbos.create_schedule(&Schedule::new(name.clone(), "ticked", "0 0 1 1 *"))
        .await?;
    let listed = dbos.list_schedules(&ListSchedules::new()).await?;
    dbos.get_schedule(&name).await?;
    dbos.pause_schedule(&name).await?;
    dbos.resume_schedule(&name).await?;
    let duplicate = dbos
        .create_schedule(&Schedule::new(name.clone(), "ticked", "0 0 1 1 *"))
        .await;
    assert_eq!(
        duplicate.unwrap_err().kind(),
        ErrorKind::ConflictingSchedule
    );
    dbos.delete_schedule(&name).await?;
    Ok(listed.len())
}

#[dbos_testkit::test(timeout = "120s")]
async fn inside_a_workflow_each_operation_is_recorded_under_dboss_name(db: TestDatabase) {
    let dbos = Dbos::launch(config(&db, "in-wf")).await.unwrap();
    let n = manages_schedules("in-wf".into())
        .id("manager-1")
        .on(&dbos)
        .start()
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(n, 1);
    let names = db.step_names("manager-1").await;
    assert_eq!(
        names,
        [
            "DBOS.createSchedule",
            "DBOS.listSchedules",
            "DBOS.getSchedule",
            "DBOS.pauseSchedule",
            "DBOS.resumeSchedule",
            "DBOS.createSchedule",
            "DBOS.deleteSchedule"
        ]
    );
    // Apply, backfill and trigger are refused inside a workflow, as in DBOS.
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test(timeout = "120s")]
async fn trigger_runs_now_and_backfill_runs_a_range_once(db: TestDatabase) {
    let dbos = Dbos::launch(config(&db, "trigger")).await.unwrap();
    dbos.create_schedule(
        &Schedule::new("manual", "ticked", "*/10 * * * * *").context(json!({"tag": "manual"})),
    )
    .await
    .unwrap();
    dbos.pause_schedule("manual").await.unwrap();
    let handle = dbos.trigger_schedule("manual").await.unwrap();
    assert!(
        handle.id().starts_with("sched-manual-trigger-"),
        "{}",
        handle.id()
    );
    assert_eq!(handle.result().await.unwrap(), json!("manual"));
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let end = start + Duration::from_secs(60);
    let handles = dbos.backfill_schedule("manual", start, end).await.unwrap();
    // Ticks strictly inside (start, end): :10 through :50 (1_700_000_000 is a multiple of 10).
    assert_eq!(handles.len(), 5);
    for h in &handles {
        h.result().await.unwrap();
    }
    let again = dbos.backfill_schedule("manual", start, end).await.unwrap();
    assert_eq!(again.len(), 5);
    assert_eq!(
        executions("manual").len(),
        6,
        "a backfill of ticks already run runs nothing again"
    );
    let e = dbos.trigger_schedule("nope").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ScheduleNotFound);
    dbos.shutdown().await.unwrap();
}

/// The ids a backfill of `cron` in Paris between two UTC times produces, in order.
async fn paris_ticks(dbos: &Dbos, name: &str, cron: &str, start: &str, end: &str) -> Vec<String> {
    dbos.create_schedule(&Schedule::new(name, "ticked", cron).timezone("Europe/Paris"))
        .await
        .unwrap();
    let at = |t: &str| SystemTime::from(DateTime::parse_from_rfc3339(t).unwrap());
    let handles = dbos
        .backfill_schedule(name, at(start), at(end))
        .await
        .unwrap();
    for h in &handles {
        h.result().await.unwrap();
    }
    handles.iter().map(|h| h.id().to_owned()).collect()
}

#[dbos_testkit::test(timeout = "120s")]
async fn daylight_saving_transitions_in_paris(db: TestDatabase) {
    // Ticks come from the cron library used by the live scheduler too (CronSpec::next_after).
    let dbos = Dbos::launch(config(&db, "dst")).await.unwrap();
    // Spring forward, 2026-03-29: 02:00 becomes 03:00, so 02:30 does not exist that night and
    // the daily 02:30 job runs at the first instant after the gap.
    assert_eq!(
        paris_ticks(
            &dbos,
            "spring",
            "30 2 * * *",
            "2026-03-27T12:00:00Z",
            "2026-03-30T12:00:00Z"
        )
        .await,
        [
            "sched-spring-2026-03-28T02:30:00+01:00",
            "sched-spring-2026-03-29T03:00:00+02:00",
            "sched-spring-2026-03-30T02:30:00+02:00",
        ]
    );
    // Fall back, 2026-10-25: 03:00 becomes 02:00, so 02:30 happens twice; a fixed-time job
    // runs once, at the first.
    assert_eq!(
        paris_ticks(
            &dbos,
            "fall",
            "30 2 * * *",
            "2026-10-24T12:00:00Z",
            "2026-10-26T12:00:00Z"
        )
        .await,
        [
            "sched-fall-2026-10-25T02:30:00+02:00",
            "sched-fall-2026-10-26T02:30:00+01:00",
        ]
    );
    // An interval job runs in both of the repeated hours: every 30 minutes of real time, each
    // tick with its own offset (so its own id).
    assert_eq!(
        paris_ticks(
            &dbos,
            "halfhourly",
            "0 */30 * * * *",
            "2026-10-24T23:45:00Z",
            "2026-10-25T02:15:00Z"
        )
        .await,
        [
            "sched-halfhourly-2026-10-25T02:00:00+02:00",
            "sched-halfhourly-2026-10-25T02:30:00+02:00",
            "sched-halfhourly-2026-10-25T02:00:00+01:00",
            "sched-halfhourly-2026-10-25T02:30:00+01:00",
            "sched-halfhourly-2026-10-25T03:00:00+01:00",
        ]
    );
    // Each run received its tick as UTC.
    let conn = db.connect().await;
    let inputs: String = conn
        .query_one(
            "SELECT inputs FROM dbos.workflow_input WHERE workflow_uuid = 'sched-halfhourly-2026-10-25T02:00:00+01:00'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let inputs: Value = serde_json::from_str(&inputs).unwrap();
    assert_eq!(inputs["positionalArgs"][0], "2026-10-25T01:00:00.000Z");
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test(timeout = "120s")]
async fn runs_are_listed_by_schedule_name(db: TestDatabase) {
    use dbos_core::manage::ListWorkflows;
    let dbos = Dbos::launch(config(&db, "listing")).await.unwrap();
    // Yearly: nothing fires by itself during the test; the runs come from a backfill and
    // triggers.
    for name in ["listed-a", "listed-b"] {
        dbos.create_schedule(
            &Schedule::new(name, "ticked", "0 0 0 1 1 *").context(json!({"tag": name})),
        )
        .await
        .unwrap();
    }
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000); // 2020-09
    let end = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 2023-11
    let mut a_ids: BTreeSet<String> = BTreeSet::new();
    for h in dbos
        .backfill_schedule("listed-a", start, end)
        .await
        .unwrap()
    {
        h.result().await.unwrap();
        a_ids.insert(h.id().to_owned());
    }
    assert_eq!(a_ids.len(), 3, "New Years 2021, 2022, 2023");
    let b = dbos.trigger_schedule("listed-b").await.unwrap();
    b.result().await.unwrap();
    // A workflow run by hand has no schedule name and is never listed by one.
    ticked(Utc::now(), json!({"tag": "by-hand"})).await.unwrap();

    let ids = |ws: Vec<dbos_core::manage::WorkflowInfo>| -> BTreeSet<String> {
        ws.into_iter().map(|w| w.workflow_id).collect()
    };
    let all = dbos.list_workflows(&ListWorkflows::new()).await.unwrap();
    assert_eq!(all.len(), 5);
    let listed = dbos
        .list_workflows(&ListWorkflows::new().schedule_name("listed-a"))
        .await
        .unwrap();
    assert!(listed
        .iter()
        .all(|w| w.schedule_name.as_deref() == Some("listed-a")));
    assert_eq!(ids(listed), a_ids);
    let both = dbos
        .list_workflows(
            &ListWorkflows::new()
                .schedule_name("listed-a")
                .schedule_name("listed-b"),
        )
        .await
        .unwrap();
    let mut expected = a_ids.clone();
    expected.insert(b.id().to_owned());
    assert_eq!(ids(both), expected);
    // The filter combines with the others, and a client lists the same.
    let client = Client::connect(db.url()).await.unwrap();
    let newest = client
        .list_workflows(
            &ListWorkflows::new()
                .schedule_name("listed-a")
                .newest_first()
                .limit(1),
        )
        .await
        .unwrap();
    assert_eq!(newest.len(), 1);
    assert!(a_ids.contains(&newest[0].workflow_id));
    let none = client
        .list_workflows(&ListWorkflows::new().schedule_name("listed-nope"))
        .await
        .unwrap();
    assert!(none.is_empty());
    let e = client
        .list_workflows(&ListWorkflows::new().schedule_name(" "))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("schedule name"), "{e}");
    client.close();
    dbos.shutdown().await.unwrap();
}
