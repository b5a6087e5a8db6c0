//! S: what the scheduler costs. 1,000 schedules, each firing once a minute at its own second
//! (`<i mod 60> * * * * *`, so about 17 ticks a second), served by 3 executor processes with
//! the default polling interval (30 s). Over a measured window after the first minute's fast
//! polling, it reports the statements the scheduler sends per tick (all three executors
//! together, counted by `pg_stat_statements` and sorted by the scheduler's own statements in
//! `dbos-core/src/sysdb/schedules.rs`), the database time they take, and the CPU the
//! executors (and, on the benchmark's own Postgres, the server) spend. The scheduled workflow
//! does nothing; the statements that are not the scheduler's (dequeuing and running the
//! runs, the executors' recovery and queue polls) are reported as "other", with the most
//! frequent of them.
//!
//! Without `DBOS_BENCH_URL` it starts a Postgres of its own (`target/bench-postgres-sched`)
//! with `pg_stat_statements` loaded; on a given server it uses the extension when the server
//! loads it, and otherwise reports transactions per tick instead of statements.
//!
//! Executors are this binary, re-run as `bench scheduler-worker <url> <executor id>`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dbos_core::local_postgres::LocalPostgres;
use dbos_core::schedule::Schedule;
use dbos_core::{workflow, Config, Dbos, Error};
use serde_json::{json, Value};

use crate::{scale, Report, Server};

const APP: &str = "sched-bench";
const EXECUTORS: usize = 3;

/// The scheduled workflow: nothing, so what is measured is the scheduler.
#[workflow]
async fn bench_tick(_scheduled_at: String, _context: Value) -> Result<(), Error> {
    Ok(())
}

fn config(url: &str) -> Config {
    Config::new(APP)
        .system_database_url(url)
        .application_version("sched-bench-v1")
        .pool_size(4)
}

/// The executor process: serves the schedules until killed.
pub(crate) async fn worker(url: &str, executor_id: &str) {
    let dbos = Dbos::launch(config(url).executor_id(executor_id))
        .await
        .expect("launch the scheduler worker");
    let _keep = dbos;
    std::future::pending::<()>().await;
}

fn spawn_worker(url: &str, executor_id: &str) -> Child {
    Command::new(std::env::current_exe().expect("the bench binary"))
        .args(["scheduler-worker", url, executor_id])
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn a scheduler worker")
}

/// utime + stime of a process, in seconds (`/proc/<pid>/stat`).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

/// The processes whose parent is `ppid`, with their CPU seconds (a Postgres server's
/// backends and workers are the postmaster's children).
fn children_cpu(ppid: u32) -> BTreeMap<u32, f64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(ppid) {
            out.insert(pid, cpu_seconds(pid));
        }
    }
    out
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Which part of the scheduler (or of running the runs) a statement belongs to, by its text
/// as `pg_stat_statements` normalizes it (constants become `$n`). The scheduler's statements
/// are those of `dbos-core/src/sysdb/schedules.rs` and the run's insert.
fn classify(query: &str) -> &'static str {
    let q = query
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    if q.contains("workflow_schedules") && q.contains("set last_fired_at") {
        "record last tick"
    } else if q.contains("workflow_schedules") && q.starts_with("select") {
        "poll schedules"
    } else if q.starts_with("select $") && q.contains("workflow_status where workflow_uuid = $1") {
        "tick exists?"
    } else if q.starts_with("select version_name")
        && q.contains("order by version_timestamp desc limit")
    {
        "version lookup"
    } else if q.contains("ins as ( insert into") && q.contains("workflow_status") {
        "enqueue run"
    } else {
        "other"
    }
}

