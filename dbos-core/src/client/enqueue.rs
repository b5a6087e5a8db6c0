//! [`ClientEnqueue`]: an enqueue from a client, by name or through a workflow's call.

use std::future::IntoFuture;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tracing::{Instrument as _, Span};

use super::Client;
use crate::codec::PortableInputs;
use crate::error::{Error, ErrorKind, Result};
use crate::queue::enqueue::{warn_unregistered, EnqueueOptions};
use crate::queue::Queue;
use crate::sysdb::workflows::{now_ms, timeout_ms, NewWorkflow};
use crate::workflow::call::{WorkflowCall, WorkflowHandle};
use crate::workflow::identity::Identity;
use crate::workflow::placement::{check_id, conflicting, id_in_use, IdReusePolicy};
use crate::workflow::registry::{BoxFuture, WorkflowDef};
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
    timeout: Option<Duration>,
    attributes: Option<Value>,
    options: EnqueueOptions,
    id_reuse: IdReusePolicy,
    identity: Option<Identity>,
    /// The workflow's definition, for an enqueue of a typed call: its `required_roles` are
    /// enforced. By name it is unknown.
    def: Option<&'static WorkflowDef>,
    _types: PhantomData<fn() -> (T, E)>,
}

impl<T, E> std::fmt::Debug for ClientEnqueue<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientEnqueue")
            .field("workflow", &self.name)
            .field("queue", &self.queue)
            .field("id", &self.id)
            .field("timeout", &self.timeout)
            .field("options", &self.options)
            .field("id_reuse", &self.id_reuse)
            .field("identity", &self.identity)
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
            timeout: None,
            attributes: None,
            options: EnqueueOptions::default(),
            id_reuse: IdReusePolicy::ReturnExisting,
            identity: None,
            def: None,
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
            timeout: self.timeout,
            attributes: self.attributes,
            options: self.options,
            id_reuse: self.id_reuse,
            identity: self.identity,
            def: self.def,
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
            timeout: call.timeout,
            attributes: call.attributes,
            options: EnqueueOptions::default(),
            id_reuse: call.id_reuse,
            identity: call.identity,
            def: Some(call.def),
            _types: PhantomData,
        }
    }

    /// The workflow id: the idempotency key (default: a random UUID). Enqueuing again
    /// with the same id returns a handle to the first one.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    crate::queue::enqueue::enqueue_option_setters!();

    // The id-reuse policy and the identity: the in-process start's options. By name, the
    // client knows no `required_roles` (the executor checks them before the body runs, see
    // [`Client::enqueue`]); for a typed call they are enforced here as an in-process start
    // enforces them.
    crate::workflow::call::start_option_setters!();

    /// Cancels the workflow if it has not finished `timeout` after it is dequeued (at most
    /// 100 years; 0 is refused).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Attaches attributes (a JSON object) to the workflow, as
    /// [`WorkflowCall::attributes`](crate::WorkflowCall::attributes) does.
    pub fn attributes(mut self, attributes: Value) -> Self {
        self.attributes = Some(attributes);
        self
    }

    /// Refuses what no executor could honour (or the caller may not start), before anything
    /// is written; returns whether the queue is registered and the identity to record.
    async fn check(&mut self) -> Result<(bool, Identity)> {
        crate::workflow::call::check_attributes(self.attributes.as_ref())?;
        let identity = crate::workflow::identity::for_client(self.def, self.identity.take())?;
        if self.name.trim().is_empty() {
            return Err(Error::invalid(
                "the workflow name is blank: give the registered name of the workflow to run",
            ));
        }
        if let Some(id) = &self.id {
            check_id(id)?;
        }
        timeout_ms(self.timeout, "workflow")?;
        if self.queue.trim().is_empty() {
            return self
                .options
                .check(&self.queue, None)
                .map(|()| (false, identity));
        }
        // The queue's recorded definition, if an executor registered it.
        let recorded = self.client.sysdb.queue_partitioned(&self.queue).await?;
        if self.partitioned.is_none() {
            // Enqueued by name: what is recorded is all there is to go by.
            self.partitioned = recorded;
        }
        self.options.check(&self.queue, self.partitioned)?;
        Ok((recorded.is_some(), identity))
    }

    async fn enqueue(mut self) -> Result<WorkflowHandle<T, E>> {
        let (registered, identity) = self.check().await?;
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
        // The workflow's executions join the trace of this enqueue (the caller's, if any).
        let stamped = crate::observe::carrier::stamp(self.attributes.as_ref(), &Span::current());
        let new = NewWorkflow {
            id: &id,
            fresh_id,
            name: &self.name,
            creator_xid: &creator,
            owner_xid: None,
            executor_id: None,
            app_version: self.options.app_version.as_deref(),
            app_name: self.client.app_name.as_deref(),
            inputs: &inputs,
            timeout_ms: timeout_ms(self.timeout, "workflow")?,
            deadline_ms: None,
            parent: None,
            queue: Some(self.options.fields(&self.queue, now_ms())),
            attributes: stamped.as_ref().or(self.attributes.as_ref()),
            reject_existing: self.id_reuse == IdReusePolicy::Reject,
            identity: (!identity.is_empty()).then_some(&identity),
        };
        loop {
            return match sysdb.start_workflow(&new).await {
                Ok(Some(row)) => {
                    if !row.created && new.reject_existing {
                        return Err(id_in_use(&new, &row));
                    }
                    if !row.created && row.name != self.name {
                        return Err(conflicting(&new, &row));
                    }
                    if row.created && !registered {
                        warn_unregistered(&self.queue, &id);
                    }
                    Ok(WorkflowHandle::detached(sysdb.clone(), id))
                }
                Ok(None) => Err(Error::new(
                    ErrorKind::Database,
                    format!("workflow `{id}` was not inserted"),
                )),
                Err(e)
                    if e.kind() == ErrorKind::QueueDeduplicated && self.options.return_existing =>
                {
                    let dedup = self.options.deduplication_id.as_deref().unwrap_or_default();
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
        // Opened when first polled: a child of the span the caller awaits it in.
        Box::pin(async move {
            let span = crate::observe::operation(crate::observe::Op::Enqueue, &self.name);
            self.enqueue().instrument(span).await
        })
    }
}
