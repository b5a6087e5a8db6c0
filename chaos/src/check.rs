//! The checks: pure functions from what the run left (workflow rows, checkpoint rows, effect
//! lines, the kills it made) to verdicts, each with the precise evidence when it fails.
//!
//! | check | the rule | why |
//! | --- | --- | --- |
//! | outcomes | every workflow `SUCCESS` with `expected_output(id, S)` | a workflow runs to completion once, and replay returns recorded values |
//! | checkpoints | function ids exactly `1..=S`, each once, all `chaos_step` | steps are recorded exactly once, numbered from 1 |
//! | effects | every checkpointed step has an effect line; no line for an unknown step, pid or a step past the next one | a recorded step really ran, and steps run in order |
//! | re-runs | an effect seen twice was first run by a pid SIGKILLed before the re-run started; one re-run per workflow per kill; a re-run workflow was in flight on the victim | a completed step never runs again; only a step in flight at a crash does |
//! | re-run bound | re-runs ≤ kills × worker concurrency, and per kill ≤ the victim's workflows in flight | what a crash can cost |

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::worker::{expected_output, workflow_id_of};

/// At most this many pieces of evidence are listed per check.
const MAX_DETAILS: usize = 25;

/// What the run was meant to do.
#[derive(Debug, Clone)]
pub(crate) struct Expect {
    /// Workflows enqueued (ids `workflow_id_of(1..=workflows)`).
    pub(crate) workflows: u64,
    /// Steps per workflow.
    pub(crate) steps: u32,
    /// Kills made.
    pub(crate) kills: u32,
    /// The queue's worker concurrency.
    pub(crate) worker_concurrency: u32,
    /// The recorded name of the step.
    pub(crate) step_name: String,
    /// Start of the run, epoch microseconds (evidence prints times relative to it).
    pub(crate) t0_micros: u128,
}

/// A `workflow_status` row (with its checkpoint count).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WorkflowRow {
    /// `workflow_uuid`.
    pub(crate) id: String,
    /// `status`.
    pub(crate) status: String,
    /// `output` (JSON text).
    pub(crate) output: Option<String>,
    /// `error` (JSON text).
    pub(crate) error: Option<String>,
    /// `executor_id`.
    pub(crate) executor_id: Option<String>,
    /// `recovery_attempts`.
    pub(crate) recovery_attempts: Option<i64>,
    /// The highest recorded `function_id`, if any.
    pub(crate) last_step: Option<i32>,
    /// `queue_name`.
    pub(crate) queue_name: Option<String>,
    /// `updated_at`, epoch ms.
    pub(crate) updated_at: Option<i64>,
}

/// An `operation_outputs` row.
#[derive(Debug, Clone)]
pub(crate) struct OpRow {
    /// `workflow_uuid`.
    pub(crate) workflow_id: String,
    /// `function_id`.
    pub(crate) function_id: i32,
    /// `function_name`.
    pub(crate) function_name: String,
}

/// One effect line: a step execution seen outside Postgres.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Effect {
    /// The workflow id.
    pub(crate) workflow_id: String,
    /// The step number (1-based).
    pub(crate) step: u32,
    /// The process that ran it.
    pub(crate) pid: u32,
    /// When it started, epoch microseconds.
    pub(crate) micros: u128,
}

/// One SIGKILL the orchestrator made.
#[derive(Debug, Clone)]
pub(crate) struct KillInfo {
    /// The killed process.
    pub(crate) pid: u32,
    /// Its executor id.
    pub(crate) executor: String,
    /// When the signal was sent, epoch microseconds.
    pub(crate) at_micros: u128,
    /// The workflows `PENDING` under its executor id right after it died, if read.
    pub(crate) in_flight: Option<Vec<String>>,
}

/// One check's verdict.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckResult {
    /// Short name.
    pub(crate) name: &'static str,
    /// Whether it held.
    pub(crate) passed: bool,
    /// One line: what was checked and what was seen.
    pub(crate) summary: String,
    /// The evidence, when it failed (at most [`MAX_DETAILS`] lines).
    pub(crate) details: Vec<String>,
    /// Evidence lines left out.
    pub(crate) more: usize,
}

impl CheckResult {
    fn new(name: &'static str, summary: String, problems: Vec<String>) -> CheckResult {
        let more = problems.len().saturating_sub(MAX_DETAILS);
        CheckResult {
            name,
            passed: problems.is_empty(),
            summary,
            details: problems.into_iter().take(MAX_DETAILS).collect(),
            more,
        }
    }
}

