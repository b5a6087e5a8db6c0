//! TRACE: what tracing costs W1 (latency, 10-step workflows one after another) and W2
//! (throughput, 3-step workflows, 16 in flight), in three modes interleaved round by round in
//! one run on one database, so drift affects all three alike:
//!
//! - `off`: no layer wants the spans (the subscriber's filters say no; each span costs the
//!   callsite's check);
//! - `subscriber`: a logger (the `fmt` layer without colour codes, writing to a sink) at
//!   INFO, formatting every span's fields, no exporter;
//! - `otlp`: the same plus the OpenTelemetry layer exporting over OTLP/HTTP (protobuf, the
//!   batch processor) to a receiver on a local port that answers as a collector and keeps
//!   nothing;
//! - `exporter`: the OpenTelemetry layer alone, no logger (a service that ships its
//!   telemetry as traces only): what exporting costs by itself;
//! - `uncarried`: the same with `Telemetry::store_trace_context(false)`: no trace carrier in
//!   the workflow's row, so the difference from `exporter` is what storing it costs (mostly
//!   Postgres's: the schema indexes `attributes`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use dbos_core::otel::Telemetry;
use dbos_core::prelude::*;
use dbos_testkit::otlp::OtlpReceiver;
use serde_json::json;
use tracing::Level;
use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};

use crate::stats::{percentile_ms, CpuTime};
use crate::workloads::{config, lib_round, scaled, ten_steps};
use crate::{Report, Server};

const MODES: [&str; 5] = ["off", "subscriber", "otlp", "exporter", "uncarried"];
const N: usize = MODES.len();
/// The mode whose starts store no trace carrier.
const UNCARRIED: usize = 4;

/// The mode the global subscriber's filters follow (an index into `MODES`).
static MODE: AtomicU8 = AtomicU8::new(0);

/// Whether a layer wanted in `modes` wants a span or event.
fn wants(meta: &tracing::Metadata<'_>, modes: &[u8]) -> bool {
    modes.contains(&MODE.load(Ordering::Relaxed)) && *meta.level() <= Level::INFO
}

fn install(telemetry: &Telemetry) {
    let subscriber = tracing_subscriber::registry()
        .with(
            telemetry
                .layer()
                .with_filter(dynamic_filter_fn(|meta, _| wants(meta, &[2, 3, 4]))),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::sink)
                // A production logger writing to a file or a pipe: no colour codes (as
                // `Telemetry::init` writes when stderr is not a terminal); with them, the
                // escape sequences around every field name are most of the formatting.
                .with_ansi(false)
                .with_filter(dynamic_filter_fn(|meta, _| wants(meta, &[1, 2]))),
        );
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
}

