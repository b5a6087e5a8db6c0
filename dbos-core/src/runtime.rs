//! The runtime: [`Dbos::launch`] connects to (or starts) the system database, migrates it,
//! registers the application version, recovers this executor's pending workflows, and serves
//! the internal queue until [`Dbos::shutdown`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::{PortableError, PortableInputs};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::local_postgres::LocalPostgres;
use crate::queue::worker::{self, RunningSlot};
use crate::queue::Queue;
use crate::sysdb::records::FinishRow;
use crate::sysdb::workflows::{ClaimedWorkflow, INTERNAL_QUEUE};
use crate::sysdb::{ConnectOptions, MigrationOutcome, SystemDatabase};
use crate::workflow::call::WorkflowHandle;
use crate::workflow::context::{lock, WorkflowContext};
use crate::workflow::parking::{Parked, ParkingLot};
use crate::workflow::registry::{Args, ErasedError, Registry, WorkflowDef};

/// How an execution in this process ended.
#[derive(Debug)]
pub(crate) enum Completion {
    /// Finished and recorded: the output, or the workflow's own error.
    Done(std::result::Result<Value, PortableError>),
    /// Stopped without recording (lost ownership, cancelled, timed out, shut down, bad
    /// inputs): the database has the truth.
    Interrupted,
}

pub(crate) type CompletionReceiver = watch::Receiver<Option<Arc<Completion>>>;

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

/// State shared by every handle, call and execution of one launched runtime.
pub(crate) struct RuntimeInner {
    pub(crate) config: Config,
    pub(crate) sysdb: SystemDatabase,
    pub(crate) registry: Registry,
    pub(crate) app_version: String,
    pub(crate) app_name: String,
    pub(crate) executor_id: String,
    running: Mutex<HashMap<String, CompletionReceiver>>,
    /// Handles waiting for a workflow that is not running here (yet), by workflow id.
    awaited: Mutex<HashMap<String, Arc<Notify>>>,
    tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    queue_signals: Mutex<HashMap<String, Arc<Notify>>>,
    pub(crate) parking: ParkingLot,
}

impl std::fmt::Debug for RuntimeInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeInner")
            .field("app_name", &self.app_name)
            .field("app_version", &self.app_version)
            .field("executor_id", &self.executor_id)
            .finish_non_exhaustive()
    }
}

impl RuntimeInner {
    pub(crate) fn check_accepting(&self) -> Result<()> {
        if self.shutdown.is_cancelled() {
            return Err(Error::new(
                ErrorKind::NotLaunched,
                "the runtime is shutting down and takes no new work",
            ));
        }
        Ok(())
    }

    /// The wake-up signal of a queue's dequeue loop (enqueues and finished work ring it).
    pub(crate) fn queue_signal(&self, queue: &str) -> Arc<Notify> {
        lock(&self.queue_signals)
            .entry(queue.to_owned())
            .or_default()
            .clone()
    }

    /// Makes the queue's dequeue loop poll now (a permit is kept if it is busy).
    pub(crate) fn wake_queue(&self, queue: &str) {
        self.queue_signal(queue).notify_one();
    }

    /// Wakes every queue's dequeue loop.
    pub(crate) fn wake_all_queues(&self) {
        for signal in lock(&self.queue_signals).values() {
            signal.notify_one();
        }
    }

