//! Waiting for the first of several workflows to finish.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::future::{pending, select_all, FutureExt};

use super::{decode, WAIT_FIRST};
use crate::error::{Error, ErrorKind, Result};
use crate::sysdb::workflows::now_ms;
use crate::workflow::call::WorkflowHandle;
use crate::workflow::context::{current, Operation, Slot};
use crate::workflow::types::{Portable, WorkflowError};

const FIRST_POLL: Duration = Duration::from_millis(10);
const MAX_POLL: Duration = Duration::from_millis(500);

/// Waits for the first of `handles` to finish (succeed, fail, be cancelled or
/// dead-lettered), and returns its handle; await it for its result.
///
/// Inside a workflow it is a durable operation (`DBOS.waitFirst`, recording the id of the
/// workflow that finished first), so a replay returns the same handle whichever finished
/// first since. A cancel of the waiting workflow wakes it.
///
/// ```no_run
/// # async fn demo(a: dbos_core::WorkflowHandle<u32, dbos_core::Error>,
/// #               b: dbos_core::WorkflowHandle<u32, dbos_core::Error>) -> dbos_core::Result<()> {
/// let first = dbos_core::wait_first(&[a, b]).await?;
/// println!("{} finished first: {:?}", first.id(), first.result().await);
/// # Ok(())
/// # }
/// # let _ = demo;
/// ```
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] for no handles or the same workflow twice;
/// [`ErrorKind::NonExistentWorkflow`] when one of them does not exist; durability failures
/// inside a workflow.
pub async fn wait_first<T: Portable, E: WorkflowError>(
    handles: &[WorkflowHandle<T, E>],
) -> Result<WorkflowHandle<T, E>> {
    if handles.is_empty() {
        return Err(Error::invalid(
            "`wait_first` needs at least one workflow handle to wait for",
        ));
    }
    let mut seen = HashSet::new();
    for h in handles {
        if !seen.insert(h.id()) {
            return Err(Error::invalid(format!(
                "`wait_first` was given workflow `{}` twice: give each workflow once",
                h.id()
            )));
        }
    }
    let by_id: HashMap<&str, &WorkflowHandle<T, E>> = handles.iter().map(|h| (h.id(), h)).collect();
    let Some(ctx) = current() else {
        let id = first_finished(handles, None).await?;
        return Ok(by_id[id.as_str()].clone());
    };
    let function_id = match ctx.begin(WAIT_FIRST)? {
        Slot::Recorded { checkpoint, .. } => {
            let id: String = decode(
                checkpoint.output.as_deref().unwrap_or("null"),
                checkpoint.serialization.as_deref(),
                "the recorded `wait_first`",
                &ctx.workflow_id,
            )?;
            return recorded_handle(&by_id, &id, &ctx.workflow_id, function_id_of(&ctx));
        }
        Slot::Fresh { function_id } => function_id,
    };
    let started = now_ms();
    let id = first_finished(handles, Some(&ctx)).await?;
    let text = crate::codec::to_text(&id)?;
    let theirs = ctx
        .record(Operation {
            output: Some(&text),
            ..Operation::new(function_id, WAIT_FIRST, started)
        })
        .await?;
    match theirs {
        None => Ok(by_id[id.as_str()].clone()),
        Some(cp) => {
            let id: String = decode(
                cp.output.as_deref().unwrap_or("null"),
                cp.serialization.as_deref(),
                "the recorded `wait_first`",
                &ctx.workflow_id,
            )?;
            recorded_handle(&by_id, &id, &ctx.workflow_id, function_id)
        }
    }
}

fn function_id_of(ctx: &crate::workflow::context::WorkflowContext) -> i32 {
    ctx.current_function_id()
}

fn recorded_handle<T: Portable, E: WorkflowError>(
    by_id: &HashMap<&str, &WorkflowHandle<T, E>>,
    id: &str,
    workflow_id: &str,
    function_id: i32,
) -> Result<WorkflowHandle<T, E>> {
    by_id.get(id).map(|h| (*h).clone()).ok_or_else(|| {
        Error::new(
            ErrorKind::UnexpectedStep,
            format!(
                "the history of workflow `{workflow_id}` records that `{id}` finished first at step {function_id}, but \
                 this `wait_first` does not wait for it: the workflow's code changed while it was in flight"
            ),
        )
        .with_workflow_id(workflow_id)
        .with_step(WAIT_FIRST, function_id)
    })
}

/// The id of the first of `handles` found finished: their statuses are read together, at
/// growing intervals, and at once when one of them finishes in this process.
async fn first_finished<T: Portable, E: WorkflowError>(
    handles: &[WorkflowHandle<T, E>],
    ctx: Option<&crate::workflow::context::WorkflowContext>,
) -> Result<String> {
    // A client's handles have no runtime: they only read the database.
    let rt = handles[0].runtime().cloned();
    let sysdb = handles[0].sysdb().clone();
    let ids: Vec<&str> = handles.iter().map(|h| h.id()).collect();
    let mut delay = FIRST_POLL;
    loop {
        // Executions running here are followed directly.
        let mut local: Vec<_> = match &rt {
            Some(rt) => ids
                .iter()
                .filter_map(|id| rt.local_completion(id))
                .collect(),
            None => Vec::new(),
        };
        let statuses: HashMap<String, String> = match sysdb.statuses(&ids).await {
            Ok(s) => s.into_iter().collect(),
            Err(e) => {
                return Err(match ctx {
                    Some(ctx) if super::durable::is_durability_failure(&e) => ctx.fail(e),
                    _ => e,
                })
            }
        };
        for id in &ids {
            match statuses.get(*id).map(String::as_str) {
                None => {
                    return Err(Error::new(
                        ErrorKind::NonExistentWorkflow,
                        format!(
                            "`wait_first` cannot wait for workflow `{id}`: no workflow has that id"
                        ),
                    )
                    .with_workflow_id(*id))
                }
                Some("PENDING" | "ENQUEUED" | "DELAYED") => {}
                Some(_) => return Ok((*id).to_owned()),
            }
        }
        let finished_here = async {
            if local.is_empty() {
                pending::<()>().await;
            }
            let waits = local
                .iter_mut()
                .map(|rx| async move { drop(rx.wait_for(|c| c.is_some()).await) }.boxed());
            select_all(waits).await;
        };
        let stopped = async {
            match ctx {
                Some(ctx) => ctx.stopped().await,
                None => pending().await,
            }
        };
        let shutdown = async {
            match &rt {
                Some(rt) => rt.shutdown.cancelled().await,
                None => pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = finished_here => {}
            reason = stopped => return Err(reason),
            _ = shutdown => {
                let e = Error::new(ErrorKind::NotLaunched, "the runtime is shutting down; `wait_first` was abandoned");
                return Err(match ctx { Some(ctx) => ctx.fail(e), None => e });
            }
        }
        delay = (delay * 2).min(MAX_POLL);
    }
}
