//! Where a new workflow goes, and inserting its row: shared by starting a workflow, enqueuing
//! one, and enqueuing by name.
//!
//! Inside a workflow a new workflow is a child: it takes the parent's next step id, its id
//! defaults to `<parent id>-<step id>`, and a replay finds the recorded child instead of
//! creating another. Outside, it belongs to the given or the current runtime.

use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::runtime::{Dbos, RuntimeInner};
use crate::sysdb::workflows::{now_ms, NewWorkflow, ParentLink, StartedRow};
use crate::workflow::context::{current, Operation, Slot, WorkflowContext};

/// What starting a workflow with an id that is already in use does (DBOS 3.x's
/// `WorkflowIDReusePolicy`, the `workflow_id_reuse_policy` of `SetWorkflowID`).
///
/// ```no_run
/// # #[dbos_core::workflow] async fn checkout(_order: u64) -> Result<(), dbos_core::Error> { Ok(()) }
/// # async fn demo() -> Result<(), dbos_core::Error> {
/// use dbos_core::{ErrorKind, IdReusePolicy};
///
/// match checkout(42).id("order-42").id_reuse_policy(IdReusePolicy::Reject).start().await {
///     Ok(handle) => println!("started {}", handle.id()),
///     Err(e) if e.kind() == ErrorKind::WorkflowIdInUse => println!("order-42 ran already"),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// # let _ = demo;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IdReusePolicy {
    /// The id is an idempotency key: a start finding it in use returns a handle to that
    /// workflow (its outcome, never a second run). DBOS's `"return-existing"`, the default.
    #[default]
    ReturnExisting,
    /// A start finding the id in use is refused with [`ErrorKind::WorkflowIdInUse`] (DBOS's
    /// `DBOSWorkflowIDInUseError`), naming the workflow and its status; it neither attaches
    /// to that workflow nor writes anything. Inside a workflow the refusal is recorded at the
    /// child's step id, so a replay is refused the same way. DBOS's `"reject"`.
    Reject,
}

/// The placement of a workflow about to be started or enqueued.
pub(crate) enum Placement {
    /// A replay: the parent already recorded this child; its id.
    Recorded { rt: Arc<RuntimeInner>, id: String },
    /// A new workflow, a child of `parent` (with the parent's step id) or top-level.
    New {
        rt: Arc<RuntimeInner>,
        id: String,
        parent: Option<Parent>,
        /// The id was generated here (a random UUID), so no row can have it yet.
        fresh_id: bool,
    },
}

/// The workflow a child is started from, and the step id its start takes.
pub(crate) struct Parent {
    pub(crate) ctx: Arc<WorkflowContext>,
    pub(crate) function_id: i32,
    /// The parent's ownership token when the child was placed.
    pub(crate) owner: Arc<str>,
}

impl Placement {
    /// Places a workflow named `name`, with an explicit id if given, on `runtime` (or the
    /// current one) when called outside a workflow.
    pub(crate) fn resolve(
        name: &'static str,
        id: Option<String>,
        runtime: Option<&Dbos>,
    ) -> Result<Placement> {
        let Some(ctx) = current() else {
            let rt = match runtime {
                Some(d) => d.inner().clone(),
                None => match crate::workflow::context::current_step() {
                    // Started inside a step: the step's workflow's runtime.
                    Some(step) => step.runtime,
                    None => Dbos::current()?.inner().clone(),
                },
            };
            let fresh_id = id.is_none();
            let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            return Ok(Placement::New {
                rt,
                id,
                parent: None,
                fresh_id,
            });
        };
        let rt = ctx.runtime.clone();
        match ctx.begin(name)? {
            Slot::Recorded { checkpoint, function_id } => match (checkpoint.child_workflow_id, checkpoint.error) {
                (Some(recorded), _) => {
                    if let Some(replay) = ctx.replay_mode() {
                        let expected = id.unwrap_or_else(|| format!("{}-{function_id}", ctx.workflow_id));
                        replay
                            .same_child(&ctx.workflow_id, function_id, name, &expected, &recorded)
                            .map_err(|e| ctx.fail(e))?;
                    }
                    Ok(Placement::Recorded { rt, id: recorded })
                }
                // A start that was refused (a deduplicated enqueue) replays as refused.
                (None, Some(error)) => Err(replayed_refusal(&error, checkpoint.serialization.as_deref())),
                (None, None) => Err(ctx.fail(
                    Error::new(
                        ErrorKind::UnexpectedStep,
                        format!(
                            "step {function_id} of workflow `{}` is not a start of workflow `{name}`",
                            ctx.workflow_id
                        ),
                    )
                    .with_step(name, function_id),
                )),
            },
            Slot::Fresh { function_id } => {
                let id = id.unwrap_or_else(|| format!("{}-{function_id}", ctx.workflow_id));
                let owner = ctx.owner();
                Ok(Placement::New {
                    rt,
                    id,
                    parent: Some(Parent { ctx, function_id, owner }),
                    fresh_id: false,
                })
            }
        }
    }
}

