//! Executions in this process: starting one, running its body to a recorded outcome, and
//! the map of those running (which handles follow, which a second dispatch of the same id
//! attaches to, and which the executor checks for cancellation).
//!
//! An execution ends in one of three ways ([`Completion`]): its outcome is recorded; it
//! stops without recording (cancelled, past its deadline, taken over by another execution,
//! parked in a long sleep, shutting down), leaving the database as the truth; or its body
//! panics, which leaves the row `PENDING` for recovery and answers waiting callers at once.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use serde_json::Value;
use tokio::sync::{watch, Notify};
use tracing::Instrument;

use crate::codec::{PortableError, PortableInputs};
use crate::error::{Error, ErrorKind};
use crate::observe;
use crate::queue::worker::RunningSlot;
use crate::runtime::RuntimeInner;
use crate::sysdb::records::FinishRow;
use crate::sysdb::workflows::{now_ms, ClaimedWorkflow};
use crate::workflow::context::{lock, WorkflowContext};
use crate::workflow::control::ExecutionControl;
use crate::workflow::parking::Parked;
use crate::workflow::registry::{Args, BoxFuture, ErasedError, ErasedOutcome, WorkflowDef};

/// How an execution in this process ended.
#[derive(Debug)]
pub(crate) enum Completion {
    /// Finished and recorded: the output, or the workflow's own error.
    Done(std::result::Result<Value, PortableError>),
    /// Stopped without recording (lost ownership, cancelled, timed out, parked, shut
    /// down): the database has the truth.
    Interrupted,
    /// The body panicked (the message); the row stays `PENDING` for recovery.
    Panicked(Arc<str>),
}

impl Completion {
    /// How the execution ended, for its metrics (`began`: when it started here).
    fn ended(&self, began: Instant) -> observe::metrics::Ended {
        use observe::metrics::Ended;
        match self {
            Completion::Done(Ok(_)) => Ended::Recorded("SUCCESS", began.elapsed()),
            Completion::Done(Err(_)) => Ended::Recorded("ERROR", began.elapsed()),
            Completion::Interrupted => Ended::Interrupted,
            Completion::Panicked(_) => Ended::Panicked,
        }
    }
}

pub(crate) type CompletionReceiver = watch::Receiver<Option<Arc<Completion>>>;

/// One execution running here.
#[derive(Debug, Clone)]
pub(crate) struct RunningEntry {
    pub(crate) completion: CompletionReceiver,
    pub(crate) control: Arc<ExecutionControl>,
}

/// The executions running in this process, by workflow id: at most one per id.
#[derive(Debug, Default)]
pub(crate) struct Running {
    map: Mutex<HashMap<String, RunningEntry>>,
}

impl Running {
    pub(crate) fn get(&self, id: &str) -> Option<RunningEntry> {
        lock(&self.map).get(id).cloned()
    }

