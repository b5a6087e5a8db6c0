//! P (only when named): the cost of sending statements unnamed, and of a transaction-mode
//! pooler, in one run. W2 (three-step workflows, 16 in flight) in alternating rounds on three
//! runtimes, each on a database of its own: direct with named statements (the default),
//! direct with every statement unnamed (`PoolerMode::Transaction`), and through PgBouncer in
//! transaction mode (20 server connections; the listener and the lock on the direct URL).
//! Then W3 (2,000 one-step queued workflows) direct and through PgBouncer, alternately.
//!
//! PW6 (only when named): W6's message round trips woken by `LISTEN` (direct, and through
//! PgBouncer with a session URL) and by polling (through PgBouncer with no session URL,
//! `Config::wait_poll_interval` at its 100 ms default), in alternating rounds.

use std::time::{Duration, Instant};

use dbos_core::{Dbos, PoolerMode};
use dbos_testkit::pgbouncer::{PgBouncer, PoolMode};
use serde_json::json;

use crate::stats::percentile_ms;
use crate::workloads::{config, enqueue_one_steps, lib_round, scaled, QUEUE};
use crate::{Report, Server};

const IN_FLIGHT: usize = 16;

/// PgBouncer in transaction mode with 20 server connections in front of the server.
async fn bouncer(server: &Server) -> PgBouncer {
    PgBouncer::start_for(
        &server.admin_url,
        std::env::temp_dir(),
        PoolMode::Transaction,
        20,
    )
    .await
}

pub(crate) async fn pooler(server: &Server) -> Report {
    let bouncer = bouncer(server).await;
    let named_url = server.fresh_database("p_named").await;
    let unnamed_url = server.fresh_database("p_unnamed").await;
    let pooled_url = server.fresh_database("p_pooled").await;
    let launch = |c| async move { Dbos::launch(c).await.expect("launch") };
    let setups = [
        (
            "direct, named",
            launch(config(&named_url, IN_FLIGHT + 4).pooler(PoolerMode::None)).await,
        ),
        (
            "direct, unnamed",
            launch(
                config(&unnamed_url, IN_FLIGHT + 4)
                    .pooler(PoolerMode::Transaction)
                    .session_url(unnamed_url.clone()),
            )
            .await,
        ),
        (
            "PgBouncer (transaction)",
            launch(
                config(&bouncer.url(&pooled_url), IN_FLIGHT + 4).session_url(pooled_url.clone()),
            )
            .await,
        ),
    ];
    const ROUNDS: usize = 4;
    let per_round = scaled(500);
    for (_, dbos) in &setups {
        lib_round(dbos, -(4 * IN_FLIGHT as i64), 4 * IN_FLIGHT, IN_FLIGHT).await;
    }
    let mut latencies = vec![Vec::new(); setups.len()];
    let mut times = vec![Duration::ZERO; setups.len()];
    for round in 0..ROUNDS {
        let first = (round * per_round) as i64;
        for (k, (_, dbos)) in setups.iter().enumerate() {
            let started = Instant::now();
            latencies[k].extend(lib_round(dbos, first, per_round, IN_FLIGHT).await);
            times[k] += started.elapsed();
        }
    }
    let n = ROUNDS * per_round;
    let mut w2 = Vec::new();
    for (k, (name, dbos)) in setups.iter().enumerate() {
        let rate = n as f64 / times[k].as_secs_f64();
        let (p50, p99) = (
            percentile_ms(&mut latencies[k], 50.0),
            percentile_ms(&mut latencies[k], 99.0),
        );
        println!("P W2 {name}: {rate:.0} wf/s (p50 {p50:.2} ms, p99 {p99:.2})");
        w2.push(json!({"setup": name, "wf_per_s": rate, "p50_ms": p50, "p99_ms": p99}));
        dbos.clone().shutdown().await.expect("shutdown");
    }
    // W3, direct and through the pooler, alternately (two runs each).
    let n3 = scaled(2000);
    let mut w3 = Vec::new();
    let mut rates = [Vec::new(), Vec::new()];
    for run in 0..2 {
        for (k, through) in [false, true].into_iter().enumerate() {
            let url = server.fresh_database(&format!("p_w3_{k}_{run}")).await;
            let mut c = config(
                &if through {
                    bouncer.url(&url)
                } else {
                    url.clone()
                },
                24,
            )
            .queue(&QUEUE);
            if through {
                c = c.session_url(url.clone());
            }
            let dbos = Dbos::launch(c).await.expect("launch");
            for h in enqueue_one_steps(&dbos, -64, 64).await {
                h.await.expect("warm-up");
            }
            let started = Instant::now();
            for h in enqueue_one_steps(&dbos, 0, n3).await {
                h.await.expect("workflow");
            }
            rates[k].push(n3 as f64 / started.elapsed().as_secs_f64());
            dbos.shutdown().await.expect("shutdown");
        }
    }
    for (k, name) in ["direct", "PgBouncer (transaction)"].iter().enumerate() {
        let mean = rates[k].iter().sum::<f64>() / rates[k].len() as f64;
        println!("P W3 {name}: {mean:.0} wf/s (runs {:?})", rates[k]);
        w3.push(json!({"setup": name, "wf_per_s": mean, "runs": rates[k]}));
    }
    let rate = |k: usize| w2[k]["wf_per_s"].as_f64().unwrap_or(0.0);
    Report {
        workload: "P pooler (W2 named / unnamed / PgBouncer; W3 direct / PgBouncer)",
        summary: format!(
            "W2 {:.0} / {:.0} / {:.0} wf/s; W3 {:.0} / {:.0} wf/s",
            rate(0),
            rate(1),
            rate(2),
            w3[0]["wf_per_s"].as_f64().unwrap_or(0.0),
            w3[1]["wf_per_s"].as_f64().unwrap_or(0.0)
        ),
        json: json!({"workload": "P", "w2": w2, "w3": w3}),
    }
}

