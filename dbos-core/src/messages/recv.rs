//! Receiving messages, in workflows.

use std::time::Duration;

use tracing::Instrument;

use super::durable::{fenced, recorded_deadline, skip_deadline, wait_for, Effect};
use super::waiters::{Channel, WakeKey};
use super::{decode, decode_recorded, RECV};
use crate::error::{Error, Result};
use crate::observe::{self, Op};
use crate::sysdb::messages::{Fence, NULL_TOPIC};
use crate::sysdb::workflows::now_ms;
use crate::workflow::context::{current, Operation, Slot};
use crate::workflow::types::Portable;

/// Receives the next message sent to this workflow on `topic` (`None` for messages sent
/// without one), waiting up to `timeout`; `None` when none came in time.
///
/// Messages are received in the order they were sent (per topic), each exactly once: the
/// message is marked consumed (`consumed`, `consumed_by_function_id`) and the `DBOS.recv`
/// checkpoint recorded in one transaction, so a workflow recovered after a receive replays
/// the same message and never takes another. The deadline is recorded first (a `DBOS.sleep`
/// at the next step id, as DBOS does): a receive that timed out replays as timed out at
/// once, and one recovered mid-wait waits only for what remains. A wait longer than
/// [`Config::park_after`](crate::Config::park_after) parks the workflow (it holds no task)
/// until a message arrives or the time is up.
///
/// ```no_run
/// use std::time::Duration;
///
/// #[dbos_core::workflow]
/// async fn checkout(order: String) -> Result<String, dbos_core::Error> {
///     match dbos_core::recv::<u64>("payment", Duration::from_secs(300)).await? {
///         Some(cents) => Ok(format!("{order}: paid {cents}")),
///         None => Ok(format!("{order}: no payment in time")),
///     }
/// }
/// ```
///
/// # Errors
/// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) outside a workflow;
/// [`ErrorKind::Serialization`](crate::ErrorKind::Serialization) when the next message does
/// not decode as `T` (the error names the workflow, the topic and the stored text; the
/// message stays unconsumed); durability failures (cancellation, lost ownership, shutdown).
///
/// A message whose value is JSON `null` is indistinguishable from a timeout on replay, as
/// in DBOS: send `Some(..)`-free values or wrap them.
pub async fn recv<'a, T: Portable>(
    topic: impl Into<Option<&'a str>>,
    timeout: Duration,
) -> Result<Option<T>> {
    recv_in(topic.into(), timeout)
        .instrument(observe::operation(Op::Recv, RECV))
        .await
}

async fn recv_in<T: Portable>(topic: Option<&str>, timeout: Duration) -> Result<Option<T>> {
    let Some(ctx) = current() else {
        return Err(Error::invalid(format!(
            "`recv` (topic {}) was called outside a workflow: messages are sent to a workflow id, so only a \
             workflow can receive them. Call it in a #[workflow] body (not in a step)",
            show(topic)
        )));
    };
    let wf = ctx.workflow_id.clone();
    let what = format!("the message on topic {} for workflow `{wf}`", show(topic));
    let function_id = match ctx.begin(RECV)? {
        Slot::Recorded { checkpoint, .. } => {
            skip_deadline(&ctx)?;
            return decode_recorded(
                checkpoint.output.as_deref(),
                checkpoint.serialization.as_deref(),
                &format!("the recorded receive of {what}"),
                &wf,
            );
        }
        Slot::Fresh { function_id } => function_id,
    };
    let deadline = Box::pin(recorded_deadline(&ctx, timeout)).await?;
    let started = now_ms();
    let stored_topic = topic.unwrap_or(NULL_TOPIC);
    let rt = ctx.runtime.clone();
    let key = WakeKey::new(Channel::Messages, &wf, stored_topic);
    loop {
        let next = wait_for(&rt, Some(&ctx), key.clone(), deadline, || {
            rt.sysdb.peek_message(&wf, stored_topic)
        })
        .await?;
        let Some(message) = next else {
            // Timed out: recorded, so a replay does not wait again.
            let theirs = ctx
                .record(Operation {
                    output: Some("null"),
                    ..Operation::new(function_id, RECV, started)
                })
                .await?;
            return match theirs {
                None => Ok(None),
                Some(cp) => decode_recorded(
                    cp.output.as_deref(),
                    cp.serialization.as_deref(),
                    &what,
                    &wf,
                ),
            };
        };
        // Decoded before it is consumed: a message that does not decode stays where it is.
        let value: T = decode(&message.text, message.serialization.as_deref(), &what, &wf)?;
        let completed = now_ms();
        let effect = Box::pin(fenced(
            &ctx,
            function_id,
            RECV,
            started,
            completed,
            |owner| {
                let (rt, wf, uuid) = (&rt, wf.as_str(), message.message_uuid.as_str());
                async move {
                    let fence = Fence {
                        workflow_id: wf,
                        owner_xid: &owner,
                        function_id,
                        name: Some(RECV),
                        started_ms: started,
                        completed_ms: completed,
                        app_name: &rt.app_name,
                    };
                    rt.sysdb.consume_message(uuid, fence).await
                }
            },
        ))
        .await?;
        match effect {
            Effect::Ours => return Ok(Some(value)),
            Effect::Theirs(cp) => {
                return decode_recorded(
                    cp.output.as_deref(),
                    cp.serialization.as_deref(),
                    &what,
                    &wf,
                )
            }
            // Taken meanwhile (by nobody this workflow knows of): wait for the next one.
            Effect::Nothing => continue,
        }
    }
}

fn show(topic: Option<&str>) -> String {
    match topic {
        Some(t) => format!("`{t}`"),
        None => "(none)".to_owned(),
    }
}
