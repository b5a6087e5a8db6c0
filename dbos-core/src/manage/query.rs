//! [`ListWorkflows`]: which workflows a listing returns, with DBOS's filters.

use std::time::SystemTime;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::workflow::call::Status;

/// An inclusive range of epoch milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TimeRange {
    pub(crate) after: Option<i64>,
    pub(crate) before: Option<i64>,
}

/// Milliseconds since the Unix epoch (negative before it).
pub(crate) fn epoch_ms(t: SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Which workflows a listing returns ([`Dbos::list_workflows`](crate::Dbos::list_workflows),
/// [`Client::list_workflows`](crate::client::Client::list_workflows)), in which order, and
/// whether with their inputs and outcomes: DBOS's `list_workflows` filters. Every filter
/// narrows the listing (they combine with AND); a filter given several values (say two
/// statuses) matches any of them.
///
/// Without [`application_name`](Self::application_name) (and without explicit ids), a
/// runtime lists its own application's workflows plus unclaimed ones, and a client every
/// application's (or its own, when it was given one), as DBOS does.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use dbos_core::manage::ListWorkflows;
/// use dbos_core::Status;
///
/// // What failed in the last 24 hours, newest first, without the inputs.
/// let failed = ListWorkflows::new()
///     .status(Status::Error)
///     .created_after(SystemTime::now() - Duration::from_secs(24 * 3600))
///     .newest_first()
///     .limit(100)
///     .without_input();
/// # let _ = failed;
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a query does nothing until it is passed to list_workflows"]
pub struct ListWorkflows {
    pub(crate) workflow_ids: Vec<String>,
    pub(crate) id_prefixes: Vec<String>,
    pub(crate) statuses: Vec<Status>,
    pub(crate) names: Vec<String>,
    pub(crate) app_versions: Vec<String>,
    pub(crate) executor_ids: Vec<String>,
    pub(crate) queue_names: Vec<String>,
    pub(crate) queued_only: bool,
    pub(crate) parent_ids: Vec<String>,
    pub(crate) forked_from: Vec<String>,
    pub(crate) schedule_names: Vec<String>,
    pub(crate) users: Vec<String>,
    pub(crate) application_names: Vec<String>,
    pub(crate) created: TimeRange,
    pub(crate) completed: TimeRange,
    pub(crate) dequeued: TimeRange,
    pub(crate) attributes: Option<Value>,
    pub(crate) limit: Option<u32>,
    pub(crate) offset: Option<u32>,
    /// Keyset pagination: only rows after this (created_at, workflow id) in the order.
    pub(crate) page_after: Option<(i64, String)>,
    pub(crate) newest_first: bool,
    pub(crate) load_input: bool,
    pub(crate) load_output: bool,
}

impl Default for ListWorkflows {
    fn default() -> Self {
        ListWorkflows::new()
    }
}

impl ListWorkflows {
    /// Every workflow, oldest first, with inputs and outcomes.
    pub fn new() -> Self {
        ListWorkflows {
            workflow_ids: Vec::new(),
            id_prefixes: Vec::new(),
            statuses: Vec::new(),
            names: Vec::new(),
            app_versions: Vec::new(),
            executor_ids: Vec::new(),
            queue_names: Vec::new(),
            queued_only: false,
            parent_ids: Vec::new(),
            forked_from: Vec::new(),
            schedule_names: Vec::new(),
            users: Vec::new(),
            application_names: Vec::new(),
            created: TimeRange::default(),
            completed: TimeRange::default(),
            dequeued: TimeRange::default(),
            attributes: None,
            limit: None,
            offset: None,
            page_after: None,
            newest_first: false,
            load_input: true,
            load_output: true,
        }
    }

    /// The workflows on a queue (DBOS's `list_queued_workflows`): those with a queue and,
    /// unless statuses are given, still `ENQUEUED`, `DELAYED` or `PENDING`.
    pub fn queued() -> Self {
        ListWorkflows::new().queued_only()
    }

    /// Only this workflow id (several calls: any of them).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.workflow_ids.push(id.into());
        self
    }

    /// Only workflows whose id starts with `prefix` (several calls: any of them).
    pub fn id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.id_prefixes.push(prefix.into());
        self
    }

    /// Only workflows in this status (several calls: any of them).
    pub fn status(mut self, status: Status) -> Self {
        self.statuses.push(status);
        self
    }

    /// Only workflows of this registered name (several calls: any of them).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.names.push(name.into());
        self
    }

    /// Only workflows of this application version (several calls: any of them).
    pub fn app_version(mut self, version: impl Into<String>) -> Self {
        self.app_versions.push(version.into());
        self
    }

    /// Only workflows last run by this executor (several calls: any of them).
    pub fn executor_id(mut self, executor_id: impl Into<String>) -> Self {
        self.executor_ids.push(executor_id.into());
        self
    }

    /// Only workflows on this queue (several calls: any of them).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue_names.push(queue.into());
        self
    }

    /// Only workflows on a queue; see [`queued`](Self::queued).
    pub fn queued_only(mut self) -> Self {
        self.queued_only = true;
        self
    }

    /// Only children of this workflow (several calls: of any of them).
    pub fn parent(mut self, parent_id: impl Into<String>) -> Self {
        self.parent_ids.push(parent_id.into());
        self
    }

    /// Only forks of this workflow (several calls: of any of them).
    pub fn forked_from(mut self, original_id: impl Into<String>) -> Self {
        self.forked_from.push(original_id.into());
        self
    }

    /// Only the runs of this schedule (the `schedule_name` column a scheduled tick, a
    /// backfill or a trigger sets; several calls: of any of them).
    pub fn schedule_name(mut self, schedule: impl Into<String>) -> Self {
        self.schedule_names.push(schedule.into());
        self
    }

    /// Only workflows run by this authenticated user (several calls: any of them).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.users.push(user.into());
        self
    }

    /// Only workflows of this application, plus unclaimed ones (several calls: any of
    /// them). Replaces the default scope described on the type.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_names.push(name.into());
        self
    }

    /// Only workflows created at or after `t`.
    pub fn created_after(mut self, t: SystemTime) -> Self {
        self.created.after = Some(epoch_ms(t));
        self
    }

    /// Only workflows created at or before `t`.
    pub fn created_before(mut self, t: SystemTime) -> Self {
        self.created.before = Some(epoch_ms(t));
        self
    }

    /// Only workflows that completed (`SUCCESS`, `ERROR`, cancelled, dead-lettered) at or
    /// after `t`.
    pub fn completed_after(mut self, t: SystemTime) -> Self {
        self.completed.after = Some(epoch_ms(t));
        self
    }

    /// Only workflows that completed at or before `t`.
    pub fn completed_before(mut self, t: SystemTime) -> Self {
        self.completed.before = Some(epoch_ms(t));
        self
    }

    /// Only workflows last dequeued at or after `t`.
    pub fn dequeued_after(mut self, t: SystemTime) -> Self {
        self.dequeued.after = Some(epoch_ms(t));
        self
    }

    /// Only workflows last dequeued at or before `t`.
    pub fn dequeued_before(mut self, t: SystemTime) -> Self {
        self.dequeued.before = Some(epoch_ms(t));
        self
    }

    /// Only workflows whose attributes contain `attributes` (a JSON object; JSONB `@>`).
    pub fn attributes(mut self, attributes: Value) -> Self {
        self.attributes = Some(attributes);
        self
    }

    /// At most `n` workflows (at least 1).
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }

    /// Skips the first `n` workflows of the order.
    pub fn offset(mut self, n: u32) -> Self {
        self.offset = Some(n);
        self
    }

    /// Keyset pagination: only the workflows that come after the one created at
    /// `created_at` (epoch ms) with id `workflow_id` in the listing's order (creation time,
    /// then id; reversed by [`newest_first`](Self::newest_first)). Give the last row of a
    /// page to get the next page: unlike an offset, the cost of a page does not grow with
    /// how far it is, and rows inserted meanwhile do not shift it.
    pub fn page_after(mut self, created_at: i64, workflow_id: impl Into<String>) -> Self {
        self.page_after = Some((created_at, workflow_id.into()));
        self
    }

    /// Newest first (by creation time); the default is oldest first, as in DBOS.
    pub fn newest_first(mut self) -> Self {
        self.newest_first = true;
        self
    }

    /// Leaves the inputs out (a lighter listing).
    pub fn without_input(mut self) -> Self {
        self.load_input = false;
        self
    }

    /// Leaves the outputs and errors out (a lighter listing).
    pub fn without_output(mut self) -> Self {
        self.load_output = false;
        self
    }

    /// Refuses a query that cannot mean what it says.
    pub(crate) fn check(&self) -> Result<()> {
        if self.limit == Some(0) {
            return Err(Error::invalid(
                "a limit of 0 lists nothing; give a limit of at least 1, or none",
            ));
        }
        if let Some(a) = &self.attributes {
            if !a.is_object() {
                return Err(Error::invalid(format!(
                    "the attributes filter must be a JSON object (its keys and values are matched), not {a}"
                )));
            }
        }
        for (what, range) in [
            ("created", self.created),
            ("completed", self.completed),
            ("dequeued", self.dequeued),
        ] {
            if let (Some(a), Some(b)) = (range.after, range.before) {
                if a > b {
                    return Err(Error::invalid(format!(
                        "{what}_after is later than {what}_before, so nothing could match; swap them"
                    )));
                }
            }
        }
        for (what, values) in [
            ("workflow id", &self.workflow_ids),
            ("name", &self.names),
            ("queue", &self.queue_names),
            ("schedule name", &self.schedule_names),
        ] {
            if values.iter().any(|v| v.trim().is_empty()) {
                return Err(Error::invalid(format!(
                    "a blank {what} filter matches nothing; give a value, or leave the filter out"
                )));
            }
        }
        Ok(())
    }
}