    pub(crate) fn local_completion(&self, id: &str) -> Option<CompletionReceiver> {
        lock(&self.running).get(id).cloned()
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
    fn announce(&self, id: &str) {
        if let Some(n) = lock(&self.awaited).get(id) {
            n.notify_waiters();
        }
    }

    /// Runs a background task tracked for shutdown.
    pub(crate) fn spawn_task(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Runs a workflow execution in the background.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spawn_execution(
        self: &Arc<Self>,
        def: &'static WorkflowDef,
        args: Vec<Value>,
        id: String,
        owner_xid: String,
        fresh: bool,
        deadline_ms: Option<i64>,
        slot: Option<RunningSlot>,
    ) -> CompletionReceiver {
        let (tx, rx) = watch::channel(None);
        lock(&self.running).insert(id.clone(), rx.clone());
        self.announce(&id);
        let rt = self.clone();
        self.tasks.spawn(async move {
            let completion = rt
                .execute(def, args, &id, owner_xid, fresh, deadline_ms)
                .await;
            drop(slot);
            lock(&rt.running).remove(&id);
            let _ = tx.send(Some(Arc::new(completion)));
        });
        rx
    }

    async fn execute(
        self: &Arc<Self>,
        def: &'static WorkflowDef,
        args: Vec<Value>,
        id: &str,
        owner_xid: String,
        fresh: bool,
        deadline_ms: Option<i64>,
    ) -> Completion {
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
        let ctx = Arc::new(WorkflowContext::new(
            self.clone(),
            id.to_owned(),
            owner_xid.clone(),
            deadline_ms,
            history,
        ));
        let invoked = ctx.clone().scope((def.invoke)(Args::new(def.name, args)));
        // A long durable sleep parks the workflow: the body is dropped where it sleeps and
        // the workflow is re-executed from its history at wake-up time.
        let parking = ctx.clone();
        let parked_owner: Box<str> = owner_xid.as_str().into();
        let body = async move {
            tokio::select! {
                biased;
                outcome = invoked => Some(outcome),
                wake_ms = parking.parked() => {
                    self.parking.park(wake_ms, id, Parked { owner_xid: parked_owner, def, deadline_ms });
                    None
                }
            }
        };
        let outcome = match deadline_ms {
            None => body.await,
            Some(deadline) => {
                let remaining = Duration::from_millis(
                    (deadline - crate::sysdb::workflows::now_ms()).max(0) as u64,
                );
                match tokio::time::timeout(remaining, body).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        tracing::info!(workflow_id = id, "workflow deadline passed; cancelling it");
                        if let Err(e) = Box::pin(self.sysdb.cancel_workflow(id)).await {
                            tracing::error!(workflow_id = id, error = %e, "could not cancel the timed-out workflow");
                        }
                        return Completion::Interrupted;
                    }
                }
            }
        };
        let Some(outcome) = outcome else {
            return Completion::Interrupted;
        };
        if let Some(fatal) = ctx.take_fatal() {
            tracing::info!(workflow_id = id, reason = %fatal, "workflow execution stopped without recording an outcome");
            return Completion::Interrupted;
        }
        let (status, output, error, done) = match outcome {
            Ok(value) => ("SUCCESS", Some(value.to_string()), None, Ok(value)),
            Err(ErasedError::Application(p)) => match p.to_text() {
                Ok(text) => ("ERROR", None, Some(text), Err(p)),
                Err(e) => {
                    tracing::error!(workflow_id = id, error = %e, "could not encode the workflow's error");
                    return Completion::Interrupted;
                }
            },
            Err(ErasedError::Runtime(e)) => {
                tracing::error!(
                    workflow_id = id, workflow = def.name, error = %e,
                    "the workflow cannot run; its row is left as it is for inspection"
                );
                return Completion::Interrupted;
            }
        };
        let finished = Box::pin(self.sysdb.finish_workflow(FinishRow {
            workflow_id: id,
            owner_xid: &owner_xid,
            status,
            output: output.as_deref(),
            error: error.as_deref(),
        }));
        match finished.await {
            Ok(true) => Completion::Done(done),
            Ok(false) => {
                tracing::info!(
                    workflow_id = id,
                    "another execution owns the workflow now; deferring to its outcome"
                );
                Completion::Interrupted
            }
            Err(e) => {
                tracing::error!(workflow_id = id, error = %e, "could not record the workflow's outcome; it will be recovered");
                Completion::Interrupted
            }
        }
    }

