//! `dbos-rs workflow aggregate` and `dbos-rs workflow step-aggregate`: workflow counts and
//! step counts/durations, grouped (DBOS's `get_workflow_aggregates` / `get_step_aggregates`).

use std::collections::BTreeMap;

use clap::Args;
use dbos_core::manage::{
    GroupBy, StepAggregate, StepAggregates, StepGroupBy, WorkflowAggregates, TIME_BUCKET,
};
use dbos_core::{Client, Result};
use serde_json::{json, Value};

use crate::args::{FilterArgs, Global};
use crate::commands::filter_query;
use crate::output::{self, Table};
use crate::time::{parse_duration, parse_time};

#[derive(Debug, Args)]
pub(crate) struct AggregateArgs {
    /// Group by these columns, in order: status, name, queue_name, executor_id,
    /// application_version (separated by commas or repeated)
    #[arg(short = 'g', long, value_delimiter = ',')]
    pub(crate) group_by: Vec<String>,
    /// Also group by creation time, truncated to buckets this wide (e.g. 5m, 1h, 1d)
    #[arg(short = 'b', long)]
    pub(crate) bucket: Option<String>,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
}

#[derive(Debug, Args)]
pub(crate) struct StepAggregateArgs {
    /// Group by these, in order: function_name, status (default: function_name)
    #[arg(short = 'g', long, value_delimiter = ',')]
    pub(crate) group_by: Vec<String>,
    /// Also group by completion time, truncated to buckets this wide (e.g. 5m, 1h, 1d)
    #[arg(short = 'b', long)]
    pub(crate) bucket: Option<String>,
    /// Only steps of this function (repeat for several)
    #[arg(long)]
    pub(crate) function_name: Vec<String>,
    /// Only steps of workflows whose id starts with this
    #[arg(long)]
    pub(crate) prefix: Option<String>,
    /// Only steps of this application (and unclaimed ones)
    #[arg(short = 'a', long)]
    pub(crate) application_name: Option<String>,
    /// Only steps completed after this timestamp
    #[arg(long)]
    pub(crate) completed_after: Option<String>,
    /// Only steps completed before this timestamp
    #[arg(long)]
    pub(crate) completed_before: Option<String>,
}

/// The workflow aggregate the flags ask for (refused before connecting if it cannot run).
pub(crate) fn workflow_query(a: &AggregateArgs) -> Result<WorkflowAggregates> {
    let mut q = WorkflowAggregates::new(filter_query(&a.filter)?);
    for g in &a.group_by {
        q = q.group_by(g.parse::<GroupBy>()?);
    }
    if let Some(b) = &a.bucket {
        q = q.time_bucket(parse_duration("--bucket", b)?);
    }
    q.check()?;
    Ok(q)
}

pub(crate) fn step_query(a: &StepAggregateArgs) -> Result<StepAggregates> {
    let mut q = StepAggregates::new();
    if a.group_by.is_empty() {
        q = q.group_by(StepGroupBy::FunctionName);
    }
    for g in &a.group_by {
        q = q.group_by(g.parse::<StepGroupBy>()?);
    }
    if let Some(b) = &a.bucket {
        q = q.time_bucket(parse_duration("--bucket", b)?);
    }
    for f in &a.function_name {
        q = q.function_name(f.clone());
    }
    if let Some(p) = &a.prefix {
        q = q.workflow_id_prefix(p.clone());
    }
    if let Some(app) = &a.application_name {
        q = q.application_name(app.clone());
    }
    if let Some(t) = &a.completed_after {
        q = q.completed_after(parse_time("--completed-after", t)?);
    }
    if let Some(t) = &a.completed_before {
        q = q.completed_before(parse_time("--completed-before", t)?);
    }
    q.check()?;
    Ok(q)
}

/// A group's cell: strings as they are, the bucket as RFC 3339, null as `-`.
fn cell(key: &str, v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if key == TIME_BUCKET => output::time(n.as_i64()),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// The group keys of the first row (every row has the same), in the order asked.
fn keys(order: &[&'static str], bucket: bool) -> Vec<&'static str> {
    let mut k = order.to_vec();
    if bucket {
        k.push(TIME_BUCKET);
    }
    k
}

fn group_cells(keys: &[&'static str], group: &BTreeMap<String, Value>) -> Vec<String> {
    keys.iter()
        .map(|k| cell(k, group.get(*k).unwrap_or(&Value::Null)))
        .collect()
}

/// `dbos-rs workflow aggregate`.
pub(crate) async fn workflows(g: &Global, client: &Client, a: &AggregateArgs) -> Result<()> {
    let q = workflow_query(a)?;
    let rows = client.workflow_aggregates(&q).await?;
    if g.json {
        output::json(&json!(rows));
        return Ok(());
    }
    let order: Vec<&'static str> = a
        .group_by
        .iter()
        .filter_map(|s| s.parse::<GroupBy>().ok().map(GroupBy::key))
        .collect();
    let keys = keys(&order, a.bucket.is_some());
    let mut header = keys.clone();
    header.push("count");
    let mut table = Table::new(header);
    for r in &rows {
        let mut cells = group_cells(&keys, &r.group);
        cells.push(r.count.to_string());
        table.row(cells);
    }
    table.print();
    Ok(())
}

/// `dbos-rs workflow step-aggregate`.
pub(crate) async fn steps(g: &Global, client: &Client, a: &StepAggregateArgs) -> Result<()> {
    let q = step_query(a)?;
    let rows: Vec<StepAggregate> = client.step_aggregates(&q).await?;
    if g.json {
        output::json(&json!(rows));
        return Ok(());
    }
    let order: Vec<&'static str> = if a.group_by.is_empty() {
        vec![StepGroupBy::FunctionName.key()]
    } else {
        a.group_by
            .iter()
            .filter_map(|s| s.parse::<StepGroupBy>().ok().map(StepGroupBy::key))
            .collect()
    };
    let keys = keys(&order, a.bucket.is_some());
    let mut header = keys.clone();
    header.extend(["count", "errors", "min_ms", "avg_ms", "max_ms"]);
    let mut table = Table::new(header);
    let ms = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
    for r in &rows {
        let mut cells = group_cells(&keys, &r.group);
        cells.extend([
            r.count.to_string(),
            r.errors.to_string(),
            ms(r.min_duration_ms),
            r.avg_duration_ms
                .map_or("-".to_owned(), |v| format!("{v:.1}")),
            ms(r.max_duration_ms),
        ]);
        table.row(cells);
    }
    table.print();
    Ok(())
}
