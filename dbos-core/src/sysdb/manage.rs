//! The statements behind operating workflows: listing workflows and steps, cancel, resume,
//! fork, rewind, delete, garbage collection, application versions and queue depth.
//!
//! Each write is one transaction (most are one statement), so a crash or a lost connection
//! leaves either all of it or none of it; a retried attempt whose first try may have
//! committed unseen recognises its own work (see each statement). The column updates follow
//! DBOS Transact 3.x (`reference/dbos-protocol.md` §1e), so rows changed here are what DBOS's
//! own CLI and clients would write.

use super::Sql;
use tokio_postgres::types::ToSql;

use super::in_workflow::{Outcome, Recorder};
use super::workflows::{now_ms, INTERNAL_QUEUE};
use super::SystemDatabase;
use crate::error::{Error, ErrorKind, Result};
use crate::manage::ListWorkflows;
use crate::workflow::call::Status;

/// Statuses of workflows that will run again by themselves.
const ACTIVE: &str = "('PENDING', 'ENQUEUED', 'DELAYED')";
/// Statuses of workflows that are done (until resumed, rewound or forked).
const TERMINAL: &str = "('SUCCESS', 'ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')";

/// One bound parameter of a statement built at run time.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// The parameters of a statement built at run time, numbered as they are added.
#[derive(Default)]
pub(crate) struct Params(Vec<Param>);

impl Params {
    /// Adds a parameter and returns its placeholder (`$n`).
    pub(crate) fn push(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(value));
        format!("${}", self.0.len())
    }

    pub(crate) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// A `workflow_status` row as listed, with its payload columns as stored.
#[derive(Debug, Clone)]
pub(crate) struct WorkflowRow {
    pub(crate) workflow_id: String,
    pub(crate) status: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) recovery_attempts: Option<i64>,
    pub(crate) config_name: Option<String>,
    pub(crate) class_name: Option<String>,
    pub(crate) authenticated_user: Option<String>,
    pub(crate) authenticated_roles: Option<String>,
    pub(crate) assumed_role: Option<String>,
    pub(crate) queue_name: Option<String>,
    pub(crate) executor_id: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) app_version: Option<String>,
    pub(crate) app_id: Option<String>,
    pub(crate) deadline_ms: Option<i64>,
    pub(crate) timeout_ms: Option<i64>,
    pub(crate) deduplication_id: Option<String>,
    pub(crate) priority: i32,
    pub(crate) partition_key: Option<String>,
    pub(crate) forked_from: Option<String>,
    pub(crate) parent_workflow_id: Option<String>,
    pub(crate) started_at: Option<i64>,
    pub(crate) delay_until: Option<i64>,
    pub(crate) was_forked_from: bool,
    pub(crate) completed_at: Option<i64>,
    pub(crate) attributes: Option<serde_json::Value>,
    pub(crate) schedule_name: Option<String>,
    pub(crate) application_name: Option<String>,
    pub(crate) serialization: Option<String>,
    pub(crate) inputs: Option<String>,
    pub(crate) output: Option<String>,
    pub(crate) error: Option<String>,
}

/// An `operation_outputs` row as listed.
#[derive(Debug, Clone)]
pub(crate) struct StepRow {
    pub(crate) function_id: i32,
    pub(crate) function_name: String,
    pub(crate) output: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) child_workflow_id: Option<String>,
    pub(crate) started_at: Option<i64>,
    pub(crate) completed_at: Option<i64>,
    pub(crate) serialization: Option<String>,
}

/// What a resume found for one workflow.
#[derive(Debug, Clone)]
pub(crate) enum ResumeRow {
    /// The workflow had finished (`SUCCESS` or `ERROR`): left as it is.
    Finished(String),
    /// Enqueued again.
    Enqueued,
}

/// What a resume of several workflows did.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResumeAll {
    /// The ids given that name no workflow: when any, nothing was changed.
    pub(crate) missing: Vec<String>,
    /// Each workflow, in the order given, and what became of it.
    pub(crate) rows: Vec<(String, ResumeRow)>,
}

/// A fork to write.
#[derive(Debug, Clone)]
pub(crate) struct ForkRow<'a> {
    pub(crate) original: &'a str,
    pub(crate) forked: &'a str,
    pub(crate) start_step: i32,
    pub(crate) app_version: Option<&'a str>,
    pub(crate) queue: Option<&'a str>,
    pub(crate) partition_key: Option<&'a str>,
    pub(crate) timeout_ms: Option<i64>,
    /// Owner of the fork when the original is unclaimed.
    pub(crate) app_name: Option<&'a str>,
    /// Child ids replaced in the copied checkpoints: old ids, and the new ids at the same
    /// positions.
    pub(crate) replaced_children: (Vec<&'a str>, Vec<&'a str>),
}

/// A rewind to write.
#[derive(Debug, Clone)]
pub(crate) struct RewindRow<'a> {
    pub(crate) workflow_id: &'a str,
    pub(crate) start_step: i32,
    pub(crate) app_version: Option<&'a str>,
    pub(crate) queue: Option<&'a str>,
    pub(crate) partition_key: Option<&'a str>,
}

/// An application version row.
#[derive(Debug, Clone)]
pub(crate) struct VersionRow {
    pub(crate) version_id: String,
    pub(crate) version_name: String,
    pub(crate) version_timestamp: i64,
    pub(crate) created_at: i64,
    pub(crate) application_name: Option<String>,
}

/// A `dbos.queues` row.
#[derive(Debug, Clone)]
pub(crate) struct QueueRow {
    pub(crate) name: String,
    pub(crate) concurrency: Option<i32>,
    pub(crate) worker_concurrency: Option<i32>,
    pub(crate) rate_limit_max: Option<i32>,
    pub(crate) rate_limit_period_sec: Option<f64>,
    pub(crate) partitioned: bool,
    pub(crate) partition_concurrency: Option<i32>,
    pub(crate) partition_worker_concurrency: Option<i32>,
    pub(crate) partition_rate_limit_max: Option<i32>,
    pub(crate) partition_rate_limit_period_sec: Option<f64>,
    pub(crate) polling_interval_sec: f64,
    pub(crate) application_name: Option<String>,
}

/// The workflows of one queue by status.
#[derive(Debug, Clone, Default)]
pub(crate) struct QueueDepth {
    pub(crate) enqueued: i64,
    pub(crate) pending: i64,
    pub(crate) delayed: i64,
}

/// The last recorded step of a workflow: (function id, name), `(0, "")` without history.
type LastStep = (i32, String);

