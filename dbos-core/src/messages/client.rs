//! The same operations from a [`Client`]: a process that runs no workflows (a web handler
//! delivering webhooks, a dashboard) sends messages and reads events and streams, as DBOS's
//! own clients do. A client has no listener connection: its waits poll, at growing
//! intervals up to one second.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::durable::{deadline_in, poll_for};
use super::send::{deliver, send, Message, SendCall};
use super::streams::ReadStream;
use super::{decode, events, SEND_BULK};
use crate::client::Client;
use crate::error::Result;
use crate::workflow::types::Portable;

impl Client {
    /// Sends a message to workflow `destination_id` on `topic`; see [`send`](crate::send).
    ///
    /// ```no_run
    /// # async fn demo(client: dbos_core::client::Client) -> dbos_core::Result<()> {
    /// client.send("order-42", &1999_u64, "payment").idempotency_key("webhook-981").await?;
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
        send(destination_id, message, topic).via(self.system_database())
    }

    /// Sends several messages in one transaction; see [`send_batch`](crate::send_batch).
    ///
    /// # Errors
    /// As [`send_batch`](crate::send_batch).
    pub async fn send_batch(&self, messages: Vec<Message>) -> Result<()> {
        deliver(messages, SEND_BULK, Some(self.system_database().clone())).await
    }

    /// Waits up to `timeout` for event `key` of workflow `workflow_id`; see
    /// [`get_event`](crate::get_event). Polls.
    ///
    /// # Errors
    /// As [`get_event`](crate::get_event).
    pub async fn get_event<T: Portable>(
        &self,
        workflow_id: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<Option<T>> {
        let sysdb = self.system_database();
        let found = poll_for(deadline_in(&crate::clock::Clock::system(), timeout), || {
            sysdb.get_event(workflow_id, key)
        })
        .await?;
        match found {
            Some(v) => decode(
                &v.text,
                v.serialization.as_deref(),
                &format!("event `{key}` of workflow `{workflow_id}`"),
                workflow_id,
            )
            .map(Some),
            None => Ok(None),
        }
    }

    /// Every event of a workflow, by key; see [`get_all_events`](crate::get_all_events).
    ///
    /// # Errors
    /// As [`get_all_events`](crate::get_all_events).
    pub async fn get_all_events(&self, workflow_id: &str) -> Result<BTreeMap<String, Value>> {
        events::read_all_events(self.system_database(), workflow_id).await
    }

    /// Reads stream `key` of workflow `workflow_id`; see [`read_stream`](crate::read_stream).
    /// Polls for new values (every half second while the writer is active).
    pub fn read_stream<T: Portable>(&self, workflow_id: &str, key: &str) -> ReadStream<T> {
        ReadStream::client(self.system_database().clone(), workflow_id, key)
    }
}
