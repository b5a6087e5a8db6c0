//! The replay check: replays many recorded executions and reports the first divergence of
//! each ("will this deploy break in-flight workflows?").

use crate::error::Result;
use crate::manage::ListWorkflows;
use crate::workflow::call::Status;

use super::{Divergence, ReplayEnd, Replayer};

/// One workflow the check replayed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CheckedWorkflow {
    /// The workflow.
    pub workflow_id: String,
    /// Its workflow name.
    pub workflow_name: String,
    /// Its recorded status.
    pub recorded_status: Status,
    /// How many recorded operations the code replayed.
    pub replayed: usize,
    /// How its replay ended.
    pub end: ReplayEnd,
}

/// What a replay check found, workflow by workflow.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReplayReport {
    /// The application version of the code checked.
    pub application_version: String,
    /// Every workflow checked, in the order listed.
    pub checked: Vec<CheckedWorkflow>,
}

impl ReplayReport {
    /// The first divergence of each workflow that diverged.
    pub fn divergences(&self) -> impl Iterator<Item = &Divergence> {
        self.checked.iter().filter_map(|c| match &c.end {
            ReplayEnd::Diverged(d) => Some(d),
            _ => None,
        })
    }

    /// Whether the code replays every checked history.
    pub fn passed(&self) -> bool {
        self.divergences().next().is_none()
    }
}

impl std::fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let diverged = self.divergences().count();
        writeln!(
            f,
            "replay check of application version {}: {} workflow(s) checked, {diverged} diverged",
            self.application_version,
            self.checked.len()
        )?;
        for d in self.divergences() {
            writeln!(f, "  DIVERGED {d}")?;
        }
        Ok(())
    }
}

impl Replayer {
    /// Replays every workflow `which` selects (ids, a workflow name, an application version,
    /// a time range, statuses...; its limit and offset page through many) and reports how
    /// each ended. Its inputs and outcomes are always loaded: the replay needs them.
    ///
    /// ```no_run
    /// use dbos_core::manage::ListWorkflows;
    /// use dbos_core::Status;
    /// # async fn demo(replayer: dbos_core::replay::Replayer) -> dbos_core::Result<()> {
    /// // Will this build finish the checkouts in flight?
    /// let report = replayer
    ///     .check(&ListWorkflows::new().name("checkout").status(Status::Pending))
    ///     .await?;
    /// print!("{report}");
    /// assert!(report.passed());
    /// # Ok(()) }
    /// # let _ = demo;
    /// ```
    ///
    /// # Errors
    /// An invalid query; a database error. A divergence is not an error.
    pub async fn check(&self, which: &ListWorkflows) -> Result<ReplayReport> {
        let mut q = which.clone();
        q.load_input = true;
        q.load_output = true;
        let mut checked = Vec::new();
        for info in self.manager.list_workflows(&q).await? {
            let replay = self.replay_info(&info).await?;
            checked.push(CheckedWorkflow {
                workflow_id: replay.workflow_id,
                workflow_name: replay.workflow_name,
                recorded_status: replay.recorded_status,
                replayed: replay.trace.len(),
                end: replay.end,
            });
        }
        Ok(ReplayReport {
            application_version: self.rt.app_version.clone(),
            checked,
        })
    }
}
