//! Aggregates: how many workflows per status / name / queue / executor / version / time
//! bucket, and how many steps per function with their errors and durations (DBOS's
//! `get_workflow_aggregates` and `get_step_aggregates`: the same group keys, a `group` object
//! and a `count`). Counting happens in Postgres, one statement, never by listing.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::query::{epoch_ms, TimeRange};
use super::{durable, ListWorkflows, Manager};
use crate::error::{Error, Result};
use crate::sysdb::SystemDatabase;

/// The group key of a time bucket: the bucket's start, in epoch milliseconds.
pub const TIME_BUCKET: &str = "time_bucket";

/// A `workflow_status` column workflows can be grouped by (DBOS's `group_by_*` flags). Parsed
/// from its key (`"status"`, `"name"`, `"queue_name"`, `"executor_id"`,
/// `"application_version"`); an unknown key is an
/// [`InvalidArgument`](crate::ErrorKind::InvalidArgument) naming the known ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// The workflow's status.
    Status,
    /// The workflow's registered name.
    Name,
    /// The queue it was enqueued on (null: none).
    QueueName,
    /// The executor that last ran it.
    ExecutorId,
    /// Its application version.
    ApplicationVersion,
}

impl GroupBy {
    const ALL: [GroupBy; 5] = [
        GroupBy::Status,
        GroupBy::Name,
        GroupBy::QueueName,
        GroupBy::ExecutorId,
        GroupBy::ApplicationVersion,
    ];

    /// Its key in a result's `group` (also its column).
    pub fn key(self) -> &'static str {
        match self {
            GroupBy::Status => "status",
            GroupBy::Name => "name",
            GroupBy::QueueName => "queue_name",
            GroupBy::ExecutorId => "executor_id",
            GroupBy::ApplicationVersion => "application_version",
        }
    }
}

impl FromStr for GroupBy {
    type Err = Error;

    fn from_str(s: &str) -> Result<GroupBy> {
        GroupBy::ALL
            .into_iter()
            .find(|g| g.key() == s.trim())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown workflow grouping `{s}`: group by status, name, queue_name, executor_id or \
                     application_version (and a time bucket)"
                ))
            })
    }
}

/// What a step can be grouped by (DBOS's `group_by_function_name`, `group_by_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepGroupBy {
    /// The step's function name (as recorded in `operation_outputs`).
    FunctionName,
    /// `SUCCESS` or `ERROR`: whether it recorded an error.
    Status,
}

impl StepGroupBy {
    /// Its key in a result's `group`.
    pub fn key(self) -> &'static str {
        match self {
            StepGroupBy::FunctionName => "function_name",
            StepGroupBy::Status => "status",
        }
    }

    pub(crate) fn expression(self) -> &'static str {
        match self {
            StepGroupBy::FunctionName => "oo.function_name",
            StepGroupBy::Status => "CASE WHEN oo.error IS NULL THEN 'SUCCESS' ELSE 'ERROR' END",
        }
    }
}

impl FromStr for StepGroupBy {
    type Err = Error;

    fn from_str(s: &str) -> Result<StepGroupBy> {
        [StepGroupBy::FunctionName, StepGroupBy::Status]
            .into_iter()
            .find(|g| g.key() == s.trim())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown step grouping `{s}`: group by function_name or status (and a time bucket)"
                ))
            })
    }
}

/// Milliseconds of a bucket width; zero (or under a millisecond) is refused by `check`.
fn width_ms(width: Duration) -> i64 {
    i64::try_from(width.as_millis()).unwrap_or(i64::MAX)
}

fn check_grouping(what: &str, groups: usize, bucket_ms: Option<i64>) -> Result<()> {
    if bucket_ms.is_some_and(|w| w <= 0) {
        return Err(Error::invalid(format!(
            "a {what} time bucket must be at least 1 ms wide: give a width such as 1 minute or 1 hour"
        )));
    }
    if groups == 0 && bucket_ms.is_none() {
        return Err(Error::invalid(format!(
            "a {what} aggregate needs something to group by: add a grouping or a time bucket"
        )));
    }
    Ok(())
}

fn check_distinct<T: PartialEq + Copy>(
    groups: &[T],
    key: impl Fn(T) -> &'static str,
) -> Result<()> {
    for (i, g) in groups.iter().enumerate() {
        if groups[..i].contains(g) {
            return Err(Error::invalid(format!(
                "`{}` is given twice as a grouping: give each grouping once",
                key(*g)
            )));
        }
    }
    Ok(())
}

