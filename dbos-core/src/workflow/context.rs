//! The context of a running workflow execution, carried in a tokio task-local.
//!
//! Every durable operation (step, sleep, child start, ...) takes the next function id from the
//! context, replays from the recorded history when there is a checkpoint at that id, and
//! otherwise runs and records under this execution's ownership token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorKind, Result};
use crate::observe;
use crate::runtime::RuntimeInner;
use crate::sysdb::records::{CheckpointRow, RecordError};
use crate::sysdb::workflows::{now_ms, Checkpoint};
use crate::workflow::control::ExecutionControl;
use crate::workflow::identity::Identity;

tokio::task_local! {
    static CURRENT: Option<Arc<WorkflowContext>>;
    static STEP: StepScope;
}

/// What a step body can learn about the step it runs in.
#[derive(Debug, Clone)]
pub(crate) struct StepScope {
    pub(crate) runtime: Arc<RuntimeInner>,
    pub(crate) workflow_id: Arc<str>,
    pub(crate) step_id: i32,
    pub(crate) attempt: u32,
    /// The workflow execution's control: writes made from the step (events, streams,
    /// messages) land only while it owns the workflow.
    pub(crate) control: Arc<ExecutionControl>,
}

/// One operation's record, as an execution writes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operation<'a> {
    pub(crate) function_id: i32,
    pub(crate) name: &'a str,
    pub(crate) output: Option<&'a str>,
    pub(crate) error: Option<&'a str>,
    pub(crate) child_workflow_id: Option<&'a str>,
    pub(crate) started_ms: i64,
    /// The completion time to record (default: now). A sleep records its wake-up time.
    pub(crate) completed_ms: Option<i64>,
}

impl<'a> Operation<'a> {
    /// A value-less or valued operation started at `started_ms`, completing now.
    pub(crate) fn new(function_id: i32, name: &'a str, started_ms: i64) -> Self {
        Operation {
            function_id,
            name,
            output: None,
            error: None,
            child_workflow_id: None,
            started_ms,
            completed_ms: None,
        }
    }
}

/// One execution of one workflow.
pub(crate) struct WorkflowContext {
    pub(crate) runtime: Arc<RuntimeInner>,
    pub(crate) workflow_id: String,
    /// Ownership token and stop signal, shared with the executor.
    pub(crate) control: Arc<ExecutionControl>,
    /// Deadline in epoch milliseconds, inherited by children.
    pub(crate) deadline_ms: Option<i64>,
    /// The workflow's first execution (started here, or claimed for the first time with no
    /// history): nothing it does can have been done before. A recovered, resumed or parked
    /// workflow's is not.
    pub(crate) first_run: bool,
    next_function_id: AtomicI32,
    /// Checkpoints not yet replayed; empty for a fresh workflow (no reads on the hot path).
    history: Mutex<HashMap<i32, Checkpoint>>,
    /// A durability failure (lost ownership, cancellation, database gone). Once set, every
    /// further operation fails with it and the outcome is not recorded.
    fatal: Mutex<Option<Error>>,
    /// Set by a long durable sleep: the wake-up time (epoch ms) at which to re-execute.
    park_at: Mutex<Option<i64>>,
    park_requested: tokio::sync::Notify,
    /// A parked wait's registration (`recv`, `get_event`), handed to the parking lot.
    park_ticket: Mutex<Option<crate::messages::waiters::WaitGuard>>,
    /// Set when this execution replays a recorded one read-only (see `crate::replay`).
    replay: Option<Arc<crate::replay::ReplayMode>>,
    /// Who the workflow runs for: known when started here, else read from its row once,
    /// when first asked (no read on the hot path).
    identity: tokio::sync::OnceCell<Identity>,
}

impl std::fmt::Debug for WorkflowContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowContext")
            .field("workflow_id", &self.workflow_id)
            .finish_non_exhaustive()
    }
}

/// What an operation found at its function id.
pub(crate) enum Slot {
    /// Nothing recorded: run it and record.
    Fresh { function_id: i32 },
    /// Recorded: replay this.
    Recorded {
        function_id: i32,
        checkpoint: Checkpoint,
    },
}

