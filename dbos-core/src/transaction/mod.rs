//! Transactions: a step whose SQL and whose checkpoint commit together, exactly once.
//!
//! A [`#[step]`](crate::step) runs at least once: a crash after its effect and before its
//! checkpoint runs it again. A `#[transaction]` runs its statements in a database transaction
//! and writes its record in that same transaction:
//!
//! - **in the system database** (the default), the record is the `operation_outputs`
//!   checkpoint itself, inserted under the execution's ownership fence; one commit makes the
//!   statements and the checkpoint durable together;
//! - **in a data source** (an application database configured with
//!   [`Config::data_source`](crate::Config::data_source)), the record is a row of the data
//!   source's completion table `datasource_outputs` (DBOS's layout), inserted in the
//!   statements' transaction while the workflow's ownership is checked; the checkpoint is
//!   written to the system database after the commit. A workflow that may have run before
//!   looks in the completion table when `operation_outputs` has nothing, so a crash between
//!   the two commits does not run the transaction again.
//!
//! Serialization failures (40001) and deadlocks (40P01) run the transaction again after a
//! capped backoff, without counting as one of the function's attempts; the function's own
//! error rolls back and is recorded as the operation's error; a `COMMIT` whose acknowledgement
//! is lost is settled by asking the database whether the transaction committed
//! (`txid_status`), never by running the body again blindly. Outside a workflow a transaction
//! is a plain transaction on its database.

mod run;
mod source;
mod wrapper;

use std::future::Future;
use std::pin::Pin;

#[doc(hidden)]
pub use run::TransactionRun;
pub(crate) use source::DataSources;
pub use source::{DataSource, DataSourceConfig};
pub use wrapper::Transaction;

use crate::workflow::registry::StepOptions;
use crate::workflow::types::{Portable, WorkflowError};

/// The isolation level a transaction runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// `SERIALIZABLE` (the default, as in DBOS): the transaction behaves as if it ran alone;
    /// a conflict with a concurrent one is a serialization failure, retried automatically.
    #[default]
    Serializable,
    /// `REPEATABLE READ`: one snapshot for the whole transaction.
    RepeatableRead,
    /// `READ COMMITTED`: each statement sees what was committed before it started.
    ReadCommitted,
}

impl Isolation {
    pub(crate) fn level(self) -> tokio_postgres::IsolationLevel {
        match self {
            Isolation::Serializable => tokio_postgres::IsolationLevel::Serializable,
            Isolation::RepeatableRead => tokio_postgres::IsolationLevel::RepeatableRead,
            Isolation::ReadCommitted => tokio_postgres::IsolationLevel::ReadCommitted,
        }
    }
}

/// How a transaction runs. Const-constructible, so definitions can be statics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransactionOptions {
    /// The isolation level (default [`Isolation::Serializable`]).
    pub isolation: Isolation,
    /// The data source it runs in, by name; `None` (the default) for the system database.
    pub data_source: Option<&'static str>,
    /// The retry policy for the function's own errors (default: one attempt). Serialization
    /// failures and deadlocks are retried regardless, and do not count as attempts.
    pub retries: StepOptions,
}

impl TransactionOptions {
    /// The defaults: serializable, in the system database, one attempt.
    pub const DEFAULT: TransactionOptions = TransactionOptions {
        isolation: Isolation::Serializable,
        data_source: None,
        retries: StepOptions::DEFAULT,
    };
}

impl Default for TransactionOptions {
    fn default() -> Self {
        TransactionOptions::DEFAULT
    }
}

/// A registered transaction: what `#[transaction]` generates.
#[derive(Debug)]
pub struct TransactionDef {
    /// The name recorded in `operation_outputs.function_name`.
    pub name: &'static str,
    /// A hash of the definition's source tokens (feeds the application version).
    pub source_hash: &'static str,
    /// How it runs.
    pub options: TransactionOptions,
}

/// Submitted to `inventory` for every transaction.
#[derive(Debug)]
pub struct TransactionRegistration(pub &'static TransactionDef);
inventory::collect!(TransactionRegistration);

/// A boxed, sendable future borrowing the transaction for `'t`.
pub type TransactionFuture<'t, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 't>>;

/// Runs `body` as the transaction `name`: what `#[transaction]` does, by hand.
///
/// Inside a workflow, the body's statements and the operation's record commit together
/// (see the [module documentation](self)); a replay returns the recorded result without
/// running the body. Outside a workflow it is a plain transaction. The body may run more than
/// once (serialization failures, deadlocks, retries of its own errors), so it captures what it
/// needs by value (clone per run).
///
/// ```no_run
/// use dbos_core::{Transaction, TransactionOptions};
///
/// # async fn demo() -> Result<(), dbos_core::Error> {
/// let sku = "rust-mug".to_owned();
/// let left: i32 = dbos_core::run_transaction("reserve", TransactionOptions::DEFAULT, |tx: &Transaction<'_>| {
///     let sku = sku.clone();
///     Box::pin(async move {
///         let row = tx
///             .query_one(
///                 "UPDATE shop.inventory SET stock = stock - 1 WHERE sku = $1 AND stock > 0 RETURNING stock",
///                 &[&sku],
///             )
///             .await
///             .map_err(|e| dbos_core::Error::new(dbos_core::ErrorKind::Database, e.to_string()))?;
///         Ok::<i32, dbos_core::Error>(row.get(0))
///     })
/// })
/// .await?;
/// # let _ = left;
/// # Ok(())
/// # }
/// # let _ = demo;
/// ```
///
/// # Errors
/// The body's own error (rolled back, recorded and replayed), or a durability failure
/// converted with `E::from` (the workflow was cancelled, the database stayed unreachable, the
/// data source is not configured).
///
/// # Cancel safety
/// Dropping the future before the commit rolls the transaction back and records nothing;
/// after the commit the record exists and a later replay returns it.
pub async fn run_transaction<T, E, F>(
    name: &str,
    options: TransactionOptions,
    mut body: F,
) -> Result<T, E>
where
    T: Portable,
    E: WorkflowError,
    F: for<'t, 'c> FnMut(&'t Transaction<'c>) -> TransactionFuture<'t, T, E>,
{
    let mut run = TransactionRun::new(name, &options, None);
    loop {
        let Some(mut conn) = run.connect().await else {
            break;
        };
        let Some(tx) = run.begin(&mut conn).await else {
            continue;
        };
        let result = run.scope(body(&tx)).await;
        if run.finish(tx, result).await {
            break;
        }
    }
    run.into_result()
}
