//! The statements behind workflow execution. Each durable operation on the hot path is one
//! statement — one round trip and one commit — prepared once per connection:
//!
//! - start: the `workflow_status` row and its `workflow_input` row together (plus, for a
//!   child, the parent's checkpoint, fenced by the parent's ownership);
//! - each step and the finish: see [`super::records`]; each is its own statement and its own
//!   commit (no group commit: batching concurrent workflows' checkpoints measured slower, see
//!   the book's Performance chapter).

use super::Sql;
use std::collections::HashMap;

use super::SystemDatabase;
use crate::codec::PORTABLE_JSON;
use crate::error::{Error, ErrorKind, Result};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// `d` in milliseconds, at most [`MAX_WAIT`](crate::workflow::ops::MAX_WAIT) (100 years, as
/// for a sleep): a longer timeout or delay means "never" in practice, and a time plus it, or
/// the dequeue's `now + workflow_timeout_ms`, stays in range.
pub(crate) fn clamped_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.min(crate::workflow::ops::MAX_WAIT).as_millis()).unwrap_or(i64::MAX)
}

/// A workflow timeout as stored (`workflow_timeout_ms`): clamped as [`clamped_ms`]; a
/// timeout of 0 is refused, since it would cancel the `what` as soon as it starts.
pub(crate) fn timeout_ms(timeout: Option<std::time::Duration>, what: &str) -> Result<Option<i64>> {
    match timeout {
        Some(t) if t.is_zero() => Err(Error::invalid(format!(
            "a timeout of 0 would cancel the {what} as soon as it starts; give a positive timeout, or none"
        ))),
        // Below a millisecond rounds up, not down to "no time at all".
        Some(t) => Ok(Some(clamped_ms(t).max(1))),
        None => Ok(None),
    }
}

/// A new workflow row: started here (`owner_xid` set: `PENDING`, owned by the caller) or
/// enqueued (`queue` set: `ENQUEUED`, or `DELAYED` with a delay).
#[derive(Debug, Clone)]
pub(crate) struct NewWorkflow<'a> {
    pub(crate) id: &'a str,
    /// The id was generated for this call (a random UUID): the start is a plain insert, with
    /// no `ON CONFLICT` arm (a speculative insertion costs WAL on every start). Ids given by
    /// callers are idempotency keys, and their start returns the existing row.
    pub(crate) fresh_id: bool,
    pub(crate) name: &'a str,
    pub(crate) creator_xid: &'a str,
    pub(crate) owner_xid: Option<&'a str>,
    pub(crate) executor_id: Option<&'a str>,
    pub(crate) app_version: Option<&'a str>,
    /// The owning application (`application_name`); `None` leaves the row unclaimed, for
    /// any application's executors to claim.
    pub(crate) app_name: Option<&'a str>,
    pub(crate) inputs: &'a str,
    pub(crate) timeout_ms: Option<i64>,
    pub(crate) deadline_ms: Option<i64>,
    pub(crate) parent: Option<ParentLink<'a>>,
    pub(crate) queue: Option<QueueFields<'a>>,
    /// The workflow's attributes (a JSON object), if any.
    pub(crate) attributes: Option<&'a serde_json::Value>,
    /// The id reuse policy is `reject`: an existing row is returned unchanged (the caller
    /// refuses the start), and a child's start is then not recorded in its parent.
    pub(crate) reject_existing: bool,
    /// Who the workflow runs for (`authenticated_user`, `authenticated_roles`,
    /// `assumed_role`), if anyone.
    pub(crate) identity: Option<&'a crate::workflow::identity::Identity>,
}