/// PW6: 200 message round trips (A sends, B receives and replies, A receives) per setup, in
/// alternating rounds of 50: woken by the listener directly and through PgBouncer with a
/// session URL, and by 100 ms polling through PgBouncer without one.
pub(crate) async fn w6_listen_vs_polling(server: &Server) -> Report {
    const ROUNDS: usize = 4;
    let per_round = scaled(50);
    let bouncer = bouncer(server).await;
    let direct_url = server.fresh_database("pw6_direct").await;
    let session_url = server.fresh_database("pw6_session").await;
    let polled_url = server.fresh_database("pw6_polled").await;
    let launch = |c| async move { Dbos::launch(c).await.expect("launch") };
    let setups = [
        ("direct, LISTEN", launch(config(&direct_url, 8)).await),
        (
            "PgBouncer, session URL (LISTEN)",
            launch(config(&bouncer.url(&session_url), 8).session_url(session_url.clone())).await,
        ),
        (
            "PgBouncer, no session URL (polling 100 ms)",
            launch(config(&bouncer.url(&polled_url), 8)).await,
        ),
    ];
    for (_, dbos) in &setups {
        crate::w6::lib_round(dbos, 10).await;
    }
    let mut latencies = vec![Vec::new(); setups.len()];
    for _ in 0..ROUNDS {
        for (k, (_, dbos)) in setups.iter().enumerate() {
            latencies[k].extend(crate::w6::lib_round(dbos, per_round).await);
        }
    }
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for (k, (name, dbos)) in setups.iter().enumerate() {
        let n = latencies[k].len();
        let (p50, p99) = (
            percentile_ms(&mut latencies[k], 50.0),
            percentile_ms(&mut latencies[k], 99.0),
        );
        println!("PW6 {name}: {n} round trips, p50 {p50:.2} ms, p99 {p99:.2} ms");
        summary.push(format!("{p50:.1} / {p99:.1}"));
        rows.push(json!({"setup": name, "round_trips": n, "p50_ms": p50, "p99_ms": p99}));
        dbos.clone().shutdown().await.expect("shutdown");
    }
    Report {
        workload: "PW6 round trips: direct LISTEN / PgBouncer + session URL / PgBouncer polling",
        summary: format!("p50 / p99 ms: {}", summary.join("; ")),
        json: json!({"workload": "PW6", "setups": rows}),
    }
}