/// Every verdict, and the re-run figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Verdicts {
    /// The checks, in order.
    pub(crate) checks: Vec<CheckResult>,
    /// Step executions beyond the first, over all steps.
    pub(crate) steps_rerun: u64,
    /// Effect lines read.
    pub(crate) effect_lines: u64,
    /// Re-runs per killed pid, in kill order.
    pub(crate) reruns_per_kill: Vec<u64>,
}

impl Verdicts {
    /// Whether every check held.
    pub(crate) fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// Parses one effects file. A last line without its newline is the trace of a process killed
/// in the middle of its write: it is dropped when `killed` (and reported otherwise).
pub(crate) fn parse_effects(name: &str, text: &str, killed: bool) -> (Vec<Effect>, Vec<String>) {
    let mut effects = Vec::new();
    let mut problems = Vec::new();
    let complete = text.ends_with('\n') || text.is_empty();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        if last && !complete {
            if !killed {
                problems.push(format!(
                    "{name} line {}: `{line}` is cut short, but its process was never killed",
                    i + 1
                ));
            }
            continue;
        }
        match parse_line(line) {
            Some(e) => effects.push(e),
            None => problems.push(format!("{name} line {}: cannot read `{line}`", i + 1)),
        }
    }
    (effects, problems)
}

fn parse_line(line: &str) -> Option<Effect> {
    let mut parts = line.split(' ');
    let effect = Effect {
        workflow_id: parts.next()?.to_owned(),
        step: parts.next()?.parse().ok()?,
        pid: parts.next()?.parse().ok()?,
        micros: parts.next()?.parse().ok()?,
    };
    parts.next().is_none().then_some(effect)
}

fn secs(micros: u128, t0: u128) -> String {
    format!("{:.3} s", micros.saturating_sub(t0) as f64 / 1e6)
}

