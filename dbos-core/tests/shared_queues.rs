//! Queues shared by many executors: their limits live in `dbos.queues` (one set for every
//! executor and DBOS's tools), and an executor claims only the workflows it can run, so a
//! worker in another language sharing the queue gets its own.

use std::sync::Mutex;
use std::time::Duration;

use dbos_core::{step, workflow, Dbos, Error, ErrorKind, Queue, QueueConflict};
use dbos_testkit::crash::{eventually, ChildProcess};
use dbos_testkit::TestDatabase;

static INTERVALS: Mutex<Vec<(String, i64, i64)>> = Mutex::new(Vec::new());

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

#[step]
async fn busy(batch: String, ms: u64) -> Result<(), Error> {
    let start = now_us();
    tokio::time::sleep(Duration::from_millis(ms)).await;
    INTERVALS.lock().unwrap().push((batch, start, now_us()));
    Ok(())
}

#[workflow]
async fn busy_job(batch: String, ms: u64) -> Result<(), Error> {
    busy(batch, ms).await
}

fn max_overlap(batch: &str) -> usize {
    let intervals = INTERVALS.lock().unwrap();
    let mut points: Vec<(i64, i32)> = intervals
        .iter()
        .filter(|(b, _, _)| b == batch)
        .flat_map(|&(_, s, e)| [(s, 1), (e, -1)])
        .collect();
    points.sort();
    let (mut now, mut best) = (0i32, 0i32);
    for (_, d) in points {
        now += d;
        best = best.max(now);
    }
    best as usize
}

static TUNABLE: Queue = Queue::new("tunable")
    .worker_concurrency(1)
    .polling_interval(Duration::from_millis(100));

#[dbos_testkit::test]
async fn a_limit_changed_in_the_table_applies_within_a_polling_interval(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").queue(&TUNABLE))
        .await
        .unwrap();
    let run = |batch: &'static str, n: usize| {
        let dbos = dbos.clone();
        async move {
            let mut handles = Vec::new();
            for _ in 0..n {
                handles.push(
                    busy_job(batch.into(), 300)
                        .on(&dbos)
                        .enqueue(&TUNABLE)
                        .await
                        .unwrap(),
                );
            }
            for h in handles {
                h.result().await.unwrap();
            }
        }
    };
    run("before", 3).await;
    assert_eq!(max_overlap("before"), 1);
    db.connect()
        .await
        .execute(
            "UPDATE dbos.queues SET worker_concurrency = 3 WHERE name = 'tunable'",
            &[],
        )
        .await
        .unwrap();
    // Two polling intervals: the row is re-read once per interval.
    tokio::time::sleep(Duration::from_millis(250)).await;
    run("after", 6).await;
    assert_eq!(
        max_overlap("after"),
        3,
        "the new limit from dbos.queues applies"
    );
    dbos.shutdown().await.unwrap();
}

