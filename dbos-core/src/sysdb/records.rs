//! Checkpoints and outcomes: the statements every workflow runs on its hot path, each one
//! round trip and one commit, each fenced by the execution's ownership token.

use super::workflows::{now_ms, Checkpoint, OWNED_AND_PENDING};
use super::SystemDatabase;
use crate::codec::PORTABLE_JSON;
use crate::error::{Error, Result};

const UNIQUE_VIOLATION: &str = "23505";

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code().map(|c| c.code()) == Some(UNIQUE_VIOLATION)
}

/// Where the step-recording fence failed.
#[derive(Debug)]
pub(crate) enum RecordError {
    /// The workflow is no longer owned by this execution.
    NotOwner,
    /// Another execution of the workflow recorded this step id first (it ran the step
    /// concurrently, while ownership was changing hands); its checkpoint is the one that counts.
    Conflict(Checkpoint),
    /// The database failed.
    Db(Error),
}

/// One operation's checkpoint, to record under `owner_xid`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckpointRow<'a> {
    pub(crate) workflow_id: &'a str,
    pub(crate) owner_xid: &'a str,
    pub(crate) function_id: i32,
    pub(crate) function_name: &'a str,
    pub(crate) output: Option<&'a str>,
    pub(crate) error: Option<&'a str>,
    pub(crate) started_ms: i64,
    pub(crate) app_name: &'a str,
}

impl CheckpointRow<'_> {
    fn serialization(&self) -> Option<&'static str> {
        (self.output.is_some() || self.error.is_some()).then_some(PORTABLE_JSON)
    }

    fn failed(&self, e: tokio_postgres::Error) -> Error {
        Error::db(
            format!(
                "could not record step {} `{}`",
                self.function_id, self.function_name
            ),
            e,
        )
    }
}

/// A workflow's final outcome, to write if `owner_xid` still owns it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FinishRow<'a> {
    pub(crate) workflow_id: &'a str,
    pub(crate) owner_xid: &'a str,
    pub(crate) status: &'static str,
    pub(crate) output: Option<&'a str>,
    pub(crate) error: Option<&'a str>,
}

