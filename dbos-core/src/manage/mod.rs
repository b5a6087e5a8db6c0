//! Operating workflows: list and inspect them, cancel, resume, fork, rewind and delete them,
//! collect old history, manage application versions and look at queues.
//!
//! Every operation is available on a launched runtime ([`Dbos`](crate::Dbos)) and on a
//! [`Client`](crate::client::Client) (a process that runs no workflows: an HTTP service, a
//! script, the `dbos-rs` CLI). The semantics are DBOS Transact's, so DBOS's own CLI and
//! clients and this library can operate the same workflows:
//!
//! | operation | what it does |
//! | --- | --- |
//! | [`list_workflows`](crate::Dbos::list_workflows) | typed rows with DBOS's filters ([`ListWorkflows`]) |
//! | [`list_workflow_steps`](crate::Dbos::list_workflow_steps) | the recorded operations of one workflow |
//! | [`cancel_workflow`](crate::Dbos::cancel_workflow) | `CANCELLED`: it starts no further operation |
//! | [`resume_workflow`](crate::Dbos::resume_workflow) | back on a queue, continuing from its last checkpoint |
//! | [`fork_workflow`](crate::Dbos::fork_workflow) | a new workflow re-running from step N on the original's history |
//! | [`rewind_workflow`](crate::Dbos::rewind_workflow) | the same workflow re-running from step N |
//! | [`delete_workflow`](crate::Dbos::delete_workflow) | gone, with everything recorded about it |
//! | [`garbage_collect`](crate::Dbos::garbage_collect) | old finished workflows deleted in short batches |
//! | [`cancel_workflows_created_before`](crate::Dbos::cancel_workflows_created_before) | a global timeout |
//! | [`workflow_aggregates`](crate::Dbos::workflow_aggregates), [`step_aggregates`](crate::Dbos::step_aggregates) | counts by status, name, queue, executor, time; step counts and durations |
//!
//! Cancel, resume, fork, rewind and delete are each one transaction (a crash leaves all of
//! it or none of it); garbage collection, the global timeout and a rename work in short
//! batches, each its own transaction. Called inside a workflow, every operation is a durable
//! operation of that workflow (see `durable`): a replay returns the recorded answer and a
//! write is never made twice.

pub(crate) mod aggregates;
mod dbos;
pub(crate) mod durable;
pub(crate) mod facade;
mod options;
mod query;
mod types;

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

pub use aggregates::{
    explain_step_aggregates, explain_workflow_aggregates, GroupBy, StepAggregate, StepAggregates,
    StepGroupBy, WorkflowAggregate, WorkflowAggregates, TIME_BUCKET,
};
pub use options::{ForkOptions, GarbageCollect, RenameApplication, RewindOptions};
pub use query::ListWorkflows;
pub(crate) use types::decode;
pub use types::{
    DelaySet, GcReport, Payload, QueueInfo, RenameReport, Resumed, StepInfo, VersionInfo,
    WorkflowInfo,
};

use crate::error::{Error, ErrorKind, Result};
use crate::queue::enqueue::{check_partition, queue_partitioned, warn_unregistered};
use crate::runtime::RuntimeInner;
use crate::sysdb::manage::{ForkRow, ResumeAll, ResumeRow, RewindRow, TreeChange};
use crate::sysdb::workflows::{timeout_ms, INTERNAL_QUEUE};
use crate::sysdb::SystemDatabase;
use crate::workflow::call::{non_existent, Status, WorkflowHandle};
use crate::workflow::placement::check_id;

/// Workflows a global timeout cancels per transaction.
const TIMEOUT_BATCH: i64 = 1000;

/// The management operations, shared by a runtime and a client: the database, the
/// application acting, and, for a runtime, its executions (a cancel stops one running here
/// at once; new work wakes its queue at once).
#[derive(Clone)]
pub(crate) struct Manager {
    pub(crate) sysdb: SystemDatabase,
    /// The acting application: listings default to its rows (and unclaimed ones), and it
    /// owns forks of unclaimed workflows. `None`: every application.
    pub(crate) app_name: Option<String>,
    pub(crate) runtime: Option<Arc<RuntimeInner>>,
}

impl Manager {
    pub(crate) fn of_runtime(rt: &Arc<RuntimeInner>) -> Manager {
        Manager {
            sysdb: rt.sysdb.clone(),
            app_name: Some(rt.app_name.clone()),
            runtime: Some(rt.clone()),
        }
    }

    fn app(&self) -> Option<&str> {
        self.app_name.as_deref()
    }

