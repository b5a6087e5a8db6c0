//! Time travel: replay a recorded workflow execution with the current binary's code,
//! read-only, and check new code against many recorded histories before a deploy.
//!
//! A replay runs the workflow's body in a [`WorkflowContext`] in replay mode: every durable
//! operation returns its recorded result (no step body runs, no sleep waits, nothing is
//! written), and one that finds no record, or another operation's record, ends the replay.
//! It is the recovery path, made read-only, so it runs under a debugger too: a breakpoint in
//! the workflow body stops with the recorded values.
//!
//! ```no_run
//! # async fn demo() -> dbos_core::Result<()> {
//! let replayer = dbos_core::replay::Replayer::connect("postgres://localhost/app_dbos_sys").await?;
//! let replay = replayer.replay("order-42").await?;
//! println!("{replay}"); // each operation with its recorded output, then how it ended
//! assert!(replay.divergence().is_none());
//! # Ok(()) }
//! # let _ = demo;
//! ```

mod check;
mod mode;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use serde_json::Value;

pub use check::{CheckedWorkflow, ReplayReport};
pub(crate) use mode::ReplayMode;

use crate::error::Result;
use crate::manage::{ListWorkflows, Manager, Payload, WorkflowInfo};
use crate::runtime::{Dbos, RuntimeInner};
use crate::workflow::call::Status;
use crate::workflow::context::WorkflowContext;
use crate::workflow::control::ExecutionControl;
use crate::workflow::execution::{panic_message, portable_error, positional_args};
use crate::workflow::registry::{Args, ErasedError};

/// One durable operation of a replayed execution, as recorded.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TracedOperation {
    /// The step id (function id) it was recorded at; the first operation is 1.
    pub step_id: i32,
    /// The recorded operation name (a step's name, `DBOS.sleep`, a child workflow's name...).
    pub name: String,
    /// The recorded output (`portable_json` text), if any.
    pub output: Option<String>,
    /// The recorded error (`portable_json` text), if any.
    pub error: Option<String>,
    /// The child workflow it started or awaited, if any.
    pub child_workflow_id: Option<String>,
}

/// How a replay ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ReplayEnd {
    /// The body returned after replaying every recorded operation, with this outcome (for a
    /// finished execution, the recorded one).
    Returned {
        /// The output, as JSON, when the body returned `Ok`.
        output: Option<Value>,
        /// The error, in portable form, when it returned `Err`.
        error: Option<crate::codec::PortableError>,
    },
    /// The execution is still in flight and the body reached the end of its history: the
    /// operation `next` at `step_id` is the first one a live execution would run. Nothing
    /// diverged.
    Frontier {
        /// The step id of the first operation not yet recorded.
        step_id: i32,
        /// The operation the code runs there.
        next: String,
    },
    /// The code does not match the recorded history.
    Diverged(Divergence),
}

/// Where the current code and a recorded execution first differ.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Divergence {
    /// The workflow.
    pub workflow_id: String,
    /// The step id where they differ (`None` for the outcome or a workflow that cannot run).
    pub step_id: Option<i32>,
    /// How they differ.
    pub kind: DivergenceKind,
    /// What the history records there (an operation name, a child, an outcome).
    pub recorded: Option<String>,
    /// What the code does there, or why it cannot run.
    pub new: Option<String>,
}

/// How a recorded execution and the current code differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DivergenceKind {
    /// Another operation at a step id.
    DifferentOperation,
    /// The history records an operation the code no longer makes (the body returned first).
    MissingOperation,
    /// The code makes an operation after the end of a finished execution's history.
    ExtraOperation,
    /// The code starts another child workflow (another id) at a step id.
    DifferentChild,
    /// The body returns another outcome than the finished execution recorded.
    DifferentOutcome,
    /// The code cannot run this workflow: no workflow of that name in this binary, an input
    /// it cannot decode, a panic.
    CannotReplay,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = match self.step_id {
            Some(id) => format!("workflow `{}` step {id}", self.workflow_id),
            None => format!("workflow `{}`", self.workflow_id),
        };
        let recorded = self.recorded.as_deref().unwrap_or("nothing");
        let new = self.new.as_deref().unwrap_or("nothing");
        match self.kind {
            DivergenceKind::DifferentOperation => write!(
                f,
                "{at}: the history records `{recorded}`, the code now runs `{new}`"
            ),
            DivergenceKind::MissingOperation => write!(
                f,
                "{at}: the history records `{recorded}`, which the code no longer runs (the workflow returns before)"
            ),
            DivergenceKind::ExtraOperation => write!(
                f,
                "{at}: the code now runs `{new}` after the end of the finished execution's history"
            ),
            DivergenceKind::DifferentChild => write!(
                f,
                "{at}: the history records the start of {recorded}, the code now starts {new}"
            ),
            DivergenceKind::DifferentOutcome => write!(
                f,
                "{at}: the execution recorded the outcome {recorded}, the code now returns {new}"
            ),
            DivergenceKind::CannotReplay => write!(f, "{at} cannot be replayed: {new}"),
        }
    }
}

