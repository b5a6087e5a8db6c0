//! The runtime: [`Dbos::launch`] connects to (or starts) the system database, migrates it,
//! registers the application version, recovers this executor's pending workflows, and serves
//! the internal queue until [`Dbos::shutdown`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::local_postgres::LocalPostgres;
use crate::queue::worker;
use crate::queue::Queue;
use crate::sysdb::workflows::INTERNAL_QUEUE;
use crate::sysdb::{ConnectOptions, MigrationOutcome, SystemDatabase};
use crate::workflow::call::WorkflowHandle;
use crate::workflow::context::lock;
use crate::workflow::execution::Running;
use crate::workflow::parking::ParkingLot;
use crate::workflow::registry::Registry;

/// State shared by every handle, call and execution of one launched runtime.
pub(crate) struct RuntimeInner {
    pub(crate) config: Config,
    pub(crate) sysdb: SystemDatabase,
    pub(crate) registry: Registry,
    pub(crate) app_version: String,
    pub(crate) app_name: String,
    pub(crate) executor_id: String,
    /// The executions running in this process.
    pub(crate) running: Running,
    /// Handles waiting for a workflow that is not running here (yet), by workflow id.
    pub(crate) awaited: Mutex<HashMap<String, Arc<Notify>>>,
    pub(crate) tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    /// Stops the scheduler: at shutdown (a child of `shutdown`), or when the executor is
    /// deactivated (the admin API's `/deactivate`: no new scheduled workflows from here).
    pub(crate) schedules_stop: CancellationToken,
    /// Where the admin server listens, once it does.
    #[cfg(feature = "admin")]
    pub(crate) admin_address: std::sync::OnceLock<std::net::SocketAddr>,
    queue_signals: Mutex<HashMap<String, Arc<Notify>>>,
    pub(crate) parking: ParkingLot,
    /// The application data sources `#[transaction]`s run in, by name.
    pub(crate) data_sources: crate::transaction::DataSources,
    /// Who waits here for messages, events and streams (woken by the listener).
    pub(crate) waiters: crate::messages::waiters::Waiters,
    /// The embedded local Postgres, when no URL was configured.
    local_postgres: Option<LocalPostgres>,
    /// What migration did at launch.
    migration: MigrationOutcome,
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
    /// A runtime that does nothing by itself: no migration, no version registered, no
    /// recovery, queue, scheduler or other background task. What a replay runs bodies in.
    pub(crate) fn detached(
        config: Config,
        sysdb: SystemDatabase,
        schema_version: i64,
    ) -> Result<Arc<RuntimeInner>> {
        let registry = Registry::collect()?;
        let app_version = config
            .application_version
            .clone()
            .unwrap_or_else(|| registry.computed_version().to_owned());
        let migration = match schema_version {
            v if v > crate::sysdb::SCHEMA_VERSION => MigrationOutcome::Ahead { found: v },
            _ => MigrationOutcome::UpToDate,
        };
        Ok(Arc::new(RuntimeInner::idle(
            config,
            sysdb,
            registry,
            app_version,
            "dbos-replay".to_owned(),
            migration,
        )))
    }

    /// The runtime's state before anything runs (no data source, no local Postgres).
    fn idle(
        config: Config,
        sysdb: SystemDatabase,
        registry: Registry,
        app_version: String,
        executor_id: String,
        migration: MigrationOutcome,
    ) -> RuntimeInner {
        let shutdown = CancellationToken::new();
        RuntimeInner {
            app_name: config.app_name.clone(),
            executor_id,
            app_version,
            registry,
            sysdb,
            config,
            running: Running::default(),
            awaited: Mutex::default(),
            tasks: TaskTracker::new(),
            schedules_stop: shutdown.child_token(),
            shutdown,
            #[cfg(feature = "admin")]
            admin_address: std::sync::OnceLock::new(),
            queue_signals: Mutex::new(HashMap::new()),
            parking: ParkingLot::default(),
            data_sources: Default::default(),
            waiters: Default::default(),
            local_postgres: None,
            migration,
        }
    }

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

    /// Runs a background task tracked for shutdown.
    pub(crate) fn spawn_task(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Who this executor is when it claims queued work: it claims only what it can run.
    pub(crate) fn dequeuer(&self) -> crate::sysdb::queues::Dequeuer<'_> {
        crate::sysdb::queues::Dequeuer {
            executor_id: &self.executor_id,
            app_version: &self.app_version,
            app_name: &self.app_name,
            names: self.registry.names(),
        }
    }

    /// The workflows alive in this process (running or parked): recovery leaves them to
    /// their live execution.
    pub(crate) fn alive_here(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .running
            .snapshot()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.extend(self.parking.ids());
        ids
    }
}