    /// The source of durable time: the runtime's clock, or the system clock for a client.
    pub(crate) fn clock(&self) -> crate::clock::Clock {
        self.runtime
            .as_ref()
            .map(|rt| rt.config.clock.clone())
            .unwrap_or_default()
    }

    /// A handle to a workflow, of the runtime or the client.
    pub(crate) fn handle<T, E>(&self, id: String) -> WorkflowHandle<T, E>
    where
        T: crate::workflow::types::Portable,
        E: crate::workflow::types::WorkflowError,
    {
        match &self.runtime {
            Some(rt) => WorkflowHandle::attach(rt.clone(), id),
            None => WorkflowHandle::detached(self.sysdb.clone(), id),
        }
    }

    /// Stops the executions of `ids` running (or parked) in this process at once; the
    /// others notice through their executor's periodic check.
    fn stop_here(&self, ids: &[String], reason: impl Fn(&str) -> Error) {
        let Some(rt) = &self.runtime else { return };
        for id in ids {
            if let Some(live) = rt.running.get(id) {
                live.control.stop(reason(id).with_workflow_id(id.as_str()));
            }
            drop(rt.parking.remove(id));
        }
    }

    /// Whether `queue` is partitioned (`None`: no executor registered it).
    async fn partitioned(&self, queue: &str) -> Result<Option<bool>> {
        queue_partitioned(&self.sysdb, self.runtime.as_deref(), queue).await
    }

    /// Makes this runtime's dequeue loop for `queue` poll now (no effect for a client, or a
    /// queue this runtime does not serve: executors poll on their own).
    pub(crate) fn wake(&self, queue: &str) {
        if let Some(rt) = &self.runtime {
            rt.wake_queue(queue);
        }
    }

    /// The workflows `q` selects (`DBOS.listWorkflows` inside a workflow).
    pub(crate) async fn list_workflows(&self, q: &ListWorkflows) -> Result<Vec<WorkflowInfo>> {
        durable::read(durable::LIST_WORKFLOWS, || self.rows(q)).await
    }

    /// The queued workflows `q` selects (`DBOS.listQueuedWorkflows` inside a workflow).
    pub(crate) async fn list_queued(&self, q: &ListWorkflows) -> Result<Vec<WorkflowInfo>> {
        let q = q.clone().queued_only();
        durable::read(durable::LIST_QUEUED, || self.rows(&q)).await
    }

    /// How many workflows `q` selects, up to `at_most`, ignoring its limit and offset.
    pub(crate) async fn count_workflows(&self, q: &ListWorkflows, at_most: u32) -> Result<u64> {
        q.check()?;
        self.sysdb.count_workflow_rows(q, self.app(), at_most).await
    }

    pub(crate) async fn rows(&self, q: &ListWorkflows) -> Result<Vec<WorkflowInfo>> {
        q.check()?;
        let rows = self.sysdb.list_workflow_rows(q, self.app()).await?;
        Ok(rows.into_iter().map(WorkflowInfo::from_row).collect())
    }

    /// One workflow (`DBOS.getStatus` inside a workflow).
    pub(crate) async fn get_workflow(&self, id: &str) -> Result<WorkflowInfo> {
        check_id(id)?;
        durable::read(durable::GET_STATUS, || async {
            let rows = self.rows(&ListWorkflows::new().id(id)).await?;
            rows.into_iter().next().ok_or_else(|| non_existent(id))
        })
        .await
    }

    /// The recorded operations of a workflow (`DBOS.listWorkflowSteps` inside a workflow).
    pub(crate) async fn list_steps(&self, id: &str) -> Result<Vec<StepInfo>> {
        check_id(id)?;
        durable::read(durable::LIST_STEPS, || async {
            let rows = self
                .sysdb
                .list_step_rows(id, None, None)
                .await?
                .ok_or_else(|| non_existent(id))?;
            Ok(rows
                .into_iter()
                .map(|r| StepInfo::from_row(id, r))
                .collect())
        })
        .await
    }

    pub(crate) async fn cancel(&self, ids: &[&str], descendants: bool) -> Result<Vec<String>> {
        check_ids(ids)?;
        let wrote = durable::write(self.runtime.as_ref(), durable::CANCEL, found, async |rec| {
            self.sysdb.cancel_tree(ids, descendants, rec).await
        })
        .await?;
        if wrote.now {
            self.stop_here(&wrote.answer, |id| {
                Error::new(
                    ErrorKind::WorkflowCancelled,
                    format!("workflow `{id}` was cancelled; it stops before its next operation"),
                )
            });
        }
        Ok(wrote.answer)
    }

