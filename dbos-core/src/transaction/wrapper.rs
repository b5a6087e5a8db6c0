//! [`Transaction`]: what a `#[transaction]` body receives.

use std::ops::Deref;
use std::sync::Mutex;

use futures_util::{Stream, StreamExt};
use tokio_postgres::types::{BorrowToSql, ToSql, Type};
use tokio_postgres::{Error, Row, SimpleQueryMessage, Statement, ToStatement};

use crate::workflow::context::lock;

/// Why a statement of the body failed, when a new attempt of the whole transaction may
/// succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retryable {
    /// A serialization failure (SQLSTATE 40001) or a deadlock (40P01): the database asks the
    /// transaction to be run again.
    Serialization(&'static str),
    /// The connection broke: nothing was committed, and a new connection may work.
    Connection,
}

/// Classifies a tokio-postgres error: `Some` when running the whole transaction again may
/// succeed.
pub(crate) fn retryable(e: &Error) -> Option<Retryable> {
    match e.code().map(|c| c.code()) {
        Some("40001") => Some(Retryable::Serialization("40001")),
        Some("40P01") => Some(Retryable::Serialization("40P01")),
        _ if broken_connection(e) => Some(Retryable::Connection),
        _ => None,
    }
}

/// Whether the connection itself failed: closed, an I/O error on its socket, or the server
/// ending the session (class 08, shutdown). Errors without a SQLSTATE that are about the
/// statement (a `query_one` that found no row, a value that does not convert) are not: they
/// are the body's own, and running it again would fail the same way.
fn broken_connection(e: &Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code().map(|c| c.code()) {
        Some(c) => c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03"),
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// The open database transaction of a `#[transaction]` function: a
/// [`tokio_postgres::Transaction`] (it derefs to one) on the transaction's database, begun at
/// the function's isolation level. Inside a workflow, the library writes the step's
/// checkpoint (or completion row) in this same transaction before it commits, so the
/// statements run here and the record of their result commit together, once.
///
/// Its query methods are tokio-postgres's, unchanged, except that they also note a
/// serialization failure (SQLSTATE `40001`), a deadlock (`40P01`) or a broken connection:
/// when the body then returns an error (typically that one, converted into the function's
/// own error type by `?`), the library rolls back and runs the whole transaction again
/// instead of recording the error. The `_raw` query methods are watched too (their rows
/// streams as they are read). Statements run through methods reached by deref (`copy_in`,
/// `copy_out`, `bind`, `query_portal`) are not; a serialization failure there is retried
/// only when it surfaces at `COMMIT`.
///
/// The body must not commit or roll back itself; it returns `Ok` to commit and `Err` to roll
/// back. A body that ends the transaction with SQL (`COMMIT`, `ROLLBACK`, ...) fails with an
/// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) error, recorded as the
/// operation's outcome.
pub struct Transaction<'a> {
    inner: deadpool_postgres::Transaction<'a>,
    seen: Mutex<Option<Retryable>>,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("retryable_failure", &*lock(&self.seen))
            .finish_non_exhaustive()
    }
}

impl<'a> Deref for Transaction<'a> {
    type Target = tokio_postgres::Transaction<'a>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<'a> Transaction<'a> {
    pub(crate) fn new(inner: deadpool_postgres::Transaction<'a>) -> Self {
        Transaction {
            inner,
            seen: Mutex::new(None),
        }
    }