    /// Starts executing a workflow claimed from a queue (recovery included). `slot` counts
    /// it against the queue's worker concurrency until it ends.
    pub(crate) fn dispatch_claimed(
        self: &Arc<Self>,
        c: ClaimedWorkflow,
        slot: Option<RunningSlot>,
    ) {
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
                if let Err(e) = rt.sysdb.dead_letter(&c.id, &c.owner_xid).await {
                    tracing::error!(workflow_id = %c.id, error = %e, "could not dead-letter the workflow");
                }
                rt.announce(&c.id);
            });
            return;
        }
        let inputs = match PortableInputs::from_text(
            c.inputs.as_deref().unwrap_or("{}"),
            c.serialization.as_deref(),
        ) {
            Ok(i) if i.named_args.is_empty() => i,
            Ok(i) => {
                tracing::error!(
                    workflow_id = %c.id, named = ?i.named_args.keys().collect::<Vec<_>>(),
                    "the workflow's input has named arguments, which Rust workflows do not take; the row is left as it is"
                );
                return;
            }
            Err(e) => {
                tracing::error!(workflow_id = %c.id, error = %e, "the workflow's input does not decode; the row is left as it is");
                return;
            }
        };
        self.spawn_execution(
            def,
            inputs.positional_args,
            c.id,
            c.owner_xid,
            !c.has_history,
            c.deadline_ms,
            slot,
        );
    }
}

static CURRENT: Mutex<Option<Dbos>> = Mutex::new(None);

/// The launched runtime. Cheap to clone; clones share one pool and one set of executions.
#[derive(Debug, Clone)]
pub struct Dbos {
    inner: Arc<RuntimeInner>,
    local_postgres: Option<LocalPostgres>,
    migration: MigrationOutcome,
}

