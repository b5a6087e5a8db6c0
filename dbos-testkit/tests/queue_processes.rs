//! Several executor processes on one database share queues: global concurrency is never
//! exceeded, rate-limit windows hold, priority order is respected, deduplication ids are
//! rejected while held and free afterwards, and the work of an executor killed with SIGKILL
//! is finished by the others after recovery.

use std::collections::HashMap;
use std::time::Duration;

use dbos_core::{Config, Dbos};
use dbos_testkit::crash::{eventually, ChildProcess};
use dbos_testkit::TestDatabase;
use serde_json::json;

const WORKER: &str = env!("CARGO_BIN_EXE_dbos-queue-worker");

/// (workflow id, executor, started, ended) of every step run.
async fn events(db: &TestDatabase) -> Vec<(String, String, i64, Option<i64>)> {
    let client = db.connect().await;
    client
        .query("SELECT workflow_id, executor, started_ms, ended_ms FROM queue_events ORDER BY started_ms, id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// The most intervals overlapping at any instant.
fn max_overlap(intervals: &[(i64, i64)]) -> usize {
    let mut points: Vec<(i64, i32)> = intervals
        .iter()
        .flat_map(|&(s, e)| [(s, 1), (e, -1)])
        .collect();
    points.sort_by_key(|&(t, d)| (t, d)); // ends before starts at the same instant
    let (mut now, mut best) = (0i32, 0i32);
    for (_, d) in points {
        now += d;
        best = best.max(now);
    }
    best as usize
}

async fn wait_all_success(db: &TestDatabase, ids: &[String]) {
    let client = db.connect().await;
    eventually("every job to succeed", Duration::from_secs(90), || async {
        let done: i64 = client
            .query_one("SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid = ANY($1) AND status = 'SUCCESS'", &[&ids])
            .await
            .unwrap()
            .get(0);
        (done as usize == ids.len()).then_some(())
    })
    .await;
}

async fn enqueue(producer: &Dbos, queue: &str, ms: u64, id: String) -> String {
    producer
        .enqueue_by_name("job", queue, vec![json!(ms)], Some(id.clone()))
        .await
        .unwrap();
    id
}

#[dbos_testkit::test]
async fn executor_processes_share_queues_within_their_limits(db: TestDatabase) {
    let producer = Dbos::launch(
        Config::new("queue-subject")
            .system_database_url(db.url())
            .application_version("queue-subject-v1")
            .executor_id("producer")
            .pool_size(4),
    )
    .await
    .unwrap();
    db.connect()
        .await
        .batch_execute(
            "CREATE TABLE queue_events (id bigserial PRIMARY KEY, workflow_id text NOT NULL, executor text NOT NULL,
                                        started_ms bigint NOT NULL, ended_ms bigint)",
        )
        .await
        .unwrap();

    // Priority: everything is enqueued before any worker runs.
    let mut ordered = Vec::new();
    for (i, p) in [7, 2, 0, 9, 2, 5].iter().enumerate() {
        let id = format!("ord-{p}-{i}");
        db.connect()
            .await
            .execute(
                "SELECT dbos.enqueue_workflow('job', 'ordered', ARRAY['20'::json], workflow_id => $1, priority => $2,
                                              application_name => 'queue-subject')",
                &[&id, p],
            )
            .await
            .unwrap();
        ordered.push(id);
        // Distinct created_at milliseconds, so ties in priority have a defined order.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let spawn = |name: &str| {
        // Each worker's connections carry its name, so the test can see when they are gone.
        let url = format!("{}?application_name={name}", db.url());
        ChildProcess::spawn(
            WORKER,
            &[],
            &[
                ("DBOS_SYSTEM_DATABASE_URL", url.as_str()),
                ("DBOS__VMID", name),
                ("RUST_LOG", "warn"),
            ],
        )
    };
    let workers = vec![spawn("w1"), spawn("w2"), spawn("w3")];

    let mut shared = Vec::new();
    for i in 0..12 {
        shared.push(enqueue(&producer, "shared", 200, format!("shared-{i}")).await);
    }
    let mut limited = Vec::new();
    for i in 0..10 {
        limited.push(enqueue(&producer, "limited", 10, format!("limited-{i}")).await);
    }
    wait_all_success(&db, &ordered).await;
    wait_all_success(&db, &shared).await;
    wait_all_success(&db, &limited).await;
    let ev = events(&db).await;

    // Global concurrency 2, across three processes.
    let intervals: Vec<(i64, i64)> = ev
        .iter()
        .filter(|e| e.0.starts_with("shared-"))
        .map(|e| (e.2, e.3.unwrap()))
        .collect();
    assert_eq!(intervals.len(), 12);
    assert!(
        max_overlap(&intervals) <= 2,
        "more than 2 ran at once: {intervals:?}"
    );

    // Rate limit: 4 starts per 2 s, measured on dequeue times.
    let client = db.connect().await;
    let starts: Vec<i64> = client
        .query("SELECT started_at_epoch_ms FROM dbos.workflow_status WHERE queue_name = 'limited' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (i, &t) in starts.iter().enumerate() {
        let in_window = starts[i..].iter().take_while(|&&u| u < t + 2000).count();
        assert!(in_window <= 4, "{in_window} starts within 2 s: {starts:?}");
    }

    // Priority order, one at a time across every process.
    let ran: Vec<&str> = ev
        .iter()
        .filter(|e| e.0.starts_with("ord-"))
        .map(|e| e.0.as_str())
        .collect();
    assert_eq!(
        ran,
        vec!["ord-0-2", "ord-2-1", "ord-2-4", "ord-5-5", "ord-7-0", "ord-9-3"]
    );

    // Deduplication across processes, through the SQL function.
    let dedup = |id: &'static str| {
        let client = &client;
        async move {
            client
                .execute(
                    "SELECT dbos.enqueue_workflow('job', 'plain', ARRAY['800'::json], workflow_id => $1,
                                                  deduplication_id => 'invoice-7', application_name => 'queue-subject')",
                    &[&id],
                )
                .await
        }
    };
    dedup("dedup-1").await.unwrap();
    let e = dedup("dedup-2").await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("23505"), "{e}");
    assert!(e
        .as_db_error()
        .unwrap()
        .message()
        .contains("DBOS queue duplicated"));
    wait_all_success(&db, &["dedup-1".to_owned()]).await;
    dedup("dedup-3")
        .await
        .expect("the id is free once its holder completed");
    wait_all_success(&db, &["dedup-3".to_owned()]).await;

    // SIGKILL one executor while it runs work; recovery hands its work to the others.
    let mut long = Vec::new();
    for i in 0..6 {
        long.push(enqueue(&producer, "plain", 1500, format!("long-{i}")).await);
    }
    eventually("w1 to be running a long job", Duration::from_secs(30), || async {
        let n: i64 = client
            .query_one("SELECT count(*) FROM dbos.workflow_status WHERE executor_id = 'w1' AND status = 'PENDING' AND queue_name = 'plain'", &[])
            .await
            .unwrap()
            .get(0);
        (n > 0).then_some(())
    })
    .await;
    let w1_connections: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'w1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(w1_connections > 0, "w1's connections are named after it");
    let mut workers = workers.into_iter();
    workers.next().unwrap().kill9().await;
    // A statement w1 sent before it died may still commit: wait until its last connection is
    // gone. From then on nothing changes w1's rows but the recovery below, so what it must
    // recover can be read first without racing anyone.
    eventually(
        "w1's connections to close",
        Duration::from_secs(30),
        || async {
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'w1'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (n == 0).then_some(())
        },
    )
    .await;
    let mut stranded: Vec<String> = client
        .query(
            "SELECT workflow_uuid FROM dbos.workflow_status WHERE executor_id = 'w1' AND status = 'PENDING'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    stranded.sort();
    assert!(!stranded.is_empty(), "w1 died holding work");
    let mut recovered = producer.recover_executors(&["w1"]).await.unwrap();
    recovered.sort();
    assert_eq!(
        recovered, stranded,
        "exactly w1's pending workflows were re-enqueued"
    );
    let queues: Vec<Option<String>> = client
        .query(
            "SELECT DISTINCT queue_name FROM dbos.workflow_status WHERE workflow_uuid = ANY($1)",
            &[&recovered],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        queues,
        vec![Some("plain".to_owned())],
        "queued work goes back to its own queue"
    );
    wait_all_success(&db, &long).await;
    let ev = events(&db).await;
    let mut runs: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in ev.iter().filter(|e| e.0.starts_with("long-")) {
        runs.entry(e.0.as_str()).or_default().push(e.1.as_str());
    }
    for id in &long {
        let by = &runs[id.as_str()];
        assert!(by.len() <= 2, "{id} ran {by:?}");
        if by.len() == 2 {
            assert_eq!(
                by[0], "w1",
                "only the killed executor's work ran twice: {id} {by:?}"
            );
            assert_ne!(by[1], "w1");
        }
    }
    let finished_by: Vec<String> = client
        .query(
            "SELECT executor_id FROM dbos.workflow_status WHERE workflow_uuid = ANY($1)",
            &[&long],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(finished_by.iter().all(|e| e != "w1"), "{finished_by:?}");
    // Worker concurrency 2 per process spread the six long jobs over every executor.
    let executors: std::collections::HashSet<&str> = ev
        .iter()
        .filter(|e| e.0.starts_with("long-"))
        .map(|e| e.1.as_str())
        .collect();
    assert!(executors.len() >= 2, "the work was shared: {executors:?}");
    for w in workers {
        w.kill9().await;
    }
    producer.shutdown().await.unwrap();
}