/// The error a refused start recorded, as the library error it was.
pub(crate) fn replayed_refusal(text: &str, serialization: Option<&str>) -> Error {
    match crate::codec::PortableError::from_text(text, serialization) {
        Ok(p) => crate::workflow::types::error_from_portable::<Error>(p),
        Err(e) => e,
    }
}

/// The parent side of a child's start statement.
pub(crate) fn parent_link(parent: &Option<Parent>) -> Option<ParentLink<'_>> {
    parent.as_ref().map(|p| ParentLink {
        workflow_id: &p.ctx.workflow_id,
        owner_xid: &p.owner,
        function_id: p.function_id,
    })
}

/// Inserts the workflow's row (one statement) and checks what it found:
/// - a parent that lost its ownership fails with the parent's ownership error, which stops
///   the parent;
/// - an existing row of another workflow is [`ErrorKind::ConflictingWorkflow`];
/// - a database failure inside a parent stops the parent (its history may be incomplete),
///   while the deterministic errors (conflict, deduplication) reach the parent's code.
pub(crate) async fn insert(
    rt: &RuntimeInner,
    w: &NewWorkflow<'_>,
    parent: Option<&WorkflowContext>,
) -> Result<StartedRow> {
    rt.check_accepting()?;
    check_id(w.id)?;
    let row = match (rt.sysdb.start_workflow(w).await, parent) {
        (Ok(Some(row)), _) => row,
        (Ok(None), Some(ctx)) => {
            return Err(ctx.fail(rt.sysdb.ownership_error(&ctx.workflow_id).await))
        }
        (Ok(None), None) => {
            return Err(Error::new(
                ErrorKind::Database,
                format!("workflow `{}` was not inserted", w.id),
            ))
        }
        (Err(e), Some(ctx)) if matches!(e.kind(), ErrorKind::Connection | ErrorKind::Database) => {
            return Err(ctx.fail(e))
        }
        (Err(e), _) => return Err(e),
    };
    if !row.created && w.reject_existing {
        let refusal = id_in_use(w, &row);
        if let (Some(ctx), Some(link)) = (parent, &w.parent) {
            record_refusal(ctx, link.function_id, w.name, None, &refusal).await?;
        }
        return Err(refusal);
    }
    if !row.created && row.name != w.name {
        return Err(conflicting(w, &row));
    }
    Ok(row)
}

/// The refusal of a start with [`IdReusePolicy::Reject`] whose id `row` already holds.
pub(crate) fn id_in_use(w: &NewWorkflow<'_>, row: &StartedRow) -> Error {
    Error::new(
        ErrorKind::WorkflowIdInUse,
        format!(
            "workflow id `{}` is already in use by workflow `{}` (status {}), and this start's id reuse policy \
             is `reject`: nothing was started or written. Give another id, or use the default policy \
             (`IdReusePolicy::ReturnExisting`) to get a handle to that workflow",
            w.id, row.name, row.status
        ),
    )
    .with_workflow_id(w.id)
}

/// The refusal of a start whose id `row` holds for another workflow.
pub(crate) fn conflicting(w: &NewWorkflow<'_>, row: &StartedRow) -> Error {
    Error::new(
        ErrorKind::ConflictingWorkflow,
        format!(
            "workflow id `{}` already belongs to workflow `{}`, not `{}`: ids are idempotency keys, \
             so one id cannot name two different workflows",
            w.id, row.name, w.name
        ),
    )
    .with_workflow_id(w.id)
}

/// A workflow id must say something: a blank one could never be retrieved or told apart.
pub(crate) fn check_id(id: &str) -> Result<()> {
    if id.trim().is_empty() {
        return Err(Error::invalid(format!(
            "workflow id `{id}` is blank: give a non-empty id (it is the workflow's idempotency key), or none for a generated one"
        )));
    }
    Ok(())
}

/// Records, at the parent's step id `function_id`, what a refused child start (a
/// deduplicated enqueue, an id in use under the `reject` policy) got: the `holder` it returns
/// instead, or the `refusal`. Returns the holder to use (the one recorded first, if another
/// execution of the parent recorded this step already).
pub(crate) async fn record_refusal(
    ctx: &WorkflowContext,
    function_id: i32,
    name: &str,
    holder: Option<&str>,
    refusal: &Error,
) -> Result<Option<String>> {
    let error = match holder {
        Some(_) => None,
        None => Some(crate::codec::to_text(refusal)?),
    };
    let recorded = ctx
        .record(Operation {
            error: error.as_deref(),
            child_workflow_id: holder,
            ..Operation::new(function_id, name, now_ms())
        })
        .await?;
    Ok(match recorded {
        None => holder.map(str::to_owned),
        Some(theirs) => theirs.child_workflow_id,
    })
}
