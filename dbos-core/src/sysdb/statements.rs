//! Every system-database statement goes through here: named (prepared, cached per
//! connection) on a direct connection, unnamed behind a transaction-mode pooler.
//!
//! A pooler in transaction mode (PgBouncer's `pool_mode = transaction`, managed services'
//! pooled endpoints) gives a client connection a server connection for one transaction at a
//! time. A named prepared statement lives on one server session: it is then missing on the
//! next (`prepared statement "s3" does not exist`) or, made by another client process under
//! the same name, already there (`prepared statement "s6" already exists`). In
//! [`Naming::Unnamed`] every statement is sent as one Parse (of the unnamed statement),
//! Bind, Execute and Sync: one round trip, which the pooler keeps on one server.
//!
//! The unnamed protocol needs the parameters' types up front. They are what the server
//! infers for the statement text, asked once per text and kept ([`Statements`]): inside a
//! transaction block (which a pooler keeps on one server) the text is prepared under a
//! name, its parameter types read, and the statement closed before the block ends.
//!
//! [`Conn`] (a pooled connection) and [`Tx`] (a transaction on one) offer the statement
//! methods of `tokio_postgres` ([`Sql`]) with this choice made inside; nothing else in
//! `sysdb` sends a statement on a pooled connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error as PgError, GenericClient, IsolationLevel, Row, Statement};

/// How statements are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Naming {
    /// Prepared under a name and cached per connection (one round trip per statement once
    /// warm): a direct connection, or a pooler in session mode.
    Named,
    /// The unnamed statement, parsed with each execution: through a transaction-mode pooler.
    Unnamed,
}

/// The statement policy of one database handle, shared by its connections: the naming, and
/// the parameter types of each statement text sent unnamed.
#[derive(Debug, Default)]
pub(crate) struct Statements {
    unnamed: AtomicBool,
    types: Mutex<HashMap<Box<str>, Arc<[Type]>>>,
}

impl Statements {
    pub(crate) fn new(naming: Naming) -> Self {
        let s = Statements::default();
        s.set(naming);
        s
    }

    /// Changes the naming (decided once the first connection has probed the path).
    pub(crate) fn set(&self, naming: Naming) {
        self.unnamed
            .store(naming == Naming::Unnamed, Ordering::Relaxed);
    }

    pub(crate) fn naming(&self) -> Naming {
        if self.unnamed.load(Ordering::Relaxed) {
            Naming::Unnamed
        } else {
            Naming::Named
        }
    }

    fn known(&self, sql: &str) -> Option<Arc<[Type]>> {
        self.types
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sql)
            .cloned()
    }

    /// The parameter types of `sql`, asked of the server the first time. `in_block`: `pg`
    /// is inside a transaction block already (the pooler keeps it on one server).
    async fn types<C: GenericClient + Sync>(
        &self,
        pg: &C,
        sql: &str,
        in_block: bool,
    ) -> Result<Arc<[Type]>, PgError> {
        if let Some(types) = self.known(sql) {
            return Ok(types);
        }
        let described = if in_block {
            describe(pg, sql).await?
        } else {
            pg.batch_execute("BEGIN").await?;
            let described = describe(pg, sql).await;
            let ended = pg.batch_execute("ROLLBACK").await;
            let described = described?;
            ended?;
            described
        };
        self.types
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sql.into(), described.clone());
        Ok(described)
    }
}

/// Prepares `sql` under a name, reads its parameter types and closes it (the close is sent
/// as the statement is dropped, before anything sent after it).
async fn describe<C: GenericClient + Sync>(pg: &C, sql: &str) -> Result<Arc<[Type]>, PgError> {
    let statement = pg.prepare(sql).await?;
    let types: Arc<[Type]> = statement.params().into();
    drop(statement);
    Ok(types)
}

/// A statement to run: its text, and the prepared statement when it is named.
pub(crate) struct Stmt {
    text: Arc<str>,
    prepared: Option<Statement>,
}

/// What [`Sql`] methods accept as a statement: its text, or a [`Stmt`].
pub(crate) trait SqlText: Sync {
    /// The statement text.
    fn text(&self) -> &str;
    /// The named prepared statement, if there is one.
    fn prepared(&self) -> Option<&Statement> {
        None
    }
}

impl SqlText for str {
    fn text(&self) -> &str {
        self
    }
}

impl SqlText for String {
    fn text(&self) -> &str {
        self
    }
}

impl SqlText for Arc<str> {
    fn text(&self) -> &str {
        self
    }
}

