//! Queued work this executor cannot run: listed for an operator, as the queue worker
//! reports it in the log.

use std::time::Duration;

use crate::error::Result;
use crate::manage::{ListWorkflows, WorkflowInfo};
use crate::runtime::Dbos;
use crate::sysdb::workflows::INTERNAL_QUEUE;

/// A queued workflow this executor serves the queue of, but cannot run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UnrunnableWorkflow {
    /// The workflow's row (status `ENQUEUED`), as a listing returns it.
    pub workflow: WorkflowInfo,
    /// Why this executor leaves it queued.
    pub reason: Unrunnable,
}

/// Why an executor leaves a queued workflow for another.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unrunnable {
    /// No `#[workflow]` of that name is registered in this binary (another build, or a
    /// worker in another language, has it).
    NotRegistered,
    /// Its inputs are stored in an encoding this library does not read (such as DBOS
    /// Python's default, `py_pickle`).
    ForeignEncoding(String),
    /// Its queue is registered nowhere: this executor does not serve it and `dbos.queues`
    /// has no row for it, so no executor known to the database dequeues it (a typo in a
    /// queue name, or a queue left out of every executor's `Config`). It waits until an
    /// executor registering the queue starts.
    QueueNotRegistered,
}

impl Dbos {
    /// The workflows waiting (for longer than `waiting_for`) that this executor will never
    /// claim: on the queues it serves, those of its application and version (or none) it
    /// cannot run (the ones its queue workers report at WARN); and, on any queue no executor
    /// registered (not served here, no row in `dbos.queues`), those of its application (or
    /// none), which an enqueue reports at WARN. They stay `ENQUEUED` for an executor that
    /// can run them; if none exists, start one, or cancel or delete them. At most 1,000 of
    /// each kind, oldest first.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # async fn demo(dbos: dbos_core::Dbos) -> dbos_core::Result<()> {
    /// for w in dbos.list_unrunnable_workflows(Duration::from_secs(60)).await? {
    ///     println!("{} ({}) on {:?}: {:?}", w.workflow.workflow_id, w.workflow.name,
    ///              w.workflow.queue_name, w.reason);
    /// }
    /// # Ok(()) }
    /// # let _ = demo;
    /// ```
    ///
    /// # Errors
    /// A database error.
    pub async fn list_unrunnable_workflows(
        &self,
        waiting_for: Duration,
    ) -> Result<Vec<UnrunnableWorkflow>> {
        let rt = self.inner();
        let mut queues: Vec<&str> = rt.config.queues.iter().map(|q| q.name()).collect();
        queues.push(INTERNAL_QUEUE);
        let waited_ms = i64::try_from(waiting_for.as_millis()).unwrap_or(i64::MAX);
        let who = rt.dequeuer();
        let mut found: Vec<(String, Unrunnable)> = rt
            .sysdb
            .unrunnable_workflows(&queues, who, waited_ms)
            .await?
            .into_iter()
            .map(|(id, name, serialization)| {
                let reason = if rt.registry.get(&name).is_none() {
                    Unrunnable::NotRegistered
                } else {
                    Unrunnable::ForeignEncoding(serialization)
                };
                (id, reason)
            })
            .collect();
        found.extend(
            rt.sysdb
                .on_unregistered_queues(&queues, &rt.app_name, waited_ms)
                .await?
                .into_iter()
                .map(|id| (id, Unrunnable::QueueNotRegistered)),
        );
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let query = found
            .iter()
            .fold(ListWorkflows::new(), |q, (id, _)| q.id(id.clone()))
            .limit(u32::try_from(found.len()).unwrap_or(u32::MAX));
        // Oldest first, as the listing orders them.
        let rows = self.list_workflows(&query).await?;
        Ok(rows
            .into_iter()
            .filter_map(|workflow| {
                let i = found
                    .iter()
                    .position(|(id, _)| *id == workflow.workflow_id)?;
                let (_, reason) = found.swap_remove(i);
                Some(UnrunnableWorkflow { workflow, reason })
            })
            .collect())
    }
}
