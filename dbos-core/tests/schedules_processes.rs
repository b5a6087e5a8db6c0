//! Scheduled workflows served by separate executor processes: this test binary re-runs
//! itself (the ignored test `executor_process`, selected by an environment variable) as three
//! executors on one database. A per-second schedule of exactly 30 ticks makes exactly 30
//! runs, each executed once, although one executor is SIGKILLed while the run it took is in
//! the middle of a step: that run is recovered by a peer, not fired again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dbos_core::schedule::chrono::{DateTime, Datelike, SecondsFormat, TimeDelta, Timelike, Utc};
use dbos_core::schedule::Schedule;
use dbos_core::{step, workflow, Client, Config, Dbos, Error, ErrorKind};
use dbos_testkit::crash::{eventually, ChildProcess};
use dbos_testkit::TestDatabase;
use serde_json::Value;

/// Set in a child: the database URL it serves.
const CHILD_URL: &str = "DBOS_SCHED_PROCESS_URL";
/// Set in a child: its executor id.
const CHILD_ID: &str = "DBOS_SCHED_PROCESS_ID";
/// Set (to `1`) in the child whose step executions hang until it is killed.
const CHILD_HANG: &str = "DBOS_SCHED_PROCESS_HANG";

/// In a child: whether every `begin` step hangs (the victim's: each run it takes stops
/// mid-step, so every tick it began is one a peer must recover).
static HANG: AtomicBool = AtomicBool::new(false);

/// Records one execution of a step in the `step_runs` table (the count the test checks).
async fn record(tick: &str, step: &str) -> Result<(), Error> {
    let url = std::env::var(CHILD_URL).unwrap_or_default();
    let executor = std::env::var(CHILD_ID).unwrap_or_default();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("connect: {e}")))?;
    tokio::spawn(conn);
    client
        .execute(
            "INSERT INTO step_runs (tick, step, executor) VALUES ($1, $2, $3)",
            &[&tick, &step, &executor],
        )
        .await
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("record: {e}")))?;
    Ok(())
}

#[step]
async fn begin(tick: String) -> Result<(), Error> {
    record(&tick, "begin").await?;
    if HANG.load(Ordering::SeqCst) {
        // Mid-step until SIGKILL.
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[step]
async fn finish(tick: String) -> Result<(), Error> {
    record(&tick, "finish").await
}

#[workflow]
async fn process_tick(scheduled_at: DateTime<Utc>, _context: Value) -> Result<(), Error> {
    let tick = scheduled_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    begin(tick.clone()).await?;
    finish(tick).await
}

fn executor_config(url: &str, id: &str) -> Config {
    Config::new("testapp")
        .system_database_url(url)
        .pool_size(4)
        .executor_id(id)
        // Peers recover a dead executor's runs (pinned ids are otherwise left to their
        // own restart).
        .recover_executors_with_prefix("sched-proc-")
        .recovery_interval(Duration::from_millis(500))
        .recovery_grace(Duration::from_secs(2))
        .scheduler_polling_interval(Duration::from_millis(200))
}

/// The executor process: launches a runtime on the parent's database and serves until
/// killed. Not a test of its own (ignored; a no-op without the environment variable).
#[test]
#[ignore = "an executor process started by `one_run_per_tick_across_processes_and_a_killed_executor`"]
fn executor_process() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let id = std::env::var(CHILD_ID).expect("the executor id");
    HANG.store(
        std::env::var(CHILD_HANG).is_ok_and(|v| v == "1"),
        Ordering::SeqCst,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let _dbos = Dbos::launch(executor_config(&url, &id))
            .await
            .expect("the executor launches");
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
            .execute("INSERT INTO ready (executor) VALUES ($1)", &[&id])
            .await
            .expect("report ready");
        std::future::pending::<()>().await;
    });
}

fn spawn_executor(url: &str, id: &str, hang: bool) -> ChildProcess {
    ChildProcess::spawn_test(
        "executor_process",
        &[
            (CHILD_URL, url),
            (CHILD_ID, id),
            (CHILD_HANG, if hang { "1" } else { "0" }),
        ],
    )
}

/// A cron of exactly 30 per-second ticks, `second .. second + 29` of one minute, starting
/// at least `lead` from now; and those ticks.
fn thirty_second_window(lead: TimeDelta) -> (String, Vec<DateTime<Utc>>) {
    let mut start = (Utc::now() + lead).with_nanosecond(0).expect("a time");
    if start.second() > 30 {
        start = (start + TimeDelta::seconds(60 - i64::from(start.second())))
            .with_second(0)
            .expect("a time");
    }
    let s = start.second();
    let cron = format!(
        "{s}-{} {} {} {} {} *",
        s + 29,
        start.minute(),
        start.hour(),
        start.day(),
        start.month()
    );
    let ticks = (0..30).map(|i| start + TimeDelta::seconds(i)).collect();
    (cron, ticks)
}

