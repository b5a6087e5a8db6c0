//! The command line: a small hand parser (the flags are few and all take one value).

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// What the command line asked for.
#[derive(Debug)]
pub(crate) enum Command {
    /// Run the suite with these settings.
    Run(Settings),
    /// Serve as one worker process (spawned by the orchestrator; configured by environment).
    Worker,
    /// Print the usage text.
    Help,
}

/// The resolved settings of one run; recorded in the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    /// Workflows enqueued.
    pub(crate) workflows: u64,
    /// Steps per workflow.
    pub(crate) steps: u32,
    /// Worker processes (executor slots).
    pub(crate) workers: u32,
    /// SIGKILLs of workers over the run.
    pub(crate) kills: u32,
    /// Immediate-mode Postgres restarts over the run.
    pub(crate) pg_restarts: u32,
    /// Seed of the fault schedule.
    pub(crate) seed: u64,
    /// Give up this many seconds after the workload was enqueued.
    pub(crate) timeout_secs: u64,
    /// Give up when nothing progressed (no checkpoint, no workflow ended) for this long.
    pub(crate) stall_secs: u64,
    /// Per-worker concurrency of the queue.
    pub(crate) worker_concurrency: u32,
    /// Milliseconds each step sleeps.
    pub(crate) step_ms: u64,
    /// Server connections of the PgBouncer (transaction mode) the workers go through; 0:
    /// the workers connect directly.
    pub(crate) pooler: u32,
    /// Where the JSON report goes.
    pub(crate) report: Option<PathBuf>,
    /// The run folder (Postgres data, effect logs, worker logs).
    pub(crate) dir: Option<PathBuf>,
    /// Keep the run folder even when the run passes.
    pub(crate) keep: bool,
    /// `--full` was given.
    pub(crate) full: bool,
}

impl Settings {
    /// The stall limit as a duration.
    pub(crate) fn stall(&self) -> Duration {
        Duration::from_secs(self.stall_secs)
    }

    /// The timeout as a duration.
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Checkpointed steps when every workflow has finished.
    pub(crate) fn total_steps(&self) -> u64 {
        self.workflows * u64::from(self.steps)
    }
}

/// The usage text.
pub(crate) const USAGE: &str = "\
dbos-chaos: durable workflows under SIGKILLs and Postgres crashes, checked end to end

USAGE:
    dbos-chaos [OPTIONS]

Starts its own Postgres (under the run folder), enqueues WORKFLOWS workflows of STEPS steps on
a queue served by WORKERS worker processes, SIGKILLs workers KILLS times (each comes back under
the same executor id) and crashes Postgres PG_RESTARTS times while the work runs, waits until
every workflow succeeded, and checks outputs, checkpoints and side effects.
Exit code 0: every check passed; 1: a check failed or the work did not finish in time;
2: bad usage or the suite itself could not run.

OPTIONS:
    --workflows N       workflows to run                          [default: 80]
    --steps S           steps per workflow                        [default: 5]
    --workers W         worker processes                          [default: 3]
    --kills K           SIGKILLs of workers during the run        [default: 4]
    --pg-restarts P     Postgres crashes (pg_ctl -m immediate)    [default: 1]
    --seed X            seed of the fault schedule                [default: 1]
    --timeout SECS      give up this long after enqueuing         [default: 120; --full: 900]
    --stall SECS        give up after this long without progress  [default: 30]
    --concurrency C     worker concurrency of the queue           [default: 8]
    --step-ms MS        how long each step works                  [default: 5]
    --pooler N          workers go through PgBouncer in transaction mode with N server
                        connections and no session URL (waits poll, each worker holds a
                        3 s lease); needs the `pgbouncer` program. 0: directly [default: 0]
    --report PATH       also write the report as JSON to PATH
    --dir PATH          run folder (default: a new folder under the temp dir)
    --keep              keep the run folder after a passing run (a failing run always keeps it)
    --full              the full configuration: 1000 workflows x 10 steps, 4 workers,
                        50 kills, 2 Postgres restarts (other flags still override)
    -h, --help          this text
";