    pub(crate) async fn resume(&self, id: &str, queue: Option<&str>) -> Result<Resumed> {
        let mut answers = self.resume_many(&[id], queue).await?;
        answers
            .pop()
            .map(|(_, resumed)| resumed)
            .ok_or_else(|| non_existent(id))
    }

    /// Resumes workflows in one transaction (`DBOS.resumeWorkflow` inside a workflow).
    pub(crate) async fn resume_many(
        &self,
        ids: &[&str],
        queue: Option<&str>,
    ) -> Result<Vec<(String, Resumed)>> {
        check_ids(ids)?;
        if queue.is_some_and(|q| q.trim().is_empty()) {
            return Err(Error::invalid(
                "the queue name is blank: give the queue to resume onto, or none for the internal queue",
            ));
        }
        let onto = queue.unwrap_or(INTERNAL_QUEUE);
        let partitioned = self.partitioned(onto).await?;
        let answer = |all: &ResumeAll| -> Result<Vec<(String, Resumed)>> {
            if !all.missing.is_empty() {
                return Err(missing_error(&all.missing));
            }
            Ok(all
                .rows
                .iter()
                .map(|(id, row)| {
                    let resumed = match row {
                        ResumeRow::Finished(status) => {
                            Resumed::AlreadyFinished(Status::parse(status))
                        }
                        ResumeRow::Enqueued => Resumed::Enqueued {
                            queue: onto.to_owned(),
                        },
                    };
                    (id.clone(), resumed)
                })
                .collect())
        };
        let wrote = durable::write(
            self.runtime.as_ref(),
            durable::RESUME,
            answer,
            async |rec| {
                self.sysdb
                    .resume_all(ids, queue, partitioned == Some(true), rec)
                    .await
            },
        )
        .await?;
        if wrote.now && partitioned.is_none() {
            for (id, _) in &wrote.answer {
                warn_unregistered(onto, id);
            }
        }
        if wrote.now
            && wrote
                .answer
                .iter()
                .any(|(_, r)| matches!(r, Resumed::Enqueued { .. }))
        {
            self.wake(onto);
        }
        Ok(wrote.answer)
    }

    pub(crate) async fn fork(&self, id: &str, start_step: u32, o: &ForkOptions) -> Result<String> {
        check_id(id)?;
        o.check()?;
        let onto = o.queue.as_deref().unwrap_or(INTERNAL_QUEUE);
        let partitioned = self.partitioned(onto).await?;
        check_partition(onto, partitioned, o.partition_key.as_deref())?;
        let forked = o
            .workflow_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let timeout_ms = timeout_ms(o.timeout, "fork")?;
        let row = ForkRow {
            original: id,
            forked: &forked,
            start_step: i32::try_from(start_step).unwrap_or(i32::MAX),
            app_version: o.app_version.as_deref(),
            queue: o.queue.as_deref(),
            partition_key: o.partition_key.as_deref(),
            timeout_ms,
            app_name: self.app(),
            replaced_children: o
                .replacement_children
                .iter()
                .map(|(old, new)| (old.as_str(), new.as_str()))
                .unzip(),
        };
        let wrote = durable::write(
            self.runtime.as_ref(),
            durable::FORK,
            |forked: &String| Ok(forked.clone()),
            async |rec| self.sysdb.fork(&row, rec).await,
        )
        .await?;
        if wrote.now {
            self.wake(onto);
            if partitioned.is_none() {
                warn_unregistered(onto, &wrote.answer);
            }
        }
        Ok(wrote.answer)
    }

    pub(crate) async fn rewind(&self, id: &str, start_step: u32, o: &RewindOptions) -> Result<()> {
        check_id(id)?;
        o.check()?;
        let onto = o.queue.as_deref().unwrap_or(INTERNAL_QUEUE);
        let partitioned = self.partitioned(onto).await?;
        check_partition(onto, partitioned, o.partition_key.as_deref())?;
        let row = RewindRow {
            workflow_id: id,
            start_step: i32::try_from(start_step).unwrap_or(i32::MAX),
            app_version: o.app_version.as_deref(),
            queue: o.queue.as_deref(),
            partition_key: o.partition_key.as_deref(),
        };
        let wrote = durable::write(
            self.runtime.as_ref(),
            durable::REWIND,
            |(): &()| Ok(()),
            async |rec| self.sysdb.rewind(&row, rec).await,
        )
        .await?;
        if wrote.now {
            self.wake(onto);
            if partitioned.is_none() {
                warn_unregistered(onto, id);
            }
        }
        Ok(())
    }

