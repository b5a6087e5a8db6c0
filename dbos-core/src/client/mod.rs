//! [`Client`]: enqueue, follow and operate workflows from a process that does not run them
//! (an HTTP service, a script, an operator's terminal, the `dbos-rs` CLI).
//!
//! A client connects to an existing system database by URL, with a small pool. It never
//! starts a local Postgres and never migrates: it checks that the schema is DBOS's, at a
//! version this library can use, and says what to do when it is not. Rows it writes are the
//! ones an in-process enqueue writes, so any executor serving the queue (in Rust, or a DBOS
//! SDK in another language) runs what it enqueues.
//!
//! ```no_run
//! use dbos_core::Client;
//! use serde_json::json;
//!
//! #[tokio::main]
//! async fn main() -> dbos_core::Result<()> {
//!     let client = Client::connect("postgres://app:secret@db:5432/shop_sys").await?;
//!     let handle = client
//!         .enqueue("checkout", "payments")
//!         .arg(&json!({"order": 42}))
//!         .id("order-42")
//!         .priority(1)
//!         .await?;
//!     let receipt = handle.result().await?;
//!     println!("{receipt}");
//!     Ok(())
//! }
//! ```

mod enqueue;
mod manage;

use std::time::Duration;

pub use enqueue::ClientEnqueue;

use crate::error::{Error, ErrorKind, Result};
use crate::manage::Manager;
use crate::queue::Queue;
use crate::sysdb::{ConnectOptions, SystemDatabase, SCHEMA_VERSION};
use crate::workflow::call::{WorkflowCall, WorkflowHandle};
use crate::workflow::types::{Portable, WorkflowError};

/// A connection to a system database for a process that runs no workflows: enqueue by
/// name (or through a workflow function's own signature), follow a workflow's result, and
/// every management operation of [`crate::manage`]. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct Client {
    sysdb: SystemDatabase,
    app_name: Option<String>,
    schema_version: i64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("database", &self.sysdb.redacted_url())
            .field("schema", &self.sysdb.schema())
            .field("schema_version", &self.schema_version)
            .field("application_name", &self.app_name)
            .finish()
    }
}

/// Options of a [`Client`]; see [`Client::builder`].
#[derive(Clone)]
#[must_use = "a builder does nothing until `connect` is awaited"]
pub struct ClientBuilder {
    url: String,
    schema: String,
    app_name: Option<String>,
    options: ConnectOptions,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &crate::sysdb::redact_url(&self.url))
            .field("schema", &self.schema)
            .field("application_name", &self.app_name)
            .field("options", &self.options)
            .finish()
    }
}

impl ClientBuilder {
    /// The schema holding the DBOS tables (default `dbos`).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The application this client acts for: what it enqueues is owned by that
    /// application (only its executors dequeue it), and listings default to its workflows
    /// (plus unclaimed ones). Default: none, so what it enqueues is unclaimed (the first
    /// executor of any application serving the queue claims it) and listings show every
    /// application's workflows.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.app_name = Some(name.into());
        self
    }

    /// The most pooled connections (default 4).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.options.pool_size = size;
        self
    }

    /// How long one connection attempt may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// How long a statement keeps retrying a database that is unreachable before it reports
    /// the failure (default 30 s).
    pub fn connect_retry_for(mut self, duration: Duration) -> Self {
        self.options.retry_for = duration;
        self
    }

    /// Connects and checks the schema.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a bad URL or option; [`ErrorKind::Connection`] when the
    /// server stays unreachable; [`ErrorKind::Database`] when the database does not exist or
    /// refuses the login; [`ErrorKind::Schema`] when it holds no DBOS schema, or one older
    /// than this library's (the message says how to migrate it).
    pub async fn connect(self) -> Result<Client> {
        if self.options.pool_size == 0 {
            return Err(Error::config("pool_size must be at least 1"));
        }
        if let Some(app) = &self.app_name {
            crate::Config::new(app.clone()).validate()?;
        }
        let sysdb = SystemDatabase::connect_existing(&self.url, &self.schema, &self.options)
            .await
            .map_err(|e| match e.sqlstate() {
                Some("3D000") => Error::new(
                    ErrorKind::Database,
                    format!(
                        "{}: the system database does not exist; launch the application once (it creates and \
                         migrates it), or create it and run `dbos-rs migrate`",
                        e.message()
                    ),
                ),
                _ => e,
            })?;
        let version = match sysdb.schema_version().await? {
            None => {
                return Err(Error::new(
                    ErrorKind::Schema,
                    format!(
                        "database `{}` holds no DBOS system schema `{}`: a client never creates it. Launch the \
                         application once, or run `dbos-rs migrate -s <url>` (or DBOS's `dbos migrate`)",
                        sysdb.database_name(),
                        sysdb.schema()
                    ),
                ))
            }
            Some(v) if v < SCHEMA_VERSION => {
                return Err(Error::new(
                    ErrorKind::Schema,
                    format!(
                        "the DBOS system schema `{}` in database `{}` is at version {v}, older than the version \
                         {SCHEMA_VERSION} this library needs; migrate it with `dbos-rs migrate -s <url>` (or \
                         DBOS's `dbos migrate`), or launch an up-to-date application on it",
                        sysdb.schema(),
                        sysdb.database_name()
                    ),
                ))
            }
            Some(v) => v,
        };
        if version > SCHEMA_VERSION {
            tracing::info!(
                found = version,
                expected = SCHEMA_VERSION,
                "the system schema is newer than this library's; using it as is"
            );
        }
        Ok(Client {
            sysdb,
            app_name: self.app_name,
            schema_version: version,
        })
    }
}

