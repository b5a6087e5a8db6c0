//! Workloads W1–W5 (W6, messages, is in `w6.rs`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dbos_core::prelude::*;
use dbos_core::sysdb::{ConnectOptions, SystemDatabase};
use futures_util::StreamExt;
use serde_json::json;

use crate::floor::{Floor, QueueFloor};
use crate::stats::{percentile_ms, rss_kib, trim_allocator, CpuTime};
use crate::{Report, Server};

#[step]
async fn noop(x: i64) -> Result<i64, Error> {
    Ok(x)
}

#[workflow]
pub(crate) async fn ten_steps(x: i64) -> Result<i64, Error> {
    for _ in 0..10 {
        noop(x).await?;
    }
    Ok(x)
}

#[workflow]
async fn three_steps(x: i64) -> Result<i64, Error> {
    for _ in 0..3 {
        noop(x).await?;
    }
    Ok(x)
}

#[workflow]
async fn one_step(x: i64) -> Result<i64, Error> {
    noop(x).await
}

static CRASHING: AtomicBool = AtomicBool::new(false);

#[step]
async fn park_while_crashing() -> Result<(), Error> {
    if CRASHING.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[workflow]
async fn recoverable(x: i64) -> Result<i64, Error> {
    noop(x).await?;
    park_while_crashing().await?;
    Ok(x)
}

#[workflow]
async fn parked(x: i64) -> Result<i64, Error> {
    dbos_core::sleep(Duration::from_secs(3600)).await?;
    Ok(x)
}

/// Waits live for 0.9 s (less than W5's `park_after`, so not parked), then parks in a long
/// sleep: the control for `parked_in_recv`, which waits live for `park_after` first.
#[workflow]
async fn parked_after_a_live_wait(x: i64) -> Result<i64, Error> {
    dbos_core::sleep(Duration::from_millis(900)).await?;
    dbos_core::sleep(Duration::from_secs(3600)).await?;
    Ok(x)
}

#[workflow]
async fn parked_in_recv(x: i64) -> Result<i64, Error> {
    let _ = dbos_core::recv::<i64>("never", Duration::from_secs(3600)).await?;
    Ok(x)
}

pub(crate) static QUEUE: Queue = Queue::new("bench")
    .worker_concurrency(16)
    .polling_interval(Duration::from_millis(500));

/// `n` times the run's scale (`DBOS_BENCH_SCALE`, default 1; a smaller scale is a quick check
/// that every workload runs, not a measurement), at least 1.
pub(crate) fn scaled(n: usize) -> usize {
    ((n as f64 * crate::scale()).round() as usize).max(1)
}

pub(crate) fn config(url: &str, pool: usize) -> Config {
    Config::new("bench")
        .system_database_url(url)
        .pool_size(pool)
        .executor_id("bench-exec")
        .application_version("bench-v1")
}

pub(crate) async fn floor_db(server: &Server, tag: &str) -> String {
    let url = server.fresh_database(tag).await;
    let sys = SystemDatabase::connect(&url, "dbos", &ConnectOptions::default())
        .await
        .expect("connect");
    sys.migrate().await.expect("migrate");
    sys.close();
    url
}

async fn count(url: &str, sql: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client.query_one(sql, &[]).await.expect("count").get(0)
}

async fn wait_for(url: &str, sql: &str, target: i64, limit: Duration) -> bool {
    let start = Instant::now();
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    while start.elapsed() < limit {
        let n: i64 = client.query_one(sql, &[]).await.expect("count").get(0);
        if n >= target {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// W1: 200 workflows of 10 no-op steps, one after another. The library and the floor run
/// in alternating rounds of 50, so drift in the machine or the server affects both alike.
pub(crate) async fn w1_latency(server: &Server) -> Report {
    const ROUNDS: usize = 4;
    let per_round = scaled(50);
    let url = server.fresh_database("w1").await;
    let dbos = Dbos::launch(config(&url, 4)).await.expect("launch");
    let floor_url = floor_db(server, "w1_floor").await;
    let floor = Floor::connect(&floor_url).await;
    for i in 0..10 {
        ten_steps(i).on(&dbos).await.expect("warm-up");
        floor.workflow("ten_steps", i, 10).await;
    }
    let (mut lib, mut raw) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for i in 0..per_round {
            let t = Instant::now();
            ten_steps((round * per_round + i) as i64)
                .on(&dbos)
                .await
                .expect("workflow");
            lib.push(t.elapsed());
        }
        for i in 0..per_round {
            let t = Instant::now();
            floor
                .workflow("ten_steps", (round * per_round + i) as i64, 10)
                .await;
            raw.push(t.elapsed());
        }
    }
    dbos.shutdown().await.expect("shutdown");
    let (l50, l90, l99) = (
        percentile_ms(&mut lib, 50.0),
        percentile_ms(&mut lib, 90.0),
        percentile_ms(&mut lib, 99.0),
    );
    let (f50, f90, f99) = (
        percentile_ms(&mut raw, 50.0),
        percentile_ms(&mut raw, 90.0),
        percentile_ms(&mut raw, 99.0),
    );
    let ratio = l50 / f50;
    println!("W1 latency: dbos p50 {l50:.2} ms p90 {l90:.2} p99 {l99:.2}; floor p50 {f50:.2} p90 {f90:.2} p99 {f99:.2}; p50 ratio {ratio:.3}");
    Report {
        workload: "W1 latency (200 × 10 steps, sequential)",
        summary: format!(
            "p50 {l50:.2} / p90 {l90:.2} / p99 {l99:.2} ms; floor {f50:.2} / {f90:.2} / {f99:.2} ms; p50 ratio **{ratio:.3}** (target ≤ 1.15)"
        ),
        json: json!({"workload": "W1", "p50_ms": l50, "p90_ms": l90, "p99_ms": l99,
                     "floor_p50_ms": f50, "floor_p90_ms": f90, "floor_p99_ms": f99, "p50_ratio": ratio}),
    }
}

/// W2: 2,000 workflows of 3 steps, 16 in flight. The library and the floor run in
/// alternating rounds of 500, each after a warm-up at the same concurrency.
pub(crate) async fn w2_throughput(server: &Server) -> Report {
    const ROUNDS: usize = 4;
    let per_round = scaled(500);
    let n = ROUNDS * per_round;
    const IN_FLIGHT: usize = 16;
    let url = server.fresh_database("w2").await;
    let dbos = Dbos::launch(config(&url, IN_FLIGHT + 4))
        .await
        .expect("launch");
    let floor_url = floor_db(server, "w2_floor").await;
    let mut floors = Vec::new();
    for _ in 0..IN_FLIGHT {
        floors.push(Arc::new(Floor::connect(&floor_url).await));
    }
    // Warm up at the measured concurrency, so the pool holds its connections before the
    // clock starts (as the floor's are): a connection's SCRAM handshake costs milliseconds of
    // CPU on both sides, and steady-state throughput is what is measured.
    lib_round(&dbos, -(4 * IN_FLIGHT as i64), 4 * IN_FLIGHT, IN_FLIGHT).await;
    floor_round(&floors, 0, 4 * IN_FLIGHT).await;
    let (mut lib, mut raw) = (Vec::new(), Vec::new());
    let (mut lib_time, mut floor_time) = (Duration::ZERO, Duration::ZERO);
    let (mut lib_cpu, mut floor_cpu) = (CpuTime::default(), CpuTime::default());
    for round in 0..ROUNDS {
        let first = (round * per_round) as i64;
        let (started, cpu) = (Instant::now(), CpuTime::now());
        lib.extend(lib_round(&dbos, first, per_round, IN_FLIGHT).await);
        lib_time += started.elapsed();
        lib_cpu = lib_cpu.add(CpuTime::now().since(cpu));
        let (started, cpu) = (Instant::now(), CpuTime::now());
        raw.extend(floor_round(&floors, first, per_round).await);
        floor_time += started.elapsed();
        floor_cpu = floor_cpu.add(CpuTime::now().since(cpu));
    }
    let (lib_client_us, lib_server_us) = lib_cpu.per(n);
    let (floor_client_us, floor_server_us) = floor_cpu.per(n);
    dbos.shutdown().await.expect("shutdown");
    let lib_rate = n as f64 / lib_time.as_secs_f64();
    let floor_rate = n as f64 / floor_time.as_secs_f64();
    let (l50, l99) = (percentile_ms(&mut lib, 50.0), percentile_ms(&mut lib, 99.0));
    let (f50, f99) = (percentile_ms(&mut raw, 50.0), percentile_ms(&mut raw, 99.0));
    let ratio = lib_rate / floor_rate;
    println!("W2 throughput: dbos {lib_rate:.0} wf/s (p50 {l50:.2} ms, p99 {l99:.2}); floor {floor_rate:.0} wf/s (p50 {f50:.2}, p99 {f99:.2}); ratio {ratio:.3}");
    println!("W2 CPU per workflow: dbos {lib_client_us:.0} µs in the program + {lib_server_us:.0} µs elsewhere (Postgres); floor {floor_client_us:.0} + {floor_server_us:.0} µs");
    Report {
        workload: "W2 throughput (2,000 × 3 steps, 16 in flight)",
        summary: format!(
            "{lib_rate:.0} wf/s, p50 {l50:.2} / p99 {l99:.2} ms; floor {floor_rate:.0} wf/s, p50 {f50:.2} / p99 {f99:.2} ms; ratio **{ratio:.3}** (target ≥ 0.85)"
        ),
        json: json!({"workload": "W2", "wf_per_s": lib_rate, "p50_ms": l50, "p99_ms": l99,
                     "floor_wf_per_s": floor_rate, "floor_p50_ms": f50, "floor_p99_ms": f99, "ratio": ratio,
                     "cpu_us_per_wf": {"program": lib_client_us, "server": lib_server_us},
                     "floor_cpu_us_per_wf": {"program": floor_client_us, "server": floor_server_us}}),
    }
}

/// `n` three-step workflows through the library from `in_flight` tasks; their latencies.
pub(crate) async fn lib_round(
    dbos: &Dbos,
    first: i64,
    n: usize,
    in_flight: usize,
) -> Vec<Duration> {
    spread(
        vec![dbos.clone(); in_flight],
        n,
        move |dbos, i| async move {
            let t = Instant::now();
            three_steps(first + i as i64)
                .on(&dbos)
                .await
                .expect("workflow");
            t.elapsed()
        },
    )
    .await
}

/// `n` three-step workflows' rows through the floor, one task per connection; their latencies.
async fn floor_round(floors: &[Arc<Floor>], first: i64, n: usize) -> Vec<Duration> {
    spread(floors.to_vec(), n, move |floor, i| async move {
        let t = Instant::now();
        floor.workflow("three_steps", first + i as i64, 3).await;
        t.elapsed()
    })
    .await
}

/// Runs jobs `0..n` from one task per worker, each task taking the next job when its last
/// one ends (the library and the floors are driven alike); the jobs' results.
pub(crate) async fn spread<W, F, Fut, R>(workers: Vec<W>, n: usize, job: F) -> Vec<R>
where
    W: Clone + Send + 'static,
    F: Fn(W, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send,
    R: Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in workers {
        let (next, job) = (next.clone(), job.clone());
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return results;
                }
                results.push(job(worker.clone(), i).await);
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker task"));
    }
    all
}

/// Enqueues `n` one-step workflows from 16 tasks, as busy producers would; their handles.
pub(crate) async fn enqueue_one_steps(
    dbos: &Dbos,
    first: i64,
    n: usize,
) -> Vec<WorkflowHandle<i64, Error>> {
    spread(vec![dbos.clone(); 16], n, move |dbos, i| async move {
        one_step(first + i as i64)
            .on(&dbos)
            .enqueue(&QUEUE)
            .await
            .expect("enqueue")
    })
    .await
}

/// W3: enqueue 2,000 one-step workflows on a queue with worker concurrency 16; until done.
pub(crate) async fn w3_queue(server: &Server) -> Report {
    let n = scaled(2000);
    let url = server.fresh_database("w3").await;
    let dbos = Dbos::launch(config(&url, 24).queue(&QUEUE))
        .await
        .expect("launch");
    // Warm up the same way, so the pool holds its connections before the clock starts.
    for h in enqueue_one_steps(&dbos, -64, 64).await {
        h.await.expect("warm-up");
    }
    let (started, cpu) = (Instant::now(), CpuTime::now());
    let handles = enqueue_one_steps(&dbos, 0, n).await;
    let enqueued = started.elapsed();
    for h in handles {
        h.await.expect("workflow");
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let (client_us, server_us) = CpuTime::now().since(cpu).per(n);
    dbos.shutdown().await.expect("shutdown");
    let (floor_rate, floor_client_us, floor_server_us) = w3_floor(server, n).await;
    let ratio = rate / floor_rate;
    println!(
        "W3 queue: {rate:.0} wf/s (enqueueing took {:.2} s); floor {floor_rate:.0} wf/s; ratio {ratio:.3}",
        enqueued.as_secs_f64()
    );
    println!(
        "W3 CPU per workflow: dbos {client_us:.0} µs in the program + {server_us:.0} µs elsewhere (Postgres); floor {floor_client_us:.0} + {floor_server_us:.0} µs"
    );
    Report {
        workload: "W3 queue (2,000 × 1 step, worker concurrency 16)",
        summary: format!(
            "**{rate:.0} wf/s** end to end (target ≥ 2,500); enqueueing alone {:.2} s; floor {floor_rate:.0} wf/s; ratio **{ratio:.3}**",
            enqueued.as_secs_f64()
        ),
        json: json!({"workload": "W3", "wf_per_s": rate, "enqueue_s": enqueued.as_secs_f64(),
                     "floor_wf_per_s": floor_rate, "ratio": ratio,
                     "cpu_us_per_wf": {"program": client_us, "server": server_us},
                     "floor_cpu_us_per_wf": {"program": floor_client_us, "server": floor_server_us}}),
    }
}

/// W3's floor: 16 producer connections enqueue `n` rows while 16 worker connections claim,
/// step and finish them; workflows per second and CPU per workflow (program, elsewhere).
async fn w3_floor(server: &Server, n: usize) -> (f64, f64, f64) {
    const CONNECTIONS: usize = 16;
    let url = floor_db(server, "w3_floor").await;
    let mut producers = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        producers.push(Arc::new(QueueFloor::connect(&url).await));
        workers.push(Arc::new(QueueFloor::connect(&url).await));
    }
    // Warm-up: the statements' first executions, before the clock.
    for (i, p) in producers.iter().enumerate() {
        p.enqueue(-1 - i as i64).await;
    }
    for w in &workers {
        while w.run_one().await {}
    }
    let (started, cpu) = (Instant::now(), CpuTime::now());
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for p in producers {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::SeqCst) < n {
                p.enqueue(1).await;
            }
        }));
    }
    for w in workers {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while done.load(Ordering::SeqCst) < n {
                if w.run_one().await {
                    done.fetch_add(1, Ordering::SeqCst);
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("floor task");
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let (client_us, server_us) = CpuTime::now().since(cpu).per(n);
    (rate, client_us, server_us)
}

/// W4: 10,000 PENDING workflows left by a killed executor; time to complete after relaunch.
pub(crate) async fn w4_recovery(server: &Server) -> Report {
    let n = scaled(10_000) as i64;
    let url = server.fresh_database("w4").await;
    CRASHING.store(true, Ordering::SeqCst);
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let u = url.clone();
    doomed
        .spawn(async move {
            let dbos = Dbos::launch(config(&u, 16)).await.expect("launch");
            futures_util::stream::iter(0..n)
                .for_each_concurrent(32, |i| {
                    let dbos = dbos.clone();
                    async move {
                        recoverable(i).on(&dbos).start().await.expect("start");
                    }
                })
                .await;
        })
        .await
        .expect("start the workflows");
    let parked = wait_for(
        &url,
        "SELECT count(*) FROM dbos.operation_outputs WHERE function_name = 'noop'",
        n,
        Duration::from_secs(300),
    )
    .await;
    assert!(parked, "the workflows did not all reach their parking step");
    doomed.shutdown_background();
    CRASHING.store(false, Ordering::SeqCst);
    // As after a SIGKILL: the dead executor's sessions are gone (its id's lock is free)
    // before the relaunch; otherwise the relaunch waits for them to end.
    let gone = wait_for(
        &url,
        "SELECT (count(*) = 0)::int::int8 FROM pg_stat_activity \
          WHERE datname = current_database() AND application_name LIKE 'dbos-rs lock %'",
        1,
        Duration::from_secs(30),
    )
    .await;
    assert!(gone, "the killed executor's lock session did not end");
    let pending = count(
        &url,
        "SELECT count(*) FROM dbos.workflow_status WHERE status = 'PENDING'",
    )
    .await;

    let started = Instant::now();
    let dbos = Dbos::launch(config(&url, 20)).await.expect("relaunch");
    let done = wait_for(
        &url,
        "SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'",
        n,
        Duration::from_secs(600),
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    dbos.shutdown().await.expect("shutdown");
    assert!(done, "recovery did not finish");
    println!("W4 recovery: {pending} pending workflows completed {secs:.2} s after relaunch");
    Report {
        workload: "W4 recovery (10,000 pending after a kill)",
        summary: format!("**{secs:.2} s** from relaunch to all complete (target ≤ 10 s)"),
        json: json!({"workload": "W4", "pending": pending, "seconds": secs}),
    }
}

/// How W5's workflows come to be parked.
#[derive(Clone, Copy)]
enum Parking {
    /// In a long sleep, at once.
    Sleep,
    /// In a `recv` with nothing to receive, after waiting live for `park_after` (1 s here).
    Recv,
    /// In a long sleep, after a 0.9 s live sleep: the same live phase as `Recv`.
    SleepAfterLiveWait,
    /// In a `recv`, parked at once (`park_after` 1 ms): the parked entries alone.
    RecvAtOnce,
}

/// W5: resident memory per parked workflow (10,000 of them): in a durable sleep; in a `recv`;
/// and, as the control for the `recv` figure, in a sleep after the same live wait.
pub(crate) async fn w5_memory(server: &Server) -> Report {
    let n = scaled(10_000) as i64;
    let (sleep, sleep_untrimmed) = w5_parked(server, "w5", n, Parking::Sleep).await;
    let (recv, recv_untrimmed) = w5_parked(server, "w5_recv", n, Parking::Recv).await;
    let (control, _) = w5_parked(server, "w5_control", n, Parking::SleepAfterLiveWait).await;
    let (at_once, _) = w5_parked(server, "w5_recv_at_once", n, Parking::RecvAtOnce).await;
    println!(
        "W5 memory: {n} parked: {sleep:.3} KiB each in a sleep ({sleep_untrimmed:.3} before returning freed memory), \
         {at_once:.3} KiB each in a recv parked at once, \
         {recv:.3} KiB each in a recv after waiting live for park_after ({recv_untrimmed:.3}), \
         {control:.3} KiB each in a sleep after the same live wait"
    );
    Report {
        workload: "W5 memory (10,000 parked: in a sleep; in a recv)",
        summary: format!(
            "**{sleep:.2} KiB** per workflow parked in a sleep, **{at_once:.2} KiB** parked in a recv (target ≤ 1 KiB); \
             {recv:.2} KiB in a recv after waiting live for `park_after`, against {control:.2} KiB in a sleep after \
             the same live wait"
        ),
        json: json!({"workload": "W5", "kib_per_workflow": sleep, "kib_per_workflow_untrimmed": sleep_untrimmed,
                     "recv_kib_per_workflow": recv, "recv_kib_per_workflow_untrimmed": recv_untrimmed,
                     "sleep_after_live_wait_kib_per_workflow": control, "recv_at_once_kib_per_workflow": at_once}),
    }
}

/// Parks `n` workflows and returns the resident memory each costs, after and before
/// returning freed memory to the system.
async fn w5_parked(server: &Server, tag: &str, n: i64, how: Parking) -> (f64, f64) {
    let url = server.fresh_database(tag).await;
    // A recv parks once it has waited `park_after` without a message.
    let park_after = match how {
        Parking::RecvAtOnce => Duration::from_millis(1),
        _ => Duration::from_secs(1),
    };
    let dbos = Dbos::launch(config(&url, 16).park_after(park_after))
        .await
        .expect("launch");
    for i in 0..50 {
        one_step(i).on(&dbos).await.expect("warm-up");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    trim_allocator();
    let before = rss_kib();
    futures_util::stream::iter(0..n)
        .for_each_concurrent(32, |i| {
            let dbos = dbos.clone();
            async move {
                match how {
                    Parking::Sleep => parked(i).on(&dbos).start().await.map(drop),
                    Parking::Recv | Parking::RecvAtOnce => {
                        parked_in_recv(i).on(&dbos).start().await.map(drop)
                    }
                    Parking::SleepAfterLiveWait => parked_after_a_live_wait(i)
                        .on(&dbos)
                        .start()
                        .await
                        .map(drop),
                }
                .expect("start");
            }
        })
        .await;
    let started = Instant::now();
    while dbos.parked_workflows() < n as usize {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not every workflow parked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let untrimmed = rss_kib();
    trim_allocator();
    let after = rss_kib();
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    let per_untrimmed = (untrimmed.saturating_sub(before)) as f64 / n as f64;
    dbos.shutdown_with_timeout(Duration::from_secs(30))
        .await
        .expect("shutdown");
    println!("W5 {tag}: RSS {before} KiB -> {after} KiB with {n} parked");
    (per, per_untrimmed)
}
