//! The report: printed for people, written as JSON with `--report`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::check::CheckResult;
use crate::cli::Settings;
use crate::schedule::Scheduled;

/// Median and maximum of a set of durations, in seconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    /// How many were measured.
    pub(crate) count: usize,
    /// The median.
    pub(crate) median: Option<f64>,
    /// The maximum.
    pub(crate) max: Option<f64>,
}

impl Summary {
    /// The summary of `values`.
    pub(crate) fn of(mut values: Vec<f64>) -> Summary {
        values.sort_by(f64::total_cmp);
        Summary {
            count: values.len(),
            median: values.get(values.len() / 2).copied(),
            max: values.last().copied(),
        }
    }

    fn show(&self) -> String {
        match (self.median, self.max) {
            (Some(m), Some(x)) => format!("median {m:.2} s, max {x:.2} s (n = {})", self.count),
            _ => "not measured (n = 0)".to_owned(),
        }
    }
}

/// One kill.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KillReport {
    /// The slot's executor id.
    pub(crate) executor: String,
    /// The killed process.
    pub(crate) pid: u32,
    /// When, seconds after the workload was enqueued.
    pub(crate) at_secs: f64,
    /// Fraction of steps checkpointed then.
    pub(crate) progress: f64,
    /// How long the slot stayed down before its relaunch.
    pub(crate) down_ms: u64,
    /// Workflows PENDING on it when it died.
    pub(crate) in_flight: Option<usize>,
    /// Steps re-run because of this kill.
    pub(crate) reruns: u64,
    /// Kill to `ready` of the relaunched process.
    pub(crate) relaunch_secs: Option<f64>,
    /// Kill to every interrupted workflow having recorded its interrupted step (or finished).
    pub(crate) recovery_secs: Option<f64>,
}

/// One Postgres restart.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PgRestartReport {
    /// When, seconds after the workload was enqueued.
    pub(crate) at_secs: f64,
    /// Fraction of steps checkpointed then.
    pub(crate) progress: f64,
    /// How long `pg_ctl restart -m immediate` took.
    pub(crate) took_secs: Option<f64>,
    /// Why it failed, if it did.
    pub(crate) error: Option<String>,
}

/// Workflows of one status on one executor, when the run timed out.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StuckGroup {
    /// `status`.
    pub(crate) status: String,
    /// `executor_id`.
    pub(crate) executor: String,
    /// How many.
    pub(crate) count: u64,
    /// The executor's process at the timeout.
    pub(crate) process: Option<String>,
}

/// A worker slot at the timeout.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SlotReport {
    /// Executor id.
    pub(crate) executor: String,
    /// The live process, if any.
    pub(crate) pid: Option<u32>,
    /// When the current process was launched, seconds after the workload was enqueued.
    pub(crate) launched_at_secs: f64,
    /// Processes launched in this slot.
    pub(crate) launches: u32,
}

/// What was left unfinished at the timeout.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StuckReport {
    /// Workflows not `SUCCESS`.
    pub(crate) count: u64,
    /// By status and executor.
    pub(crate) groups: Vec<StuckGroup>,
    /// Every slot.
    pub(crate) slots: Vec<SlotReport>,
    /// Up to 20 of them.
    pub(crate) sample: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// `pass`, `fail` (a check failed) or `timeout` (not every workflow finished in time).
    pub(crate) outcome: String,
    /// Why the run stopped waiting: every workflow ended, the timeout, or a stall.
    pub(crate) ended_by: String,
    /// The configuration.
    pub(crate) settings: Settings,
    /// Cores, memory, OS.
    pub(crate) machine: String,
    /// The run folder.
    pub(crate) run_dir: String,
    /// Enqueue to the last workflow's success (or the timeout).
    pub(crate) duration_secs: f64,
    /// Workflows `SUCCESS` at the end.
    pub(crate) workflows_succeeded: u64,
    /// `operation_outputs` rows at the end.
    pub(crate) steps_checkpointed: u64,
    /// Workflows per second over the duration.
    pub(crate) workflows_per_sec: f64,
    /// Checkpointed steps per second over the duration.
    pub(crate) steps_per_sec: f64,
    /// Worker processes launched, first launches included.
    pub(crate) worker_launches: u32,
    /// Every kill.
    pub(crate) kills: Vec<KillReport>,
    /// Every Postgres restart.
    pub(crate) pg_restarts: Vec<PgRestartReport>,
    /// Recovery time after the kills that interrupted work.
    pub(crate) recovery_secs: Summary,
    /// Kill to relaunched worker ready.
    pub(crate) relaunch_secs: Summary,
    /// Step executions beyond the first.
    pub(crate) steps_rerun: u64,
    /// Kills × worker concurrency.
    pub(crate) rerun_bound: u64,
    /// Effect lines read.
    pub(crate) effect_lines: u64,
    /// Scheduled faults that never fired (the run ended first).
    pub(crate) faults_not_fired: Vec<Scheduled>,
    /// Every check.
    pub(crate) checks: Vec<CheckResult>,
    /// At a timeout: what did not finish.
    pub(crate) stuck: Option<StuckReport>,
}

