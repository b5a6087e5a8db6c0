//! The statements behind the aggregates: workflow counts grouped by `workflow_status`
//! columns and a `created_at` bucket, and step counts and durations from
//! `operation_outputs` (DBOS's `get_workflow_aggregates` / `get_step_aggregates`).
//!
//! The workflow aggregate selects its rows with the listing's own `WHERE` clause
//! ([`workflow_filter`]), so a filter means the same in both and reaches the same indexes; the
//! step aggregate's completion window uses DBOS's `(completed_at_epoch_ms, function_name)`
//! index.

use serde_json::Value;

use super::manage::{any_of, app_scope, id_prefixes, workflow_filter, Params};
use super::SystemDatabase;
use crate::error::Result;
use crate::manage::{StepAggregate, StepAggregates, WorkflowAggregate, WorkflowAggregates};

/// The workflow aggregate statement for `q` and its parameters: one `g<i>` column per
/// grouping (in `q`'s order), then the count, ordered by the groups.
pub(crate) fn workflow_aggregates_sql(
    s: &str,
    q: &WorkflowAggregates,
    default_app: Option<&str>,
) -> (String, Params) {
    let mut p = Params::default();
    let filter = workflow_filter(&mut p, &q.filter, default_app);
    let mut groups: Vec<String> = q
        .group_by
        .iter()
        .map(|g| format!("ws.{}", g.key()))
        .collect();
    if let Some(width) = q.bucket_ms {
        groups.push(format!(
            "(ws.created_at - ws.created_at % {w})",
            w = p.push(width)
        ));
    }
    grouped(s, "workflow_status ws", &groups, "count(*)", &filter, p)
}

/// The step aggregate statement for `q` and its parameters: the groups, then count, errors,
/// and the minimum, average and maximum duration in milliseconds.
pub(crate) fn step_aggregates_sql(
    s: &str,
    q: &StepAggregates,
    default_app: Option<&str>,
) -> (String, Params) {
    let mut p = Params::default();
    let mut conditions: Vec<String> = Vec::new();
    conditions.extend(app_scope(&mut p, "oo", &q.application_names, default_app));
    if !q.function_names.is_empty() {
        conditions.push(any_of(&mut p, "oo.function_name", &q.function_names));
    }
    conditions.extend(id_prefixes(&mut p, "oo", &q.id_prefixes));
    if let Some(after) = q.completed.after {
        conditions.push(format!("oo.completed_at_epoch_ms >= {}", p.push(after)));
    }
    if let Some(before) = q.completed.before {
        conditions.push(format!("oo.completed_at_epoch_ms <= {}", p.push(before)));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let mut groups: Vec<String> = q
        .group_by
        .iter()
        .map(|g| g.expression().to_owned())
        .collect();
    if let Some(width) = q.bucket_ms {
        groups.push(format!(
            "(oo.completed_at_epoch_ms - oo.completed_at_epoch_ms % {w})",
            w = p.push(width)
        ));
    }
    // Durations only where both ends were recorded (DBOS rows of older versions lack them).
    let duration = "(oo.completed_at_epoch_ms - oo.started_at_epoch_ms)";
    let measures = format!(
        "count(*), count(*) FILTER (WHERE oo.error IS NOT NULL),
         min({duration}), avg({duration})::float8, max({duration})"
    );
    grouped(s, "operation_outputs oo", &groups, &measures, &filter, p)
}

/// `SELECT <groups as g0..>, <measures> FROM <schema>.<table> <filter> GROUP BY .. ORDER BY ..`.
fn grouped(
    s: &str,
    table: &str,
    groups: &[String],
    measures: &str,
    filter: &str,
    p: Params,
) -> (String, Params) {
    let select: Vec<String> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| format!("{g} AS g{i}"))
        .collect();
    let positions: Vec<String> = (1..=groups.len()).map(|i| i.to_string()).collect();
    let sql = format!(
        "SELECT {select}, {measures} FROM {s}.{table}{filter} GROUP BY {by} ORDER BY {by}",
        select = select.join(", "),
        by = positions.join(", "),
    );
    (sql, p)
}

/// A group's values by DBOS's keys: text columns as strings (or null), the bucket as epoch
/// milliseconds.
fn group_of(r: &tokio_postgres::Row, keys: &[&'static str], bucket: bool) -> Vec<(String, Value)> {
    let mut group: Vec<(String, Value)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let v: Option<String> = r.get(i);
            ((*k).to_owned(), v.map(Value::String).unwrap_or(Value::Null))
        })
        .collect();
    if bucket {
        let v: Option<i64> = r.get(keys.len());
        group.push((
            crate::manage::TIME_BUCKET.to_owned(),
            v.map(Value::from).unwrap_or(Value::Null),
        ));
    }
    group
}

impl SystemDatabase {
    /// The workflow counts `q` asks for.
    pub(crate) async fn workflow_aggregate_rows(
        &self,
        q: &WorkflowAggregates,
        default_app: Option<&str>,
    ) -> Result<Vec<WorkflowAggregate>> {
        let (sql, params) = workflow_aggregates_sql(self.quoted_schema(), q, default_app);
        let rows = self
            .query("aggregate workflows", &sql, &params.refs())
            .await?;
        let keys: Vec<&'static str> = q.group_by.iter().map(|g| g.key()).collect();
        let n = keys.len() + usize::from(q.bucket_ms.is_some());
        Ok(rows
            .iter()
            .map(|r| {
                let count: i64 = r.get(n);
                WorkflowAggregate {
                    group: group_of(r, &keys, q.bucket_ms.is_some())
                        .into_iter()
                        .collect(),
                    count: u64::try_from(count).unwrap_or_default(),
                }
            })
            .collect())
    }

    /// The step counts and durations `q` asks for.
    pub(crate) async fn step_aggregate_rows(
        &self,
        q: &StepAggregates,
        default_app: Option<&str>,
    ) -> Result<Vec<StepAggregate>> {
        let (sql, params) = step_aggregates_sql(self.quoted_schema(), q, default_app);
        let rows = self.query("aggregate steps", &sql, &params.refs()).await?;
        let keys: Vec<&'static str> = q.group_by.iter().map(|g| g.key()).collect();
        let n = keys.len() + usize::from(q.bucket_ms.is_some());
        Ok(rows
            .iter()
            .map(|r| {
                let count: i64 = r.get(n);
                let errors: i64 = r.get(n + 1);
                StepAggregate {
                    group: group_of(r, &keys, q.bucket_ms.is_some())
                        .into_iter()
                        .collect(),
                    count: u64::try_from(count).unwrap_or_default(),
                    errors: u64::try_from(errors).unwrap_or_default(),
                    min_duration_ms: r.get(n + 2),
                    avg_duration_ms: r.get(n + 3),
                    max_duration_ms: r.get(n + 4),
                }
            })
            .collect())
    }

    /// `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` of the workflow aggregate statement for `q`.
    pub(crate) async fn explain_workflow_aggregates(
        &self,
        q: &WorkflowAggregates,
        default_app: Option<&str>,
    ) -> Result<Value> {
        let (sql, params) = workflow_aggregates_sql(self.quoted_schema(), q, default_app);
        self.explain(&sql, params).await
    }

    /// `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` of the step aggregate statement for `q`.
    pub(crate) async fn explain_step_aggregates(
        &self,
        q: &StepAggregates,
        default_app: Option<&str>,
    ) -> Result<Value> {
        let (sql, params) = step_aggregates_sql(self.quoted_schema(), q, default_app);
        self.explain(&sql, params).await
    }
}
