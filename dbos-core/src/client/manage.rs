//! The management operations on a client: the same as on a runtime (see
//! [`crate::manage`] and the methods of [`Dbos`](crate::Dbos) for the semantics), without a
//! runtime of its own: a cancelled workflow stops in its executor within that executor's
//! poll interval, and resumed or forked work starts when an executor next polls its queue.

use serde_json::Value;

use super::Client;
use crate::error::{Error, Result};
use crate::workflow::call::Status;

impl Client {
    crate::manage::facade::management_methods!();
    crate::manage::aggregates::aggregate_methods!();
    crate::export::export_methods!();

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
}