impl SqlText for Stmt {
    fn text(&self) -> &str {
        &self.text
    }
    fn prepared(&self) -> Option<&Statement> {
        self.prepared.as_ref()
    }
}

impl<T: SqlText + ?Sized> SqlText for &T {
    fn text(&self) -> &str {
        (**self).text()
    }
    fn prepared(&self) -> Option<&Statement> {
        (**self).prepared()
    }
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// One statement method per line: `name, unnamed_variant -> output`. Named: the prepared
/// statement when there is one, else the text (prepared and closed by `tokio_postgres`);
/// unnamed: the `_typed` variant with the parameters' types.
macro_rules! sends {
    ($($(#[$doc:meta])* $name:ident, $typed:ident -> $out:ty;)*) => {$(
        $(#[$doc])*
        #[allow(async_fn_in_trait)]
        async fn $name<S: SqlText + ?Sized>(
            &self,
            sql: &S,
            params: Params<'_>,
        ) -> Result<$out, PgError> {
            match (self.statements().naming(), sql.prepared()) {
                (Naming::Named, Some(prepared)) => self.pg().$name(prepared, params).await,
                (Naming::Named, None) => self.pg().$name(sql.text(), params).await,
                (Naming::Unnamed, _) => {
                    let typed = self.typed(sql, params).await?;
                    self.pg().$typed(sql.text(), &typed).await
                }
            }
        }
    )*};
}

/// The statement methods of a system-database connection or transaction, with the naming
/// of [`Statements`] applied.
pub(crate) trait Sql: Sync {
    /// The connection or transaction of `tokio_postgres` underneath.
    type Pg: GenericClient + Sync;

    /// The connection or transaction underneath.
    fn pg(&self) -> &Self::Pg;

    /// The handle's statement policy.
    fn statements(&self) -> &Statements;

    /// Whether this is a transaction block.
    fn in_block(&self) -> bool;

    /// The named statement cached on this connection (called in [`Naming::Named`] only).
    fn cached(
        &self,
        sql: &str,
    ) -> impl std::future::Future<Output = Result<Statement, PgError>> + Send;

    /// `sql`'s parameters with their types (in [`Naming::Unnamed`]).
    #[allow(async_fn_in_trait)]
    async fn typed<'p, S: SqlText + ?Sized>(
        &self,
        sql: &S,
        params: Params<'p>,
    ) -> Result<Vec<(&'p (dyn ToSql + Sync), Type)>, PgError> {
        let types = self
            .statements()
            .types(self.pg(), sql.text(), self.in_block())
            .await?;
        // A count that does not match is reported by the server (as it would be on a named
        // statement): the types it inferred are completed with `unknown`.
        Ok(params
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, types.get(i).cloned().unwrap_or(Type::UNKNOWN)))
            .collect())
    }

    sends! {
        /// Runs `sql` and returns its rows.
        query, query_typed -> Vec<Row>;
        /// Runs `sql`, which must return exactly one row.
        query_one, query_typed_one -> Row;
        /// Runs `sql`, which returns at most one row.
        query_opt, query_typed_opt -> Option<Row>;
        /// Runs `sql` and returns the number of rows it changed.
        execute, execute_typed -> u64;
    }

    /// The statement of `sql`: prepared and cached on this connection when named; its text
    /// otherwise (its types are cached by the handle).
    #[allow(async_fn_in_trait)]
    async fn prepare_cached(&self, sql: &str) -> Result<Stmt, PgError> {
        let prepared = match self.statements().naming() {
            Naming::Named => Some(self.cached(sql).await?),
            Naming::Unnamed => None,
        };
        Ok(Stmt {
            text: sql.into(),
            prepared,
        })
    }

    /// Runs `sql` (one or more statements, no parameters) with the simple query protocol.
    #[allow(async_fn_in_trait)]
    async fn batch_execute(&self, sql: &str) -> Result<(), PgError> {
        self.pg().batch_execute(sql).await
    }
}

/// A pooled system-database connection.
pub(crate) struct Conn {
    client: deadpool_postgres::Object,
    statements: Arc<Statements>,
}

impl Conn {
    pub(crate) fn new(client: deadpool_postgres::Object, statements: Arc<Statements>) -> Self {
        Conn { client, statements }
    }