/// Workflow counts: the workflows a [`ListWorkflows`] filter selects (every filter means what
/// it means in a listing; without an application filter a runtime counts its own
/// application's and unclaimed workflows), grouped by columns and/or a `created_at` bucket.
/// A listing's limit and offset do not apply to counts and are refused.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use dbos_core::manage::{GroupBy, ListWorkflows, WorkflowAggregates};
///
/// // Per status and hour, over the last day.
/// let q = WorkflowAggregates::new(
///     ListWorkflows::new().created_after(SystemTime::now() - Duration::from_secs(24 * 3600)),
/// )
/// .group_by(GroupBy::Status)
/// .time_bucket(Duration::from_secs(3600));
/// # let _ = q;
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a query does nothing until it is passed to workflow_aggregates"]
pub struct WorkflowAggregates {
    pub(crate) filter: ListWorkflows,
    pub(crate) group_by: Vec<GroupBy>,
    pub(crate) bucket_ms: Option<i64>,
}

impl WorkflowAggregates {
    /// Counts over the workflows `filter` selects, grouped by nothing yet.
    pub fn new(filter: ListWorkflows) -> Self {
        WorkflowAggregates {
            filter,
            group_by: Vec::new(),
            bucket_ms: None,
        }
    }

    /// Groups by this column too (the result's groups follow the order given).
    pub fn group_by(mut self, column: GroupBy) -> Self {
        self.group_by.push(column);
        self
    }

    /// Groups by `created_at` truncated to multiples of `width` since the epoch (DBOS's
    /// `time_bucket_size_ms`); the group key is [`TIME_BUCKET`].
    pub fn time_bucket(mut self, width: Duration) -> Self {
        self.bucket_ms = Some(width_ms(width));
        self
    }

    /// The refusal [`workflow_aggregates`](crate::Dbos::workflow_aggregates) would give this
    /// query, without running it (a command line checks its flags before connecting).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument), saying what is wrong.
    pub fn check(&self) -> Result<()> {
        check_grouping("workflow", self.group_by.len(), self.bucket_ms)?;
        check_distinct(&self.group_by, GroupBy::key)?;
        if self.filter.limit.is_some() || self.filter.offset.is_some() {
            return Err(Error::invalid(
                "a limit or offset does not apply to counts (every selected workflow is counted): leave them out",
            ));
        }
        self.filter.check()
    }
}

/// Step counts and durations, from the recorded steps (`operation_outputs`) of a runtime's
/// application and unclaimed rows (or the applications named).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use dbos_core::manage::{StepAggregates, StepGroupBy};
///
/// // Per step function, over the last hour.
/// let q = StepAggregates::new()
///     .group_by(StepGroupBy::FunctionName)
///     .completed_after(SystemTime::now() - Duration::from_secs(3600));
/// # let _ = q;
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[must_use = "a query does nothing until it is passed to step_aggregates"]
pub struct StepAggregates {
    pub(crate) group_by: Vec<StepGroupBy>,
    pub(crate) bucket_ms: Option<i64>,
    pub(crate) function_names: Vec<String>,
    pub(crate) id_prefixes: Vec<String>,
    pub(crate) application_names: Vec<String>,
    pub(crate) completed: TimeRange,
}

impl StepAggregates {
    /// Every recorded step, grouped by nothing yet.
    pub fn new() -> Self {
        StepAggregates::default()
    }

    /// Groups by this too (the result's groups follow the order given).
    pub fn group_by(mut self, by: StepGroupBy) -> Self {
        self.group_by.push(by);
        self
    }

    /// Groups by completion time truncated to multiples of `width` since the epoch; the
    /// group key is [`TIME_BUCKET`].
    pub fn time_bucket(mut self, width: Duration) -> Self {
        self.bucket_ms = Some(width_ms(width));
        self
    }

    /// Only steps of this function name (several calls: any of them).
    pub fn function_name(mut self, name: impl Into<String>) -> Self {
        self.function_names.push(name.into());
        self
    }

    /// Only steps of workflows whose id starts with `prefix` (several calls: any of them).
    pub fn workflow_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.id_prefixes.push(prefix.into());
        self
    }

    /// Only steps of this application, plus unclaimed ones (several calls: any of them).
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_names.push(name.into());
        self
    }

    /// Only steps completed at or after `t`.
    pub fn completed_after(mut self, t: SystemTime) -> Self {
        self.completed.after = Some(epoch_ms(t));
        self
    }

    /// Only steps completed at or before `t`.
    pub fn completed_before(mut self, t: SystemTime) -> Self {
        self.completed.before = Some(epoch_ms(t));
        self
    }

    /// The refusal [`step_aggregates`](crate::Dbos::step_aggregates) would give this query,
    /// without running it.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument), saying what is wrong.
    pub fn check(&self) -> Result<()> {
        check_grouping("step", self.group_by.len(), self.bucket_ms)?;
        check_distinct(&self.group_by, StepGroupBy::key)?;
        if let (Some(a), Some(b)) = (self.completed.after, self.completed.before) {
            if a > b {
                return Err(Error::invalid(
                    "completed_after is later than completed_before, so nothing could match; swap them",
                ));
            }
        }
        if self.function_names.iter().any(|n| n.trim().is_empty()) {
            return Err(Error::invalid(
                "a blank function name filter matches nothing; give a value, or leave the filter out",
            ));
        }
        Ok(())
    }
}

