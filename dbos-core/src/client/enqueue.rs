//! [`ClientEnqueue`]: an enqueue from a client, by name or through a workflow's call.

use std::future::IntoFuture;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::Client;
use crate::codec::PortableInputs;
use crate::error::{Error, ErrorKind, Result};
use crate::queue::Queue;
use crate::sysdb::workflows::{now_ms, NewWorkflow, QueueFields};
use crate::workflow::call::{WorkflowCall, WorkflowHandle};
use crate::workflow::placement::check_id;
use crate::workflow::registry::BoxFuture;
use crate::workflow::types::{Portable, WorkflowError};

/// An enqueue from a [`Client`]: arguments and queue options chain before `.await`, which
/// writes the workflow's rows (the same rows an in-process
/// [`enqueue`](crate::WorkflowCall::enqueue) writes) and returns its handle.
#[must_use = "nothing is enqueued until the enqueue is awaited"]
pub struct ClientEnqueue<T, E> {
    client: Client,
    name: String,
    queue: String,
    /// Whether the queue is partitioned, when its definition is at hand.
    partitioned: Option<bool>,
    args: Vec<Result<Value>>,
    id: Option<String>,
    priority: i32,
    deduplication_id: Option<String>,
    return_existing: bool,
    partition_key: Option<String>,
    delay: Option<Duration>,
    timeout: Option<Duration>,
    app_version: Option<String>,
    attributes: Option<Value>,
    _types: PhantomData<fn() -> (T, E)>,
}

impl<T, E> std::fmt::Debug for ClientEnqueue<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientEnqueue")
            .field("workflow", &self.name)
            .field("queue", &self.queue)
            .field("id", &self.id)
            .field("priority", &self.priority)
            .field("deduplication_id", &self.deduplication_id)
            .field("partition_key", &self.partition_key)
            .field("delay", &self.delay)
            .field("timeout", &self.timeout)
            .field("app_version", &self.app_version)
            .finish_non_exhaustive()
    }
}

impl ClientEnqueue<Value, Error> {
    pub(crate) fn by_name(client: Client, name: String, queue: String) -> Self {
        ClientEnqueue {
            client,
            name,
            queue,
            partitioned: None,
            args: Vec::new(),
            id: None,
            priority: 0,
            deduplication_id: None,
            return_existing: false,
            partition_key: None,
            delay: None,
            timeout: None,
            app_version: None,
            attributes: None,
            _types: PhantomData,
        }
    }

    /// Appends a positional argument, encoded as JSON (an encoding failure is reported when
    /// the enqueue is awaited).
    pub fn arg<A: Serialize + ?Sized>(mut self, value: &A) -> Self {
        self.args.push(crate::codec::to_value(value));
        self
    }

    /// Appends positional arguments given as JSON.
    pub fn args(mut self, values: impl IntoIterator<Item = Value>) -> Self {
        self.args.extend(values.into_iter().map(Ok));
        self
    }

    /// Types the handle by the workflow's output and error.
    pub fn returning<T: Portable, E: WorkflowError>(self) -> ClientEnqueue<T, E> {
        ClientEnqueue {
            client: self.client,
            name: self.name,
            queue: self.queue,
            partitioned: self.partitioned,
            args: self.args,
            id: self.id,
            priority: self.priority,
            deduplication_id: self.deduplication_id,
            return_existing: self.return_existing,
            partition_key: self.partition_key,
            delay: self.delay,
            timeout: self.timeout,
            app_version: self.app_version,
            attributes: self.attributes,
            _types: PhantomData,
        }
    }
}

impl<T: Portable, E: WorkflowError> ClientEnqueue<T, E> {
    pub(crate) fn from_call(client: Client, call: WorkflowCall<T, E>, queue: &Queue) -> Self {
        ClientEnqueue {
            client,
            name: call.def.name.to_owned(),
            queue: queue.name().to_owned(),
            partitioned: Some(queue.partitioned),
            args: call.args,
            id: call.id,
            priority: 0,
            deduplication_id: None,
            return_existing: false,
            partition_key: None,
            delay: None,
            timeout: call.timeout,
            app_version: None,
            attributes: call.attributes,
            _types: PhantomData,
        }
    }

    /// The workflow id: the idempotency key (default: a random UUID). Enqueuing again
    /// with the same id returns a handle to the first one.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Lower runs first; 0 (the default) before any explicit priority. DBOS's range is 0
    /// to 2³¹−1.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Refuses the enqueue ([`ErrorKind::QueueDeduplicated`]) while another workflow with
    /// this id is active on the queue.
    pub fn deduplication_id(mut self, id: impl Into<String>) -> Self {
        self.deduplication_id = Some(id.into());
        self
    }

    /// With a deduplication id: returns a handle to the active workflow holding it instead
    /// of failing.
    pub fn return_existing_on_duplicate(mut self) -> Self {
        self.return_existing = true;
        self
    }