/// The queue columns of an enqueued workflow.
#[derive(Debug, Clone, Default)]
pub(crate) struct QueueFields<'a> {
    pub(crate) queue_name: &'a str,
    pub(crate) priority: i32,
    pub(crate) deduplication_id: Option<&'a str>,
    pub(crate) partition_key: Option<&'a str>,
    pub(crate) delay_until_ms: Option<i64>,
    /// The schedule whose tick this run is (`schedule_name`).
    pub(crate) schedule_name: Option<&'a str>,
    /// A debounced workflow (`is_debounced`): its deduplication id is the debounce key,
    /// released when the delay sweep enqueues it.
    pub(crate) debounced: bool,
    /// The latest time a debounce may push its start to (`debounce_deadline_epoch_ms`).
    pub(crate) debounce_deadline_ms: Option<i64>,
}

/// The parent side of a child start: its checkpoint, written in the same statement.
#[derive(Debug, Clone)]
pub(crate) struct ParentLink<'a> {
    pub(crate) workflow_id: &'a str,
    pub(crate) owner_xid: &'a str,
    pub(crate) function_id: i32,
}

/// What the start statement found or created.
#[derive(Debug, Clone)]
pub(crate) struct StartedRow {
    /// This call inserted the row and owns the execution.
    pub(crate) created: bool,
    pub(crate) status: String,
    pub(crate) name: String,
    pub(crate) deadline_ms: Option<i64>,
}

/// A recorded operation.
#[derive(Debug, Clone)]
pub(crate) struct Checkpoint {
    pub(crate) function_name: String,
    pub(crate) output: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) child_workflow_id: Option<String>,
    pub(crate) serialization: Option<String>,
}

/// A row claimed from a queue, ready to execute.
#[derive(Debug, Clone)]
pub(crate) struct ClaimedWorkflow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) inputs: Option<String>,
    pub(crate) serialization: Option<String>,
    pub(crate) recovery_attempts: i64,
    pub(crate) deadline_ms: Option<i64>,
    pub(crate) owner_xid: String,
    /// Whether it has checkpoints (recovered, resumed or forked work) to replay; a freshly
    /// enqueued workflow has none, and its history is not read.
    pub(crate) has_history: bool,
    /// When it was (last) enqueued (its `updated_at` before the claim), for the queue-wait
    /// metric; unknown for a claim adopted after a lost acknowledgement.
    pub(crate) enqueued_at: Option<i64>,
    /// The trace carrier in its attributes (`dbos.otelContext`), if any.
    pub(crate) trace: Option<serde_json::Value>,
}

/// What the executor's watchdog reads of a running workflow.
#[derive(Debug, Clone)]
pub(crate) struct ExecutionState {
    pub(crate) status: String,
    pub(crate) owner_xid: Option<String>,
    pub(crate) executor_id: Option<String>,
}

/// A workflow's status and outcome, as read by handles.
#[derive(Debug, Clone)]
pub(crate) struct OutcomeRow {
    pub(crate) status: String,
    pub(crate) output: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) serialization: Option<String>,
    pub(crate) deadline_ms: Option<i64>,
    pub(crate) completed_at: Option<i64>,
}

impl SystemDatabase {
    /// Inserts a workflow (status + input [+ parent checkpoint]) in one statement. `None`
    /// when a parent's ownership fence failed.
    ///
    /// # Errors
    /// [`ErrorKind::QueueDeduplicated`] when the queue already holds an active workflow with
    /// the deduplication id.
    pub(crate) async fn start_workflow(&self, w: &NewWorkflow<'_>) -> Result<Option<StartedRow>> {
        let now = now_ms();
        let what = format!("start workflow `{}`", w.id);
        self.run(&what, |client, attempt| async move {
            // After a failed attempt (whose statement may have committed unseen) the start is
            // idempotent: it finds the row it inserted (its creator_xid tells) instead of
            // meeting a unique violation.
            let idempotent = !w.fresh_id || attempt > 1;
            match self.start_on(&client, w, now, idempotent).await {
                // A generated id that exists after all: take the idempotent path.
                Err(StartError::IdExists) => match self.start_on(&client, w, now, true).await {
                    Err(StartError::IdExists) => Err(Error::new(
                        ErrorKind::Database,
                        format!("workflow `{}` could not be inserted or found", w.id),
                    )),
                    Err(StartError::Other(e)) => Err(e),
                    Ok(row) => Ok(row),
                },
                Err(StartError::Other(e)) => Err(e),
                Ok(row) => Ok(row),
            }
        })
        .await
    }