/// A string as an SQL literal (statuses are inlined so the planner can match the partial
/// indexes on status, which it cannot prove from a parameter).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A `LIKE` pattern matching strings that start with `prefix`.
fn prefix_pattern(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// `column = $n` for one value, `column = ANY($n)` for several.
pub(crate) fn any_of(params: &mut Params, column: &str, values: &[String]) -> String {
    if let [one] = values {
        format!("{column} = {}", params.push(one.clone()))
    } else {
        format!("{column} = ANY({})", params.push(values.to_vec()))
    }
}

/// The application scope of an observability read on table alias `t`: the applications
/// named (plus unclaimed rows), else `default_app`'s rows plus unclaimed ones, else none.
pub(crate) fn app_scope(
    p: &mut Params,
    t: &str,
    names: &[String],
    default_app: Option<&str>,
) -> Option<String> {
    let column = format!("{t}.application_name");
    if !names.is_empty() {
        let names = any_of(p, &column, names);
        Some(format!("({names} OR {column} IS NULL)"))
    } else {
        default_app.map(|app| {
            format!(
                "({column} = {} OR {column} IS NULL)",
                p.push(app.to_owned())
            )
        })
    }
}

/// Rows of alias `t` whose workflow id starts with any of `prefixes` (none: no condition).
pub(crate) fn id_prefixes(p: &mut Params, t: &str, prefixes: &[String]) -> Option<String> {
    if prefixes.is_empty() {
        return None;
    }
    let likes: Vec<String> = prefixes
        .iter()
        .map(|prefix| format!("{t}.workflow_uuid LIKE {}", p.push(prefix_pattern(prefix))))
        .collect();
    Some(format!("({})", likes.join(" OR ")))
}

/// The `WHERE` clause (empty, or starting with a space) selecting the `workflow_status` rows
/// (aliased `ws`) that `q`'s filters select, its parameters added to `p`: shared by the
/// listing and the aggregates, so both select the same rows.
pub(crate) fn workflow_filter(
    p: &mut Params,
    q: &ListWorkflows,
    default_app: Option<&str>,
) -> String {
    let mut conditions: Vec<String> = Vec::new();
    // Explicit ids are global addresses: no default scope with them.
    let default_app = default_app.filter(|_| q.workflow_ids.is_empty());
    conditions.extend(app_scope(p, "ws", &q.application_names, default_app));
    if !q.workflow_ids.is_empty() {
        conditions.push(any_of(p, "ws.workflow_uuid", &q.workflow_ids));
    }
    conditions.extend(id_prefixes(p, "ws", &q.id_prefixes));
    // Statuses are ORed equalities, not an IN list: each arm can then use the partial index
    // its status has (the queued listing's `DELAYED` arm the delayed-workflows index, its
    // `ENQUEUED` and `PENDING` arms the in-flight index), where an IN list that no single
    // index's predicate covers made the planner scan the table.
    let statuses: Vec<&str> = if !q.statuses.is_empty() {
        q.statuses.iter().map(Status::as_str).collect()
    } else if q.queued_only {
        vec!["ENQUEUED", "PENDING", "DELAYED"]
    } else {
        Vec::new()
    };
    if !statuses.is_empty() {
        let arms: Vec<String> = statuses
            .iter()
            .map(|st| format!("ws.status = {}", literal(st)))
            .collect();
        conditions.push(format!("({})", arms.join(" OR ")));
    }
    if q.queued_only {
        conditions.push("ws.queue_name IS NOT NULL".to_owned());
    }
    for (column, values) in [
        ("ws.name", &q.names),
        ("ws.application_version", &q.app_versions),
        ("ws.executor_id", &q.executor_ids),
        ("ws.queue_name", &q.queue_names),
        ("ws.parent_workflow_id", &q.parent_ids),
        ("ws.forked_from", &q.forked_from),
        ("ws.schedule_name", &q.schedule_names),
        ("ws.authenticated_user", &q.users),
    ] {
        if !values.is_empty() {
            conditions.push(any_of(p, column, values));
        }
    }
    for (column, range) in [
        ("ws.created_at", &q.created),
        ("ws.completed_at", &q.completed),
        ("ws.started_at_epoch_ms", &q.dequeued),
    ] {
        if let Some(after) = range.after {
            conditions.push(format!("{column} >= {}", p.push(after)));
        }
        if let Some(before) = range.before {
            conditions.push(format!("{column} <= {}", p.push(before)));
        }
    }
    if let Some((created_at, id)) = &q.page_after {
        let op = if q.newest_first { "<" } else { ">" };
        conditions.push(format!(
            "(ws.created_at, ws.workflow_uuid) {op} ({}, {})",
            p.push(*created_at),
            p.push(id.clone())
        ));
    }
    if let Some(attributes) = &q.attributes {
        conditions.push(format!(
            "ws.attributes @> {}::jsonb",
            p.push(attributes.clone())
        ));
    }
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

/// The listing statement for `q` and its parameters. Without an explicit application filter
/// (and without explicit ids, which are global addresses) the listing is scoped to
/// `default_app`'s rows plus unclaimed ones, as DBOS scopes observability reads.
pub(crate) fn list_workflows_sql(
    s: &str,
    q: &ListWorkflows,
    default_app: Option<&str>,
) -> (String, Params) {
    let mut p = Params::default();
    let filter = workflow_filter(&mut p, q, default_app);
    let (inputs, input_join) = if q.load_input {
        (
            "COALESCE(wi.inputs, ws.inputs)",
            format!(" LEFT JOIN {s}.workflow_input wi ON wi.workflow_uuid = ws.workflow_uuid"),
        )
    } else {
        ("NULL::text", String::new())
    };
    let (outputs, output_join) = if q.load_output {
        (
            "COALESCE(wo.output, ws.output), COALESCE(wo.error, ws.error)",
            format!(" LEFT JOIN {s}.workflow_output wo ON wo.workflow_uuid = ws.workflow_uuid"),
        )
    } else {
        ("NULL::text, NULL::text", String::new())
    };
    let order = if q.newest_first { "DESC" } else { "ASC" };
    // With an id prefix, the rows come from the id index (the prefix bounds that scan) and
    // are then sorted: `+ 0` keeps the planner from walking the whole created_at index
    // instead, filtering every row, which it did pick now and then when its sample
    // overestimated how many ids share the prefix (100,000 rows read for 100 listed).
    let created = if q.id_prefixes.is_empty() {
        "ws.created_at"
    } else {
        "(ws.created_at + 0)"
    };
    let mut sql = format!(
        "SELECT ws.workflow_uuid, ws.status, ws.name, ws.recovery_attempts, ws.config_name, ws.class_name,
                ws.authenticated_user, ws.authenticated_roles, ws.assumed_role, ws.queue_name, ws.executor_id,
                ws.created_at, ws.updated_at, ws.application_version, ws.application_id,
                ws.workflow_deadline_epoch_ms, ws.workflow_timeout_ms, ws.deduplication_id, ws.priority,
                ws.queue_partition_key, ws.forked_from, ws.parent_workflow_id, ws.started_at_epoch_ms,
                ws.delay_until_epoch_ms, ws.was_forked_from, ws.completed_at, ws.attributes, ws.schedule_name,
                ws.application_name, ws.serialization, {inputs}, {outputs}
           FROM {s}.workflow_status ws{input_join}{output_join}{filter}
          ORDER BY {created} {order}, ws.workflow_uuid {order}"
    );
    if let Some(limit) = q.limit {
        sql.push_str(&format!(" LIMIT {}", p.push(i64::from(limit))));
    }
    if let Some(offset) = q.offset {
        sql.push_str(&format!(" OFFSET {}", p.push(i64::from(offset))));
    }
    (sql, p)
}

fn workflow_row(r: &tokio_postgres::Row) -> WorkflowRow {
    WorkflowRow {
        workflow_id: r.get(0),
        status: r.get(1),
        name: r.get(2),
        recovery_attempts: r.get(3),
        config_name: r.get(4),
        class_name: r.get(5),
        authenticated_user: r.get(6),
        authenticated_roles: r.get(7),
        assumed_role: r.get(8),
        queue_name: r.get(9),
        executor_id: r.get(10),
        created_at: r.get(11),
        updated_at: r.get(12),
        app_version: r.get(13),
        app_id: r.get(14),
        deadline_ms: r.get(15),
        timeout_ms: r.get(16),
        deduplication_id: r.get(17),
        priority: r.get(18),
        partition_key: r.get(19),
        forked_from: r.get(20),
        parent_workflow_id: r.get(21),
        started_at: r.get(22),
        delay_until: r.get(23),
        was_forked_from: r.get(24),
        completed_at: r.get(25),
        attributes: r.get(26),
        schedule_name: r.get(27),
        application_name: r.get(28),
        serialization: r.get(29),
        inputs: r.get(30),
        output: r.get(31),
        error: r.get(32),
    }
}

/// The recursive walk from a workflow to its descendants (through `parent_workflow_id`),
/// as a CTE named `tree(id)`; just the workflow itself without `descendants`.
pub(crate) fn tree_cte(s: &str, descendants: bool) -> String {
    let walk = if descendants {
        format!(
            " UNION SELECT c.workflow_uuid FROM {s}.workflow_status c JOIN tree ON c.parent_workflow_id = tree.id"
        )
    } else {
        String::new()
    };
    format!(
        "missing(id) AS (SELECT unnest($1::text[]) EXCEPT SELECT workflow_uuid FROM {s}.workflow_status
                          WHERE workflow_uuid = ANY($1)),
         tree(id) AS (SELECT workflow_uuid FROM {s}.workflow_status
                       WHERE workflow_uuid = ANY($1) AND NOT EXISTS (SELECT 1 FROM missing){walk})"
    )
}

/// `workflow `a`` or `3 workflows (`a`, `b`, ...)`, for messages.
fn show_ids(ids: &[&str]) -> String {
    match ids {
        [one] => format!("workflow `{one}`"),
        _ => {
            let shown: Vec<String> = ids.iter().take(3).map(|id| format!("`{id}`")).collect();
            let more = if ids.len() > 3 { ", ..." } else { "" };
            format!("{} workflows ({}{more})", ids.len(), shown.join(", "))
        }
    }
}

/// What an operation on several workflows (and maybe their descendants) did.
#[derive(Debug, Clone, Default)]
pub(crate) struct TreeChange {
    /// The ids given that name no workflow: when any, nothing was changed.
    pub(crate) missing: Vec<String>,
    /// The workflows changed.
    pub(crate) changed: Vec<String>,
}

impl SystemDatabase {
    /// The workflows `q` selects.
    pub(crate) async fn list_workflow_rows(
        &self,
        q: &ListWorkflows,
        default_app: Option<&str>,
    ) -> Result<Vec<WorkflowRow>> {
        let (sql, params) = list_workflows_sql(self.quoted_schema(), q, default_app);
        let refs = params.refs();
        let rows = self.query("list workflows", &sql, &refs).await?;
        Ok(rows.iter().map(workflow_row).collect())
    }

    /// How many workflows `q` selects, ignoring its limit, offset and order, counted up to
    /// `at_most` (the count stops there, so it stays cheap on a large table).
    pub(crate) async fn count_workflow_rows(
        &self,
        q: &ListWorkflows,
        default_app: Option<&str>,
        at_most: u32,
    ) -> Result<u64> {
        let mut q = q.clone().without_input().without_output();
        q.limit = Some(at_most);
        q.offset = None;
        let (sql, params) = list_workflows_sql(self.quoted_schema(), &q, default_app);
        let refs = params.refs();
        let rows = self
            .query(
                "count workflows",
                &format!("SELECT count(*) FROM ({sql}) AS listed"),
                &refs,
            )
            .await?;
        let n: i64 = rows.first().map(|r| r.get(0)).unwrap_or_default();
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` of the listing statement for `q`.
    pub(crate) async fn explain_list_workflows(
        &self,
        q: &ListWorkflows,
        default_app: Option<&str>,
    ) -> Result<serde_json::Value> {
        let (sql, params) = list_workflows_sql(self.quoted_schema(), q, default_app);
        self.explain(&sql, params).await
    }

    /// `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` of a statement built at run time, for the
    /// query-plan tests.
    pub(crate) async fn explain(&self, sql: &str, params: Params) -> Result<serde_json::Value> {
        let rows = self
            .query(
                "explain a statement",
                &format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"),
                &params.refs(),
            )
            .await?;
        Ok(rows
            .first()
            .map(|r| r.get::<_, serde_json::Value>(0))
            .unwrap_or_default())
    }

    /// The recorded steps of a workflow in order; `None` when the workflow does not exist.
    pub(crate) async fn list_step_rows(
        &self,
        workflow_id: &str,
        limit: Option<i64>,
        offset: Option<i64>,
    ) -> Result<Option<Vec<StepRow>>> {
        let s = self.quoted_schema();
        let what = format!("list the steps of workflow `{workflow_id}`");
        let sql = format!(
            "SELECT o.function_id, o.function_name, o.output, o.error, o.child_workflow_id, o.started_at_epoch_ms,
                    o.completed_at_epoch_ms, o.serialization,
                    EXISTS (SELECT 1 FROM {s}.workflow_status WHERE workflow_uuid = $1)
               FROM (SELECT 1) AS one
               LEFT JOIN LATERAL (
                    SELECT * FROM {s}.operation_outputs WHERE workflow_uuid = $1
                     ORDER BY function_id LIMIT $2 OFFSET $3) o ON TRUE"
        );
        let offset = offset.unwrap_or(0);
        let rows = self
            .query(&what, &sql, &[&workflow_id, &limit, &offset])
            .await?;
        if !rows.first().is_some_and(|r| r.get::<_, bool>(8)) {
            return Ok(None);
        }
        Ok(Some(
            rows.iter()
                .filter(|r| r.get::<_, Option<i32>>(0).is_some())
                .map(|r| StepRow {
                    function_id: r.get(0),
                    function_name: r.get(1),
                    output: r.get(2),
                    error: r.get(3),
                    child_workflow_id: r.get(4),
                    started_at: r.get(5),
                    completed_at: r.get(6),
                    serialization: r.get(7),
                })
                .collect(),
        ))
    }

    /// The last recorded step of a workflow (function id and name), `(0, "")` when it has
    /// none; `None` when the workflow does not exist.
    async fn last_step_on(
        &self,
        client: &super::Tx<'_>,
        workflow_id: &str,
    ) -> std::result::Result<Option<(String, LastStep)>, tokio_postgres::Error> {
        let s = self.quoted_schema();
        let row = client
            .query_opt(
                &format!(
                    "SELECT ws.status,
                            (SELECT function_id FROM {s}.operation_outputs WHERE workflow_uuid = $1 ORDER BY function_id DESC LIMIT 1),
                            (SELECT function_name FROM {s}.operation_outputs WHERE workflow_uuid = $1 ORDER BY function_id DESC LIMIT 1)
                       FROM {s}.workflow_status ws WHERE ws.workflow_uuid = $1 FOR UPDATE"
                ),
                &[&workflow_id],
            )
            .await?;
        Ok(row.map(|r| {
            (
                r.get::<_, Option<String>>(0).unwrap_or_default(),
                (
                    r.get::<_, Option<i32>>(1).unwrap_or(0),
                    r.get::<_, Option<String>>(2).unwrap_or_default(),
                ),
            )
        }))
    }

    /// The ids of `ids` that name no workflow.
    pub(crate) async fn missing_ids(&self, ids: &[&str]) -> Result<Vec<String>> {
        let s = self.quoted_schema();
        let sql = format!(
            "SELECT ARRAY(SELECT unnest($1::text[]) EXCEPT SELECT workflow_uuid FROM {s}.workflow_status
                                                           WHERE workflow_uuid = ANY($1))"
        );
        let row = self
            .query_opt(&format!("look up {}", show_ids(ids)), &sql, &[&ids])
            .await?;
        Ok(row.map(|r| r.get(0)).unwrap_or_default())
    }

    /// Cancels workflows (and, with `descendants`, every workflow they started,
    /// recursively) that have not finished; nothing when an id is missing. Idempotent: a
    /// retry cancels nothing new. With `rec`, recorded as the calling workflow's operation.
    pub(crate) async fn cancel_tree(
        &self,
        ids: &[&str],
        descendants: bool,
        rec: Option<&Recorder<'_, TreeChange>>,
    ) -> Result<Outcome<TreeChange>> {
        let s = self.quoted_schema();
        let now = now_ms();
        let tree = tree_cte(s, descendants);
        let sql = format!(
            "WITH RECURSIVE {tree},
             cancelled AS (
                 UPDATE {s}.workflow_status
                    SET status = 'CANCELLED', owner_xid = NULL, queue_name = NULL, deduplication_id = NULL,
                        started_at_epoch_ms = NULL, updated_at = $2, completed_at = $2
                  WHERE workflow_uuid IN (SELECT id FROM tree) AND status NOT IN ('SUCCESS', 'ERROR')
                 RETURNING workflow_uuid)
             SELECT ARRAY(SELECT id FROM missing), ARRAY(SELECT workflow_uuid FROM cancelled)"
        );
        let what = format!("cancel {}", show_ids(ids));
        self.run(&what, |mut client, _| {
            let (sql, what) = (&sql, &what);
            async move {
                let failed = |e| Error::db(format!("could not {what}"), e);
                let tx = client.transaction().await.map_err(failed)?;
                if let Some(done) = self.open_record(&tx, rec).await.map_err(failed)? {
                    return Ok(done);
                }
                let row = tx
                    .query_one(sql.as_str(), &[&ids, &now])
                    .await
                    .map_err(failed)?;
                let change = TreeChange {
                    missing: row.get(0),
                    changed: row.get(1),
                };
                self.close_record(&tx, rec, &change).await?;
                tx.commit().await.map_err(failed)?;
                Ok(Outcome::Done(change))
            }
        })
        .await
    }

    /// Puts workflows that have not finished back on a queue (the internal one by default),
    /// to continue from their last checkpoint: DBOS's resume, all in one transaction;
    /// nothing when an id is missing. A retry whose first attempt committed unseen finds each
    /// workflow active and stamped with this resume's time, and leaves it as it is. With
    /// `rec`, recorded as the calling workflow's operation. Onto a `partitioned` queue, a
    /// workflow without a partition key would never be dequeued: refused (nothing changes).
    pub(crate) async fn resume_all(
        &self,
        ids: &[&str],
        queue: Option<&str>,
        partitioned: bool,
        rec: Option<&Recorder<'_, ResumeAll>>,
    ) -> Result<Outcome<ResumeAll>> {
        let s = self.quoted_schema();
        let now = now_ms();
        let queue = queue.unwrap_or(INTERNAL_QUEUE);
        let what = format!("resume {}", show_ids(ids));
        self.run(&what, |mut client, attempt| {
            let what = &what;
            async move {
                let failed = |e| Error::db(format!("could not {what}"), e);
                let tx = client.transaction().await.map_err(failed)?;
                if let Some(done) = self.open_record(&tx, rec).await.map_err(failed)? {
                    return Ok(done);
                }
                let mut all = ResumeAll::default();
                for id in ids {
                    let row = tx
                        .query_opt(
                            &format!(
                                "SELECT status, updated_at, queue_partition_key IS NULL
                                   FROM {s}.workflow_status WHERE workflow_uuid = $1 FOR UPDATE"
                            ),
                            &[id],
                        )
                        .await
                        .map_err(failed)?;
                    let Some(row) = row else {
                        all.missing.push((*id).to_owned());
                        continue;
                    };
                    let status: String = row.get::<_, Option<String>>(0).unwrap_or_default();
                    let updated_at: i64 = row.get(1);
                    let done = if status == "SUCCESS" || status == "ERROR" {
                        ResumeRow::Finished(status)
                    } else if partitioned && row.get::<_, bool>(2) {
                        return Err(Error::invalid(format!(
                            "workflow `{id}` has no partition key, and queue `{queue}` is partitioned: resumed there \
                             it would never be dequeued; resume it onto the internal queue (the default) or a queue \
                             without partitions. Nothing was resumed"
                        ))
                        .with_workflow_id(*id));
                    } else if attempt > 1
                        && matches!(status.as_str(), "ENQUEUED" | "PENDING")
                        && updated_at >= now
                    {
                        // This resume's own write, committed by an attempt whose answer was lost.
                        ResumeRow::Enqueued
                    } else {
                        tx.execute(
                            &format!(
                                "UPDATE {s}.workflow_status
                                    SET status = 'ENQUEUED', owner_xid = NULL, queue_name = $2, recovery_attempts = 0,
                                        workflow_deadline_epoch_ms = NULL, deduplication_id = NULL,
                                        started_at_epoch_ms = NULL, updated_at = $3, completed_at = NULL
                                  WHERE workflow_uuid = $1"
                            ),
                            &[id, &queue, &now],
                        )
                        .await
                        .map_err(failed)?;
                        ResumeRow::Enqueued
                    };
                    all.rows.push(((*id).to_owned(), done));
                }
                if !all.missing.is_empty() {
                    // Nothing changes (the transaction rolls back); the caller reports them.
                    all.rows.clear();
                    return Ok(Outcome::Done(all));
                }
                self.close_record(&tx, rec, &all).await?;
                tx.commit().await.map_err(failed)?;
                Ok(Outcome::Done(all))
            }
        })
        .await
    }

    /// Writes a fork in one transaction: the new `ENQUEUED` row (copying the original's
    /// name, class, config, authentication, inputs, encoding and attributes; `forked_from`
    /// set), the original marked `was_forked_from`, and, before `start_step`, the original's
    /// checkpoints, event history, latest events and stream entries.
    ///
    /// # Errors
    /// [`ErrorKind::NonExistentWorkflow`], [`ErrorKind::NoSuchStep`] (naming the last
    /// recorded step), [`ErrorKind::ConflictingWorkflow`] when the fork's id is taken.
    pub(crate) async fn fork(
        &self,
        f: &ForkRow<'_>,
        rec: Option<&Recorder<'_, String>>,
    ) -> Result<Outcome<String>> {
        let s = self.quoted_schema();
        let now = now_ms();
        let what = format!("fork workflow `{}`", f.original);
        let forked = &f.forked.to_owned();
        self.run(&what, |mut client, attempt| async move {
            let failed = |e| Error::db(format!("could not fork workflow `{}`", f.original), e);
            let tx = client.transaction().await.map_err(failed)?;
            if let Some(done) = self.open_record(&tx, rec).await.map_err(failed)? {
                return Ok(done);
            }
            if attempt > 1 {
                // A fork committed by an attempt whose answer was lost is recognised by its id
                // and origin.
                let existing = tx
                    .query_opt(
                        &format!("SELECT forked_from FROM {s}.workflow_status WHERE workflow_uuid = $1"),
                        &[&f.forked],
                    )
                    .await
                    .map_err(failed)?;
                if let Some(row) = existing {
                    if row.get::<_, Option<String>>(0).as_deref() == Some(f.original) {
                        return Ok(Outcome::Done(forked.clone()));
                    }
                }
            }
            let Some((_, (last_id, last_name))) = self
                .last_step_on(&tx, f.original)
                .await
                .map_err(failed)?
            else {
                return Err(crate::workflow::call::non_existent(f.original));
            };
            check_start_step(f.original, f.start_step, last_id, &last_name, "fork")?;
            let inserted = tx
                .execute(
                    &format!(
                        "INSERT INTO {s}.workflow_status (
                             workflow_uuid, status, name, class_name, config_name, application_version, application_id,
                             authenticated_user, authenticated_roles, assumed_role, serialization, queue_name,
                             queue_partition_key, forked_from, attributes, application_name, workflow_timeout_ms,
                             created_at, updated_at)
                         SELECT $2, 'ENQUEUED', name, class_name, config_name, $3, application_id,
                                authenticated_user, authenticated_roles, assumed_role, serialization, $4,
                                $5, workflow_uuid, attributes, COALESCE(application_name, $6), $7, $8, $8
                           FROM {s}.workflow_status WHERE workflow_uuid = $1"
                    ),
                    &[
                        &f.original,
                        &f.forked,
                        &f.app_version,
                        &f.queue.unwrap_or(INTERNAL_QUEUE),
                        &f.partition_key,
                        &f.app_name,
                        &f.timeout_ms,
                        &now,
                    ],
                )
                .await;
            match inserted {
                Ok(_) => {}
                Err(e) if e.code().map(|c| c.code()) == Some("23505") => {
                    return Err(Error::new(
                        ErrorKind::ConflictingWorkflow,
                        format!(
                            "cannot fork workflow `{}` as `{}`: a workflow with that id exists already; give the fork \
                             another id (or none, for a generated one)",
                            f.original, f.forked
                        ),
                    )
                    .with_workflow_id(f.forked))
                }
                Err(e) => return Err(failed(e)),
            }
            tx.execute(
                &format!(
                    "INSERT INTO {s}.workflow_input (workflow_uuid, inputs, retention_timestamp)
                     SELECT $2, COALESCE(wi.inputs, ws.inputs), $3 FROM {s}.workflow_status ws
                       LEFT JOIN {s}.workflow_input wi ON wi.workflow_uuid = ws.workflow_uuid
                      WHERE ws.workflow_uuid = $1"
                ),
                &[&f.original, &f.forked, &now],
            )
            .await
            .map_err(failed)?;
            tx.execute(
                &format!("UPDATE {s}.workflow_status SET was_forked_from = TRUE WHERE workflow_uuid = $1"),
                &[&f.original],
            )
            .await
            .map_err(failed)?;
            if f.start_step > 1 {
                tx.execute(
                    &format!(
                        "INSERT INTO {s}.operation_outputs (workflow_uuid, function_id, output, error, serialization,
                                                           function_name, child_workflow_id, started_at_epoch_ms,
                                                           completed_at_epoch_ms, application_name, retention_timestamp)
                         SELECT $2, o.function_id, o.output, o.error, o.serialization, o.function_name,
                                COALESCE((SELECT r.new FROM unnest($5::text[], $6::text[]) AS r(old, new)
                                           WHERE r.old = o.child_workflow_id), o.child_workflow_id),
                                o.started_at_epoch_ms, o.completed_at_epoch_ms,
                                (SELECT application_name FROM {s}.workflow_status WHERE workflow_uuid = $2), $4
                           FROM {s}.operation_outputs o WHERE o.workflow_uuid = $1 AND o.function_id < $3"
                    ),
                    &[
                        &f.original,
                        &f.forked,
                        &f.start_step,
                        &now,
                        &f.replaced_children.0,
                        &f.replaced_children.1,
                    ],
                )
                .await
                .map_err(failed)?;
                let copies = [
                    format!(
                        "INSERT INTO {s}.workflow_events_history (workflow_uuid, function_id, key, value, serialization)
                         SELECT $2, function_id, key, value, serialization FROM {s}.workflow_events_history
                          WHERE workflow_uuid = $1 AND function_id < $3"
                    ),
                    format!(
                        "INSERT INTO {s}.workflow_events (workflow_uuid, key, value, serialization)
                         SELECT DISTINCT ON (key) $2, key, value, serialization FROM {s}.workflow_events_history
                          WHERE workflow_uuid = $1 AND function_id < $3
                          ORDER BY key, function_id DESC"
                    ),
                    format!(
                        "INSERT INTO {s}.streams (workflow_uuid, function_id, key, value, serialization, \"offset\")
                         SELECT $2, function_id, key, value, serialization, \"offset\" FROM {s}.streams
                          WHERE workflow_uuid = $1 AND function_id < $3"
                    ),
                ];
                for sql in &copies {
                    tx.execute(sql.as_str(), &[&f.original, &f.forked, &f.start_step])
                        .await
                        .map_err(failed)?;
                }
            }
            self.close_record(&tx, rec, forked).await?;
            tx.commit().await.map_err(failed)?;
            Ok(Outcome::Done(forked.clone()))
        })
        .await
    }

    /// Rewinds a finished workflow to `start_step` under its own id, in one transaction (DBOS
    /// 3.x): checkpoints and event history from the step on are deleted, events are restored
    /// to their value before it, the stream close markers written from it on are removed,
    /// messages consumed from it on (and unconsumed ones) are deleted, the outcome is
    /// deleted, and the workflow is enqueued again. A retry whose first attempt committed
    /// unseen finds the workflow active and stamped with this rewind's time.
    ///
    /// # Errors
    /// [`ErrorKind::NonExistentWorkflow`], [`ErrorKind::InvalidArgument`] for an active
    /// workflow, [`ErrorKind::NoSuchStep`].
    pub(crate) async fn rewind(
        &self,
        r: &RewindRow<'_>,
        rec: Option<&Recorder<'_, ()>>,
    ) -> Result<Outcome<()>> {
        let s = self.quoted_schema();
        let now = now_ms();
        let id = r.workflow_id;
        let what = format!("rewind workflow `{id}`");
        self.run(&what, |mut client, attempt| async move {
            let failed = |e| Error::db(format!("could not rewind workflow `{id}`"), e);
            let tx = client.transaction().await.map_err(failed)?;
            if let Some(done) = self.open_record(&tx, rec).await.map_err(failed)? {
                return Ok(done);
            }
            let Some((status, (last_id, last_name))) =
                self.last_step_on(&tx, id).await.map_err(failed)?
            else {
                return Err(crate::workflow::call::non_existent(id));
            };
            if !Status::parse(&status).is_terminal() {
                if attempt > 1 {
                    let updated: Option<i64> = tx
                        .query_one(
                            &format!("SELECT updated_at FROM {s}.workflow_status WHERE workflow_uuid = $1"),
                            &[&id],
                        )
                        .await
                        .map_err(failed)?
                        .get(0);
                    if updated.is_some_and(|u| u >= now) {
                        // This rewind, committed by an attempt whose answer was lost.
                        return Ok(Outcome::Done(()));
                    }
                }
                return Err(Error::invalid(format!(
                    "workflow `{id}` is {status}: only a finished workflow (SUCCESS, ERROR, CANCELLED or \
                     MAX_RECOVERY_ATTEMPTS_EXCEEDED) can be rewound; cancel it first, or fork it instead"
                ))
                .with_workflow_id(id));
            }
            check_start_step(id, r.start_step, last_id, &last_name, "rewind")?;
            let statements = [
                // Events published at or after the cut go; those with an earlier value in
                // the history get it back.
                format!(
                    "DELETE FROM {s}.workflow_events e WHERE e.workflow_uuid = $1 AND EXISTS (
                         SELECT 1 FROM {s}.workflow_events_history h
                          WHERE h.workflow_uuid = $1 AND h.key = e.key AND h.function_id >= $2)"
                ),
                format!(
                    "INSERT INTO {s}.workflow_events (workflow_uuid, key, value, serialization)
                     SELECT DISTINCT ON (h.key) h.workflow_uuid, h.key, h.value, h.serialization
                       FROM {s}.workflow_events_history h
                      WHERE h.workflow_uuid = $1 AND h.function_id < $2 AND EXISTS (
                            SELECT 1 FROM {s}.workflow_events_history d
                             WHERE d.workflow_uuid = $1 AND d.key = h.key AND d.function_id >= $2)
                      ORDER BY h.key, h.function_id DESC"
                ),
                format!(
                    "DELETE FROM {s}.streams WHERE workflow_uuid = $1 AND function_id >= $2
                        AND value = '\"__DBOS_STREAM_CLOSED__\"' AND serialization = 'portable_json'"
                ),
                format!("DELETE FROM {s}.operation_outputs WHERE workflow_uuid = $1 AND function_id >= $2"),
                format!("DELETE FROM {s}.workflow_events_history WHERE workflow_uuid = $1 AND function_id >= $2"),
                format!(
                    "DELETE FROM {s}.notifications WHERE destination_uuid = $1
                        AND (consumed_by_function_id >= $2 OR consumed = FALSE)"
                ),
            ];
            for sql in &statements {
                tx.execute(sql.as_str(), &[&id, &r.start_step])
                    .await
                    .map_err(failed)?;
            }
            tx.execute(
                &format!("DELETE FROM {s}.workflow_output WHERE workflow_uuid = $1"),
                &[&id],
            )
            .await
            .map_err(failed)?;
            let n = tx
                .execute(
                    &format!(
                        "UPDATE {s}.workflow_status
                            SET status = 'ENQUEUED', owner_xid = NULL,
                                application_version = COALESCE($3, application_version),
                                queue_name = $4, queue_partition_key = $5, recovery_attempts = 0,
                                workflow_deadline_epoch_ms = NULL, deduplication_id = NULL,
                                started_at_epoch_ms = NULL, updated_at = $6, completed_at = NULL,
                                output = NULL, error = NULL
                          WHERE workflow_uuid = $1 AND status = $2"
                    ),
                    &[
                        &id,
                        &status,
                        &r.app_version,
                        &r.queue.unwrap_or(INTERNAL_QUEUE),
                        &r.partition_key,
                        &now,
                    ],
                )
                .await
                .map_err(failed)?;
            if n != 1 {
                return Err(Error::new(
                    ErrorKind::Database,
                    format!("workflow `{id}` changed status while it was being rewound; rewind it again"),
                ));
            }
            self.close_record(&tx, rec, &()).await?;
            tx.commit().await.map_err(failed)?;
            Ok(Outcome::Done(()))
        })
        .await
    }

    /// Moves the wake-up time of a `DELAYED` workflow to `until_ms`. Returns the workflow's
    /// status and whether it was changed; `None` when it does not exist. Idempotent.
    pub(crate) async fn set_delay(
        &self,
        workflow_id: &str,
        until_ms: i64,
    ) -> Result<Option<(String, bool)>> {
        let s = self.quoted_schema();
        let sql = format!(
            "WITH changed AS (
                 UPDATE {s}.workflow_status SET delay_until_epoch_ms = $2, updated_at = $3
                  WHERE workflow_uuid = $1 AND status = 'DELAYED' RETURNING status)
             SELECT COALESCE((SELECT status FROM changed),
                             (SELECT status FROM {s}.workflow_status WHERE workflow_uuid = $1)),
                    EXISTS (SELECT 1 FROM changed)"
        );
        let what = format!("set the delay of workflow `{workflow_id}`");
        let row = self
            .query_opt(&what, &sql, &[&workflow_id, &until_ms, &now_ms()])
            .await?;
        Ok(row.and_then(|r| {
            r.get::<_, Option<String>>(0)
                .map(|status| (status, r.get::<_, bool>(1)))
        }))
    }

    /// Replaces a workflow's attributes (`None` clears them), or with `merge` sets the
    /// given top-level keys over the existing object. `false` when the workflow does not
    /// exist. Idempotent either way, so a retried statement is harmless.
    pub(crate) async fn set_attributes(
        &self,
        workflow_id: &str,
        attributes: Option<&serde_json::Value>,
        merge: bool,
    ) -> Result<bool> {
        let s = self.quoted_schema();
        let value = if merge {
            "CASE WHEN jsonb_typeof(attributes) = 'object' THEN attributes ELSE '{}'::jsonb END || $2::jsonb"
        } else {
            "$2::jsonb"
        };
        let sql = format!(
            "UPDATE {s}.workflow_status SET attributes = {value}, updated_at = $3 WHERE workflow_uuid = $1"
        );
        let what = format!("update the attributes of workflow `{workflow_id}`");
        let n = self
            .execute(&what, &sql, &[&workflow_id, &attributes, &now_ms()])
            .await?;
        Ok(n > 0)
    }

    /// Deletes workflows (and, with `descendants`, every workflow they started,
    /// recursively) with their inputs, outcomes, checkpoints, and, through their foreign
    /// keys, their messages, events and streams; one transaction, nothing deleted when an id
    /// is missing. The ids are looked up once before the first attempt, so a retry whose
    /// first attempt committed unseen (it finds none of them left) reports them deleted only
    /// if they existed. With `rec`, recorded as the calling workflow's operation.
    pub(crate) async fn delete_tree(
        &self,
        ids: &[&str],
        descendants: bool,
        rec: Option<&Recorder<'_, TreeChange>>,
    ) -> Result<Outcome<TreeChange>> {
        let s = self.quoted_schema();
        let tree = tree_cte(s, descendants);
        let sql = format!(
            "WITH RECURSIVE {tree},
             di AS (DELETE FROM {s}.workflow_input WHERE workflow_uuid IN (SELECT id FROM tree)),
             dout AS (DELETE FROM {s}.workflow_output WHERE workflow_uuid IN (SELECT id FROM tree)),
             dops AS (DELETE FROM {s}.operation_outputs WHERE workflow_uuid IN (SELECT id FROM tree)),
             deleted AS (DELETE FROM {s}.workflow_status WHERE workflow_uuid IN (SELECT id FROM tree) RETURNING workflow_uuid)
             SELECT ARRAY(SELECT id FROM missing), ARRAY(SELECT workflow_uuid FROM deleted)"
        );
        let existed = self.missing_ids(ids).await?.is_empty();
        let what = format!("delete {}", show_ids(ids));
        self.run(&what, |mut client, attempt| {
            let (sql, what) = (&sql, &what);
            async move {
                let failed = |e| Error::db(format!("could not {what}"), e);
                let tx = client.transaction().await.map_err(failed)?;
                if let Some(done) = self.open_record(&tx, rec).await.map_err(failed)? {
                    return Ok(done);
                }
                let row = tx.query_one(sql.as_str(), &[&ids]).await.map_err(failed)?;
                let mut change = TreeChange {
                    missing: row.get(0),
                    changed: row.get(1),
                };
                if attempt > 1 && existed && change.changed.is_empty() {
                    // Every id existed before the first attempt and this one deleted
                    // nothing: that attempt deleted them, and its answer was lost. Either
                    // its commit landed before this snapshot (every id missing), or it was
                    // still landing (this snapshot saw the ids, and the delete then found
                    // their rows gone once that commit released them).
                    change = TreeChange {
                        missing: Vec::new(),
                        changed: ids.iter().map(|id| (*id).to_owned()).collect(),
                    };
                }
                self.close_record(&tx, rec, &change).await?;
                tx.commit().await.map_err(failed)?;
                Ok(Outcome::Done(change))
            }
        })
        .await
    }

    /// `created_at` of the `keep`-th newest workflow (of `app` and unclaimed ones, or all):
    /// deleting what is older keeps the newest `keep`. `None` when there are fewer.
    pub(crate) async fn newest_threshold(
        &self,
        keep: u64,
        app: Option<&str>,
    ) -> Result<Option<i64>> {
        let s = self.quoted_schema();
        let offset = i64::try_from(keep.saturating_sub(1)).unwrap_or(i64::MAX);
        let row = self
            .query_opt(
                "find the garbage-collection threshold",
                &format!(
                    "SELECT created_at FROM {s}.workflow_status
                      WHERE ($2::text IS NULL OR application_name = $2 OR application_name IS NULL)
                      ORDER BY created_at DESC OFFSET $1 LIMIT 1"
                ),
                &[&offset, &app],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Deletes up to `batch` finished workflows created before `cutoff_ms` (oldest first),
    /// with everything recorded about them, in one short transaction; rows another
    /// transaction holds are skipped. Returns how many were deleted.
    pub(crate) async fn delete_finished_before(
        &self,
        cutoff_ms: i64,
        batch: i64,
        app: Option<&str>,
    ) -> Result<u64> {
        let s = self.quoted_schema();
        let sql = format!(
            "WITH victims AS (
                 SELECT workflow_uuid FROM {s}.workflow_status
                  WHERE created_at < $1 AND status IN {TERMINAL}
                    AND ($3::text IS NULL OR application_name = $3 OR application_name IS NULL)
                  ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED),
             di AS (DELETE FROM {s}.workflow_input WHERE workflow_uuid IN (SELECT workflow_uuid FROM victims)),
             dout AS (DELETE FROM {s}.workflow_output WHERE workflow_uuid IN (SELECT workflow_uuid FROM victims)),
             dops AS (DELETE FROM {s}.operation_outputs WHERE workflow_uuid IN (SELECT workflow_uuid FROM victims)),
             deleted AS (DELETE FROM {s}.workflow_status WHERE workflow_uuid IN (SELECT workflow_uuid FROM victims) RETURNING 1)
             SELECT count(*) FROM deleted"
        );
        let row = self
            .query_opt(
                "garbage-collect finished workflows",
                &sql,
                &[&cutoff_ms, &batch, &app],
            )
            .await?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64).unwrap_or(0))
    }

    /// Cancels up to `batch` active workflows created before `cutoff_ms` (oldest first) in one
    /// short transaction, skipping rows another transaction holds; returns their ids.
    pub(crate) async fn cancel_active_before(
        &self,
        cutoff_ms: i64,
        batch: i64,
        app: Option<&str>,
    ) -> Result<Vec<String>> {
        let s = self.quoted_schema();
        let rows = self
            .query(
                "cancel workflows past the global timeout",
                &format!(
                    "UPDATE {s}.workflow_status
                        SET status = 'CANCELLED', owner_xid = NULL, queue_name = NULL, deduplication_id = NULL,
                            started_at_epoch_ms = NULL, updated_at = $4, completed_at = $4
                      WHERE workflow_uuid IN (
                            SELECT workflow_uuid FROM {s}.workflow_status
                             WHERE status IN {ACTIVE} AND created_at < $1
                               AND ($3::text IS NULL OR application_name = $3 OR application_name IS NULL)
                             ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                     RETURNING workflow_uuid"
                ),
                &[&cutoff_ms, &batch, &app, &now_ms()],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The application versions (of `app` and unclaimed ones, or all), newest first.
    pub(crate) async fn list_version_rows(&self, app: Option<&str>) -> Result<Vec<VersionRow>> {
        let s = self.quoted_schema();
        let rows = self
            .query(
                "list the application versions",
                &format!(
                    "SELECT version_id, version_name, version_timestamp, created_at, application_name
                       FROM {s}.application_versions
                      WHERE ($1::text IS NULL OR application_name = $1 OR application_name IS NULL)
                      ORDER BY version_timestamp DESC"
                ),
                &[&app],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| VersionRow {
                version_id: r.get(0),
                version_name: r.get(1),
                version_timestamp: r.get(2),
                created_at: r.get(3),
                application_name: r.get(4),
            })
            .collect())
    }

    /// Makes `version` the latest (its timestamp becomes later than every other one's).
    /// `false` when no such version is registered (for `app`, or unclaimed).
    pub(crate) async fn set_latest_version(
        &self,
        version: &str,
        app: Option<&str>,
    ) -> Result<bool> {
        let s = self.quoted_schema();
        let n = self
            .execute(
                &format!("make `{version}` the latest application version"),
                &format!(
                    "UPDATE {s}.application_versions
                        SET version_timestamp = GREATEST($3, (SELECT max(version_timestamp) + 1 FROM {s}.application_versions))
                      WHERE version_name = $1 AND ($2::text IS NULL OR application_name = $2 OR application_name IS NULL)"
                ),
                &[&version, &app, &now_ms()],
            )
            .await?;
        Ok(n > 0)
    }

    /// The queue definitions (of `app` and unclaimed ones, or all), by name.
    pub(crate) async fn list_queue_rows(&self, app: Option<&str>) -> Result<Vec<QueueRow>> {
        let s = self.quoted_schema();
        let rows = self
            .query(
                "list the queues",
                &format!(
                    "SELECT name, concurrency, worker_concurrency, rate_limit_max, rate_limit_period_sec, partition_queue,
                            partition_concurrency, partition_worker_concurrency, partition_rate_limit_max,
                            partition_rate_limit_period_sec, polling_interval_sec, application_name
                       FROM {s}.queues
                      WHERE ($1::text IS NULL OR application_name = $1 OR application_name IS NULL)
                      ORDER BY name"
                ),
                &[&app],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| QueueRow {
                name: r.get(0),
                concurrency: r.get(1),
                worker_concurrency: r.get(2),
                rate_limit_max: r.get(3),
                rate_limit_period_sec: r.get(4),
                partitioned: r.get(5),
                partition_concurrency: r.get(6),
                partition_worker_concurrency: r.get(7),
                partition_rate_limit_max: r.get(8),
                partition_rate_limit_period_sec: r.get(9),
                polling_interval_sec: r.get(10),
                application_name: r.get(11),
            })
            .collect())
    }

    /// How many workflows wait on (`ENQUEUED`, `DELAYED`) or run from (`PENDING`) each queue,
    /// counted through the in-flight and delayed indexes.
    pub(crate) async fn queue_depths(
        &self,
        app: Option<&str>,
    ) -> Result<std::collections::BTreeMap<String, QueueDepth>> {
        let s = self.quoted_schema();
        let scope = "($1::text IS NULL OR application_name = $1 OR application_name IS NULL)";
        let rows = self
            .query(
                "count the workflows on each queue",
                &format!(
                    "SELECT queue_name, status, count(*) FROM {s}.workflow_status
                      WHERE status IN ('ENQUEUED', 'PENDING') AND queue_name IS NOT NULL AND {scope}
                      GROUP BY queue_name, status
                     UNION ALL
                     SELECT queue_name, status, count(*) FROM {s}.workflow_status
                      WHERE status = 'DELAYED' AND queue_name IS NOT NULL AND {scope}
                      GROUP BY queue_name, status"
                ),
                &[&app],
            )
            .await?;
        let mut depths = std::collections::BTreeMap::<String, QueueDepth>::new();
        for r in &rows {
            let depth = depths.entry(r.get(0)).or_default();
            let n: i64 = r.get(2);
            match r.get::<_, Option<String>>(1).as_deref() {
                Some("ENQUEUED") => depth.enqueued = n,
                Some("PENDING") => depth.pending = n,
                _ => depth.delayed = n,
            }
        }
        Ok(depths)
    }

    /// A queue's recorded definition: whether it is partitioned, if it is registered.
    pub(crate) async fn queue_partitioned(&self, queue: &str) -> Result<Option<bool>> {
        let s = self.quoted_schema();
        let row = self
            .query_opt(
                &format!("read queue `{queue}`"),
                &format!(
                    "SELECT partition_queue OR partition_concurrency IS NOT NULL OR partition_worker_concurrency IS NOT NULL
                            OR partition_rate_limit_max IS NOT NULL
                       FROM {s}.queues WHERE name = $1"
                ),
                &[&queue],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }
}

/// A fork or rewind may start at any recorded step, or right after the last one.
fn check_start_step(
    id: &str,
    start_step: i32,
    last_id: i32,
    last_name: &str,
    what: &str,
) -> Result<()> {
    if start_step < 1 {
        return Err(Error::invalid(format!(
            "cannot {what} workflow `{id}` from step {start_step}: steps are numbered from 1 (1 re-runs the \
             whole workflow)"
        ))
        .with_workflow_id(id));
    }
    if start_step > last_id + 1 {
        let recorded = if last_id == 0 {
            "has no recorded step, so it can only start from step 1".to_owned()
        } else {
            format!(
                "recorded steps up to {last_id} (`{last_name}`), so it can start from step 1 to {}",
                last_id + 1
            )
        };
        let e = Error::new(
            ErrorKind::NoSuchStep,
            format!("cannot {what} workflow `{id}` from step {start_step}: it {recorded}"),
        )
        .with_workflow_id(id);
        return Err(if last_id > 0 {
            e.with_step(last_name, last_id)
        } else {
            e
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_escape_like_wildcards() {
        assert_eq!(prefix_pattern("order-"), "order-%");
        assert_eq!(prefix_pattern("a_b%c\\"), "a\\_b\\%c\\\\%");
    }

    #[test]
    fn statuses_are_inlined_for_the_partial_indexes() {
        let q = ListWorkflows::new().status(Status::Error).name("checkout");
        let (sql, params) = list_workflows_sql("dbos", &q, Some("shop"));
        assert!(sql.contains("(ws.status = 'ERROR')"), "{sql}");
        assert!(sql.contains("ws.name = $2"), "{sql}");
        assert_eq!(params.refs().len(), 2);
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn start_steps_beyond_the_history_name_the_last_step() {
        assert!(check_start_step("w", 3, 2, "charge", "fork").is_ok());
        let e = check_start_step("w", 4, 2, "charge", "fork").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoSuchStep);
        assert_eq!(e.step_id(), Some(2));
        assert!(e.to_string().contains("`charge`"), "{e}");
        assert_eq!(
            check_start_step("w", 0, 2, "charge", "fork")
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument
        );
    }
}
