//! Events: a workflow publishes key-value pairs (latest value wins) that anyone can read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use super::durable::{deadline_in, recorded_deadline, skip_deadline, wait_for, write_keyed};
use super::waiters::{Channel, WakeKey};
use super::{decode, decode_recorded, encode, runtime_here, GET_ALL_EVENTS, GET_EVENT, SET_EVENT};
use crate::error::{Error, Result};
use crate::observe::{self, Op};
use crate::runtime::RuntimeInner;
use crate::sysdb::workflows::now_ms;
use crate::sysdb::SystemDatabase;
use crate::workflow::context::{current, Operation, Slot};
use crate::workflow::types::Portable;

/// Publishes `value` under `key` for the running workflow: readers of the key (in any
/// process, any language) see the latest value set. Each value set is also kept in
/// `workflow_events_history` at this operation's step id, which forks use.
///
/// Inside a workflow it is a durable operation (`DBOS.setEvent`): the value, its history
/// row and the checkpoint commit in one transaction, so a recovered workflow does not set
/// it again. Inside a step it sets the event of the step's workflow (recorded with the
/// step's id), while that workflow is still owned by its execution.
///
/// ```no_run
/// #[dbos_core::workflow]
/// async fn order(id: String) -> Result<(), dbos_core::Error> {
///     dbos_core::set_event("status", &format!("{id} reserved")).await?;
///     Ok(())
/// }
/// ```
///
/// # Errors
/// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) outside a workflow or
/// step; [`ErrorKind::Serialization`](crate::ErrorKind::Serialization) for a value that
/// cannot be encoded; durability failures.
pub async fn set_event<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<()> {
    let text = encode(value, &format!("the value of event `{key}`"))?;
    if write_keyed(Channel::Events, SET_EVENT, key, &text).await? {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "`set_event(\"{key}\", ..)` was called outside a workflow: an event belongs to the workflow that sets it. \
         Call it in a #[workflow] body or one of its steps"
    )))
}

