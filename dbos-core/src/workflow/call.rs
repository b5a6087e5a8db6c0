//! Calling a workflow: [`WorkflowCall`] (options chained before `.await`) and
//! [`WorkflowHandle`] (id, status, result).

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tracing::Instrument;

use crate::codec::{PortableError, PortableInputs};
use crate::error::{Error, ErrorKind, Result};
use crate::observe::{self, Op};
use crate::queue::enqueue::QueuedCall;
use crate::runtime::{Dbos, RuntimeInner};
use crate::sysdb::workflows::{now_ms, NewWorkflow, OutcomeRow};
use crate::sysdb::SystemDatabase;
use crate::workflow::context::{current, Operation, Slot, WorkflowContext};
use crate::workflow::execution::{Completion, CompletionReceiver, Start};
use crate::workflow::identity::Identity;
use crate::workflow::placement::{check_id, insert, parent_link, IdReusePolicy, Placement};
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
    pub(crate) attributes: Option<Value>,
    pub(crate) id_reuse: IdReusePolicy,
    pub(crate) identity: Option<Identity>,
    pub(crate) runtime: Option<Dbos>,
    pub(crate) typed: CallTypes<T, E>,
}

/// What starting or enqueueing a call does with its types, captured in [`WorkflowCall::new`],
/// the one place that requires `T: Portable, E: WorkflowError`.
///
/// The rest of the call's API (options, `.start()`, `.enqueue(..)`, `.await`) needs no bound,
/// so a `#[workflow]` whose output or error type does not qualify gets one compile error, at
/// its signature, and none at the places that call it.
pub(crate) struct CallTypes<T, E> {
    start: fn(WorkflowCall<T, E>) -> Started<T, E>,
    run: fn(WorkflowCall<T, E>) -> ResultFuture<'static, T, E>,
    pub(crate) enqueue: fn(QueuedCall<T, E>) -> Started<T, E>,
}

/// The future of a workflow's result.
type ResultFuture<'a, T, E> = BoxFuture<'a, std::result::Result<T, E>>;

/// The future of a start or an enqueue.
pub(crate) type Started<T, E> = BoxFuture<'static, std::result::Result<WorkflowHandle<T, E>, E>>;

