//! Runtime configuration.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Environment variable holding the system database URL.
pub const ENV_SYSTEM_DATABASE_URL: &str = "DBOS_SYSTEM_DATABASE_URL";
/// Environment variable holding the system schema name (DBOS's `--schema`).
pub const ENV_SYSTEM_SCHEMA: &str = "DBOS_SYSTEM_SCHEMA";
/// Environment variable holding the executor id (as in every DBOS SDK).
pub const ENV_EXECUTOR_ID: &str = "DBOS__VMID";
/// Environment variable overriding the application version.
pub const ENV_APP_VERSION: &str = "DBOS__APPVERSION";
/// The prefix of generated executor ids.
pub const GENERATED_EXECUTOR_PREFIX: &str = "dbos-rs-";

/// Environment variable choosing the folder of the embedded local Postgres.
pub const ENV_LOCAL_POSTGRES_DIR: &str = "DBOS_LOCAL_POSTGRES_DIR";
/// Environment variable keeping the embedded local Postgres running after the application
/// exits (`1` or `true`); see [`Config::keep_local_postgres`].
pub const ENV_KEEP_LOCAL_POSTGRES: &str = "DBOS_KEEP_LOCAL_POSTGRES";

/// Environment variable choosing [`Config::pooler`]: `auto` (the default), `none` or
/// `transaction`.
pub const ENV_POOLER: &str = "DBOS_POOLER";
/// Environment variable holding [`Config::session_url`].
pub const ENV_SESSION_URL: &str = "DBOS_SYSTEM_DATABASE_SESSION_URL";

/// Whether a connection pooler in transaction mode stands between this process and the
/// system database (see the Production chapter, "Connection poolers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolerMode {
    /// Find out at launch (the default): the first connection asks two client connections
    /// for their server process; when the server behind one changes between two
    /// transactions (or two share one), a transaction-mode pooler is in the path and the
    /// process behaves as with [`Transaction`](Self::Transaction).
    #[default]
    Auto,
    /// No pooler, or one in session mode: statements are prepared under names and cached per
    /// connection. Nothing is probed at launch.
    None,
    /// A pooler in transaction mode (PgBouncer's `pool_mode = transaction`, a managed
    /// service's pooled endpoint): every statement is sent unnamed, and nothing relies on a
    /// connection's session lasting beyond one transaction. Nothing is probed at launch.
    Transaction,
}

impl std::str::FromStr for PoolerMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(PoolerMode::Auto),
            "none" | "session" => Ok(PoolerMode::None),
            "transaction" => Ok(PoolerMode::Transaction),
            _ => Err(Error::config(format!(
                "{ENV_POOLER}={s:?} is not a pooler mode: write `auto` (find out at launch), `none` (a direct \
                 connection or a session-mode pool) or `transaction` (a transaction-mode pooler)"
            ))),
        }
    }
}