/// A replayed execution: its recorded operations, in order, and how the replay ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Replay {
    /// The workflow.
    pub workflow_id: String,
    /// Its workflow name.
    pub workflow_name: String,
    /// Its recorded status.
    pub recorded_status: Status,
    /// The operations the body replayed, in order, with their recorded results.
    pub trace: Vec<TracedOperation>,
    /// How the replay ended.
    pub end: ReplayEnd,
}

impl Replay {
    /// Where the code and the history differ, if they do.
    pub fn divergence(&self) -> Option<&Divergence> {
        match &self.end {
            ReplayEnd::Diverged(d) => Some(d),
            _ => None,
        }
    }
}

impl std::fmt::Display for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "workflow `{}` ({}, recorded {}):",
            self.workflow_id,
            self.workflow_name,
            self.recorded_status.as_str()
        )?;
        for op in &self.trace {
            let result = match (&op.output, &op.error, &op.child_workflow_id) {
                (_, Some(e), _) => format!("error {e}"),
                (_, _, Some(child)) => format!("child `{child}`"),
                (Some(o), _, _) => o.clone(),
                _ => "-".to_owned(),
            };
            writeln!(f, "  {:>4}  {}  {}", op.step_id, op.name, result)?;
        }
        match &self.end {
            ReplayEnd::Returned { output, error } => match (output, error) {
                (_, Some(e)) => write!(f, "  returned error {e}"),
                (Some(v), _) => write!(f, "  returned {v}"),
                _ => write!(f, "  returned"),
            },
            ReplayEnd::Frontier { step_id, next } => write!(
                f,
                "  history ends: step {step_id} `{next}` is next (the workflow is in flight)"
            ),
            ReplayEnd::Diverged(d) => write!(f, "  DIVERGED: {d}"),
        }
    }
}

/// Replays recorded workflow executions with this binary's workflows, read-only.
///
/// [`connect`](Replayer::connect) makes one that needs no running application: it
/// connects like a [`Client`](crate::Client) (never creating or migrating anything), and
/// runs no recovery, queue or scheduler. [`Dbos::replayer`] makes one on a launched runtime.
#[derive(Clone)]
pub struct Replayer {
    rt: Arc<RuntimeInner>,
    manager: Manager,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer")
            .field("app_version", &self.rt.app_version)
            .finish_non_exhaustive()
    }
}

impl Replayer {
    /// Connects to the system database at `url` to replay from it.
    ///
    /// # Errors
    /// As [`Client::connect`](crate::Client::connect) (connection, missing database or
    /// schema); [`ErrorKind::ConflictingRegistration`](crate::ErrorKind::ConflictingRegistration)
    /// when two workflows of the binary share a name.
    pub async fn connect(url: impl Into<String>) -> Result<Replayer> {
        let url = url.into();
        let client = crate::Client::builder(url.clone())
            .pool_size(2)
            .connect()
            .await?;
        let config = crate::Config::new("dbos-replay").system_database_url(url);
        let rt = RuntimeInner::detached(
            config,
            client.system_database().clone(),
            client.schema_version(),
        )?;
        let manager = Manager {
            sysdb: rt.sysdb.clone(),
            app_name: None,
            runtime: None,
        };
        Ok(Replayer { rt, manager })
    }

    /// The application version of this binary's code (what the check checks).
    pub fn application_version(&self) -> &str {
        &self.rt.app_version
    }

