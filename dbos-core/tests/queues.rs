//! Queues with DBOS semantics, against a real Postgres: worker and global concurrency, rate
//! limits, priority, deduplication, partitions, delays, timeouts, enqueue from workflows, and
//! work enqueued by DBOS's own tools (SQL function, Python DBOSClient).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use dbos_core::prelude::*;
use dbos_testkit::crash::{eventually, IsolatedRuntime};
use dbos_testkit::TestDatabase;

/// Concurrency gauges and execution logs per test key.
static RUNNING: Mutex<Option<HashMap<String, (i32, i32)>>> = Mutex::new(None);
static ORDER: Mutex<Vec<(String, i64)>> = Mutex::new(Vec::new());

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
    tokio::time::sleep(Duration::from_millis(ms)).await;
    leave(&key);
    Ok(())
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
    assert_eq!(row.get::<_, String>(4), "local");
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

#[dbos_testkit::test]
async fn global_concurrency_holds_across_executors(db: TestDatabase) {
    let a = Dbos::launch(all_queues(db.config("testapp").executor_id("exec-a")))
        .await
        .unwrap();
    let b = Dbos::launch(all_queues(db.config("testapp").executor_id("exec-b")))
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..12 {
        handles.push(
            tracked("global".into(), 150, i)
                .on(&a)
                .enqueue(&GLOBAL)
                .await
                .unwrap(),
        );
    }
    for h in handles {
        h.result().await.unwrap();
    }
    assert!(peak("global") <= 3, "peak {}", peak("global"));
    let executors: Vec<String> = db
        .connect()
        .await
        .query("SELECT DISTINCT executor_id FROM dbos.workflow_status WHERE queue_name = 'global' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!executors.is_empty());
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
}

#[dbos_testkit::test]
async fn a_delayed_workflow_waits_then_runs(db: TestDatabase) {
    let dbos = Dbos::launch(all_queues(db.config("testapp")))
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    let h = double(5)
        .id("later")
        .on(&dbos)
        .enqueue(&SIMPLE)
        .delay(Duration::from_millis(1500))
        .await
        .unwrap();
    assert_eq!(h.status().await.unwrap(), Status::Delayed);
    assert_eq!(h.result().await.unwrap(), 10);
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "ran after {:?}",
        t0.elapsed()
    );
}

#[workflow]
async fn long_running(ms: u64) -> Result<u64, Error> {
    dbos_core::sleep(Duration::from_millis(ms)).await?;
    Ok(ms)
}

#[dbos_testkit::test]
async fn a_queued_workflow_timeout_starts_at_dequeue(db: TestDatabase) {
    let dbos = Dbos::launch(all_queues(db.config("testapp")))
        .await
        .unwrap();
    let h = long_running(10_000)
        .id("q-timeout")
        .timeout(Duration::from_millis(300))
        .on(&dbos)
        .enqueue(&SIMPLE)
        .await
        .unwrap();
    let e = h.result().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let row = db
        .connect()
        .await
        .query_one("SELECT status, workflow_timeout_ms, workflow_deadline_epoch_ms - started_at_epoch_ms FROM dbos.workflow_status WHERE workflow_uuid = 'q-timeout'", &[])
        .await;
    // Cancellation clears started_at; the deadline was fixed at dequeue from the timeout.
    let row = row.unwrap();
    assert_eq!(row.get::<_, String>(0), "CANCELLED");
    assert_eq!(row.get::<_, Option<i64>>(1), Some(300));
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
    let first = IsolatedRuntime::new();
    let c = config.clone();
    first
        .run(async move {
            let dbos = Dbos::launch(c).await.unwrap();
            fan_out(3).id("fan").on(&dbos).start().await.unwrap();
        })
        .await;
    eventually(
        "the parent to block after enqueuing",
        Duration::from_secs(10),
        || async { (PARENT_HANG.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;
    first.abort();
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
    assert_eq!(row.get::<_, String>(2), "local", "our executor ran it");
}

/// The sweep lock DBOS Python also takes: first 8 bytes of
/// sha256("dbos.background_job.<schema>.<app>.background_jobs").
fn sweep_key(app: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("dbos.background_job.dbos.{app}.background_jobs").as_bytes());
    i64::from_be_bytes(d[..8].try_into().unwrap())
}

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

    // While another process holds the sweep lock, this executor does not sweep.
    let holder = db.connect().await;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&sweep_key("testapp")])
        .await
        .unwrap();
    client
        .execute(
            "SELECT dbos.enqueue_workflow('double', 'unserved', ARRAY['1'::json], workflow_id => 'delayed',
                                          delay_until_epoch_ms => (extract(epoch from now()) * 1000)::bigint)",
            &[],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        status("delayed").await,
        "DELAYED",
        "no sweep ran while the lock was held elsewhere"
    );
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&sweep_key("testapp")])
        .await
        .unwrap();
    eventually(
        "the delay sweep to enqueue it",
        Duration::from_secs(10),
        || async { (status("delayed").await == "ENQUEUED").then_some(()) },
    )
    .await;
}
