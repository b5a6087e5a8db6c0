//! Enqueuing a workflow: [`QueuedCall`], made by [`WorkflowCall::enqueue`].

use std::future::IntoFuture;
use std::time::Duration;

use serde_json::Value;

use crate::codec::PortableInputs;
use crate::error::{Error, ErrorKind, Result};
use crate::queue::Queue;
use crate::runtime::RuntimeInner;
use crate::sysdb::workflows::{now_ms, NewWorkflow, QueueFields};
use crate::workflow::call::{check_attributes, Started, WorkflowCall, WorkflowHandle};
use crate::workflow::context::Operation;
use crate::workflow::placement::{check_id, insert, parent_link, Parent, Placement};
use crate::workflow::types::{Portable, WorkflowError};

impl<T, E> WorkflowCall<T, E> {
    /// Puts the workflow on `queue` instead of running it here: any executor serving the
    /// queue runs it, within the queue's limits. `.await` the result for its handle.
    ///
    /// Inside a workflow the enqueue is recorded, so a replay never enqueues twice.
    pub fn enqueue(self, queue: &Queue) -> QueuedCall<T, E> {
        QueuedCall {
            call: self,
            queue: queue.clone(),
            priority: 0,
            deduplication_id: None,
            return_existing: false,
            partition_key: None,
            delay: None,
            app_version: None,
        }
    }
}

/// A workflow call on its way to a queue; options chain before `.await`, which returns a
/// [`WorkflowHandle`].
#[must_use = "nothing is enqueued until the call is awaited"]
pub struct QueuedCall<T, E> {
    call: WorkflowCall<T, E>,
    queue: Queue,
    priority: i32,
    deduplication_id: Option<String>,
    return_existing: bool,
    partition_key: Option<String>,
    delay: Option<Duration>,
    app_version: Option<String>,
}

impl<T, E> std::fmt::Debug for QueuedCall<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedCall")
            .field("call", &self.call)
            .field("queue", &self.queue.name())
            .field("priority", &self.priority)
            .field("deduplication_id", &self.deduplication_id)
            .field("partition_key", &self.partition_key)
            .field("delay", &self.delay)
            .finish_non_exhaustive()
    }
}

impl<T, E> QueuedCall<T, E> {
    /// The workflow's priority, from 0 (the default, and the first to run) to 2³¹−1: lower
    /// runs first, and equal priorities run in enqueue order. A negative priority is refused
    /// with [`ErrorKind::InvalidArgument`].
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Rejects the enqueue ([`ErrorKind::QueueDeduplicated`]) while another workflow with this
    /// id is active on the queue; the id is free again once that workflow completes.
    pub fn deduplication_id(mut self, id: impl Into<String>) -> Self {
        self.deduplication_id = Some(id.into());
        self
    }

    /// With a deduplication id: instead of failing, return a handle to the active workflow
    /// holding the id.
    pub fn return_existing_on_duplicate(mut self) -> Self {
        self.return_existing = true;
        self
    }

