//! Messages, events and streams: how workflows talk to each other and to the outside world,
//! with DBOS's semantics and rows.
//!
//! | operation | inside a workflow | outside |
//! | --- | --- | --- |
//! | [`send`], [`send_batch`] | `DBOS.send` / `DBOS.send_bulk`: the messages and the checkpoint commit together | inserted (idempotent by key) |
//! | [`recv`] | `DBOS.recv` + its deadline `DBOS.sleep`: consume and checkpoint commit together | an error: only workflows receive |
//! | [`set_event`] | `DBOS.setEvent`: value, history row and checkpoint together | from a step: fenced, no checkpoint |
//! | [`get_event`] | `DBOS.getEvent` + its deadline `DBOS.sleep` | waits, nothing recorded |
//! | [`get_all_events`] | `DBOS.get_events` (the name DBOS 3.4 records) | a plain read |
//! | [`write_stream`], [`close_stream`] | `DBOS.writeStream` / `DBOS.closeStream`: row and checkpoint together | from a step: fenced, no checkpoint |
//! | [`read_stream`] | one `DBOS.readStream` per value read (and one for the end) | a live stream, nothing recorded |
//! | [`wait_first`] | `DBOS.waitFirst`, recording which finished first | waits |
//!
//! Waiters are woken by the executor's listener connection (`LISTEN` on DBOS's channels),
//! with polling while it is away; long waits in workflows park like long sleeps. See the
//! book's chapter "Messages, events and streams".

mod client;
mod durable;
mod events;
mod recv;
mod send;
mod streams;
mod wait_first;
pub(crate) mod waiters;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

pub use events::{get_all_events, get_event, set_event};
pub use recv::recv;
pub use send::{send, send_batch, Message, SendCall};
pub use streams::{close_stream, read_stream, write_stream, ReadStream};
pub use wait_first::wait_first;

use crate::error::{Error, ErrorKind, Result};
use crate::runtime::{Dbos, RuntimeInner};
use crate::workflow::context::{current, current_step};
use crate::workflow::types::Portable;

/// Operation names, as DBOS records them.
pub(crate) const SEND: &str = "DBOS.send";
pub(crate) const SEND_BULK: &str = "DBOS.send_bulk";
pub(crate) const RECV: &str = "DBOS.recv";
pub(crate) const SET_EVENT: &str = "DBOS.setEvent";
pub(crate) const GET_EVENT: &str = "DBOS.getEvent";
pub(crate) const GET_ALL_EVENTS: &str = "DBOS.get_events";
pub(crate) const WRITE_STREAM: &str = "DBOS.writeStream";
pub(crate) const CLOSE_STREAM: &str = "DBOS.closeStream";
pub(crate) const READ_STREAM: &str = "DBOS.readStream";
pub(crate) const WAIT_FIRST: &str = "DBOS.waitFirst";

/// The runtime a call made here uses: the running workflow's, the running step's, or the
/// current one.
pub(crate) fn runtime_here() -> Result<Arc<RuntimeInner>> {
    if let Some(ctx) = current() {
        return Ok(ctx.runtime.clone());
    }
    if let Some(step) = current_step() {
        return Ok(step.runtime);
    }
    Ok(Dbos::current()?.inner().clone())
}

/// Decodes a stored value (a message, an event, a stream value) as `T`, or says which one
/// did not decode, with its text: `what` names it ("the message on topic `t` for workflow
/// `w`"). The row is left as it is.
pub(crate) fn decode<T: Portable>(
    text: &str,
    serialization: Option<&str>,
    what: &str,
    workflow_id: &str,
) -> Result<T> {
    let fail = |why: String| {
        Error::new(
            ErrorKind::Serialization,
            format!(
                "{what} does not decode as `{}`: {why}; its stored text is {}. It was left where it is",
                std::any::type_name::<T>(),
                preview(text)
            ),
        )
        .with_workflow_id(workflow_id)
    };
    if let Err(e) = crate::codec::check_serialization(serialization, what) {
        return Err(fail(e.message().to_owned()));
    }
    serde_json::from_str(text).map_err(|e| fail(e.to_string()))
}

/// Decodes a recorded wait result (`DBOS.recv`, `DBOS.getEvent`): `null` is a timeout.
pub(crate) fn decode_recorded<T: Portable>(
    output: Option<&str>,
    serialization: Option<&str>,
    what: &str,
    workflow_id: &str,
) -> Result<Option<T>> {
    match output {
        None | Some("null") => Ok(None),
        Some(text) => decode::<T>(text, serialization, what, workflow_id).map(Some),
    }
}

fn preview(text: &str) -> String {
    const MAX: usize = 300;
    if text.len() <= MAX {
        return format!("`{text}`");
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("`{}...` ({} bytes)", &text[..end], text.len())
}

/// What stored text a value becomes.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<String> {
    crate::codec::to_text(value).map_err(|e| {
        Error::new(
            ErrorKind::Serialization,
            format!("{what} cannot be stored: {}", e.message()),
        )
    })
}

/// The same operations through a given runtime, from outside any workflow: nothing is
/// recorded, even when called from a workflow body (use the free functions there).
impl Dbos {
    /// Sends a message to workflow `destination_id` through this runtime; see [`send`].
    ///
    /// ```no_run
    /// # async fn demo(dbos: dbos_core::Dbos) -> dbos_core::Result<()> {
    /// dbos.send("order-42", &"paid", "payment").idempotency_key("webhook-981").await?;
    /// # Ok(())
    /// # }
    /// # let _ = demo;
    /// ```
    pub fn send<'a, T: Serialize + ?Sized>(
        &self,
        destination_id: impl Into<String>,
        message: &T,
        topic: impl Into<Option<&'a str>>,
    ) -> SendCall {
        send(destination_id, message, topic).on(self)
    }

    /// Sends several messages in one transaction through this runtime; see [`send_batch`].
    ///
    /// # Errors
    /// As [`send_batch`].
    pub async fn send_batch(&self, messages: Vec<Message>) -> Result<()> {
        send::deliver(messages, SEND_BULK, Some(self.system_database().clone())).await
    }

    /// Waits up to `timeout` for event `key` of workflow `workflow_id`; see [`get_event`].
    ///
    /// # Errors
    /// As [`get_event`].
    pub async fn get_event<T: Portable>(
        &self,
        workflow_id: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<Option<T>> {
        events::get_event_outside(self.inner(), workflow_id, key, timeout).await
    }

    /// Every event of a workflow, by key; see [`get_all_events`].
    ///
    /// # Errors
    /// As [`get_all_events`].
    pub async fn get_all_events(&self, workflow_id: &str) -> Result<BTreeMap<String, Value>> {
        events::read_all_events(self.system_database(), workflow_id).await
    }

    /// Reads stream `key` of workflow `workflow_id` through this runtime; see
    /// [`read_stream`].
    pub fn read_stream<T: Portable>(&self, workflow_id: &str, key: &str) -> ReadStream<T> {
        ReadStream::outside(self.inner().clone(), workflow_id, key)
    }
}
