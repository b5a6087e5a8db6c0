//! A program for crash tests: runs one five-step workflow (id `proc-crash`) whose steps count
//! their runs in the table `crash_counters` of the system database. The first run of step 3
//! hangs, so a test can SIGKILL the process mid-step; run again with the same executor id,
//! it recovers the workflow and prints its result as JSON.
//!
//! Environment: `DBOS_SYSTEM_DATABASE_URL`, `DBOS__VMID`.

use std::time::Duration;

use dbos_core::{step, workflow, Config, Dbos, Error, ErrorKind};

async fn count(step: i32) -> Result<i64, Error> {
    let url = std::env::var("DBOS_SYSTEM_DATABASE_URL")
        .map_err(|_| Error::new(ErrorKind::Config, "set DBOS_SYSTEM_DATABASE_URL"))?;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .map_err(|e| Error::new(ErrorKind::Connection, e.to_string()))?;
    tokio::spawn(conn);
    let row = client
        .query_one(
            "INSERT INTO crash_counters (step, runs) VALUES ($1, 1)
             ON CONFLICT (step) DO UPDATE SET runs = crash_counters.runs + 1 RETURNING runs",
            &[&step],
        )
        .await
        .map_err(|e| Error::new(ErrorKind::Database, e.to_string()))?;
    Ok(row.get(0))
}

#[step]
async fn counted_step(n: i32) -> Result<i32, Error> {
    let runs = count(n).await?;
    if n == 3 && runs == 1 {
        // The first execution of step 3 never finishes: the test kills the process here.
        println!("step 3 reached");
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(n * 10)
}

#[workflow]
async fn five_steps() -> Result<Vec<i32>, Error> {
    let mut out = Vec::new();
    for n in 1..=5 {
        out.push(counted_step(n).await?);
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::from_env("crash-subject")?
        .application_version("crash-subject-v1")
        .pool_size(4);
    let dbos = Dbos::launch(config).await?;
    let client = dbos.system_database().client().await?;
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS crash_counters (step int PRIMARY KEY, runs bigint NOT NULL)")
        .await
        .map_err(|e| Error::new(ErrorKind::Database, e.to_string()))?;
    drop(client);
    let result = five_steps().id("proc-crash").await?;
    println!(
        "result {}",
        serde_json::to_string(&result).unwrap_or_default()
    );
    dbos.shutdown().await
}