/// Runs every check.
pub(crate) fn check(
    expect: &Expect,
    workflows: &[WorkflowRow],
    ops: &[OpRow],
    effects: &[Effect],
    effect_problems: &[String],
    worker_pids: &HashSet<u32>,
    kills: &[KillInfo],
) -> Verdicts {
    let s = expect.steps;
    let expected_ids: BTreeMap<String, u64> = (1..=expect.workflows)
        .map(|i| (workflow_id_of(i), i))
        .collect();
    let rows: HashMap<&str, &WorkflowRow> = workflows.iter().map(|w| (w.id.as_str(), w)).collect();

    // 1. Outcomes.
    let mut problems = Vec::new();
    let mut succeeded = 0u64;
    for (id, &n) in &expected_ids {
        let Some(w) = rows.get(id.as_str()) else {
            problems.push(format!("{id}: no workflow_status row"));
            continue;
        };
        if w.status != "SUCCESS" {
            problems.push(format!(
                "{id}: status {} on executor {} (last recorded step {}, recovery attempts {}){}",
                w.status,
                w.executor_id.as_deref().unwrap_or("-"),
                w.last_step.map_or("none".to_owned(), |s| s.to_string()),
                w.recovery_attempts.unwrap_or(0),
                w.error
                    .as_deref()
                    .map(|e| format!(", error {e}"))
                    .unwrap_or_default()
            ));
            continue;
        }
        let want = expected_output(n, s);
        let got = w
            .output
            .as_deref()
            .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok())
            .and_then(|v| v.as_u64());
        if got != Some(want) {
            problems.push(format!(
                "{id}: output {} but chaos_job({n}, {s}) = {want}",
                w.output.as_deref().unwrap_or("NULL")
            ));
            continue;
        }
        succeeded += 1;
    }
    for w in workflows {
        if !expected_ids.contains_key(&w.id) {
            problems.push(format!(
                "{}: a workflow nobody enqueued (status {})",
                w.id, w.status
            ));
        }
    }
    let mut checks = vec![CheckResult::new(
        "outcomes",
        format!(
            "{succeeded} of {} workflows SUCCESS with the right output",
            expect.workflows
        ),
        problems,
    )];

    // 2. Checkpoints.
    let mut by_workflow: HashMap<&str, Vec<&OpRow>> = HashMap::new();
    for op in ops {
        by_workflow
            .entry(op.workflow_id.as_str())
            .or_default()
            .push(op);
    }
    let mut problems = Vec::new();
    for (id, ops) in &by_workflow {
        if !expected_ids.contains_key(*id) {
            problems.push(format!(
                "{id}: {} checkpoints of a workflow nobody enqueued",
                ops.len()
            ));
        }
    }
    for id in expected_ids.keys() {
        let mut ids: Vec<i32> = by_workflow
            .get(id.as_str())
            .map(|ops| ops.iter().map(|o| o.function_id).collect())
            .unwrap_or_default();
        ids.sort_unstable();
        let finished = rows.get(id.as_str()).is_some_and(|w| w.status == "SUCCESS");
        let want: Vec<i32> = if finished {
            (1..=s as i32).collect()
        } else {
            (1..=ids.len() as i32).collect()
        };
        if ids != want {
            problems.push(format!(
                "{id}: function ids {ids:?}, expected {}",
                if finished {
                    format!("exactly 1..={s}")
                } else {
                    "1..=n without gaps or repeats".to_owned()
                }
            ));
        }
        if let Some(ops) = by_workflow.get(id.as_str()) {
            for op in ops.iter().filter(|o| o.function_name != expect.step_name) {
                problems.push(format!(
                    "{id}: function id {} recorded as `{}`, not `{}`",
                    op.function_id, op.function_name, expect.step_name
                ));
            }
        }
    }
    checks.push(CheckResult::new(
        "checkpoints",
        format!(
            "{} checkpoints for {} workflows x {s} steps, function ids 1..={s} once each",
            ops.len(),
            expect.workflows
        ),
        problems,
    ));

    // 3. Effects.
    let mut problems: Vec<String> = effect_problems.to_vec();
    let mut runs: BTreeMap<(&str, u32), Vec<&Effect>> = BTreeMap::new();
    for e in effects {
        runs.entry((e.workflow_id.as_str(), e.step))
            .or_default()
            .push(e);
        if !worker_pids.contains(&e.pid) {
            problems.push(format!(
                "{} step {}: run by pid {}, which is not a worker of this run",
                e.workflow_id, e.step, e.pid
            ));
        }
        let recorded = by_workflow
            .get(e.workflow_id.as_str())
            .map_or(0, |ops| ops.len() as u32);
        if !expected_ids.contains_key(&e.workflow_id) || e.step == 0 || e.step > s {
            problems.push(format!(
                "{} step {}: an effect of no step of the workload (pid {})",
                e.workflow_id, e.step, e.pid
            ));
        } else if e.step > recorded + 1 {
            problems.push(format!(
                "{} step {}: ran (pid {} at {}) though only {recorded} steps are recorded: steps ran out of order",
                e.workflow_id,
                e.step,
                e.pid,
                secs(e.micros, expect.t0_micros)
            ));
        }
    }
    let mut covered = 0u64;
    for op in ops {
        if runs.contains_key(&(op.workflow_id.as_str(), op.function_id as u32)) {
            covered += 1;
        } else {
            problems.push(format!(
                "{} step {}: checkpointed, but no process recorded running it",
                op.workflow_id, op.function_id
            ));
        }
    }
    checks.push(CheckResult::new(
        "effects",
        format!(
            "{covered} of {} checkpointed steps have their side effect ({} effect lines)",
            ops.len(),
            effects.len()
        ),
        problems,
    ));

    // 4. Re-runs only after a SIGKILL of the earlier run's process.
    let killed: HashMap<u32, &KillInfo> = kills.iter().map(|k| (k.pid, k)).collect();
    let mut problems = Vec::new();
    let mut steps_rerun = 0u64;
    // (killed pid) -> workflows it lost a step of, with the steps.
    let mut lost: HashMap<u32, BTreeMap<&str, Vec<u32>>> = HashMap::new();
    for ((workflow, step), list) in &mut runs {
        if list.len() < 2 {
            continue;
        }
        list.sort_by_key(|e| e.micros);
        steps_rerun += list.len() as u64 - 1;
        let trail = list
            .iter()
            .map(|e| {
                format!(
                    "pid {}{} at {}",
                    e.pid,
                    if killed.contains_key(&e.pid) {
                        " (killed)"
                    } else {
                        ""
                    },
                    secs(e.micros, expect.t0_micros)
                )
            })
            .collect::<Vec<_>>()
            .join(", then ");
        for pair in list.windows(2) {
            let (first, again) = (pair[0], pair[1]);
            match killed.get(&first.pid) {
                None => problems.push(format!(
                    "{workflow} step {step} ran {} times ({trail}): pid {} was never killed",
                    list.len(),
                    first.pid
                )),
                Some(k) if k.at_micros > again.micros => problems.push(format!(
                    "{workflow} step {step} ran {} times ({trail}): the re-run started before pid {} was killed at {}",
                    list.len(),
                    first.pid,
                    secs(k.at_micros, expect.t0_micros)
                )),
                Some(_) => lost
                    .entry(first.pid)
                    .or_default()
                    .entry(workflow)
                    .or_default()
                    .push(*step),
            }
        }
    }
    let mut reruns_per_kill = Vec::new();
    let mut bound_problems = Vec::new();
    for k in kills {
        let lost_here = lost.get(&k.pid);
        let count: u64 = lost_here.map_or(0, |m| m.values().map(|v| v.len() as u64).sum());
        reruns_per_kill.push(count);
        let Some(lost_here) = lost_here else { continue };
        for (workflow, steps) in lost_here {
            if steps.len() > 1 {
                problems.push(format!(
                    "{workflow}: steps {steps:?} all re-ran after the kill of pid {} ({}): a kill interrupts one step of a workflow",
                    k.pid, k.executor
                ));
            }
            if let Some(in_flight) = &k.in_flight {
                if !in_flight.iter().any(|w| w == workflow) {
                    problems.push(format!(
                        "{workflow} step {steps:?} re-ran after the kill of pid {} ({}), but it was not PENDING on {} when the process died",
                        k.pid, k.executor, k.executor
                    ));
                }
            }
        }
        if let Some(in_flight) = &k.in_flight {
            if count > in_flight.len() as u64 {
                bound_problems.push(format!(
                    "the kill of pid {} ({}) cost {count} re-runs, but only {} workflows were in flight on it",
                    k.pid,
                    k.executor,
                    in_flight.len()
                ));
            }
        }
    }
    checks.push(CheckResult::new(
        "re-runs",
        format!(
            "{steps_rerun} step executions beyond the first; each came after a SIGKILL of the process that ran it before"
        ),
        problems,
    ));

    // 5. The bound.
    let bound = u64::from(expect.kills) * u64::from(expect.worker_concurrency);
    if steps_rerun > bound {
        bound_problems.insert(
            0,
            format!(
                "{steps_rerun} re-runs exceed {} kills x worker concurrency {} = {bound}",
                expect.kills, expect.worker_concurrency
            ),
        );
    }
    checks.push(CheckResult::new(
        "re-run bound",
        format!(
            "{steps_rerun} re-runs <= {} kills x worker concurrency {} = {bound}",
            expect.kills, expect.worker_concurrency
        ),
        bound_problems,
    ));

    Verdicts {
        checks,
        steps_rerun,
        effect_lines: effects.len() as u64,
        reruns_per_kill,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: &str = "chaos_step";

    fn expect(workflows: u64, steps: u32, kills: u32) -> Expect {
        Expect {
            workflows,
            steps,
            kills,
            worker_concurrency: 2,
            step_name: STEP.to_owned(),
            t0_micros: 0,
        }
    }

    /// A clean run: every workflow done, every step checkpointed and run once by pid 100.
    fn clean(workflows: u64, steps: u32) -> (Vec<WorkflowRow>, Vec<OpRow>, Vec<Effect>) {
        let mut rows = Vec::new();
        let mut ops = Vec::new();
        let mut effects = Vec::new();
        let mut t = 1000;
        for n in 1..=workflows {
            let id = workflow_id_of(n);
            rows.push(WorkflowRow {
                id: id.clone(),
                status: "SUCCESS".to_owned(),
                output: Some(expected_output(n, steps).to_string()),
                error: None,
                executor_id: Some("w0".to_owned()),
                recovery_attempts: Some(1),
                last_step: Some(steps as i32),
                queue_name: Some("chaos".to_owned()),
                updated_at: None,
            });
            for s in 1..=steps {
                ops.push(OpRow {
                    workflow_id: id.clone(),
                    function_id: s as i32,
                    function_name: STEP.to_owned(),
                });
                t += 10;
                effects.push(Effect {
                    workflow_id: id.clone(),
                    step: s,
                    pid: 100,
                    micros: t,
                });
            }
        }
        (rows, ops, effects)
    }

    fn pids(p: &[u32]) -> HashSet<u32> {
        p.iter().copied().collect()
    }

    fn failed(v: &Verdicts) -> Vec<(&'static str, Vec<String>)> {
        v.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| (c.name, c.details.clone()))
            .collect()
    }

    #[test]
    fn a_clean_run_passes() {
        let (rows, ops, effects) = clean(3, 4);
        let v = check(
            &expect(3, 4, 0),
            &rows,
            &ops,
            &effects,
            &[],
            &pids(&[100]),
            &[],
        );
        assert!(v.passed(), "{:?}", failed(&v));
        assert_eq!(v.steps_rerun, 0);
    }

    #[test]
    fn a_rerun_after_a_kill_passes_and_is_counted() {
        let (rows, ops, mut effects) = clean(2, 3);
        // pid 99 ran step 2 of workflow 1 at t=5 and was killed at t=8; pid 100 ran it again later.
        effects.push(Effect {
            workflow_id: workflow_id_of(1),
            step: 2,
            pid: 99,
            micros: 5,
        });
        let kills = [KillInfo {
            pid: 99,
            executor: "w0".to_owned(),
            at_micros: 8,
            in_flight: Some(vec![workflow_id_of(1)]),
        }];
        let v = check(
            &expect(2, 3, 1),
            &rows,
            &ops,
            &effects,
            &[],
            &pids(&[99, 100]),
            &kills,
        );
        assert!(v.passed(), "{:?}", failed(&v));
        assert_eq!(v.steps_rerun, 1);
        assert_eq!(v.reruns_per_kill, vec![1]);
    }

    #[test]
    fn a_rerun_on_a_live_process_fails_naming_the_step_and_pids() {
        let (rows, ops, mut effects) = clean(2, 3);
        effects.push(Effect {
            workflow_id: workflow_id_of(2),
            step: 3,
            pid: 100,
            micros: 2,
        });
        let v = check(
            &expect(2, 3, 0),
            &rows,
            &ops,
            &effects,
            &[],
            &pids(&[100]),
            &[],
        );
        let f = failed(&v);
        assert!(
            f.iter()
                .any(|(n, d)| *n == "re-runs"
                    && d.iter().any(|l| l.contains("chaos-000002 step 3")
                        && l.contains("pid 100 was never killed"))),
            "{f:?}"
        );
    }

    #[test]
    fn a_rerun_that_started_before_the_kill_fails() {
        let (rows, ops, mut effects) = clean(1, 2);
        effects.push(Effect {
            workflow_id: workflow_id_of(1),
            step: 1,
            pid: 99,
            micros: 5,
        });
        // Killed only after pid 100 had already re-run the step (at t=1010).
        let kills = [KillInfo {
            pid: 99,
            executor: "w0".to_owned(),
            at_micros: 5000,
            in_flight: None,
        }];
        let v = check(
            &expect(1, 2, 1),
            &rows,
            &ops,
            &effects,
            &[],
            &pids(&[99, 100]),
            &kills,
        );
        assert!(failed(&v)
            .iter()
            .any(|(n, d)| *n == "re-runs" && d[0].contains("before pid 99 was killed")));
    }

    #[test]
    fn two_steps_lost_to_one_kill_and_workflows_not_in_flight_fail() {
        let (rows, ops, mut effects) = clean(2, 3);
        for step in [1, 2] {
            effects.push(Effect {
                workflow_id: workflow_id_of(1),
                step,
                pid: 99,
                micros: 1,
            });
        }
        let kills = [KillInfo {
            pid: 99,
            executor: "w9".to_owned(),
            at_micros: 2,
            in_flight: Some(vec![workflow_id_of(2)]),
        }];
        let v = check(
            &expect(2, 3, 1),
            &rows,
            &ops,
            &effects,
            &[],
            &pids(&[99, 100]),
            &kills,
        );
        let f = failed(&v);
        let reruns = &f.iter().find(|(n, _)| *n == "re-runs").expect("fails").1;
        assert!(
            reruns.iter().any(|l| l.contains("steps [1, 2] all re-ran")),
            "{reruns:?}"
        );
        assert!(
            reruns.iter().any(|l| l.contains("was not PENDING on w9")),
            "{reruns:?}"
        );
        let bound = &f
            .iter()
            .find(|(n, _)| *n == "re-run bound")
            .expect("fails")
            .1;
        assert!(
            bound[0].contains("only 1 workflows were in flight"),
            "{bound:?}"
        );
    }

    #[test]
    fn too_many_reruns_for_the_kills_fail_the_bound() {
        let (rows, ops, mut effects) = clean(3, 2);
        for n in 1..=3 {
            effects.push(Effect {
                workflow_id: workflow_id_of(n),
                step: 1,
                pid: 99,
                micros: 1,
            });
        }
        let kills = [KillInfo {
            pid: 99,
            executor: "w0".to_owned(),
            at_micros: 2,
            in_flight: None,
        }];
        // One kill, worker concurrency 2: three re-runs is one too many.
        let v = check(
            &expect(3, 2, 1),
            &rows,
            &ops,
            &effects,
            &[],
            &pids(&[99, 100]),
            &kills,
        );
        let f = failed(&v);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].1[0].contains("3 re-runs exceed 1 kills x worker concurrency 2 = 2"));
    }

    #[test]
    fn wrong_outputs_stuck_workflows_and_missing_rows_fail_outcomes() {
        let (mut rows, mut ops, effects) = clean(3, 2);
        rows[0].output = Some("7".to_owned());
        rows[1].status = "PENDING".to_owned();
        rows[1].executor_id = Some("chaos-w1".to_owned());
        rows[1].last_step = Some(1);
        ops.retain(|o| !(o.workflow_id == workflow_id_of(2) && o.function_id == 2));
        rows.pop();
        let v = check(
            &expect(3, 2, 0),
            &rows,
            &ops,
            &effects,
            &[],
            &pids(&[100]),
            &[],
        );
        let f = failed(&v);
        let outcomes = &f.iter().find(|(n, _)| *n == "outcomes").expect("fails").1;
        assert!(outcomes
            .iter()
            .any(|l| l.starts_with("chaos-000001: output 7 but")));
        assert!(outcomes.iter().any(|l| l
            .contains("chaos-000002: status PENDING on executor chaos-w1 (last recorded step 1")));
        assert!(outcomes
            .iter()
            .any(|l| l == "chaos-000003: no workflow_status row"));
    }

    #[test]
    fn duplicate_gaps_and_foreign_checkpoints_fail() {
        let (rows, mut ops, effects) = clean(2, 3);
        ops.push(OpRow {
            workflow_id: workflow_id_of(1),
            function_id: 2,
            function_name: STEP.to_owned(),
        });
        ops.retain(|o| !(o.workflow_id == workflow_id_of(2) && o.function_id == 1));
        ops.push(OpRow {
            workflow_id: workflow_id_of(2),
            function_id: 1,
            function_name: "DBOS.sleep".to_owned(),
        });
        let v = check(
            &expect(2, 3, 0),
            &rows,
            &ops,
            &effects,
            &[],
            &pids(&[100]),
            &[],
        );
        let f = failed(&v);
        let d = &f
            .iter()
            .find(|(n, _)| *n == "checkpoints")
            .expect("fails")
            .1;
        assert!(
            d.iter()
                .any(|l| l.contains("chaos-000001: function ids [1, 2, 2, 3]")),
            "{d:?}"
        );
        assert!(
            d.iter().any(|l| l.contains("recorded as `DBOS.sleep`")),
            "{d:?}"
        );
    }

    #[test]
    fn missing_and_stray_effects_fail() {
        let (rows, ops, mut effects) = clean(2, 2);
        effects.remove(0);
        effects.push(Effect {
            workflow_id: workflow_id_of(2),
            step: 9,
            pid: 100,
            micros: 1,
        });
        effects.push(Effect {
            workflow_id: workflow_id_of(2),
            step: 1,
            pid: 555,
            micros: 1,
        });
        let v = check(
            &expect(2, 2, 0),
            &rows,
            &ops,
            &effects,
            &[],
            &pids(&[100]),
            &[],
        );
        let f = failed(&v);
        let d = &f.iter().find(|(n, _)| *n == "effects").expect("fails").1;
        assert!(
            d.iter()
                .any(|l| l.contains("chaos-000001 step 1: checkpointed, but no process")),
            "{d:?}"
        );
        assert!(
            d.iter().any(|l| l.contains("step 9: an effect of no step")),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|l| l.contains("pid 555, which is not a worker")),
            "{d:?}"
        );
    }

    #[test]
    fn effect_files_parse_and_a_torn_last_line_is_dropped_only_for_killed_pids() {
        let text = "chaos-000001 1 42 100\nchaos-000001 2 42 200\nchaos-000001 3 4";
        let (e, p) = parse_effects("f", text, true);
        assert_eq!(e.len(), 2);
        assert!(p.is_empty());
        assert_eq!(
            e[1],
            Effect {
                workflow_id: "chaos-000001".to_owned(),
                step: 2,
                pid: 42,
                micros: 200
            }
        );
        let (_, p) = parse_effects("f", text, false);
        assert!(p[0].contains("never killed"), "{p:?}");
        let (_, p) = parse_effects("f", "garbage\n", true);
        assert!(p[0].contains("cannot read `garbage`"), "{p:?}");
    }
}
