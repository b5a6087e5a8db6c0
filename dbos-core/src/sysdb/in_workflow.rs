//! The two statements that make a management write (cancel, resume, fork, rewind, delete)
//! made inside a workflow one durable operation of that workflow: at the start of the
//! write's transaction, the calling workflow's row is locked and its owner checked (and the
//! checkpoint an earlier attempt committed is found); before the commit, the operation's
//! checkpoint is inserted. The change and its checkpoint commit together, so a recovered
//! workflow replays the checkpoint and never makes the change twice (DBOS Go's `runAsTxn`).

use super::{Sql, Tx as Transaction};

use super::records::is_unique_violation;
use super::workflows::{now_ms, Checkpoint};
use super::SystemDatabase;
use crate::codec::PORTABLE_JSON;
use crate::error::{Error, ErrorKind, Result};

/// Where a write made inside a workflow is recorded: that workflow's operation `name` at
/// `function_id`, under the execution's ownership token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InWorkflow<'a> {
    pub(crate) workflow_id: &'a str,
    pub(crate) owner_xid: &'a str,
    pub(crate) function_id: i32,
    pub(crate) name: &'a str,
    pub(crate) started_ms: i64,
    pub(crate) app_name: &'a str,
}

/// How a write made inside a workflow is recorded: where, and the checkpoint's output for
/// the write's answer. When `output` refuses the answer (it is an error: the write changed
/// nothing), the transaction is rolled back and the error returned; the caller records it.
pub(crate) struct Recorder<'a, R> {
    pub(crate) at: InWorkflow<'a>,
    pub(crate) output: &'a (dyn Fn(&R) -> Result<String> + Send + Sync),
}

/// What a write that may be recorded did.
#[derive(Debug)]
pub(crate) enum Outcome<R> {
    /// Written now (with its checkpoint, when recorded).
    Done(R),
    /// The calling workflow already has a checkpoint at this step id (an earlier attempt
    /// whose acknowledgement was lost, or another execution of it): nothing was written;
    /// replay this.
    Recorded(Checkpoint),
    /// The calling execution no longer owns its workflow: nothing was written.
    NotOwner,
}

impl SystemDatabase {
    /// The first statement of a recorded write's transaction (nothing without `rec`): locks
    /// the calling workflow's row, so a cancel or a claim of it committed meanwhile is seen
    /// and one arriving later waits for this transaction. `Some` ends the write there.
    pub(crate) async fn open_record<R, T>(
        &self,
        tx: &Transaction<'_>,
        rec: Option<&Recorder<'_, R>>,
    ) -> std::result::Result<Option<Outcome<T>>, tokio_postgres::Error> {
        let Some(rec) = rec else { return Ok(None) };
        let at = rec.at;
        let s = self.quoted_schema();
        let row = tx
            .query_opt(
                &format!(
                    "SELECT ws.owner_xid = $2, o.function_name, o.output, o.error, o.child_workflow_id, o.serialization
                       FROM {s}.workflow_status ws
                       LEFT JOIN {s}.operation_outputs o ON o.workflow_uuid = ws.workflow_uuid AND o.function_id = $3
                      WHERE ws.workflow_uuid = $1
                        FOR NO KEY UPDATE OF ws"
                ),
                &[&at.workflow_id, &at.owner_xid, &at.function_id],
            )
            .await?;
        let Some(row) = row else {
            return Ok(Some(Outcome::NotOwner));
        };
        if row.get::<_, Option<bool>>(0) != Some(true) {
            return Ok(Some(Outcome::NotOwner));
        }
        Ok(row.get::<_, Option<String>>(1).map(|function_name| {
            Outcome::Recorded(Checkpoint {
                function_name,
                output: row.get(2),
                error: row.get(3),
                child_workflow_id: row.get(4),
                serialization: row.get(5),
            })
        }))
    }

    /// The last statement of a recorded write's transaction before its commit (nothing
    /// without `rec`): the operation's checkpoint, with the answer's output.
    ///
    /// # Errors
    /// The error `output` makes of the answer; a database error; a unique violation (an
    /// execution that did not hold the lock recorded this step id first) as
    /// [`ErrorKind::ConflictingWorkflowId`].
    pub(crate) async fn close_record<R>(
        &self,
        tx: &Transaction<'_>,
        rec: Option<&Recorder<'_, R>>,
        answer: &R,
    ) -> Result<()> {
        let Some(rec) = rec else { return Ok(()) };
        let at = rec.at;
        let output = (rec.output)(answer)?;
        let s = self.quoted_schema();
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO {s}.operation_outputs (workflow_uuid, function_id, function_name, output, serialization,
                                                        started_at_epoch_ms, completed_at_epoch_ms, application_name)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ),
                &[
                    &at.workflow_id,
                    &at.function_id,
                    &at.name,
                    &output,
                    &PORTABLE_JSON,
                    &at.started_ms,
                    &now_ms(),
                    &at.app_name,
                ],
            )
            .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::new(
                ErrorKind::ConflictingWorkflowId,
                format!(
                    "another execution of workflow `{}` recorded step {} first; this one stops",
                    at.workflow_id, at.function_id
                ),
            )
            .with_workflow_id(at.workflow_id)
            .with_step(at.name, at.function_id)),
            Err(e) => Err(Error::db(
                format!("could not record step {} `{}`", at.function_id, at.name),
                e,
            )),
        }
    }
}
