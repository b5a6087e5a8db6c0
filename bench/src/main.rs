//! The benchmark: dbos-core's cost against a raw tokio-postgres floor, measured in one run.
//!
//! ```sh
//! cargo run --release -p bench                 # every workload, embedded Postgres
//! cargo run --release -p bench -- W1 W2        # some workloads
//! cargo run --release -p bench -- T            # recovery of a SIGKILLed executor (only when named)
//! cargo run --release -p bench -- S            # the scheduler's cost (only when named)
//! cargo run --release -p bench -- SER          # large step outputs by codec (only when named)
//! cargo run --release -p bench -- TRACE        # W1 and W2 with tracing off / on / exporting (only when named)
//! cargo run --release -p bench -- P            # named vs unnamed statements, PgBouncer (only when named)
//! cargo run --release -p bench -- PW6          # W6 woken by LISTEN vs polling behind PgBouncer (only when named)
//! DBOS_BENCH_URL=postgres://u:p@host/postgres cargo run --release -p bench
//! ```
//!
//! Each workload runs in a fresh database. The floor does exactly the row writes of W1 and W2
//! (status + input in one statement, one insert per step, outcome in one statement) with
//! prepared statements and no library; W3 and W7 have floors of their own, and W6's floor
//! writes a message round trip's rows and wakes on raw LISTEN/NOTIFY. Prints a table and one
//! JSON line per workload.

mod floor;
mod pooler;
mod scheduler;
mod serialization;
mod stats;
mod takeover;
mod tracing_cost;
mod transactions;
mod w6;
mod workloads;

use std::time::Duration;

use dbos_core::local_postgres::LocalPostgres;
use serde_json::Value;

/// Where the benchmark runs.
pub(crate) struct Server {
    admin_url: String,
    make_url: Box<dyn Fn(&str) -> String + Send + Sync>,
}

impl Server {
    /// Creates a fresh database and returns its URL.
    pub(crate) async fn fresh_database(&self, tag: &str) -> String {
        let name = format!("bench_{tag}");
        let (client, conn) = tokio_postgres::connect(&self.admin_url, tokio_postgres::NoTls)
            .await
            .expect("connect to the server");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .expect("drop old database");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        (self.make_url)(&name)
    }
}

/// One workload's result, printed as a table row and a JSON line.
pub(crate) struct Report {
    pub(crate) workload: &'static str,
    pub(crate) summary: String,
    pub(crate) json: Value,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("takeover-worker") {
        takeover::worker(&args[2], &args[3]).await;
        return;
    }
    if args.get(1).map(String::as_str) == Some("scheduler-worker") {
        scheduler::worker(&args[2], &args[3]).await;
        return;
    }
    let selected: Vec<String> = std::env::args().skip(1).collect();
    let want = |w: &str| selected.is_empty() || selected.iter().any(|s| s.eq_ignore_ascii_case(w));
    let server = match std::env::var("DBOS_BENCH_URL") {
        Ok(url) => {
            let base = url
                .rsplit_once('/')
                .map(|(b, _)| b.to_owned())
                .unwrap_or(url.clone());
            Server {
                admin_url: url,
                make_url: Box::new(move |db| format!("{base}/{db}")),
            }
        }
        Err(_) => {
            let dir = std::env::var("DBOS_BENCH_PG_DIR")
                .unwrap_or_else(|_| "target/bench-postgres".to_owned());
            let pg = LocalPostgres::builder(dir)
                .setting("max_connections", "200")
                .setting("shared_buffers", "256MB")
                .start()
                .await
                .expect("start the local Postgres");
            let admin = pg.url("postgres");
            Server {
                admin_url: admin,
                make_url: Box::new(move |db| pg.url(db)),
            }
        }
    };
    println!("machine: {} cores, {}", cores(), cpu_model());
    if scale() != 1.0 {
        println!(
            "scale: {} (DBOS_BENCH_SCALE): workload sizes are scaled; a check that everything runs, not a measurement",
            scale()
        );
    }
    println!();
    let mut reports = Vec::new();
    if want("W1") {
        reports.push(workloads::w1_latency(&server).await);
    }
    if want("W2") {
        reports.push(workloads::w2_throughput(&server).await);
    }
    if want("W3") {
        reports.push(workloads::w3_queue(&server).await);
    }
    if want("W4") {
        reports.push(workloads::w4_recovery(&server).await);
    }
    if want("W5") {
        reports.push(workloads::w5_memory(&server).await);
    }
    if want("W6") {
        reports.push(w6::w6_messages(&server).await);
    }
    if want("W7") {
        reports.push(transactions::w7_transactions(&server).await);
    }
    // Not part of the default run: PgBouncer must be installed.
    if selected.iter().any(|s| s.eq_ignore_ascii_case("P")) {
        reports.push(pooler::pooler(&server).await);
    }
    // Not part of the default run: PgBouncer must be installed.
    if selected.iter().any(|s| s.eq_ignore_ascii_case("PW6")) {
        reports.push(pooler::w6_listen_vs_polling(&server).await);
    }
    // Not part of the default run: it kills processes and waits out recovery graces.
    if selected.iter().any(|s| s.eq_ignore_ascii_case("T")) {
        reports.push(takeover::takeover(&server).await);
    }
    // Not part of the default run: a minute of warm-up and a minute measured.
    if selected.iter().any(|s| s.eq_ignore_ascii_case("S")) {
        reports.push(scheduler::scheduler_cost(&server).await);
    }
    // Not part of the default run: W1 and W2 three times over, and a global subscriber.
    if selected.iter().any(|s| s.eq_ignore_ascii_case("TRACE")) {
        reports.push(tracing_cost::tracing_cost(&server).await);
    }
    // Not part of the default run: hundreds of megabytes of step outputs.
    if selected.iter().any(|s| s.eq_ignore_ascii_case("SER")) {
        reports.push(serialization::serialization(&server).await);
    }
    println!();
    println!("| workload | result |");
    println!("| --- | --- |");
    for r in &reports {
        println!("| {} | {} |", r.workload, r.summary);
    }
    println!();
    for r in &reports {
        println!("{}", r.json);
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// The run's scale: `DBOS_BENCH_SCALE` (default 1). Workload sizes are multiplied by it.
pub(crate) fn scale() -> f64 {
    std::env::var("DBOS_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0)
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}