impl SystemDatabase {
    /// Records one operation's checkpoint, fenced by ownership.
    ///
    /// The fence is a check in the same statement, not a row lock: the insert happens only
    /// if the statement's snapshot shows this execution as the owner. Once a new owner's
    /// claim commits, every later statement of the old execution sees it and records
    /// nothing. The one statement that can race a claim (it started before the claim
    /// committed) still meets the primary key `(workflow_uuid, function_id)`: a step id is
    /// recorded once, and whichever execution comes second gets [`RecordError::Conflict`]
    /// with the first one's checkpoint. Locking the status row instead would cost every
    /// step a tuple lock (a WAL record and a dirtied heap page) for the same outcome.
    ///
    /// The insert has no `ON CONFLICT` clause: a speculative insertion writes one more WAL
    /// record on every step, to serve a case that happens only in that race. There, the
    /// unique violation (SQLSTATE 23505) is the signal to look at what was recorded.
    pub(crate) async fn record_operation(
        &self,
        row: CheckpointRow<'_>,
    ) -> std::result::Result<(), RecordError> {
        let client = self.client().await.map_err(RecordError::Db)?;
        let sql = self.sql("record", |s| format!(
            "INSERT INTO {s}.operation_outputs (workflow_uuid, function_id, function_name, output, error,
                                                serialization, started_at_epoch_ms, completed_at_epoch_ms, application_name)
             SELECT $1, $3, $4, $5, $6, $7, $8, $9, $10
              WHERE EXISTS (SELECT 1 FROM {s}.workflow_status WHERE workflow_uuid = $1 AND owner_xid = $2)"
        ));
        let failed = |e| RecordError::Db(row.failed(e));
        let stmt = client.prepare_cached(&sql).await.map_err(failed)?;
        let inserted = match client
            .execute(
                &stmt,
                &[
                    &row.workflow_id,
                    &row.owner_xid,
                    &row.function_id,
                    &row.function_name,
                    &row.output,
                    &row.error,
                    &row.serialization(),
                    &row.started_ms,
                    &now_ms(),
                    &row.app_name,
                ],
            )
            .await
        {
            Ok(n) => n,
            Err(e) if is_unique_violation(&e) => 0,
            Err(e) => return Err(failed(e)),
        };
        drop(client);
        if inserted == 1 {
            Ok(())
        } else {
            self.record_missed(&row).await
        }
    }

    /// Writes the final outcome if the workflow is still PENDING and owned by `owner_xid`.
    /// Returns whether it was written.
    ///
    /// The `workflow_output` row is a plain insert; only if one already exists (written by
    /// some other tool) does a second statement overwrite it, so the common case writes no
    /// speculative-insertion record.
    pub(crate) async fn finish_workflow(&self, row: FinishRow<'_>) -> Result<bool> {
        match self.finish_with(row, false).await {
            Err(e) if e.sqlstate() == Some(UNIQUE_VIOLATION) => self.finish_with(row, true).await,
            other => other,
        }
    }

    async fn finish_with(&self, row: FinishRow<'_>, overwrite: bool) -> Result<bool> {
        let client = self.client().await?;
        let build = |conflict: &'static str| {
            move |s: &str| {
                format!(
                    "WITH updated AS (
                         UPDATE {s}.workflow_status
                            SET status = $3, deduplication_id = NULL, owner_xid = NULL, updated_at = $6, completed_at = $6
                          WHERE {OWNED_AND_PENDING}
                         RETURNING 1
                     ),
                     stored AS (
                         INSERT INTO {s}.workflow_output (workflow_uuid, output, error, retention_timestamp)
                         SELECT $1, $4, $5, $6 FROM updated
                         {conflict}
                     )
                     SELECT count(*) FROM updated"
                )
            }
        };
        let sql = if overwrite {
            self.sql(
                "finish_overwrite",
                build("ON CONFLICT (workflow_uuid) DO UPDATE SET output = EXCLUDED.output, error = EXCLUDED.error"),
            )
        } else {
            self.sql("finish", build(""))
        };
        let failed = |e| {
            Error::db(
                format!(
                    "could not record the outcome of workflow `{}`",
                    row.workflow_id
                ),
                e,
            )
        };
        let stmt = client.prepare_cached(&sql).await.map_err(failed)?;
        let written = client
            .query_one(
                &stmt,
                &[
                    &row.workflow_id,
                    &row.owner_xid,
                    &row.status,
                    &row.output,
                    &row.error,
                    &now_ms(),
                ],
            )
            .await
            .map_err(failed)?;
        Ok(written.get::<_, i64>(0) == 1)
    }

    /// Why a checkpoint was not inserted: not the owner any more, or another execution
    /// recorded this id first (rare; one extra query).
    async fn record_missed(&self, row: &CheckpointRow<'_>) -> std::result::Result<(), RecordError> {
        let client = self.client().await.map_err(RecordError::Db)?;
        let sql = self.sql("record_missed", |s| {
            format!(
                "SELECT (SELECT owner_xid = $2 FROM {s}.workflow_status WHERE workflow_uuid = $1),
                    o.function_name, o.output, o.error, o.child_workflow_id, o.serialization
               FROM (SELECT 1) AS one
               LEFT JOIN {s}.operation_outputs o ON o.workflow_uuid = $1 AND o.function_id = $3"
            )
        });
        let found = client
            .query_one(&*sql, &[&row.workflow_id, &row.owner_xid, &row.function_id])
            .await
            .map_err(|e| RecordError::Db(row.failed(e)))?;
        let owned = found.get::<_, Option<bool>>(0) == Some(true);
        match found.get::<_, Option<String>>(1) {
            Some(recorded_name) if owned => Err(RecordError::Conflict(Checkpoint {
                function_name: recorded_name,
                output: found.get(2),
                error: found.get(3),
                child_workflow_id: found.get(4),
                serialization: found.get(5),
            })),
            _ => Err(RecordError::NotOwner),
        }
    }
}
