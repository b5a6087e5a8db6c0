//! The debounce statement (DBOS's `debounce_delayed_workflow`): push a debounced `DELAYED`
//! workflow's start and replace its inputs, in one statement, or report who holds the key.
//!
//! A debounced workflow is an enqueued `DELAYED` row with `is_debounced` set and the
//! debounce key in `deduplication_id` (`<workflow name>-<key>`); the fresh row is written by
//! the ordinary start statement ([`super::workflows`]), whose unique index on
//! `(queue_name, deduplication_id)` lets only one of two concurrent first calls insert it.

use super::workflows::now_ms;
use super::Sql;
use super::SystemDatabase;
use crate::codec::PORTABLE_JSON;
use crate::error::{Error, Result};

/// One debounce call, as the statement needs it.
#[derive(Debug, Clone)]
pub(crate) struct Bounce<'a> {
    /// The workflow's name: a row of another workflow holding the same key is not pushed.
    pub(crate) name: &'a str,
    pub(crate) queue: &'a str,
    /// `<workflow name>-<key>`.
    pub(crate) deduplication_id: &'a str,
    /// The call's `now + period` (the statement caps it at the row's deadline).
    pub(crate) until_ms: i64,
    /// The call's inputs, which replace the row's.
    pub(crate) inputs: &'a str,
    /// The application the call acts for: only its rows and unclaimed ones are pushed (an
    /// unclaimed one is claimed for it). `None`: any application's.
    pub(crate) app_name: Option<&'a str>,
    /// Inside a workflow: the caller's checkpoint, written in the same statement, under its
    /// ownership.
    pub(crate) parent: Option<super::workflows::ParentLink<'a>>,
}

/// What a debounce statement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BounceOutcome {
    /// The `DELAYED` debounced workflow holding the key was pushed and given the inputs.
    Bounced(String),
    /// The caller's step was recorded already (by an earlier attempt of this call): the
    /// workflow it recorded.
    Recorded(String),
    /// The calling workflow does not own its execution any more: nothing was written.
    NotOwner,
    /// Nothing holds the key on the queue: a fresh debounced workflow may be inserted.
    Free,
    /// Another row holds the key and was not pushed.
    Held {
        workflow_id: String,
        debounced: bool,
        name: String,
        app_name: Option<String>,
    },
}

impl SystemDatabase {
    /// Pushes the debounced `DELAYED` workflow of `b.name` holding `b.deduplication_id` on
    /// `b.queue` to `min(b.until_ms, its debounce deadline)` and replaces its inputs: one
    /// statement, so two concurrent calls on one key are serialised by the row lock and the
    /// later one's inputs stay. Inside a workflow the caller's checkpoint (the workflow it
    /// got, as a child record) is written in the same statement.
    pub(crate) async fn bounce(&self, b: &Bounce<'_>) -> Result<BounceOutcome> {
        let sql = self.sql("debounce", bounce_sql);
        let (parent_id, parent_owner, parent_fid) = match &b.parent {
            Some(p) => (Some(p.workflow_id), Some(p.owner_xid), Some(p.function_id)),
            None => (None, None, None),
        };
        let now = now_ms();
        let what = format!("debounce `{}`", b.deduplication_id);
        let row = self
            .run(&what, |client, _| {
                let sql = sql.clone();
                async move {
                    let failed =
                        |e| Error::db(format!("could not debounce `{}`", b.deduplication_id), e);
                    let stmt = client.prepare_cached(&sql).await.map_err(failed)?;
                    client
                        .query_one(
                            &stmt,
                            &[
                                &b.name,
                                &b.queue,
                                &b.deduplication_id,
                                &b.until_ms,
                                &now,
                                &b.app_name,
                                &b.inputs,
                                &parent_id,
                                &parent_owner,
                                &parent_fid,
                            ],
                        )
                        .await
                        .map_err(failed)
                }
            })
            .await?;
        if let Some(id) = row.get::<_, Option<String>>(1) {
            return Ok(BounceOutcome::Recorded(id));
        }
        if !row.get::<_, bool>(2) {
            return Ok(BounceOutcome::NotOwner);
        }
        if let Some(id) = row.get::<_, Option<String>>(0) {
            return Ok(BounceOutcome::Bounced(id));
        }
        Ok(match row.get::<_, Option<String>>(3) {
            None => BounceOutcome::Free,
            Some(workflow_id) => BounceOutcome::Held {
                workflow_id,
                debounced: row.get::<_, Option<bool>>(4).unwrap_or(false),
                name: row.get::<_, Option<String>>(5).unwrap_or_default(),
                app_name: row.get(6),
            },
        })
    }
}

/// The debounce statement. Parameters: $1 name, $2 queue, $3 deduplication id, $4 the new
/// delay end, $5 now (real time), $6 application (or NULL), $7 inputs, $8–$10 the calling
/// workflow, its ownership token and the call's step id (NULL outside a workflow).
///
/// Inside a workflow nothing is pushed unless the caller still owns its execution (checked
/// under a row lock, as a child start does) and its step was not recorded yet (a retried
/// statement whose first attempt committed unseen finds its record instead).
fn bounce_sql(s: &str) -> String {
    format!(
        "WITH guard AS (
             SELECT 1 FROM {s}.workflow_status WHERE workflow_uuid = $8 AND owner_xid = $9 FOR NO KEY UPDATE
         ),
         recorded AS (
             SELECT child_workflow_id FROM {s}.operation_outputs WHERE workflow_uuid = $8 AND function_id = $10
         ),
         bounced AS (
             UPDATE {s}.workflow_status
                SET delay_until_epoch_ms = CASE WHEN debounce_deadline_epoch_ms < $4::bigint
                                                THEN debounce_deadline_epoch_ms ELSE $4::bigint END,
                    serialization = '{PORTABLE_JSON}', updated_at = $5::bigint,
                    application_name = COALESCE(application_name, $6::text)
              WHERE name = $1::text AND queue_name = $2::text AND deduplication_id = $3::text
                AND status = 'DELAYED' AND is_debounced
                AND ($6::text IS NULL OR application_name = $6::text OR application_name IS NULL)
                AND ($8::text IS NULL OR (EXISTS (SELECT 1 FROM guard) AND NOT EXISTS (SELECT 1 FROM recorded)))
             RETURNING workflow_uuid
         ),
         input AS (
             INSERT INTO {s}.workflow_input (workflow_uuid, inputs, retention_timestamp)
             SELECT workflow_uuid, $7::text, $5::bigint FROM bounced
             ON CONFLICT (workflow_uuid) DO UPDATE SET inputs = EXCLUDED.inputs
         ),
         step AS (
             INSERT INTO {s}.operation_outputs (workflow_uuid, function_id, function_name, child_workflow_id,
                                                started_at_epoch_ms, completed_at_epoch_ms, application_name)
             SELECT $8::text, $10::integer, $1::text, workflow_uuid, $5::bigint, $5::bigint, $6::text
               FROM bounced WHERE $8::text IS NOT NULL
             ON CONFLICT (workflow_uuid, function_id) DO NOTHING
         )
         SELECT (SELECT workflow_uuid FROM bounced),
                (SELECT child_workflow_id FROM recorded),
                $8::text IS NULL OR EXISTS (SELECT 1 FROM guard),
                h.workflow_uuid, h.is_debounced, h.name, h.application_name
           FROM (SELECT 1) AS one
           LEFT JOIN LATERAL (
                SELECT workflow_uuid, is_debounced, name, application_name FROM {s}.workflow_status
                 WHERE queue_name = $2::text AND deduplication_id = $3::text LIMIT 1
           ) AS h ON TRUE"
    )
}
