//! Calling a workflow: [`WorkflowCall`] (options chained before `.await`) and
//! [`WorkflowHandle`] (id, status, result).

use std::future::IntoFuture;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::codec::{PortableError, PortableInputs};
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::{Completion, CompletionReceiver, Dbos, RuntimeInner};
use crate::sysdb::workflows::{now_ms, NewWorkflow};
use crate::workflow::placement::{insert, parent_link, Placement};
use crate::workflow::registry::{BoxFuture, WorkflowDef};
use crate::workflow::types::{error_from_portable, Portable, WorkflowError};

/// A call of a `#[workflow]` function, not yet running.
///
/// `.await` it to run the workflow and get its result, or [`start`](Self::start) it to get a
/// [`WorkflowHandle`]. Options chain before either:
///
/// ```ignore
/// let receipt = checkout(order).await?;                               // run, wait
/// let handle = checkout(order).id("order-42").timeout(ten_min).start().await?;  // background
/// ```
///
/// Inside a workflow the call starts a child workflow (id `<parent id>-<step id>` unless
/// given), recorded in the parent's history so a replay finds the same child.
#[must_use = "a workflow call does nothing until it is awaited or started"]
pub struct WorkflowCall<T, E> {
    pub(crate) def: &'static WorkflowDef,
    pub(crate) args: Vec<Result<Value>>,
    pub(crate) id: Option<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) runtime: Option<Dbos>,
    _types: PhantomData<fn() -> (T, E)>,
}

impl<T, E> std::fmt::Debug for WorkflowCall<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowCall")
            .field("workflow", &self.def.name)
            .field("id", &self.id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<T: Portable, E: WorkflowError> WorkflowCall<T, E> {
    pub(crate) fn new(def: &'static WorkflowDef, args: Vec<Result<Value>>) -> Self {
        WorkflowCall {
            def,
            args,
            id: None,
            timeout: None,
            runtime: None,
            _types: PhantomData,
        }
    }

    /// Sets the workflow id: the idempotency key. Calling again with the same id never runs
    /// the workflow twice; it returns the first run's outcome.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Cancels the workflow if it has not finished `timeout` after it starts. Children
    /// inherit the deadline unless given their own.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Runs on this runtime instead of the process's launched one.
    pub fn on(mut self, dbos: &Dbos) -> Self {
        self.runtime = Some(dbos.clone());
        self
    }

    /// Starts the workflow in the background and returns its handle. With an id that
    /// already exists, returns a handle to that workflow (whose function must be the same).
    ///
    /// # Errors
    /// `E::from` of: [`ErrorKind::NotLaunched`] without a runtime, [`ErrorKind::Serialization`]
    /// for an argument that does not encode, [`ErrorKind::ConflictingWorkflow`] when the id
    /// belongs to another workflow function, or a database error.
    pub async fn start(self) -> std::result::Result<WorkflowHandle<T, E>, E> {
        self.start_inner().await.map_err(E::from)
    }

    async fn start_inner(self) -> Result<WorkflowHandle<T, E>> {
        let args: Vec<Value> = self.args.into_iter().collect::<Result<_>>()?;
        let inputs = PortableInputs::positional(args.clone()).to_text()?;
        let (rt, id, parent, fresh_id) =
            match Placement::resolve(self.def.name, self.id, self.runtime.as_ref())? {
                Placement::Recorded { rt, id } => return Ok(WorkflowHandle::attach(rt, id)),
                Placement::New {
                    rt,
                    id,
                    parent,
                    fresh_id,
                } => (rt, id, parent, fresh_id),
            };
        // Children inherit the parent's deadline unless given their own.
        let deadline = self
            .timeout
            .map(|t| now_ms() + t.as_millis() as i64)
            .or_else(|| parent.as_ref().and_then(|(ctx, _)| ctx.deadline_ms));
        let owner = uuid::Uuid::new_v4().to_string();
        let new = NewWorkflow {
            id: &id,
            fresh_id,
            name: self.def.name,
            creator_xid: &owner,
            owner_xid: Some(&owner),
            executor_id: Some(&rt.executor_id),
            app_version: Some(&rt.app_version),
            app_name: &rt.app_name,
            inputs: &inputs,
            timeout_ms: self.timeout.map(|t| t.as_millis() as i64),
            deadline_ms: deadline,
            parent: parent_link(&parent),
            queue: None,
        };
        let row = insert(&rt, &new, parent.as_ref().map(|(ctx, _)| &**ctx)).await?;
        if !row.created {
            tracing::debug!(workflow_id = %id, status = %row.status, "workflow id exists; returning a handle to it");
            return Ok(WorkflowHandle::attach(rt, id));
        }
        let receiver = rt.spawn_execution(
            self.def,
            args,
            id.clone(),
            owner,
            true,
            row.deadline_ms,
            None,
        );
        Ok(WorkflowHandle::local(rt, id, receiver))
    }
}

impl<T: Portable, E: WorkflowError> IntoFuture for WorkflowCall<T, E> {
    type Output = std::result::Result<T, E>;
    type IntoFuture = BoxFuture<'static, std::result::Result<T, E>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.start().await?.result().await })
    }
}