impl<T, E> Clone for CallTypes<T, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, E> Copy for CallTypes<T, E> {}

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
    /// A call of the workflow `def` with its encoded arguments (an encoding failure is
    /// reported when the call is started): what a `#[workflow]` function returns, built by
    /// hand. `def` must be registered (`inventory::submit!`) so recovery and queue workers
    /// find it by name; see the workflow macro's "Equivalent code" section.
    pub fn new(def: &'static WorkflowDef, args: Vec<Result<Value>>) -> Self {
        WorkflowCall {
            def,
            args,
            id: None,
            timeout: None,
            attributes: None,
            id_reuse: IdReusePolicy::ReturnExisting,
            identity: None,
            runtime: None,
            typed: CallTypes {
                start: |call| {
                    // Started from a workflow: a `child` operation span, the child's own
                    // `workflow` span inside it. From outside any workflow, no span of its
                    // own: `start_inner` opens the first execution's `workflow` span before
                    // the row is written, and the row stores that span's context.
                    match current() {
                        Some(_) => {
                            let span = observe::operation(Op::Child, call.def.name);
                            Box::pin(
                                async move { call.start_inner().await.map_err(E::from) }
                                    .instrument(span),
                            )
                        }
                        None => Box::pin(async move { call.start_inner().await.map_err(E::from) }),
                    }
                },
                run: |call| Box::pin(async move { call.start().await?.result().await }),
                enqueue: crate::queue::enqueue::run::<T, E>,
            },
        }
    }

    async fn start_inner(self) -> Result<WorkflowHandle<T, E>> {
        if let Some(id) = &self.id {
            check_id(id)?;
        }
        check_attributes(self.attributes.as_ref())?;
        let timeout_ms = crate::sysdb::workflows::timeout_ms(self.timeout, "workflow")?;
        let args: Vec<Value> = self.args.into_iter().collect::<Result<_>>()?;
        let inputs = PortableInputs::positional(args.clone()).to_text()?;
        let identity = crate::workflow::identity::for_start(self.def, self.identity).await?;
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
        let deadline = timeout_ms
            .map(|t| now_ms().saturating_add(t))
            .or_else(|| parent.as_ref().and_then(|p| p.ctx.deadline_ms));
        let owner = uuid::Uuid::new_v4().to_string();
        // A start from outside any workflow opens the first execution's span now, in the
        // caller's span (or joining a carrier given in the attributes): the row stores its
        // context. A child's row stores its `child` operation span's (the current one).
        // Every later execution of the workflow, here or recovered anywhere, joins it.
        let first_span = parent.is_none().then(|| {
            let span = observe::workflow(
                &id,
                self.def.name,
                None,
                &rt.app_version,
                &rt.executor_id,
                false,
            );
            observe::carrier::join(&span, observe::carrier::stored(self.attributes.as_ref()));
            span
        });
        let stamped = observe::carrier::stamp(
            self.attributes.as_ref(),
            first_span.as_ref().unwrap_or(&tracing::Span::current()),
        );
        let new = NewWorkflow {
            id: &id,
            fresh_id,
            name: self.def.name,
            creator_xid: &owner,
            owner_xid: Some(&owner),
            executor_id: Some(&rt.executor_id),
            app_version: Some(&rt.app_version),
            app_name: Some(&rt.app_name),
            inputs: &inputs,
            timeout_ms,
            deadline_ms: deadline,
            parent: parent_link(&parent),
            queue: None,
            attributes: stamped.as_ref().or(self.attributes.as_ref()),
            reject_existing: self.id_reuse == IdReusePolicy::Reject,
            identity: (!identity.is_empty()).then_some(&identity),
        };
        let row = insert(&rt, &new, parent.as_ref().map(|p| &*p.ctx)).await?;
        if !row.created {
            match &first_span {
                // Its span ends with nothing run in it: the workflow keeps its own trace.
                Some(span) => observe::exists(span, &id, &row.status),
                None => {
                    tracing::debug!(workflow_id = %id, status = %row.status, "workflow id exists; returning a handle to it")
                }
            }
            return Ok(WorkflowHandle::attach(rt, id));
        }
        let receiver = rt.spawn_execution(
            Start {
                def: self.def,
                args,
                id: id.clone(),
                owner_xid: owner,
                fresh: true,
                first_run: true,
                deadline_ms: row.deadline_ms,
                slot: None,
                identity: Some(identity),
                // A carrier given in the attributes is joined; else the span is inside the
                // start's, whose context the row stores.
                trace: observe::carrier::stored(self.attributes.as_ref()).cloned(),
                span: first_span,
            },
            None,
        );
        Ok(WorkflowHandle::local(rt, id, receiver))
    }
}

/// Generates the id-reuse and identity setters of a start or enqueue builder with the fields
/// `id_reuse` ([`IdReusePolicy`]) and `identity` (`Option<Identity>`): a
/// [`WorkflowCall`] and a [`Client`](crate::Client)'s enqueue take the same options, documented once.
macro_rules! start_option_setters {
    () => {
        /// What a start does when the id is already in use: by default it returns a handle to
        /// that workflow; with [`IdReusePolicy::Reject`](crate::IdReusePolicy::Reject) it is refused with
        /// [`ErrorKind::WorkflowIdInUse`](crate::ErrorKind::WorkflowIdInUse) and writes nothing. Applies to `.enqueue(..)` and to a
        /// [`Client`](crate::Client)'s enqueue too.
        pub fn id_reuse_policy(mut self, policy: crate::IdReusePolicy) -> Self {
            self.id_reuse = policy;
            self
        }

        /// Runs the workflow for `user` with `roles` (DBOS's `authenticated_user` and
        /// `authenticated_roles`): readable inside it with [`identity()`](crate::identity),
        /// inherited by its children, kept across recovery, and filterable in listings. A
        /// workflow with `required_roles` needs one of them here. A blank user, an empty role
        /// list or a blank role is refused with [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) before anything
        /// is written.
        pub fn authenticated<R: Into<String>>(
            mut self,
            user: impl Into<String>,
            roles: impl IntoIterator<Item = R>,
        ) -> Self {
            let identity = self
                .identity
                .get_or_insert_with(crate::workflow::identity::Identity::default);
            identity.user = Some(user.into());
            identity.roles = Some(roles.into_iter().map(Into::into).collect());
            self
        }

        /// The role the workflow runs as (DBOS's `assumed_role`). A workflow with
        /// `required_roles` assumes the first of them the user has instead.
        pub fn assumed_role(mut self, role: impl Into<String>) -> Self {
            self.identity
                .get_or_insert_with(crate::workflow::identity::Identity::default)
                .assumed_role = Some(role.into());
            self
        }
    };
}
pub(crate) use start_option_setters;