    async fn start_on(
        &self,
        client: &super::Conn,
        w: &NewWorkflow<'_>,
        now: i64,
        idempotent: bool,
    ) -> std::result::Result<Option<StartedRow>, StartError> {
        let (parent_id, parent_owner, parent_fid) = match &w.parent {
            Some(p) => (Some(p.workflow_id), Some(p.owner_xid), Some(p.function_id)),
            None => (None, None, None),
        };
        let q = w.queue.clone().unwrap_or_default();
        let (user, roles, assumed_role) = match w.identity {
            Some(i) => (i.user.as_deref(), i.roles_json(), i.assumed_role.as_deref()),
            None => (None, None, None),
        };
        let queue_name = w.queue.as_ref().map(|q| q.queue_name);
        let status = match (&w.owner_xid, &w.queue) {
            (Some(_), _) => "PENDING",
            (None, Some(q)) if q.delay_until_ms.is_some() => "DELAYED",
            (None, _) => "ENQUEUED",
        };
        // A child start happens only while the parent is owned by the caller (the guard).
        let sql = match (w.parent.is_some(), idempotent) {
            (true, _) if w.reject_existing => self.sql("start_child_reject", |s| {
                start_sql_with(s, true, true, false)
            }),
            (true, _) => self.sql("start_child", |s| start_sql(s, true, true)),
            (false, true) => self.sql("start", |s| start_sql(s, false, true)),
            (false, false) => self.sql("start_fresh_id", |s| start_sql(s, false, false)),
        };
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(|e| Error::db("could not prepare the workflow start", e))?;
        let result = client
            .query(
                &stmt,
                &[
                    &w.id,
                    &w.name,
                    &w.executor_id,
                    &w.app_version,
                    &w.app_name,
                    &now,
                    &w.creator_xid,
                    &w.timeout_ms,
                    &w.deadline_ms,
                    &w.inputs,
                    &parent_id,
                    &parent_owner,
                    &parent_fid,
                    &w.owner_xid,
                    &status,
                    &queue_name,
                    &q.priority,
                    &q.deduplication_id,
                    &q.partition_key,
                    &q.delay_until_ms,
                    &w.attributes,
                    &q.schedule_name,
                    &user,
                    &roles,
                    &assumed_role,
                    &q.debounced,
                    &q.debounce_deadline_ms,
                ],
            )
            .await;
        let rows = match result {
            Ok(rows) => rows,
            Err(e) if e.code().map(|c| c.code()) == Some("23505") && !idempotent && !is_dedup(&e) => {
                return Err(StartError::IdExists)
            }
            Err(e) if is_dedup(&e) => {
                return Err(StartError::Other(Error::new(
                    ErrorKind::QueueDeduplicated,
                    format!(
                        "queue `{}` already holds an active workflow with deduplication id `{}`; it is free again once that \
                         workflow completes",
                        q.queue_name,
                        q.deduplication_id.unwrap_or_default()
                    ),
                )
                .with_workflow_id(w.id)))
            }
            Err(e) => {
                return Err(StartError::Other(Error::db(
                    format!("could not start workflow `{}`", w.id),
                    e,
                )))
            }
        };
        Ok(rows.first().map(|r| StartedRow {
            status: r.get::<_, Option<String>>(0).unwrap_or_default(),
            name: r.get::<_, Option<String>>(1).unwrap_or_default(),
            created: r.get::<_, Option<bool>>(2).unwrap_or(false),
            deadline_ms: r.get(3),
        }))
    }