/// Parses the arguments after the program name.
pub(crate) fn parse(args: &[String]) -> Result<Command, String> {
    if args.first().map(String::as_str) == Some("worker") {
        return Ok(Command::Worker);
    }
    let mut workflows = None;
    let mut steps = None;
    let mut workers = None;
    let mut kills = None;
    let mut pg_restarts = None;
    let mut seed = None;
    let mut timeout = None;
    let mut stall = None;
    let mut concurrency = None;
    let mut step_ms = None;
    let mut pooler = None;
    let mut report = None;
    let mut dir = None;
    let mut keep = false;
    let mut full = false;

    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "--full" => full = true,
            "--keep" => keep = true,
            _ => {
                let value = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| format!("{flag} needs a value"))?,
                };
                match flag {
                    "--workflows" => workflows = Some(number(flag, &value)?),
                    "--steps" => steps = Some(number(flag, &value)?),
                    "--workers" => workers = Some(number(flag, &value)?),
                    "--kills" => kills = Some(number(flag, &value)?),
                    "--pg-restarts" => pg_restarts = Some(number(flag, &value)?),
                    "--seed" => seed = Some(number(flag, &value)?),
                    "--timeout" => timeout = Some(number(flag, &value)?),
                    "--stall" => stall = Some(number(flag, &value)?),
                    "--concurrency" => concurrency = Some(number(flag, &value)?),
                    "--step-ms" => step_ms = Some(number(flag, &value)?),
                    "--pooler" => pooler = Some(number(flag, &value)?),
                    "--report" => report = Some(PathBuf::from(value)),
                    "--dir" => dir = Some(PathBuf::from(value)),
                    _ => return Err(format!("unknown argument `{arg}`")),
                }
            }
        }
    }

    let settings = Settings {
        workflows: workflows.unwrap_or(if full { 1000 } else { 80 }),
        steps: steps.unwrap_or(if full { 10 } else { 5 }),
        workers: workers.unwrap_or(if full { 4 } else { 3 }),
        kills: kills.unwrap_or(if full { 50 } else { 4 }),
        pg_restarts: pg_restarts.unwrap_or(if full { 2 } else { 1 }),
        seed: seed.unwrap_or(1),
        timeout_secs: timeout.unwrap_or(if full { 900 } else { 120 }),
        stall_secs: stall.unwrap_or(30),
        worker_concurrency: concurrency.unwrap_or(8),
        step_ms: step_ms.unwrap_or(5),
        pooler: pooler.unwrap_or(0),
        report,
        dir,
        keep,
        full,
    };
    if settings.workflows == 0 || settings.steps == 0 {
        return Err("--workflows and --steps must be at least 1".to_owned());
    }
    if settings.workers == 0 || settings.worker_concurrency == 0 {
        return Err("--workers and --concurrency must be at least 1".to_owned());
    }
    if settings.workers > 64 {
        return Err("--workers is at most 64".to_owned());
    }
    Ok(Command::Run(settings))
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{flag} takes a non-negative integer, not `{value}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn run(s: &str) -> Settings {
        match parse(&args(s)) {
            Ok(Command::Run(settings)) => settings,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_small_configuration() {
        let s = run("");
        assert_eq!(
            (s.workflows, s.steps, s.workers, s.kills, s.pg_restarts),
            (80, 5, 3, 4, 1)
        );
        assert_eq!(s.timeout_secs, 120);
        assert_eq!(s.pooler, 0);
        assert_eq!(run("--pooler 5").pooler, 5);
    }

    #[test]
    fn full_is_the_full_configuration_and_flags_override_it() {
        let s = run("--full");
        assert_eq!(
            (s.workflows, s.steps, s.workers, s.kills, s.pg_restarts),
            (1000, 10, 4, 50, 2)
        );
        let s = run("--pg-restarts 0 --full --seed=7");
        assert_eq!((s.pg_restarts, s.kills, s.seed), (0, 50, 7));
    }

    #[test]
    fn bad_input_is_explained() {
        assert!(matches!(parse(&args("worker")), Ok(Command::Worker)));
        assert!(matches!(parse(&args("--help")), Ok(Command::Help)));
        let e = parse(&args("--kills many")).unwrap_err();
        assert!(e.contains("--kills") && e.contains("many"), "{e}");
        let e = parse(&args("--kills")).unwrap_err();
        assert!(e.contains("needs a value"), "{e}");
        let e = parse(&args("--bogus 1")).unwrap_err();
        assert!(e.contains("--bogus"), "{e}");
        assert!(parse(&args("--steps 0")).is_err());
    }
}