    /// The pooled transaction, consumed to commit or roll back.
    pub(crate) fn into_pooled(self) -> deadpool_postgres::Transaction<'a> {
        self.inner
    }

    /// The first retryable failure a statement of the body met, if any.
    pub(crate) fn retryable_failure(&self) -> Option<Retryable> {
        *lock(&self.seen)
    }

    /// Notes a failed statement's class and passes the result through.
    fn observe<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        if let Err(e) = &result {
            self.note(e);
        }
        result
    }

    /// Notes `e` when running the transaction again may succeed.
    fn note(&self, e: &Error) {
        if let Some(class) = retryable(e) {
            lock(&self.seen).get_or_insert(class);
        }
    }

    /// [`tokio_postgres::Transaction::query`], watched for retryable failures.
    ///
    /// # Errors
    /// As tokio-postgres's.
    pub async fn query<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error>
    where
        T: ?Sized + ToStatement,
    {
        self.observe(self.inner.query(statement, params).await)
    }

    /// [`tokio_postgres::Transaction::query_one`], watched for retryable failures.
    ///
    /// # Errors
    /// As tokio-postgres's (also when the query returns no row or several).
    pub async fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Error>
    where
        T: ?Sized + ToStatement,
    {
        self.observe(self.inner.query_one(statement, params).await)
    }

    /// [`tokio_postgres::Transaction::query_opt`], watched for retryable failures.
    ///
    /// # Errors
    /// As tokio-postgres's (also when the query returns several rows).
    pub async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error>
    where
        T: ?Sized + ToStatement,
    {
        self.observe(self.inner.query_opt(statement, params).await)
    }

    /// [`tokio_postgres::Transaction::query_typed`], watched for retryable failures.
    ///
    /// # Errors
    /// As tokio-postgres's.
    pub async fn query_typed(
        &self,
        statement: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, Error> {
        self.observe(self.inner.query_typed(statement, params).await)
    }

    /// [`tokio_postgres::Transaction::execute`], watched for retryable failures.
    ///
    /// # Errors
    /// As tokio-postgres's.
    pub async fn execute<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Error>
    where
        T: ?Sized + ToStatement,
    {
        self.observe(self.inner.execute(statement, params).await)
    }

    /// [`tokio_postgres::Transaction::batch_execute`], watched for retryable failures.
    ///
    /// # Errors
    /// As tokio-postgres's.
    pub async fn batch_execute(&self, query: &str) -> Result<(), Error> {
        self.observe(self.inner.batch_execute(query).await)
    }

    /// [`tokio_postgres::Transaction::simple_query`], watched for retryable failures.
    ///
    /// # Errors
    /// As tokio-postgres's.
    pub async fn simple_query(&self, query: &str) -> Result<Vec<SimpleQueryMessage>, Error> {
        self.observe(self.inner.simple_query(query).await)
    }

    /// [`tokio_postgres::Transaction::prepare`], watched for retryable failures.
    ///
    /// # Errors
    /// As tokio-postgres's.
    pub async fn prepare(&self, query: &str) -> Result<Statement, Error> {
        self.observe(self.inner.prepare(query).await)
    }

    /// [`tokio_postgres::Transaction::prepare_typed`], watched for retryable failures.
    ///
    /// # Errors
    /// As tokio-postgres's.
    pub async fn prepare_typed(&self, query: &str, types: &[Type]) -> Result<Statement, Error> {
        self.observe(self.inner.prepare_typed(query, types).await)
    }

    /// [`tokio_postgres::Transaction::query_raw`], watched for retryable failures: the
    /// rows stream notes a failure met while it is read, too.
    ///
    /// # Errors
    /// As tokio-postgres's.
    pub async fn query_raw<T, P, I>(
        &self,
        statement: &T,
        params: I,
    ) -> Result<impl Stream<Item = Result<Row, Error>> + Send + '_, Error>
    where
        T: ?Sized + ToStatement,
        P: BorrowToSql,
        I: IntoIterator<Item = P>,
        I::IntoIter: ExactSizeIterator,
    {
        let rows = self.observe(self.inner.query_raw(statement, params).await)?;
        Ok(self.watch(rows))
    }

    /// [`tokio_postgres::Transaction::query_typed_raw`], watched for retryable failures
    /// (the rows stream too).
    ///
    /// # Errors
    /// As tokio-postgres's.
    pub async fn query_typed_raw<P, I>(
        &self,
        query: &str,
        params: I,
    ) -> Result<impl Stream<Item = Result<Row, Error>> + Send + '_, Error>
    where
        P: BorrowToSql,
        I: IntoIterator<Item = (P, Type)>,
    {
        let rows = self.observe(self.inner.query_typed_raw(query, params).await)?;
        Ok(self.watch(rows))
    }

    /// [`tokio_postgres::Transaction::execute_raw`], watched for retryable failures.
    ///
    /// # Errors
    /// As tokio-postgres's.
    pub async fn execute_raw<T, P, I>(&self, statement: &T, params: I) -> Result<u64, Error>
    where
        T: ?Sized + ToStatement,
        P: BorrowToSql,
        I: IntoIterator<Item = P>,
        I::IntoIter: ExactSizeIterator,
    {
        self.observe(self.inner.execute_raw(statement, params).await)
    }

    /// A rows stream that notes a retryable failure met while it is read.
    fn watch(
        &self,
        rows: tokio_postgres::RowStream,
    ) -> impl Stream<Item = Result<Row, Error>> + Send + '_ {
        Box::pin(rows).inspect(move |item| {
            if let Err(e) = item {
                self.note(e);
            }
        })
    }

    /// Prepares `query` once per pooled connection (deadpool-postgres's statement cache): the
    /// cheapest way to run the same statement in every transaction.
    ///
    /// # Errors
    /// As tokio-postgres's `prepare`.
    pub async fn prepare_cached(&self, query: &str) -> Result<Statement, Error> {
        self.observe(self.inner.prepare_cached(query).await)
    }
}