    /// Every checkpoint of a workflow, by function id (one query, at the start of a replay).
    pub(crate) async fn load_checkpoints(
        &self,
        workflow_id: &str,
    ) -> Result<HashMap<i32, Checkpoint>> {
        let sql = self.sql("load_checkpoints", |s| {
            format!(
                "SELECT function_id, function_name, output, error, child_workflow_id, serialization
                   FROM {s}.operation_outputs WHERE workflow_uuid = $1"
            )
        });
        let what = format!("load the history of workflow `{workflow_id}`");
        let rows = self
            .run(&what, |client, _| {
                let sql = sql.clone();
                async move {
                    let failed = |e| {
                        Error::db(
                            format!("could not load the history of workflow `{workflow_id}`"),
                            e,
                        )
                    };
                    let stmt = client.prepare_cached(&sql).await.map_err(failed)?;
                    client.query(&stmt, &[&workflow_id]).await.map_err(failed)
                }
            })
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, i32>(0),
                    Checkpoint {
                        function_name: r.get(1),
                        output: r.get(2),
                        error: r.get(3),
                        child_workflow_id: r.get(4),
                        serialization: r.get(5),
                    },
                )
            })
            .collect())
    }

    /// Who workflow `workflow_id` runs for (DBOS's authentication columns); `None` when it
    /// does not exist. Read once per execution, by a workflow that asks and was not started
    /// here.
    pub(crate) async fn workflow_identity(
        &self,
        workflow_id: &str,
    ) -> Result<Option<crate::workflow::identity::Identity>> {
        let s = self.quoted_schema();
        let rows = self
            .query(
                &format!("read the identity of workflow `{workflow_id}`"),
                &format!(
                    "SELECT authenticated_user, authenticated_roles, assumed_role
                       FROM {s}.workflow_status WHERE workflow_uuid = $1"
                ),
                &[&workflow_id],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let roles = match row.get::<_, Option<String>>(1) {
            None => None,
            Some(text) => Some(serde_json::from_str::<Vec<String>>(&text).map_err(|e| {
                Error::new(
                    ErrorKind::Serialization,
                    format!(
                        "workflow `{workflow_id}` has authenticated roles `{text}` that are not a JSON array of \
                         strings (DBOS's form): {e}"
                    ),
                )
            })?),
        };
        Ok(Some(crate::workflow::identity::Identity {
            user: row.get(0),
            roles,
            assumed_role: row.get(2),
        }))
    }

    /// Status, name and outcome of a workflow, with the DBOS 3.x fallbacks to the legacy
    /// inline columns.
    pub(crate) async fn workflow_outcome(&self, workflow_id: &str) -> Result<Option<OutcomeRow>> {
        let sql = self.sql("outcome", |s| format!(
            "SELECT ws.status, COALESCE(wo.output, ws.output), COALESCE(wo.error, ws.error), ws.serialization,
                    ws.workflow_deadline_epoch_ms, ws.completed_at
               FROM {s}.workflow_status ws
               LEFT JOIN {s}.workflow_output wo ON wo.workflow_uuid = ws.workflow_uuid
              WHERE ws.workflow_uuid = $1"
        ));
        let what = format!("read workflow `{workflow_id}`");
        let row = self
            .run(&what, |client, _| {
                let sql = sql.clone();
                async move {
                    let stmt = client
                        .prepare_cached(&sql)
                        .await
                        .map_err(|e| Error::db("could not prepare the outcome query", e))?;
                    client.query_opt(&stmt, &[&workflow_id]).await.map_err(|e| {
                        Error::db(format!("could not read workflow `{workflow_id}`"), e)
                    })
                }
            })
            .await?;
        Ok(row.map(|r| OutcomeRow {
            status: r.get::<_, Option<String>>(0).unwrap_or_default(),
            output: r.get(1),
            error: r.get(2),
            serialization: r.get(3),
            deadline_ms: r.get(4),
            completed_at: r.get(5),
        }))
    }

    /// Status and ownership of the workflows `ids` (one query for every execution running
    /// here); missing ids were deleted.
    pub(crate) async fn execution_states(
        &self,
        ids: &[&str],
    ) -> Result<HashMap<String, ExecutionState>> {
        let sql = self.sql("execution_states", |s| {
            format!(
                "SELECT workflow_uuid, status, owner_xid, executor_id FROM {s}.workflow_status
                  WHERE workflow_uuid = ANY($1)"
            )
        });
        let rows = self
            .query("check the running workflows", &sql, &[&ids])
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    ExecutionState {
                        status: r.get::<_, Option<String>>(1).unwrap_or_default(),
                        owner_xid: r.get(2),
                        executor_id: r.get(3),
                    },
                )
            })
            .collect())
    }

    /// A parked workflow's inputs and their encoding, if it is still `PENDING` under
    /// `owner_xid` (not cancelled, resumed elsewhere or deleted while it slept).
    pub(crate) async fn parked_state(
        &self,
        workflow_id: &str,
        owner_xid: &str,
    ) -> Result<Option<(String, Option<String>)>> {
        let sql = self.sql("parked_state", |s| {
            format!(
                "SELECT COALESCE(wi.inputs, ws.inputs), ws.serialization FROM {s}.workflow_status ws
                   LEFT JOIN {s}.workflow_input wi ON wi.workflow_uuid = ws.workflow_uuid
                  WHERE ws.workflow_uuid = $1 AND ws.owner_xid = $2 AND ws.status = 'PENDING'"
            )
        });
        let what = format!("read the state of parked workflow `{workflow_id}`");
        let row = self
            .query_opt(&what, &sql, &[&workflow_id, &owner_xid])
            .await?;
        Ok(row.map(|r| {
            (
                r.get::<_, Option<String>>(0)
                    .unwrap_or_else(|| "{}".to_owned()),
                r.get(1),
            )
        }))
    }

    /// Of the parked `(workflow, owner token)` pairs, the workflows still `PENDING` under
    /// that token (the others were cancelled, finished, taken over or deleted elsewhere).
    pub(crate) async fn still_parked(
        &self,
        ids: &[&str],
        owners: &[&str],
    ) -> Result<std::collections::HashSet<String>> {
        let sql = self.sql("still_parked", |s| {
            format!(
                "SELECT ws.workflow_uuid FROM unnest($1::text[], $2::text[]) AS k(id, owner)
                   JOIN {s}.workflow_status ws ON ws.workflow_uuid = k.id AND ws.owner_xid = k.owner
                  WHERE ws.status = 'PENDING'"
            )
        });
        let rows = self
            .query("check the parked workflows", &sql, &[&ids, &owners])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Cancels a workflow that is not finished (status CANCELLED, leaves its queue).
    pub(crate) async fn cancel_workflow(&self, workflow_id: &str) -> Result<bool> {
        let s = self.quoted_schema();
        let now = now_ms();
        let n = self
            .execute(
                &format!("cancel workflow `{workflow_id}`"),
                &format!(
                    "UPDATE {s}.workflow_status
                        SET status = 'CANCELLED', owner_xid = NULL, queue_name = NULL, deduplication_id = NULL,
                            started_at_epoch_ms = NULL, updated_at = $2, completed_at = $2
                      WHERE workflow_uuid = $1 AND status NOT IN ('SUCCESS', 'ERROR')"
                ),
                &[&workflow_id, &now],
            )
            .await?;
        Ok(n > 0)
    }

    /// Registers an application version (idempotent).
    pub(crate) async fn register_version(&self, version: &str, app_name: &str) -> Result<()> {
        let s = self.quoted_schema();
        self.execute(
            "register the application version",
            &format!(
                "INSERT INTO {s}.application_versions (version_id, version_name, application_name)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
            ),
            &[&uuid::Uuid::new_v4().to_string(), &version, &app_name],
        )
        .await?;
        Ok(())
    }

    /// Moves an executor's PENDING workflows of this version back to their queue (or the
    /// internal queue), idempotently, returning their ids. Workflows in `alive` (running or
    /// parked in this process) are left to their live execution.
    pub(crate) async fn requeue_pending(
        &self,
        executor_id: &str,
        version: &str,
        app_name: &str,
        alive: &[String],
    ) -> Result<Vec<String>> {
        let s = self.quoted_schema();
        let rows = self
            .query(
                "re-enqueue pending workflows for recovery",
                &format!(
                    "UPDATE {s}.workflow_status
                        SET status = 'ENQUEUED', owner_xid = NULL, started_at_epoch_ms = NULL, updated_at = $4,
                            queue_name = COALESCE(queue_name, '{INTERNAL_QUEUE}')
                      WHERE status = 'PENDING' AND executor_id = $1 AND application_version = $2
                        AND (application_name = $3 OR application_name IS NULL)
                        AND NOT (workflow_uuid = ANY($5))
                     RETURNING workflow_uuid"
                ),
                &[&executor_id, &version, &app_name, &now_ms(), &alive],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Moves a workflow past its recovery limit to the dead-letter status.
    pub(crate) async fn dead_letter(&self, workflow_id: &str, owner_xid: &str) -> Result<()> {
        let s = self.quoted_schema();
        self.execute(
            &format!("dead-letter workflow `{workflow_id}`"),
            &format!(
                "UPDATE {s}.workflow_status
                    SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', owner_xid = NULL, deduplication_id = NULL,
                        started_at_epoch_ms = NULL, queue_name = NULL, completed_at = $3, updated_at = $3
                  WHERE {OWNED_AND_PENDING}"
            ),
            &[&workflow_id, &owner_xid, &now_ms()],
        )
        .await?;
        Ok(())
    }

    /// Why a fenced write failed: the workflow's current status (CANCELLED, or PENDING under
    /// another owner).
    pub(crate) async fn ownership_error(&self, workflow_id: &str) -> Error {
        match self.workflow_outcome(workflow_id).await {
            Ok(Some(row)) if row.status == "CANCELLED" => Error::new(
                ErrorKind::WorkflowCancelled,
                format!("workflow `{workflow_id}` was cancelled; it stops at its next durable operation"),
            )
            .with_workflow_id(workflow_id),
            Ok(Some(row)) => Error::new(
                ErrorKind::ConflictingWorkflowId,
                format!(
                    "workflow `{workflow_id}` is now owned by another execution (status {}); this execution stops and \
                     defers to it",
                    row.status
                ),
            )
            .with_workflow_id(workflow_id),
            Ok(None) => Error::new(ErrorKind::NonExistentWorkflow, format!("workflow `{workflow_id}` no longer exists"))
                .with_workflow_id(workflow_id),
            Err(e) => e,
        }
    }
}

/// The row of workflow `$1`, if execution `$2` owns it and it is still `PENDING`.
///
/// The status test is written so the planner cannot serve it from the partial index on
/// `PENDING` rows (`idx_workflow_status_pending`): a plan made while that index was small
/// scanned every pending workflow to find one, on every finish. With the test hidden in a
/// `CASE`, the only index that fits is the primary key: one lookup, however many workflows
/// are pending.
pub(crate) const OWNED_AND_PENDING: &str =
    "workflow_uuid = $1 AND owner_xid = $2 AND CASE status WHEN 'PENDING' THEN TRUE ELSE FALSE END";

/// Why a start statement failed.
enum StartError {
    /// A non-idempotent start found the id taken.
    IdExists,
    Other(Error),
}

impl From<Error> for StartError {
    fn from(e: Error) -> Self {
        StartError::Other(e)
    }
}

/// The unique index behind queue deduplication.
const DEDUP_INDEX: &str = "uq_workflow_status_dedup_id";

fn is_dedup(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().and_then(|d| d.constraint()) == Some(DEDUP_INDEX)
}

/// The start statement. A child start (`with_parent`) also checks the parent's ownership
/// under a row lock and writes the parent's checkpoint, all in the one statement; a top-level
/// start leaves those parts out (its parameters $12 and $13 are then unused and NULL).
/// `idempotent`: an existing row with the id is returned instead of a unique violation.
fn start_sql(s: &str, with_parent: bool, idempotent: bool) -> String {
    start_sql_with(s, with_parent, idempotent, true)
}

/// [`start_sql`]; `link_existing`: a child start that finds its id taken still records the
/// existing child in the parent (the default policy, which returns it); without, only a child
/// this statement created is recorded (the `reject` policy, whose refusal is recorded instead).
fn start_sql_with(s: &str, with_parent: bool, idempotent: bool, link_existing: bool) -> String {
    let created_only = if link_existing {
        ""
    } else {
        " WHERE ins.creator_xid = $7"
    };
    let (on_status_conflict, on_input_conflict) = if idempotent {
        (
            format!("ON CONFLICT (workflow_uuid) DO UPDATE SET creator_xid = {s}.workflow_status.creator_xid"),
            "ON CONFLICT (workflow_uuid) DO NOTHING",
        )
    } else {
        (String::new(), "")
    };
    let (guard, gate, parent_step) = if with_parent {
        (
            format!(
                "guard AS (
                     SELECT 1 FROM {s}.workflow_status
                      WHERE workflow_uuid = $11 AND owner_xid = $12 FOR NO KEY UPDATE
                 ),"
            ),
            "WHERE EXISTS (SELECT 1 FROM guard)",
            format!(
                ", parent_step AS (
                     INSERT INTO {s}.operation_outputs (workflow_uuid, function_id, function_name, child_workflow_id,
                                                       started_at_epoch_ms, completed_at_epoch_ms, application_name)
                     SELECT $11, $13, $2, $1, $6, $6, $5 FROM ins{created_only}
                     ON CONFLICT (workflow_uuid, function_id) DO NOTHING
                 )"
            ),
        )
    } else {
        (
            String::new(),
            "WHERE $12::text IS NULL AND $13::integer IS NULL",
            String::new(),
        )
    };
    // `started_at_epoch_ms` is the dequeue time (DBOS's `dequeued_at`, the rate limiter's
    // clock): only a dequeue sets it, so a direct start leaves it NULL, as DBOS does.
    format!(
        "WITH {guard}
         ins AS (
             INSERT INTO {s}.workflow_status (
                 workflow_uuid, status, name, executor_id, application_version, application_name,
                 created_at, updated_at, recovery_attempts, owner_xid, creator_xid, serialization,
                 workflow_timeout_ms, workflow_deadline_epoch_ms, parent_workflow_id, started_at_epoch_ms,
                 queue_name, priority, deduplication_id, queue_partition_key, delay_until_epoch_ms, attributes,
                 schedule_name, authenticated_user, authenticated_roles, assumed_role, is_debounced,
                 debounce_deadline_epoch_ms)
             SELECT $1::text, $15::text, $2::text, $3::text, $4::text, $5::text, $6::bigint, $6::bigint,
                    CASE WHEN $15::text = 'PENDING' THEN 1 ELSE 0 END, $14::text, $7::text, '{PORTABLE_JSON}',
                    $8::bigint, $9::bigint, $11::text, NULL::bigint,
                    $16::text, $17::integer, $18::text, $19::text, $20::bigint, $21::jsonb, $22::text,
                    $23::text, $24::text, $25::text, $26::boolean, $27::bigint
              {gate}
             {on_status_conflict}
             RETURNING status, name, creator_xid, workflow_deadline_epoch_ms
         ),
         input AS (
             INSERT INTO {s}.workflow_input (workflow_uuid, inputs, retention_timestamp)
             SELECT $1, $10, $6 FROM ins WHERE ins.creator_xid = $7
             {on_input_conflict}
         ){parent_step}
         SELECT status, name, creator_xid = $7, workflow_deadline_epoch_ms FROM ins"
    )
}

/// The queue recovery, resume and fork use; always served.
pub(crate) const INTERNAL_QUEUE: &str = "_dbos_internal_queue";