    /// Sets a `DELAYED` workflow's wake-up time: `delay` from now, or at `until`. Inside a
    /// workflow it is the recorded operation `DBOS.setWorkflowDelay` (the time is resolved
    /// inside it, so a replay returns the first answer).
    pub(crate) async fn set_delay(&self, id: &str, until: DelayTarget) -> Result<DelaySet> {
        // Recorded as DBOS records it; the answer travels as (changed, status, until).
        let (changed, status, until): (bool, String, i64) = crate::workflow::step::run(
            "DBOS.setWorkflowDelay",
            &crate::StepOptions::DEFAULT,
            None,
            || async {
                Ok::<_, Error>(match self.set_delay_now(id, until).await? {
                    DelaySet::Delayed { until_epoch_ms } => {
                        (true, "DELAYED".to_owned(), until_epoch_ms)
                    }
                    DelaySet::NotDelayed(s) => (false, s.as_str().to_owned(), 0),
                })
            },
        )
        .await?;
        Ok(if changed {
            DelaySet::Delayed {
                until_epoch_ms: until,
            }
        } else {
            DelaySet::NotDelayed(Status::parse(&status))
        })
    }

    async fn set_delay_now(&self, id: &str, until: DelayTarget) -> Result<DelaySet> {
        check_id(id)?;
        let until_ms = match until {
            DelayTarget::In(d) => {
                // A delay is durable time: it ends on the runtime's clock.
                self.clock()
                    .now_ms()
                    .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            }
            DelayTarget::At(t) => {
                let ms = query::epoch_ms(t);
                if ms < 0 {
                    return Err(Error::invalid(format!(
                        "the delay of workflow `{id}` must end after 1970-01-01 (DBOS stores it as epoch milliseconds)"
                    )));
                }
                ms
            }
        };
        match self.sysdb.set_delay(id, until_ms).await? {
            None => Err(non_existent(id)),
            Some((_, true)) => Ok(DelaySet::Delayed {
                until_epoch_ms: until_ms,
            }),
            Some((status, false)) => Ok(DelaySet::NotDelayed(Status::parse(&status))),
        }
    }

    pub(crate) async fn rename_application(&self, r: &RenameApplication) -> Result<RenameReport> {
        r.check()?;
        self.sysdb
            .rename_application(crate::sysdb::rename::Rename {
                from: r.from.as_deref(),
                to: &r.to,
                adopt_unclaimed: r.adopt_unclaimed,
                batch_size: i64::from(r.batch_size),
            })
            .await
    }

    /// Replaces (or with `merge`, updates) a workflow's attributes; inside a workflow, the
    /// recorded operation `DBOS.updateWorkflowAttributes`.
    pub(crate) async fn update_attributes(
        &self,
        id: &str,
        attributes: Option<&Value>,
        merge: bool,
    ) -> Result<()> {
        crate::workflow::step::run(
            "DBOS.updateWorkflowAttributes",
            &crate::StepOptions::DEFAULT,
            None,
            || self.update_attributes_now(id, attributes, merge),
        )
        .await
    }

    async fn update_attributes_now(
        &self,
        id: &str,
        attributes: Option<&Value>,
        merge: bool,
    ) -> Result<()> {
        check_id(id)?;
        crate::workflow::call::check_attributes(attributes)?;
        if self.sysdb.set_attributes(id, attributes, merge).await? {
            Ok(())
        } else {
            Err(non_existent(id))
        }
    }

    pub(crate) async fn delete(&self, ids: &[&str], descendants: bool) -> Result<Vec<String>> {
        check_ids(ids)?;
        let wrote = durable::write(self.runtime.as_ref(), durable::DELETE, found, async |rec| {
            self.sysdb.delete_tree(ids, descendants, rec).await
        })
        .await?;
        if wrote.now {
            self.stop_here(&wrote.answer, |id| {
                Error::new(
                    ErrorKind::NonExistentWorkflow,
                    format!("workflow `{id}` was deleted while it ran"),
                )
            });
        }
        Ok(wrote.answer)
    }

    pub(crate) async fn garbage_collect(&self, gc: &GarbageCollect) -> Result<GcReport> {
        gc.check()?;
        let mut cutoff = gc.created_before_ms;
        if let Some(keep) = gc.keep_newest {
            if let Some(threshold) = self.sysdb.newest_threshold(keep, self.app()).await? {
                cutoff = Some(cutoff.map_or(threshold, |c| c.max(threshold)));
            } else if cutoff.is_none() {
                // Fewer workflows than to keep: nothing to delete.
                return Ok(GcReport::default());
            }
        }
        let Some(cutoff) = cutoff else {
            return Ok(GcReport::default());
        };
        let batch = i64::from(gc.batch_size);
        let mut report = GcReport {
            cutoff_ms: Some(cutoff),
            ..GcReport::default()
        };
        loop {
            let n = self
                .sysdb
                .delete_finished_before(cutoff, batch, self.app())
                .await?;
            report.deleted += n;
            report.batches += 1;
            if (n as i64) < batch {
                return Ok(report);
            }
        }
    }