    /// Every running execution's id and control.
    pub(crate) fn snapshot(&self) -> Vec<(String, Arc<ExecutionControl>)> {
        lock(&self.map)
            .iter()
            .map(|(id, e)| (id.clone(), e.control.clone()))
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Removes `id`'s entry if it still belongs to the execution `control`.
    fn remove(&self, id: &str, control: &Arc<ExecutionControl>) {
        let mut map = lock(&self.map);
        if map
            .get(id)
            .is_some_and(|e| Arc::ptr_eq(&e.control, control))
        {
            map.remove(id);
            // After a burst (thousands of workflows that then parked), give the room back.
            if map.capacity() > 1024 && map.len() < map.capacity() / 8 {
                let len = map.len();
                map.shrink_to(len * 2);
            }
        }
    }
}

/// A handle's interest in one workflow id; see [`RuntimeInner::watch_workflow`].
pub(crate) struct WorkflowWatch {
    runtime: Arc<RuntimeInner>,
    id: String,
    notify: Arc<Notify>,
}

impl WorkflowWatch {
    /// Resolves at the next announcement for the workflow (enable it before looking).
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for WorkflowWatch {
    fn drop(&mut self) {
        let mut awaited = lock(&self.runtime.awaited);
        // The map's reference and this one: nobody else waits for this id.
        if Arc::strong_count(&self.notify) <= 2 {
            awaited.remove(&self.id);
        }
    }
}

/// What an execution starts from.
pub(crate) struct Start {
    pub(crate) def: &'static WorkflowDef,
    pub(crate) args: Vec<Value>,
    pub(crate) id: String,
    pub(crate) owner_xid: String,
    /// A new workflow (no history to read).
    pub(crate) fresh: bool,
    /// The workflow's first execution (see `WorkflowContext::first_run`).
    pub(crate) first_run: bool,
    pub(crate) deadline_ms: Option<i64>,
    /// Its place in a queue's worker concurrency, held until it ends (also while parked).
    pub(crate) slot: Option<RunningSlot>,
    /// Who it runs for, when known (started here); else read from its row when asked.
    pub(crate) identity: Option<crate::workflow::identity::Identity>,
    /// The stored trace context its span joins (see [`observe::carrier`]).
    pub(crate) trace: Option<serde_json::Value>,
    /// Its `workflow` span when opened already: a start from outside any workflow opens
    /// it before writing the row, which stores its context. Else the execution opens one.
    pub(crate) span: Option<tracing::Span>,
}

impl RuntimeInner {
    /// The completion of the execution of `id` running here, if any.
    pub(crate) fn local_completion(&self, id: &str) -> Option<CompletionReceiver> {
        self.running.get(id).map(|e| e.completion)
    }

    /// Registers interest in workflow `id` starting (or being dead-lettered) here: the
    /// returned watch is notified then, so a handle follows a local execution at once
    /// instead of polling the database, and is not woken by other workflows.
    pub(crate) fn watch_workflow(self: &Arc<Self>, id: &str) -> WorkflowWatch {
        let notify = lock(&self.awaited)
            .entry(id.to_owned())
            .or_default()
            .clone();
        WorkflowWatch {
            runtime: self.clone(),
            id: id.to_owned(),
            notify,
        }
    }

    /// Wakes the handles waiting for workflow `id`.
    pub(crate) fn announce(&self, id: &str) {
        if let Some(n) = lock(&self.awaited).get(id) {
            n.notify_waiters();
        }
    }

    /// Runs a workflow execution in the background. When `id` already runs here, the new
    /// claim's token is handed to that execution instead: one id, one body at a time.
    /// It runs in a `workflow` span (see [`crate::observe`]), a child of the current span:
    /// a child workflow's span is inside its parent's; `queue` names the queue it was
    /// dequeued from.
    pub(crate) fn spawn_execution(
        self: &Arc<Self>,
        mut start: Start,
        queue: Option<&str>,
    ) -> CompletionReceiver {
        let (tx, rx) = watch::channel(None);
        let control = {
            let mut running = lock(&self.running.map);
            if let Some(live) = running.get(&start.id) {
                tracing::info!(
                    workflow_id = %start.id,
                    "the workflow is already running here; its execution continues under the new claim"
                );
                live.control.hand_over(&start.owner_xid);
                return live.completion.clone();
            }
            let control = ExecutionControl::new(start.owner_xid.as_str());
            running.insert(
                start.id.clone(),
                RunningEntry {
                    completion: rx.clone(),
                    control: control.clone(),
                },
            );
            control
        };
        self.announce(&start.id);
        let span = match start.span.take() {
            Some(span) => span,
            None => {
                let span = observe::workflow(
                    &start.id,
                    start.def.name,
                    queue,
                    &self.app_version,
                    &self.executor_id,
                    !start.first_run,
                );
                observe::carrier::join(&span, start.trace.as_ref());
                span
            }
        };
        let rt = self.clone();
        if start.first_run {
            observe::metrics::workflow_started(start.def.name);
        }
        self.tasks.spawn(
            async move {
                let (id, name, began) = (start.id.clone(), start.def.name, Instant::now());
                let completion = rt.execute(start, &control).await;
                observe::metrics::execution_ended(name, completion.ended(began));
                rt.running.remove(&id, &control);
                let _ = tx.send(Some(Arc::new(completion)));
            }
            .instrument(span),
        );
        rx
    }