    /// Starts a transaction.
    pub(crate) async fn transaction(&mut self) -> Result<Tx<'_>, PgError> {
        let tx = self.client.transaction().await?;
        Ok(Tx {
            tx,
            statements: &self.statements,
        })
    }

    /// Starts a transaction at `level`.
    pub(crate) async fn transaction_at(
        &mut self,
        level: IsolationLevel,
    ) -> Result<Tx<'_>, PgError> {
        let tx = self
            .client
            .build_transaction()
            .isolation_level(level)
            .start()
            .await?;
        Ok(Tx {
            tx,
            statements: &self.statements,
        })
    }

    /// The connection of `tokio_postgres` itself, for what must not go through the naming
    /// policy (the pooler probe, a statement that only the simple protocol sends).
    pub(crate) fn raw(&self) -> &tokio_postgres::Client {
        &self.client
    }
}

impl Sql for Conn {
    type Pg = tokio_postgres::Client;
    fn pg(&self) -> &tokio_postgres::Client {
        &self.client
    }
    fn statements(&self) -> &Statements {
        &self.statements
    }
    fn in_block(&self) -> bool {
        false
    }
    fn cached(
        &self,
        sql: &str,
    ) -> impl std::future::Future<Output = Result<Statement, PgError>> + Send {
        deadpool_postgres::ClientWrapper::prepare_cached(&self.client, sql)
    }
}

/// A transaction on a pooled system-database connection.
pub(crate) struct Tx<'a> {
    tx: deadpool_postgres::Transaction<'a>,
    statements: &'a Statements,
}

impl Tx<'_> {
    /// Commits.
    pub(crate) async fn commit(self) -> Result<(), PgError> {
        self.tx.commit().await
    }

    /// Rolls back.
    pub(crate) async fn rollback(self) -> Result<(), PgError> {
        self.tx.rollback().await
    }
}

impl<'a> Sql for Tx<'a> {
    type Pg = tokio_postgres::Transaction<'a>;
    fn pg(&self) -> &tokio_postgres::Transaction<'a> {
        &self.tx
    }
    fn statements(&self) -> &Statements {
        self.statements
    }
    fn in_block(&self) -> bool {
        true
    }
    fn cached(
        &self,
        sql: &str,
    ) -> impl std::future::Future<Output = Result<Statement, PgError>> + Send {
        deadpool_postgres::Transaction::prepare_cached(&self.tx, sql)
    }
}

/// A transaction begun elsewhere (a `#[transaction]` on the system database) sending its
/// statements with `statements`' naming.
pub(crate) struct On<'a, T> {
    inner: &'a T,
    statements: &'a Statements,
}

impl<'a, T> On<'a, T> {
    pub(crate) fn new(inner: &'a T, statements: &'a Statements) -> Self {
        On { inner, statements }
    }
}

impl<'b> Sql for On<'_, deadpool_postgres::Transaction<'b>> {
    type Pg = tokio_postgres::Transaction<'b>;
    fn pg(&self) -> &tokio_postgres::Transaction<'b> {
        self.inner
    }
    fn statements(&self) -> &Statements {
        self.statements
    }
    fn in_block(&self) -> bool {
        true
    }
    fn cached(
        &self,
        sql: &str,
    ) -> impl std::future::Future<Output = Result<Statement, PgError>> + Send {
        deadpool_postgres::Transaction::prepare_cached(self.inner, sql)
    }
}

/// A data source's transaction: statements named, as on [`Object`](deadpool_postgres::Object).
impl<'b> Sql for deadpool_postgres::Transaction<'b> {
    type Pg = tokio_postgres::Transaction<'b>;
    fn pg(&self) -> &tokio_postgres::Transaction<'b> {
        self
    }
    fn statements(&self) -> &Statements {
        named()
    }
    fn in_block(&self) -> bool {
        true
    }
    fn cached(
        &self,
        sql: &str,
    ) -> impl std::future::Future<Output = Result<Statement, PgError>> + Send {
        deadpool_postgres::Transaction::prepare_cached(self, sql)
    }
}

/// Always named: the policy of a data source's connections (see [`Sql`] for `Object`).
fn named() -> &'static Statements {
    static NAMED: std::sync::LazyLock<Statements> =
        std::sync::LazyLock::new(|| Statements::new(Naming::Named));
    &NAMED
}

/// A data source's pooled connection: statements named, as on every direct connection
/// (data sources are not put behind a pooler by this library's settings).
impl Sql for deadpool_postgres::Object {
    type Pg = tokio_postgres::Client;
    fn pg(&self) -> &tokio_postgres::Client {
        self
    }
    fn statements(&self) -> &Statements {
        named()
    }
    fn in_block(&self) -> bool {
        false
    }
    fn cached(
        &self,
        sql: &str,
    ) -> impl std::future::Future<Output = Result<Statement, PgError>> + Send {
        deadpool_postgres::ClientWrapper::prepare_cached(self, sql)
    }
}
