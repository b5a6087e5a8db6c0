//! Access to the system database: connection pool, TLS, retries, migrations.
//!
//! [`SystemDatabase`] is a pooled handle to the Postgres database that holds the DBOS schema.
//! Everything durable this library does goes through it.

pub(crate) mod aggregates;
mod connect;
pub(crate) mod datasource;
pub(crate) mod debounce;
pub(crate) mod executors;
pub(crate) mod export;
pub(crate) mod in_workflow;
pub(crate) mod listener;
pub(crate) mod manage;
pub(crate) mod messages;
mod migrate;
mod pooler;
#[cfg(feature = "admin")]
pub(crate) mod queue_activity;
pub(crate) mod queues;
pub(crate) mod records;
pub(crate) mod rename;
mod retry;
pub(crate) mod schedules;
mod statements;
mod tls;
pub(crate) mod transactions;
mod url;
pub(crate) mod workflows;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};

pub use listener::LISTENER_APPLICATION_NAME;
pub use migrate::{Migration, MigrationOutcome, MIGRATIONS, SCHEMA_VERSION};
pub(crate) use retry::{backoff, Resilience, RetryState};
pub(crate) use statements::{Conn, Naming, On, Sql, Statements, Tx};
pub(crate) use tls::connector as tls_connector;
pub use url::redact_url;
pub(crate) use url::{quote_ident, with_database, DatabaseUrl};

use crate::error::{Error, ErrorKind, Result};

/// Connections each pool keeps apart for a task that already holds one of its connections
/// through a `#[transaction]` and needs another (settling a lost `COMMIT` acknowledgement,
/// looking into a refused record, a `send` or `set_event` from the body). A side connection
/// is held for one operation and never while waiting for another, so these few serve any
/// number of such tasks without a deadlock, whatever the main pool's size. With a session
/// URL they are opened there: behind a transaction-mode pooler the held connection holds one
/// of the pooler's servers, and a side connection through the pooler would wait for another
/// (transactions holding every server would wait for each other).
pub(crate) const SIDE_POOL_SIZE: usize = 2;

tokio::task_local! {
    /// The pool (by [`pool_id`]) one of whose connections the current task holds through a
    /// transaction.
    static HOLDING: u64;
}

/// A new pool identity, for [`holding`].
pub(crate) fn pool_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Whether the current task holds a connection of pool `id` (see [`while_holding`]).
pub(crate) fn holding(id: u64) -> bool {
    HOLDING.try_with(|held| *held == id).unwrap_or(false)
}

/// Runs `f` as a task holding a connection of pool `id`: its checkouts from that pool take
/// side connections instead of waiting for the one it holds.
pub(crate) async fn while_holding<F: std::future::Future>(id: u64, f: F) -> F::Output {
    HOLDING.scope(id, f).await
}

/// How to connect to a system database.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Maximum pooled connections.
    pub pool_size: usize,
    /// Timeout of one connection attempt to one host (with several hosts in the URL, each
    /// gets this long before the next is tried).
    pub connect_timeout: Duration,
    /// How long transient failures are retried before they are reported.
    pub retry_for: Duration,
    /// Whether a transaction-mode pooler is in the path (default: found out at connection).
    pub pooler: crate::config::PoolerMode,
    /// A direct URL for the connections that keep a session (see
    /// [`Config::session_url`](crate::Config::session_url)); `None`: the URL itself.
    pub session_url: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            pool_size: 20,
            connect_timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(30),
            pooler: crate::config::PoolerMode::Auto,
            session_url: None,
        }
    }
}

/// A pooled connection to the system database, with the schema it uses.
///
/// Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct SystemDatabase {
    pool: Pool,
    /// [`SIDE_POOL_SIZE`] connections for tasks holding one of `pool`'s.
    side: Pool,
    pool_id: u64,
    statements: Arc<std::sync::Mutex<std::collections::HashMap<&'static str, Arc<str>>>>,
    /// How statements are sent (named, or unnamed through a transaction-mode pooler).
    naming: Arc<Statements>,
    schema: Arc<str>,
    quoted_schema: Arc<str>,
    url: Arc<DatabaseUrl>,
    /// Where the connections that keep a session go (the listener, the executor lock): the
    /// session URL when one is configured, else `url`.
    session: Arc<DatabaseUrl>,
    session_connector: connect::HostByHost,
    /// Whether a session URL was configured.
    has_session_url: bool,
    resilience: Arc<Resilience>,
    connector: connect::HostByHost,
}

