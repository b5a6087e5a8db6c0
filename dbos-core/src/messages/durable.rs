//! What every messaging operation of a workflow shares: the write that commits its effect
//! with its checkpoint, the recorded deadline of a timed wait, and the wait itself (woken by
//! its key, parked when long).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::Instrument;

use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::observe::{self, Op};
use crate::runtime::RuntimeInner;
use crate::sysdb::messages::{Fence, Written};
use crate::sysdb::workflows::{now_ms, Checkpoint};
use crate::workflow::context::{current, current_step, Slot, WorkflowContext};
use crate::workflow::ops::{recorded_wake_up, to_ms, MAX_WAIT, SLEEP};

use super::waiters::{announce_write, Channel, WaitGuard, WakeKey};

/// A waiter re-checks its table at least this often, whatever it heard (a safety net: the
/// listener and the fallback poll are what wake it).
const SAFETY_RECHECK: Duration = Duration::from_secs(30);

/// What a fenced write from a workflow came to.
#[derive(Debug)]
pub(crate) enum Effect {
    /// This execution's effect and checkpoint committed (possibly on an earlier attempt
    /// whose acknowledgement was lost).
    Ours,
    /// Another execution of the workflow recorded this step first: its checkpoint counts.
    Theirs(Checkpoint),
    /// The fence held but nothing is recorded at the step: the effect did not apply (a
    /// message was taken meanwhile). The caller decides what to try next.
    Nothing,
}

/// Runs `write` (given the ownership token to fence with) until its effect and checkpoint
/// are recorded, by this execution or by another. A lost fence or a database failure
/// becomes the execution's fatal error; other errors (a missing destination) are returned
/// to the caller with nothing written (a send records that error as its answer).
pub(crate) async fn fenced<F, Fut>(
    ctx: &WorkflowContext,
    function_id: i32,
    name: &str,
    started_ms: i64,
    completed_ms: i64,
    mut write: F,
) -> Result<Effect>
where
    F: FnMut(Arc<str>) -> Fut,
    Fut: Future<Output = Result<Written>>,
{
    let rt = &ctx.runtime;
    let wf = ctx.workflow_id.as_str();
    loop {
        ctx.check_stop()?;
        let owner = ctx.owner();
        match write(owner.clone()).await {
            Ok(Written::Done) => return Ok(Effect::Ours),
            Ok(Written::Missed) => {}
            Err(e) if is_durability_failure(&e) => {
                return Err(ctx.fail(e.with_workflow_id(wf).with_step(name, function_id)))
            }
            Err(e) => return Err(e),
        }
        let at = match Box::pin(rt.sysdb.recorded_at(wf, &owner, function_id)).await {
            Ok(at) => at,
            Err(e) => return Err(ctx.fail(e.with_workflow_id(wf).with_step(name, function_id))),
        };
        match at.checkpoint {
            Some((cp, started, completed)) if at.owned => {
                if cp.function_name != name {
                    return Err(ctx.fail(
                        Error::new(
                            ErrorKind::ConflictingWorkflowId,
                            format!(
                                "another execution of workflow `{wf}` recorded `{}` at step {function_id} while this one ran \
                                 `{name}`: the two executions run different code",
                                cp.function_name
                            ),
                        )
                        .with_workflow_id(wf)
                        .with_step(name, function_id),
                    ));
                }
                if started == Some(started_ms) && completed == Some(completed_ms) {
                    // This very write, committed on an attempt whose acknowledgement was lost.
                    return Ok(Effect::Ours);
                }
                tracing::warn!(
                    workflow_id = %wf, step = name, function_id,
                    "another execution of this workflow recorded this step first; continuing with its result"
                );
                return Ok(Effect::Theirs(cp));
            }
            None if at.owned => return Ok(Effect::Nothing),
            // A new claim of this workflow was handed to this execution meanwhile.
            _ if *ctx.owner() != *owner => continue,
            _ => {
                let e = Box::pin(rt.sysdb.ownership_error(wf)).await;
                return Err(ctx.fail(e.with_step(name, function_id)));
            }
        }
    }
}

/// Whether an error of the system database leaves the execution unable to go on.
pub(crate) fn is_durability_failure(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Connection | ErrorKind::Database | ErrorKind::NotLaunched
    )
}

