//! The statements of `#[transaction]` on the system database: the fenced checkpoint insert
//! that runs inside the caller's transaction (so the user's statements and their checkpoint
//! commit together), and the look-ups that settle a commit whose acknowledgement was lost.
//!
//! The look-ups take any connection ([`Sql`]): they serve data sources too, where the
//! same question (did transaction `xid` commit?) is asked of another database.

use super::{On, Sql};

use super::records::CheckpointRow;
use super::SystemDatabase;
use crate::codec::PORTABLE_JSON;

/// Marks the managed transaction, sent right after its `BEGIN`: a transaction-local setting,
/// gone once the transaction ends (a `COMMIT`, `ROLLBACK`, `COMMIT AND CHAIN` or
/// `PREPARE TRANSACTION` of the body), and kept through the body's own savepoints (they are
/// all taken after it).
pub(crate) const MARK_MANAGED: &str = "SET LOCAL dbos.managed_transaction = 'on'";

/// The condition the record's insert carries: the statement runs in the transaction the
/// library began. Without it, after a `COMMIT` of the body the insert would run (and
/// commit) on its own.
pub(crate) const IS_MANAGED: &str = "current_setting('dbos.managed_transaction', true) = 'on'";

/// Whether `client` is still in the transaction the library began (see [`MARK_MANAGED`]).
pub(crate) async fn still_managed<C: Sql>(
    client: &C,
) -> std::result::Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(&format!("SELECT coalesce({IS_MANAGED}, false)"), &[])
        .await?;
    Ok(row.get(0))
}

/// The id of the transaction open on `client` (64-bit, as [`xact_status`] takes it), or
/// `None` while it has written nothing (no id assigned: a lost `COMMIT` loses nothing).
pub(crate) async fn assigned_xact<C: Sql>(
    client: &C,
) -> std::result::Result<Option<i64>, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT txid_current_if_assigned()", &[])
        .await?;
    Ok(row.get(0))
}

/// What became of a transaction whose `COMMIT` got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XactStatus {
    /// It committed.
    Committed,
    /// It rolled back (or never reached the server's commit log).
    Aborted,
    /// Its backend is still working on it: ask again.
    InProgress,
}

impl SystemDatabase {
    /// Inserts one operation's checkpoint inside the caller's transaction, fenced by ownership:
    /// the row is written only if `owner_xid` owns the workflow, and the status row is locked
    /// `FOR SHARE` until the transaction ends, so the fence holds at commit time, at every
    /// isolation level:
    ///
    /// - a cancel or a takeover committed after the transaction's snapshot (REPEATABLE READ,
    ///   SERIALIZABLE) makes the lock fail with a serialization failure (SQLSTATE 40001): the
    ///   transaction rolls back and runs again on a fresh snapshot, where the fence refuses;
    ///   a plain `EXISTS` would read the old owner from the snapshot and commit;
    /// - at READ COMMITTED the lock re-reads the newest row version and the fence refuses;
    /// - a cancel or a claim that comes after the lock waits for this transaction to end, so
    ///   nothing can change the owner between the check and the `COMMIT`.
    ///
    /// A plain step's checkpoint needs no lock (its insert is its own transaction); this one
    /// is followed by the `COMMIT`, one round trip later. Nothing is written either when the
    /// body ended the library's transaction itself ([`IS_MANAGED`]). Returns the transaction's
    /// id (`txid_current()`, 64-bit) when the row was written, `None` when the fence
    /// refused it. A unique violation (another execution recorded this step id) comes back
    /// as the error; the caller rolls back and looks at what was recorded.
    ///
    /// Taking the id in the same statement costs no round trip, and it is what settles a
    /// `COMMIT` whose acknowledgement is lost: see [`xact_status`].
    pub(crate) async fn record_in_transaction(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        row: &CheckpointRow<'_>,
    ) -> std::result::Result<Option<i64>, tokio_postgres::Error> {
        let sql = self.sql("record_in_transaction", |s| {
            format!(
                "INSERT INTO {s}.operation_outputs (workflow_uuid, function_id, function_name, output, error,
                                                    serialization, started_at_epoch_ms, completed_at_epoch_ms,
                                                    application_name, child_workflow_id)
                 SELECT $1, $3, $4, $5, $6, $7, $8, $9, $10, NULL
                  WHERE EXISTS (SELECT 1 FROM {s}.workflow_status WHERE workflow_uuid = $1 AND owner_xid = $2 FOR SHARE)
                    AND {IS_MANAGED}
                 RETURNING txid_current()"
            )
        });
        let tx = On::new(tx, &self.naming);
        let stmt = tx.prepare_cached(&sql).await?;
        let serialization = (row.output.is_some() || row.error.is_some()).then_some(PORTABLE_JSON);
        let inserted = tx
            .query_opt(
                &stmt,
                &[
                    &row.workflow_id,
                    &row.owner_xid,
                    &row.function_id,
                    &row.function_name,
                    &row.output,
                    &row.error,
                    &serialization,
                    &row.started_ms,
                    &row.completed_ms,
                    &row.app_name,
                ],
            )
            .await?;
        Ok(inserted.map(|r| r.get(0)))
    }

    /// Whether `owner_xid` still owns workflow `workflow_id` (the fence a data-source
    /// transaction checks before it commits, while holding its completion row).
    pub(crate) async fn still_owns(
        &self,
        workflow_id: &str,
        owner_xid: &str,
    ) -> crate::error::Result<bool> {
        let sql = self.sql("still_owns", |s| {
            format!("SELECT 1 FROM {s}.workflow_status WHERE workflow_uuid = $1 AND owner_xid = $2")
        });
        let what = format!("check the ownership of workflow `{workflow_id}`");
        self.run(&what, |client, _| {
            let sql = sql.clone();
            async move {
                let stmt = client
                    .prepare_cached(&sql)
                    .await
                    .map_err(|e| crate::Error::db("could not check a workflow's ownership", e))?;
                let row = client
                    .query_opt(&stmt, &[&workflow_id, &owner_xid])
                    .await
                    .map_err(|e| crate::Error::db("could not check a workflow's ownership", e))?;
                Ok(row.is_some())
            }
        })
        .await
    }
}

/// What the server knows of transaction `xid` (a 64-bit `txid_current()`): committed,
/// aborted, or still in progress. A transaction too old for the commit log to remember is
/// reported as aborted only by Postgres when it really is; `NULL` (no such transaction) is
/// aborted.
pub(crate) async fn xact_status<C: Sql>(
    client: &C,
    xid: i64,
) -> std::result::Result<XactStatus, tokio_postgres::Error> {
    let row = client.query_one("SELECT txid_status($1)", &[&xid]).await?;
    Ok(match row.get::<_, Option<&str>>(0) {
        Some("committed") => XactStatus::Committed,
        Some("in progress") => XactStatus::InProgress,
        _ => XactStatus::Aborted,
    })
}

/// Terminates the backend that still runs transaction `xid` (a connection the client lost
/// while its `COMMIT` was in flight, which the server has not noticed yet), so the
/// transaction ends one way or the other (one already ended is left alone).
pub(crate) async fn terminate_xact<C: Sql>(
    client: &C,
    xid: i64,
) -> std::result::Result<(), tokio_postgres::Error> {
    client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE backend_xid IS NOT NULL AND backend_xid::text::bigint = $1 % 4294967296",
            &[&xid],
        )
        .await?;
    Ok(())
}