impl<T, E> WorkflowCall<T, E> {
    /// Sets the workflow id: the idempotency key. Calling again with the same id never runs
    /// the workflow twice; it returns the first run's outcome.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    start_option_setters!();

    /// Cancels the workflow if it has not finished `timeout` after it starts. Children
    /// inherit the deadline unless given their own. A timeout beyond 100 years is taken as
    /// 100 years; a timeout of 0 is refused with [`ErrorKind::InvalidArgument`] when the call
    /// starts.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Attaches attributes to the workflow: a JSON object of your own keys (a customer, a
    /// region, a batch), stored in `workflow_status.attributes` where listings filter by
    /// containment ([`ListWorkflows::attributes`](crate::ListWorkflows::attributes)) and
    /// DBOS's tools show them. Children do not inherit them. Change them later with
    /// [`Dbos::update_workflow_attributes`](crate::Dbos::update_workflow_attributes).
    ///
    /// ```no_run
    /// # #[dbos_core::workflow] async fn checkout(_order: u64) -> Result<(), dbos_core::Error> { Ok(()) }
    /// # async fn demo() -> Result<(), dbos_core::Error> {
    /// checkout(42)
    ///     .attributes(serde_json::json!({"customer": "acme", "region": "eu"}))
    ///     .await?;
    /// # Ok(()) }
    /// # let _ = demo;
    /// ```
    ///
    /// Anything but an object is refused with [`ErrorKind::InvalidArgument`] when the call
    /// starts, before anything is written.
    pub fn attributes(mut self, attributes: Value) -> Self {
        self.attributes = Some(attributes);
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
    /// belongs to another workflow function, [`ErrorKind::WorkflowIdInUse`] when it is in use
    /// and the [`id_reuse_policy`](Self::id_reuse_policy) is `Reject`, or a database error.
    pub async fn start(self) -> std::result::Result<WorkflowHandle<T, E>, E> {
        (self.typed.start)(self).await
    }
}

/// Refuses attributes that are not a JSON object (DBOS's rule), before anything is written.
pub(crate) fn check_attributes(attributes: Option<&Value>) -> Result<()> {
    match attributes {
        None | Some(Value::Object(_)) => Ok(()),
        Some(other) => Err(Error::invalid(format!(
            "workflow attributes must be a JSON object of your own keys (e.g. {{\"customer\": \"acme\"}}), not `{other}`"
        ))),
    }
}

impl<T, E> IntoFuture for WorkflowCall<T, E> {
    type Output = std::result::Result<T, E>;
    type IntoFuture = BoxFuture<'static, std::result::Result<T, E>>;