impl std::fmt::Debug for SystemDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemDatabase")
            .field("url", &self.url.redacted)
            .field("schema", &self.schema)
            .finish()
    }
}

impl SystemDatabase {
    /// Connects to the database at `url`, creating the database when it does not exist yet,
    /// and retrying transient connection failures (server starting up, network blip) with
    /// backoff for up to `options.retry_for`.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a bad URL, [`ErrorKind::Connection`] when the server stays
    /// unreachable, [`ErrorKind::Tls`] when the server's certificate is not trusted or does
    /// not name the host (not retried), [`ErrorKind::Database`] when authentication or
    /// database creation fails.
    pub async fn connect(url: &str, schema: &str, options: &ConnectOptions) -> Result<Self> {
        Self::connect_with(url, schema, options, true).await
    }

    /// Connects like [`connect`](Self::connect) but never creates the database: a missing
    /// database is an error ([`ErrorKind::Database`], SQLSTATE `3D000`). What a process that
    /// only reads or drives workflows (a [`Client`](crate::client::Client), the CLI) uses.
    ///
    /// # Errors
    /// As `connect`, plus the missing database.
    pub async fn connect_existing(
        url: &str,
        schema: &str,
        options: &ConnectOptions,
    ) -> Result<Self> {
        Self::connect_with(url, schema, options, false).await
    }

