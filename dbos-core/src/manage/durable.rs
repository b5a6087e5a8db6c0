//! Management operations called inside a workflow body are durable operations of that
//! workflow, recorded under DBOS Transact 3.4's names, so a recovered workflow gets the same
//! answers and never acts twice:
//!
//! - a read (a listing, a status) is a step: its answer is recorded after it is read, and a
//!   replay returns the recorded answer without reading again;
//! - a write (cancel, resume, fork, rewind, delete) made through the workflow's own runtime
//!   commits its change and its checkpoint in one transaction (see
//!   [`crate::sysdb::in_workflow`]): there is no moment at which the change is made and not
//!   recorded, so a crash anywhere never makes it twice. A write through a client (which may
//!   be connected to another database) is recorded as a step after it is made.
//!
//! An error that says the write changed nothing (an unknown id, a step beyond the history, a
//! taken fork id, an argument refused) is recorded too: a replay returns the same error even
//! if the workflow named exists by then. Outside a workflow (and inside a step), each is a
//! plain call.

use std::future::Future;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::runtime::RuntimeInner;
use crate::sysdb::in_workflow::{InWorkflow, Outcome, Recorder};
use crate::sysdb::workflows::{now_ms, Checkpoint};
use crate::workflow::context::{current, Operation, Slot, WorkflowContext};
use crate::workflow::registry::StepOptions;
use crate::workflow::step;
use crate::workflow::types::Portable;

/// A workflow's status read inside a workflow (a handle's `status()`, `get_workflow`).
pub(crate) const GET_STATUS: &str = "DBOS.getStatus";
/// `list_workflows` inside a workflow.
pub(crate) const LIST_WORKFLOWS: &str = "DBOS.listWorkflows";
/// `list_queued_workflows` inside a workflow.
pub(crate) const LIST_QUEUED: &str = "DBOS.listQueuedWorkflows";
/// `list_workflow_steps` inside a workflow.
pub(crate) const LIST_STEPS: &str = "DBOS.listWorkflowSteps";
/// `workflow_aggregates` inside a workflow.
pub(crate) const WORKFLOW_AGGREGATES: &str = "DBOS.getWorkflowAggregates";
/// `step_aggregates` inside a workflow.
pub(crate) const STEP_AGGREGATES: &str = "DBOS.getStepAggregates";
/// A cancel inside a workflow.
pub(crate) const CANCEL: &str = "DBOS.cancelWorkflow";
/// A resume inside a workflow.
pub(crate) const RESUME: &str = "DBOS.resumeWorkflow";
/// A fork inside a workflow.
pub(crate) const FORK: &str = "DBOS.forkWorkflow";
/// A rewind inside a workflow.
pub(crate) const REWIND: &str = "DBOS.rewindWorkflow";
/// A delete inside a workflow.
pub(crate) const DELETE: &str = "DBOS.deleteWorkflow";

/// A read: recorded as the step `name` inside a workflow, a plain read elsewhere.
pub(crate) async fn read<T, F, Fut>(name: &str, read: F) -> Result<T>
where
    T: Portable,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    step::run(name, &StepOptions::DEFAULT, None, read).await
}

/// What a write answered, and whether it was made by this call (`now`), so the caller's
/// in-process follow-ups (stopping executions here, waking a queue) happen only then: a
/// replayed cancel must not stop a workflow someone resumed since.
#[derive(Debug)]
pub(crate) struct Wrote<A> {
    pub(crate) answer: A,
    pub(crate) now: bool,
}

