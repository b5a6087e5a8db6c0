//! The management operations on a client: the same as on a runtime (see
//! [`crate::manage`] and the methods of [`Dbos`](crate::Dbos) for the semantics), without a
//! runtime of its own: a cancelled workflow stops in its executor within that executor's
//! poll interval, and resumed or forked work starts when an executor next polls its queue.

use std::time::SystemTime;

use serde_json::Value;

use super::Client;
use crate::error::{Error, Result};
use crate::manage::{
    ForkOptions, GarbageCollect, GcReport, ListWorkflows, QueueInfo, Resumed, RewindOptions,
    StepInfo, VersionInfo, WorkflowInfo,
};
use crate::workflow::call::{Status, WorkflowHandle};

impl Client {
    /// Lists workflows; see [`Dbos::list_workflows`](crate::Dbos::list_workflows). Without
    /// an application filter: every application's workflows, or, for a client given an
    /// application name, that application's and unclaimed ones.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for a query that
    /// cannot match, or a database error.
    pub async fn list_workflows(&self, query: &ListWorkflows) -> Result<Vec<WorkflowInfo>> {
        self.manager().list_workflows(query).await
    }

    /// How many workflows `query` selects, ignoring its limit and offset, counted up to
    /// `at_most` (so the count stays cheap on a large table): for saying "10 of 57 shown"
    /// under a listing. A result equal to `at_most` means "at least that many".
    ///
    /// # Errors
    /// As [`list_workflows`](Self::list_workflows).
    pub async fn count_workflows(&self, query: &ListWorkflows, at_most: u32) -> Result<u64> {
        self.manager().count_workflows(query, at_most).await
    }

    /// The workflows on a queue (`ENQUEUED`, `DELAYED` or `PENDING` unless statuses are
    /// given): DBOS's `list_queued_workflows`, i.e. [`list_workflows`](Self::list_workflows)
    /// with [`ListWorkflows::queued_only`].
    ///
    /// # Errors
    /// As `list_workflows`.
    pub async fn list_queued_workflows(&self, query: &ListWorkflows) -> Result<Vec<WorkflowInfo>> {
        self.manager().list_queued(query).await
    }