async fn concurrency_in_table(db: &TestDatabase) -> Option<i32> {
    db.connect()
        .await
        .query_one(
            "SELECT concurrency FROM dbos.queues WHERE name = 'policy'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[dbos_testkit::test]
async fn queue_definitions_follow_dbos_conflict_policies(db: TestDatabase) {
    let launch = |version: &str, queue: Queue| {
        Dbos::launch(
            db.config("testapp")
                .application_version(version)
                .queue(&queue),
        )
    };
    launch("v1", Queue::new("policy").concurrency(5))
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    assert_eq!(concurrency_in_table(&db).await, Some(5));
    // DBOS tooling (or SQL) changes it.
    db.connect()
        .await
        .execute(
            "UPDATE dbos.queues SET concurrency = 7 WHERE name = 'policy'",
            &[],
        )
        .await
        .unwrap();
    // A newer version deploys: it is the latest, so its definition wins.
    launch("v2", Queue::new("policy").concurrency(9))
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    assert_eq!(concurrency_in_table(&db).await, Some(9));
    // An older version still running in a rolling deploy does not put its limits back.
    launch("v1", Queue::new("policy").concurrency(5))
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    assert_eq!(concurrency_in_table(&db).await, Some(9));
    launch(
        "v2",
        Queue::new("policy")
            .concurrency(3)
            .on_conflict(QueueConflict::NeverUpdate),
    )
    .await
    .unwrap()
    .shutdown()
    .await
    .unwrap();
    assert_eq!(concurrency_in_table(&db).await, Some(9));
    launch(
        "v1",
        Queue::new("policy")
            .concurrency(4)
            .on_conflict(QueueConflict::AlwaysUpdate),
    )
    .await
    .unwrap()
    .shutdown()
    .await
    .unwrap();
    assert_eq!(concurrency_in_table(&db).await, Some(4));
    // A queue name another application owns is refused.
    db.connect()
        .await
        .execute(
            "INSERT INTO dbos.queues (name, application_name) VALUES ('taken', 'another-app')",
            &[],
        )
        .await
        .unwrap();
    let e = launch("v2", Queue::new("taken")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e:?}");
    assert!(e.to_string().contains("another-app"), "{e}");
}

#[workflow]
async fn rs_job(x: i64) -> Result<i64, Error> {
    Ok(x + 1000)
}

static SHARED: Queue = Queue::new("shared").polling_interval(Duration::from_millis(100));

const PY_WORKER: &str = r#"
import sys, time
from dbos import DBOS
DBOS(config={"name": "testapp", "system_database_url": sys.argv[1],
              "application_version": "py-v", "executor_id": "py-worker"})

@DBOS.workflow()
def py_job(x):
    return x * 2

DBOS.launch()
DBOS.register_queue("shared", polling_interval_sec=0.1, on_conflict="never_update")
while True:
    time.sleep(1)
"#;

const PY_ENQUEUE: &str = r#"
import sys
from dbos import DBOSClient
client = DBOSClient(system_database_url=sys.argv[1], application_name="testapp")
client.enqueue({"workflow_name": "py_job", "queue_name": "shared", "workflow_id": "py-unversioned"}, 21)
client.enqueue({"workflow_name": "py_job", "queue_name": "shared", "workflow_id": "py-own",
                "app_version": "py-v"}, 5)
"#;

/// The status of workflow `id`, whose row must exist.
async fn status(db: &TestDatabase, id: &str) -> String {
    db.status_of(id)
        .await
        .unwrap_or_else(|| panic!("no workflow `{id}`"))
}

#[dbos_testkit::test]
async fn a_queue_shared_with_dbos_python_workers_runs_each_side_s_own_work(db: TestDatabase) {
    let bin = dbos_testkit::python::venv_bin().await;
    let python = bin.join("python").display().to_string();
    let url = db.url();
    // Migrated by us first, so Python finds the schema ready.
    Dbos::launch(db.config("testapp").application_version("setup"))
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    let worker = ChildProcess::spawn(&python, &["-c", PY_WORKER, &url], &[]);
    let client = db.connect().await;
    eventually(
        "the Python worker to launch",
        Duration::from_secs(60),
        || async {
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM dbos.application_versions WHERE version_name = 'py-v'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (n == 1).then_some(())
        },
    )
    .await;
    // Ours launches last: the latest version, so it may dequeue version-less work.
    let dbos = Dbos::launch(
        db.config("testapp")
            .application_version("rs-v")
            .queue(&SHARED),
    )
    .await
    .unwrap();
    let out = dbos_testkit::python::run_python(PY_ENQUEUE, &[&url]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Also a portable row naming a workflow nobody here has.
    client
        .execute(
            "SELECT dbos.enqueue_workflow('not_in_any_binary', 'shared', ARRAY['1'::json], workflow_id => 'orphan', \
             application_name => 'testapp')",
            &[],
        )
        .await
        .unwrap();
    let mut ours = Vec::new();
    for i in 0..3 {
        ours.push(rs_job(i).on(&dbos).enqueue(&SHARED).await.unwrap());
    }
    for (i, h) in ours.iter().enumerate() {
        assert_eq!(h.result().await.unwrap(), i as i64 + 1000);
    }
    eventually(
        "Python to run its own versioned work",
        Duration::from_secs(30),
        || async { (status(&db, "py-own").await == "SUCCESS").then_some(()) },
    )
    .await;
    // Version-less pickled work: we are the latest version, so without the claim filter we
    // would take it; it waits for a Python worker instead.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(status(&db, "py-unversioned").await, "ENQUEUED");
    assert_eq!(status(&db, "orphan").await, "ENQUEUED");
    // Python's version becomes the latest: its worker takes the version-less work.
    client
        .execute(
            "UPDATE dbos.application_versions SET version_timestamp = (extract(epoch from now()) * 1000)::bigint + 1000 \
             WHERE version_name = 'py-v'",
            &[],
        )
        .await
        .unwrap();
    eventually(
        "Python to run the version-less work",
        Duration::from_secs(30),
        || async { (status(&db, "py-unversioned").await == "SUCCESS").then_some(()) },
    )
    .await;
    let executor: String = client
        .query_one(
            "SELECT executor_id FROM dbos.workflow_status WHERE workflow_uuid = 'py-unversioned'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(executor, "py-worker");
    worker.kill9().await;
    dbos.shutdown().await.unwrap();
}