    fn into_future(self) -> Self::IntoFuture {
        (self.typed.run)(self)
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

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

    /// The status as DBOS writes it in `workflow_status.status` (`"PENDING"`, `"SUCCESS"`,
    /// ...).
    pub fn as_str(&self) -> &str {
        match self {
            Status::Pending => "PENDING",
            Status::Enqueued => "ENQUEUED",
            Status::Delayed => "DELAYED",
            Status::Success => "SUCCESS",
            Status::Error => "ERROR",
            Status::Cancelled => "CANCELLED",
            Status::MaxRecoveryAttemptsExceeded => "MAX_RECOVERY_ATTEMPTS_EXCEEDED",
            Status::Other(s) => s,
        }
    }

    /// Parses a status as DBOS writes it, case-insensitively: `Some` only for the seven
    /// statuses DBOS defines (what a filter given by a person should be checked against).
    pub fn from_name(name: &str) -> Option<Status> {
        match Status::parse(&name.trim().to_ascii_uppercase()) {
            Status::Other(_) => None,
            s => Some(s),
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

/// A status is stored (and recorded by `DBOS.getStatus`) as DBOS writes it: `"SUCCESS"`, ...
impl serde::Serialize for Status {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Status {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Status::parse(&text))
    }
}

/// A handle to a started workflow: cheap to clone, typed by the workflow's output and error.
/// Any process can get one by id with [`Dbos::retrieve_workflow`].
///
/// `.await` it (or call [`result`](Self::result)) for the workflow's result.
pub struct WorkflowHandle<T, E> {
    id: Arc<str>,
    source: HandleSource,
    local: Option<CompletionReceiver>,
    /// What waiting for the result does with the types, captured where the bounds are known
    /// to hold (every constructor requires them), so the handle's API itself needs none.
    typed: HandleTypes<T, E>,
}

/// [`WorkflowHandle::result`] and `.await` for types known to qualify.
struct HandleTypes<T, E> {
    result: for<'a> fn(&'a WorkflowHandle<T, E>) -> ResultFuture<'a, T, E>,
    wait: fn(WorkflowHandle<T, E>) -> ResultFuture<'static, T, E>,
}

impl<T, E> Clone for HandleTypes<T, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, E> Copy for HandleTypes<T, E> {}

impl<T: Portable, E: WorkflowError> HandleTypes<T, E> {
    fn new() -> Self {
        HandleTypes {
            result: |handle| Box::pin(handle.typed_result()),
            wait: |handle| Box::pin(async move { handle.typed_result().await }),
        }
    }
}

/// Where a handle learns about its workflow.
#[derive(Clone)]
enum HandleSource {
    /// A launched runtime: executions running here are followed directly, others are read
    /// from its database.
    Runtime(Arc<RuntimeInner>),
    /// Only the system database (a [`Client`](crate::client::Client)): the workflow runs
    /// in some executor, and its outcome is read with backoff.
    Database(SystemDatabase),
}

impl<T, E> Clone for WorkflowHandle<T, E> {
    fn clone(&self) -> Self {
        WorkflowHandle {
            id: self.id.clone(),
            source: self.source.clone(),
            local: self.local.clone(),
            typed: self.typed,
        }
    }
}

impl<T, E> std::fmt::Debug for WorkflowHandle<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowHandle")
            .field("id", &self.id)
            .field("local", &self.local.is_some())
            .field("client", &matches!(self.source, HandleSource::Database(_)))
            .finish()
    }
}

impl<T, E> WorkflowHandle<T, E> {
    /// The workflow id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The same handle with other output and error types: for a handle obtained untyped
    /// (a fork, an enqueue by name) whose workflow's types the caller knows.
    pub fn typed<T2: Portable, E2: WorkflowError>(self) -> WorkflowHandle<T2, E2> {
        WorkflowHandle {
            id: self.id,
            source: self.source,
            local: self.local,
            typed: HandleTypes::new(),
        }
    }

    pub(crate) fn sysdb(&self) -> &SystemDatabase {
        match &self.source {
            HandleSource::Runtime(rt) => &rt.sysdb,
            HandleSource::Database(db) => db,
        }
    }

    /// The runtime the handle belongs to, unless it is a client's.
    pub(crate) fn runtime(&self) -> Option<&Arc<RuntimeInner>> {
        match &self.source {
            HandleSource::Runtime(rt) => Some(rt),
            HandleSource::Database(_) => None,
        }
    }

    /// The workflow's current status. Inside a workflow the read is a durable operation
    /// (`DBOS.getStatus`): a replay returns the recorded status without reading it again.
    ///
    /// # Errors
    /// [`ErrorKind::NonExistentWorkflow`], or a database error.
    pub async fn status(&self) -> Result<Status> {
        crate::manage::durable::read(crate::manage::durable::GET_STATUS, || async {
            match self.sysdb().workflow_outcome(&self.id).await? {
                Some(row) => Ok(Status::parse(&row.status)),
                None => Err(non_existent(&self.id)),
            }
        })
        .await
    }

