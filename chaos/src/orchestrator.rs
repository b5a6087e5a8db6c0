//! The orchestrator: runs the workload under the fault schedule, then gathers what the run left
//! and hands it to the checks.
//!
//! 1. Starts its own Postgres under the run folder (never a shared cluster: it crashes it),
//!    creates the run's database and brings the DBOS schema up.
//! 2. Launches one worker process per slot (`dbos-chaos worker`, executor id `chaos-w<slot>`),
//!    waits until each printed `ready`, and enqueues every workflow with one
//!    `dbos.enqueue_workflow` statement.
//! 3. Every 50 ms reads the progress (checkpointed steps), fires the faults whose progress has
//!    come, relaunches killed slots when their down time is over (same executor id: the new
//!    process recovers the old one's `PENDING` work at launch), and stops once every workflow
//!    is `SUCCESS` or the timeout passes.
//! 4. Reads the rows and the effect files, runs the checks, and builds the report.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dbos_core::local_postgres::LocalPostgres;
use dbos_core::sysdb::{ConnectOptions, SystemDatabase};
use dbos_testkit::pgbouncer::{PgBouncer, PoolMode};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::check::{self, Effect, Expect, KillInfo, OpRow, WorkflowRow};
use crate::cli::Settings;
use crate::report::{
    KillReport, PgRestartReport, Report, SlotReport, StuckGroup, StuckReport, Summary,
};
use crate::schedule::{schedule, Fault, Scheduled};
use crate::worker::{APP_NAME, APP_VERSION, QUEUE, WORKFLOW_NAME};

/// The name of the run's database.
const DATABASE: &str = "dbos_chaos";
/// How often the loop wakes up.
const TICK: Duration = Duration::from_millis(25);
/// How long a worker may take to print `ready` before the run gives up.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);

fn epoch_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// A worker slot: one executor id, one process at a time.
#[derive(Debug)]
struct Slot {
    index: u32,
    executor: String,
    child: Option<Child>,
    pid: Option<u32>,
    /// When the current process was spawned, since the workload was enqueued (0 for the first).
    launched_at: Duration,
    ready: bool,
    relaunch_at: Option<Instant>,
    launches: u32,
}

/// One kill, as it happened.
#[derive(Debug)]
struct KillRecord {
    slot: u32,
    executor: String,
    pid: u32,
    at: Duration,
    at_micros: u128,
    progress: f64,
    down_ms: u64,
    /// Workflows PENDING on the victim right after it died, with their checkpoint counts.
    in_flight: Option<Vec<(String, i64)>>,
    /// Those not yet past the step they were in when the victim died.
    waiting: HashMap<String, i64>,
    relaunch_ready: Option<Duration>,
    recovered: Option<Duration>,
}

/// One Postgres restart, as it happened.
#[derive(Debug)]
struct PgRestartRecord {
    at: Duration,
    progress: f64,
    took: Option<Duration>,
    error: Option<String>,
}

/// Errors that stop the suite itself (not a failed check).
pub(crate) type SetupResult<T> = Result<T, String>;

/// Everything one run needs.
struct Run {
    settings: Settings,
    dir: PathBuf,
    effects_dir: PathBuf,
    logs_dir: PathBuf,
    pg: LocalPostgres,
    /// The URL the workers launch with: the run's database, or through PgBouncer with
    /// `--pooler`.
    worker_url: String,
    /// The PgBouncer in front of Postgres with `--pooler` (stopped when the run ends).
    _pooler: Option<PgBouncer>,
    db: SystemDatabase,
    exe: PathBuf,
    slots: Vec<Slot>,
    ready_tx: mpsc::UnboundedSender<(u32, u32, Instant)>,
    ready_rx: mpsc::UnboundedReceiver<(u32, u32, Instant)>,
    t0: Instant,
    t0_micros: u128,
    kills: Vec<KillRecord>,
    pg_restarts: Vec<PgRestartRecord>,
    worker_pids: HashSet<u32>,
    unexpected_exits: Vec<String>,
    progress: f64,
    ended: i64,
}

