//! Queues with DBOS semantics, against a real Postgres: worker and global concurrency, rate
//! limits, priority, deduplication, partitions, delays, timeouts, enqueue from workflows, and
//! work enqueued by DBOS's own tools (SQL function, Python DBOSClient).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dbos_core::prelude::*;
use dbos_testkit::crash::{eventually, run_then_kill};
use dbos_testkit::TestDatabase;

/// Concurrency gauges and execution logs per test key.
static RUNNING: Mutex<Option<HashMap<String, (i32, i32)>>> = Mutex::new(None);
static ORDER: Mutex<Vec<(String, i64)>> = Mutex::new(Vec::new());
/// When each `busy` step ran: (key, start, end).
static INTERVALS: Mutex<Vec<(String, Instant, Instant)>> = Mutex::new(Vec::new());

fn enter(key: &str) {
    let mut g = RUNNING.lock().unwrap();
    let e = g
        .get_or_insert_with(HashMap::new)
        .entry(key.to_owned())
        .or_default();
    e.0 += 1;
    e.1 = e.1.max(e.0);
}

fn leave(key: &str) {
    RUNNING
        .lock()
        .unwrap()
        .as_mut()
        .unwrap()
        .get_mut(key)
        .unwrap()
        .0 -= 1;
}

fn peak(key: &str) -> i32 {
    RUNNING
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(key))
        .map_or(0, |e| e.1)
}

#[step]
async fn busy(key: String, ms: u64) -> Result<(), Error> {
    enter(&key);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(ms)).await;
    INTERVALS
        .lock()
        .unwrap()
        .push((key.clone(), start, Instant::now()));
    leave(&key);
    Ok(())
}

/// Whether a `busy` step of `a` and one of `b` ran at the same time.
fn overlapped(a: &str, b: &str) -> bool {
    let log = INTERVALS.lock().unwrap();
    log.iter().filter(|x| x.0 == a).any(|x| {
        log.iter()
            .filter(|y| y.0 == b)
            .any(|y| x.1 < y.2 && y.1 < x.2)
    })
}

#[workflow]
async fn tracked(key: String, ms: u64, tag: i64) -> Result<i64, Error> {
    ORDER.lock().unwrap().push((key.clone(), tag));
    busy(key, ms).await?;
    Ok(tag)
}

#[workflow]
async fn double(x: i64) -> Result<i64, Error> {
    Ok(x * 2)
}

static SIMPLE: Queue = Queue::new("simple");
static NARROW: Queue = Queue::new("narrow").worker_concurrency(2);
static GLOBAL: Queue = Queue::new("global").concurrency(3);
static LIMITED: Queue = Queue::new("limited")
    .rate_limit(3, Duration::from_secs(2))
    .polling_interval(Duration::from_millis(100));
static SERIAL: Queue = Queue::new("serial")
    .worker_concurrency(1)
    .priority_enabled()
    .polling_interval(Duration::from_millis(50));
static PARTS: Queue = Queue::new("parts")
    .partition_concurrency(1)
    .polling_interval(Duration::from_millis(50));
static UNSERVED: Queue = Queue::new("unserved");

fn all_queues(config: Config) -> Config {
    config
        .queue(&SIMPLE)
        .queue(&NARROW)
        .queue(&GLOBAL)
        .queue(&LIMITED)
        .queue(&PARTS)
}

