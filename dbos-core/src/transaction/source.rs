//! Application data sources: databases apart from the system database that `#[transaction]`s
//! run in, each with its own pool and its completion table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};

use crate::error::{Error, ErrorKind, Result};
use crate::sysdb::datasource::CompletionSql;
use crate::sysdb::{
    holding, pool_id, quote_ident, with_database, DatabaseUrl, Resilience, SIDE_POOL_SIZE,
};

/// Where a data source is.
#[derive(Clone)]
enum Target {
    /// A URL of its own.
    Url(String),
    /// A database on the system database's server (the same credentials and TLS settings).
    Database(String),
}

/// One application data source, configured with [`Config::data_source`](crate::Config::data_source)
/// or [`Config::add_data_source`](crate::Config::add_data_source).
///
/// ```
/// use dbos_core::{Config, DataSourceConfig};
///
/// let config = Config::new("shop")
///     .data_source("app", "postgres://app:secret@db.internal:5432/shop")
///     .add_data_source(DataSourceConfig::database("ledger", "shop_ledger").pool_size(4));
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct DataSourceConfig {
    pub(crate) name: String,
    target: Target,
    pub(crate) schema: String,
    pub(crate) pool_size: usize,
}

impl std::fmt::Debug for DataSourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match &self.target {
            Target::Url(url) => crate::sysdb::redact_url(url),
            Target::Database(db) => format!("database `{db}` on the system database's server"),
        };
        f.debug_struct("DataSourceConfig")
            .field("name", &self.name)
            .field("target", &target)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl DataSourceConfig {
    /// The data source `name` at `url` (`postgres://user:pass@host:port/db?sslmode=...`).
    pub fn url(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self::with_target(name.into(), Target::Url(url.into()))
    }

    /// The data source `name` in the database `database` of the system database's server,
    /// reached with the system database URL's credentials and TLS settings (with the embedded
    /// local Postgres, a database next to the system database).
    pub fn database(name: impl Into<String>, database: impl Into<String>) -> Self {
        Self::with_target(name.into(), Target::Database(database.into()))
    }

    fn with_target(name: String, target: Target) -> Self {
        DataSourceConfig {
            name,
            target,
            schema: "dbos".to_owned(),
            pool_size: 10,
        }
    }

    /// The schema of the data source that holds the completion table `datasource_outputs`
    /// (default `dbos`, as DBOS's data sources), created at launch if missing.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The maximum number of pooled connections to the data source (default 10).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// The data source's name, as `#[transaction(datasource = "...")]` names it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks the fields.
    pub(crate) fn validate(&self) -> Result<()> {
        let name = &self.name;
        if name.trim().is_empty() {
            return Err(Error::config(
                "a data source needs a name: #[transaction(datasource = \"...\")] refers to it by that name",
            ));
        }
        if self.schema.is_empty() || self.schema.len() > 63 {
            return Err(Error::config(format!(
                "invalid schema `{}` for data source `{name}`: it must be 1 to 63 bytes long",
                self.schema
            )));
        }
        if self.pool_size == 0 {
            return Err(Error::config(format!(
                "data source `{name}`: pool_size must be at least 1"
            )));
        }
        if let Target::Database(db) = &self.target {
            if db.trim().is_empty() || db.contains(['/', '?']) {
                return Err(Error::config(format!(
                    "data source `{name}`: `{db}` is not a database name (give a name such as `shop`, or a full URL with Config::data_source)"
                )));
            }
        }
        Ok(())
    }

    /// The URL to connect to, given the system database's.
    fn resolve_url(&self, system_url: &str) -> String {
        match &self.target {
            Target::Url(url) => url.clone(),
            Target::Database(db) => with_database(system_url, db),
        }
    }
}

/// A connected data source: its pool, its schema, the statements of its completion table.
/// Obtained from [`Dbos::data_source`](crate::Dbos::data_source), e.g. to create the
/// application's tables or to read them outside any transaction.
pub struct DataSource {
    name: String,
    pool: Pool,
    /// Side connections for tasks holding one of `pool`'s (see `SIDE_POOL_SIZE`).
    side: Pool,
    pub(crate) pool_id: u64,
    schema: String,
    redacted: String,
    pub(crate) resilience: Arc<Resilience>,
    pub(crate) completion: CompletionSql,
}

impl std::fmt::Debug for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataSource")
            .field("name", &self.name)
            .field("url", &self.redacted)
            .field("schema", &self.schema)
            .finish()
    }
}

impl DataSource {
    /// Connects (creating the database when it does not exist yet), retrying transient
    /// failures within `retry_for`, and brings the completion table up to date.
    async fn connect(
        config: &DataSourceConfig,
        system_url: &str,
        connect_timeout: Duration,
        retry_for: Duration,
    ) -> Result<DataSource> {
        let name = &config.name;
        let url = config.resolve_url(system_url);
        let what = format!("the URL of data source `{name}`");
        let mut parsed = DatabaseUrl::parse_as(&url, &what)?;
        parsed.config.connect_timeout(connect_timeout);
        let tls = crate::sysdb::tls_connector(&parsed)?;
        let build = |size: usize| {
            let manager = Manager::from_config(
                parsed.config.clone(),
                tls.clone(),
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .queue_mode(deadpool_postgres::QueueMode::Lifo)
                .create_timeout(Some(connect_timeout))
                .wait_timeout(Some(connect_timeout + retry_for))
                .build()
                .map_err(|e| {
                    Error::config(format!(
                        "could not build the pool of data source `{name}`: {e}"
                    ))
                })
        };
        let pool = build(config.pool_size)?;
        let side = build(SIDE_POOL_SIZE)?;
        let source = DataSource {
            name: name.clone(),
            pool,
            side,
            pool_id: pool_id(),
            schema: config.schema.clone(),
            redacted: parsed.redacted.clone(),
            resilience: Arc::new(Resilience::new(retry_for)),
            completion: CompletionSql::new(&config.schema),
        };
        match source.client().await {
            Err(e) if e.sqlstate() == Some("3D000") => {
                create_database(&parsed, &tls, name).await?;
            }
            other => drop(other?),
        }
        let schema = source.schema.as_str();
        let migrated = source
            .run("migrate the completion table", |mut client, _| async move {
                crate::sysdb::datasource::migrate(&mut client, schema).await
            })
            .await?;
        tracing::info!(
            data_source = %name,
            database = %source.redacted,
            schema = %source.schema,
            migrated,
            "data source ready"
        );
        Ok(source)
    }

    /// The data source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema holding the completion table.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted_url(&self) -> &str {
        &self.redacted
    }