/// The status of a workflow, as recorded in `workflow_status.status`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Running, or waiting to be recovered.
    Pending,
    /// Waiting on a queue.
    Enqueued,
    /// Waiting for its delay to pass before being enqueued.
    Delayed,
    /// Finished with an output.
    Success,
    /// Finished with an error.
    Error,
    /// Cancelled (by request or because its deadline passed).
    Cancelled,
    /// Recovered more times than allowed; dead-lettered.
    MaxRecoveryAttemptsExceeded,
    /// A status this version does not know.
    Other(String),
}

impl Status {
    pub(crate) fn parse(s: &str) -> Status {
        match s {
            "PENDING" => Status::Pending,
            "ENQUEUED" => Status::Enqueued,
            "DELAYED" => Status::Delayed,
            "SUCCESS" => Status::Success,
            "ERROR" => Status::Error,
            "CANCELLED" => Status::Cancelled,
            "MAX_RECOVERY_ATTEMPTS_EXCEEDED" => Status::MaxRecoveryAttemptsExceeded,
            other => Status::Other(other.to_owned()),
        }
    }

    /// Whether the workflow will not run again by itself.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Status::Success
                | Status::Error
                | Status::Cancelled
                | Status::MaxRecoveryAttemptsExceeded
        )
    }
}

/// A handle to a started workflow: cheap to clone, typed by the workflow's output and error.
/// Any process can get one by id with [`Dbos::retrieve_workflow`].
///
/// `.await` it (or call [`result`](Self::result)) for the workflow's result.
pub struct WorkflowHandle<T, E> {
    id: Arc<str>,
    runtime: Arc<RuntimeInner>,
    local: Option<CompletionReceiver>,
    _types: PhantomData<fn() -> (T, E)>,
}

impl<T, E> Clone for WorkflowHandle<T, E> {
    fn clone(&self) -> Self {
        WorkflowHandle {
            id: self.id.clone(),
            runtime: self.runtime.clone(),
            local: self.local.clone(),
            _types: PhantomData,
        }
    }
}

impl<T, E> std::fmt::Debug for WorkflowHandle<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowHandle")
            .field("id", &self.id)
            .field("local", &self.local.is_some())
            .finish()
    }
}

impl<T: Portable, E: WorkflowError> WorkflowHandle<T, E> {
    fn local(runtime: Arc<RuntimeInner>, id: String, receiver: CompletionReceiver) -> Self {
        WorkflowHandle {
            id: id.into(),
            runtime,
            local: Some(receiver),
            _types: PhantomData,
        }
    }

    pub(crate) fn attach(runtime: Arc<RuntimeInner>, id: String) -> Self {
        let local = runtime.local_completion(&id);
        WorkflowHandle {
            id: id.into(),
            runtime,
            local,
            _types: PhantomData,
        }
    }

    /// The workflow id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The workflow's current status.
    ///
    /// # Errors
    /// [`ErrorKind::NonExistentWorkflow`], or a database error.
    pub async fn status(&self) -> Result<Status> {
        match self.runtime.sysdb.workflow_outcome(&self.id).await? {
            Some(row) => Ok(Status::parse(&row.status)),
            None => Err(non_existent(&self.id)),
        }
    }