/// Prepares the run folder and starts Postgres. Kept apart from [`execute`] so the caller can
/// stop Postgres whatever happens to the run.
pub(crate) async fn start_postgres(dir: &Path) -> SetupResult<LocalPostgres> {
    LocalPostgres::builder(dir.join("pg"))
        .ephemeral(true)
        // `ephemeral` turns synchronous_commit off, which lets a crash of the server lose
        // commits it has already acknowledged (up to wal_writer_delay of them). The suite
        // crashes the server on purpose and holds the library to what was acknowledged, so
        // commits must be durable against a server crash; fsync stays off (the machine
        // itself does not crash, so the OS page cache keeps what was written).
        .setting("synchronous_commit", "on")
        .setting("max_connections", "300")
        .start()
        .await
        .map_err(|e| format!("could not start the run's Postgres: {e}"))
}

/// The lease of each worker behind the pooler (its liveness without a session): short, so a
/// killed worker's relaunch takes its work back within seconds, as the lock does directly.
const POOLED_LEASE_MS: u64 = 3_000;

/// PgBouncer in transaction mode with `servers` server connections in front of the run's
/// Postgres (`url`), its files under the run folder.
async fn start_pooler(url: &str, dir: &Path, servers: usize) -> SetupResult<PgBouncer> {
    let (url, dir) = (url.to_owned(), dir.to_owned());
    // The testkit's launcher panics when PgBouncer cannot start: reported as a setup error.
    tokio::spawn(
        async move { PgBouncer::start_for(&url, dir, PoolMode::Transaction, servers).await },
    )
    .await
    .map_err(|_| {
        "could not start PgBouncer for --pooler (install the `pgbouncer` package)".to_owned()
    })
}