/// How the runtime connects to and uses its system database.
///
/// ```
/// use std::time::Duration;
/// use dbos_core::Config;
///
/// let config = Config::new("shop")
///     .system_database_url("postgres://app:secret@db.internal:5432/shop_sys?sslmode=require")
///     .pool_size(10)
///     .connect_timeout(Duration::from_secs(5));
/// assert_eq!(config.app_name(), "shop");
/// ```
#[derive(Clone)]
pub struct Config {
    pub(crate) app_name: String,
    pub(crate) system_database_url: Option<String>,
    pub(crate) schema: String,
    pub(crate) pool_size: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) connect_retry_for: Duration,
    /// `None`: a unique id is generated at each launch.
    pub(crate) executor_id: Option<String>,
    pub(crate) application_version: Option<String>,
    /// `None`: [`LocalPostgres::default_dir`](crate::local_postgres::LocalPostgres::default_dir).
    pub(crate) local_postgres_dir: Option<PathBuf>,
    pub(crate) keep_local_postgres: bool,
    pub(crate) local_postgres_idle_stop: Duration,
    pub(crate) queues: Vec<crate::queue::Queue>,
    pub(crate) park_after: Duration,
    pub(crate) cancel_poll_interval: Duration,
    pub(crate) recovery_interval: Duration,
    pub(crate) recovery_grace: Duration,
    pub(crate) vanished_executor_timeout: Duration,
    pub(crate) recoverable_prefixes: Vec<String>,
    pub(crate) data_sources: Vec<crate::transaction::DataSourceConfig>,
    pub(crate) scheduler_polling_interval: Duration,
    pub(crate) clock: crate::clock::Clock,
    pub(crate) pooler: PoolerMode,
    pub(crate) session_url: Option<String>,
    /// The admin HTTP server and dashboard, when enabled.
    #[cfg(feature = "admin")]
    pub(crate) admin: Option<crate::admin::AdminServer>,
    pub(crate) wait_poll_interval: Option<Duration>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("app_name", &self.app_name)
            .field(
                "system_database_url",
                &self
                    .system_database_url
                    .as_deref()
                    .map(crate::sysdb::redact_url),
            )
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("connect_retry_for", &self.connect_retry_for)
            .field("executor_id", &self.executor_id)
            .field("application_version", &self.application_version)
            .field("local_postgres_dir", &self.local_postgres_dir)
            .field("keep_local_postgres", &self.keep_local_postgres)
            .field("local_postgres_idle_stop", &self.local_postgres_idle_stop)
            .field(
                "queues",
                &self.queues.iter().map(|q| q.name()).collect::<Vec<_>>(),
            )
            .field("data_sources", &self.data_sources)
            .field("clock", &self.clock)
            .field("pooler", &self.pooler)
            .field(
                "session_url",
                &self.session_url.as_deref().map(crate::sysdb::redact_url),
            )
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A configuration for the application `app_name` with every default: the embedded local
    /// Postgres, schema `dbos`, a generated executor id.
    pub fn new(app_name: impl Into<String>) -> Self {
        Config {
            app_name: app_name.into(),
            system_database_url: None,
            schema: "dbos".to_owned(),
            pool_size: 20,
            connect_timeout: Duration::from_secs(10),
            connect_retry_for: Duration::from_secs(30),
            executor_id: None,
            application_version: None,
            local_postgres_dir: None,
            keep_local_postgres: false,
            local_postgres_idle_stop: crate::local_postgres::APP_IDLE_STOP,
            queues: Vec::new(),
            park_after: Duration::from_secs(10),
            cancel_poll_interval: Duration::from_millis(500),
            recovery_interval: Duration::from_secs(2),
            recovery_grace: Duration::from_secs(10),
            vanished_executor_timeout: Duration::from_secs(30),
            recoverable_prefixes: vec![GENERATED_EXECUTOR_PREFIX.to_owned()],
            data_sources: Vec::new(),
            scheduler_polling_interval: Duration::from_secs(30),
            clock: crate::clock::Clock::system(),
            pooler: PoolerMode::Auto,
            session_url: None,
            #[cfg(feature = "admin")]
            admin: None,
            wait_poll_interval: None,
        }
    }

    /// A configuration read from the environment:
    /// `DBOS_SYSTEM_DATABASE_URL` (unset: the embedded local Postgres),
    /// `DBOS_SYSTEM_SCHEMA`, `DBOS__VMID` (executor id), `DBOS__APPVERSION`,
    /// `DBOS_LOCAL_POSTGRES_DIR`, `DBOS_KEEP_LOCAL_POSTGRES` (`1`/`true`/`0`/`false`),
    /// `DBOS_POOLER` (`auto`/`none`/`transaction`, see [`Config::pooler`]),
    /// `DBOS_SYSTEM_DATABASE_SESSION_URL` (see [`Config::session_url`]).
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when the application name is invalid,
    /// `DBOS_KEEP_LOCAL_POSTGRES` is not one of `1`, `true`, `0`, `false`, or `DBOS_POOLER`
    /// not one of `auto`, `none`, `transaction`.
    pub fn from_env(app_name: impl Into<String>) -> Result<Self> {
        let mut config = Config::new(app_name);
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(url) = var(ENV_SYSTEM_DATABASE_URL) {
            config.system_database_url = Some(url);
        }
        if let Some(schema) = var(ENV_SYSTEM_SCHEMA) {
            config.schema = schema;
        }
        if let Some(id) = var(ENV_EXECUTOR_ID) {
            config.executor_id = Some(id);
        }
        if let Some(v) = var(ENV_APP_VERSION) {
            config.application_version = Some(v);
        }
        if let Some(dir) = var(ENV_LOCAL_POSTGRES_DIR) {
            config.local_postgres_dir = Some(PathBuf::from(dir));
        }
        if let Some(mode) = var(ENV_POOLER) {
            config.pooler = mode.parse()?;
        }
        if let Some(url) = var(ENV_SESSION_URL) {
            config.session_url = Some(url);
        }
        if let Some(keep) = var(ENV_KEEP_LOCAL_POSTGRES) {
            config.keep_local_postgres = match keep.trim().to_ascii_lowercase().as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => {
                    return Err(Error::config(format!(
                        "{ENV_KEEP_LOCAL_POSTGRES}={keep:?} is not a yes or no: write 1 or true to keep \
                         the local Postgres running after the application exits, 0 or false (or \
                         leave it unset) to let it stop"
                    )))
                }
            };
        }
        config.validate()?;
        Ok(config)
    }

    /// Uses this Postgres URL (`postgres://user:pass@host:port/db?sslmode=require`) as the
    /// system database instead of the embedded local Postgres. A missing database is created.
    pub fn system_database_url(mut self, url: impl Into<String>) -> Self {
        self.system_database_url = Some(url.into());
        self
    }

    /// Whether a connection pooler in transaction mode is between this process and the system
    /// database (default [`PoolerMode::Auto`]: found out at launch). Behind one, every
    /// statement is sent unnamed (parsed with each execution), and the connections that need a
    /// lasting session (the notification listener, the executor lock) go to
    /// [`session_url`](Self::session_url); without one, waits poll (see
    /// [`wait_poll_interval`](Self::wait_poll_interval)) and the executor proves it lives with
    /// a lease renewed in short transactions, recovered by peers once it has expired
    /// ([`vanished_executor_timeout`](Self::vanished_executor_timeout) after the last
    /// renewal). `DBOS_POOLER` sets it from the environment.
    pub fn pooler(mut self, mode: PoolerMode) -> Self {
        self.pooler = mode;
        self
    }

    /// A URL of the system database that reaches Postgres directly (or through a
    /// session-mode pool), for the two connections of an executor that keep a session: its
    /// notification listener and its executor lock. Behind a transaction-mode pooler (see
    /// [`pooler`](Self::pooler)) it keeps waits woken by notifications and liveness on the
    /// lock; without a pooler the system database URL serves. Must name the same database.
    /// Every executor of an application uses the same setup: with or without a session URL. `DBOS_SYSTEM_DATABASE_SESSION_URL` sets it from the
    /// environment.
    pub fn session_url(mut self, url: impl Into<String>) -> Self {
        self.session_url = Some(url.into());
        self
    }

    /// How often waits (`recv`, `get_event`, stream reads, parked workflows) look at the
    /// tables when no notification can wake them: behind a transaction-mode pooler without a
    /// [`session_url`](Self::session_url) there is no listener, and they look every 100 ms by
    /// default (one statement per kind of wait, only while something waits); with a listener,
    /// while it reconnects, every second by default. A message or event then reaches its
    /// waiter within about this long.
    pub fn wait_poll_interval(mut self, interval: Duration) -> Self {
        self.wait_poll_interval = Some(interval);
        self
    }

    /// The schema holding the DBOS tables (default `dbos`).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The maximum number of pooled connections to the system database (default 20). The
    /// executor also opens up to 2 side connections, its lock session and its notification
    /// listener (see the Production chapter, "Connection budget").
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// How long one connection attempt to one host may take (default 10 s). With several
    /// hosts in the URL, each gets this long before the next is tried.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long transient connection failures are retried, with backoff, before they are
    /// reported (default 30 s).
    pub fn connect_retry_for(mut self, duration: Duration) -> Self {
        self.connect_retry_for = duration;
        self
    }

    /// Pins this process's executor id (default: a unique id per launch, `dbos-rs-<host>-<random>`;
    /// `DBOS__VMID` pins one from the environment).
    ///
    /// Every executor holds a Postgres advisory lock on its id while it lives. With a
    /// generated id, a process that dies is recovered by whichever live executor notices
    /// first (itself included, once restarted): no id needs to come back. A pinned id is
    /// recovered by its next launch under that id, as soon as that launch holds the id's
    /// lock (at once, or when the previous process's session ends), or by
    /// [`Dbos::recover_executors`](crate::Dbos::recover_executors); and by peers only if it
    /// matches [`Config::recover_executors_with_prefix`].
    pub fn executor_id(mut self, id: impl Into<String>) -> Self {
        self.executor_id = Some(id.into());
        self
    }

    /// Lets live executors recover the work of dead executors whose id starts with
    /// `prefix`, as they do for generated ids (`dbos-rs-`). Use it for pinned ids that may
    /// not come back (`worker-` for `worker-1`, `worker-2`, ...). Ids of executors that do
    /// not hold this library's lock (workers in other languages) must not match.
    pub fn recover_executors_with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.recoverable_prefixes.push(prefix.into());
        self
    }

    /// How often this executor looks for dead executors to recover (default 2 s): one query
    /// for the executor ids owning `PENDING` workflows of this version, and a lock attempt
    /// per id found.
    pub fn recovery_interval(mut self, interval: Duration) -> Self {
        self.recovery_interval = interval;
        self
    }

    /// How long a lock connection that has just been (re)opened waits before this executor
    /// recovers another executor's work (default 10 s). After a database restart every
    /// executor reconnects and takes its lock back two recovery intervals later; the grace,
    /// longer, keeps the first to reconnect from taking over the work of live peers meanwhile.
    /// Keep it above twice the recovery interval plus the time a reconnection takes.
    ///
    /// A launch (an application restarted after a crash, say) does not wait it out when the
    /// database server has been up for at least this long: it recovers at once the executors
    /// whose lock is free and whose lock session is gone. On a server up for less, it waits
    /// the rest of the grace.
    pub fn recovery_grace(mut self, grace: Duration) -> Self {
        self.recovery_grace = grace;
        self
    }

    /// How long Postgres keeps this executor's lock after its machine vanished without
    /// closing its connections (power loss, a network cut, a VM destroyed): about this long
    /// (default 30 s), rather than the two hours and more of the server's default TCP
    /// keepalives, after which peers recover its work.
    ///
    /// The lock connection asks the server to probe it with TCP keepalives (its
    /// `tcp_keepalives_idle`, `_interval` and `_count` settings, and `tcp_user_timeout`,
    /// for that session only). A live executor answers the probes from its kernel, however
    /// busy or idle it is; a partition longer than this timeout makes it look dead, and its
    /// work moves to a peer (its own executions stop at their next step). At least 3 s.
    ///
    /// Behind a transaction-mode pooler without a [`session_url`](Self::session_url) it is
    /// the length of the executor's lease instead, renewed every recovery interval (at least
    /// three times per lease): peers recover the work of an executor that has not renewed
    /// for this long.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = dbos_core::Config::new("shop").vanished_executor_timeout(Duration::from_secs(60));
    /// # let _ = config;
    /// ```
    pub fn vanished_executor_timeout(mut self, timeout: Duration) -> Self {
        self.vanished_executor_timeout = timeout;
        self
    }

    /// Overrides the application version (default: computed from the workflows' source).
    pub fn application_version(mut self, version: impl Into<String>) -> Self {
        self.application_version = Some(version.into());
        self
    }

    /// The folder of the embedded local Postgres. The default does not depend on the working
    /// directory: one folder per application,
    /// [`LocalPostgres::default_dir`](crate::local_postgres::LocalPostgres::default_dir)
    /// (`$XDG_DATA_HOME/dbos-rs/<app>`, else `~/.local/share/dbos-rs/<app>`).
    pub fn local_postgres_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.local_postgres_dir = Some(dir.into());
        self
    }

    /// Keeps the embedded local Postgres running after the application exits (default
    /// `false`; `DBOS_KEEP_LOCAL_POSTGRES=1` from the environment). By default a server that
    /// [`Dbos::launch`](crate::Dbos::launch) starts stops itself about
    /// [`APP_IDLE_STOP`](crate::local_postgres::APP_IDLE_STOP) (5 s) after the last process
    /// using it ends (shut down, exited or killed) and its last client disconnects; the next
    /// launch starts it again with its data. Keep it running to connect to it between runs
    /// (`psql "$(dbos-rs postgres url --app <name>)"`); stop it then with
    /// `dbos-rs postgres stop --app <name>`. No effect with a system database URL.
    pub fn keep_local_postgres(mut self, keep: bool) -> Self {
        self.keep_local_postgres = keep;
        self
    }

    /// How long the embedded local Postgres that [`Dbos::launch`](crate::Dbos::launch) starts
    /// stays up once unused before stopping itself (default
    /// [`APP_IDLE_STOP`](crate::local_postgres::APP_IDLE_STOP), 5 s; see
    /// [`LocalPostgresBuilder::stop_when_unused`](crate::local_postgres::LocalPostgresBuilder::stop_when_unused)).
    /// Tests shorten it to see the stop sooner. No effect with
    /// [`keep_local_postgres`](Self::keep_local_postgres), with a system database URL, or
    /// when the launch reuses a server that is already running (its starter's limit holds).
    pub fn local_postgres_idle_stop(mut self, idle: Duration) -> Self {
        self.local_postgres_idle_stop = idle;
        self
    }

    /// Registers a queue: its definition is recorded in `dbos.queues` at launch and this
    /// executor serves it (the internal queue is always served).
    pub fn queue(mut self, queue: &crate::queue::Queue) -> Self {
        self.queues.retain(|q| q.name() != queue.name());
        self.queues.push(queue.clone());
        self
    }

    /// How often the scheduler reads the schedules (default 30 s, as DBOS; every second
    /// during the first minute after launch): a schedule created, paused, resumed, changed
    /// or deleted is noticed within this interval.
    pub fn scheduler_polling_interval(mut self, interval: Duration) -> Self {
        self.scheduler_polling_interval = interval;
        self
    }

    /// The source of durable time (default [`Clock::system`](crate::clock::Clock::system)):
    /// sleep wake-ups, [`now()`](crate::now), `recv` and `get_event` timeouts, schedule
    /// ticks and queue delays. A test gives a [`Clock::manual`](crate::clock::Clock::manual)
    /// (`dbos_testkit::TestClock`) and advances it; workflow timeouts, polling, leases and
    /// retries stay on real time. See the book's "Time in tests".
    pub fn clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Durable sleeps at least this long park the workflow (default 10 s): its execution ends
    /// and it is re-executed from its history at wake-up time, so a sleeping workflow holds
    /// no memory beyond a small entry. Shorter sleeps wait in place. A `recv` or `get_event`
    /// that has waited this long with at least as long still to go is parked the same way,
    /// and re-executed as soon as its message or event arrives.
    pub fn park_after(mut self, duration: Duration) -> Self {
        self.park_after = duration;
        self
    }

    /// How often the executor checks whether a workflow it runs was cancelled from outside
    /// this process (by another process, DBOS's CLI or SQL): one query over every workflow
    /// running here (default 500 ms). A cancelled workflow starts no further operation; this
    /// interval bounds how long a remote cancel takes to be noticed. Cancels made through
    /// this runtime take effect at once.
    pub fn cancel_poll_interval(mut self, interval: Duration) -> Self {
        self.cancel_poll_interval = interval;
        self
    }

    /// Adds the application data source `name` at `url`: a database apart from the system
    /// database where `#[transaction(datasource = "name")]` functions run, each with its own
    /// pool (default 10 connections) and the completion table `dbos.datasource_outputs`,
    /// created at launch if missing. A second data source with the same name replaces the
    /// first. See [`DataSourceConfig`](crate::DataSourceConfig) for the other settings.
    pub fn data_source(self, name: impl Into<String>, url: impl Into<String>) -> Self {
        self.add_data_source(crate::transaction::DataSourceConfig::url(name, url))
    }

    /// Adds an application data source with its settings (schema, pool size, or a database
    /// on the system database's server); see [`data_source`](Self::data_source).
    pub fn add_data_source(mut self, source: crate::transaction::DataSourceConfig) -> Self {
        self.data_sources.retain(|d| d.name != source.name);
        self.data_sources.push(source);
        self
    }

    /// The application name.
    pub fn app_name(&self) -> &str {
        &self.app_name
    }

    /// The configured system schema name.
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    /// The pinned executor id, if one was configured (else each launch generates one: see
    /// [`Dbos::executor_id`](crate::Dbos::executor_id)).
    pub fn executor_id_value(&self) -> Option<&str> {
        self.executor_id.as_deref()
    }

    /// Serves the admin HTTP API and the web dashboard from this process while it runs
    /// (off by default; needs the `admin` cargo feature). See the
    /// [`admin`](crate::admin) module.
    ///
    /// ```
    /// use dbos_core::admin::AdminServer;
    /// use dbos_core::Config;
    ///
    /// let config = Config::new("shop").admin_server(AdminServer::new(3001));
    /// # let _ = config;
    /// ```
    #[cfg(feature = "admin")]
    pub fn admin_server(mut self, server: crate::admin::AdminServer) -> Self {
        self.admin = Some(server);
        self
    }

    /// Checks every field and says which one is wrong.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) naming the field and the rule.
    pub fn validate(&self) -> Result<()> {
        let name = &self.app_name;
        if name.is_empty()
            || name.len() > 63
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::config(format!(
                "invalid application name `{name}`: use 1 to 63 characters from a-z, A-Z, 0-9, `-` and `_` \
                 (it is stored as application_name on every row and names the embedded database)"
            )));
        }
        if self.schema.is_empty() || self.schema.len() > 63 {
            return Err(Error::config(format!(
                "invalid system schema name `{}`: it must be 1 to 63 bytes long",
                self.schema
            )));
        }
        if self.pool_size == 0 {
            return Err(Error::config("pool_size must be at least 1"));
        }
        if self.scheduler_polling_interval.is_zero() {
            return Err(Error::config(
                "scheduler_polling_interval must be positive: it is how often the schedules are read",
            ));
        }
        if self
            .executor_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return Err(Error::config(
                "executor_id must not be blank (set DBOS__VMID or Config::executor_id, or leave it unset for a generated one)",
            ));
        }
        if self.recovery_interval.is_zero() {
            return Err(Error::config("recovery_interval must be at least 1 ms"));
        }
        if self.vanished_executor_timeout < Duration::from_secs(3) {
            return Err(Error::config(format!(
                "vanished_executor_timeout ({:?}) must be at least 3 s: the server probes the lock connection with \
                 TCP keepalives counted in whole seconds (an idle period, then three probes)",
                self.vanished_executor_timeout
            )));
        }
        if self.recovery_grace <= self.recovery_interval * 2 {
            return Err(Error::config(format!(
                "recovery_grace ({:?}) must be longer than twice recovery_interval ({:?}): an executor that lost its \
                 lock takes it back two intervals later, and peers must not recover live executors meanwhile",
                self.recovery_grace, self.recovery_interval
            )));
        }
        if self
            .recoverable_prefixes
            .iter()
            .any(|p| p.trim().is_empty())
        {
            return Err(Error::config(
                "recover_executors_with_prefix(\"\") would let peers take over every executor, other languages' included; give a prefix",
            ));
        }
        if self.wait_poll_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::config(
                "wait_poll_interval must be at least 1 ms (it is how often waits look at the tables when no notification wakes them)",
            ));
        }
        if self.cancel_poll_interval.is_zero() {
            return Err(Error::config(
                "cancel_poll_interval must be at least 1 ms (it is how often running workflows are checked for cancellation)",
            ));
        }
        for queue in &self.queues {
            queue.validate()?;
        }
        for source in &self.data_sources {
            source.validate()?;
        }
        #[cfg(feature = "admin")]
        if let Some(admin) = &self.admin {
            admin.check()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_names_with_the_rule() {
        let e = Config::new("my shop").validate().unwrap_err();
        assert!(
            e.to_string().contains("invalid application name `my shop`"),
            "{e}"
        );
        assert!(Config::new("shop-1_a").validate().is_ok());
        assert!(Config::new("shop").pool_size(0).validate().is_err());
    }

    #[test]
    fn data_sources_are_checked_and_replaced_by_name() {
        let c = Config::new("shop")
            .data_source("app", "postgres://u:p@h/a")
            .data_source("app", "postgres://u:p@h/b");
        assert_eq!(c.data_sources.len(), 1);
        assert!(c.validate().is_ok());
        let e = Config::new("shop")
            .data_source(" ", "postgres://u:p@h/a")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("needs a name"), "{e}");
        let e = Config::new("shop")
            .add_data_source(crate::DataSourceConfig::database("app", "a/b"))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("is not a database name"), "{e}");
        let e = Config::new("shop")
            .add_data_source(crate::DataSourceConfig::url("app", "postgres://h/a").pool_size(0))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("pool_size"), "{e}");
    }

    #[test]
    fn recovery_timings_are_checked() {
        let e = Config::new("shop")
            .vanished_executor_timeout(Duration::from_secs(2))
            .validate()
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert!(e.to_string().contains("vanished_executor_timeout"), "{e}");
        assert!(Config::new("shop")
            .vanished_executor_timeout(Duration::from_secs(3))
            .validate()
            .is_ok());
        let e = Config::new("shop")
            .recovery_interval(Duration::from_secs(5))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("recovery_grace"), "{e}");
    }

    #[test]
    fn debug_never_shows_a_password() {
        let c = Config::new("shop")
            .system_database_url("postgres://u:hunter2@h/db")
            .data_source("app", "postgres://u:hunter2@h/app");
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2"), "{s}");
    }
}