    pub(crate) async fn cancel_created_before(&self, cutoff: SystemTime) -> Result<Vec<String>> {
        let cutoff = query::epoch_ms(cutoff);
        let mut all = Vec::new();
        loop {
            let ids = self
                .sysdb
                .cancel_active_before(cutoff, TIMEOUT_BATCH, self.app())
                .await?;
            let n = ids.len();
            self.stop_here(&ids, |id| {
                Error::new(
                    ErrorKind::WorkflowCancelled,
                    format!("workflow `{id}` was cancelled by a global timeout"),
                )
            });
            all.extend(ids);
            if (n as i64) < TIMEOUT_BATCH {
                return Ok(all);
            }
        }
    }

    pub(crate) async fn list_versions(&self) -> Result<Vec<VersionInfo>> {
        let rows = self.sysdb.list_version_rows(self.app()).await?;
        Ok(rows.into_iter().map(VersionInfo::from_row).collect())
    }

    pub(crate) async fn latest_version(&self) -> Result<VersionInfo> {
        self.list_versions()
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                Error::invalid(
                "no application version is registered: one is registered when a runtime launches",
            )
            })
    }

    pub(crate) async fn set_latest_version(&self, version: &str) -> Result<()> {
        if version.trim().is_empty() {
            return Err(Error::invalid(
                "the application version is blank: give the name of a registered version",
            ));
        }
        if self.sysdb.set_latest_version(version, self.app()).await? {
            return Ok(());
        }
        let known: Vec<String> = self
            .list_versions()
            .await?
            .into_iter()
            .map(|v| v.version_name)
            .collect();
        Err(Error::invalid(format!(
            "no application version `{version}` is registered{}; registered: {}",
            self.app()
                .map(|a| format!(" for application `{a}`"))
                .unwrap_or_default(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )))
    }

    pub(crate) async fn list_queues(&self) -> Result<Vec<QueueInfo>> {
        let rows = self.sysdb.list_queue_rows(self.app()).await?;
        let mut depths = self.sysdb.queue_depths(self.app()).await?;
        let mut queues: Vec<QueueInfo> = rows
            .into_iter()
            .map(|r| {
                let depth = depths.remove(&r.name).unwrap_or_default();
                let name = r.name.clone();
                QueueInfo::from_row(Some(r), name, depth)
            })
            .collect();
        queues.extend(
            depths
                .into_iter()
                .map(|(name, depth)| QueueInfo::from_row(None, name, depth)),
        );
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(queues)
    }
}

/// Not public API: `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` of the exact statement a
/// listing runs, for the query-plan tests. `app` is the default application scope (what a
/// runtime of that application lists).
#[doc(hidden)]
pub async fn explain_list_workflows(
    sysdb: &SystemDatabase,
    q: &ListWorkflows,
    app: Option<&str>,
) -> Result<Value> {
    q.check()?;
    sysdb.explain_list_workflows(q, app).await
}

/// When a delayed workflow should become eligible to run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DelayTarget {
    /// This long from now.
    In(std::time::Duration),
    /// At this time.
    At(SystemTime),
}

/// Refuses an empty list or a blank id, before anything is read or written.
fn check_ids(ids: &[&str]) -> Result<()> {
    if ids.is_empty() {
        return Err(Error::invalid(
            "no workflow ids were given: name at least one workflow",
        ));
    }
    ids.iter().try_for_each(|id| check_id(id))
}

/// The changed ids, or `NonExistentWorkflow` naming the ids that matched no workflow (then
/// nothing was changed).
fn found(change: &TreeChange) -> Result<Vec<String>> {
    if change.missing.is_empty() {
        Ok(change.changed.clone())
    } else {
        Err(missing_error(&change.missing))
    }
}

fn missing_error(missing: &[String]) -> Error {
    match missing {
        [one] => non_existent(one),
        _ => Error::new(
            ErrorKind::NonExistentWorkflow,
            format!(
                "no workflow has the ids {}: nothing was changed",
                missing
                    .iter()
                    .map(|id| format!("`{id}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
}