/// A write: `write` makes the change (recording it with the recorder it is given, when it
/// is given one) and `answer` turns what it did into the caller's answer (or the error that
/// says it changed nothing). `runtime` is the runtime the call is made through (`None`: a
/// client).
pub(crate) async fn write<R, A, W>(
    runtime: Option<&Arc<RuntimeInner>>,
    name: &'static str,
    answer: impl Fn(&R) -> Result<A> + Send + Sync,
    write: W,
) -> Result<Wrote<A>>
where
    A: Portable,
    W: AsyncFnOnce(Option<&Recorder<'_, R>>) -> Result<Outcome<R>>,
{
    let Some(ctx) = current() else {
        let answer = plain(write, &answer).await?;
        return Ok(Wrote { answer, now: true });
    };
    if !runtime.is_some_and(|rt| Arc::ptr_eq(rt, &ctx.runtime)) {
        // Through a client: recorded in the workflow's database after the change is made.
        let mut write = Some(write);
        let answer = &answer;
        let answer = read(name, || {
            let write = write.take();
            async move {
                match write {
                    Some(write) => plain(write, answer).await,
                    None => Err(Error::new(
                        ErrorKind::Database,
                        format!("`{name}` was attempted twice inside one step"),
                    )),
                }
            }
        })
        .await?;
        return Ok(Wrote { answer, now: true });
    }
    let function_id = match ctx.begin(name)? {
        Slot::Recorded { checkpoint, .. } => return replayed(&ctx, &checkpoint, name),
        Slot::Fresh { function_id } => function_id,
    };
    let owner = ctx.owner();
    let started_ms = now_ms();
    let output = |r: &R| answer(r).and_then(|a| crate::codec::to_text(&a));
    let rec = Recorder {
        at: InWorkflow {
            workflow_id: &ctx.workflow_id,
            owner_xid: &owner,
            function_id,
            name,
            started_ms,
            app_name: &ctx.runtime.app_name,
        },
        output: &output,
    };
    let refused = match write(Some(&rec)).await {
        Ok(Outcome::Done(r)) => match answer(&r) {
            Ok(answer) => return Ok(Wrote { answer, now: true }),
            Err(e) => e,
        },
        Ok(Outcome::Recorded(checkpoint)) => return replayed(&ctx, &checkpoint, name),
        Ok(Outcome::NotOwner) => {
            let e = ctx.runtime.sysdb.ownership_error(&ctx.workflow_id).await;
            return Err(ctx.fail(e.with_step(name, function_id)));
        }
        Err(e) => e,
    };
    if !changed_nothing(&refused) {
        // The database failed: the execution stops, nothing was recorded, and recovery
        // makes the write (once) when it replays this far.
        return Err(ctx.fail(
            refused
                .with_workflow_id(&ctx.workflow_id)
                .with_step(name, function_id),
        ));
    }
    // The write changed nothing: its error is the answer, recorded so a replay returns it.
    let text = crate::codec::to_text(&refused).map_err(|e| ctx.fail(e))?;
    let theirs = ctx
        .record(Operation {
            error: Some(&text),
            ..Operation::new(function_id, name, started_ms)
        })
        .await?;
    match theirs {
        None => Err(refused),
        Some(checkpoint) => replayed(&ctx, &checkpoint, name),
    }
}

/// The write outside any recording.
async fn plain<R, A, W>(write: W, answer: &(impl Fn(&R) -> Result<A> + Send + Sync)) -> Result<A>
where
    W: AsyncFnOnce(Option<&Recorder<'_, R>>) -> Result<Outcome<R>>,
{
    match write(None).await? {
        Outcome::Done(r) => answer(&r),
        // Only a recorded write finds a checkpoint or checks ownership.
        Outcome::Recorded(_) | Outcome::NotOwner => Err(Error::new(
            ErrorKind::Database,
            "a write made outside a workflow reported a workflow's checkpoint",
        )),
    }
}

fn replayed<A: Portable>(
    ctx: &WorkflowContext,
    checkpoint: &Checkpoint,
    name: &str,
) -> Result<Wrote<A>> {
    step::replay_checkpoint::<A, Error>(ctx, checkpoint, name)
        .map(|answer| Wrote { answer, now: false })
}

/// Whether an error of a write says the write changed nothing (an answer, recorded), as
/// opposed to a failure of the database (the execution stops; recovery makes the write).
fn changed_nothing(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::NonExistentWorkflow
            | ErrorKind::NoSuchStep
            | ErrorKind::ConflictingWorkflow
            | ErrorKind::InvalidArgument
            | ErrorKind::ConflictingSchedule
    )
}
