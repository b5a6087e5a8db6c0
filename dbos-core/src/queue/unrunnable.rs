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
}

impl Dbos {
    /// The workflows waiting (for longer than `waiting_for`) on the queues this executor
    /// serves, of its application and version (or none), that it will never claim: the
    /// ones its queue workers report at WARN. They stay `ENQUEUED` for an executor that can
    /// run them; if none exists, cancel or delete them. At most 1,000, oldest first.
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
        let who = rt.dequeuer();
        let found = rt
            .sysdb
            .unrunnable_workflows(
                &queues,
                who,
                i64::try_from(waiting_for.as_millis()).unwrap_or(i64::MAX),
            )
            .await?;
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let query = found
            .iter()
            .fold(ListWorkflows::new(), |q, (id, _, _)| q.id(id.clone()))
            .limit(u32::try_from(found.len()).unwrap_or(u32::MAX));
        let rows = self.list_workflows(&query).await?;
        Ok(rows
            .into_iter()
            .filter_map(|workflow| {
                let (_, name, serialization) = found
                    .iter()
                    .find(|(id, _, _)| *id == workflow.workflow_id)?;
                let reason = if rt.registry.get(name).is_none() {
                    Unrunnable::NotRegistered
                } else {
                    Unrunnable::ForeignEncoding(serialization.clone())
                };
                Some(UnrunnableWorkflow { workflow, reason })
            })
            .collect())
    }
}