/// Runs the workload under the fault schedule and checks it.
pub(crate) async fn execute(
    settings: Settings,
    dir: PathBuf,
    pg: LocalPostgres,
) -> SetupResult<Report> {
    let effects_dir = dir.join("effects");
    let logs_dir = dir.join("logs");
    for d in [&effects_dir, &logs_dir] {
        std::fs::create_dir_all(d).map_err(|e| format!("could not create {}: {e}", d.display()))?;
    }
    let url = pg.url(DATABASE);
    let db = SystemDatabase::connect(
        &url,
        "dbos",
        &ConnectOptions {
            pool_size: 4,
            connect_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| format!("could not create the run's database: {e}"))?;
    db.migrate()
        .await
        .map_err(|e| format!("could not create the DBOS schema: {e}"))?;
    let pooler = match settings.pooler {
        0 => None,
        servers => Some(start_pooler(&url, &dir, servers as usize).await?),
    };
    let worker_url = pooler.as_ref().map_or_else(|| url.clone(), |p| p.url(&url));
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    let (ready_tx, ready_rx) = mpsc::unbounded_channel();
    let slots = (0..settings.workers)
        .map(|index| Slot {
            index,
            executor: format!("chaos-w{index}"),
            child: None,
            pid: None,
            launched_at: Duration::ZERO,
            ready: false,
            relaunch_at: None,
            launches: 0,
        })
        .collect();
    let mut run = Run {
        settings,
        dir,
        effects_dir,
        logs_dir,
        pg,
        worker_url,
        _pooler: pooler,
        db,
        exe,
        slots,
        ready_tx,
        ready_rx,
        t0: Instant::now(),
        t0_micros: epoch_micros(),
        kills: Vec::new(),
        pg_restarts: Vec::new(),
        worker_pids: HashSet::new(),
        unexpected_exits: Vec::new(),
        progress: 0.0,
        ended: 0,
    };
    let result = run.drive().await;
    // Whatever happened, no worker outlives the run.
    for slot in &mut run.slots {
        if let Some(mut child) = slot.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
    result
}

impl Run {
    async fn drive(&mut self) -> SetupResult<Report> {
        // Launch every worker and wait until each is serving.
        for i in 0..self.slots.len() {
            self.launch(i)?;
        }
        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        while self.slots.iter().any(|s| !s.ready) {
            if Instant::now() > deadline {
                return Err(format!(
                    "the workers did not start within {LAUNCH_TIMEOUT:?}; see {}",
                    self.logs_dir.display()
                ));
            }
            self.check_exits(false);
            if let Some(e) = self.unexpected_exits.first() {
                return Err(format!("a worker failed to start: {e}"));
            }
            if let Ok(Some((slot, pid, _))) = tokio::time::timeout(TICK, self.ready_rx.recv()).await
            {
                self.mark_ready(slot, pid, None);
            }
        }

        // The workload: every workflow, enqueued at once.
        self.t0 = Instant::now();
        self.t0_micros = epoch_micros();
        for s in &mut self.slots {
            s.launched_at = Duration::ZERO;
        }
        self.enqueue().await?;

        let mut events: std::collections::VecDeque<Scheduled> = schedule(
            self.settings.seed,
            self.settings.workers,
            self.settings.kills,
            self.settings.pg_restarts,
        )
        .into();
        let mut pg_task: Option<tokio::task::JoinHandle<(Duration, Result<(), String>)>> = None;
        let mut tick = 0u64;
        let total = self.settings.total_steps() as f64;
        let mut last_change = (Instant::now(), -1i64, -1i64);
        let mut ended_by = String::from("every workflow ended");
        let finished = loop {
            tick += 1;
            tokio::time::sleep(TICK).await;
            while let Ok((slot, pid, at)) = self.ready_rx.try_recv() {
                self.mark_ready(slot, pid, Some(at));
            }
            self.check_exits(true);
            for i in 0..self.slots.len() {
                if self.slots[i]
                    .relaunch_at
                    .is_some_and(|at| Instant::now() >= at)
                {
                    self.slots[i].relaunch_at = None;
                    self.launch(i)?;
                }
            }
            if pg_task.as_ref().is_some_and(|t| t.is_finished()) {
                if let Some(task) = pg_task.take() {
                    let (took, result) = task
                        .await
                        .map_err(|e| format!("the Postgres restart task failed: {e}"))?;
                    if let Some(last) = self.pg_restarts.last_mut() {
                        last.took = Some(took);
                        last.error = result.err();
                    }
                }
            }
            if tick.is_multiple_of(2) {
                if let Ok((steps, ended)) = self.read_progress().await {
                    self.ended = ended;
                    self.progress = steps as f64 / total;
                    if (steps, ended) != (last_change.1, last_change.2) {
                        last_change = (Instant::now(), steps, ended);
                    }
                }
                self.watch_recoveries().await;
            }
            // Every workflow ended (successfully or not: the checks tell which).
            if self.ended as u64 >= self.settings.workflows {
                break true;
            }
            if self.t0.elapsed() > self.settings.timeout() {
                ended_by = format!("the timeout ({} s) passed", self.settings.timeout_secs);
                break false;
            }
            if last_change.0.elapsed() > self.settings.stall() {
                ended_by = format!(
                    "nothing progressed for {} s (no new checkpoint, no workflow ended)",
                    self.settings.stall_secs
                );
                break false;
            }
            // At most one fault per tick.
            let Some(next) = events.front() else { continue };
            if next.at_progress > self.progress {
                continue;
            }
            match next.fault {
                Fault::Kill { slot, down_ms } => {
                    if let Some(i) = self.pick_victim(slot as usize) {
                        self.kill(i, down_ms).await;
                        events.pop_front();
                    }
                }
                Fault::PgRestart => {
                    // Only with every worker up and serving: each then lives through the
                    // restart (and, the last restart coming after the last kill, nothing
                    // relaunches it afterwards), so work it strands stays stranded.
                    let all_up = self
                        .slots
                        .iter()
                        .all(|s| s.child.is_some() && s.ready && s.relaunch_at.is_none());
                    if pg_task.is_none() && all_up {
                        events.pop_front();
                        self.pg_restarts.push(PgRestartRecord {
                            at: self.t0.elapsed(),
                            progress: self.progress,
                            took: None,
                            error: None,
                        });
                        println!(
                            "  {:>7.2} s  progress {:>5.1} %  Postgres: restart -m immediate",
                            self.t0.elapsed().as_secs_f64(),
                            self.progress * 100.0
                        );
                        let pg = self.pg.clone();
                        pg_task = Some(tokio::spawn(async move {
                            let start = Instant::now();
                            let r = pg.restart_immediate().await.map_err(|e| e.to_string());
                            (start.elapsed(), r)
                        }));
                    }
                }
            }
        };
        let duration = self.t0.elapsed();
        if let Some(task) = pg_task.take() {
            if let Ok((took, result)) = task.await {
                if let Some(last) = self.pg_restarts.last_mut() {
                    last.took = Some(took);
                    last.error = result.err();
                }
            }
        }
        self.finish(finished, &ended_by, duration, events.into())
            .await
    }

    /// Spawns the worker of slot `i`.
    fn launch(&mut self, i: usize) -> SetupResult<()> {
        let slot = &mut self.slots[i];
        let log_path = self.logs_dir.join(format!("worker-{}.log", slot.index));
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("could not open {}: {e}", log_path.display()))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("worker")
            .env("DBOS_SYSTEM_DATABASE_URL", &self.worker_url)
            .env("DBOS__VMID", &slot.executor)
            .env("DBOS_CHAOS_SLOT", slot.index.to_string())
            .env("DBOS_CHAOS_EFFECTS_DIR", &self.effects_dir)
            .env("DBOS_CHAOS_STEP_MS", self.settings.step_ms.to_string())
            .env(
                "DBOS_CHAOS_LEASE_MS",
                if self.settings.pooler > 0 {
                    POOLED_LEASE_MS.to_string()
                } else {
                    "0".to_owned()
                },
            )
            .env(
                "DBOS_CHAOS_CONCURRENCY",
                self.settings.worker_concurrency.to_string(),
            )
            .env(
                "RUST_LOG",
                std::env::var("DBOS_CHAOS_WORKER_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("could not start a worker: {e}"))?;
        let pid = child.id().unwrap_or(0);
        if let Some(out) = child.stdout.take() {
            let tx = self.ready_tx.clone();
            let index = slot.index;
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("ready ") {
                        let _ = tx.send((index, pid, Instant::now()));
                    }
                }
            });
        }
        self.worker_pids.insert(pid);
        slot.child = Some(child);
        slot.pid = Some(pid);
        slot.ready = false;
        slot.launched_at = self.t0.elapsed();
        slot.launches += 1;
        Ok(())
    }

    fn mark_ready(&mut self, slot: u32, pid: u32, at: Option<Instant>) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        if s.pid != Some(pid) {
            return; // a process killed before it got ready
        }
        s.ready = true;
        if let Some(at) = at {
            let since = at.saturating_duration_since(self.t0);
            if let Some(k) = self
                .kills
                .iter_mut()
                .rev()
                .find(|k| k.slot == slot && k.pid != pid && k.relaunch_ready.is_none())
            {
                k.relaunch_ready = Some(since.saturating_sub(k.at));
            }
        }
    }

    /// Notices workers that exited without being killed; during the run they are relaunched
    /// (a supervisor would do the same) and reported.
    fn check_exits(&mut self, relaunch: bool) {
        let now = self.t0.elapsed();
        for slot in &mut self.slots {
            let Some(child) = slot.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                let log = self.logs_dir.join(format!("worker-{}.log", slot.index));
                self.unexpected_exits.push(format!(
                    "{} (pid {}) exited by itself with {status} at {:.2} s; its log: {}\n{}",
                    slot.executor,
                    slot.pid.unwrap_or(0),
                    now.as_secs_f64(),
                    log.display(),
                    log_tail(&log, 8)
                ));
                slot.child = None;
                slot.ready = false;
                if relaunch {
                    slot.relaunch_at = Some(Instant::now());
                }
            }
        }
    }

    /// The slot to kill: the scheduled one if it is up, else the next one that is up.
    fn pick_victim(&self, preferred: usize) -> Option<usize> {
        let n = self.slots.len();
        (0..n)
            .map(|k| (preferred + k) % n)
            .find(|&i| self.slots[i].child.is_some() && self.slots[i].ready)
    }

    async fn kill(&mut self, i: usize, down_ms: u64) {
        let Some(mut child) = self.slots[i].child.take() else {
            return;
        };
        let pid = child.id().unwrap_or(0);
        let at = self.t0.elapsed();
        let at_micros = epoch_micros();
        // SAFETY: sending a signal to our own child process, which has not been reaped yet.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
        let _ = child.wait().await;
        let executor = self.slots[i].executor.clone();
        self.slots[i].ready = false;
        println!(
            "  {:>7.2} s  progress {:>5.1} %  SIGKILL {executor} (pid {pid}), back in {down_ms} ms",
            at.as_secs_f64(),
            self.progress * 100.0
        );
        // What it was running: nothing changes these rows until the slot is relaunched.
        let in_flight = self.in_flight(&executor).await;
        let waiting = in_flight
            .as_ref()
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default();
        self.kills.push(KillRecord {
            slot: i as u32,
            executor,
            pid,
            at,
            at_micros,
            progress: self.progress,
            down_ms,
            in_flight,
            waiting,
            relaunch_ready: None,
            recovered: None,
        });
        self.slots[i].relaunch_at = Some(Instant::now() + Duration::from_millis(down_ms));
    }

    async fn in_flight(&self, executor: &str) -> Option<Vec<(String, i64)>> {
        let s = self.db.quoted_schema().to_owned();
        let sql = format!(
            "SELECT w.workflow_uuid, (SELECT count(*) FROM {s}.operation_outputs o WHERE o.workflow_uuid = w.workflow_uuid)
               FROM {s}.workflow_status w WHERE w.executor_id = $1 AND w.status = 'PENDING'"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = async {
                let client = self.db.client().await.map_err(|e| e.to_string())?;
                client
                    .query(&sql, &[&executor])
                    .await
                    .map_err(|e| e.to_string())
            };
            match attempt.await {
                Ok(rows) => return Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect()),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => return None,
            }
        }
    }

    async fn enqueue(&self) -> SetupResult<()> {
        let s = self.db.quoted_schema();
        let sql = format!(
            "SELECT count({s}.enqueue_workflow($1, $2, ARRAY[to_json(i), to_json($3::int)],
                    workflow_id => 'chaos-' || lpad(i::text, 6, '0'), app_version => $4, application_name => $5))
               FROM generate_series(1::bigint, $6::bigint) AS i"
        );
        let client = self
            .db
            .client()
            .await
            .map_err(|e| format!("could not connect to enqueue: {e}"))?;
        let steps = self.settings.steps as i32;
        let n = self.settings.workflows as i64;
        let row = client
            .query_one(
                &sql,
                &[&WORKFLOW_NAME, &QUEUE, &steps, &APP_VERSION, &APP_NAME, &n],
            )
            .await
            .map_err(|e| format!("could not enqueue the workload: {e}"))?;
        let count: i64 = row.get(0);
        if count != n {
            return Err(format!("enqueued {count} workflows instead of {n}"));
        }
        Ok(())
    }

    /// (checkpointed steps, workflows in a final status).
    async fn read_progress(&self) -> Result<(i64, i64), String> {
        let s = self.db.quoted_schema();
        let client = self.db.client().await.map_err(|e| e.to_string())?;
        let row = client
            .query_one(
                &format!(
                    "SELECT (SELECT count(*) FROM {s}.operation_outputs),
                            (SELECT count(*) FILTER (WHERE status IN ('SUCCESS', 'ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED'))
                               FROM {s}.workflow_status)"
                ),
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok((row.get(0), row.get(1)))
    }

    /// Marks kills whose interrupted workflows have all moved past the step they were in.
    async fn watch_recoveries(&mut self) {
        let ids: Vec<String> = self
            .kills
            .iter()
            .filter(|k| k.recovered.is_none())
            .flat_map(|k| k.waiting.keys().cloned())
            .collect();
        let now = self.t0.elapsed();
        if !ids.is_empty() {
            let s = self.db.quoted_schema().to_owned();
            let sql = format!(
                "SELECT w.workflow_uuid, w.status, (SELECT count(*) FROM {s}.operation_outputs o WHERE o.workflow_uuid = w.workflow_uuid)
                   FROM {s}.workflow_status w WHERE w.workflow_uuid = ANY($1)"
            );
            let rows = async {
                let client = self.db.client().await.map_err(|e| e.to_string())?;
                client.query(&sql, &[&ids]).await.map_err(|e| e.to_string())
            }
            .await;
            let Ok(rows) = rows else { return };
            let state: HashMap<String, (String, i64)> = rows
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        (r.get::<_, Option<String>>(1).unwrap_or_default(), r.get(2)),
                    )
                })
                .collect();
            for k in self.kills.iter_mut().filter(|k| k.recovered.is_none()) {
                k.waiting.retain(|id, steps| match state.get(id) {
                    Some((status, n)) => status != "SUCCESS" && *n <= *steps,
                    None => true,
                });
            }
        }
        for k in self.kills.iter_mut().filter(|k| k.recovered.is_none()) {
            if k.waiting.is_empty() && k.in_flight.as_ref().is_some_and(|v| !v.is_empty()) {
                k.recovered = Some(now.saturating_sub(k.at));
            }
        }
    }

    /// Gathers the end state, kills the workers, checks, and reports.
    async fn finish(
        &mut self,
        finished: bool,
        ended_by: &str,
        duration: Duration,
        unfired: Vec<Scheduled>,
    ) -> SetupResult<Report> {
        // The stuck workflows, read while their processes still run.
        let stuck = if finished {
            None
        } else {
            Some(self.stuck_report().await?)
        };
        for slot in &mut self.slots {
            if let Some(mut child) = slot.child.take() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        let workflows = self.workflow_rows().await?;
        let ops = self.op_rows().await?;
        let killed: HashSet<u32> = self.kills.iter().map(|k| k.pid).collect();
        let (effects, effect_problems) = read_effects(&self.effects_dir, &killed)?;
        let kill_infos: Vec<KillInfo> = self
            .kills
            .iter()
            .map(|k| KillInfo {
                pid: k.pid,
                executor: k.executor.clone(),
                at_micros: k.at_micros,
                in_flight: k
                    .in_flight
                    .as_ref()
                    .map(|v| v.iter().map(|(id, _)| id.clone()).collect()),
            })
            .collect();
        let expect = Expect {
            workflows: self.settings.workflows,
            steps: self.settings.steps,
            kills: self.kills.len() as u32,
            worker_concurrency: self.settings.worker_concurrency,
            step_name: step_name(&ops),
            t0_micros: self.t0_micros,
        };
        let mut verdicts = check::check(
            &expect,
            &workflows,
            &ops,
            &effects,
            &effect_problems,
            &self.worker_pids,
            &kill_infos,
        );
        verdicts.checks.push(check::CheckResult {
            name: "workers",
            passed: self.unexpected_exits.is_empty(),
            summary: format!(
                "{} worker processes, none exited unless killed",
                self.worker_pids.len()
            ),
            details: self.unexpected_exits.clone(),
            more: 0,
        });
        verdicts.checks.push(check::CheckResult {
            name: "faults",
            passed: unfired.is_empty(),
            summary: format!(
                "{} SIGKILLs and {} Postgres restarts injected, as scheduled",
                self.kills.len(),
                self.pg_restarts.len()
            ),
            details: unfired
                .iter()
                .map(|f| {
                    format!(
                        "{:?} scheduled at {:.1} % progress never fired: the run ended first (at {:.1} %); give the steps more work (--step-ms) or the run more workflows",
                        f.fault,
                        f.at_progress * 100.0,
                        self.progress * 100.0
                    )
                })
                .collect(),
            more: 0,
        });
        let pg_errors: Vec<String> = self
            .pg_restarts
            .iter()
            .filter_map(|p| p.error.clone())
            .collect();
        if !pg_errors.is_empty() {
            verdicts.checks.push(check::CheckResult {
                name: "postgres restarts",
                passed: false,
                summary: "pg_ctl restart -m immediate succeeded".to_owned(),
                details: pg_errors,
                more: 0,
            });
        }

        let kills: Vec<KillReport> = self
            .kills
            .iter()
            .zip(&verdicts.reruns_per_kill)
            .map(|(k, &reruns)| KillReport {
                executor: k.executor.clone(),
                pid: k.pid,
                at_secs: k.at.as_secs_f64(),
                progress: k.progress,
                down_ms: k.down_ms,
                in_flight: k.in_flight.as_ref().map(Vec::len),
                reruns,
                relaunch_secs: k.relaunch_ready.map(|d| d.as_secs_f64()),
                recovery_secs: k.recovered.map(|d| d.as_secs_f64()),
            })
            .collect();
        let recovery = Summary::of(kills.iter().filter_map(|k| k.recovery_secs).collect());
        let relaunch = Summary::of(kills.iter().filter_map(|k| k.relaunch_secs).collect());
        let secs = duration.as_secs_f64().max(1e-9);
        let steps_checkpointed = ops.len() as u64;
        let succeeded = workflows.iter().filter(|w| w.status == "SUCCESS").count() as u64;
        let outcome = if !finished {
            "timeout"
        } else if verdicts.passed() {
            "pass"
        } else {
            "fail"
        };
        Ok(Report {
            outcome: outcome.to_owned(),
            ended_by: ended_by.to_owned(),
            settings: self.settings.clone(),
            machine: machine(),
            run_dir: self.dir.display().to_string(),
            duration_secs: secs,
            workflows_succeeded: succeeded,
            steps_checkpointed,
            workflows_per_sec: succeeded as f64 / secs,
            steps_per_sec: steps_checkpointed as f64 / secs,
            worker_launches: self.slots.iter().map(|s| s.launches).sum(),
            kills,
            pg_restarts: self
                .pg_restarts
                .iter()
                .map(|p| PgRestartReport {
                    at_secs: p.at.as_secs_f64(),
                    progress: p.progress,
                    took_secs: p.took.map(|d| d.as_secs_f64()),
                    error: p.error.clone(),
                })
                .collect(),
            recovery_secs: recovery,
            relaunch_secs: relaunch,
            steps_rerun: verdicts.steps_rerun,
            rerun_bound: u64::from(expect.kills) * u64::from(expect.worker_concurrency),
            effect_lines: verdicts.effect_lines,
            faults_not_fired: unfired,
            checks: verdicts.checks,
            stuck,
        })
    }

    async fn stuck_report(&self) -> SetupResult<StuckReport> {
        let rows = self.workflow_rows().await?;
        let stuck: Vec<WorkflowRow> = rows.into_iter().filter(|w| w.status != "SUCCESS").collect();
        let last_pg_restart = self.pg_restarts.last().map(|p| p.at);
        let mut groups: HashMap<(String, String), u64> = HashMap::new();
        for w in &stuck {
            *groups
                .entry((
                    w.status.clone(),
                    w.executor_id.clone().unwrap_or_else(|| "-".to_owned()),
                ))
                .or_default() += 1;
        }
        let mut groups: Vec<StuckGroup> = groups
            .into_iter()
            .map(|((status, executor), count)| {
                let slot = self.slots.iter().find(|s| s.executor == executor);
                StuckGroup {
                    process: slot.map(|s| describe_slot(s, last_pg_restart)),
                    status,
                    executor,
                    count,
                }
            })
            .collect();
        groups.sort_by(|a, b| (&a.status, &a.executor).cmp(&(&b.status, &b.executor)));
        let slots = self
            .slots
            .iter()
            .map(|s| SlotReport {
                executor: s.executor.clone(),
                pid: s.child.as_ref().and(s.pid),
                launched_at_secs: s.launched_at.as_secs_f64(),
                launches: s.launches,
            })
            .collect();
        let t0_ms = (self.t0_micros / 1000) as i64;
        let sample = stuck
            .iter()
            .take(20)
            .map(|w| {
                format!(
                    "{}: {} on {}, last recorded step {}, recovery attempts {}, last updated at {}",
                    w.id,
                    w.status,
                    w.executor_id.as_deref().unwrap_or("-"),
                    w.last_step.map_or("none".to_owned(), |s| s.to_string()),
                    w.recovery_attempts.unwrap_or(0),
                    w.updated_at.map_or("?".to_owned(), |u| format!(
                        "{:.2} s",
                        (u - t0_ms) as f64 / 1000.0
                    ))
                )
            })
            .collect();
        Ok(StuckReport {
            count: stuck.len() as u64,
            groups,
            slots,
            sample,
        })
    }

    async fn workflow_rows(&self) -> SetupResult<Vec<WorkflowRow>> {
        let s = self.db.quoted_schema().to_owned();
        let sql = format!(
            "SELECT w.workflow_uuid, w.status, COALESCE(r.output, w.output), COALESCE(r.error, w.error),
                    w.executor_id, w.recovery_attempts,
                    (SELECT max(function_id) FROM {s}.operation_outputs o WHERE o.workflow_uuid = w.workflow_uuid),
                    w.queue_name, w.updated_at
               FROM {s}.workflow_status w LEFT JOIN {s}.workflow_output r USING (workflow_uuid)
              ORDER BY w.workflow_uuid"
        );
        let rows = self.query_retrying(&sql).await?;
        Ok(rows
            .iter()
            .map(|r| WorkflowRow {
                id: r.get(0),
                status: r.get::<_, Option<String>>(1).unwrap_or_default(),
                output: r.get(2),
                error: r.get(3),
                executor_id: r.get(4),
                recovery_attempts: r.get(5),
                last_step: r.get(6),
                queue_name: r.get(7),
                updated_at: r.get(8),
            })
            .collect())
    }

    async fn op_rows(&self) -> SetupResult<Vec<OpRow>> {
        let s = self.db.quoted_schema().to_owned();
        let sql = format!(
            "SELECT workflow_uuid, function_id, function_name FROM {s}.operation_outputs ORDER BY 1, 2"
        );
        let rows = self.query_retrying(&sql).await?;
        Ok(rows
            .iter()
            .map(|r| OpRow {
                workflow_id: r.get(0),
                function_id: r.get(1),
                function_name: r.get(2),
            })
            .collect())
    }

    /// A read that rides out a Postgres restart still in progress.
    async fn query_retrying(&self, sql: &str) -> SetupResult<Vec<tokio_postgres::Row>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let attempt = async {
                let client = self.db.client().await.map_err(|e| e.to_string())?;
                client.query(sql, &[]).await.map_err(|e| e.to_string())
            };
            match attempt.await {
                Ok(rows) => return Ok(rows),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("could not read the run's results: {e}"))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

/// The name the checkpoints record for the step: the one most of them carry (the checks
/// then flag any other).
fn step_name(ops: &[OpRow]) -> String {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for op in ops {
        *counts.entry(op.function_name.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map_or_else(|| "chaos_step".to_owned(), |(name, _)| name.to_owned())
}

fn describe_slot(s: &Slot, last_pg_restart: Option<Duration>) -> String {
    match (&s.child, s.pid) {
        (Some(_), Some(pid)) => {
            let since = s.launched_at.as_secs_f64();
            let relation = match last_pg_restart {
                Some(pg) if s.launched_at < pg => format!(
                    "; launched before the last Postgres restart (at {:.2} s) and not killed since",
                    pg.as_secs_f64()
                ),
                Some(_) => "; launched after the last Postgres restart".to_owned(),
                None => String::new(),
            };
            format!("pid {pid} alive, launched at {since:.2} s{relation}")
        }
        _ => "no process running".to_owned(),
    }
}

/// Reads every effects file of the run.
fn read_effects(dir: &Path, killed: &HashSet<u32>) -> SetupResult<(Vec<Effect>, Vec<String>)> {
    let mut effects = Vec::new();
    let mut problems = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("could not list {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("could not list {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // effects-<slot>-<pid>.log
        let pid: Option<u32> = name
            .strip_suffix(".log")
            .and_then(|n| n.rsplit('-').next())
            .and_then(|p| p.parse().ok());
        let text = std::fs::read_to_string(entry.path())
            .map_err(|e| format!("could not read {}: {e}", entry.path().display()))?;
        let (mut e, p) =
            check::parse_effects(&name, &text, pid.is_some_and(|p| killed.contains(&p)));
        effects.append(&mut e);
        problems.extend(p);
    }
    Ok((effects, problems))
}

fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("      | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A line describing the machine.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!(
        "{cores} cores, {mem_gib:.0} GiB, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}
