//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade: the one place that names
//! every metric this library records, its kind, its labels and what it counts.
//!
//! [`METRICS`] lists them all (the Observability chapter's table is checked against it). The
//! application installs a recorder (a Prometheus exporter, an OpenTelemetry bridge, a
//! `DebuggingRecorder` in tests); without one every recording is a call into the facade's
//! no-op recorder.
//!
//! Every name starts with `dbos_`. Labels are bounded: workflow, step and queue names (from
//! the code), statuses and a few fixed words, never a workflow id. Durations are in seconds.

use std::time::Duration;

/// What kind of metric it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// A count that only grows.
    Counter,
    /// A value that is set (goes up and down).
    Gauge,
    /// A distribution of recorded values.
    Histogram,
}

impl MetricKind {
    /// `counter`, `gauge` or `histogram`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One metric this library records.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Metric {
    /// Its name (`dbos_` prefixed).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The names of its labels.
    pub labels: &'static [&'static str],
    /// What it measures.
    pub help: &'static str,
}

const WORKFLOWS_STARTED: &str = "dbos_workflows_started_total";
const WORKFLOWS_FINISHED: &str = "dbos_workflows_finished_total";
const WORKFLOW_INTERRUPTED: &str = "dbos_workflow_executions_interrupted_total";
const WORKFLOW_PANICS: &str = "dbos_workflow_panics_total";
const WORKFLOW_DURATION: &str = "dbos_workflow_duration_seconds";
const STEP_ATTEMPTS: &str = "dbos_step_attempts_total";
const STEP_RETRIES: &str = "dbos_step_retries_total";
const STEP_DURATION: &str = "dbos_step_duration_seconds";
const QUEUE_DEPTH: &str = "dbos_queue_depth";
const QUEUE_WAIT: &str = "dbos_queue_wait_seconds";
const DEQUEUE_BATCH: &str = "dbos_dequeue_batch_size";
const RECOVERED: &str = "dbos_recovered_workflows_total";
const SYSDB_RETRIES: &str = "dbos_system_database_retries_total";
const SYSDB_OUTAGES: &str = "dbos_system_database_outages_total";
const PARKED: &str = "dbos_parked_workflows";

/// Every metric this library records.
pub const METRICS: &[Metric] = &[
    Metric {
        name: WORKFLOWS_STARTED,
        kind: MetricKind::Counter,
        labels: &["workflow"],
        help: "Workflows whose first execution began in this process (started here or dequeued here for the first time).",
    },
    Metric {
        name: WORKFLOWS_FINISHED,
        kind: MetricKind::Counter,
        labels: &["workflow", "status"],
        help: "Workflow outcomes recorded by this process: status SUCCESS or ERROR, or MAX_RECOVERY_ATTEMPTS_EXCEEDED when it dead-lettered one.",
    },
    Metric {
        name: WORKFLOW_INTERRUPTED,
        kind: MetricKind::Counter,
        labels: &["workflow"],
        help: "Executions that ended here without recording an outcome: cancelled, past their deadline, taken over by another executor, parked in a long wait, shutting down, or unable to reach the database. The database holds the workflow's state.",
    },
    Metric {
        name: WORKFLOW_PANICS,
        kind: MetricKind::Counter,
        labels: &["workflow"],
        help: "Executions whose body panicked (the workflow stays PENDING and is recovered).",
    },
    Metric {
        name: WORKFLOW_DURATION,
        kind: MetricKind::Histogram,
        labels: &["workflow", "status"],
        help: "Seconds from the start of the execution that recorded the outcome to that record (a recovered workflow's last execution only; queue wait not included).",
    },
    Metric {
        name: STEP_ATTEMPTS,
        kind: MetricKind::Counter,
        labels: &["step"],
        help: "Step attempts run (a step replayed from its record runs none).",
    },
    Metric {
        name: STEP_RETRIES,
        kind: MetricKind::Counter,
        labels: &["kind", "step"],
        help: "Attempts that failed and are followed by another under the function's retry policy; kind is step or transaction (a transaction's serialization failures are not counted).",
    },
    Metric {
        name: STEP_DURATION,
        kind: MetricKind::Histogram,
        labels: &["step", "outcome"],
        help: "Seconds from a step's first attempt to its record, retries included; outcome is ok or error.",
    },
    Metric {
        name: QUEUE_DEPTH,
        kind: MetricKind::Gauge,
        labels: &["queue", "status"],
        help: "Workflows of this application on the queue, by status (ENQUEUED: waiting; PENDING: claimed and running), as last counted by this executor's worker for the queue.",
    },
    Metric {
        name: QUEUE_WAIT,
        kind: MetricKind::Histogram,
        labels: &["queue"],
        help: "Seconds a workflow claimed here waited on its queue, from when it was (last) enqueued to its claim.",
    },
    Metric {
        name: DEQUEUE_BATCH,
        kind: MetricKind::Histogram,
        labels: &["queue"],
        help: "Workflows claimed by one dequeue statement of this executor (0 when nothing was runnable).",
    },
    Metric {
        name: RECOVERED,
        kind: MetricKind::Counter,
        labels: &["source"],
        help: "PENDING workflows put back on their queues by recovery; source is own (this executor id's earlier process) or peer (a dead executor's).",
    },
    Metric {
        name: SYSDB_RETRIES,
        kind: MetricKind::Counter,
        labels: &[],
        help: "System-database statements retried after a connection-class failure (an outage, a restart, a failover).",
    },
    Metric {
        name: SYSDB_OUTAGES,
        kind: MetricKind::Counter,
        labels: &[],
        help: "Outages of the system database seen by this process (a statement failed with a connection-class error after the previous one succeeded).",
    },
    Metric {
        name: PARKED,
        kind: MetricKind::Gauge,
        labels: &[],
        help: "Workflows parked in this process (a long durable sleep or wait, holding no task).",
    },
];