/// The deadline of a timed wait in a workflow: recorded as a `DBOS.sleep` at the step id
/// after the operation's, as DBOS does, so a replay waits only for what remains (and one
/// that timed out does not wait again). As in DBOS, the row completes when it is recorded
/// (the wait may end long before the deadline); its output is the deadline.
pub(crate) async fn recorded_deadline(
    ctx: &WorkflowContext,
    timeout: Duration,
) -> Result<SystemTime> {
    // Its own `sleep` operation span: it takes its own step id.
    recorded_wake_up(ctx, timeout, false)
        .instrument(observe::operation(Op::Sleep, SLEEP))
        .await
}

/// Takes the step id of a replayed timed wait's deadline (DBOS reserves it whatever
/// happened).
pub(crate) fn skip_deadline(ctx: &WorkflowContext) -> Result<()> {
    observe::operation(Op::Sleep, SLEEP).in_scope(|| ctx.begin(SLEEP).map(drop))
}

/// A deadline `timeout` from now on `clock`, for waits outside workflows.
pub(crate) fn deadline_in(clock: &Clock, timeout: Duration) -> SystemTime {
    clock.now() + timeout.min(MAX_WAIT)
}

/// Waits until `look` finds something (`Some`) or `deadline` (durable time, on the
/// runtime's clock) passes (`None`).
///
/// `look` runs once at first, then each time `key` is signalled (and at least every
/// [`SAFETY_RECHECK`]). The registration comes before the first look, so nothing announced
/// in between is missed. In a workflow, a wait that has gone on for `Config::park_after`
/// with at least that long still to go parks the workflow: its execution ends, and it is
/// re-executed when `key` is signalled or at the deadline; a cancel or a shutdown ends the
/// wait with the execution's error.
pub(crate) async fn wait_for<T, F, Fut>(
    rt: &Arc<RuntimeInner>,
    ctx: Option<&WorkflowContext>,
    key: WakeKey,
    deadline: SystemTime,
    mut look: F,
) -> Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let mut guard = WaitGuard::register(rt, key);
    let clock = &rt.config.clock;
    let started = Instant::now();
    loop {
        let found = match Box::pin(look()).await {
            Ok(found) => found,
            Err(e) => {
                return Err(match ctx {
                    Some(ctx) if is_durability_failure(&e) => {
                        ctx.fail(e.with_workflow_id(&ctx.workflow_id))
                    }
                    _ => e,
                })
            }
        };
        if found.is_some() {
            return Ok(found);
        }
        let remaining = match deadline.duration_since(clock.now()) {
            Ok(r) if !r.is_zero() => r,
            _ => return Ok(None),
        };
        // The deadline is waited for on the clock (a test clock's advance ends the wait);
        // this real-time bound is the safety re-check, and the time to park.
        let mut wait = if clock.is_manual() {
            SAFETY_RECHECK
        } else {
            remaining.min(SAFETY_RECHECK)
        };
        let Some(ctx) = ctx else {
            tokio::select! {
                _ = guard.wait(wait) => {}
                _ = clock.sleep_until(deadline), if clock.is_manual() => {}
                _ = rt.shutdown.cancelled() => {
                    return Err(Error::new(ErrorKind::NotLaunched, "the runtime is shutting down; the wait was abandoned"));
                }
            }
            continue;
        };
        let park_after = rt.config.park_after;
        let wake_ms = to_ms(deadline);
        let deadline_first = ctx.deadline_ms.is_some_and(|d| d < wake_ms);
        if remaining >= park_after && !deadline_first {
            let waited = started.elapsed();
            if waited >= park_after {
                // A long wait: the executor ends this execution here; the workflow is
                // re-executed when what it waits for arrives, or at the deadline.
                ctx.request_park_on(wake_ms, guard);
                return Err(ctx.stopped().await);
            }
            wait = wait.min(park_after - waited);
        }
        tokio::select! {
            _ = guard.wait(wait) => {}
            _ = clock.sleep_until(deadline), if clock.is_manual() => {}
            reason = ctx.stopped() => return Err(reason),
            _ = rt.shutdown.cancelled() => {
                return Err(ctx.fail(Error::new(
                    ErrorKind::NotLaunched,
                    "the runtime is shutting down during a wait; the workflow resumes the wait after recovery",
                ).with_workflow_id(&ctx.workflow_id)));
            }
        }
    }
}