impl WorkflowContext {
    pub(crate) fn new(
        runtime: Arc<RuntimeInner>,
        workflow_id: String,
        control: Arc<ExecutionControl>,
        deadline_ms: Option<i64>,
        history: HashMap<i32, Checkpoint>,
        first_run: bool,
    ) -> Self {
        WorkflowContext {
            runtime,
            workflow_id,
            control,
            deadline_ms,
            first_run,
            next_function_id: AtomicI32::new(0),
            history: Mutex::new(history),
            fatal: Mutex::new(None),
            park_at: Mutex::new(None),
            park_requested: tokio::sync::Notify::new(),
            park_ticket: Mutex::new(None),
            replay: None,
            identity: tokio::sync::OnceCell::new(),
        }
    }

    /// The context of a workflow whose identity is known (started here).
    pub(crate) fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = tokio::sync::OnceCell::new_with(Some(identity));
        self
    }

    /// Who the workflow runs for; read from its row the first time when not known.
    pub(crate) async fn identity(&self) -> Result<Identity> {
        self.identity
            .get_or_try_init(|| async {
                Ok(
                    Box::pin(self.runtime.sysdb.workflow_identity(&self.workflow_id))
                        .await?
                        .unwrap_or_default(),
                )
            })
            .await
            .cloned()
    }

    /// This context replaying a recorded execution read-only: every operation returns its
    /// record, and one without a record ends the replay instead of running.
    pub(crate) fn replaying(mut self, mode: Arc<crate::replay::ReplayMode>) -> Self {
        self.replay = Some(mode);
        self
    }

    /// The replay this context runs, if it replays.
    pub(crate) fn replay_mode(&self) -> Option<&crate::replay::ReplayMode> {
        self.replay.as_deref()
    }

    /// Runs `future` with this context as the current workflow.
    pub(crate) async fn scope<F: std::future::Future>(self: Arc<Self>, future: F) -> F::Output {
        CURRENT.scope(Some(self), future).await
    }

    /// Takes the next function id for an operation named `name`, checking the recorded
    /// history: a checkpoint with another name means the code no longer matches the history.
    pub(crate) fn begin(&self, name: &str) -> Result<Slot> {
        self.check_fatal()?;
        self.check_stop()?;
        if self.runtime.shutdown.is_cancelled() {
            return Err(self.fail(
                Error::new(
                    ErrorKind::NotLaunched,
                    format!(
                        "the runtime is shutting down: workflow `{}` stops before `{name}` and is recovered at the next launch",
                        self.workflow_id
                    ),
                )
                .with_workflow_id(&self.workflow_id),
            ));
        }
        let function_id = self.next_function_id.fetch_add(1, Ordering::SeqCst) + 1;
        let recorded = lock(&self.history).remove(&function_id);
        if let Some(replay) = &self.replay {
            return replay
                .take(&self.workflow_id, function_id, name, recorded)
                .map_err(|e| self.fail(e));
        }
        observe::record_step_id(function_id);
        match recorded {
            None => Ok(Slot::Fresh { function_id }),
            Some(cp) if cp.function_name == name => {
                observe::replayed(function_id, name);
                Ok(Slot::Recorded { function_id, checkpoint: cp })
            }
            // Not fatal: the workflow sees the error (and, unless it handles it, fails with it),
            // so the mismatch is recorded and visible instead of leaving the workflow stuck.
            Some(cp) => Err(Error::new(
                ErrorKind::UnexpectedStep,
                format!(
                    "the history of workflow `{}` records `{}` at step {function_id}, but the code now runs `{name}` there: \
                     the workflow's code changed while it was in flight. Finish it with the old code (same application \
                     version), or fork it from an earlier step",
                    self.workflow_id, cp.function_name
                ),
            )
            .with_step(name, function_id)
            .with_workflow_id(&self.workflow_id)),
        }
    }

    /// The name of the operation recorded at the next function id, without taking the id
    /// (`None`: nothing recorded there). What `patch` decides on.
    pub(crate) fn peek_next(&self) -> Option<String> {
        let next = self.next_function_id.load(Ordering::SeqCst) + 1;
        lock(&self.history)
            .get(&next)
            .map(|cp| cp.function_name.clone())
    }

    /// The recorded operations no operation has taken yet (step id and name), in order.
    pub(crate) fn unreplayed(&self) -> Vec<(i32, String)> {
        let mut left: Vec<(i32, String)> = lock(&self.history)
            .iter()
            .map(|(id, cp)| (*id, cp.function_name.clone()))
            .collect();
        left.sort();
        left
    }

    /// The function id of the most recent operation (0 before the first).
    pub(crate) fn current_function_id(&self) -> i32 {
        self.next_function_id.load(Ordering::SeqCst)
    }

    /// Fails (fatally) when the execution was told to stop: it starts nothing more, and
    /// records nothing more.
    pub(crate) fn check_stop(&self) -> Result<()> {
        match self.control.stopped() {
            Some(reason) => Err(self.fail(reason)),
            None => Ok(()),
        }
    }

    /// Resolves when the execution is told to stop (cancelled, past its deadline, taken
    /// over), with the reason, which also becomes the execution's fatal error. Waits select
    /// on it so a cancelled workflow wakes.
    pub(crate) async fn stopped(&self) -> Error {
        let reason = self.control.wait_stop().await;
        self.fail(reason)
    }

    /// The ownership token this execution records under.
    pub(crate) fn owner(&self) -> Arc<str> {
        self.control.owner()
    }

    /// Records an operation's checkpoint; a lost fence becomes the fatal error, and so does
    /// a stop: an operation that completes after the workflow was cancelled (a step that was
    /// already running) is not recorded.
    ///
    /// `Ok(None)`: this execution's result is the record. `Ok(Some(checkpoint))`: another
    /// execution of the workflow recorded this operation first (it ran concurrently while
    /// ownership changed hands); the caller replays that checkpoint, so every execution
    /// continues from the one recorded result.
    pub(crate) async fn record(&self, op: Operation<'_>) -> Result<Option<Checkpoint>> {
        let rt = &self.runtime;
        let (function_id, name) = (op.function_id, op.name);
        let completed_ms = op.completed_ms.unwrap_or_else(now_ms);
        if self.replay.is_some() {
            // Unreachable through `begin` (a replay never hands out a fresh slot); kept so a
            // replay can never write.
            return Err(self.fail(Error::new(
                ErrorKind::UnexpectedStep,
                format!(
                    "a replay of workflow `{}` writes nothing, not even `{name}`",
                    self.workflow_id
                ),
            )));
        }
        loop {
            self.check_fatal()?;
            self.check_stop()?;
            let owner = self.owner();
            // Boxed: the statement's future is large, and a parked workflow's state machine
            // would otherwise keep room for it for as long as it lives.
            let recorded = Box::pin(rt.sysdb.record_operation(CheckpointRow {
                workflow_id: &self.workflow_id,
                owner_xid: &owner,
                function_id,
                function_name: name,
                output: op.output,
                error: op.error,
                child_workflow_id: op.child_workflow_id,
                started_ms: op.started_ms,
                completed_ms,
                app_name: &rt.app_name,
            }))
            .await;
            return match recorded {
                Ok(()) => Ok(None),
                // A new claim of this workflow was handed to this execution meanwhile: record
                // under the new token.
                Err(RecordError::NotOwner) if *self.owner() != *owner => continue,
                Err(RecordError::NotOwner) => {
                    let e = Box::pin(rt.sysdb.ownership_error(&self.workflow_id)).await;
                    Err(self.fail(e.with_step(name, function_id)))
                }
                Err(RecordError::Conflict(checkpoint)) if checkpoint.function_name == name => {
                    tracing::warn!(
                        workflow_id = %self.workflow_id, step = name, function_id,
                        "another execution of this workflow recorded this step first; continuing with its result"
                    );
                    Ok(Some(checkpoint))
                }
                Err(RecordError::Conflict(checkpoint)) => Err(self.fail(
                    Error::new(
                        ErrorKind::ConflictingWorkflowId,
                        format!(
                            "another execution of workflow `{}` recorded `{}` at step {function_id} while this one ran \
                             `{name}`: the two executions run different code",
                            self.workflow_id, checkpoint.function_name
                        ),
                    )
                    .with_workflow_id(&self.workflow_id)
                    .with_step(name, function_id),
                )),
                Err(RecordError::Db(e)) => Err(self.fail(
                    e.with_workflow_id(&self.workflow_id)
                        .with_step(name, function_id),
                )),
            };
        }
    }

    /// Marks the execution as failed for a durability reason and returns the error.
    pub(crate) fn fail(&self, e: Error) -> Error {
        let mut fatal = lock(&self.fatal);
        if fatal.is_none() {
            *fatal = Some(e.duplicate());
        }
        e
    }

    fn check_fatal(&self) -> Result<()> {
        match &*lock(&self.fatal) {
            Some(e) => Err(e.duplicate()),
            None => Ok(()),
        }
    }

    /// Asks the executor to end this execution and re-execute the workflow at `wake_ms`.
    pub(crate) fn request_park(&self, wake_ms: i64) {
        *lock(&self.park_at) = Some(wake_ms);
        self.park_requested.notify_one();
    }

    /// [`request_park`](Self::request_park) for a wait that what it waits for also ends:
    /// `ticket` (registered before the wait last looked) keys the parked workflow.
    pub(crate) fn request_park_on(
        &self,
        wake_ms: i64,
        ticket: crate::messages::waiters::WaitGuard,
    ) {
        *lock(&self.park_ticket) = Some(ticket);
        self.request_park(wake_ms);
    }

    /// The registration of a parked wait, if the park was requested by one.
    pub(crate) fn take_park_ticket(&self) -> Option<crate::messages::waiters::WaitGuard> {
        lock(&self.park_ticket).take()
    }

    /// Resolves once a park was requested, with the wake-up time.
    pub(crate) async fn parked(&self) -> i64 {
        loop {
            if let Some(at) = *lock(&self.park_at) {
                return at;
            }
            self.park_requested.notified().await;
        }
    }

    pub(crate) fn take_fatal(&self) -> Option<Error> {
        lock(&self.fatal).take()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The context of the workflow the calling task is running, if any. Inside a step body this
/// is `None`: operations there are plain calls.
pub(crate) fn current() -> Option<Arc<WorkflowContext>> {
    CURRENT.try_with(|c| c.clone()).ok().flatten()
}

/// The step the calling task runs in, if any.
pub(crate) fn current_step() -> Option<StepScope> {
    STEP.try_with(|s| s.clone()).ok()
}

/// Runs a step body: outside any workflow context (operations there are plain calls), with
/// the step's identity readable through [`workflow_id`], [`step_id`] and [`step_attempt`].
pub(crate) async fn in_step<F: std::future::Future>(scope: StepScope, future: F) -> F::Output {
    STEP.scope(scope, CURRENT.scope(None, future)).await
}

/// The id of the workflow the caller runs in (also inside a step of it), or `None` outside
/// a workflow.
///
/// ```
/// assert_eq!(dbos_core::workflow_id(), None);
/// ```
pub fn workflow_id() -> Option<String> {
    match current() {
        Some(c) => Some(c.workflow_id.clone()),
        None => current_step().map(|s| s.workflow_id.to_string()),
    }
}

/// Inside a workflow, the function id of its most recent durable operation (`Some(0)` before
/// the first; the first operation is 1); inside a step, the step's own id; `None` elsewhere.
///
/// ```
/// assert_eq!(dbos_core::step_id(), None);
/// ```
pub fn step_id() -> Option<i32> {
    match current() {
        Some(c) => Some(c.current_function_id()),
        None => current_step().map(|s| s.step_id),
    }
}

/// Inside a step, the attempt being made (1 for the first, up to the step's `max_attempts`);
/// `None` elsewhere.
///
/// ```
/// assert_eq!(dbos_core::step_attempt(), None);
/// ```
pub fn step_attempt() -> Option<u32> {
    current_step().map(|s| s.attempt)
}