pub(crate) async fn tracing_cost(server: &Server) -> Report {
    // Sixteen rounds of a few hundred milliseconds per mode: with eight, one round's noise
    // (a checkpoint, the runtime's background work) moved a mode's ratio by ±3%.
    const ROUNDS: usize = 16;
    // Batches every 200 ms, and a queue that holds a round's spans: none dropped.
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "200");
    std::env::set_var("OTEL_BSP_MAX_QUEUE_SIZE", "262144");
    let receiver = OtlpReceiver::start_discarding();
    let telemetry = Telemetry::otlp(&receiver.endpoint(), "bench").expect("the OTLP exporter");
    install(&telemetry);

    let url = server.fresh_database("trace").await;
    let dbos = Dbos::launch(config(&url, 20)).await.expect("launch");
    // W1's 400 and W2's 4,000 workflows per mode, in rounds of 25 and 250.
    let w1_per_round = scaled(25);
    let w2_per_round = scaled(250);
    // Warm-up in every mode (the exporter's client connects, the pool fills).
    for mode in 0..N as u8 {
        MODE.store(mode, Ordering::SeqCst);
        telemetry.store_trace_context(usize::from(mode) != UNCARRIED);
        for i in 0..10 {
            ten_steps(-1 - i - 100 * i64::from(mode))
                .on(&dbos)
                .await
                .expect("warm-up");
        }
        lib_round(&dbos, -100_000 * (i64::from(mode) + 1), 64, 16).await;
    }
    let mut w1: [Vec<Duration>; N] = Default::default();
    let mut w2_time = [Duration::ZERO; N];
    let mut w2_lat: [Vec<Duration>; N] = Default::default();
    // This process's CPU (the library, the subscriber, the exporter's thread): what tracing
    // adds, and far steadier than wall-clock time on a loaded machine.
    let mut w1_cpu = [CpuTime::default(); N];
    let mut w2_cpu = [CpuTime::default(); N];
    let mut next = 0i64;
    for round in 0..ROUNDS {
        // Rotate the order so no mode always runs first.
        for k in 0..N {
            let mode = (round + k) % N;
            MODE.store(mode as u8, Ordering::SeqCst);
            telemetry.store_trace_context(mode != UNCARRIED);
            let cpu = CpuTime::now();
            for _ in 0..w1_per_round {
                let t = Instant::now();
                ten_steps(next).on(&dbos).await.expect("workflow");
                w1[mode].push(t.elapsed());
                next += 1;
            }
            w1_cpu[mode] = w1_cpu[mode].add(CpuTime::now().since(cpu));
            let (t, cpu) = (Instant::now(), CpuTime::now());
            w2_lat[mode].extend(lib_round(&dbos, next, w2_per_round, 16).await);
            w2_time[mode] += t.elapsed();
            w2_cpu[mode] = w2_cpu[mode].add(CpuTime::now().since(cpu));
            next += w2_per_round as i64;
        }
    }
    MODE.store(0, Ordering::SeqCst);
    dbos.shutdown().await.expect("shutdown");
    telemetry.flush().expect("the last spans exported");

    let w1_p50: Vec<f64> = (0..N).map(|m| percentile_ms(&mut w1[m], 50.0)).collect();
    let w2_rate: Vec<f64> = (0..N)
        .map(|m| (ROUNDS * w2_per_round) as f64 / w2_time[m].as_secs_f64())
        .collect();
    let w2_p50: Vec<f64> = (0..N)
        .map(|m| percentile_ms(&mut w2_lat[m], 50.0))
        .collect();
    let w1_us: Vec<f64> = (0..N)
        .map(|m| w1_cpu[m].per(ROUNDS * w1_per_round).0)
        .collect();
    let w2_us: Vec<f64> = (0..N)
        .map(|m| w2_cpu[m].per(ROUNDS * w2_per_round).0)
        .collect();
    // Everything else the machine ran during W2: on a machine running only the benchmark,
    // Postgres (what storing the trace carrier costs the server shows here).
    let w2_server_us: Vec<f64> = (0..N)
        .map(|m| w2_cpu[m].per(ROUNDS * w2_per_round).1)
        .collect();
    let ratio = |v: &[f64], m: usize| v[m] / v[0];
    for m in 0..N {
        println!(
            "TRACE {:>10}: W1 p50 {:.3} ms (×{:.3}), {:.0} µs CPU/wf (×{:.3}); W2 {:.0} wf/s (×{:.3}), p50 {:.2} ms, {:.0} µs CPU/wf (×{:.3}), server {:.0} µs/wf (×{:.3})",
            MODES[m],
            w1_p50[m],
            ratio(&w1_p50, m),
            w1_us[m],
            ratio(&w1_us, m),
            w2_rate[m],
            ratio(&w2_rate, m),
            w2_p50[m],
            w2_us[m],
            ratio(&w2_us, m),
            w2_server_us[m],
            ratio(&w2_server_us, m),
        );
    }
    println!(
        "TRACE exported: {} requests, {} KiB to the receiver",
        receiver.requests(),
        receiver.bytes() / 1024
    );
    // Each mode against `off`: W1 p50, W2 throughput, W2 CPU of this process.
    let against_off = |v: &[f64]| {
        (1..N)
            .map(|m| format!("{} ×{:.3}", MODES[m], ratio(v, m)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Report {
        workload: "TRACE tracing cost (W1 and W2 with tracing off / a subscriber / a subscriber and the OTLP exporter / the exporter alone / the exporter storing no carrier)",
        summary: format!(
            "W1 p50 {:.3} ms off ({}); W2 {:.0} wf/s off ({}), CPU ({})",
            w1_p50[0],
            against_off(&w1_p50),
            w2_rate[0],
            against_off(&w2_rate),
            against_off(&w2_us)
        ),
        json: json!({"workload": "TRACE", "modes": MODES,
                     "w1_p50_ms": w1_p50, "w2_wf_per_s": w2_rate, "w2_p50_ms": w2_p50,
                     "w1_cpu_us_per_wf": w1_us, "w2_cpu_us_per_wf": w2_us,
                     "w2_server_cpu_us_per_wf": w2_server_us,
                     "export_requests": receiver.requests(), "export_bytes": receiver.bytes()}),
    }
}