impl Report {
    /// Whether the run passed.
    pub(crate) fn passed(&self) -> bool {
        self.outcome == "pass"
    }

    /// The report for people.
    pub(crate) fn human(&self) -> String {
        let s = &self.settings;
        let mut o = String::new();
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "dbos-chaos report{}",
            if s.full { " (full configuration)" } else { "" }
        );
        let _ = writeln!(
            o,
            "  workload        {} workflows x {} steps ({} ms each) on {} workers, worker concurrency {}{}",
            s.workflows,
            s.steps,
            s.step_ms,
            s.workers,
            s.worker_concurrency,
            if s.pooler > 0 {
                format!(
                    ", through PgBouncer (transaction mode, {} server connections, leases)",
                    s.pooler
                )
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            o,
            "  faults          {} SIGKILLs, {} Postgres restarts (seed {}){}",
            self.kills.len(),
            self.pg_restarts.len(),
            s.seed,
            if self.faults_not_fired.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} scheduled faults never fired",
                    self.faults_not_fired.len()
                )
            }
        );
        let _ = writeln!(o, "  machine         {}", self.machine);
        let _ = writeln!(
            o,
            "  duration        {:.2} s (enqueue to last success{})",
            self.duration_secs,
            if self.outcome == "timeout" {
                "; DID NOT FINISH"
            } else {
                ""
            }
        );
        let _ = writeln!(
            o,
            "  throughput      {:.1} workflows/s, {:.1} steps/s",
            self.workflows_per_sec, self.steps_per_sec
        );
        let _ = writeln!(
            o,
            "  steps re-run    {} (bound: kills x worker concurrency = {})",
            self.steps_rerun, self.rerun_bound
        );
        let _ = writeln!(
            o,
            "  recovery        {} (kill to every interrupted workflow past its step)",
            self.recovery_secs.show()
        );
        let _ = writeln!(
            o,
            "  relaunch        {} (kill to the new process serving; includes the scheduled down time)",
            self.relaunch_secs.show()
        );
        for p in &self.pg_restarts {
            let _ = writeln!(
                o,
                "  pg restart      at {:.2} s ({:.0} % done), took {}{}",
                p.at_secs,
                p.progress * 100.0,
                p.took_secs.map_or("?".to_owned(), |t| format!("{t:.2} s")),
                p.error
                    .as_deref()
                    .map(|e| format!(", FAILED: {e}"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "checks");
        for c in &self.checks {
            let _ = writeln!(
                o,
                "  [{}] {:<14} {}",
                if c.passed { " ok " } else { "FAIL" },
                c.name,
                c.summary
            );
            for d in &c.details {
                let _ = writeln!(o, "         - {d}");
            }
            if c.more > 0 {
                let _ = writeln!(o, "         ... and {} more", c.more);
            }
        }
        if let Some(stuck) = &self.stuck {
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "did not finish: {} of {} workflows are not SUCCESS after {:.0} s ({})",
                stuck.count, s.workflows, self.duration_secs, self.ended_by
            );
            for g in &stuck.groups {
                let _ = writeln!(
                    o,
                    "  {:>5} {} on {}{}",
                    g.count,
                    g.status,
                    g.executor,
                    g.process
                        .as_deref()
                        .map(|p| format!(" ({p})"))
                        .unwrap_or_default()
                );
            }
            let _ = writeln!(o, "  sample:");
            for line in &stuck.sample {
                let _ = writeln!(o, "    {line}");
            }
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "OUTCOME: {}",
            match self.outcome.as_str() {
                "pass" => "PASS".to_owned(),
                "timeout" => format!(
                    "FAIL: {} of {} workflows did not finish: {}",
                    self.stuck.as_ref().map_or(0, |st| st.count),
                    s.workflows,
                    self.ended_by
                ),
                _ => format!(
                    "FAIL: {}",
                    self.checks
                        .iter()
                        .filter(|c| !c.passed)
                        .map(|c| c.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_take_the_median_and_the_max() {
        let s = Summary::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.count, s.median, s.max), (3, Some(2.0), Some(3.0)));
        assert_eq!(Summary::of(Vec::new()).median, None);
    }
}