impl Client {
    /// Options for a client of the system database at `url`
    /// (`postgres://user:pass@host:5432/app_sys?sslmode=require`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            schema: "dbos".to_owned(),
            app_name: None,
            options: ConnectOptions {
                pool_size: 4,
                ..ConnectOptions::default()
            },
        }
    }

    /// Connects to the system database at `url` with the defaults (schema `dbos`, no
    /// application, 4 connections).
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`].
    pub async fn connect(url: impl Into<String>) -> Result<Client> {
        Client::builder(url).connect().await
    }

    /// The system database handle.
    pub fn system_database(&self) -> &SystemDatabase {
        &self.sysdb
    }

    /// The schema version recorded in the database (at least this library's).
    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    /// The application this client acts for, if one was given.
    pub fn application_name(&self) -> Option<&str> {
        self.app_name.as_deref()
    }

    pub(crate) fn manager(&self) -> Manager {
        Manager {
            sysdb: self.sysdb.clone(),
            app_name: self.app_name.clone(),
            runtime: None,
        }
    }

    /// Enqueues the registered workflow `name` onto `queue`, with arguments and queue
    /// options chained before `.await`, which returns a handle. The workflow need not be in
    /// this binary: any executor serving the queue that has it runs it.
    ///
    /// The identity options (`.authenticated(..)`, `.assumed_role(..)`) are checked for
    /// their shape only: the client does not know the workflow's `required_roles`. The
    /// executor that dequeues it checks them before the body runs (as DBOS's does) and
    /// records a refusal as the workflow's error (`NotAuthorized`). Enqueue a typed call
    /// with [`enqueue_workflow`](Self::enqueue_workflow) to have them refused at the enqueue,
    /// with nothing written.
    pub fn enqueue(
        &self,
        name: impl Into<String>,
        queue: impl Into<String>,
    ) -> ClientEnqueue<serde_json::Value, Error> {
        ClientEnqueue::by_name(self.clone(), name.into(), queue.into())
    }

    /// Enqueues a call of a workflow function this binary links (`checkout(order)`),
    /// checked by its own signature, onto `queue`; the handle is typed by the workflow's
    /// output and error. The call's `.id(..)`, `.timeout(..)`, `.id_reuse_policy(..)` and
    /// identity apply; the workflow's `required_roles` are enforced as for an in-process
    /// start ([`ErrorKind::NotAuthorized`](crate::ErrorKind::NotAuthorized), nothing written).
    ///
    /// ```no_run
    /// use dbos_core::{workflow, Client, Error, Queue};
    ///
    /// #[workflow]
    /// async fn checkout(order_id: u64) -> Result<String, Error> {
    ///     let receipt = format!("receipt-{order_id}");
    ///     Ok(receipt)
    /// }
    ///
    /// static PAYMENTS: Queue = Queue::new("payments");
    ///
    /// #[tokio::main]
    /// async fn main() -> dbos_core::Result<()> {
    ///     let client = Client::connect("postgres://app:secret@db:5432/shop_sys").await?;
    ///     let handle = client
    ///         .enqueue_workflow(checkout(42).id("order-42"), &PAYMENTS)
    ///         .priority(1)
    ///         .await?;
    ///     let receipt: String = handle.result().await?;
    ///     println!("{receipt}");
    ///     Ok(())
    /// }
    /// ```
    pub fn enqueue_workflow<T: Portable, E: WorkflowError>(
        &self,
        call: WorkflowCall<T, E>,
        queue: &Queue,
    ) -> ClientEnqueue<T, E> {
        ClientEnqueue::from_call(self.clone(), call, queue)
    }

    /// A handle to any workflow by id, to await its result or read its status (by reading
    /// the database).
    pub fn retrieve_workflow<T: Portable, E: WorkflowError>(
        &self,
        workflow_id: impl Into<String>,
    ) -> WorkflowHandle<T, E> {
        WorkflowHandle::detached(self.sysdb.clone(), workflow_id.into())
    }

    /// Closes the pool; statements waiting for the database give up at once.
    pub fn close(&self) {
        self.sysdb.close();
    }
}
