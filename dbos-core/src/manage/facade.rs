//! The management methods a launched runtime ([`Dbos`](crate::Dbos)) and a
//! [`Client`](crate::Client) share, written once: each type provides
//! `fn manager(&self) -> Manager` and invokes [`management_methods!`] in an `impl` block.
//! What differs between them lives in the [`Manager`](super::Manager) (a runtime also stops
//! its own executions at once and wakes its own queues) and in the acting application.

/// Generates the shared management methods on a type with `fn manager(&self) -> Manager`.
macro_rules! management_methods {
    () => {
        /// Lists workflows: typed rows with DBOS's filters, their inputs and outcomes decoded
        /// where they decode (as stored text where they do not: one undecodable row never
        /// fails the listing). Without an application filter: the acting application's
        /// workflows and unclaimed ones (a runtime's application; a client's, if it was given
        /// one, else every application's).
        ///
        /// ```no_run
        /// use dbos_core::manage::ListWorkflows;
        /// use dbos_core::Status;
        ///
        /// # async fn demo(dbos: dbos_core::Dbos) -> dbos_core::Result<()> {
        /// let failed = ListWorkflows::new().status(Status::Error).newest_first().limit(20);
        /// for w in dbos.list_workflows(&failed).await? {
        ///     println!("{} {} {:?}", w.workflow_id, w.name, w.error);
        /// }
        /// # Ok(()) }
        /// # let _ = demo;
        /// ```
        ///
        /// # Errors
        /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for a query that
        /// cannot match (see [`ListWorkflows`](crate::manage::ListWorkflows)), or a database
        /// error.
        pub async fn list_workflows(
            &self,
            query: &crate::manage::ListWorkflows,
        ) -> crate::Result<Vec<crate::manage::WorkflowInfo>> {
            self.manager().list_workflows(query).await
        }

        /// How many workflows `query` selects, ignoring its limit and offset, counted up to
        /// `at_most` (so the count stays cheap on a large table): for saying "10 of 57 shown"
        /// under a listing. A result equal to `at_most` means "at least that many".
        ///
        /// # Errors
        /// As [`list_workflows`](Self::list_workflows).
        pub async fn count_workflows(
            &self,
            query: &crate::manage::ListWorkflows,
            at_most: u32,
        ) -> crate::Result<u64> {
            self.manager().count_workflows(query, at_most).await
        }

        /// The workflows on a queue (`ENQUEUED`, `DELAYED` or `PENDING` unless statuses are
        /// given): DBOS's `list_queued_workflows`, i.e. [`list_workflows`](Self::list_workflows)
        /// with [`ListWorkflows::queued_only`](crate::manage::ListWorkflows::queued_only).
        ///
        /// # Errors
        /// As `list_workflows`.
        pub async fn list_queued_workflows(
            &self,
            query: &crate::manage::ListWorkflows,
        ) -> crate::Result<Vec<crate::manage::WorkflowInfo>> {
            self.manager().list_queued(query).await
        }

        /// One workflow's status row, input and outcome.
        ///
        /// # Errors
        /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow), or a
        /// database error.
        pub async fn get_workflow(
            &self,
            workflow_id: &str,
        ) -> crate::Result<crate::manage::WorkflowInfo> {
            self.manager().get_workflow(workflow_id).await
        }

        /// The recorded operations of a workflow in order (steps, child starts, sleeps, ...),
        /// with their outputs or errors, child ids and times.
        ///
        /// # Errors
        /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow), or a
        /// database error.
        pub async fn list_workflow_steps(
            &self,
            workflow_id: &str,
        ) -> crate::Result<Vec<crate::manage::StepInfo>> {
            self.manager().list_steps(workflow_id).await
        }

        /// Cancels a workflow: its status becomes `CANCELLED` (terminal), it leaves its queue
        /// and its deduplication id is released. Running in this process (a runtime's own
        /// execution), it is told to stop at once: it starts no further step, child, sleep or
        /// wait, and a sleep or wait in progress wakes; a step already running completes but
        /// is not recorded, so a later [`resume`](Self::resume_workflow) runs it again.
        /// Running in another process, that process notices within its
        /// [`Config::cancel_poll_interval`](crate::Config::cancel_poll_interval) (DBOS
        /// executors: before their next operation). Workflows that finished (`SUCCESS`,
        /// `ERROR`) are left as they are; a dead-lettered one (`MAX_RECOVERY_ATTEMPTS_EXCEEDED`)
        /// becomes `CANCELLED`, as in DBOS.
        ///
        /// # Errors
        /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow) or a
        /// database error.
        pub async fn cancel_workflow(&self, workflow_id: &str) -> crate::Result<()> {
            self.manager().cancel(&[workflow_id], false).await.map(drop)
        }

        /// [`cancel_workflow`](Self::cancel_workflow), and every workflow it started,
        /// recursively (through `parent_workflow_id`), in one transaction. Returns the ids
        /// cancelled (those not finished yet).
        ///
        /// # Errors
        /// As `cancel_workflow`.
        pub async fn cancel_workflow_and_descendants(
            &self,
            workflow_id: &str,
        ) -> crate::Result<Vec<String>> {
            self.manager().cancel(&[workflow_id], true).await
        }

        /// Moves the wake-up time of a `DELAYED` workflow (enqueued with a
        /// [`delay`](crate::QueuedCall::delay)) to `delay` from now: later to postpone it,
        /// zero to release it at the next sweep. A workflow that is no longer `DELAYED` is left
        /// as it is, and the answer says its status (as DBOS's `set_workflow_delay`). Inside a
        /// workflow the change is the recorded operation `DBOS.setWorkflowDelay`.
        ///
        /// ```no_run
        /// # use std::time::Duration;
        /// # async fn demo(dbos: dbos_core::Dbos) -> dbos_core::Result<()> {
        /// use dbos_core::manage::DelaySet;
        /// match dbos.set_workflow_delay("reminder-7", Duration::from_secs(3600)).await? {
        ///     DelaySet::Delayed { until_epoch_ms } => println!("postponed to {until_epoch_ms}"),
        ///     DelaySet::NotDelayed(status) => println!("too late: it is {status:?}"),
        ///     _ => {}
        /// }
        /// # Ok(()) }
        /// # let _ = demo;
        /// ```
        ///
        /// # Errors
        /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow), or a
        /// database error.
        pub async fn set_workflow_delay(
            &self,
            workflow_id: &str,
            delay: std::time::Duration,
        ) -> crate::Result<crate::manage::DelaySet> {
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
        ) -> crate::Result<crate::manage::DelaySet> {
            self.manager()
                .set_delay(workflow_id, crate::manage::DelayTarget::At(until))
                .await
        }

        /// Replaces the attributes of a workflow (a JSON object; `None` clears them), as
        /// DBOS's `update_workflow_attributes` does. Inside a workflow the update is recorded
        /// as the operation `DBOS.updateWorkflowAttributes`, so a recovered workflow does not
        /// repeat it.
        ///
        /// ```no_run
        /// # async fn demo(dbos: dbos_core::Dbos) -> dbos_core::Result<()> {
        /// dbos.update_workflow_attributes("order-42", Some(serde_json::json!({"tier": "gold"})))
        ///     .await?;
        /// # Ok(()) }
        /// # let _ = demo;
        /// ```
        ///
        /// # Errors
        /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow),
        /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for attributes
        /// that are not an object (nothing is written), or a database error.
        pub async fn update_workflow_attributes(
            &self,
            workflow_id: &str,
            attributes: Option<serde_json::Value>,
        ) -> crate::Result<()> {
            self.manager()
                .update_attributes(workflow_id, attributes.as_ref(), false)
                .await
        }

        /// Sets the given top-level keys of a workflow's attributes, keeping the others
        /// (DBOS's `update_workflow_attributes(..., merge=True)`; a key given `null` is stored
        /// as JSON `null`). Recorded inside a workflow, as
        /// [`update_workflow_attributes`](Self::update_workflow_attributes) is.
        ///
        /// # Errors
        /// As `update_workflow_attributes`.
        pub async fn merge_workflow_attributes(
            &self,
            workflow_id: &str,
            keys: serde_json::Value,
        ) -> crate::Result<()> {
            self.manager()
                .update_attributes(workflow_id, Some(&keys), true)
                .await
        }

        /// Resumes a workflow from its last checkpoint: a `CANCELLED`, dead-lettered
        /// (`MAX_RECOVERY_ATTEMPTS_EXCEEDED`) or stuck `PENDING` workflow goes back on the
        /// internal queue, which every executor serves, with its recovery count, deadline and
        /// deduplication id cleared; the executor that dequeues it replays its recorded steps
        /// and runs the rest. A workflow that finished (`SUCCESS`, `ERROR`) is left as it is:
        /// the answer says so. (An `ENQUEUED` or `DELAYED` workflow moves to the internal
        /// queue, as in DBOS.)
        ///
        /// # Errors
        /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow), or a
        /// database error.
        pub async fn resume_workflow(
            &self,
            workflow_id: &str,
        ) -> crate::Result<crate::manage::Resumed> {
            self.manager().resume(workflow_id, None).await
        }

        /// [`resume_workflow`](Self::resume_workflow) onto `queue` instead of the internal
        /// queue, within that queue's limits. The workflow keeps its partition key.
        ///
        /// # Errors
        /// As `resume_workflow`, and [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)
        /// for a blank queue name, or for a workflow without a partition key resumed onto a
        /// partitioned queue (no executor would ever dequeue it; nothing is resumed).
        pub async fn resume_workflow_on_queue(
            &self,
            workflow_id: &str,
            queue: &str,
        ) -> crate::Result<crate::manage::Resumed> {
            self.manager().resume(workflow_id, Some(queue)).await
        }

        /// Forks a workflow from step `start_step` under a new id: the new workflow has the
        /// original's name, inputs and attributes; its steps before `start_step` are copied
        /// from the original (with their events history and stream entries, and child
        /// workflows started before it are reused, not started again), and it runs from
        /// `start_step` on, once an executor dequeues it from the internal queue (or the queue
        /// given). Step 1 re-runs the whole workflow: see
        /// [`restart_workflow`](Self::restart_workflow).
        ///
        /// Returns a handle to the fork, untyped;
        /// [`WorkflowHandle::typed`](crate::WorkflowHandle::typed) gives it the workflow's
        /// types.
        ///
        /// ```no_run
        /// use dbos_core::manage::ForkOptions;
        ///
        /// # async fn demo(dbos: dbos_core::Dbos) -> dbos_core::Result<()> {
        /// // Re-run a paid order from step 3, on the new code.
        /// let options = ForkOptions::new().workflow_id("order-42-retry").app_version("v2");
        /// let fork = dbos.fork_workflow("order-42", 3, &options).await?;
        /// let receipt: serde_json::Value = fork.result().await?;
        /// println!("{receipt}");
        /// # Ok(()) }
        /// # let _ = demo;
        /// ```
        ///
        /// # Errors
        /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow),
        /// [`ErrorKind::NoSuchStep`](crate::ErrorKind::NoSuchStep) when `start_step` is beyond
        /// the recorded history plus one (the error names the last recorded step),
        /// [`ErrorKind::ConflictingWorkflow`](crate::ErrorKind::ConflictingWorkflow) when the
        /// fork's id is taken, [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)
        /// for step 0, blank options, or a partition key that does not fit the queue (one on
        /// the internal queue or another queue without partitions, none on a partitioned
        /// queue), or a database error.
        pub async fn fork_workflow(
            &self,
            workflow_id: &str,
            start_step: u32,
            options: &crate::manage::ForkOptions,
        ) -> crate::Result<crate::WorkflowHandle<serde_json::Value, crate::Error>> {
            let m = self.manager();
            let id = m.fork(workflow_id, start_step, options).await?;
            Ok(m.handle(id))
        }

        /// Runs a workflow again from the start under a new id: a fork from step 1.
        ///
        /// # Errors
        /// As [`fork_workflow`](Self::fork_workflow).
        pub async fn restart_workflow(
            &self,
            workflow_id: &str,
            options: &crate::manage::ForkOptions,
        ) -> crate::Result<crate::WorkflowHandle<serde_json::Value, crate::Error>> {
            self.fork_workflow(workflow_id, 1, options).await
        }

        /// Rewinds a finished workflow to step `start_step` under its own id (DBOS 3.x): its
        /// checkpoints and events history from that step on are deleted, its events go back to
        /// their values before it, the stream close markers written from it on are removed,
        /// the messages it consumed from it on (and any unconsumed ones) are deleted, its
        /// outcome is deleted, and it goes back on the internal queue to re-run from that step.
        /// Unlike a fork, peers keep addressing the same id.
        ///
        /// # Errors
        /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow),
        /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for a workflow
        /// still active (cancel it first) or a partition key that does not fit the queue,
        /// [`ErrorKind::NoSuchStep`](crate::ErrorKind::NoSuchStep), or a database error.
        pub async fn rewind_workflow(
            &self,
            workflow_id: &str,
            start_step: u32,
            options: &crate::manage::RewindOptions,
        ) -> crate::Result<()> {
            self.manager()
                .rewind(workflow_id, start_step, options)
                .await
        }

        /// Deletes a workflow and everything recorded about it (inputs, outcome, steps,
        /// messages, events, streams), in one statement. One running in this process stops at
        /// once.
        ///
        /// # Errors
        /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow), or a
        /// database error.
        pub async fn delete_workflow(&self, workflow_id: &str) -> crate::Result<()> {
            self.manager().delete(&[workflow_id], false).await.map(drop)
        }

        /// [`delete_workflow`](Self::delete_workflow), and every workflow it started,
        /// recursively. Returns the ids deleted.
        ///
        /// # Errors
        /// As `delete_workflow`.
        pub async fn delete_workflow_and_descendants(
            &self,
            workflow_id: &str,
        ) -> crate::Result<Vec<String>> {
            self.manager().delete(&[workflow_id], true).await
        }

        /// Cancels several workflows in one statement, as
        /// [`cancel_workflow`](Self::cancel_workflow) cancels one (DBOS's `cancel_workflows`).
        /// Returns the ids cancelled (those not finished yet).
        ///
        /// # Errors
        /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow) naming
        /// every id that matches no workflow (then nothing is cancelled),
        /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for an empty list
        /// or a blank id, or a database error.
        pub async fn cancel_workflows(&self, workflow_ids: &[&str]) -> crate::Result<Vec<String>> {
            self.manager().cancel(workflow_ids, false).await
        }

        /// Resumes several workflows in one transaction, as
        /// [`resume_workflow`](Self::resume_workflow) resumes one (DBOS's `resume_workflows`),
        /// answering for each.
        ///
        /// # Errors
        /// As [`cancel_workflows`](Self::cancel_workflows): an unknown id resumes nothing.
        pub async fn resume_workflows(
            &self,
            workflow_ids: &[&str],
        ) -> crate::Result<Vec<(String, crate::manage::Resumed)>> {
            self.manager().resume_many(workflow_ids, None).await
        }

        /// Deletes several workflows and everything recorded about them in one statement, as
        /// [`delete_workflow`](Self::delete_workflow) deletes one (DBOS's `delete_workflows`).
        /// Returns the ids deleted.
        ///
        /// # Errors
        /// As [`cancel_workflows`](Self::cancel_workflows): an unknown id deletes nothing.
        pub async fn delete_workflows(&self, workflow_ids: &[&str]) -> crate::Result<Vec<String>> {
            self.manager().delete(workflow_ids, false).await
        }

        /// Deletes finished workflows created before a cutoff and/or beyond the newest N
        /// (see [`GarbageCollect`](crate::manage::GarbageCollect)), oldest first, in batches
        /// that are each one short transaction. Active workflows are never deleted.
        ///
        /// # Errors
        /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for options that
        /// delete nothing, or a database error (batches committed before it stay deleted).
        pub async fn garbage_collect(
            &self,
            gc: &crate::manage::GarbageCollect,
        ) -> crate::Result<crate::manage::GcReport> {
            self.manager().garbage_collect(gc).await
        }

        /// A global timeout: cancels every active workflow (`PENDING`, `ENQUEUED`, `DELAYED`)
        /// created before `cutoff`, of the acting application and unclaimed ones (of every
        /// application for a client without one), in batches, and returns their ids.
        ///
        /// # Errors
        /// A database error (batches committed before it stay cancelled).
        pub async fn cancel_workflows_created_before(
            &self,
            cutoff: std::time::SystemTime,
        ) -> crate::Result<Vec<String>> {
            self.manager().cancel_created_before(cutoff).await
        }

        /// The application versions registered (the acting application's and unclaimed
        /// ones), latest first.
        ///
        /// # Errors
        /// A database error.
        pub async fn list_application_versions(
            &self,
        ) -> crate::Result<Vec<crate::manage::VersionInfo>> {
            self.manager().list_versions().await
        }

        /// The latest application version: the one whose executors also run workflows
        /// enqueued without a version.
        ///
        /// # Errors
        /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) when none is
        /// registered, or a database error.
        pub async fn latest_application_version(
            &self,
        ) -> crate::Result<crate::manage::VersionInfo> {
            self.manager().latest_version().await
        }

        /// Makes a registered application version the latest.
        ///
        /// # Errors
        /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) naming the
        /// registered versions when `version` is not one, or a database error.
        pub async fn set_latest_application_version(&self, version: &str) -> crate::Result<()> {
            self.manager().set_latest_version(version).await
        }

        /// The queues: those registered by executors (with their limits) and any other queue
        /// holding workflows, each with how many workflows wait on it and run from it.
        ///
        /// # Errors
        /// A database error.
        pub async fn list_queues(&self) -> crate::Result<Vec<crate::manage::QueueInfo>> {
            self.manager().list_queues().await
        }
    };
}
pub(crate) use management_methods;