    /// Waits for the workflow to finish and returns its result: the output, the workflow's
    /// own error (the same typed value it returned, or for an error recorded by another
    /// language `E::from` an error of kind [`ErrorKind::WorkflowFailed`] carrying the
    /// [`PortableError`]), or `E::from` of [`ErrorKind::AwaitedWorkflowCancelled`] (cancelled),
    /// [`ErrorKind::Timeout`] (cancelled because its deadline passed) or
    /// [`ErrorKind::MaxRecoveryAttemptsExceeded`].
    ///
    /// Inside a workflow the wait is a durable operation (`DBOS.getResult`, recorded with the
    /// awaited workflow's id): a replay returns the recorded result without reading the
    /// awaited workflow again, and a cancel of the waiting workflow wakes it.
    ///
    /// # Errors
    /// As above; also [`ErrorKind::ExecutionPanicked`] when the awaited workflow's execution
    /// in this process panicked (it stays `PENDING` for recovery), [`ErrorKind::NotLaunched`]
    /// when the runtime shuts down before the workflow finished, and undecodable outputs;
    /// all converted with `E::from`.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future only stops waiting.
    pub async fn result(&self) -> std::result::Result<T, E> {
        (self.typed.result)(self).await
    }
}

impl<T: Portable, E: WorkflowError> WorkflowHandle<T, E> {
    fn local(runtime: Arc<RuntimeInner>, id: String, receiver: CompletionReceiver) -> Self {
        WorkflowHandle {
            id: id.into(),
            source: HandleSource::Runtime(runtime),
            local: Some(receiver),
            typed: HandleTypes::new(),
        }
    }

    pub(crate) fn attach(runtime: Arc<RuntimeInner>, id: String) -> Self {
        let local = runtime.local_completion(&id);
        WorkflowHandle {
            id: id.into(),
            source: HandleSource::Runtime(runtime),
            local,
            typed: HandleTypes::new(),
        }
    }

    /// A handle that only reads the database: what a [`Client`](crate::client::Client)
    /// gives out.
    pub(crate) fn detached(sysdb: SystemDatabase, id: String) -> Self {
        WorkflowHandle {
            id: id.into(),
            source: HandleSource::Database(sysdb),
            local: None,
            typed: HandleTypes::new(),
        }
    }

    /// [`result`](WorkflowHandle::result) for types known to qualify.
    async fn typed_result(&self) -> std::result::Result<T, E> {
        if let Some(ctx) = current() {
            return self.result_in_workflow(&ctx).await;
        }
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
            Some(Completion::Panicked(message)) => Some(Err(E::from(panicked(&self.id, message)))),
            _ => None,
        }
    }

    async fn poll_result(&self) -> std::result::Result<T, E> {
        match self.poll_outcome().await.map_err(E::from)? {
            Outcome::Output {
                text,
                serialization,
            } => crate::codec::from_text(
                &text,
                serialization.as_deref(),
                &format!("the output of workflow `{}`", self.id),
            )
            .map_err(E::from),
            Outcome::Failed(p) => Err(error_from_portable(p)),
            Outcome::Refused(e) => Err(E::from(e)),
        }
    }