    /// The partition of a partitioned queue.
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Keeps the workflow `DELAYED` for `delay` before it joins the queue.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Cancels the workflow if it has not finished `timeout` after it is dequeued.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Only executors of this application version may run it (default: any executor of
    /// the latest version).
    pub fn app_version(mut self, version: impl Into<String>) -> Self {
        self.app_version = Some(version.into());
        self
    }

    /// Attaches attributes (a JSON object) to the workflow, as
    /// [`WorkflowCall::attributes`](crate::WorkflowCall::attributes) does.
    pub fn attributes(mut self, attributes: Value) -> Self {
        self.attributes = Some(attributes);
        self
    }

    /// Refuses what no executor could honour, before anything is written.
    async fn check(&mut self) -> Result<()> {
        crate::workflow::call::check_attributes(self.attributes.as_ref())?;
        if self.name.trim().is_empty() {
            return Err(Error::invalid(
                "the workflow name is blank: give the registered name of the workflow to run",
            ));
        }
        if self.queue.trim().is_empty() {
            return Err(Error::invalid(
                "the queue name is blank: give the name of a queue some executor serves",
            ));
        }
        if let Some(id) = &self.id {
            check_id(id)?;
        }
        if self.priority < 0 {
            return Err(Error::invalid(format!(
                "priority {} is outside DBOS's range 0..=2147483647: lower numbers run first, and 0 (the default) \
                 runs before any explicit priority",
                self.priority
            )));
        }
        if self
            .app_version
            .as_deref()
            .is_some_and(|v| v.trim().is_empty())
        {
            return Err(Error::invalid(
                "the application version is blank: give one, or none for the latest",
            ));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid(
                "a timeout of 0 would cancel the workflow as soon as it starts; give a positive timeout, or none",
            ));
        }
        match (&self.deduplication_id, self.return_existing) {
            (Some(d), _) if d.trim().is_empty() => {
                return Err(Error::invalid(
                    "the deduplication id is blank: give a non-empty id, or none",
                ))
            }
            (None, true) => {
                return Err(Error::invalid(
                    "return_existing_on_duplicate() needs a deduplication_id(..): without one there is no \
                     duplicate to return",
                ))
            }
            _ => {}
        }
        let queue = &self.queue;
        if self.partition_key.is_some() && self.deduplication_id.is_some() {
            return Err(Error::invalid(format!(
                "queue `{queue}`: a deduplication id cannot be combined with a partition key (DBOS deduplicates only \
                 on queues without partitions); drop one of them"
            )));
        }
        if self
            .partition_key
            .as_deref()
            .is_some_and(|k| k.trim().is_empty())
        {
            return Err(Error::invalid(format!(
                "queue `{queue}`: the partition key is blank; give a non-empty partition_key(..)"
            )));
        }
        if self.partitioned.is_none() {
            // Enqueued by name: the queue's recorded definition, if an executor registered it.
            self.partitioned = self.client.sysdb.queue_partitioned(queue).await?;
        }
        match (self.partitioned, &self.partition_key) {
            (Some(true), None) => Err(Error::invalid(format!(
                "queue `{queue}` is partitioned: give the workflow a partition_key(..); without one no executor \
                 would ever dequeue it"
            ))),
            (Some(false), Some(_)) => Err(Error::invalid(format!(
                "queue `{queue}` is not partitioned, so a partition key would keep the workflow from ever being \
                 dequeued: drop the partition_key(..)"
            ))),
            _ => Ok(()),
        }
    }

    async fn enqueue(mut self) -> Result<WorkflowHandle<T, E>> {
        self.check().await?;
        let args: Vec<Value> = std::mem::take(&mut self.args)
            .into_iter()
            .collect::<Result<_>>()?;
        let inputs = PortableInputs::positional(args).to_text()?;
        let fresh_id = self.id.is_none();
        let id = self
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let creator = uuid::Uuid::new_v4().to_string();
        let sysdb = &self.client.sysdb;
        let delay_until_ms = self.delay.map(|d| now_ms() + d.as_millis() as i64);
        let new = NewWorkflow {
            id: &id,
            fresh_id,
            name: &self.name,
            creator_xid: &creator,
            owner_xid: None,
            executor_id: None,
            app_version: self.app_version.as_deref(),
            app_name: self.client.app_name.as_deref(),
            inputs: &inputs,
            timeout_ms: self.timeout.map(|t| t.as_millis() as i64),
            deadline_ms: None,
            parent: None,
            queue: Some(QueueFields {
                queue_name: &self.queue,
                priority: self.priority,
                deduplication_id: self.deduplication_id.as_deref(),
                partition_key: self.partition_key.as_deref(),
                delay_until_ms,
            }),
            attributes: self.attributes.as_ref(),
        };
        loop {
            return match sysdb.start_workflow(&new).await {
                Ok(Some(row)) => {
                    if !row.created && row.name != self.name {
                        return Err(Error::new(
                            ErrorKind::ConflictingWorkflow,
                            format!(
                                "workflow id `{id}` already belongs to workflow `{}`, not `{}`: ids are idempotency \
                                 keys, so one id cannot name two different workflows",
                                row.name, self.name
                            ),
                        )
                        .with_workflow_id(id));
                    }
                    Ok(WorkflowHandle::detached(sysdb.clone(), id))
                }
                Ok(None) => Err(Error::new(
                    ErrorKind::Database,
                    format!("workflow `{id}` was not inserted"),
                )),
                Err(e) if e.kind() == ErrorKind::QueueDeduplicated && self.return_existing => {
                    let dedup = self.deduplication_id.as_deref().unwrap_or_default();
                    match sysdb.deduplicated_holder(&self.queue, dedup).await? {
                        Some(holder) => Ok(WorkflowHandle::detached(sysdb.clone(), holder)),
                        // The holder finished in between: the id is free, so enqueue again.
                        None => continue,
                    }
                }
                Err(e) => Err(e),
            };
        }
    }
}

impl<T: Portable, E: WorkflowError> IntoFuture for ClientEnqueue<T, E> {
    type Output = Result<WorkflowHandle<T, E>>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.enqueue())
    }
}