/// [`wait_for`] without a runtime (a `Client` has no listener): looks at growing intervals,
/// up to every [`POLL`](super::waiters::FALLBACK_POLL).
pub(crate) async fn poll_for<T, F, Fut>(deadline: SystemTime, mut look: F) -> Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let mut delay = Duration::from_millis(20);
    loop {
        if let Some(found) = Box::pin(look()).await? {
            return Ok(Some(found));
        }
        let remaining = match deadline.duration_since(SystemTime::now()) {
            Ok(r) if !r.is_zero() => r,
            _ => return Ok(None),
        };
        tokio::time::sleep(delay.min(remaining)).await;
        delay = (delay * 2).min(super::waiters::FALLBACK_POLL);
    }
}

/// Writes one value under `key` for the calling workflow: an event (`Channel::Events`) or a
/// stream entry (`Channel::Streams`). In a workflow body it is the durable operation `name`
/// (value and checkpoint in one fenced transaction, replayed, never repeated); in a step it
/// is fenced by the step's workflow's ownership and not recorded. Readers are woken.
/// `Ok(false)` outside both: the caller says what was wrong.
pub(crate) async fn write_keyed(
    channel: Channel,
    name: &'static str,
    key: &str,
    text: &str,
) -> Result<bool> {
    let op = match channel {
        Channel::Streams => Op::Stream,
        _ => Op::SetEvent,
    };
    write_keyed_in(channel, name, key, text)
        .instrument(observe::operation(op, name))
        .await
}

async fn write_keyed_in(
    channel: Channel,
    name: &'static str,
    key: &str,
    text: &str,
) -> Result<bool> {
    if let Some(ctx) = current() {
        let function_id = match ctx.begin(name)? {
            Slot::Recorded { .. } => return Ok(true),
            Slot::Fresh { function_id } => function_id,
        };
        let started = now_ms();
        let rt = ctx.runtime.clone();
        loop {
            let effect = Box::pin(fenced(&ctx, function_id, name, started, started, |owner| {
                let (rt, wf) = (&rt, ctx.workflow_id.as_str());
                async move {
                    let fence = Fence {
                        workflow_id: wf,
                        owner_xid: &owner,
                        function_id,
                        name: Some(name),
                        started_ms: started,
                        completed_ms: started,
                        app_name: &rt.app_name,
                    };
                    store(rt, channel, key, text, fence).await
                }
            }))
            .await?;
            match effect {
                Effect::Ours => {
                    announce_write(&rt, &WakeKey::new(channel, &ctx.workflow_id, key));
                    return Ok(true);
                }
                Effect::Theirs(_) => return Ok(true),
                Effect::Nothing => continue,
            }
        }
    }
    let Some(step) = current_step() else {
        return Ok(false);
    };
    let owner = step.control.owner();
    let fence = Fence {
        workflow_id: &step.workflow_id,
        owner_xid: &owner,
        function_id: step.step_id,
        name: None,
        started_ms: 0,
        completed_ms: 0,
        app_name: &step.runtime.app_name,
    };
    // A step's stream write has no checkpoint to recognise a retried statement by: it is
    // placed at an offset chosen first.
    let written = match channel {
        Channel::Streams => {
            step.runtime
                .sysdb
                .append_stream_from_step(key, text, fence)
                .await?
        }
        _ => store(&step.runtime, channel, key, text, fence).await?,
    };
    match written {
        Written::Done => {
            announce_write(
                &step.runtime,
                &WakeKey::new(channel, &step.workflow_id, key),
            );
            Ok(true)
        }
        Written::Missed => Err(step.runtime.sysdb.ownership_error(&step.workflow_id).await),
    }
}

/// The statement of a keyed write: an event or a stream entry.
async fn store(
    rt: &RuntimeInner,
    channel: Channel,
    key: &str,
    text: &str,
    fence: Fence<'_>,
) -> Result<Written> {
    match channel {
        Channel::Streams => rt.sysdb.write_stream(key, text, fence).await,
        _ => rt.sysdb.set_event(key, text, fence).await,
    }
}