    /// The partition of a partitioned queue this workflow belongs to.
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Keeps the workflow `DELAYED` for `delay` before it becomes eligible to run.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Only executors of this application version may run it (default: the caller's).
    pub fn app_version(mut self, version: impl Into<String>) -> Self {
        self.app_version = Some(version.into());
        self
    }

    /// Attaches attributes (a JSON object) to the workflow, as
    /// [`WorkflowCall::attributes`] does.
    pub fn attributes(mut self, attributes: Value) -> Self {
        self.call.attributes = Some(attributes);
        self
    }
}

impl<T: Portable, E: WorkflowError> QueuedCall<T, E> {
    /// Refuses options no executor could honour, before anything is written.
    fn check(&self, queue: &Queue) -> Result<()> {
        let name = queue.name();
        if self.priority < 0 {
            return Err(Error::invalid(format!(
                "priority {} is outside DBOS's range 0..=2147483647: lower numbers run first, and 0 (the default) \
                 runs before any explicit priority",
                self.priority
            )));
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
        match (&self.partition_key, queue.partitioned) {
            (Some(_), _) if self.deduplication_id.is_some() => Err(Error::invalid(format!(
                "queue `{name}`: a deduplication id cannot be combined with a partition key (DBOS deduplicates only \
                 on queues without partitions); drop one of them"
            ))),
            (Some(k), true) if k.trim().is_empty() => Err(Error::invalid(format!(
                "queue `{name}`: the partition key is blank; give each workflow a non-empty partition_key(..)"
            ))),
            (None, true) => Err(Error::invalid(format!(
                "queue `{name}` is partitioned: give the workflow a partition_key(..) (its partition's limits apply \
                 to it); without one no executor would ever dequeue it"
            ))),
            (Some(_), false) => Err(Error::invalid(format!(
                "queue `{name}` is not partitioned, so a partition key would keep the workflow from ever being \
                 dequeued: drop the partition_key(..), or declare the queue with .partitioned()"
            ))),
            _ => Ok(()),
        }
    }

    async fn enqueue(self) -> Result<WorkflowHandle<T, E>> {
        if let Some(id) = &self.call.id {
            check_id(id)?;
        }
        check_attributes(self.call.attributes.as_ref())?;
        self.check(&self.queue)?;
        let args: Vec<Value> = self.call.args.into_iter().collect::<Result<_>>()?;
        let inputs = PortableInputs::positional(args).to_text()?;
        let def = self.call.def;
        let timeout_ms = self.call.timeout.map(|t| t.as_millis() as i64);
        let queue_name = self.queue.name().to_owned();
        let fields = QueueFields {
            queue_name: &queue_name,
            priority: self.priority,
            deduplication_id: self.deduplication_id.as_deref(),
            partition_key: self.partition_key.as_deref(),
            delay_until_ms: self.delay.map(|d| now_ms() + d.as_millis() as i64),
        };
        let (rt, id, parent, fresh_id) =
            match Placement::resolve(def.name, self.call.id.clone(), self.call.runtime.as_ref())? {
                Placement::Recorded { rt, id } => return Ok(WorkflowHandle::attach(rt, id)),
                Placement::New {
                    rt,
                    id,
                    parent,
                    fresh_id,
                } => (rt, id, parent, fresh_id),
            };
        let creator = uuid::Uuid::new_v4().to_string();
        let app_version = self
            .app_version
            .clone()
            .unwrap_or_else(|| rt.app_version.clone());
        let new = NewWorkflow {
            id: &id,
            fresh_id,
            name: def.name,
            creator_xid: &creator,
            owner_xid: None,
            executor_id: None,
            app_version: Some(&app_version),
            app_name: Some(&rt.app_name),
            inputs: &inputs,
            timeout_ms,
            // Children inherit the parent's deadline, as started children do.
            deadline_ms: parent.as_ref().and_then(|p| p.ctx.deadline_ms),
            parent: parent_link(&parent),
            queue: Some(fields),
            attributes: self.call.attributes.as_ref(),
        };
        match insert(&rt, &new, parent.as_ref().map(|p| &*p.ctx)).await {
            Ok(row) => {
                if row.created {
                    rt.wake_queue(&queue_name);
                }
                Ok(WorkflowHandle::attach(rt, id))
            }
            Err(e) if e.kind() == ErrorKind::QueueDeduplicated => {
                let holder = match (self.return_existing, self.deduplication_id.as_deref()) {
                    (true, Some(dedup)) => rt.sysdb.deduplicated_holder(&queue_name, dedup).await?,
                    _ => None,
                };
                let holder = match &parent {
                    // Inside a workflow the refusal (or the holder returned) is recorded at
                    // the enqueue's step id, so a replay gives the same answer even after
                    // the deduplication id was freed.
                    Some(p) => record_refusal(p, def.name, holder.as_deref(), &e).await?,
                    None => holder,
                };
                match holder {
                    Some(holder) => Ok(WorkflowHandle::attach(rt, holder)),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// Records, at the parent's step id, what a deduplicated enqueue got: the holder it
/// returns, or the refusal. Returns the holder to use (the one recorded first, if another
/// execution of the parent recorded this step already).
async fn record_refusal(
    parent: &Parent,
    name: &str,
    holder: Option<&str>,
    refusal: &Error,
) -> Result<Option<String>> {
    let error = match holder {
        Some(_) => None,
        None => Some(crate::codec::to_text(refusal)?),
    };
    let recorded = parent
        .ctx
        .record(Operation {
            error: error.as_deref(),
            child_workflow_id: holder,
            ..Operation::new(parent.function_id, name, now_ms())
        })
        .await?;
    Ok(match recorded {
        None => holder.map(str::to_owned),
        Some(theirs) => theirs.child_workflow_id,
    })
}

/// Enqueues `call`: what awaiting a [`QueuedCall`] does, captured by [`WorkflowCall::new`]
/// where the types are known to qualify.
pub(crate) fn run<T: Portable, E: WorkflowError>(call: QueuedCall<T, E>) -> Started<T, E> {
    Box::pin(async move { call.enqueue().await.map_err(E::from) })
}

impl<T, E> IntoFuture for QueuedCall<T, E> {
    type Output = std::result::Result<WorkflowHandle<T, E>, E>;
    type IntoFuture = Started<T, E>;

    fn into_future(self) -> Self::IntoFuture {
        (self.call.typed.enqueue)(self)
    }
}

/// Enqueues a workflow by name with JSON arguments, for workflows this binary may not have
/// (another process serving the queue runs it).
pub(crate) async fn enqueue_by_name(
    rt: &std::sync::Arc<RuntimeInner>,
    name: &str,
    queue: &str,
    args: Vec<Value>,
    id: Option<String>,
) -> Result<WorkflowHandle<Value, Error>> {
    if name.trim().is_empty() {
        return Err(Error::invalid(
            "the workflow name is blank: give the registered name of the workflow to run",
        ));
    }
    if queue.trim().is_empty() {
        return Err(Error::invalid(
            "the queue name is blank: give the name of a queue some executor serves",
        ));
    }
    if let Some(id) = &id {
        check_id(id)?;
    }
    if rt
        .config
        .queues
        .iter()
        .any(|q| q.name() == queue && q.partitioned)
    {
        return Err(Error::invalid(format!(
            "queue `{queue}` is partitioned, and an enqueue by name carries no partition key: no executor would \
             ever dequeue it; enqueue through the workflow's own call with .partition_key(..)"
        )));
    }
    let inputs = PortableInputs::positional(args).to_text()?;
    let fresh_id = id.is_none();
    let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let creator = uuid::Uuid::new_v4().to_string();
    let new = NewWorkflow {
        id: &id,
        fresh_id,
        name,
        creator_xid: &creator,
        owner_xid: None,
        executor_id: None,
        app_version: None,
        app_name: Some(&rt.app_name),
        inputs: &inputs,
        timeout_ms: None,
        deadline_ms: None,
        parent: None,
        queue: Some(QueueFields {
            queue_name: queue,
            ..Default::default()
        }),
        attributes: None,
    };
    insert(rt, &new, None).await?;
    rt.wake_queue(queue);
    Ok(WorkflowHandle::attach(rt.clone(), id))
}