    async fn connect_with(
        url: &str,
        schema: &str,
        options: &ConnectOptions,
        create: bool,
    ) -> Result<Self> {
        let mut parsed = DatabaseUrl::parse(url)?;
        parsed.config.connect_timeout(options.connect_timeout);
        let connector = connect::HostByHost::new(tls::connector(&parsed)?);
        let (session, session_connector) = match &options.session_url {
            Some(session_url) => {
                let mut session = DatabaseUrl::parse(session_url)?;
                session.config.connect_timeout(options.connect_timeout);
                let session_connector = connect::HostByHost::new(tls::connector(&session)?);
                (Arc::new(session), session_connector)
            }
            None => (Arc::new(parsed.clone()), connector.clone()),
        };
        let servers = connect::server_count(&parsed.config).max(1) as u32;
        let manager = |config: &tokio_postgres::Config, connector: &connect::HostByHost| {
            Manager::from_connect(
                config.clone(),
                connector.clone(),
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            )
        };
        // The side connections are asked for while the task holds a pooled connection in a
        // transaction: through a transaction-mode pooler that holds one of its servers, and
        // transactions holding every server would wait for each other's second one until the
        // pooler gives up. With a session URL they go there, past the pooler.
        let side_manager = match &options.session_url {
            Some(_) => manager(&session.config, &session_connector),
            None => manager(&parsed.config, &connector),
        };
        let side_servers = match &options.session_url {
            Some(_) => connect::server_count(&session.config).max(1) as u32,
            None => servers,
        };
        let side = Pool::builder(side_manager)
            .max_size(SIDE_POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .create_timeout(Some(options.connect_timeout * side_servers))
            .wait_timeout(Some(options.connect_timeout + options.retry_for))
            .build()
            .map_err(|e| Error::config(format!("could not build the connection pool: {e}")))?;
        let pool = Pool::builder(manager(&parsed.config, &connector))
            .max_size(options.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            // Reuse the most recently used connection: its backend and prepared statements are warm.
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .create_timeout(Some(options.connect_timeout * servers))
            .wait_timeout(Some(options.connect_timeout + options.retry_for))
            .build()
            .map_err(|e| Error::config(format!("could not build the connection pool: {e}")))?;
        let db = SystemDatabase {
            pool,
            side,
            pool_id: pool_id(),
            statements: Default::default(),
            naming: Arc::new(Statements::new(Naming::Named)),
            schema: schema.into(),
            quoted_schema: quote_ident(schema).into(),
            url: Arc::new(parsed),
            session,
            session_connector,
            has_session_url: options.session_url.is_some(),
            resilience: Arc::new(Resilience::new(options.retry_for)),
            connector,
        };
        let pooled = match db.first_connection(options.pooler).await {
            Err(e) if create && e.sqlstate() == Some("3D000") => {
                db.create_database().await?;
                db.first_connection(options.pooler).await?
            }
            other => other?,
        };
        if pooled {
            db.naming.set(Naming::Unnamed);
            tracing::info!(
                database = %db.url.redacted,
                "the system database is reached through a transaction-mode connection pooler: statements are sent unnamed"
            );
        }
        Ok(db)
    }

    /// The first connection; with [`PoolerMode::Auto`](crate::PoolerMode::Auto), a second
    /// one beside it to find out whether a transaction-mode pooler is in the path (see
    /// [`pooler`]) before any named prepared statement is sent. Whether statements are to be
    /// sent unnamed.
    async fn first_connection(&self, mode: crate::config::PoolerMode) -> Result<bool> {
        use crate::config::PoolerMode;
        self.run("connect to the system database", |client, _| async move {
            match mode {
                PoolerMode::None => return Ok(false),
                PoolerMode::Transaction => return Ok(true),
                PoolerMode::Auto => {}
            }
            let (other, task) = self
                .connector
                .open(
                    "could not open a second connection to the system database",
                    &self.url.config,
                )
                .await?;
            let found = pooler::transaction_pooling(client.raw(), &other).await;
            drop(other);
            let _ = task.await;
            found
        })
        .await
    }

    /// Whether statements are sent unnamed (a transaction-mode pooler is in the path).
    pub(crate) fn transaction_pooled(&self) -> bool {
        self.naming.naming() == Naming::Unnamed
    }

    /// Whether this handle can open connections that keep a session (the listener, the
    /// executor lock): not behind a transaction-mode pooler without a session URL, where
    /// waits poll and executors hold leases instead.
    pub(crate) fn has_sessions(&self) -> bool {
        !self.transaction_pooled() || self.has_session_url
    }

    /// Creates the URL's database through the `postgres` maintenance database.
    async fn create_database(&self) -> Result<()> {
        let name = self.url.database().to_owned();
        let mut admin = self.url.config.clone();
        admin.dbname("postgres");
        let (client, conn) = self
            .connector
            .open(
                &format!("database `{name}` does not exist and the `postgres` database to create it from is unreachable"),
                &admin,
            )
            .await?;
        let result = client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .await;
        drop(client);
        let _ = conn.await;
        match result {
            Ok(()) => {
                tracing::info!(database = %name, "created the system database");
                Ok(())
            }
            // Another process created it at the same time.
            Err(e) if e.code().map(|c| c.code()) == Some("42P04") => Ok(()),
            Err(e) => Err(Error::db(
                format!("database `{name}` does not exist and could not be created (grant CREATEDB or create it yourself)"),
                e,
            )),
        }
    }

    /// Takes a connection from the pool, retrying transient failures with backoff.
    ///
    /// # Errors
    /// [`ErrorKind::Connection`] when no connection could be made within the retry window;
    /// [`ErrorKind::Database`] for a permanent refusal (bad password, missing database);
    /// [`ErrorKind::NotLaunched`] once the handle is closed.
    pub async fn client(&self) -> Result<Object> {
        self.resilience
            .run("connect to the system database", |_| self.checkout())
            .await
    }

    /// A connection of its own, outside the pool, for a session that must outlive any
    /// statement (the executor's advisory lock, a LISTEN). Retried like every statement.
    /// The connection's task ends when the connection does; the returned handle tells.
    pub(crate) async fn dedicated(
        &self,
        what: &str,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> {
        self.resilience
            .run(what, |_| async {
                self.session_connector
                    .open(&format!("could not {what}"), &self.session.config)
                    .await
            })
            .await
    }

    /// One attempt at taking a pooled connection (a side connection when the task holds one
    /// of the pool's already: see [`SIDE_POOL_SIZE`]).
    pub(crate) async fn checkout(&self) -> Result<Object> {
        let pool = if holding(self.pool_id) {
            &self.side
        } else {
            &self.pool
        };
        pool.get().await.map_err(|e| self.pool_error(e))
    }

    /// The identity of the pool, for [`while_holding`].
    pub(crate) fn pool_id(&self) -> u64 {
        self.pool_id
    }

    /// Runs `op` on a pooled connection, retrying the whole operation (connection included)
    /// on connection-class failures: for the retry window of this handle, or, once a runtime
    /// has launched on it, until the database is back. `op` gets the attempt number (1 for
    /// the first), so a write whose first attempt may have committed unseen can recognise
    /// its own row on the next.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: FnMut(Conn, u32) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.resilience
            .run_on(what, || self.checkout_conn(), op)
            .await
    }

    /// [`checkout`](Self::checkout), as a connection sending statements the handle's way.
    pub(crate) async fn checkout_conn(&self) -> Result<Conn> {
        Ok(Conn::new(self.checkout().await?, self.naming.clone()))
    }

    /// Runs one statement (text, not prepared) with retries; see [`run`](Self::run). `what`
    /// says what it does ("cancel workflow `x`"), for logs and the error message.
    pub(crate) async fn query(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        self.run(what, |client, _| async move {
            client
                .query(sql, params)
                .await
                .map_err(|e| Error::db(format!("could not {what}"), e))
        })
        .await
    }

    /// [`query`](Self::query) expecting at most one row.
    pub(crate) async fn query_opt(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>> {
        Ok(self.query(what, sql, params).await?.into_iter().next())
    }

    /// [`query`](Self::query) returning the number of rows changed.
    pub(crate) async fn execute(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64> {
        self.run(what, |client, _| async move {
            client
                .execute(sql, params)
                .await
                .map_err(|e| Error::db(format!("could not {what}"), e))
        })
        .await
    }

    /// The retry policy shared by this handle's clones.
    pub(crate) fn resilience(&self) -> &Resilience {
        &self.resilience
    }

    /// The retry policy, shared.
    pub(crate) fn resilience_arc(&self) -> Arc<Resilience> {
        self.resilience.clone()
    }

    fn pool_error(&self, e: deadpool_postgres::PoolError) -> Error {
        let context = format!(
            "could not connect to the system database {}",
            self.url.redacted
        );
        match e {
            deadpool_postgres::PoolError::Backend(pg) => {
                self.connector.error(&context, &self.url.config, pg)
            }
            deadpool_postgres::PoolError::Timeout(_) => Error::new(
                ErrorKind::Connection,
                match self.connector.last_failure(&self.url.config) {
                    Some(hosts) => format!("{context}: timed out: {hosts}"),
                    None => format!("{context}: timed out (is the server running and reachable?)"),
                },
            ),
            deadpool_postgres::PoolError::Closed => Resilience::stopped_error(&context),
            other => Error::new(ErrorKind::Connection, format!("{context}: {other}")),
        }
    }

    /// The text of a hot-path statement, built once per database handle (no formatting
    /// or allocation per operation).
    pub(crate) fn sql(
        &self,
        key: &'static str,
        build: impl FnOnce(&str) -> String,
    ) -> std::sync::Arc<str> {
        let mut cache = self.statements.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(key)
            .or_insert_with(|| build(&self.quoted_schema).into())
            .clone()
    }

    /// The schema name (unquoted).
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The schema name quoted for use in SQL text.
    pub fn quoted_schema(&self) -> &str {
        &self.quoted_schema
    }

    /// The database URL with its password replaced by `***`.
    pub fn redacted_url(&self) -> &str {
        &self.url.redacted
    }

    /// The database name.
    pub fn database_name(&self) -> &str {
        self.url.database()
    }

    /// The underlying pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Creates or upgrades the DBOS schema; see [`MigrationOutcome`].
    ///
    /// # Errors
    /// [`ErrorKind::Schema`] when the schema exists but is not a DBOS schema, or is an older
    /// one this library cannot continue.
    /// A connection lost midway is retried: each migration commits on its own and the next
    /// attempt inspects the schema again under the lock.
    pub async fn migrate(&self) -> Result<MigrationOutcome> {
        self.run("migrate the system schema", |mut client, _| async move {
            migrate::migrate(&mut client, &self.schema).await
        })
        .await
    }

    /// The version recorded in `dbos_migrations`, or `None` when the schema is absent.
    ///
    /// # Errors
    /// When the query fails.
    pub async fn schema_version(&self) -> Result<Option<i64>> {
        self.run("read the schema version", |client, _| async move {
            migrate::recorded_version(&client, &self.schema).await
        })
        .await
    }

    /// Closes the pool; connections in use are closed when returned. Statements waiting
    /// for the database to come back give up at once with [`ErrorKind::NotLaunched`].
    pub fn close(&self) {
        self.resilience.stop();
        self.pool.close();
        self.side.close();
    }
}
