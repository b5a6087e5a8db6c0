//! The runtime: [`Dbos::launch`] connects to (or starts) the system database, migrates it,
//! and serves the application's durable work until [`Dbos::shutdown`].

use crate::config::Config;
use crate::error::Result;
use crate::local_postgres::LocalPostgres;
use crate::sysdb::{ConnectOptions, MigrationOutcome, SystemDatabase};

/// The launched runtime. Cheap to clone; clones share one pool.
#[derive(Debug, Clone)]
pub struct Dbos {
    config: Config,
    sysdb: SystemDatabase,
    local_postgres: Option<LocalPostgres>,
    migration: MigrationOutcome,
}

impl Dbos {
    /// Launches the runtime: resolves the system database (the configured URL, or the
    /// embedded local Postgres when there is none), creates the database if needed, and
    /// brings the DBOS schema to the version this build expects.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) for invalid configuration,
    /// [`ErrorKind::LocalPostgres`](crate::ErrorKind::LocalPostgres) when no URL is set and no
    /// Postgres is installed, [`ErrorKind::Connection`](crate::ErrorKind::Connection) when the
    /// database stays unreachable, [`ErrorKind::Schema`](crate::ErrorKind::Schema) when the
    /// schema is foreign or too old.
    pub async fn launch(config: Config) -> Result<Dbos> {
        config.validate()?;
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
        tracing::info!(
            database = %sysdb.redacted_url(),
            schema = %sysdb.schema(),
            version = migration.version(),
            local = local_postgres.is_some(),
            "system database ready"
        );
        Ok(Dbos {
            config,
            sysdb,
            local_postgres,
            migration,
        })
    }

    /// The system database handle.
    pub fn system_database(&self) -> &SystemDatabase {
        &self.sysdb
    }

    /// The configuration the runtime was launched with.
    pub fn config(&self) -> &Config {
        &self.config
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

    /// Stops the runtime and closes its connections. The embedded Postgres keeps running so
    /// the next launch reuses it.
    ///
    /// # Errors
    /// None today; the signature leaves room for reporting work that did not stop in time.
    pub async fn shutdown(self) -> Result<()> {
        self.sysdb.close();
        Ok(())
    }
}

/// The database the embedded Postgres holds for an application: `<app>_dbos_sys`.
pub(crate) fn local_database_name(app_name: &str) -> String {
    format!("{}_dbos_sys", app_name.replace('-', "_").to_lowercase())
}