    /// Replays workflow `workflow_id`: runs this binary's body of its workflow against its
    /// recorded history, writing nothing and running no step. A divergence is a result
    /// ([`Replay::divergence`]), not an error.
    ///
    /// # Errors
    /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow) for an
    /// unknown id; a database error.
    pub async fn replay(&self, workflow_id: &str) -> Result<Replay> {
        let info = self.manager.get_workflow(workflow_id).await?;
        self.replay_info(&info).await
    }

    async fn replay_info(&self, info: &WorkflowInfo) -> Result<Replay> {
        let rt = &self.rt;
        let id = info.workflow_id.as_str();
        let cannot = |reason: String| Replay {
            workflow_id: id.to_owned(),
            workflow_name: info.name.clone(),
            recorded_status: info.status.clone(),
            trace: Vec::new(),
            end: ReplayEnd::Diverged(Divergence {
                workflow_id: id.to_owned(),
                step_id: None,
                kind: DivergenceKind::CannotReplay,
                recorded: None,
                new: Some(reason),
            }),
        };
        let Some(def) = rt.registry.get(&info.name) else {
            return Ok(cannot(format!(
                "this binary has no #[workflow] named `{}`",
                info.name
            )));
        };
        let args = match &info.input {
            None => Vec::new(),
            Some(Payload::Decoded(inputs)) => match positional_args(id, inputs.clone()) {
                Ok(args) => args,
                Err(e) => return Ok(cannot(e.to_string())),
            },
            Some(Payload::Raw { reason, .. }) => return Ok(cannot(reason.clone())),
        };
        let complete = matches!(info.status, Status::Success | Status::Error);
        let history = rt.sysdb.load_checkpoints(id).await?;
        let mode = Arc::new(ReplayMode::new(complete));
        let ctx = Arc::new(
            WorkflowContext::new(
                rt.clone(),
                id.to_owned(),
                ExecutionControl::new("replay"),
                None,
                history,
                false,
            )
            .replaying(mode.clone()),
        );
        let body = ctx.clone().scope((def.invoke)(Args::new(def.name, args)));
        let outcome = AssertUnwindSafe(body).catch_unwind().await;
        let trace = mode.take_trace();
        let diverged = |step_id, kind, recorded, new| {
            ReplayEnd::Diverged(Divergence {
                workflow_id: id.to_owned(),
                step_id,
                kind,
                recorded,
                new,
            })
        };
        let end = match (mode.take_stop(), outcome) {
            (Some(end), _) => end,
            (None, Err(panic)) => diverged(
                None,
                DivergenceKind::CannotReplay,
                None,
                Some(format!(
                    "the workflow panicked: {}",
                    panic_message(panic.as_ref())
                )),
            ),
            (None, Ok(outcome)) => match (ctx.take_fatal(), ctx.unreplayed().first()) {
                (Some(fatal), _) => diverged(
                    None,
                    DivergenceKind::CannotReplay,
                    None,
                    Some(fatal.to_string()),
                ),
                (None, Some((step_id, name))) => diverged(
                    Some(*step_id),
                    DivergenceKind::MissingOperation,
                    Some(name.clone()),
                    None,
                ),
                (None, None) => {
                    let (output, error) = match outcome {
                        Ok(v) => (Some(v), None),
                        Err(ErasedError::Application(p)) => (None, Some(p)),
                        Err(ErasedError::Runtime(e)) => (None, Some(portable_error(&e))),
                    };
                    match complete.then(|| recorded_outcome(info)).flatten() {
                        Some(recorded) if recorded != (output.clone(), error.clone()) => diverged(
                            None,
                            DivergenceKind::DifferentOutcome,
                            Some(describe(&recorded)),
                            Some(describe(&(output, error))),
                        ),
                        _ => ReplayEnd::Returned { output, error },
                    }
                }
            },
        };
        Ok(Replay {
            workflow_id: id.to_owned(),
            workflow_name: info.name.clone(),
            recorded_status: info.status.clone(),
            trace,
            end,
        })
    }
}

type Outcome = (Option<Value>, Option<crate::codec::PortableError>);

/// A finished execution's recorded outcome, when it decodes.
fn recorded_outcome(info: &WorkflowInfo) -> Option<Outcome> {
    match (&info.status, &info.output, &info.error) {
        (Status::Success, Some(Payload::Decoded(v)), _) => Some((Some(v.clone()), None)),
        (Status::Success, None, _) => Some((Some(Value::Null), None)),
        (Status::Error, _, Some(Payload::Decoded(e))) => Some((None, Some(e.clone()))),
        _ => None,
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        (_, Some(e)) => format!("error `{e}`"),
        (Some(v), _) => format!("output `{v}`"),
        _ => "nothing".to_owned(),
    }
}

impl Dbos {
    /// A [`Replayer`] over this runtime's system database and workflows.
    pub fn replayer(&self) -> Replayer {
        Replayer {
            rt: self.inner().clone(),
            manager: Manager::of_runtime(self.inner()),
        }
    }

    /// Replays workflow `workflow_id` read-only with this binary's code: see
    /// [`Replayer::replay`].
    ///
    /// # Errors
    /// As [`Replayer::replay`].
    pub async fn replay(&self, workflow_id: &str) -> Result<Replay> {
        self.replayer().replay(workflow_id).await
    }

    /// Replays every workflow `which` selects: see [`Replayer::check`].
    ///
    /// # Errors
    /// As [`Replayer::check`].
    pub async fn replay_check(&self, which: &ListWorkflows) -> Result<ReplayReport> {
        self.replayer().check(which).await
    }
}