/// S: 1,000 schedules polled and fired by 3 executors.
pub(crate) async fn scheduler_cost(server: &Server) -> Report {
    // At least one schedule per second of the minute, so any window of a few seconds has ticks.
    let schedules = ((1000.0 * scale()) as usize).max(60);
    let warmup = if scale() >= 1.0 {
        // Past the first minute's one-second polling, to the steady state.
        Duration::from_secs(65)
    } else {
        Duration::from_secs(2)
    };
    let window = Duration::from_secs_f64((60.0 * scale()).max(10.0));

    // A server of its own with pg_stat_statements, unless one is given.
    let own = if std::env::var("DBOS_BENCH_URL").is_err() {
        let dir = std::env::var("DBOS_BENCH_PG_DIR")
            .map(|d| format!("{d}-sched"))
            .unwrap_or_else(|_| "target/bench-postgres-sched".to_owned());
        let pg = LocalPostgres::builder(&dir)
            .setting("max_connections", "100")
            .setting("shared_buffers", "256MB")
            .setting("shared_preload_libraries", "pg_stat_statements")
            .start()
            .await
            .expect("start the scheduler benchmark's Postgres");
        Some((pg, std::path::PathBuf::from(dir)))
    } else {
        None
    };
    let url = match &own {
        Some((pg, _)) => {
            let (admin, conn) = tokio_postgres::connect(&pg.url("postgres"), tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            for sql in [
                "DROP DATABASE IF EXISTS bench_sched WITH (FORCE)",
                "CREATE DATABASE bench_sched",
            ] {
                admin.batch_execute(sql).await.expect("a fresh database");
            }
            pg.url("bench_sched")
        }
        None => server.fresh_database("sched").await,
    };
    let postmaster: Option<u32> = own.as_ref().and_then(|(_, dir)| {
        std::fs::read_to_string(dir.join("data").join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
    });

    let setup = Dbos::launch(config(&url))
        .await
        .expect("launch the setup runtime");
    let defs: Vec<Schedule> = (0..schedules)
        .map(|i| {
            Schedule::new(
                format!("s-{i:04}"),
                "bench_tick",
                format!("{} * * * * *", i % 60),
            )
        })
        .collect();
    setup
        .apply_schedules(&defs)
        .await
        .expect("create the schedules");
    setup.shutdown().await.expect("shut the setup runtime down");

    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let statements = client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .is_ok()
        && client
            .query_one(
                "SELECT count(*) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .is_ok();

    let mut workers: Vec<Child> = (0..EXECUTORS)
        .map(|i| spawn_worker(&url, &format!("dbos-rs-sched-bench-{i}")))
        .collect();
    tokio::time::sleep(warmup).await;
    // The workers must be up and firing before the window opens: on a loaded machine their
    // launch can take longer than a small scale's warm-up.
    let ready_by = Instant::now() + Duration::from_secs(120);
    while Instant::now() < ready_by {
        let fired: i64 = client
            .query_one(
                "SELECT count(*) FROM dbos.workflow_status WHERE schedule_name IS NOT NULL",
                &[],
            )
            .await
            .expect("count the runs")
            .get(0);
        if fired > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The window.
    if statements {
        client
            .batch_execute("SELECT pg_stat_statements_reset()")
            .await
            .expect("reset pg_stat_statements");
    }
    let commits_sql = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()";
    // pg_stat_database is a snapshot per transaction; a fresh statement reads it anew.
    client
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .ok();
    let commits_before: i64 = client
        .query_one(commits_sql, &[])
        .await
        .expect("read commits")
        .get(0);
    let cpu_before: Vec<f64> = workers.iter().map(|w| cpu_seconds(w.id())).collect();
    let pg_before = postmaster.map(children_cpu).unwrap_or_default();
    let start_ms = now_ms();
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let elapsed = started.elapsed().as_secs_f64();
    let end_ms = now_ms();
    let cpu_after: Vec<f64> = workers.iter().map(|w| cpu_seconds(w.id())).collect();
    let pg_after = postmaster.map(children_cpu).unwrap_or_default();
    client
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .ok();
    let commits_after: i64 = client
        .query_one(commits_sql, &[])
        .await
        .expect("read commits")
        .get(0);

    // The runs the window's ticks made (one per tick: the ids are the ticks').
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT workflow_uuid) FROM dbos.workflow_status
              WHERE schedule_name IS NOT NULL AND created_at >= $1 AND created_at < $2",
            &[&start_ms, &end_ms],
        )
        .await
        .expect("count the runs");
    let ticks: i64 = row.get(0);
    let distinct: i64 = row.get(1);
    assert_eq!(ticks, distinct, "a tick ran twice");
    let ticks_f = (ticks.max(1)) as f64;

    let mut by_kind: BTreeMap<&'static str, (i64, f64)> = BTreeMap::new();
    let mut others: Vec<(i64, String)> = Vec::new();
    if statements {
        for r in client
            .query(
                "SELECT query, calls, total_exec_time FROM pg_stat_statements
                  WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .expect("read pg_stat_statements")
        {
            let query: String = r.get(0);
            if query.contains("pg_stat_") {
                continue;
            }
            let kind = classify(&query);
            let calls: i64 = r.get(1);
            if kind == "other" {
                let flat: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
                others.push((calls, flat.chars().take(110).collect()));
            }
            let e = by_kind.entry(kind).or_default();
            e.0 += calls;
            e.1 += r.get::<_, f64>(2);
        }
    }
    for w in &mut workers {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(w.id() as i32, libc::SIGKILL);
        }
        let _ = w.wait();
    }
    if let Some((pg, _)) = &own {
        let _ = pg.stop().await;
    }

    let executor_cpu: f64 = cpu_after.iter().zip(&cpu_before).map(|(a, b)| a - b).sum();
    let postgres_cpu: Option<f64> = postmaster.map(|_| {
        pg_after
            .iter()
            .map(|(pid, after)| after - pg_before.get(pid).copied().unwrap_or(0.0))
            .sum()
    });
    let scheduler_kinds = [
        "poll schedules",
        "tick exists?",
        "version lookup",
        "enqueue run",
        "record last tick",
    ];
    let scheduler_calls: i64 = scheduler_kinds
        .iter()
        .map(|k| by_kind.get(k).map_or(0, |e| e.0))
        .sum();
    let scheduler_ms: f64 = scheduler_kinds
        .iter()
        .map(|k| by_kind.get(k).map_or(0.0, |e| e.1))
        .sum();
    let other_calls = by_kind.get("other").map_or(0, |e| e.0);
    let per_kind: Value = by_kind
        .iter()
        .map(|(k, (calls, ms))| {
            (
                (*k).to_owned(),
                json!({"calls": calls, "per_tick": *calls as f64 / ticks_f, "exec_ms": ms}),
            )
        })
        .collect::<serde_json::Map<String, Value>>()
        .into();
    let commits_per_tick = (commits_after - commits_before) as f64 / ticks_f;
    let core_pct = executor_cpu / elapsed / EXECUTORS as f64 * 100.0;
    for (k, (calls, ms)) in &by_kind {
        println!(
            "S: {k:<16} {calls:>7} statements, {:>6.2} per tick, {ms:>9.1} ms in the server",
            *calls as f64 / ticks_f
        );
    }
    others.sort_by_key(|o| std::cmp::Reverse(o.0));
    for (calls, query) in others.iter().take(8) {
        println!("S:   other: {calls:>7}  {query}");
    }
    let summary = if statements {
        format!(
            "{schedules} schedules, {EXECUTORS} executors, {ticks} ticks in {elapsed:.0} s: scheduler {:.2} statements/tick \
             ({:.3} ms server time/tick), everything else (dequeue, the runs, background polls) {:.2}/tick; executor CPU {:.1}% of a core each ({:.2} ms/tick){}",
            scheduler_calls as f64 / ticks_f,
            scheduler_ms / ticks_f,
            other_calls as f64 / ticks_f,
            core_pct,
            executor_cpu * 1000.0 / ticks_f,
            postgres_cpu
                .map(|c| format!("; Postgres CPU {:.2} ms/tick", c * 1000.0 / ticks_f))
                .unwrap_or_default()
        )
    } else {
        format!(
            "{schedules} schedules, {EXECUTORS} executors, {ticks} ticks in {elapsed:.0} s: {commits_per_tick:.2} transactions/tick \
             (pg_stat_statements not loaded on this server); executor CPU {core_pct:.1}% of a core each ({:.2} ms/tick)",
            executor_cpu * 1000.0 / ticks_f
        )
    };
    Report {
        workload: "S (scheduler cost)",
        summary,
        json: json!({
            "workload": "S",
            "schedules": schedules,
            "executors": EXECUTORS,
            "window_s": elapsed,
            "ticks": ticks,
            "statements_counted": statements,
            "scheduler_statements_per_tick": statements.then(|| scheduler_calls as f64 / ticks_f),
            "scheduler_server_ms_per_tick": statements.then(|| scheduler_ms / ticks_f),
            "other_statements_per_tick": statements.then(|| other_calls as f64 / ticks_f),
            "by_statement": per_kind,
            "transactions_per_tick": commits_per_tick,
            "executor_cpu_s": executor_cpu,
            "executor_core_pct_each": core_pct,
            "executor_cpu_ms_per_tick": executor_cpu * 1000.0 / ticks_f,
            "postgres_cpu_ms_per_tick": postgres_cpu.map(|c| c * 1000.0 / ticks_f),
        }),
    }
}
