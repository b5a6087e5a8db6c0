//! T: how long a dead executor's work waits. N worker processes (1, 3, 10) serve a queue
//! with the default recovery settings; one with work in progress is `SIGKILL`ed; the time
//! until the first of its workflows records a step on another executor is measured. With one
//! worker, the dead one's replacement (a new process, a new generated-style id) does the
//! recovering, at its launch (the server has been up for longer than the recovery grace).
//!
//! Workers are this binary, re-run as `bench takeover-worker <url> <executor id>`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbos_core::{step, workflow, Config, Dbos, Error, ErrorKind, Queue};
use serde_json::json;

use crate::{Report, Server};

static TAKEOVER: Queue = Queue::new("takeover").worker_concurrency(4);

fn db_error(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Database, e.to_string())
}

#[step]
async fn tick(workflow_id: String, n: u32) -> Result<u32, Error> {
    let dbos = Dbos::current()?;
    let client = dbos.system_database().client().await?;
    client
        .execute(
            "INSERT INTO takeover_steps (workflow_id, executor, step, at_ms)
             VALUES ($1, $2, $3, (extract(epoch from clock_timestamp()) * 1000)::bigint)",
            &[&workflow_id, &dbos.executor_id(), &(n as i32)],
        )
        .await
        .map_err(db_error)?;
    drop(client);
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(n)
}

#[workflow]
async fn long_job(steps: u32) -> Result<u32, Error> {
    let id = dbos_core::workflow_id().unwrap_or_default();
    let mut sum = 0;
    for n in 1..=steps {
        sum += tick(id.clone(), n).await?;
    }
    Ok(sum)
}

/// The worker process: serves the queue until killed.
pub(crate) async fn worker(url: &str, executor_id: &str) {
    let dbos = Dbos::launch(
        Config::new("takeover")
            .system_database_url(url)
            .executor_id(executor_id)
            .application_version("takeover-v1")
            .pool_size(6)
            .queue(&TAKEOVER),
    )
    .await
    .expect("launch the takeover worker");
    let _keep = dbos;
    std::future::pending::<()>().await;
}

fn spawn_worker(url: &str, executor_id: &str) -> Child {
    Command::new(std::env::current_exe().expect("the bench binary"))
        .args(["takeover-worker", url, executor_id])
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn a takeover worker")
}

fn kill9(child: &mut Child) {
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// One round with `workers` processes; returns milliseconds from the kill to the first step
/// recorded elsewhere for the victim's work.
async fn round(server: &Server, workers: usize) -> i64 {
    let url = server.fresh_database(&format!("takeover_{workers}")).await;
    let producer = Dbos::launch(
        Config::new("takeover")
            .system_database_url(&url)
            .application_version("takeover-v1")
            .pool_size(2),
    )
    .await
    .expect("launch the producer");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE takeover_steps (workflow_id text, executor text, step int, at_ms bigint)",
        )
        .await
        .expect("create the step log");
    let mut children: Vec<(String, Child)> = (0..workers)
        .map(|i| {
            let id = format!("dbos-rs-bench-{workers}-{i}");
            let child = spawn_worker(&url, &id);
            (id, child)
        })
        .collect();
    // Two jobs per worker, four places per worker: the survivors have room for the victim's
    // work, so what is measured is the recovery, not a wait in the queue behind a backlog.
    for i in 0..workers * 2 {
        producer
            .enqueue_by_name(
                "long_job",
                "takeover",
                vec![json!(400)],
                Some(format!("job-{i}")),
            )
            .await
            .expect("enqueue");
    }
    // The producer is an executor too: gone before the kill, so only the workers recover.
    let _ = producer.shutdown().await;
    // Every worker past its recovery grace (10 s by default) before the kill, as in a
    // deployment that has been up for a while.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (victim, in_flight): (String, Vec<String>) = loop {
        let rows = client
            .query(
                "SELECT executor_id, array_agg(workflow_uuid) FROM dbos.workflow_status
                  WHERE status = 'PENDING' AND executor_id LIKE 'dbos-rs-bench-%' GROUP BY 1",
                &[],
            )
            .await
            .expect("find a busy worker");
        if let Some(r) = rows.first() {
            break (r.get(0), r.get(1));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let position = children
        .iter()
        .position(|(id, _)| *id == victim)
        .expect("the victim is a worker");
    let (_, mut child) = children.remove(position);
    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    kill9(&mut child);
    if workers == 1 {
        // The replacement: a new process under a new id.
        children.push((
            "dbos-rs-bench-1-replacement".to_owned(),
            spawn_worker(&url, "dbos-rs-bench-1-replacement"),
        ));
    }
    let started = Instant::now();
    let first = loop {
        let at: Option<i64> = client
            .query_one(
                "SELECT min(at_ms) FROM takeover_steps WHERE workflow_id = ANY($1) AND executor <> $2",
                &[&in_flight, &victim],
            )
            .await
            .expect("read the step log")
            .get(0);
        if let Some(at) = at {
            break at;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the victim's work was never recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (_, mut c) in children {
        kill9(&mut c);
    }
    first - killed_ms
}

/// T1/T3/T10: kill-to-recovery times.
pub(crate) async fn takeover(server: &Server) -> Report {
    let mut results = Vec::new();
    for workers in [1usize, 3, 10] {
        let ms = round(server, workers).await;
        println!("T: {workers} worker(s): SIGKILL to the first recovered step {ms} ms");
        results.push((workers, ms));
    }
    let summary = results
        .iter()
        .map(|(w, ms)| format!("{w} worker(s): {ms} ms"))
        .collect::<Vec<_>>()
        .join("; ");
    Report {
        workload: "T (SIGKILL to first recovered step)",
        summary,
        json: json!({
            "workload": "T",
            "recovery_interval_ms": 2000,
            "recovery_grace_ms": 10000,
            "kill_to_first_recovered_step_ms": results.iter().map(|(w, ms)| json!({"workers": w, "ms": ms})).collect::<Vec<_>>(),
        }),
    }
}