/// One group of workflows and how many there are (DBOS's `{group, count}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowAggregate {
    /// The group's value per key ([`GroupBy::key`], [`TIME_BUCKET`]): strings, null where the
    /// column is null, the bucket's start as epoch milliseconds.
    pub group: BTreeMap<String, Value>,
    /// How many workflows the group has.
    pub count: u64,
}

/// One group of steps: how many, how many failed, and how long they took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepAggregate {
    /// The group's value per key ([`StepGroupBy::key`], [`TIME_BUCKET`]).
    pub group: BTreeMap<String, Value>,
    /// How many steps the group has.
    pub count: u64,
    /// How many of them recorded an error.
    pub errors: u64,
    /// The shortest duration (completed minus started, in ms) among those with both times.
    pub min_duration_ms: Option<i64>,
    /// The mean duration in ms.
    pub avg_duration_ms: Option<f64>,
    /// The longest duration in ms.
    pub max_duration_ms: Option<i64>,
}

impl Manager {
    /// Workflow counts (`DBOS.getWorkflowAggregates` inside a workflow).
    pub(crate) async fn workflow_aggregates(
        &self,
        q: &WorkflowAggregates,
    ) -> Result<Vec<WorkflowAggregate>> {
        q.check()?;
        durable::read(durable::WORKFLOW_AGGREGATES, || {
            self.sysdb.workflow_aggregate_rows(q, self.app())
        })
        .await
    }

    /// Step counts and durations (`DBOS.getStepAggregates` inside a workflow).
    pub(crate) async fn step_aggregates(&self, q: &StepAggregates) -> Result<Vec<StepAggregate>> {
        q.check()?;
        durable::read(durable::STEP_AGGREGATES, || {
            self.sysdb.step_aggregate_rows(q, self.app())
        })
        .await
    }
}

/// Not public API: `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` of the workflow aggregate
/// statement, for the query-plan tests.
#[doc(hidden)]
pub async fn explain_workflow_aggregates(
    sysdb: &SystemDatabase,
    q: &WorkflowAggregates,
    app: Option<&str>,
) -> Result<Value> {
    q.check()?;
    sysdb.explain_workflow_aggregates(q, app).await
}

/// Not public API: `EXPLAIN` of the step aggregate statement, for the query-plan tests.
#[doc(hidden)]
pub async fn explain_step_aggregates(
    sysdb: &SystemDatabase,
    q: &StepAggregates,
    app: Option<&str>,
) -> Result<Value> {
    q.check()?;
    sysdb.explain_step_aggregates(q, app).await
}

/// Generates the aggregate methods on a type with `fn manager(&self) -> Manager` (a runtime
/// and a client).
macro_rules! aggregate_methods {
    () => {
        /// Counts of the workflows a filter selects, grouped by status, name, queue,
        /// executor, version and/or a creation-time bucket (DBOS's
        /// `get_workflow_aggregates`), computed in one statement. Inside a workflow it is a
        /// step (`DBOS.getWorkflowAggregates`): a replay returns the recorded counts.
        ///
        /// ```no_run
        /// # async fn demo(dbos: dbos_core::Dbos) -> dbos_core::Result<()> {
        /// use dbos_core::manage::{GroupBy, ListWorkflows, WorkflowAggregates};
        /// let q = WorkflowAggregates::new(ListWorkflows::new()).group_by(GroupBy::Status);
        /// for row in dbos.workflow_aggregates(&q).await? {
        ///     println!("{:?}: {}", row.group["status"], row.count);
        /// }
        /// # Ok(()) }
        /// # let _ = demo;
        /// ```
        ///
        /// # Errors
        /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for no
        /// grouping, a grouping given twice, a zero-width bucket, a limit or offset, or a
        /// filter a listing refuses (nothing is run); a database error.
        pub async fn workflow_aggregates(
            &self,
            query: &crate::manage::WorkflowAggregates,
        ) -> crate::Result<Vec<crate::manage::WorkflowAggregate>> {
            self.manager().workflow_aggregates(query).await
        }

        /// Counts, errors and min/avg/max durations of recorded steps, grouped by function
        /// name, outcome and/or a completion-time bucket (DBOS's `get_step_aggregates`).
        /// Inside a workflow it is a step (`DBOS.getStepAggregates`).
        ///
        /// # Errors
        /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for no
        /// grouping, a grouping given twice, a zero-width bucket, an empty completion window
        /// or a blank function name (nothing is run); a database error.
        pub async fn step_aggregates(
            &self,
            query: &crate::manage::StepAggregates,
        ) -> crate::Result<Vec<crate::manage::StepAggregate>> {
            self.manager().step_aggregates(query).await
        }
    };
}
pub(crate) use aggregate_methods;