#[dbos_testkit::test]
async fn an_enqueued_workflow_runs_and_its_row_follows_the_protocol(db: TestDatabase) {
    let dbos = Dbos::launch(all_queues(db.config("testapp")))
        .await
        .unwrap();
    let handle = double(21)
        .id("q-1")
        .on(&dbos)
        .enqueue(&SIMPLE)
        .await
        .unwrap();
    assert_eq!(handle.result().await.unwrap(), 42);
    let row = db
        .connect()
        .await
        .query_one(
            "SELECT status, queue_name, recovery_attempts, started_at_epoch_ms IS NOT NULL, executor_id, application_version
               FROM dbos.workflow_status WHERE workflow_uuid = 'q-1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "SUCCESS");
    assert_eq!(row.get::<_, String>(1), "simple");
    assert_eq!(
        row.get::<_, i64>(2),
        1,
        "the dequeue counts as the first dispatch"
    );
    assert!(row.get::<_, bool>(3));
    assert_eq!(row.get::<_, String>(4), dbos.executor_id());
    assert_eq!(row.get::<_, String>(5), dbos.application_version());
    let q = db
        .connect()
        .await
        .query_one("SELECT worker_concurrency, concurrency, rate_limit_max, rate_limit_period_sec FROM dbos.queues WHERE name = 'limited'", &[])
        .await
        .unwrap();
    assert_eq!(q.get::<_, Option<i32>>(0), None);
    assert_eq!(q.get::<_, Option<i32>>(2), Some(3));
    assert_eq!(q.get::<_, Option<f64>>(3), Some(2.0));
}

#[dbos_testkit::test]
async fn worker_concurrency_bounds_one_executor(db: TestDatabase) {
    let dbos = Dbos::launch(all_queues(db.config("testapp")))
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..8 {
        handles.push(
            tracked("narrow".into(), 150, i)
                .on(&dbos)
                .enqueue(&NARROW)
                .await
                .unwrap(),
        );
    }
    for h in handles {
        h.result().await.unwrap();
    }
    assert_eq!(peak("narrow"), 2);
}

/// A global limit of 3 over executors allowed 2 each: the third place can only go to the
/// second executor, and the two together could run 4 if the global limit leaked.
static SHARED_BY_TWO: Queue = Queue::new("shared-by-two")
    .concurrency(3)
    .worker_concurrency(2)
    .polling_interval(Duration::from_millis(50));

#[dbos_testkit::test]
async fn global_concurrency_holds_across_executors(db: TestDatabase) {
    let a = Dbos::launch(
        db.config("testapp")
            .executor_id("exec-a")
            .queue(&SHARED_BY_TWO),
    )
    .await
    .unwrap();
    let b = Dbos::launch(
        db.config("testapp")
            .executor_id("exec-b")
            .queue(&SHARED_BY_TWO),
    )
    .await
    .unwrap();
    let mut handles = Vec::new();
    for i in 0..12 {
        handles.push(
            tracked("global".into(), 300, i)
                .on(&a)
                .enqueue(&SHARED_BY_TWO)
                .await
                .unwrap(),
        );
    }
    for h in handles {
        h.result().await.unwrap();
    }
    let ran_by: HashMap<String, i64> = db
        .connect()
        .await
        .query("SELECT executor_id, count(*) FROM dbos.workflow_status WHERE queue_name = 'shared-by-two' GROUP BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(ran_by.values().sum::<i64>(), 12, "{ran_by:?}");
    assert!(
        ran_by.get("exec-a").is_some_and(|&n| n > 0)
            && ran_by.get("exec-b").is_some_and(|&n| n > 0),
        "both executors ran work: {ran_by:?}"
    );
    // Each executor runs at most 2, so 3 at once means both ran together; 4 would be a leak.
    assert_eq!(
        peak("global"),
        3,
        "the global limit was reached across the two executors and held"
    );
    drop(b);
}

#[dbos_testkit::test]
async fn the_rate_limit_caps_starts_per_window(db: TestDatabase) {
    let dbos = Dbos::launch(all_queues(db.config("testapp")))
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..7 {
        handles.push(
            tracked("limited".into(), 1, i)
                .on(&dbos)
                .enqueue(&LIMITED)
                .await
                .unwrap(),
        );
    }
    for h in handles {
        h.result().await.unwrap();
    }
    let starts: Vec<i64> = db
        .connect()
        .await
        .query("SELECT started_at_epoch_ms FROM dbos.workflow_status WHERE queue_name = 'limited' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(starts.len(), 7);
    for (i, &t) in starts.iter().enumerate() {
        let in_window = starts[i..].iter().take_while(|&&u| u < t + 2000).count();
        assert!(
            in_window <= 3,
            "{in_window} starts within 2 s of {t}: {starts:?}"
        );
    }
    assert!(
        starts[6] - starts[0] >= 4000,
        "7 starts at 3 per 2 s need at least two full windows: {starts:?}"
    );
}

#[dbos_testkit::test]
async fn priority_orders_dequeues(db: TestDatabase) {
    // Enqueue everything first, from a runtime that does not serve the queue...
    let producer = Dbos::launch(db.config("testapp").executor_id("producer"))
        .await
        .unwrap();
    let priorities = [5, 1, 9, 0, 3, 1];
    for (i, p) in priorities.iter().enumerate() {
        tracked("serial".into(), 1, (*p * 100 + i as i32) as i64)
            .on(&producer)
            .enqueue(&SERIAL)
            .priority(*p)
            .await
            .unwrap();
    }
    // ...then a one-at-a-time consumer takes them in priority order (ties: first enqueued).
    let consumer = Dbos::launch(db.config("testapp").executor_id("consumer").queue(&SERIAL))
        .await
        .unwrap();
    eventually("all six to run", Duration::from_secs(20), || async {
        (ORDER
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == "serial")
            .count()
            == 6)
            .then_some(())
    })
    .await;
    let ran: Vec<i64> = ORDER
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k == "serial")
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(ran, vec![3, 101, 105, 304, 500, 902]);
    drop(consumer);
}

#[dbos_testkit::test]
async fn deduplication_rejects_while_active_and_frees_after(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp")).await.unwrap();
    // UNSERVED is not served here, so the first workflow stays active (ENQUEUED).
    let first = double(1)
        .id("dedup-1")
        .on(&dbos)
        .enqueue(&UNSERVED)
        .deduplication_id("order-9")
        .await
        .unwrap();
    let e = double(2)
        .on(&dbos)
        .enqueue(&UNSERVED)
        .deduplication_id("order-9")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueDeduplicated);
    assert!(e.to_string().contains("order-9"), "{e}");
    let existing = double(3)
        .on(&dbos)
        .enqueue(&UNSERVED)
        .deduplication_id("order-9")
        .return_existing_on_duplicate()
        .await
        .unwrap();
    assert_eq!(existing.id(), first.id());

    // Cancelled, its holder frees the id at once.
    let held = double(5)
        .id("dedup-cancelled")
        .on(&dbos)
        .enqueue(&UNSERVED)
        .deduplication_id("order-10")
        .await
        .unwrap();
    dbos.cancel_workflow(held.id()).await.unwrap();
    double(6)
        .id("dedup-after-cancel")
        .on(&dbos)
        .enqueue(&UNSERVED)
        .deduplication_id("order-10")
        .await
        .expect("a cancelled workflow no longer holds its deduplication id");

    // Served and completed, the id is free again.
    let server = Dbos::launch(db.config("testapp").executor_id("server").queue(&UNSERVED))
        .await
        .unwrap();
    assert_eq!(first.result().await.unwrap(), 2);
    let again = double(4)
        .on(&dbos)
        .enqueue(&UNSERVED)
        .deduplication_id("order-9")
        .await
        .unwrap();
    assert_eq!(again.result().await.unwrap(), 8);
    drop(server);
}