tokio::task_local! {
    /// The runtime of the current scope (a test), if one was set: see
    /// [`Dbos::scope`].
    static SCOPE: Arc<Mutex<Option<Dbos>>>;
}

static CURRENT: Mutex<Option<Dbos>> = Mutex::new(None);

/// The launched runtime. Cheap to clone; clones share one pool and one set of executions.
#[derive(Debug, Clone)]
pub struct Dbos {
    inner: Arc<RuntimeInner>,
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
                let dir = match &config.local_postgres_dir {
                    Some(dir) => dir.clone(),
                    None => LocalPostgres::default_dir(&config.app_name)?,
                };
                let mut builder = LocalPostgres::builder(dir);
                if !config.keep_local_postgres {
                    builder = builder.stop_when_unused(config.local_postgres_idle_stop);
                }
                let pg = builder.start().await?;
                let url = pg.url(&local_database_name(&config.app_name));
                (url, Some(pg))
            }
        };
        let options = ConnectOptions {
            pool_size: config.pool_size,
            connect_timeout: config.connect_timeout,
            retry_for: config.connect_retry_for,
            pooler: config.pooler,
            session_url: config.session_url.clone(),
        };
        let sysdb = SystemDatabase::connect(&url, &config.schema, &options).await?;
        let executor_id = config
            .executor_id
            .clone()
            .unwrap_or_else(crate::recovery::generated_executor_id);
        // Every launch statement rides out a connection lost midway, within the
        // connect-retry window.
        let migration = sysdb.migrate().await?;
        let data_sources = crate::transaction::DataSources::connect(&config, &url).await?;
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
            executor_id = %executor_id,
            local_postgres = %local_postgres
                .as_ref()
                .map(|pg| format!("{} (port {})", pg.root().display(), pg.port()))
                .unwrap_or_else(|| "none (a URL is configured)".to_owned()),
            "system database ready"
        );
        let inner = Arc::new(RuntimeInner {
            data_sources,
            local_postgres,
            ..RuntimeInner::idle(config, sysdb, registry, app_version, executor_id, migration)
        });
        // Queue definitions live in `dbos.queues`: record ours (DBOS's conflict policy) and
        // serve what the rows say.
        let latest = inner
            .sysdb
            .is_latest_version(&inner.app_version, &inner.app_name)
            .await?;
        let mut queues = Vec::new();
        for queue in &inner.config.queues {
            let update = match queue.on_conflict {
                crate::queue::QueueConflict::AlwaysUpdate => true,
                crate::queue::QueueConflict::NeverUpdate => false,
                crate::queue::QueueConflict::UpdateIfLatestVersion => latest,
            };
            queues.push(
                inner
                    .sysdb
                    .upsert_queue(queue, &inner.app_name, update)
                    .await?,
            );
        }
        crate::schedule::register_static(&inner).await?;
        // This executor's lock, held for its lifetime; and its own pending work, when a
        // pinned id comes back.
        let liveness = crate::recovery::start(&inner).await?;
        // Launched: from now on an outage only delays work. Statements wait for the
        // database to come back, however long that takes.
        inner.sysdb.resilience().retry_forever();
        inner.data_sources.retry_forever();
        #[cfg(feature = "admin")]
        crate::admin::start_in_runtime(&inner).await?;
        let internal = Queue::new(INTERNAL_QUEUE);
        crate::observe::metrics::describe();
        inner.tasks.spawn(worker::serve(inner.clone(), internal));
        for queue in queues {
            inner.tasks.spawn(worker::serve(inner.clone(), queue));
        }
        inner.tasks.spawn(worker::sweeps(inner.clone()));
        inner
            .tasks
            .spawn(crate::workflow::parking::serve(inner.clone()));
        inner
            .tasks
            .spawn(crate::workflow::watchdog::serve(inner.clone()));
        inner
            .tasks
            .spawn(crate::recovery::serve_liveness(inner.clone(), liveness));
        inner
            .tasks
            .spawn(crate::messages::waiters::serve(inner.clone()));
        inner
            .tasks
            .spawn(crate::schedule::runner::serve(inner.clone()));
        let dbos = Dbos { inner };
        *lock(&CURRENT) = Some(dbos.clone());
        // Inside a scope (a test), calls made there use this runtime.
        let _ = SCOPE.try_with(|slot| *lock(slot) = Some(dbos.clone()));
        Ok(dbos)
    }

    /// Runs `future` in a runtime scope: a [`Dbos::launch`] inside it becomes the runtime
    /// that workflow calls made inside it use (without `.on(&dbos)`), whatever other runtimes
    /// the process launches. `#[dbos_testkit::test]` runs every test in its own scope, so
    /// parallel tests in one process each use their own database. Tasks spawned inside do
    /// not inherit the scope.
    pub async fn scope<F: std::future::Future>(future: F) -> F::Output {
        SCOPE.scope(Arc::new(Mutex::new(None)), future).await
    }

    /// The runtime workflow calls use when none is given with `.on(&dbos)`: inside a
    /// workflow or a step, the runtime running it; elsewhere the one launched in the current
    /// [`scope`](Dbos::scope) if there is one, else the one launched last in this process.
    ///
    /// # Errors
    /// [`ErrorKind::NotLaunched`] before [`Dbos::launch`] or after [`Dbos::shutdown`].
    pub fn current() -> Result<Dbos> {
        if let Some(ctx) = crate::workflow::context::current() {
            return Ok(Dbos {
                inner: ctx.runtime.clone(),
            });
        }
        if let Some(step) = crate::workflow::context::current_step() {
            return Ok(Dbos {
                inner: step.runtime.clone(),
            });
        }
        if let Ok(Some(scoped)) = SCOPE.try_with(|slot| lock(slot).clone()) {
            return Ok(scoped);
        }
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

    /// The application data source `name` (see [`Config::data_source`]), e.g. to create the
    /// application's tables, or `None` when the configuration has none by that name.
    pub fn data_source(&self, name: &str) -> Option<&crate::transaction::DataSource> {
        self.inner.data_sources.get(name).map(|s| &**s)
    }

    /// The configuration the runtime was launched with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// What migration did at launch; its [`version`](MigrationOutcome::version) is the
    /// schema version now recorded.
    pub fn migration(&self) -> &MigrationOutcome {
        &self.inner.migration
    }

    /// The embedded local Postgres, when no URL was configured.
    pub fn local_postgres(&self) -> Option<&LocalPostgres> {
        self.inner.local_postgres.as_ref()
    }

    /// The application version recorded on this runtime's workflows.
    pub fn application_version(&self) -> &str {
        &self.inner.app_version
    }

    /// How many workflows are parked in a long durable sleep, `recv` or `get_event` (holding
    /// no task; see [`Config::park_after`]).
    pub fn parked_workflows(&self) -> usize {
        self.inner.parking.len()
    }

    /// This runtime's executor id.
    pub fn executor_id(&self) -> &str {
        &self.inner.executor_id
    }

    /// Where the admin server started by [`Config::admin_server`] listens (`None` when it
    /// is not configured): its port when the configuration asked for port 0.
    #[cfg(feature = "admin")]
    pub fn admin_address(&self) -> Option<std::net::SocketAddr> {
        self.inner.admin_address.get().copied()
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
    /// serving it finishes them. Returns their ids. Workflows running (or parked) in this
    /// process are left to their live execution, even when this executor's id is named. What DBOS Conductor does for DBOS
    /// applications; call it from your own failure detector.
    ///
    /// # Errors
    /// A database error.
    pub async fn recover_executors(&self, executor_ids: &[&str]) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let alive = self.inner.alive_here();
        for executor in executor_ids {
            ids.extend(
                self.inner
                    .sysdb
                    .requeue_pending(
                        executor,
                        &self.inner.app_version,
                        &self.inner.app_name,
                        &alive,
                    )
                    .await?,
            );
        }
        self.inner.wake_all_queues();
        Ok(ids)
    }

    /// How many workflow executions run in this process right now (parked ones excepted).
    pub fn running_workflows(&self) -> usize {
        self.inner.running.len()
    }

    /// Stops the runtime gracefully: takes no new work, lets running workflows finish their
    /// in-flight step (they stop at their next durable operation and stay `PENDING`, to be
    /// recovered by the next launch of this executor id or by [`Dbos::recover_executors`]),
    /// waits up to `timeout` for them, and closes the pool.
    /// The embedded Postgres it started stops itself once no process uses it, unless
    /// [`Config::keep_local_postgres`] keeps it running.
    ///
    /// # Errors
    /// None today; the signature leaves room for reporting work that did not stop in time.
    pub async fn shutdown_with_timeout(self, timeout: Duration) -> Result<()> {
        self.inner.shutdown.cancel();
        // Work that cannot reach the database now stays PENDING for recovery instead of
        // holding the shutdown up.
        self.inner.sysdb.resilience().give_up();
        self.inner.data_sources.give_up();
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
        let _ = SCOPE.try_with(|slot| {
            let mut slot = lock(slot);
            if slot
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(&c.inner, &self.inner))
            {
                *slot = None;
            }
        });
        self.inner.sysdb.close();
        self.inner.data_sources.close();
        if let Some(pg) = &self.inner.local_postgres {
            pg.release();
        }
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
    LocalPostgres::database_for_app(app_name)
}