    /// One workflow's status row, input and outcome.
    ///
    /// # Errors
    /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow), or a
    /// database error.
    pub async fn get_workflow(&self, workflow_id: &str) -> Result<WorkflowInfo> {
        self.manager().get_workflow(workflow_id).await
    }

    /// A workflow's current status.
    ///
    /// # Errors
    /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow), or a
    /// database error.
    pub async fn get_workflow_status(&self, workflow_id: &str) -> Result<Status> {
        self.retrieve_workflow::<Value, Error>(workflow_id)
            .status()
            .await
    }

    /// The recorded operations of a workflow in order.
    ///
    /// # Errors
    /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow), or a
    /// database error.
    pub async fn list_workflow_steps(&self, workflow_id: &str) -> Result<Vec<StepInfo>> {
        self.manager().list_steps(workflow_id).await
    }

    /// Cancels a workflow; see [`Dbos::cancel_workflow`](crate::Dbos::cancel_workflow).
    ///
    /// # Errors
    /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow), or a
    /// database error.
    pub async fn cancel_workflow(&self, workflow_id: &str) -> Result<()> {
        self.manager().cancel(&[workflow_id], false).await.map(drop)
    }

    /// Cancels a workflow and every workflow it started, recursively; returns the ids
    /// cancelled.
    ///
    /// # Errors
    /// As [`cancel_workflow`](Self::cancel_workflow).
    pub async fn cancel_workflow_and_descendants(&self, workflow_id: &str) -> Result<Vec<String>> {
        self.manager().cancel(&[workflow_id], true).await
    }

    /// Resumes a workflow from its last checkpoint through the internal queue; see
    /// [`Dbos::resume_workflow`](crate::Dbos::resume_workflow).
    ///
    /// # Errors
    /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow), or a
    /// database error.
    pub async fn resume_workflow(&self, workflow_id: &str) -> Result<Resumed> {
        self.manager().resume(workflow_id, None).await
    }

    /// Resumes a workflow onto `queue`.
    ///
    /// # Errors
    /// As [`resume_workflow`](Self::resume_workflow), and a blank queue name.
    pub async fn resume_workflow_on_queue(
        &self,
        workflow_id: &str,
        queue: &str,
    ) -> Result<Resumed> {
        self.manager().resume(workflow_id, Some(queue)).await
    }

    /// Forks a workflow from step `start_step` under a new id; see
    /// [`Dbos::fork_workflow`](crate::Dbos::fork_workflow).
    ///
    /// # Errors
    /// As `Dbos::fork_workflow`.
    pub async fn fork_workflow(
        &self,
        workflow_id: &str,
        start_step: u32,
        options: &ForkOptions,
    ) -> Result<WorkflowHandle<Value, Error>> {
        let m = self.manager();
        let id = m.fork(workflow_id, start_step, options).await?;
        Ok(m.handle(id))
    }

    /// Runs a workflow again from the start under a new id (a fork from step 1).
    ///
    /// # Errors
    /// As [`fork_workflow`](Self::fork_workflow).
    pub async fn restart_workflow(
        &self,
        workflow_id: &str,
        options: &ForkOptions,
    ) -> Result<WorkflowHandle<Value, Error>> {
        self.fork_workflow(workflow_id, 1, options).await
    }

    /// Rewinds a finished workflow to step `start_step` under its own id; see
    /// [`Dbos::rewind_workflow`](crate::Dbos::rewind_workflow).
    ///
    /// # Errors
    /// As `Dbos::rewind_workflow`.
    pub async fn rewind_workflow(
        &self,
        workflow_id: &str,
        start_step: u32,
        options: &RewindOptions,
    ) -> Result<()> {
        self.manager()
            .rewind(workflow_id, start_step, options)
            .await
    }

    /// Moves the wake-up time of a `DELAYED` workflow to `delay` from now: see
    /// [`Dbos::set_workflow_delay`](crate::Dbos::set_workflow_delay).
    ///
    /// # Errors
    /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow), or a
    /// database error.
    pub async fn set_workflow_delay(
        &self,
        workflow_id: &str,
        delay: std::time::Duration,
    ) -> Result<crate::manage::DelaySet> {
        self.manager()
            .set_delay(workflow_id, crate::manage::DelayTarget::In(delay))
            .await
    }

    /// [`set_workflow_delay`](Self::set_workflow_delay) to an absolute time.
    ///
    /// # Errors
    /// As `set_workflow_delay`, and
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for a time before
    /// 1970.
    pub async fn set_workflow_delay_until(
        &self,
        workflow_id: &str,
        until: std::time::SystemTime,
    ) -> Result<crate::manage::DelaySet> {
        self.manager()
            .set_delay(workflow_id, crate::manage::DelayTarget::At(until))
            .await
    }

    /// Gives an application's rows to a new name, after the application was renamed
    /// (DBOS's `rename-application`): its queue definitions, schedules, versions, workflows
    /// and steps, and with [`adopt_unclaimed_rows`](crate::manage::RenameApplication::adopt_unclaimed_rows)
    /// the rows no application owns. Stop the application first: executors claim and
    /// recover only their own application's rows. The definitions and the active workflows
    /// move in one transaction; finished workflows and steps follow in short batches (run it
    /// again to finish an interrupted rename).
    ///
    /// ```no_run
    /// # async fn demo(client: dbos_core::Client) -> dbos_core::Result<()> {
    /// use dbos_core::manage::RenameApplication;
    /// let moved = client.rename_application(&RenameApplication::to("storefront").from("shop")).await?;
    /// println!("{} workflows, {} steps", moved.workflows, moved.steps);
    /// # Ok(()) }
    /// # let _ = demo;
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for an invalid new
    /// name, a blank or unchanged old name, nothing to move, or a zero batch size (nothing
    /// is written); a database error (such as a version both names have).
    pub async fn rename_application(
        &self,
        rename: &crate::manage::RenameApplication,
    ) -> Result<crate::manage::RenameReport> {
        self.manager().rename_application(rename).await
    }

    /// Replaces the attributes of a workflow (a JSON object; `None` clears them): see
    /// [`Dbos::update_workflow_attributes`](crate::Dbos::update_workflow_attributes).
    ///
    /// # Errors
    /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow),
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for attributes
    /// that are not an object, or a database error.
    pub async fn update_workflow_attributes(
        &self,
        workflow_id: &str,
        attributes: Option<serde_json::Value>,
    ) -> Result<()> {
        self.manager()
            .update_attributes(workflow_id, attributes.as_ref(), false)
            .await
    }

    /// Sets the given top-level keys of a workflow's attributes, keeping the others: see
    /// [`Dbos::merge_workflow_attributes`](crate::Dbos::merge_workflow_attributes).
    ///
    /// # Errors
    /// As [`update_workflow_attributes`](Self::update_workflow_attributes).
    pub async fn merge_workflow_attributes(
        &self,
        workflow_id: &str,
        keys: serde_json::Value,
    ) -> Result<()> {
        self.manager()
            .update_attributes(workflow_id, Some(&keys), true)
            .await
    }

    /// Deletes a workflow and everything recorded about it.
    ///
    /// # Errors
    /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow), or a
    /// database error.
    pub async fn delete_workflow(&self, workflow_id: &str) -> Result<()> {
        self.manager().delete(&[workflow_id], false).await.map(drop)
    }

    /// Deletes a workflow and every workflow it started, recursively; returns the ids
    /// deleted.
    ///
    /// # Errors
    /// As [`delete_workflow`](Self::delete_workflow).
    pub async fn delete_workflow_and_descendants(&self, workflow_id: &str) -> Result<Vec<String>> {
        self.manager().delete(&[workflow_id], true).await
    }

    /// Cancels several workflows in one statement, as
    /// [`Dbos::cancel_workflow`](crate::Dbos::cancel_workflow) cancels one (DBOS's `cancel_workflows`).
    /// Returns the ids cancelled (those not finished yet).
    ///
    /// # Errors
    /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow) naming
    /// every id that matches no workflow (then nothing is cancelled),
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for an empty list
    /// or a blank id, or a database error.
    pub async fn cancel_workflows(&self, workflow_ids: &[&str]) -> Result<Vec<String>> {
        self.manager().cancel(workflow_ids, false).await
    }

    /// Resumes several workflows, as [`Dbos::resume_workflow`](crate::Dbos::resume_workflow) resumes one
    /// (DBOS's `resume_workflows`), answering for each.
    ///
    /// # Errors
    /// As [`cancel_workflows`](Self::cancel_workflows): an unknown id resumes nothing.
    pub async fn resume_workflows(&self, workflow_ids: &[&str]) -> Result<Vec<(String, Resumed)>> {
        self.manager().resume_many(workflow_ids, None).await
    }

    /// Deletes several workflows and everything recorded about them in one statement, as
    /// [`Dbos::delete_workflow`](crate::Dbos::delete_workflow) deletes one (DBOS's `delete_workflows`).
    /// Returns the ids deleted.
    ///
    /// # Errors
    /// As [`cancel_workflows`](Self::cancel_workflows): an unknown id deletes nothing.
    pub async fn delete_workflows(&self, workflow_ids: &[&str]) -> Result<Vec<String>> {
        self.manager().delete(workflow_ids, false).await
    }

    /// Deletes old finished workflows in short batches; see [`GarbageCollect`].
    ///
    /// # Errors
    /// Options that delete nothing, or a database error.
    pub async fn garbage_collect(&self, gc: &GarbageCollect) -> Result<GcReport> {
        self.manager().garbage_collect(gc).await
    }

    /// A global timeout: cancels every active workflow created before `cutoff` (of this
    /// client's application and unclaimed ones, or of every application); returns their ids.
    ///
    /// # Errors
    /// A database error.
    pub async fn cancel_workflows_created_before(&self, cutoff: SystemTime) -> Result<Vec<String>> {
        self.manager().cancel_created_before(cutoff).await
    }

    /// The registered application versions, latest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn list_application_versions(&self) -> Result<Vec<VersionInfo>> {
        self.manager().list_versions().await
    }

    /// The latest application version.
    ///
    /// # Errors
    /// None registered, or a database error.
    pub async fn latest_application_version(&self) -> Result<VersionInfo> {
        self.manager().latest_version().await
    }

    /// Makes a registered application version the latest.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) naming the
    /// registered versions when `version` is not one, or a database error.
    pub async fn set_latest_application_version(&self, version: &str) -> Result<()> {
        self.manager().set_latest_version(version).await
    }

    /// The queues with their limits and depth; see [`Dbos::list_queues`](crate::Dbos::list_queues).
    ///
    /// # Errors
    /// A database error.
    pub async fn list_queues(&self) -> Result<Vec<QueueInfo>> {
        self.manager().list_queues().await
    }
}