#[dbos_testkit::test]
async fn partitions_have_their_own_limits(db: TestDatabase) {
    let dbos = Dbos::launch(all_queues(db.config("testapp")))
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..4 {
        for part in ["a", "b"] {
            let key = format!("part-{part}");
            handles.push(
                tracked(key, 150, i)
                    .on(&dbos)
                    .enqueue(&PARTS)
                    .partition_key(part)
                    .await
                    .unwrap(),
            );
        }
    }
    for h in handles {
        h.result().await.unwrap();
    }
    assert_eq!(peak("part-a"), 1);
    assert_eq!(peak("part-b"), 1);
    // A limit of 1 per partition, not per queue: the two partitions ran side by side.
    assert!(
        overlapped("part-a", "part-b"),
        "partition a and partition b never ran at the same time"
    );
}

#[dbos_testkit::test]
async fn a_delayed_workflow_waits_then_runs(db: TestDatabase) {
    let dbos = Dbos::launch(all_queues(db.config("testapp")))
        .await
        .unwrap();
    let epoch_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let before = epoch_ms();
    let h = double(5)
        .id("later")
        .on(&dbos)
        .enqueue(&SIMPLE)
        .delay(Duration::from_millis(1500))
        .await
        .unwrap();
    let after = epoch_ms();
    assert_eq!(h.status().await.unwrap(), Status::Delayed);
    assert_eq!(h.result().await.unwrap(), 10);
    let row = db
        .connect()
        .await
        .query_one(
            "SELECT delay_until_epoch_ms, started_at_epoch_ms FROM dbos.workflow_status WHERE workflow_uuid = 'later'",
            &[],
        )
        .await
        .unwrap();
    let (until, started): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        before + 1500 <= until && until <= after + 1500,
        "delayed until {until}, for an enqueue between {before} and {after}"
    );
    assert!(
        started >= until,
        "started {} ms before its delay ended",
        until - started
    );
}

