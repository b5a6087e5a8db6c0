//! The executor's periodic look at the workflows it is running, so a cancel from anywhere
//! (another process, DBOS's CLI, plain SQL) stops them promptly without a read before every
//! step: one query per interval over every execution running here.
//!
//! A workflow found `CANCELLED`, deleted, finished by another execution, or claimed by
//! another executor is told to stop (see [`ExecutionControl`](super::control)). Cancels made
//! in this process stop the execution at once, without waiting for this check.

use std::sync::Arc;

use crate::error::{Error, ErrorKind};
use crate::runtime::RuntimeInner;

/// Checks the running executions every `Config::cancel_poll_interval`, until shutdown.
pub(crate) async fn serve(rt: Arc<RuntimeInner>) {
    let interval = rt.config.cancel_poll_interval;
    loop {
        tokio::select! {
            _ = rt.shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let running: Vec<_> = rt
            .running
            .snapshot()
            .into_iter()
            .filter(|(_, control)| control.stopped().is_none())
            .collect();
        if running.is_empty() {
            continue;
        }
        let ids: Vec<&str> = running.iter().map(|(id, _)| id.as_str()).collect();
        let states = match rt.sysdb.execution_states(&ids).await {
            Ok(states) => states,
            Err(e) => {
                tracing::debug!(error = %e, "could not check the running workflows; trying again later");
                continue;
            }
        };
        for (id, control) in &running {
            let reason = match states.get(id) {
                None => Some(Error::new(
                    ErrorKind::NonExistentWorkflow,
                    format!("workflow `{id}` was deleted while it ran"),
                )),
                Some(state) => match state.status.as_str() {
                    "CANCELLED" => Some(Error::new(
                        ErrorKind::WorkflowCancelled,
                        format!("workflow `{id}` was cancelled; it stops before its next operation"),
                    )),
                    "PENDING" if state.owner_xid.as_deref() == Some(&*control.owner()) => None,
                    // Claimed again by this executor (a recovery or a resume); the claim is
                    // being handed to the live execution.
                    "PENDING" | "ENQUEUED" if state.executor_id.as_deref() == Some(&rt.executor_id) => None,
                    "ENQUEUED" | "DELAYED" => None,
                    other => Some(Error::new(
                        ErrorKind::ConflictingWorkflowId,
                        format!(
                            "workflow `{id}` is now {other} under another execution; this one stops and defers to it"
                        ),
                    )),
                },
            };
            if let Some(reason) = reason {
                control.stop(reason.with_workflow_id(id.as_str()));
            }
        }
    }
}
