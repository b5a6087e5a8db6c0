//! Tracing spans: the one place that names the spans this library opens and their fields.
//!
//! Every workflow execution runs in a `workflow` span, each step attempt in a `step` span,
//! each transaction in a `transaction` span, and each built-in operation (a child start,
//! send, recv, events, streams, sleep) in an `operation` span, nested as they run. Field
//! names are DBOS's tracer attributes (`operationUUID`, `operationType`, `operationName`,
//! `applicationVersion`, `executorID`, `queueName`) in OpenTelemetry semantic-convention form;
//! the mapping is in the Observability chapter. Spans are at INFO: with no subscriber
//! interested, a constructor is one cheap check and no field value is formatted or copied
//! (values are borrowed `&str` and integers).
//!
//! Events inside those spans carry a `dbos.event` field naming what happened: `retry`,
//! `replay`, `recovery`, `stop` (cancellation, deadline, takeover, shutdown) and `fenced`.
//!
//! Metrics are named and recorded in [`metrics`].

pub mod metrics;

use tracing::{field::Empty, Span};

pub(crate) mod carrier;
#[cfg(feature = "opentelemetry")]
mod layer;
#[cfg(feature = "opentelemetry")]
pub mod otel;
#[cfg(feature = "opentelemetry")]
mod otlp;

/// The `tracing` target of every span this library opens: they all open in this module
/// (the OpenTelemetry layer tells the library's spans from the application's by it).
#[cfg(feature = "opentelemetry")]
pub(crate) const SPAN_TARGET: &str = module_path!();

/// The name of the field in which [`ctx.begin`](crate::workflow::context::WorkflowContext::begin)
/// records the step id an operation took (it is known only once the operation starts).
pub(crate) const STEP_ID: &str = "dbos.operation.step_id";

/// The span of one execution of workflow `id` (function `name`) in this process.
/// `recovered` says it re-executes from a recorded history (recovered after a crash,
/// resumed, or woken from a park) rather than running for the first time.
pub(crate) fn workflow(
    id: &str,
    name: &str,
    queue: Option<&str>,
    app_version: &str,
    executor_id: &str,
    recovered: bool,
) -> Span {
    tracing::info_span!(
        "workflow",
        "dbos.operation.type" = "workflow",
        "dbos.operation.workflow_id" = id,
        "dbos.operation.name" = name,
        "dbos.queue.name" = queue,
        "dbos.application.version" = app_version,
        "dbos.executor.id" = executor_id,
        "dbos.workflow.recovered" = recovered,
    )
}

/// The span of attempt `attempt` (1-based) of step `name` at step id `step_id`.
pub(crate) fn step(step_id: i32, name: &str, attempt: u32) -> Span {
    tracing::info_span!(
        "step",
        "dbos.operation.type" = "step",
        "dbos.operation.step_id" = step_id,
        "dbos.operation.name" = name,
        // As i64: `tracing-opentelemetry` turns an unsigned field into its text (an
        // allocation per span, and a string attribute where a number belongs).
        "dbos.step.attempt" = i64::from(attempt),
    )
}

/// The span of transaction `name` (all its attempts; its step id is recorded when known).
pub(crate) fn transaction(name: &str) -> Span {
    tracing::info_span!(
        "transaction",
        "dbos.operation.type" = "transaction",
        "dbos.operation.step_id" = Empty,
        "dbos.operation.name" = name,
    )
}

/// A built-in operation: what it is (`Op`), and the name it is recorded under (DBOS's
/// function name, e.g. `DBOS.send`, or the child workflow's name).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    /// Starting a child workflow (or any workflow started from inside one).
    Child,
    /// Enqueuing a workflow (here or by a `Client`): the trace the workflow joins.
    Enqueue,
    /// `send` / `send_batch`.
    Send,
    /// `recv`.
    Recv,
    /// `set_event`.
    SetEvent,
    /// `get_event`.
    GetEvent,
    /// `write_stream` / `close_stream`.
    Stream,
    /// A durable `sleep`.
    Sleep,
}

impl Op {
    /// The value of `dbos.operation.type`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Child => "child",
            Op::Enqueue => "enqueue",
            Op::Send => "send",
            Op::Recv => "recv",
            Op::SetEvent => "set_event",
            Op::GetEvent => "get_event",
            Op::Stream => "stream",
            Op::Sleep => "sleep",
        }
    }
}

/// The span of a built-in operation `op` recorded under `name`.
pub(crate) fn operation(op: Op, name: &str) -> Span {
    tracing::info_span!(
        "operation",
        "dbos.operation.type" = op.as_str(),
        "dbos.operation.step_id" = Empty,
        "dbos.operation.name" = name,
    )
}

/// Records the step id an operation took into the current span (a no-op when the current
/// span has no such field, e.g. a step's attempt spans, which are opened knowing it).
pub(crate) fn record_step_id(step_id: i32) {
    Span::current().record(STEP_ID, step_id);
}

/// The event of an operation whose recorded result is used instead of running it.
pub(crate) fn replayed(step_id: i32, name: &str) {
    tracing::debug!(
        "dbos.event" = "replay",
        "dbos.operation.step_id" = step_id,
        "dbos.operation.name" = name,
        "recorded result used"
    );
}

/// The event, in the `workflow` span a start from outside any workflow opened before writing
/// the row, of a start that found workflow `id` recorded (with `status`): nothing runs in
/// that span, and the workflow keeps the trace its row stores.
pub(crate) fn exists(span: &Span, id: &str, status: &str) {
    span.in_scope(|| {
        tracing::info!(
            "dbos.event" = "exists",
            "dbos.operation.workflow_id" = id,
            status,
            "the workflow id exists; nothing starts here"
        );
    });
}

/// The event of an execution that re-executes its workflow from the recorded history.
pub(crate) fn recovery(id: &str) {
    tracing::info!(
        "dbos.event" = "recovery",
        "dbos.operation.workflow_id" = id,
        "the workflow re-executes from its recorded history"
    );
}