    /// The pool of connections to the data source.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Takes a connection from the pool, retrying transient failures with backoff (for as
    /// long as the database is unreachable once the runtime has launched).
    ///
    /// # Errors
    /// [`ErrorKind::Connection`] when no connection could be made within the retry window,
    /// [`ErrorKind::Database`] for a permanent refusal, [`ErrorKind::NotLaunched`] after
    /// shutdown.
    pub async fn client(&self) -> Result<Object> {
        let what = format!("connect to data source `{}`", self.name);
        self.resilience.run(&what, |_| self.checkout()).await
    }

    /// One attempt at taking a pooled connection.
    pub(crate) async fn checkout(&self) -> Result<Object> {
        let pool = if holding(self.pool_id) {
            &self.side
        } else {
            &self.pool
        };
        pool.get().await.map_err(|e| {
            let context = format!(
                "could not connect to data source `{}` at {}",
                self.name, self.redacted
            );
            match e {
                deadpool_postgres::PoolError::Backend(pg) => Error::db(context, pg),
                deadpool_postgres::PoolError::Timeout(_) => Error::new(
                    ErrorKind::Connection,
                    format!("{context}: timed out (is the server running and reachable?)"),
                ),
                deadpool_postgres::PoolError::Closed => Resilience::stopped_error(&context),
                other => Error::new(ErrorKind::Connection, format!("{context}: {other}")),
            }
        })
    }

    /// Runs `op` on a pooled connection, retrying connection-class failures as the system
    /// database's statements are retried.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: FnMut(Object, u32) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.resilience.run_on(what, || self.checkout(), op).await
    }
}

/// Creates the data source's database through the `postgres` maintenance database.
async fn create_database(
    url: &DatabaseUrl,
    tls: &tokio_postgres_rustls::MakeRustlsConnect,
    source: &str,
) -> Result<()> {
    let name = url.database().to_owned();
    let mut admin = url.config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin.connect(tls.clone()).await.map_err(|e| {
        Error::db(
            format!("the database `{name}` of data source `{source}` does not exist, and the `postgres` database to create it from is unreachable"),
            e,
        )
    })?;
    let conn = tokio::spawn(connection);
    let result = client
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
        .await;
    drop(client);
    let _ = conn.await;
    match result {
        Ok(()) => {
            tracing::info!(database = %name, data_source = source, "created the data source's database");
            Ok(())
        }
        Err(e) if e.code().map(|c| c.code()) == Some("42P04") => Ok(()),
        Err(e) => Err(Error::db(
            format!("the database `{name}` of data source `{source}` does not exist and could not be created (grant CREATEDB or create it yourself)"),
            e,
        )),
    }
}

/// The data sources of one runtime, by name.
#[derive(Debug, Default)]
pub(crate) struct DataSources {
    sources: HashMap<String, Arc<DataSource>>,
}

impl DataSources {
    /// Connects every configured data source (at launch). Transactions of the binary naming a
    /// data source this configuration lacks are reported in the log; calling one fails.
    pub(crate) async fn connect(config: &crate::Config, system_url: &str) -> Result<DataSources> {
        let mut sources = HashMap::new();
        for ds in &config.data_sources {
            let source = DataSource::connect(
                ds,
                system_url,
                config.connect_timeout,
                config.connect_retry_for,
            )
            .await?;
            sources.insert(ds.name.clone(), Arc::new(source));
        }
        for super::TransactionRegistration(def) in inventory::iter::<super::TransactionRegistration>
        {
            if let Some(name) = def.options.data_source {
                if !sources.contains_key(name) {
                    tracing::warn!(
                        transaction = def.name, data_source = name,
                        "transaction `{}` runs in data source `{name}`, which this runtime's configuration does not have; \
                         calling it fails until Config::data_source(\"{name}\", url) is added",
                        def.name
                    );
                }
            }
        }
        Ok(DataSources { sources })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<DataSource>> {
        self.sources.get(name)
    }

    /// Launched: from now on an outage of a data source only delays transactions.
    pub(crate) fn retry_forever(&self) {
        for s in self.sources.values() {
            s.resilience.retry_forever();
        }
    }

    /// Shutting down: transient failures are reported, not retried.
    pub(crate) fn give_up(&self) {
        for s in self.sources.values() {
            s.resilience.give_up();
        }
    }

    /// Closes every pool.
    pub(crate) fn close(&self) {
        for s in self.sources.values() {
            s.resilience.stop();
            s.pool.close();
            s.side.close();
        }
    }
}
