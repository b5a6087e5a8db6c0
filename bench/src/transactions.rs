//! W7: workflows of `#[transaction]`s in the system database against a floor running the same
//! statements in raw transactions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dbos_core::prelude::*;
use serde_json::json;

use crate::floor::TxFloor;
use crate::stats::{percentile_ms, CpuTime};
use crate::workloads::{config, floor_db, scaled, spread};
use crate::{Report, Server};

/// One `UPDATE` of the workflow's counter row, committed with its checkpoint.
#[transaction]
async fn add_to_counter(tx: &Transaction<'_>, id: i64) -> Result<i64, Error> {
    let failed = |e: tokio_postgres::Error| Error::new(ErrorKind::Database, e.to_string());
    let update = tx
        .prepare_cached("UPDATE bench_counters SET n = n + 1 WHERE id = $1")
        .await
        .map_err(failed)?;
    tx.execute(&update, &[&id]).await.map_err(failed)?;
    Ok(id)
}

#[workflow]
async fn three_transactions(x: i64) -> Result<i64, Error> {
    let id = counter_of(x);
    for _ in 0..3 {
        add_to_counter(id).await?;
    }
    Ok(id)
}

/// How many counter rows there are: a prime above the number of workflows.
const COUNTERS: i64 = 40_009;

/// Workflow `x`'s counter row. Workflows in flight together (consecutive `x`) get rows far
/// apart in the primary key, on different index pages: SERIALIZABLE locks index pages, and
/// neighbouring counters would fail each other's transactions for no reason of theirs.
pub(crate) fn counter_of(x: i64) -> i64 {
    (x * 1_009).rem_euclid(COUNTERS)
}

/// Creates the counter rows, with room on their pages for updates that touch no index (HOT):
/// a non-HOT update inserts into the primary key's leaf page, which SERIALIZABLE locks as a
/// whole.
async fn counters(url: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS bench_counters (id bigint PRIMARY KEY, n bigint NOT NULL) WITH (fillfactor = 50);
             INSERT INTO bench_counters SELECT g, 0 FROM generate_series(0, {COUNTERS} - 1) g ON CONFLICT DO NOTHING;"
        ))
        .await
        .expect("counters");
    client
        .batch_execute("VACUUM ANALYZE bench_counters")
        .await
        .expect("vacuum counters");
}

/// Of the transaction ids in `from..to`, how many committed and how many aborted.
async fn outcomes(url: &str, from: i64, to: i64) -> (i64, i64) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE txid_status(x) = 'committed'), count(*) FILTER (WHERE txid_status(x) = 'aborted')
               FROM generate_series($1::bigint, $2::bigint - 1) x",
            &[&from, &to],
        )
        .await
        .expect("xid outcomes");
    (row.get(0), row.get(1))
}

/// The transaction id the server would assign next (each write transaction takes one).
async fn next_xid(url: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    // txid_current() takes an id itself: the next one is after it.
    client
        .query_one("SELECT txid_current() + 1", &[])
        .await
        .expect("xid")
        .get(0)
}