    /// Waits for the recorded outcome: follows an execution that starts here, else reads the
    /// database with backoff (the workflow runs in another process, or is not dequeued yet).
    async fn poll_outcome(&self) -> Result<Outcome> {
        let runtime = match &self.source {
            HandleSource::Runtime(rt) => rt,
            HandleSource::Database(db) => return poll_database(db, &self.id).await,
        };
        let mut delay = Duration::from_millis(20);
        let watch = runtime.watch_workflow(&self.id);
        loop {
            // Listen before looking, so a start between the two is not missed.
            let started = watch.notified();
            tokio::pin!(started);
            started.as_mut().enable();
            // Dequeued, recovered or resumed here after this handle was made: follow it locally.
            if let Some(mut rx) = runtime.local_completion(&self.id) {
                if let Ok(done) = rx.wait_for(|c| c.is_some()).await {
                    match done.as_deref() {
                        Some(Completion::Done(Ok(v))) => {
                            return Ok(Outcome::Output {
                                text: v.to_string(),
                                serialization: None,
                            })
                        }
                        Some(Completion::Done(Err(p))) => return Ok(Outcome::Failed(p.clone())),
                        Some(Completion::Panicked(message)) => {
                            return Err(panicked(&self.id, message))
                        }
                        _ => {}
                    }
                }
            }
            let Some(row) = runtime.sysdb.workflow_outcome(&self.id).await? else {
                return Err(non_existent(&self.id));
            };
            if let Some(outcome) = Outcome::of(&self.id, row)? {
                return Ok(outcome);
            }
            if runtime.shutdown.is_cancelled() {
                return Err(Error::new(
                    ErrorKind::NotLaunched,
                    format!(
                        "the runtime shut down before workflow `{}` finished; it is not lost: it continues after \
                         recovery, and its result can be awaited then",
                        self.id
                    ),
                )
                .with_workflow_id(self.id.to_string()));
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = started => {}
                _ = runtime.shutdown.cancelled() => {}
            }
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// The durable wait of a workflow for another one's result (`DBOS.getResult`).
    async fn result_in_workflow(&self, ctx: &WorkflowContext) -> std::result::Result<T, E> {
        let function_id = match ctx.begin(GET_RESULT).map_err(E::from)? {
            Slot::Recorded { checkpoint, .. } => {
                return replay_result(
                    &checkpoint.output,
                    &checkpoint.error,
                    &checkpoint.serialization,
                    &self.id,
                )
            }
            Slot::Fresh { function_id } => function_id,
        };
        let started = now_ms();
        let outcome = tokio::select! {
            outcome = self.outcome_here_or_polled() => outcome,
            reason = ctx.stopped() => return Err(E::from(reason)),
        };
        // Anything but a recorded outcome (the awaited execution panicked here, shutdown) is
        // not the awaited workflow's answer: the waiting workflow stops without recording.
        let outcome = outcome.map_err(|e| E::from(ctx.fail(e)))?;
        let (output, error) = match &outcome {
            Outcome::Output {
                text,
                serialization,
            } => {
                match crate::codec::check_serialization(
                    serialization.as_deref(),
                    "the awaited workflow's output",
                ) {
                    Ok(()) => (Some(text.clone()), None),
                    Err(e) => (None, Some(crate::codec::to_text(&e).map_err(E::from)?)),
                }
            }
            Outcome::Failed(p) => (None, Some(p.to_text().map_err(E::from)?)),
            Outcome::Refused(e) => (None, Some(crate::codec::to_text(e).map_err(E::from)?)),
        };
        let theirs = ctx
            .record(Operation {
                output: output.as_deref(),
                error: error.as_deref(),
                child_workflow_id: Some(&self.id),
                ..Operation::new(function_id, GET_RESULT, started)
            })
            .await
            .map_err(E::from)?;
        match theirs {
            Some(cp) => replay_result(&cp.output, &cp.error, &cp.serialization, &self.id),
            None => replay_result(
                &output,
                &error,
                &Some(crate::codec::PORTABLE_JSON.to_owned()),
                &self.id,
            ),
        }
    }

    async fn outcome_here_or_polled(&self) -> Result<Outcome> {
        if let Some(mut rx) = self.local.clone() {
            if let Ok(done) = rx.wait_for(|c| c.is_some()).await {
                match done.as_deref() {
                    Some(Completion::Done(Ok(v))) => {
                        return Ok(Outcome::Output {
                            text: v.to_string(),
                            serialization: None,
                        })
                    }
                    Some(Completion::Done(Err(p))) => return Ok(Outcome::Failed(p.clone())),
                    Some(Completion::Panicked(message)) => return Err(panicked(&self.id, message)),
                    _ => {}
                }
            }
        }
        self.poll_outcome().await
    }
}

/// Waits for a workflow's recorded outcome by reading the database, with backoff (20 ms
/// doubling to 1 s): how a client, which runs no workflows, follows one.
async fn poll_database(db: &SystemDatabase, id: &str) -> Result<Outcome> {
    let mut delay = Duration::from_millis(20);
    loop {
        let Some(row) = db.workflow_outcome(id).await? else {
            return Err(non_existent(id));
        };
        if let Some(outcome) = Outcome::of(id, row)? {
            return Ok(outcome);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// The operation name DBOS records for a workflow awaiting another's result.
pub(crate) const GET_RESULT: &str = "DBOS.getResult";

/// A workflow's final outcome, as recorded.
#[derive(Debug)]
enum Outcome {
    /// `SUCCESS`: the output's text and encoding.
    Output {
        text: String,
        serialization: Option<String>,
    },
    /// `ERROR`: the workflow's own error.
    Failed(PortableError),
    /// It ended without an outcome of its own: cancelled, timed out, dead-lettered.
    Refused(Error),
}

impl Outcome {
    /// The outcome a row records; `None` while the workflow is still active.
    fn of(id: &str, row: OutcomeRow) -> Result<Option<Outcome>> {
        Ok(Some(match Status::parse(&row.status) {
            Status::Success => Outcome::Output {
                text: row.output.unwrap_or_else(|| "null".to_owned()),
                serialization: row.serialization,
            },
            Status::Error => Outcome::Failed(PortableError::from_text(
                &row.error.unwrap_or_default(),
                row.serialization.as_deref(),
            )?),
            Status::Cancelled
                if row
                    .deadline_ms
                    .is_some_and(|d| row.completed_at.is_some_and(|c| c >= d)) =>
            {
                Outcome::Refused(
                    Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "workflow `{id}` did not finish before its deadline and was cancelled"
                        ),
                    )
                    .with_workflow_id(id),
                )
            }
            Status::Cancelled => Outcome::Refused(
                Error::new(
                    ErrorKind::AwaitedWorkflowCancelled,
                    format!("workflow `{id}` was cancelled"),
                )
                .with_workflow_id(id),
            ),
            Status::MaxRecoveryAttemptsExceeded => Outcome::Refused(
                Error::new(
                    ErrorKind::MaxRecoveryAttemptsExceeded,
                    format!(
                        "workflow `{id}` was recovered more times than it allows and was moved to \
                         MAX_RECOVERY_ATTEMPTS_EXCEEDED; fix the cause and resume it"
                    ),
                )
                .with_workflow_id(id),
            ),
            _ => return Ok(None),
        }))
    }
}

/// Decodes a recorded result (a `DBOS.getResult` checkpoint, or the outcome just recorded).
fn replay_result<T: Portable, E: WorkflowError>(
    output: &Option<String>,
    error: &Option<String>,
    serialization: &Option<String>,
    id: &str,
) -> std::result::Result<T, E> {
    crate::workflow::step::replay(
        output,
        error,
        serialization,
        &format!("the result of workflow `{id}`"),
    )
    .map_err(|e| {
        e.unwrap_or_else(|| {
            E::from(Error::new(
                ErrorKind::Serialization,
                format!(
                    "the recorded result of workflow `{id}` has neither an output nor an error"
                ),
            ))
        })
    })
}

fn panicked(id: &str, message: &str) -> Error {
    Error::new(
        ErrorKind::ExecutionPanicked,
        format!(
            "workflow `{id}` panicked in this process ({message}); it stays PENDING and is recovered like a crashed \
             execution (at the next launch, or by a live executor once its executor is gone)"
        ),
    )
    .with_workflow_id(id)
}

impl<T, E> IntoFuture for WorkflowHandle<T, E> {
    type Output = std::result::Result<T, E>;
    type IntoFuture = BoxFuture<'static, std::result::Result<T, E>>;

    fn into_future(self) -> Self::IntoFuture {
        (self.typed.wait)(self)
    }
}

pub(crate) fn non_existent(id: &str) -> Error {
    Error::new(
        ErrorKind::NonExistentWorkflow,
        format!("no workflow has the id `{id}`"),
    )
    .with_workflow_id(id)
}