/// (step, tick) -> executors that ran it, in order.
async fn step_runs(db: &TestDatabase) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for r in db
        .connect()
        .await
        .query(
            "SELECT step, tick, executor FROM step_runs ORDER BY id",
            &[],
        )
        .await
        .unwrap()
    {
        out.entry((r.get(0), r.get(1))).or_default().push(r.get(2));
    }
    out
}

/// The schedule's runs: workflow id -> (status, executor id; none while enqueued).
async fn runs(db: &TestDatabase) -> BTreeMap<String, (String, Option<String>)> {
    db.connect()
        .await
        .query(
            "SELECT workflow_uuid, status, executor_id FROM dbos.workflow_status WHERE schedule_name = 'per-second'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

#[dbos_testkit::test(timeout = "300s")]
async fn one_run_per_tick_across_processes_and_a_killed_executor(db: TestDatabase) {
    let conn = db.connect().await;
    conn.batch_execute(
        "CREATE TABLE step_runs (id bigserial PRIMARY KEY, tick text NOT NULL, step text NOT NULL, executor text NOT NULL);
         CREATE TABLE ready (executor text NOT NULL);",
    )
    .await
    .unwrap();
    db.migrate().await;
    let url = db.url();
    let victim_id = "sched-proc-1";
    let mut victim = Some(spawn_executor(&url, victim_id, true));
    let peers = [
        spawn_executor(&url, "sched-proc-2", false),
        spawn_executor(&url, "sched-proc-3", false),
    ];
    eventually(
        "three executor processes to launch",
        Duration::from_secs(90),
        || async {
            let n: i64 = conn
                .query_one("SELECT count(*) FROM ready", &[])
                .await
                .unwrap()
                .get(0);
            (n == 3).then_some(())
        },
    )
    .await;

    let (cron, ticks) = thirty_second_window(TimeDelta::seconds(8));
    let expected: BTreeSet<String> = ticks
        .iter()
        .map(|t| {
            format!(
                "sched-per-second-{}",
                t.to_rfc3339_opts(SecondsFormat::Secs, false)
            )
        })
        .collect();
    let client = Client::builder(&url)
        .application_name("testapp")
        .connect()
        .await
        .unwrap();
    client
        .create_schedule(&Schedule::new("per-second", "process_tick", &cron))
        .await
        .unwrap();

    // The victim takes some run and hangs in its first step: kill it there. (On a loaded
    // machine it may have taken a second tick's run before this look: each hangs the same.)
    eventually(
        "the victim to be in the middle of a step",
        Duration::from_secs(120),
        || async {
            let n: i64 = conn
                .query_one(
                    "SELECT count(*) FROM step_runs WHERE executor = $1",
                    &[&victim_id],
                )
                .await
                .unwrap()
                .get(0);
            (n > 0).then_some(())
        },
    )
    .await;
    victim.take().unwrap().kill9().await;
    let killed_ticks: BTreeSet<String> = conn
        .query(
            "SELECT tick FROM step_runs WHERE executor = $1",
            &[&victim_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    eventually(
        "30 runs, all finished",
        Duration::from_secs(150),
        || async {
            let runs = runs(&db).await;
            (runs.len() >= 30 && runs.values().all(|(s, _)| s == "SUCCESS")).then_some(())
        },
    )
    .await;
    // Past the window: nothing more comes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = runs(&db).await;
    let ids: BTreeSet<String> = runs.keys().cloned().collect();
    assert_eq!(
        ids, expected,
        "exactly one run per tick, each with its tick's id"
    );

    let steps = step_runs(&db).await;
    let tick_texts: Vec<String> = ticks
        .iter()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .collect();
    for tick in &tick_texts {
        let finished = &steps[&("finish".to_owned(), tick.clone())];
        assert_eq!(finished.len(), 1, "tick {tick} finished {finished:?}");
        let begun = &steps[&("begin".to_owned(), tick.clone())];
        if killed_ticks.contains(tick) {
            // Begun by the victim, then once more by the peer that recovered the run (the
            // step never completed, so it runs again: at least once).
            assert_eq!(begun.len(), 2, "the killed tick's first step: {begun:?}");
            assert_eq!(begun[0], victim_id);
            assert_ne!(begun[1], victim_id);
            assert_ne!(finished[0], victim_id);
        } else {
            assert_eq!(begun.len(), 1, "tick {tick} began {begun:?}");
        }
    }
    assert_eq!(steps.len(), 60, "no step ran for a tick outside the window");
    for killed_tick in &killed_ticks {
        let killed_id = format!(
            "sched-per-second-{}",
            DateTime::parse_from_rfc3339(killed_tick)
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Secs, false)
        );
        let (status, executor) = &runs[&killed_id];
        assert_eq!(status, "SUCCESS");
        assert_ne!(
            executor.as_deref(),
            Some(victim_id),
            "a peer recovered the killed run"
        );
    }
    client.close();
    for p in peers {
        p.kill9().await;
    }
}