/// W7: 2,000 workflows of 3 transactions (each one `UPDATE` of a counter row), 16 in flight,
/// beside a floor that runs the same `UPDATE`s and checkpoint inserts in raw transactions.
/// Rounds alternate as in W2. Also counts the write transactions each side committed (every
/// transaction id the server assigned during the round, committed or aborted): one commit per
/// transaction means 5 per workflow (start, three transactions, finish).
pub(crate) async fn w7_transactions(server: &Server) -> Report {
    const ROUNDS: usize = 4;
    const IN_FLIGHT: usize = 16;
    let per_round = scaled(500);
    let n = ROUNDS * per_round;
    let url = server.fresh_database("w7").await;
    let dbos = Dbos::launch(config(&url, IN_FLIGHT + 4))
        .await
        .expect("launch");
    counters(&url).await;
    let floor_url = floor_db(server, "w7_floor").await;
    counters(&floor_url).await;
    let mut floors = Vec::new();
    for _ in 0..IN_FLIGHT {
        floors.push(Arc::new(TxFloor::connect(&floor_url).await));
    }
    let warm = 4 * IN_FLIGHT;
    lib_round(&dbos, -(warm as i64), warm, IN_FLIGHT).await;
    floor_round(&floors, -(warm as i64), warm).await;
    let (mut lib, mut raw) = (Vec::new(), Vec::new());
    let (mut lib_time, mut floor_time) = (Duration::ZERO, Duration::ZERO);
    let (mut lib_cpu, mut floor_cpu) = (CpuTime::default(), CpuTime::default());
    let (mut lib_commits, mut floor_commits) = (0i64, 0i64);
    let (mut lib_aborts, mut floor_aborts) = (0i64, 0i64);
    for round in 0..ROUNDS {
        let first = (round * per_round) as i64;
        let xid = next_xid(&url).await;
        let (started, cpu) = (Instant::now(), CpuTime::now());
        lib.extend(lib_round(&dbos, first, per_round, IN_FLIGHT).await);
        lib_time += started.elapsed();
        lib_cpu = lib_cpu.add(CpuTime::now().since(cpu));
        let (c, a) = outcomes(&url, xid, next_xid(&url).await - 1).await;
        (lib_commits, lib_aborts) = (lib_commits + c, lib_aborts + a);
        let xid = next_xid(&floor_url).await;
        let (started, cpu) = (Instant::now(), CpuTime::now());
        raw.extend(floor_round(&floors, first, per_round).await);
        floor_time += started.elapsed();
        floor_cpu = floor_cpu.add(CpuTime::now().since(cpu));
        let (c, a) = outcomes(&floor_url, xid, next_xid(&floor_url).await - 1).await;
        (floor_commits, floor_aborts) = (floor_commits + c, floor_aborts + a);
    }
    dbos.shutdown().await.expect("shutdown");
    let (lib_client_us, lib_server_us) = lib_cpu.per(n);
    let (floor_client_us, floor_server_us) = floor_cpu.per(n);
    let lib_rate = n as f64 / lib_time.as_secs_f64();
    let floor_rate = n as f64 / floor_time.as_secs_f64();
    let (l50, l99) = (percentile_ms(&mut lib, 50.0), percentile_ms(&mut lib, 99.0));
    let (f50, f99) = (percentile_ms(&mut raw, 50.0), percentile_ms(&mut raw, 99.0));
    let ratio = lib_rate / floor_rate;
    let lib_per_wf = lib_commits as f64 / n as f64;
    let floor_per_wf = floor_commits as f64 / n as f64;
    // Start and finish are one commit each; the rest are the three transactions'.
    let commits_per_tx = (lib_per_wf - 2.0) / 3.0;
    println!("W7 transactions: dbos {lib_rate:.0} wf/s (p50 {l50:.2} ms, p99 {l99:.2}); floor {floor_rate:.0} wf/s (p50 {f50:.2}, p99 {f99:.2}); ratio {ratio:.3}");
    println!("W7 committed write transactions per workflow: dbos {lib_per_wf:.2} ({commits_per_tx:.2} per #[transaction]); floor {floor_per_wf:.2}; aborted (conflicts retried): dbos {lib_aborts}, floor {floor_aborts}");
    println!("W7 CPU per workflow: dbos {lib_client_us:.0} µs in the program + {lib_server_us:.0} µs elsewhere (Postgres); floor {floor_client_us:.0} + {floor_server_us:.0} µs");
    Report {
        workload: "W7 transactions (2,000 × 3 transactions, 16 in flight)",
        summary: format!(
            "{lib_rate:.0} wf/s, p50 {l50:.2} / p99 {l99:.2} ms; floor {floor_rate:.0} wf/s, p50 {f50:.2} / p99 {f99:.2} ms; ratio **{ratio:.3}**; {commits_per_tx:.2} commits per transaction (floor {:.2})",
            (floor_per_wf - 2.0) / 3.0
        ),
        json: json!({"workload": "W7", "wf_per_s": lib_rate, "p50_ms": l50, "p99_ms": l99,
                     "floor_wf_per_s": floor_rate, "floor_p50_ms": f50, "floor_p99_ms": f99, "ratio": ratio,
                     "write_commits_per_wf": lib_per_wf, "floor_write_commits_per_wf": floor_per_wf,
                     "aborted": lib_aborts, "floor_aborted": floor_aborts,
                     "commits_per_transaction": commits_per_tx,
                     "cpu_us_per_wf": {"program": lib_client_us, "server": lib_server_us},
                     "floor_cpu_us_per_wf": {"program": floor_client_us, "server": floor_server_us}}),
    }
}

async fn lib_round(dbos: &Dbos, first: i64, n: usize, in_flight: usize) -> Vec<Duration> {
    spread(
        vec![dbos.clone(); in_flight],
        n,
        move |dbos, i| async move {
            let t = Instant::now();
            three_transactions(first + i as i64)
                .on(&dbos)
                .await
                .expect("workflow");
            t.elapsed()
        },
    )
    .await
}

async fn floor_round(floors: &[Arc<TxFloor>], first: i64, n: usize) -> Vec<Duration> {
    spread(floors.to_vec(), n, move |floor, i| async move {
        let t = Instant::now();
        let x = first + i as i64;
        floor.workflow(x, counter_of(x)).await;
        t.elapsed()
    })
    .await
}