/// Waits up to `timeout` for event `key` of workflow `workflow_id` to be set, and returns
/// its latest value; `None` when it was not set in time.
///
/// Inside a workflow it is a durable operation (`DBOS.getEvent`, with its deadline recorded
/// as a `DBOS.sleep` at the next step id): a replay returns the value first read (or the
/// timeout) without waiting, one recovered mid-wait waits only the remainder, and a long wait
/// parks the workflow until the event is set. Elsewhere it waits through the current runtime
/// (or [`Dbos::get_event`](crate::Dbos::get_event)), recording nothing.
///
/// ```no_run
/// use std::time::Duration;
///
/// # async fn demo() -> dbos_core::Result<()> {
/// let status: Option<String> =
///     dbos_core::get_event("order-42", "status", Duration::from_secs(5)).await?;
/// println!("{status:?}");
/// # Ok(())
/// # }
/// # let _ = demo;
/// ```
///
/// # Errors
/// [`ErrorKind::Serialization`](crate::ErrorKind::Serialization) when the value does not
/// decode as `T` (naming the workflow, the key and the stored text); durability failures
/// inside a workflow; [`ErrorKind::NotLaunched`](crate::ErrorKind::NotLaunched) without a
/// runtime.
pub async fn get_event<T: Portable>(
    workflow_id: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<T>> {
    get_event_in(workflow_id, key, timeout)
        .instrument(observe::operation(Op::GetEvent, GET_EVENT))
        .await
}

async fn get_event_in<T: Portable>(
    workflow_id: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<T>> {
    let Some(ctx) = current() else {
        return get_event_outside(&runtime_here()?, workflow_id, key, timeout).await;
    };
    let me = ctx.workflow_id.clone();
    let what = format!("event `{key}` of workflow `{workflow_id}`");
    let function_id = match ctx.begin(GET_EVENT)? {
        Slot::Recorded { checkpoint, .. } => {
            skip_deadline(&ctx)?;
            return decode_recorded(
                checkpoint.output.as_deref(),
                checkpoint.serialization.as_deref(),
                &format!("the recorded read of {what}"),
                workflow_id,
            );
        }
        Slot::Fresh { function_id } => function_id,
    };
    let deadline = Box::pin(recorded_deadline(&ctx, timeout)).await?;
    let started = now_ms();
    let rt = ctx.runtime.clone();
    let key_ = WakeKey::new(Channel::Events, workflow_id, key);
    let found = wait_for(&rt, Some(&ctx), key_, deadline, || {
        rt.sysdb.get_event(workflow_id, key)
    })
    .await?;
    let (value, text) = match found {
        Some(v) => (
            Some(decode::<T>(
                &v.text,
                v.serialization.as_deref(),
                &what,
                workflow_id,
            )?),
            v.text,
        ),
        None => (None, "null".to_owned()),
    };
    let theirs = ctx
        .record(Operation {
            output: Some(&text),
            ..Operation::new(function_id, GET_EVENT, started)
        })
        .await?;
    match theirs {
        None => Ok(value),
        Some(cp) => decode_recorded(
            cp.output.as_deref(),
            cp.serialization.as_deref(),
            &what,
            &me,
        ),
    }
}

/// `get_event` outside a workflow: a plain wait.
pub(crate) async fn get_event_outside<T: Portable>(
    rt: &Arc<RuntimeInner>,
    workflow_id: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<T>> {
    let what = format!("event `{key}` of workflow `{workflow_id}`");
    let found = wait_for(
        rt,
        None,
        WakeKey::new(Channel::Events, workflow_id, key),
        deadline_in(&rt.config.clock, timeout),
        || rt.sysdb.get_event(workflow_id, key),
    )
    .await?;
    match found {
        Some(v) => decode(&v.text, v.serialization.as_deref(), &what, workflow_id).map(Some),
        None => Ok(None),
    }
}

/// Every event of workflow `workflow_id` with its latest value, by key (without waiting).
/// Inside a workflow it is recorded (`DBOS.get_events`, the name DBOS 3.4 records for its
/// `get_all_events`), so a replay sees the same map.
///
/// ```no_run
/// # async fn demo() -> dbos_core::Result<()> {
/// for (key, value) in dbos_core::get_all_events("order-42").await? {
///     println!("{key} = {value}");
/// }
/// # Ok(())
/// # }
/// # let _ = demo;
/// ```
///
/// # Errors
/// [`ErrorKind::Serialization`](crate::ErrorKind::Serialization) for a value stored in a
/// foreign encoding (naming the key); a database error.
pub async fn get_all_events(workflow_id: &str) -> Result<BTreeMap<String, Value>> {
    let Some(ctx) = current() else {
        return read_all_events(&runtime_here()?.sysdb, workflow_id).await;
    };
    let function_id = match ctx.begin(GET_ALL_EVENTS)? {
        Slot::Recorded { checkpoint, .. } => {
            return decode(
                checkpoint.output.as_deref().unwrap_or("{}"),
                checkpoint.serialization.as_deref(),
                &format!("the recorded events of workflow `{workflow_id}`"),
                &ctx.workflow_id,
            )
        }
        Slot::Fresh { function_id } => function_id,
    };
    let started = now_ms();
    let events = read_all_events(&ctx.runtime.sysdb, workflow_id).await?;
    let text = encode(&events, "the events")?;
    let theirs = ctx
        .record(Operation {
            output: Some(&text),
            ..Operation::new(function_id, GET_ALL_EVENTS, started)
        })
        .await?;
    match theirs {
        None => Ok(events),
        Some(cp) => decode(
            cp.output.as_deref().unwrap_or("{}"),
            cp.serialization.as_deref(),
            &format!("the recorded events of workflow `{workflow_id}`"),
            &ctx.workflow_id,
        ),
    }
}

pub(crate) async fn read_all_events(
    sysdb: &SystemDatabase,
    workflow_id: &str,
) -> Result<BTreeMap<String, Value>> {
    let mut events = BTreeMap::new();
    for (key, v) in sysdb.get_all_events(workflow_id).await? {
        let value: Value = decode(
            &v.text,
            v.serialization.as_deref(),
            &format!("event `{key}` of workflow `{workflow_id}`"),
            workflow_id,
        )?;
        events.insert(key, value);
    }
    Ok(events)
}