/// Describes every metric to the recorder installed now (its help text and unit); called at
/// launch, so a recorder installed before [`Dbos::launch`](crate::Dbos::launch) has them.
pub(crate) fn describe() {
    for m in METRICS {
        let unit = m
            .name
            .ends_with("_seconds")
            .then_some(metrics::Unit::Seconds);
        match (m.kind, unit) {
            (MetricKind::Counter, _) => metrics::describe_counter!(m.name, m.help),
            (MetricKind::Gauge, _) => metrics::describe_gauge!(m.name, m.help),
            (MetricKind::Histogram, Some(unit)) => {
                metrics::describe_histogram!(m.name, unit, m.help)
            }
            (MetricKind::Histogram, None) => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// A workflow's first execution begins here.
pub(crate) fn workflow_started(workflow: &'static str) {
    metrics::counter!(WORKFLOWS_STARTED, "workflow" => workflow).increment(1);
}

/// How an execution ended, as metrics see it.
pub(crate) enum Ended {
    /// Its outcome (`SUCCESS` / `ERROR`) was recorded, `ran` after it started here.
    Recorded(&'static str, Duration),
    /// It stopped without recording.
    Interrupted,
    /// Its body panicked.
    Panicked,
}

/// An execution of `workflow` ended.
pub(crate) fn execution_ended(workflow: &'static str, ended: Ended) {
    match ended {
        Ended::Recorded(status, ran) => {
            workflow_finished(workflow, status);
            metrics::histogram!(WORKFLOW_DURATION, "workflow" => workflow, "status" => status)
                .record(ran.as_secs_f64());
        }
        Ended::Interrupted => {
            metrics::counter!(WORKFLOW_INTERRUPTED, "workflow" => workflow).increment(1)
        }
        Ended::Panicked => metrics::counter!(WORKFLOW_PANICS, "workflow" => workflow).increment(1),
    }
}

/// This process recorded `status` as the outcome of a workflow named `workflow`.
pub(crate) fn workflow_finished(workflow: &str, status: &'static str) {
    metrics::counter!(WORKFLOWS_FINISHED, "workflow" => workflow.to_owned(), "status" => status)
        .increment(1);
}

/// An attempt of step `step` begins.
pub(crate) fn step_attempt(step: &str) {
    metrics::counter!(STEP_ATTEMPTS, "step" => step.to_owned()).increment(1);
}

/// An attempt of `kind` (`step` / `transaction`) `step` failed and another follows.
pub(crate) fn step_retry(kind: &'static str, step: &str) {
    metrics::counter!(STEP_RETRIES, "kind" => kind, "step" => step.to_owned()).increment(1);
}

/// Step `step` was recorded `took` after its first attempt began.
pub(crate) fn step_recorded(step: &str, ok: bool, took: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::histogram!(STEP_DURATION, "step" => step.to_owned(), "outcome" => outcome)
        .record(took.as_secs_f64());
}

/// The last count of `queue`'s workflows waiting (`ENQUEUED`) and claimed (`PENDING`).
pub(crate) fn queue_depth(queue: &str, enqueued: i64, pending: i64) {
    metrics::gauge!(QUEUE_DEPTH, "queue" => queue.to_owned(), "status" => "ENQUEUED")
        .set(enqueued as f64);
    metrics::gauge!(QUEUE_DEPTH, "queue" => queue.to_owned(), "status" => "PENDING")
        .set(pending as f64);
}

/// One dequeue statement on `queue` claimed `claimed` workflows, which had waited
/// `waited_ms` each (when known).
pub(crate) fn dequeued(queue: &str, claimed: usize, waited_ms: impl Iterator<Item = i64>) {
    metrics::histogram!(DEQUEUE_BATCH, "queue" => queue.to_owned()).record(claimed as f64);
    if claimed > 0 {
        let wait = metrics::histogram!(QUEUE_WAIT, "queue" => queue.to_owned());
        for ms in waited_ms {
            wait.record(ms.max(0) as f64 / 1000.0);
        }
    }
}

/// Recovery put `count` workflows back on their queues; `own`: this executor id's.
pub(crate) fn recovered(own: bool, count: usize) {
    let source = if own { "own" } else { "peer" };
    metrics::counter!(RECOVERED, "source" => source).increment(count as u64);
}

/// A system-database statement failed with a connection-class error and is retried;
/// `outage_began`: the previous statement had succeeded.
pub(crate) fn sysdb_retry(outage_began: bool) {
    metrics::counter!(SYSDB_RETRIES).increment(1);
    if outage_began {
        metrics::counter!(SYSDB_OUTAGES).increment(1);
    }
}

/// `delta` workflows were parked (positive) or left the parking lot (negative).
pub(crate) fn parked(delta: i64) {
    metrics::gauge!(PARKED).increment(delta as f64);
}
