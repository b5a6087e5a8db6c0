//! Enqueuing a workflow: [`QueuedCall`], made by [`WorkflowCall::enqueue`].

use std::future::IntoFuture;
use std::time::Duration;

use serde_json::Value;

use crate::codec::PortableInputs;
use crate::error::{Error, ErrorKind, Result};
use crate::queue::Queue;
use crate::runtime::RuntimeInner;
use crate::sysdb::workflows::{now_ms, NewWorkflow, QueueFields};
use crate::workflow::call::{WorkflowCall, WorkflowHandle};
use crate::workflow::placement::{insert, parent_link, Placement};
use crate::workflow::registry::BoxFuture;
use crate::workflow::types::{Portable, WorkflowError};

impl<T: Portable, E: WorkflowError> WorkflowCall<T, E> {
    /// Puts the workflow on `queue` instead of running it here: any executor serving the
    /// queue runs it, within the queue's limits. `.await` the result for its handle.
    ///
    /// Inside a workflow the enqueue is recorded, so a replay never enqueues twice.
    pub fn enqueue(self, queue: &Queue) -> QueuedCall<T, E> {
        QueuedCall {
            call: self,
            queue: queue.name().to_owned(),
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
    queue: String,
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
            .field("queue", &self.queue)
            .field("priority", &self.priority)
            .field("deduplication_id", &self.deduplication_id)
            .field("partition_key", &self.partition_key)
            .field("delay", &self.delay)
            .finish_non_exhaustive()
    }
}

impl<T: Portable, E: WorkflowError> QueuedCall<T, E> {
    /// The workflow's priority, from 0 (the default, and the first to run) to 2^31 - 1: lower
    /// runs first, and equal priorities run in enqueue order.
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

    async fn enqueue(self) -> Result<WorkflowHandle<T, E>> {
        let args: Vec<Value> = self.call.args.into_iter().collect::<Result<_>>()?;
        let inputs = PortableInputs::positional(args).to_text()?;
        let def = self.call.def;
        let timeout_ms = self.call.timeout.map(|t| t.as_millis() as i64);
        let fields = QueueFields {
            queue_name: &self.queue,
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
            app_name: &rt.app_name,
            inputs: &inputs,
            timeout_ms,
            deadline_ms: None,
            parent: parent_link(&parent),
            queue: Some(fields),
        };
        match insert(&rt, &new, parent.as_ref().map(|(ctx, _)| &**ctx)).await {
            Ok(row) => {
                if row.created {
                    rt.wake_queue(&self.queue);
                }
                Ok(WorkflowHandle::attach(rt, id))
            }
            Err(e) if e.kind() == ErrorKind::QueueDeduplicated && self.return_existing => {
                let dedup = self.deduplication_id.as_deref().unwrap_or_default();
                match rt.sysdb.deduplicated_holder(&self.queue, dedup).await? {
                    Some(holder) => Ok(WorkflowHandle::attach(rt, holder)),
                    // The holder completed in between: the id is free again.
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}

impl<T: Portable, E: WorkflowError> IntoFuture for QueuedCall<T, E> {
    type Output = std::result::Result<WorkflowHandle<T, E>, E>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.enqueue().await.map_err(E::from) })
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
        app_name: &rt.app_name,
        inputs: &inputs,
        timeout_ms: None,
        deadline_ms: None,
        parent: None,
        queue: Some(QueueFields {
            queue_name: queue,
            ..Default::default()
        }),
    };
    insert(rt, &new, None).await?;
    rt.wake_queue(queue);
    Ok(WorkflowHandle::attach(rt.clone(), id))
}
