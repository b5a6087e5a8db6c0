//! The replay mode of a workflow context: what `WorkflowContext::begin` does when the
//! execution replays a recorded one.

use std::sync::Mutex;

use crate::error::{Error, ErrorKind, Result};
use crate::sysdb::workflows::Checkpoint;
use crate::workflow::context::{lock, Slot};

use super::{Divergence, DivergenceKind, ReplayEnd, TracedOperation};

/// The state of one replay, shared by its context and the code that runs it.
#[derive(Debug)]
pub(crate) struct ReplayMode {
    /// The recorded execution finished (SUCCESS or ERROR): an operation past its history is
    /// one it never made. Otherwise the history ends where the execution is now.
    complete: bool,
    trace: Mutex<Vec<TracedOperation>>,
    /// Why the replay stopped before the body returned.
    stop: Mutex<Option<ReplayEnd>>,
}

impl ReplayMode {
    pub(crate) fn new(complete: bool) -> Self {
        ReplayMode {
            complete,
            trace: Mutex::new(Vec::new()),
            stop: Mutex::new(None),
        }
    }

    /// Whether the recorded execution finished.
    pub(crate) fn complete(&self) -> bool {
        self.complete
    }

    /// The operation `name` at `function_id`: its record, traced; or the end of the replay
    /// (an error the caller makes fatal, so the body stops at its next operation too).
    pub(crate) fn take(
        &self,
        workflow_id: &str,
        function_id: i32,
        name: &str,
        recorded: Option<Checkpoint>,
    ) -> Result<Slot> {
        match recorded {
            Some(cp) if cp.function_name == name => {
                lock(&self.trace).push(TracedOperation {
                    step_id: function_id,
                    name: cp.function_name.clone(),
                    output: cp.output.clone(),
                    error: cp.error.clone(),
                    child_workflow_id: cp.child_workflow_id.clone(),
                });
                Ok(Slot::Recorded {
                    function_id,
                    checkpoint: cp,
                })
            }
            Some(cp) => Err(self.diverged(Divergence {
                workflow_id: workflow_id.to_owned(),
                step_id: Some(function_id),
                kind: DivergenceKind::DifferentOperation,
                recorded: Some(cp.function_name),
                new: Some(name.to_owned()),
            })),
            None if self.complete => Err(self.diverged(Divergence {
                workflow_id: workflow_id.to_owned(),
                step_id: Some(function_id),
                kind: DivergenceKind::ExtraOperation,
                recorded: None,
                new: Some(name.to_owned()),
            })),
            None => {
                self.end(ReplayEnd::Frontier {
                    step_id: function_id,
                    next: name.to_owned(),
                });
                Err(Error::new(
                    ErrorKind::UnexpectedStep,
                    format!(
                        "replay of workflow `{workflow_id}`: the recorded history ends before step {function_id} \
                         (`{name}`), which the workflow has not run yet"
                    ),
                )
                .with_workflow_id(workflow_id)
                .with_step(name, function_id))
            }
        }
    }

    /// Checks that a replayed child start names the recorded child.
    pub(crate) fn same_child(
        &self,
        workflow_id: &str,
        function_id: i32,
        name: &str,
        expected: &str,
        recorded: &str,
    ) -> Result<()> {
        if expected == recorded {
            return Ok(());
        }
        Err(self.diverged(Divergence {
            workflow_id: workflow_id.to_owned(),
            step_id: Some(function_id),
            kind: DivergenceKind::DifferentChild,
            recorded: Some(format!("{name} (child `{recorded}`)")),
            new: Some(format!("{name} (child `{expected}`)")),
        }))
    }

    fn diverged(&self, d: Divergence) -> Error {
        // What the body sees (it stops there); the replay reports `d` itself.
        let e =
            Error::new(ErrorKind::UnexpectedStep, d.to_string()).with_workflow_id(&d.workflow_id);
        self.end(ReplayEnd::Diverged(d));
        e
    }

    /// Records why the replay ends; the first reason wins.
    fn end(&self, end: ReplayEnd) {
        let mut stop = lock(&self.stop);
        if stop.is_none() {
            *stop = Some(end);
        }
    }

    pub(crate) fn take_trace(&self) -> Vec<TracedOperation> {
        std::mem::take(&mut *lock(&self.trace))
    }

    pub(crate) fn take_stop(&self) -> Option<ReplayEnd> {
        lock(&self.stop).take()
    }
}
