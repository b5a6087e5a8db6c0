//! Enqueuing a workflow: [`QueuedCall`], made by [`WorkflowCall::enqueue`].

use std::future::IntoFuture;
use std::time::Duration;

use serde_json::Value;
use tracing::{Instrument as _, Span};

use crate::codec::PortableInputs;
use crate::error::{Error, ErrorKind, Result};
use crate::observe::{self, Op};
use crate::queue::Queue;
use crate::runtime::RuntimeInner;
use crate::sysdb::workflows::{clamped_ms, timeout_ms, NewWorkflow, QueueFields, INTERNAL_QUEUE};
use crate::sysdb::SystemDatabase;
use crate::workflow::call::{check_attributes, Started, WorkflowCall, WorkflowHandle};
use crate::workflow::placement::{
    check_id, insert, parent_link, record_refusal, IdReusePolicy, Placement,
};
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
            options: EnqueueOptions::default(),
        }
    }
}

/// The queue options of an enqueue, shared by an in-process enqueue ([`QueuedCall`]) and a
/// client's ([`ClientEnqueue`](crate::client::ClientEnqueue)): one set of checks, one set of
/// queue columns.
#[derive(Debug, Clone, Default)]
pub(crate) struct EnqueueOptions {
    pub(crate) priority: i32,
    pub(crate) deduplication_id: Option<String>,
    pub(crate) return_existing: bool,
    pub(crate) partition_key: Option<String>,
    pub(crate) delay: Option<Duration>,
    pub(crate) app_version: Option<String>,
}