    /// Waits for the workflow to finish and returns its result: the output, the workflow's
    /// own error (the same typed value it returned, or for an error recorded by another
    /// language `E::from` an error of kind [`ErrorKind::WorkflowFailed`] carrying the
    /// [`PortableError`]), or `E::from` of [`ErrorKind::AwaitedWorkflowCancelled`] /
    /// [`ErrorKind::MaxRecoveryAttemptsExceeded`].
    ///
    /// # Errors
    /// As above; also database errors and undecodable outputs, converted with `E::from`.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future only stops waiting.
    pub async fn result(&self) -> std::result::Result<T, E> {
        if let Some(rx) = self.local.clone() {
            if let Some(result) = self.local_result(rx).await {
                return result;
            }
        }
        self.poll_result().await
    }

    /// Waits for an execution running in this process; `None` when it stopped without
    /// recording (the database then has the truth).
    async fn local_result(&self, mut rx: CompletionReceiver) -> Option<std::result::Result<T, E>> {
        let done = rx.wait_for(|c| c.is_some()).await.ok()?;
        match done.as_deref() {
            Some(Completion::Done(Ok(v))) => Some(
                crate::codec::from_value(
                    v.clone(),
                    &format!("the output of workflow `{}`", self.id),
                )
                .map_err(E::from),
            ),
            Some(Completion::Done(Err(p))) => Some(Err(error_from_portable(p.clone()))),
            _ => None,
        }
    }

    async fn poll_result(&self) -> std::result::Result<T, E> {
        let mut delay = Duration::from_millis(20);
        // Woken when the workflow starts here (then followed locally), else polled with
        // backoff (it runs in another process, or has not been dequeued yet).
        let watch = self.runtime.watch_workflow(&self.id);
        loop {
            // Listen before looking, so a start between the two is not missed.
            let started = watch.notified();
            tokio::pin!(started);
            started.as_mut().enable();
            // Dequeued, recovered or resumed here after this handle was made: follow it locally.
            if let Some(rx) = self.runtime.local_completion(&self.id) {
                if let Some(result) = self.local_result(rx).await {
                    return result;
                }
            }
            let row = self
                .runtime
                .sysdb
                .workflow_outcome(&self.id)
                .await
                .map_err(E::from)?;
            let Some(row) = row else {
                return Err(E::from(non_existent(&self.id)));
            };
            let what = format!("the output of workflow `{}`", self.id);
            match Status::parse(&row.status) {
                Status::Success => {
                    let text = row.output.unwrap_or_else(|| "null".to_owned());
                    return crate::codec::from_text(&text, row.serialization.as_deref(), &what).map_err(E::from);
                }
                Status::Error => {
                    let text = row.error.unwrap_or_default();
                    return match PortableError::from_text(&text, row.serialization.as_deref()) {
                        Ok(p) => Err(error_from_portable(p)),
                        Err(e) => Err(E::from(e)),
                    };
                }
                Status::Cancelled => {
                    return Err(E::from(
                        Error::new(ErrorKind::AwaitedWorkflowCancelled, format!("workflow `{}` was cancelled", self.id))
                            .with_workflow_id(self.id.to_string()),
                    ))
                }
                Status::MaxRecoveryAttemptsExceeded => {
                    return Err(E::from(
                        Error::new(
                            ErrorKind::MaxRecoveryAttemptsExceeded,
                            format!(
                                "workflow `{}` was recovered more times than it allows and was moved to \
                                 MAX_RECOVERY_ATTEMPTS_EXCEEDED; fix the cause and resume it",
                                self.id
                            ),
                        )
                        .with_workflow_id(self.id.to_string()),
                    ))
                }
                _ => {
                    let _ = tokio::time::timeout(delay, started).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

impl<T: Portable, E: WorkflowError> IntoFuture for WorkflowHandle<T, E> {
    type Output = std::result::Result<T, E>;
    type IntoFuture = BoxFuture<'static, std::result::Result<T, E>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.result().await })
    }
}

fn non_existent(id: &str) -> Error {
    Error::new(
        ErrorKind::NonExistentWorkflow,
        format!("no workflow has the id `{id}`"),
    )
    .with_workflow_id(id)
}