impl Dbos {
    /// Launches the runtime:
    /// 1. resolves the system database (the configured URL, or the embedded local Postgres),
    ///    creates the database if needed and brings the DBOS schema to version 125;
    /// 2. collects every `#[workflow]` of the binary (two with one name fail here, naming
    ///    both source locations) and computes the application version from their source,
    ///    unless configured; registers it in `application_versions`;
    /// 3. recovers this executor's `PENDING` workflows of this version: queued ones go back on
    ///    their own queue, the others on the internal queue, which it keeps serving;
    /// 4. becomes the process's current runtime, used by workflow calls made outside any
    ///    workflow.
    ///
    /// # Errors
    /// [`ErrorKind::Config`], [`ErrorKind::LocalPostgres`], [`ErrorKind::Connection`],
    /// [`ErrorKind::Schema`], [`ErrorKind::ConflictingRegistration`].
    pub async fn launch(config: Config) -> Result<Dbos> {
        config.validate()?;
        let registry = Registry::collect()?;
        let (url, local_postgres) = match &config.system_database_url {
            Some(url) => (url.clone(), None),
            None => {
                let pg = LocalPostgres::builder(&config.local_postgres_dir)
                    .start()
                    .await?;
                let url = pg.url(&local_database_name(&config.app_name));
                (url, Some(pg))
            }
        };
        let options = ConnectOptions {
            pool_size: config.pool_size,
            connect_timeout: config.connect_timeout,
            retry_for: config.connect_retry_for,
        };
        let sysdb = SystemDatabase::connect(&url, &config.schema, &options).await?;
        let migration = sysdb.migrate().await?;
        let app_version = config
            .application_version
            .clone()
            .unwrap_or_else(|| registry.computed_version().to_owned());
        sysdb
            .register_version(&app_version, &config.app_name)
            .await?;
        tracing::info!(
            database = %sysdb.redacted_url(),
            schema = %sysdb.schema(),
            version = migration.version(),
            app_version = %app_version,
            executor_id = %config.executor_id,
            local = local_postgres.is_some(),
            "system database ready"
        );
        let inner = Arc::new(RuntimeInner {
            app_name: config.app_name.clone(),
            executor_id: config.executor_id.clone(),
            app_version,
            registry,
            sysdb,
            config,
            running: Mutex::new(HashMap::new()),
            awaited: Mutex::default(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            queue_signals: Mutex::new(HashMap::new()),
            parking: ParkingLot::default(),
        });
        for queue in &inner.config.queues {
            inner.sysdb.upsert_queue(queue, &inner.app_name).await?;
        }
        let recovered = inner
            .sysdb
            .requeue_pending(&inner.executor_id, &inner.app_version, &inner.app_name)
            .await?;
        if !recovered.is_empty() {
            tracing::info!(
                count = recovered.len(),
                "recovering this executor's pending workflows"
            );
        }
        let internal = Queue::new(INTERNAL_QUEUE);
        inner.tasks.spawn(worker::serve(inner.clone(), internal));
        for queue in inner.config.queues.clone() {
            inner.tasks.spawn(worker::serve(inner.clone(), queue));
        }
        inner.tasks.spawn(worker::sweeps(inner.clone()));
        inner
            .tasks
            .spawn(crate::workflow::parking::serve(inner.clone()));
        let dbos = Dbos {
            inner,
            local_postgres,
            migration,
        };
        *lock(&CURRENT) = Some(dbos.clone());
        Ok(dbos)
    }

    /// The runtime launched last in this process.
    ///
    /// # Errors
    /// [`ErrorKind::NotLaunched`] before [`Dbos::launch`] or after [`Dbos::shutdown`].
    pub fn current() -> Result<Dbos> {
        lock(&CURRENT).clone().ok_or_else(|| {
            Error::new(
                ErrorKind::NotLaunched,
                "no runtime is launched: call `Dbos::launch(config).await` before running workflows (or pass one with `.on(&dbos)`)",
            )
        })
    }

    pub(crate) fn inner(&self) -> &Arc<RuntimeInner> {
        &self.inner
    }

    /// The system database handle.
    pub fn system_database(&self) -> &SystemDatabase {
        &self.inner.sysdb
    }

    /// The configuration the runtime was launched with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// What migration did at launch; its [`version`](MigrationOutcome::version) is the
    /// schema version now recorded.
    pub fn migration(&self) -> &MigrationOutcome {
        &self.migration
    }

    /// The embedded local Postgres, when no URL was configured.
    pub fn local_postgres(&self) -> Option<&LocalPostgres> {
        self.local_postgres.as_ref()
    }

    /// The application version recorded on this runtime's workflows.
    pub fn application_version(&self) -> &str {
        &self.inner.app_version
    }

    /// How many workflows are parked in a long durable sleep (holding no task; see
    /// [`Config::park_after`]).
    pub fn parked_workflows(&self) -> usize {
        self.inner.parking.len()
    }

    /// This runtime's executor id.
    pub fn executor_id(&self) -> &str {
        &self.inner.executor_id
    }

    /// A handle to any workflow by id, from any process.
    pub fn retrieve_workflow<T, E>(&self, id: impl Into<String>) -> WorkflowHandle<T, E>
    where
        T: crate::workflow::types::Portable,
        E: crate::workflow::types::WorkflowError,
    {
        WorkflowHandle::attach(self.inner.clone(), id.into())
    }

    /// Starts a registered workflow by name with JSON arguments: what a workflow call does,
    /// without the typed function.
    ///
    /// # Errors
    /// [`ErrorKind::WorkflowFunctionNotFound`] for an unknown name, and the errors of
    /// [`WorkflowCall::start`](crate::WorkflowCall::start).
    pub async fn start_workflow_by_name(
        &self,
        name: &str,
        args: Vec<Value>,
        id: Option<String>,
    ) -> Result<WorkflowHandle<Value, Error>> {
        let def = self.inner.registry.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::WorkflowFunctionNotFound,
                format!("no #[workflow] named `{name}` is registered in this binary"),
            )
        })?;
        let mut call = crate::workflow::call::WorkflowCall::<Value, Error>::new(
            def,
            args.into_iter().map(Ok).collect(),
        )
        .on(self);
        if let Some(id) = id {
            call = call.id(id);
        }
        call.start().await
    }

    /// Enqueues a workflow by name with JSON arguments onto `queue`, whether or not this
    /// binary has the workflow. Today any executor serving the queue may claim it, and one
    /// whose binary lacks the workflow logs an error and leaves it `PENDING` under its own
    /// executor id (recovered only by that id's next launch or [`Dbos::recover_executors`]);
    /// so serve the queue only from executors that have it. Planned work makes executors
    /// claim only workflows they can run.
    ///
    /// # Errors
    /// [`ErrorKind::ConflictingWorkflow`] when the id names another workflow, or a database
    /// error.
    pub async fn enqueue_by_name(
        &self,
        name: &str,
        queue: &str,
        args: Vec<Value>,
        id: Option<String>,
    ) -> Result<WorkflowHandle<Value, Error>> {
        crate::queue::enqueue::enqueue_by_name(&self.inner, name, queue, args, id).await
    }

    /// Recovers the `PENDING` workflows of executors known to be dead (of this application
    /// version): they go back on their queue (or the internal queue) and any live executor
    /// serving it finishes them. Returns their ids. What DBOS Conductor does for DBOS
    /// applications; call it from your own failure detector.
    ///
    /// # Errors
    /// A database error.
    pub async fn recover_executors(&self, executor_ids: &[&str]) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for executor in executor_ids {
            ids.extend(
                self.inner
                    .sysdb
                    .requeue_pending(executor, &self.inner.app_version, &self.inner.app_name)
                    .await?,
            );
        }
        self.inner.wake_all_queues();
        Ok(ids)
    }

    /// Cancels a workflow: it stops at its next durable operation and its status becomes
    /// `CANCELLED`. Workflows that finished with `SUCCESS` or `ERROR` are left as they are; a
    /// dead-lettered one (`MAX_RECOVERY_ATTEMPTS_EXCEEDED`) becomes `CANCELLED`, as in DBOS.
    ///
    /// # Errors
    /// [`ErrorKind::NonExistentWorkflow`] or a database error.
    pub async fn cancel_workflow(&self, id: &str) -> Result<()> {
        if !self.inner.sysdb.cancel_workflow(id).await?
            && self.inner.sysdb.workflow_outcome(id).await?.is_none()
        {
            return Err(Error::new(
                ErrorKind::NonExistentWorkflow,
                format!("no workflow has the id `{id}`"),
            ));
        }
        Ok(())
    }

    /// Stops the runtime gracefully: takes no new work, lets running workflows finish their
    /// in-flight step (they stop at their next durable operation and stay `PENDING`, to be
    /// recovered by the next launch of this executor id or by [`Dbos::recover_executors`]),
    /// waits up to `timeout` for them, and closes the pool.
    /// The embedded Postgres keeps running so the next launch reuses it.
    ///
    /// # Errors
    /// None today; the signature leaves room for reporting work that did not stop in time.
    pub async fn shutdown_with_timeout(self, timeout: Duration) -> Result<()> {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(timeout, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?timeout,
                "some workflows did not stop in time; they will be recovered at the next launch"
            );
        }
        {
            let mut current = lock(&CURRENT);
            if current
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(&c.inner, &self.inner))
            {
                *current = None;
            }
        }
        self.inner.sysdb.close();
        Ok(())
    }

    /// [`shutdown_with_timeout`](Self::shutdown_with_timeout) with 10 seconds.
    ///
    /// # Errors
    /// As `shutdown_with_timeout`.
    pub async fn shutdown(self) -> Result<()> {
        self.shutdown_with_timeout(Duration::from_secs(10)).await
    }
}

/// The database the embedded Postgres holds for an application: `<app>_dbos_sys`.
pub(crate) fn local_database_name(app_name: &str) -> String {
    format!("{}_dbos_sys", app_name.replace('-', "_").to_lowercase())
}