impl EnqueueOptions {
    /// Refuses options no executor could honour on `queue` (`partitioned`: its definition,
    /// when known), before anything is written.
    pub(crate) fn check(&self, queue: &str, partitioned: Option<bool>) -> Result<()> {
        if queue.trim().is_empty() {
            return Err(Error::invalid(
                "the queue name is blank: give the name of a queue some executor serves",
            ));
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
        if self.partition_key.is_some() && self.deduplication_id.is_some() {
            return Err(Error::invalid(format!(
                "queue `{queue}`: a deduplication id cannot be combined with a partition key (DBOS deduplicates only \
                 on queues without partitions); drop one of them"
            )));
        }
        check_partition(queue, partitioned, self.partition_key.as_deref())
    }

    /// The queue columns of the new row; the delay ends `delay` after `now_ms`.
    pub(crate) fn fields<'a>(&'a self, queue: &'a str, now_ms: i64) -> QueueFields<'a> {
        QueueFields {
            queue_name: queue,
            priority: self.priority,
            deduplication_id: self.deduplication_id.as_deref(),
            partition_key: self.partition_key.as_deref(),
            delay_until_ms: self.delay.map(|d| now_ms.saturating_add(clamped_ms(d))),
            ..QueueFields::default()
        }
    }
}

/// Refuses a partition key that would keep a workflow on `queue` from ever being dequeued:
/// a missing one on a partitioned queue, one on a queue without partitions (the internal
/// queue has none), a blank one. `partitioned`: the queue's definition, when known.
pub(crate) fn check_partition(
    queue: &str,
    partitioned: Option<bool>,
    key: Option<&str>,
) -> Result<()> {
    match (partitioned, key) {
        (_, Some(k)) if k.trim().is_empty() => Err(Error::invalid(format!(
            "queue `{queue}`: the partition key is blank; give a non-empty partition_key(..), or none"
        ))),
        (Some(true), None) => Err(Error::invalid(format!(
            "queue `{queue}` is partitioned: give the workflow a partition_key(..) (its partition's limits apply \
             to it); without one no executor would ever dequeue it"
        ))),
        (Some(false), Some(_)) if queue == INTERNAL_QUEUE => Err(Error::invalid(format!(
            "the internal queue `{INTERNAL_QUEUE}` (where a fork, rewind or resume goes by default) is not \
             partitioned, so a partition key means nothing there: name a partitioned queue with .queue(..), or drop \
             the partition key"
        ))),
        (Some(false), Some(_)) => Err(Error::invalid(format!(
            "queue `{queue}` is not partitioned, so a partition key would keep the workflow from ever being \
             dequeued: drop the partition_key(..), or declare the queue with .partitioned()"
        ))),
        _ => Ok(()),
    }
}

/// Whether `queue` is partitioned, or `None` when no executor registered it: the internal
/// queue (never partitioned), the queues of `runtime` (no read), else the definition
/// recorded in `dbos.queues`.
pub(crate) async fn queue_partitioned(
    sysdb: &SystemDatabase,
    runtime: Option<&RuntimeInner>,
    queue: &str,
) -> Result<Option<bool>> {
    if queue == INTERNAL_QUEUE {
        return Ok(Some(false));
    }
    if let Some(q) = runtime.and_then(|rt| rt.config.queues.iter().find(|q| q.name() == queue)) {
        return Ok(Some(q.partitioned));
    }
    sysdb.queue_partitioned(queue).await
}

/// Whether `queue` is registered (served by `runtime`, or recorded in `dbos.queues`); warns
/// when it is not, since what is put on it then waits until an executor serving it starts.
pub(crate) async fn warn_if_unregistered(
    sysdb: &SystemDatabase,
    runtime: Option<&RuntimeInner>,
    queue: &str,
    workflow: &str,
) -> Result<()> {
    if queue_partitioned(sysdb, runtime, queue).await?.is_none() {
        warn_unregistered(queue, workflow);
    }
    Ok(())
}

/// The warning for work put on a queue no executor registered.
pub(crate) fn warn_unregistered(queue: &str, workflow: &str) {
    tracing::warn!(
        queue,
        workflow,
        "queue `{queue}` is not registered: no executor of this application serves it and `dbos.queues` has no \
         row for it, so workflow `{workflow}` stays ENQUEUED until an executor serving `{queue}` starts. Register \
         the queue with Config::queue(..) in the executors that should run it (or check the name for a typo); \
         list_unrunnable_workflows shows what waits on it"
    );
}

/// Generates the queue-option setters of an enqueue builder whose options are in
/// `self.options` ([`EnqueueOptions`]): the same options, documented once.
macro_rules! enqueue_option_setters {
    () => {
        /// The workflow's priority, from 0 (the default, and the first to run) to 2³¹−1:
        /// lower runs first, and equal priorities run in enqueue order. A negative priority
        /// is refused with [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument).
        pub fn priority(mut self, priority: i32) -> Self {
            self.options.priority = priority;
            self
        }

        /// Rejects the enqueue ([`ErrorKind::QueueDeduplicated`](crate::ErrorKind::QueueDeduplicated))
        /// while another workflow with this id is active on the queue; the id is free again
        /// once that workflow completes. Not allowed with a partition key (as in DBOS).
        pub fn deduplication_id(mut self, id: impl Into<String>) -> Self {
            self.options.deduplication_id = Some(id.into());
            self
        }

        /// With a deduplication id: instead of failing, return a handle to the active
        /// workflow holding the id.
        pub fn return_existing_on_duplicate(mut self) -> Self {
            self.options.return_existing = true;
            self
        }

        /// The partition of a partitioned queue this workflow belongs to (required there,
        /// refused on a queue without partitions).
        pub fn partition_key(mut self, key: impl Into<String>) -> Self {
            self.options.partition_key = Some(key.into());
            self
        }

        /// Keeps the workflow `DELAYED` for `delay` before it becomes eligible to run (at
        /// most 100 years: a longer delay is taken as 100 years).
        pub fn delay(mut self, delay: Duration) -> Self {
            self.options.delay = Some(delay);
            self
        }

        /// Only executors of this application version may run it (default: the caller's
        /// for an in-process enqueue; any executor of the latest version for a client).
        pub fn app_version(mut self, version: impl Into<String>) -> Self {
            self.options.app_version = Some(version.into());
            self
        }
    };
}
pub(crate) use enqueue_option_setters;

/// A workflow call on its way to a queue; options chain before `.await`, which returns a
/// [`WorkflowHandle`].
#[must_use = "nothing is enqueued until the call is awaited"]
pub struct QueuedCall<T, E> {
    call: WorkflowCall<T, E>,
    queue: Queue,
    options: EnqueueOptions,
}

impl<T, E> std::fmt::Debug for QueuedCall<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedCall")
            .field("call", &self.call)
            .field("queue", &self.queue.name())
            .field("options", &self.options)
            .finish()
    }
}

impl<T, E> QueuedCall<T, E> {
    enqueue_option_setters!();

    /// Attaches attributes (a JSON object) to the workflow, as
    /// [`WorkflowCall::attributes`] does.
    pub fn attributes(mut self, attributes: Value) -> Self {
        self.call.attributes = Some(attributes);
        self
    }
}

