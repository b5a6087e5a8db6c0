//! A program for crash tests.
//!
//! Without arguments: runs one five-step workflow (id `proc-crash`) whose steps count their
//! runs in the table `crash_counters` of the system database. The first run of step 3 hangs,
//! so a test can SIGKILL the process mid-step; run again with the same executor id, it
//! recovers the workflow and prints its result as JSON.
//!
//! `transactions <n>`: runs `n` workflows (ids `tx-0` ...) of five `#[transaction]`s, each
//! adding 1 to its own row of `tx_counters` (in the system database, or in the data source
//! `app` when `DBOS_CRASH_DATASOURCE_URL` is set), all in flight at once; a test kills it at
//! random points and runs it again until every workflow is done. Exactly once means every
//! counter ends at 1.
//!
//! `hold <file>`: launches (with `Config::from_env`, so on the local Postgres of
//! `DBOS_LOCAL_POSTGRES_DIR` when no URL is set), writes `<file>` once launched, and waits
//! until killed: a process using the local Postgres, for the tests of when it stops.
//!
//! Environment: `DBOS_SYSTEM_DATABASE_URL`, `DBOS__VMID`, `DBOS_CRASH_DATASOURCE_URL`.

use std::time::Duration;

use dbos_core::{step, transaction, workflow, Config, Dbos, Error, ErrorKind, Transaction};

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

fn db_error(e: tokio_postgres::Error) -> Error {
    Error::new(ErrorKind::Database, e.to_string())
}

/// One increment of the workflow's counter row for `step`, then a short pause before the
/// commit (so a kill often lands between the statement and the commit).
async fn increment(tx: &Transaction<'_>, wf: &str, step: i32) -> Result<i32, Error> {
    let row = tx
        .query_one(
            "INSERT INTO tx_counters (wf, step, n) VALUES ($1, $2, 1)
             ON CONFLICT (wf, step) DO UPDATE SET n = tx_counters.n + 1 RETURNING n",
            &[&wf, &step],
        )
        .await
        .map_err(db_error)?;
    tx.execute("SELECT pg_sleep(0.005)", &[])
        .await
        .map_err(db_error)?;
    Ok(row.get(0))
}

#[transaction]
async fn increment_here(tx: &Transaction<'_>, wf: String, step: i32) -> Result<i32, Error> {
    increment(tx, &wf, step).await
}

#[transaction(datasource = "app")]
async fn increment_app(tx: &Transaction<'_>, wf: String, step: i32) -> Result<i32, Error> {
    increment(tx, &wf, step).await
}

#[workflow]
async fn five_transactions(in_app: bool) -> Result<Vec<i32>, Error> {
    let wf = dbos_core::workflow_id().unwrap_or_default();
    let mut out = Vec::new();
    for step in 1..=5 {
        out.push(if in_app {
            increment_app(wf.clone(), step).await?
        } else {
            increment_here(wf.clone(), step).await?
        });
    }
    Ok(out)
}

async fn transactions(n: usize) -> Result<(), Error> {
    let app_url = std::env::var("DBOS_CRASH_DATASOURCE_URL").ok();
    let mut config = Config::from_env("crash-subject")?
        .application_version("crash-subject-v1")
        .pool_size(8);
    if let Some(url) = &app_url {
        config = config.data_source("app", url);
    }
    let dbos = Dbos::launch(config).await?;
    let client = match dbos.data_source("app") {
        Some(app) => app.client().await?,
        None => dbos.system_database().client().await?,
    };
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS tx_counters (wf text, step int, n int NOT NULL, PRIMARY KEY (wf, step))",
        )
        .await
        .map_err(db_error)?;
    drop(client);
    let mut handles = Vec::new();
    for i in 0..n {
        handles.push(
            five_transactions(app_url.is_some())
                .id(format!("tx-{i}"))
                .start()
                .await?,
        );
    }
    for h in handles {
        let out = h.result().await?;
        if out != [1, 1, 1, 1, 1] {
            return Err(Error::new(
                ErrorKind::Database,
                format!("a workflow saw its counters at {out:?}"),
            ));
        }
    }
    println!("all {n} workflows done");
    dbos.shutdown().await
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("transactions") {
        let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(20);
        return transactions(n).await;
    }
    if let (Some("hold"), Some(ready)) = (args.first().map(String::as_str), args.get(1)) {
        let _dbos = Dbos::launch(Config::from_env("hold-subject")?.pool_size(2)).await?;
        std::fs::write(ready, "launched\n")
            .map_err(|e| Error::new(ErrorKind::Io, format!("could not write {ready}: {e}")))?;
        return std::future::pending().await;
    }
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
