//! Checkpoints and outcomes: the statements every workflow runs on its hot path, each one
//! round trip and one commit, each fenced by the execution's ownership token.

use super::workflows::{now_ms, Checkpoint, OWNED_AND_PENDING};
use super::Sql;
use super::SystemDatabase;
use crate::codec::PORTABLE_JSON;
use crate::error::{Error, Result};

pub(crate) const UNIQUE_VIOLATION: &str = "23505";

pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
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
    pub(crate) child_workflow_id: Option<&'a str>,
    pub(crate) started_ms: i64,
    /// The completion time recorded; fixed before the first attempt, so a retried insert
    /// whose first attempt committed unseen recognises its own row.
    pub(crate) completed_ms: i64,
    pub(crate) app_name: &'a str,
}

impl CheckpointRow<'_> {
    fn serialization(&self) -> Option<&'static str> {
        (self.output.is_some() || self.error.is_some()).then_some(PORTABLE_JSON)
    }

    fn failed(self, e: tokio_postgres::Error) -> Error {
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
        let sql = self.sql("record", |s| format!(
            "INSERT INTO {s}.operation_outputs (workflow_uuid, function_id, function_name, output, error,
                                                serialization, started_at_epoch_ms, completed_at_epoch_ms, application_name,
                                                child_workflow_id)
             SELECT $1, $3, $4, $5, $6, $7, $8, $9, $10, $11
              WHERE EXISTS (SELECT 1 FROM {s}.workflow_status WHERE workflow_uuid = $1 AND owner_xid = $2)"
        ));
        let what = format!("record step {} `{}`", row.function_id, row.function_name);
        let inserted = self
            .run(&what, |client, _| {
                let sql = sql.clone();
                async move {
                    let failed = |e| row.failed(e);
                    let stmt = client.prepare_cached(&sql).await.map_err(failed)?;
                    match client
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
                                &row.completed_ms,
                                &row.app_name,
                                &row.child_workflow_id,
                            ],
                        )
                        .await
                    {
                        Ok(n) => Ok(n),
                        // A retry whose first attempt committed, or another execution's row:
                        // `record_missed` tells which.
                        Err(e) if is_unique_violation(&e) => Ok(0),
                        Err(e) => Err(failed(e)),
                    }
                }
            })
            .await
            .map_err(RecordError::Db)?;
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
        let completed_ms = now_ms();
        let written = match self.finish_with(row, completed_ms, false).await {
            Err(e) if e.sqlstate() == Some(UNIQUE_VIOLATION) => {
                self.finish_with(row, completed_ms, true).await
            }
            other => other,
        }?;
        if written {
            return Ok(true);
        }
        // Not written: another execution owns the workflow, or this finish committed on an
        // attempt whose acknowledgement was lost (the row then shows exactly this outcome).
        let s = self.quoted_schema();
        let sql = format!(
            "SELECT status = $2 AND completed_at = $3 FROM {s}.workflow_status WHERE workflow_uuid = $1"
        );
        self.run("check a workflow's recorded outcome", |client, _| {
            let sql = &sql;
            async move {
                let found = client
                    .query_opt(
                        sql.as_str(),
                        &[&row.workflow_id, &row.status, &completed_ms],
                    )
                    .await
                    .map_err(|e| Error::db("could not read a workflow's outcome", e))?;
                Ok(found.and_then(|r| r.get::<_, Option<bool>>(0)) == Some(true))
            }
        })
        .await
    }

    async fn finish_with(
        &self,
        row: FinishRow<'_>,
        completed_ms: i64,
        overwrite: bool,
    ) -> Result<bool> {
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
        let what = format!("record the outcome of workflow `{}`", row.workflow_id);
        self.run(&what, |client, _| {
            let sql = sql.clone();
            async move {
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
                            &completed_ms,
                        ],
                    )
                    .await
                    .map_err(failed)?;
                Ok(written.get::<_, i64>(0) == 1)
            }
        })
        .await
    }

    /// Why a checkpoint was not inserted: not the owner any more, or another execution
    /// recorded this id first (rare; one extra query). `Ok(())` when the recorded row is
    /// exactly `row`, under this owner (an insert that committed unseen).
    pub(crate) async fn record_missed(
        &self,
        row: &CheckpointRow<'_>,
    ) -> std::result::Result<(), RecordError> {
        let sql = self.sql("record_missed", |s| {
            format!(
                "SELECT (SELECT owner_xid = $2 FROM {s}.workflow_status WHERE workflow_uuid = $1),
                    o.function_name, o.output, o.error, o.child_workflow_id, o.serialization, o.completed_at_epoch_ms
               FROM (SELECT 1) AS one
               LEFT JOIN {s}.operation_outputs o ON o.workflow_uuid = $1 AND o.function_id = $3"
            )
        });
        let what = format!("check step {} `{}`", row.function_id, row.function_name);
        let found = self
            .run(&what, |client, _| {
                let sql = sql.clone();
                async move {
                    client
                        .query_one(&*sql, &[&row.workflow_id, &row.owner_xid, &row.function_id])
                        .await
                        .map_err(|e| row.failed(e))
                }
            })
            .await
            .map_err(RecordError::Db)?;
        let owned = found.get::<_, Option<bool>>(0) == Some(true);
        let name = found.get::<_, Option<String>>(1);
        let completed = found.get::<_, Option<i64>>(6);
        let ours = completed == Some(row.completed_ms)
            && found.get::<_, Option<&str>>(2) == row.output
            && found.get::<_, Option<&str>>(3) == row.error;
        match name {
            // This very insert, committed on an attempt whose acknowledgement was lost.
            Some(n) if owned && ours && n == row.function_name => Ok(()),
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