impl<T: Portable, E: WorkflowError> QueuedCall<T, E> {
    async fn enqueue(self) -> Result<WorkflowHandle<T, E>> {
        if let Some(id) = &self.call.id {
            check_id(id)?;
        }
        check_attributes(self.call.attributes.as_ref())?;
        let queue_name = self.queue.name().to_owned();
        self.options
            .check(&queue_name, Some(self.queue.partitioned))?;
        let args: Vec<Value> = self.call.args.into_iter().collect::<Result<_>>()?;
        let inputs = PortableInputs::positional(args).to_text()?;
        let def = self.call.def;
        let timeout_ms = timeout_ms(self.call.timeout, "workflow")?;
        let identity = crate::workflow::identity::for_start(def, self.call.identity).await?;
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
        // A delay is durable time: it ends on the runtime's clock.
        let fields = self.options.fields(&queue_name, rt.config.clock.now_ms());
        let creator = uuid::Uuid::new_v4().to_string();
        let app_version = self
            .options
            .app_version
            .clone()
            .unwrap_or_else(|| rt.app_version.clone());
        // The workflow's executions join the trace of this enqueue.
        let stamped =
            crate::observe::carrier::stamp(self.call.attributes.as_ref(), &Span::current());
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
            attributes: stamped.as_ref().or(self.call.attributes.as_ref()),
            reject_existing: self.call.id_reuse == IdReusePolicy::Reject,
            identity: (!identity.is_empty()).then_some(&identity),
        };
        match insert(&rt, &new, parent.as_ref().map(|p| &*p.ctx)).await {
            Ok(row) => {
                if row.created {
                    rt.wake_queue(&queue_name);
                    warn_if_unregistered(&rt.sysdb, Some(&rt), &queue_name, &id).await?;
                }
                Ok(WorkflowHandle::attach(rt, id))
            }
            Err(e) if e.kind() == ErrorKind::QueueDeduplicated => {
                let options = &self.options;
                let holder = match (options.return_existing, options.deduplication_id.as_deref()) {
                    (true, Some(dedup)) => rt.sysdb.deduplicated_holder(&queue_name, dedup).await?,
                    _ => None,
                };
                let holder = match &parent {
                    // Inside a workflow the refusal (or the holder returned) is recorded at
                    // the enqueue's step id, so a replay gives the same answer even after
                    // the deduplication id was freed.
                    Some(p) => {
                        record_refusal(&p.ctx, p.function_id, def.name, holder.as_deref(), &e)
                            .await?
                    }
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

/// Enqueues `call`: what awaiting a [`QueuedCall`] does, captured by [`WorkflowCall::new`]
/// where the types are known to qualify.
pub(crate) fn run<T: Portable, E: WorkflowError>(call: QueuedCall<T, E>) -> Started<T, E> {
    Box::pin(async move {
        // Opened when first polled: a child of the span the caller awaits it in.
        let span = observe::operation(Op::Enqueue, call.call.def.name);
        call.enqueue().instrument(span).await.map_err(E::from)
    })
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
    if let Some(id) = &id {
        check_id(id)?;
    }
    let options = EnqueueOptions::default();
    let partitioned = if queue.trim().is_empty() {
        None
    } else {
        queue_partitioned(&rt.sysdb, Some(rt), queue).await?
    };
    options.check(queue, partitioned).map_err(|e| {
        if partitioned == Some(true) {
            Error::invalid(format!(
                "queue `{queue}` is partitioned, and an enqueue by name carries no partition key: no executor would \
                 ever dequeue it; enqueue through the workflow's own call with .partition_key(..), or with a \
                 Client's enqueue"
            ))
        } else {
            e
        }
    })?;
    let inputs = PortableInputs::positional(args).to_text()?;
    let fresh_id = id.is_none();
    let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let creator = uuid::Uuid::new_v4().to_string();
    let span = observe::operation(Op::Enqueue, name);
    let stamped = observe::carrier::stamp(None, &span);
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
        queue: Some(options.fields(queue, rt.config.clock.now_ms())),
        attributes: stamped.as_ref(),
        reject_existing: false,
        identity: None,
    };
    let row = insert(rt, &new, None).instrument(span).await?;
    if row.created {
        rt.wake_queue(queue);
        if partitioned.is_none() {
            warn_unregistered(queue, &id);
        }
    }
    Ok(WorkflowHandle::attach(rt.clone(), id))
}
