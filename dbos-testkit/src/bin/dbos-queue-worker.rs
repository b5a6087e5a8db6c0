//! An executor process for multi-process queue tests. It serves these queues until killed:
//!
//! | queue | limits |
//! | --- | --- |
//! | `shared` | global concurrency 2 |
//! | `limited` | 4 starts per 2 s |
//! | `ordered` | global concurrency 1 (so dequeue order is visible) |
//! | `plain` | worker concurrency 2 |
//!
//! and runs the workflow `job(ms)`, whose one step logs its start and end (with this
//! executor's id) in the table `queue_events`, then returns the executor id.
//!
//! Environment: `DBOS_SYSTEM_DATABASE_URL`, `DBOS__VMID` (unset: a generated id),
//! `DBOS_TEST_RECOVERY_MS` (how often to look for dead executors; the lock grace is three times
//! that), `DBOS_TEST_VANISH_SECS` (`Config::vanished_executor_timeout`).

use std::time::Duration;

use dbos_core::{step, workflow, Config, Dbos, Error, ErrorKind, Queue};

static SHARED: Queue = Queue::new("shared")
    .concurrency(2)
    .polling_interval(Duration::from_millis(50));
static LIMITED: Queue = Queue::new("limited")
    .rate_limit(4, Duration::from_secs(2))
    .polling_interval(Duration::from_millis(50));
static ORDERED: Queue = Queue::new("ordered")
    .concurrency(1)
    .polling_interval(Duration::from_millis(50));
static PLAIN: Queue = Queue::new("plain")
    .worker_concurrency(2)
    .polling_interval(Duration::from_millis(50));

fn db_error(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Database, e.to_string())
}

#[step]
async fn timed(workflow_id: String, ms: u64) -> Result<String, Error> {
    let dbos = Dbos::current()?;
    let executor = dbos.executor_id().to_owned();
    let client = dbos.system_database().client().await?;
    let row = client
        .query_one(
            "INSERT INTO queue_events (workflow_id, executor, started_ms)
             VALUES ($1, $2, (extract(epoch from clock_timestamp()) * 1000)::bigint) RETURNING id",
            &[&workflow_id, &executor],
        )
        .await
        .map_err(db_error)?;
    let event: i64 = row.get(0);
    drop(client);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let client = dbos.system_database().client().await?;
    client
        .execute("UPDATE queue_events SET ended_ms = (extract(epoch from clock_timestamp()) * 1000)::bigint WHERE id = $1", &[&event])
        .await
        .map_err(db_error)?;
    Ok(executor)
}

#[workflow]
async fn job(ms: u64) -> Result<String, Error> {
    let id = dbos_core::workflow_id().unwrap_or_default();
    timed(id, ms).await
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut config = Config::from_env("queue-subject")?;
    if let Some(ms) = std::env::var("DBOS_TEST_RECOVERY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        config = config
            .recovery_interval(Duration::from_millis(ms))
            .recovery_grace(Duration::from_millis(3 * ms));
    }
    if let Some(secs) = std::env::var("DBOS_TEST_VANISH_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        config = config.vanished_executor_timeout(Duration::from_secs(secs));
    }
    let config = config
        .application_version("queue-subject-v1")
        .pool_size(6)
        .queue(&SHARED)
        .queue(&LIMITED)
        .queue(&ORDERED)
        .queue(&PLAIN);
    let dbos = Dbos::launch(config).await?;
    println!("serving as {}", dbos.executor_id());
    // Serve until killed.
    std::future::pending::<()>().await;
    Ok(())
}