    async fn execute(
        self: &Arc<Self>,
        start: Start,
        control: &Arc<ExecutionControl>,
    ) -> Completion {
        let Start {
            def,
            args,
            id,
            fresh,
            first_run,
            deadline_ms,
            mut slot,
            identity,
            ..
        } = start;
        let id = id.as_str();
        if !first_run {
            observe::recovery(id);
        }
        let history = if fresh {
            HashMap::new()
        } else {
            match Box::pin(self.sysdb.load_checkpoints(id)).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(workflow_id = id, error = %e, "could not load the workflow's history; it stays pending");
                    return Completion::Interrupted;
                }
            }
        };
        let ctx = WorkflowContext::new(
            self.clone(),
            id.to_owned(),
            control.clone(),
            deadline_ms,
            history,
            first_run,
        );
        // A start here checked the roles; one from a row (a dequeue, a recovery, an enqueue
        // by name from a client) is checked against what the row records, and runs as the
        // role it assumes.
        let (identity, refused) = if identity.is_some() || def.required_roles.is_empty() {
            (identity, None)
        } else {
            match Box::pin(self.sysdb.workflow_identity(id)).await {
                Ok(recorded) => {
                    match crate::workflow::identity::authorize(def, recorded.unwrap_or_default()) {
                        Ok(authorized) => (Some(authorized), None),
                        Err(refused) => (None, Some(refused)),
                    }
                }
                Err(e) => {
                    tracing::error!(workflow_id = id, error = %e, "could not read the workflow's identity; it stays pending");
                    return Completion::Interrupted;
                }
            }
        };
        let ctx = Arc::new(match identity {
            Some(identity) => ctx.with_identity(identity),
            None => ctx,
        });
        let mut body: BoxFuture<'static, std::thread::Result<ErasedOutcome>> = match refused {
            // Recorded as the workflow's error: no retry can give it the role.
            Some(refused) => Box::pin(std::future::ready(Ok(Err(ErasedError::Runtime(
                refused.with_workflow_id(id),
            ))))),
            None => {
                let invoked = ctx.clone().scope((def.invoke)(Args::new(def.name, args)));
                Box::pin(AssertUnwindSafe(invoked).catch_unwind())
            }
        };
        let deadline = tokio::time::sleep(match deadline_ms {
            Some(d) => Duration::from_millis((d - now_ms()).max(0) as u64),
            // Never: a year is as good.
            None => Duration::from_secs(365 * 24 * 3600),
        });
        tokio::pin!(deadline);
        let mut deadline_passed = deadline_ms.is_none();
        let outcome = loop {
            tokio::select! {
                biased;
                outcome = &mut body => break outcome,
                wake_ms = ctx.parked() => {
                    // A long durable sleep: the body is dropped where it sleeps and the
                    // workflow is re-executed from its history at wake-up time.
                    // A parked wait (recv, get_event) is also woken by what it waits for;
                    // its registration, held until now, tells whether that came meanwhile.
                    let ticket = ctx.take_park_ticket();
                    let wake_on = ticket.as_ref().map(|t| t.key().relocated());
                    // Fresh copies: the execution's own allocations are freed now, and what
                    // stays parked should not pin the pages they shared.
                    let owner_xid: Arc<str> = Arc::from(&*ctx.owner());
                    let trace = observe::carrier::of_span(&tracing::Span::current());
                    let parked = Parked { owner_xid, def, deadline_ms, slot: slot.take(), wake_on, failed_resumes: 0, trace };
                    self.parking.park(wake_ms, id, parked);
                    if ticket.is_some_and(|t| t.fired()) {
                        self.parking.wake_now(id);
                    }
                    return Completion::Interrupted;
                }
                reason = control.wait_stop() => {
                    tracing::info!("dbos.event" = "stop", workflow_id = id, reason = %reason, "the workflow execution stops here");
                    // Callers get their answer now. The body finishes what it is doing (a
                    // step already running completes, unrecorded) and ends at its next
                    // operation, tracked so shutdown waits for it.
                    self.tasks.spawn(
                        async move {
                            let _ = body.await;
                        }
                        .instrument(tracing::Span::current()),
                    );
                    return Completion::Interrupted;
                }
                _ = &mut deadline, if !deadline_passed => {
                    deadline_passed = true;
                    tracing::info!(workflow_id = id, "workflow deadline passed; cancelling it");
                    control.stop(
                        Error::new(
                            ErrorKind::Timeout,
                            format!("workflow `{id}` did not finish before its deadline and was cancelled"),
                        )
                        .with_workflow_id(id),
                    );
                    if let Err(e) = Box::pin(self.sysdb.cancel_workflow(id)).await {
                        tracing::error!(workflow_id = id, error = %e, "could not cancel the timed-out workflow");
                    }
                }
            }
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                tracing::error!(
                    workflow_id = id, workflow = def.name, panic = %message,
                    "the workflow panicked; it stays PENDING and is recovered like a crashed execution"
                );
                return Completion::Panicked(message.into());
            }
        };
        if let Some(fatal) = ctx.take_fatal() {
            tracing::info!(workflow_id = id, reason = %fatal, "workflow execution stopped without recording an outcome");
            return Completion::Interrupted;
        }
        if control.stopped().is_some() {
            return Completion::Interrupted;
        }
        let (status, text, done) = match outcome {
            Ok(value) => ("SUCCESS", value.to_string(), Ok(value)),
            Err(ErasedError::Application(p)) => match p.to_text() {
                Ok(text) => ("ERROR", text, Err(p)),
                Err(e) => {
                    tracing::error!(workflow_id = id, error = %e, "could not encode the workflow's error");
                    return Completion::Interrupted;
                }
            },
            // A failure of the workflow itself that no retry can fix (inputs that do not
            // decode as its arguments, an output that cannot be encoded): recorded as its
            // error, so callers get an answer and recoveries do not repeat it.
            Err(ErasedError::Runtime(e)) => {
                tracing::error!(workflow_id = id, workflow = def.name, error = %e, "the workflow cannot complete; recording the error");
                let p = portable_error(&e);
                match p.to_text() {
                    Ok(text) => ("ERROR", text, Err(p)),
                    Err(_) => return Completion::Interrupted,
                }
            }
        };
        let (output, error) = match status {
            "SUCCESS" => (Some(text.as_str()), None),
            _ => (None, Some(text.as_str())),
        };
        loop {
            let owner = control.owner();
            let finished = Box::pin(self.sysdb.finish_workflow(FinishRow {
                workflow_id: id,
                owner_xid: &owner,
                status,
                output,
                error,
            }));
            return match finished.await {
                Ok(true) => Completion::Done(done),
                // A new claim was handed to this execution meanwhile: finish under it.
                Ok(false) if *control.owner() != *owner => continue,
                Ok(false) => {
                    tracing::info!(
                        "dbos.event" = "fenced",
                        workflow_id = id,
                        "another execution owns the workflow now; deferring to its outcome"
                    );
                    Completion::Interrupted
                }
                Err(e) => {
                    tracing::error!(workflow_id = id, error = %e, "could not record the workflow's outcome; it will be recovered");
                    Completion::Interrupted
                }
            };
        }
    }

    /// Starts executing a workflow claimed from a queue (recovery included). `slot` counts
    /// it against the queue's worker concurrency until it ends.
    pub(crate) fn dispatch_claimed(
        self: &Arc<Self>,
        c: ClaimedWorkflow,
        slot: Option<RunningSlot>,
        queue: Option<&str>,
    ) {
        if let Some(live) = self.running.get(&c.id) {
            // Recovered or resumed while still running here: the live execution continues
            // under the new claim; no second body.
            tracing::info!(workflow_id = %c.id, "claimed a workflow that runs here already; attaching the claim to it");
            live.control.hand_over(&c.owner_xid);
            return;
        }
        // Recovered while parked here: it runs now, under the new claim.
        let parked_slot = self.parking.remove(&c.id);
        let slot = slot.or(parked_slot);
        let Some(def) = self.registry.get(&c.name) else {
            tracing::error!(
                workflow_id = %c.id, workflow = %c.name,
                "no #[workflow] named `{}` is registered in this binary; the row is left PENDING for an executor that has it",
                c.name
            );
            return;
        };
        if c.recovery_attempts > i64::from(def.max_recovery_attempts) + 1 {
            tracing::error!(
                workflow_id = %c.id, attempts = c.recovery_attempts, max = def.max_recovery_attempts,
                "workflow exceeded its recovery attempts; moving it to MAX_RECOVERY_ATTEMPTS_EXCEEDED"
            );
            let rt = self.clone();
            self.tasks.spawn(async move {
                match rt.sysdb.dead_letter(&c.id, &c.owner_xid).await {
                    Ok(_) => observe::metrics::workflow_finished(&c.name, "MAX_RECOVERY_ATTEMPTS_EXCEEDED"),
                    Err(e) => tracing::error!(workflow_id = %c.id, error = %e, "could not dead-letter the workflow"),
                }
                rt.announce(&c.id);
            });
            return;
        }
        if let Err(e) = crate::codec::check_serialization(
            c.serialization.as_deref(),
            &format!("the input of workflow `{}`", c.id),
        ) {
            // Written by another language for its own workers: not ours to fail.
            tracing::error!(workflow_id = %c.id, error = %e, "the workflow's input is in a foreign encoding; the row is left as it is");
            return;
        }
        let args = PortableInputs::from_text(
            c.inputs.as_deref().unwrap_or("{}"),
            c.serialization.as_deref(),
        )
        .and_then(|i| positional_args(&c.id, i));
        match args {
            Ok(args) => {
                self.spawn_execution(
                    Start {
                        def,
                        args,
                        id: c.id,
                        owner_xid: c.owner_xid,
                        fresh: !c.has_history,
                        // Claimed before (recovered): its first claim set this to 1.
                        first_run: !c.has_history && c.recovery_attempts <= 1,
                        deadline_ms: c.deadline_ms,
                        slot,
                        identity: None,
                        trace: c.trace,
                        span: None,
                    },
                    queue,
                );
            }
            Err(e) => self.fail_claimed(c.id, c.owner_xid, e),
        }
    }

    /// Records a claimed workflow that can never run (its input does not decode) as failed,
    /// so its callers get an answer.
    fn fail_claimed(self: &Arc<Self>, id: String, owner_xid: String, e: Error) {
        tracing::error!(workflow_id = %id, error = %e, "the workflow's input cannot be used; recording the error");
        let rt = self.clone();
        self.tasks.spawn(async move {
            let text = match portable_error(&e).to_text() {
                Ok(t) => t,
                Err(_) => return,
            };
            let finished = rt
                .sysdb
                .finish_workflow(FinishRow {
                    workflow_id: &id,
                    owner_xid: &owner_xid,
                    status: "ERROR",
                    output: None,
                    error: Some(&text),
                })
                .await;
            if let Err(e) = finished {
                tracing::error!(workflow_id = %id, error = %e, "could not record the workflow's error");
            }
            rt.announce(&id);
        });
    }
}

/// The portable form of one of this library's errors: name `dbos_core::Error::<Kind>`, so
/// a replay or a typed caller gets the same kind back.
/// The arguments a workflow's stored input gives its body (what recovery and replay run it
/// with): its positional arguments; named ones are refused.
pub(crate) fn positional_args(id: &str, i: PortableInputs) -> Result<Vec<Value>, Error> {
    if !i.named_args.is_empty() {
        return Err(Error::new(
            ErrorKind::Serialization,
            format!(
                "the input of workflow `{id}` has named arguments ({}), which Rust workflows do not take: \
                 enqueue it with positional arguments only",
                i.named_args.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(i.positional_args)
}

pub(crate) fn portable_error(e: &Error) -> PortableError {
    match serde_json::to_value(e).and_then(serde_json::from_value) {
        Ok(p) => p,
        Err(_) => PortableError {
            name: format!("dbos_core::Error::{:?}", e.kind()),
            message: e.message().to_owned(),
            code: None,
            data: None,
        },
    }
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_owned()
    }
}