#[workflow]
async fn long_running(ms: u64) -> Result<u64, Error> {
    dbos_core::sleep(Duration::from_millis(ms)).await?;
    Ok(ms)
}

static SERVED_LATER: Queue = Queue::new("served-later").polling_interval(Duration::from_millis(50));

#[dbos_testkit::test]
async fn a_queued_workflow_timeout_starts_at_dequeue(db: TestDatabase) {
    // Enqueued by a runtime that does not serve the queue: it waits, without a deadline.
    let producer = Dbos::launch(db.config("testapp").executor_id("producer"))
        .await
        .unwrap();
    let h = long_running(10_000)
        .id("q-timeout")
        .timeout(Duration::from_millis(2000))
        .on(&producer)
        .enqueue(&SERVED_LATER)
        .await
        .unwrap();
    let client = db.connect().await;
    let row = client
        .query_one("SELECT status, workflow_timeout_ms, workflow_deadline_epoch_ms FROM dbos.workflow_status WHERE workflow_uuid = 'q-timeout'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "ENQUEUED");
    assert_eq!(row.get::<_, Option<i64>>(1), Some(2000));
    assert_eq!(
        row.get::<_, Option<i64>>(2),
        None,
        "no deadline while queued"
    );
    tokio::time::sleep(Duration::from_millis(300)).await; // time spent in the queue

    let consumer = Dbos::launch(
        db.config("testapp")
            .executor_id("consumer")
            .queue(&SERVED_LATER),
    )
    .await
    .unwrap();
    let (created, started, deadline) = eventually("the dequeue", Duration::from_secs(20), || async {
        let r = client
            .query_one("SELECT status, created_at, started_at_epoch_ms, workflow_deadline_epoch_ms FROM dbos.workflow_status WHERE workflow_uuid = 'q-timeout'", &[])
            .await
            .unwrap();
        (r.get::<_, String>(0) == "PENDING").then(|| (r.get::<_, i64>(1), r.get::<_, i64>(2), r.get::<_, i64>(3)))
    })
    .await;
    assert!(
        started - created >= 300,
        "it waited in the queue: created {created}, started {started}"
    );
    assert_eq!(
        deadline - started,
        2000,
        "the deadline is the dequeue time plus the timeout, not the enqueue time plus it"
    );

    let e = h.result().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let row = client
        .query_one("SELECT status, completed_at FROM dbos.workflow_status WHERE workflow_uuid = 'q-timeout'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "CANCELLED");
    let cancelled_at: i64 = row.get::<_, Option<i64>>(1).expect("completed_at is set");
    assert!(
        cancelled_at >= deadline,
        "cancelled at {cancelled_at}, before its deadline {deadline}"
    );
    drop(consumer);
}

static PARENT_HANG: AtomicI32 = AtomicI32::new(0);

#[step]
async fn hang_once() -> Result<(), Error> {
    if PARENT_HANG.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[workflow]
async fn fan_out(n: i64) -> Result<i64, Error> {
    let mut handles = Vec::new();
    for i in 0..n {
        handles.push(double(i).enqueue(&SIMPLE).await?);
    }
    hang_once().await?;
    let mut total = 0;
    for h in handles {
        total += h.await?;
    }
    Ok(total)
}

#[dbos_testkit::test]
async fn enqueue_inside_a_workflow_is_recorded_and_never_repeated(db: TestDatabase) {
    let config = all_queues(
        db.config("testapp")
            .executor_id("fan")
            .application_version("v-fan"),
    );
    run_then_kill(
        config.clone(),
        |dbos| async move {
            fan_out(3).id("fan").on(&dbos).start().await.unwrap();
        },
        "the parent to block after enqueuing",
        || PARENT_HANG.load(Ordering::SeqCst) == 1,
    )
    .await;
    let dbos = Dbos::launch(config).await.unwrap();
    assert_eq!(
        dbos.retrieve_workflow::<i64, Error>("fan")
            .result()
            .await
            .unwrap(),
        6
    );
    let children: Vec<String> = db
        .connect()
        .await
        .query("SELECT workflow_uuid FROM dbos.workflow_status WHERE parent_workflow_id = 'fan' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        children,
        vec!["fan-1", "fan-2", "fan-3"],
        "each child enqueued exactly once"
    );
}

#[dbos_testkit::test]
async fn work_enqueued_with_the_sql_function_runs_here(db: TestDatabase) {
    let _dbos = Dbos::launch(all_queues(db.config("testapp")))
        .await
        .unwrap();
    let client = db.connect().await;
    let id: String = client
        .query_one("SELECT dbos.enqueue_workflow('double', 'simple', ARRAY['21'::json], workflow_id => 'from-sql')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, "from-sql");
    let out = eventually("the SQL-enqueued workflow to finish", Duration::from_secs(20), || async {
        let row = client
            .query_one(
                "SELECT s.status, o.output FROM dbos.workflow_status s LEFT JOIN dbos.workflow_output o USING (workflow_uuid)
                  WHERE workflow_uuid = 'from-sql'",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, String>(0) == "SUCCESS").then(|| row.get::<_, String>(1))
    })
    .await;
    assert_eq!(out, "42");
}

#[dbos_testkit::test]
async fn work_enqueued_by_the_dbos_python_client_runs_here_and_reads_back_in_python(
    db: TestDatabase,
) {
    let _dbos = Dbos::launch(all_queues(db.config("testapp")))
        .await
        .unwrap();
    let script = r#"
import sys
from dbos import DBOSClient, WorkflowSerializationFormat
client = DBOSClient(system_database_url=sys.argv[1])
handle = client.enqueue({"workflow_name": "double", "queue_name": "simple", "workflow_id": "from-python",
                         "serialization_type": WorkflowSerializationFormat.PORTABLE}, 50)
print("result", handle.get_result())
"#;
    let out = dbos_testkit::python::run_python(script, &[&db.url()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("result 100"), "{stdout}");
    let row = db
        .connect()
        .await
        .query_one("SELECT status, serialization, executor_id FROM dbos.workflow_status WHERE workflow_uuid = 'from-python'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "SUCCESS");
    assert_eq!(row.get::<_, String>(1), "portable_json");
    assert_eq!(
        row.get::<_, String>(2),
        _dbos.executor_id(),
        "our executor ran it"
    );
}

/// Holds DBOS Python's background-job lock with DBOS Python's own code (3.4.0's
/// `PostgresSystemDatabase.background_job_lock("background_jobs")`, the lock its delayed-
/// workflow and timeout sweeps run under), until a line arrives on stdin. The key is whatever
/// DBOS computes; nothing here repeats its formula. Python ends a session idle in that
/// transaction after 5 s, so the test holds it for less.
const HOLD_DBOS_SWEEP_LOCK: &str = r#"
import sys, time
from dbos._serialization import DefaultSerializer
from dbos._sys_db import SystemDatabase
sys_db = SystemDatabase.create(system_database_url=sys.argv[1], engine_kwargs={}, engine=None,
                               schema="dbos", serializer=DefaultSerializer(), executor_id=None,
                               app_name=sys.argv[2])
while True:
    with sys_db.background_job_lock("background_jobs") as acquired:
        if acquired:
            print("held", flush=True)
            sys.stdin.readline()
            break
    time.sleep(0.02)
print("released", flush=True)
"#;

#[dbos_testkit::test]
async fn sweeps_cancel_expired_work_and_release_delayed_work_under_one_lock(db: TestDatabase) {
    let _dbos = Dbos::launch(db.config("testapp")).await.unwrap();
    let client = db.connect().await;
    // Expired while still enqueued (a deadline given at enqueue, as DBOS clients can).
    client
        .execute(
            "SELECT dbos.enqueue_workflow('double', 'unserved', ARRAY['1'::json], workflow_id => 'expired',
                                          deadline_epoch_ms => (extract(epoch from now()) * 1000)::bigint - 1)",
            &[],
        )
        .await
        .unwrap();
    let status = |id: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = $1",
                    &[&id],
                )
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    eventually(
        "the timeout sweep to cancel it",
        Duration::from_secs(10),
        || async { (status("expired").await == "CANCELLED").then_some(()) },
    )
    .await;

    // While DBOS Python holds its sweep lock for this application, this executor does not
    // sweep: both languages take the same lock, so one process sweeps at a time.
    let mut python =
        dbos_testkit::python::spawn_python(HOLD_DBOS_SWEEP_LOCK, &[&db.url(), "testapp"]).await;
    assert_eq!(python.read_line(Duration::from_secs(60)).await, "held");
    let held_since = Instant::now();
    client
        .execute(
            "SELECT dbos.enqueue_workflow('double', 'unserved', ARRAY['1'::json], workflow_id => 'delayed',
                                          delay_until_epoch_ms => (extract(epoch from now()) * 1000)::bigint)",
            &[],
        )
        .await
        .unwrap();
    // Two and a half sweep periods (1 s each): with another key, a sweep would have run.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let while_held = status("delayed").await;
    python.write_line("release").await;
    assert_eq!(python.read_line(Duration::from_secs(10)).await, "released");
    assert!(
        held_since.elapsed() < Duration::from_secs(5),
        "Python held the lock past its idle timeout, so it may have been released early"
    );
    assert!(
        python.wait(Duration::from_secs(10)).await,
        "the python script failed"
    );
    assert_eq!(
        while_held, "DELAYED",
        "no sweep ran while DBOS Python held the lock"
    );
    eventually(
        "the delay sweep to enqueue it",
        Duration::from_secs(10),
        || async { (status("delayed").await == "ENQUEUED").then_some(()) },
    )
    .await;
}

static VERSIONED: Queue = Queue::new("versioned").polling_interval(Duration::from_millis(50));

#[dbos_testkit::test]
async fn an_enqueue_for_another_app_version_runs_only_on_an_executor_of_that_version(
    db: TestDatabase,
) {
    let dbos = Dbos::launch(
        db.config("testapp")
            .executor_id("v1-exec")
            .application_version("v1")
            .queue(&VERSIONED),
    )
    .await
    .unwrap();
    let other = double(1)
        .id("for-v2")
        .on(&dbos)
        .enqueue(&VERSIONED)
        .app_version("v2")
        .await
        .unwrap();
    // Enqueued after it on the same queue: claims go in enqueue order, so once this one has
    // run, every claim that could have taken `for-v2` has been made.
    let own = double(2)
        .id("for-v1")
        .on(&dbos)
        .enqueue(&VERSIONED)
        .app_version("v1")
        .await
        .unwrap();
    assert_eq!(own.result().await.unwrap(), 4);
    let client = db.connect().await;
    let row = |id: &'static str| {
        let client = &client;
        async move {
            let r = client
                .query_one(
                    "SELECT status, application_version, executor_id FROM dbos.workflow_status WHERE workflow_uuid = $1",
                    &[&id],
                )
                .await
                .unwrap();
            (
                r.get::<_, String>(0),
                r.get::<_, Option<String>>(1),
                r.get::<_, Option<String>>(2),
            )
        }
    };
    assert_eq!(
        row("for-v1").await,
        ("SUCCESS".into(), Some("v1".into()), Some("v1-exec".into()))
    );
    assert_eq!(
        row("for-v2").await,
        ("ENQUEUED".into(), Some("v2".into()), None),
        "the v1 executor left the v2 workflow alone"
    );

    let v2 = Dbos::launch(
        db.config("testapp")
            .executor_id("v2-exec")
            .application_version("v2")
            .queue(&VERSIONED),
    )
    .await
    .unwrap();
    assert_eq!(other.result().await.unwrap(), 2);
    assert_eq!(
        row("for-v2").await,
        ("SUCCESS".into(), Some("v2".into()), Some("v2-exec".into()))
    );
    drop(v2);
}
