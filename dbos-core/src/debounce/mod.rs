//! Debouncing (DBOS's `Debouncer`): many calls of one workflow with one key, inside a
//! window, become one run, with the last call's inputs.
//!
//! ```no_run
//! use std::time::Duration;
//! use dbos_core::{debounce::Debouncer, workflow, Error};
//!
//! #[workflow]
//! async fn reindex(user: String, edits: u32) -> Result<(), Error> {
//!     let _ = (user, edits);
//!     Ok(())
//! }
//!
//! // Start at most 10 minutes after the first call of a burst, whatever follows.
//! static REINDEX: Debouncer = Debouncer::new().timeout(Duration::from_secs(600));
//!
//! # async fn on_edit(user: String, edits: u32) -> dbos_core::Result<()> {
//! // Each edit pushes the start 30 s further (up to the timeout); the run gets the last edit's inputs.
//! let handle = REINDEX
//!     .debounce(&user, Duration::from_secs(30), reindex(user.clone(), edits))
//!     .await?;
//! # let _ = handle; Ok(()) }
//! # let _ = on_edit;
//! ```
//!
//! The first call enqueues the workflow `DELAYED` (on the debouncer's queue, by default the
//! internal queue) until `now + period`, with DBOS's debounce columns: `deduplication_id =
//! "<workflow name>-<key>"`, `is_debounced`, and `debounce_deadline_epoch_ms = now +
//! timeout`. A call while that row is still `DELAYED` pushes its start to `min(now + period,
//! deadline)` and replaces its inputs, in one statement under the row's lock. The key is
//! released when the delay sweep enqueues the workflow: a call after that starts a new one.
//! Two executors (or clients) debouncing one key at once make one workflow: the unique index
//! on `(queue_name, deduplication_id)` lets one first call insert the row, and the other
//! pushes it. The rows are DBOS's, so DBOS Python's `Debouncer` and `DebouncerClient` and
//! ours push each other's workflows.
//!
//! Inside a workflow a debounce is recorded at its step id (as the start of the workflow it
//! pushed or created, in the same statement), so a replay returns that workflow and pushes
//! nothing.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::client::Client;
use crate::codec::PortableInputs;
use crate::error::{Error, ErrorKind, Result};
use crate::queue::Queue;
use crate::runtime::RuntimeInner;
use crate::sysdb::debounce::{Bounce, BounceOutcome};
use crate::sysdb::workflows::{
    clamped_ms, now_ms, timeout_ms, NewWorkflow, QueueFields, INTERNAL_QUEUE,
};
use crate::sysdb::SystemDatabase;
use crate::workflow::call::{check_attributes, WorkflowCall, WorkflowHandle};
use crate::workflow::context::{current, Slot};
use crate::workflow::identity::Identity;
use crate::workflow::placement::{
    check_id, insert, record_refusal, replayed_refusal, IdReusePolicy, Parent, Placement,
};
use crate::workflow::types::{Portable, WorkflowError};

/// How many times a call retries when the key's holder was leaving `DELAYED` while the call
/// looked at it (the sweep enqueued it meanwhile); each retry sees the sweep's commit.
const HOLDER_RETRIES: u32 = 100;

/// Debounces calls of workflows: see the [module documentation](self).
///
/// A debouncer holds the options (the timeout, the queue); one debouncer serves any
/// workflow, and the keys of different workflows never meet (the workflow's name is part of
/// the deduplication id).
#[derive(Debug, Clone, Default)]
pub struct Debouncer {
    timeout: Option<Duration>,
    queue: Option<Queue>,
}

impl Debouncer {
    /// A debouncer without a timeout (calls may push a start indefinitely) on the internal
    /// queue.
    pub const fn new() -> Debouncer {
        Debouncer {
            timeout: None,
            queue: None,
        }
    }

    /// Caps how far calls push a start: the workflow starts at most `timeout` after the
    /// first call of its window (DBOS's `debounce_timeout_sec`). Zero, or a period longer
    /// than it, is refused at the call.
    pub const fn timeout(mut self, timeout: Duration) -> Debouncer {
        self.timeout = Some(timeout);
        self
    }

    /// Enqueues the debounced workflows on `queue` (default: the internal queue, which
    /// every executor serves). A partitioned queue is refused at the call: DBOS deduplicates
    /// only on queues without partitions.
    pub fn queue(mut self, queue: &Queue) -> Debouncer {
        self.queue = Some(queue.clone());
        self
    }

    /// Checks a call of workflow `name` with these options, before anything is written.
    fn plan<'a>(&'a self, name: &'a str, key: &str, period: Duration) -> Result<Plan<'a>> {
        let queue = self.queue.as_ref().map_or(INTERNAL_QUEUE, |q| q.name());
        let partitioned = self.queue.as_ref().is_some_and(|q| q.partitioned);
        Plan::new(name, key, period, self.timeout, queue, partitioned)
    }

    /// Debounces `call` under `key`: the workflow runs once, `period` after the last call of
    /// the window (at most the timeout after the first), with the last call's arguments.
    /// Returns the handle of that workflow (every call of a window returns the same one).
    ///
    /// The call's `.id(..)` names the workflow only if this call creates it; its
    /// `.timeout(..)`, `.attributes(..)` and identity apply likewise.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`], with nothing written: a blank key, a zero period, a
    /// period longer than the timeout, a zero timeout, a partitioned queue, the
    /// [`IdReusePolicy::Reject`] policy (a debounce returns the workflow holding the key).
    /// [`ErrorKind::QueueDeduplicated`] when the key's deduplication id is held by a
    /// workflow that is not a debounced run of this workflow (an enqueue given that
    /// deduplication id by hand).
    pub async fn debounce<T: Portable, E: WorkflowError>(
        &self,
        key: &str,
        period: Duration,
        call: WorkflowCall<T, E>,
    ) -> Result<WorkflowHandle<T, E>> {
        let plan = self.plan(call.def.name, key, period)?;
        if let Some(id) = &call.id {
            check_id(id)?;
        }
        check_attributes(call.attributes.as_ref())?;
        if call.id_reuse == IdReusePolicy::Reject {
            return Err(Error::invalid(
                "a debounce returns the workflow holding its key, so the `reject` id reuse policy cannot apply; \
                 drop .id_reuse_policy(IdReusePolicy::Reject)",
            ));
        }
        let timeout = timeout_ms(call.timeout, "workflow")?;
        let args: Vec<Value> = call.args.into_iter().collect::<Result<_>>()?;
        let inputs = PortableInputs::positional(args).to_text()?;
        let def = call.def;
        let identity = crate::workflow::identity::for_start(def, call.identity).await?;
        let (rt, parent, id, fresh_id) = match current() {
            Some(ctx) => match ctx.begin(def.name)? {
                Slot::Recorded {
                    checkpoint,
                    function_id,
                } => {
                    return match (checkpoint.child_workflow_id, checkpoint.error) {
                        (Some(recorded), _) => {
                            Ok(WorkflowHandle::attach(ctx.runtime.clone(), recorded))
                        }
                        (None, Some(error)) => {
                            Err(replayed_refusal(&error, checkpoint.serialization.as_deref()))
                        }
                        (None, None) => Err(ctx.fail(
                            Error::new(
                                ErrorKind::UnexpectedStep,
                                format!(
                                    "step {function_id} of workflow `{}` is not a debounce of workflow `{}`",
                                    ctx.workflow_id, def.name
                                ),
                            )
                            .with_step(def.name, function_id),
                        )),
                    };
                }
                Slot::Fresh { function_id } => {
                    let id = call
                        .id
                        .unwrap_or_else(|| format!("{}-{function_id}", ctx.workflow_id));
                    let owner = ctx.owner();
                    let rt = ctx.runtime.clone();
                    let parent = Parent {
                        ctx,
                        function_id,
                        owner,
                    };
                    (rt, Some(parent), id, false)
                }
            },
            None => match Placement::resolve(def.name, call.id, call.runtime.as_ref())? {
                Placement::New {
                    rt, id, fresh_id, ..
                } => (rt, None, id, fresh_id),
                Placement::Recorded { rt, id } => return Ok(WorkflowHandle::attach(rt, id)),
            },
        };
        let app_version = rt.app_version.clone();
        let fresh = Fresh {
            id: &id,
            fresh_id,
            app_version: Some(&app_version),
            timeout_ms: timeout,
            // Children inherit the parent's deadline, as enqueued children do.
            deadline_ms: parent.as_ref().and_then(|p| p.ctx.deadline_ms),
            attributes: call.attributes.as_ref(),
            identity: (!identity.is_empty()).then_some(&identity),
        };
        let id = plan
            .run(
                &inputs,
                &fresh,
                Caller::Runtime {
                    rt: &rt,
                    parent: parent.as_ref(),
                },
            )
            .await?;
        Ok(WorkflowHandle::attach(rt, id))
    }

    /// [`debounce`](Self::debounce) from a [`Client`], by the workflow's registered name
    /// with JSON arguments (the workflow need not be in this binary): the same rows, so the
    /// calls of clients and executors on one key push one workflow. Times are the system
    /// clock's.
    ///
    /// # Errors
    /// As [`debounce`](Self::debounce), and [`ErrorKind::InvalidArgument`] for a blank
    /// workflow name.
    pub async fn debounce_from_client(
        &self,
        client: &Client,
        workflow: &str,
        key: &str,
        period: Duration,
        args: Vec<Value>,
    ) -> Result<WorkflowHandle<Value, Error>> {
        if workflow.trim().is_empty() {
            return Err(Error::invalid(
                "the workflow name is blank: give the registered name of the workflow to debounce",
            ));
        }
        let plan = self.plan(workflow, key, period)?;
        let inputs = PortableInputs::positional(args).to_text()?;
        let id = uuid::Uuid::new_v4().to_string();
        let fresh = Fresh {
            id: &id,
            fresh_id: true,
            app_version: None,
            timeout_ms: None,
            deadline_ms: None,
            attributes: None,
            identity: None,
        };
        let id = plan.run(&inputs, &fresh, Caller::Client(client)).await?;
        Ok(WorkflowHandle::detached(
            client.system_database().clone(),
            id,
        ))
    }
}

/// A checked debounce call.
struct Plan<'a> {
    name: &'a str,
    queue: &'a str,
    deduplication_id: String,
    period_ms: i64,
    timeout_ms: Option<i64>,
}

/// The new workflow's columns, when a call creates it.
struct Fresh<'a> {
    id: &'a str,
    fresh_id: bool,
    app_version: Option<&'a str>,
    timeout_ms: Option<i64>,
    deadline_ms: Option<i64>,
    attributes: Option<&'a Value>,
    identity: Option<&'a Identity>,
}

/// Who debounces: an executor (inside a workflow, with its step), or a client.
#[derive(Clone, Copy)]
enum Caller<'a> {
    Runtime {
        rt: &'a Arc<RuntimeInner>,
        parent: Option<&'a Parent>,
    },
    Client(&'a Client),
}

impl Caller<'_> {
    fn sysdb(&self) -> &SystemDatabase {
        match self {
            Caller::Runtime { rt, .. } => &rt.sysdb,
            Caller::Client(c) => c.system_database(),
        }
    }

    fn app_name(&self) -> Option<&str> {
        match self {
            Caller::Runtime { rt, .. } => Some(&rt.app_name),
            Caller::Client(c) => c.application_name(),
        }
    }

    /// Durable time: the runtime's clock (a test clock in tests), the system's for a client.
    fn now_ms(&self) -> i64 {
        match self {
            Caller::Runtime { rt, .. } => rt.config.clock.now_ms(),
            Caller::Client(_) => now_ms(),
        }
    }

    fn parent(&self) -> Option<&Parent> {
        match self {
            Caller::Runtime { parent, .. } => *parent,
            Caller::Client(_) => None,
        }
    }

    /// A database failure inside a workflow stops it (its history may be incomplete), as a
    /// child start's does.
    fn failed(&self, e: Error) -> Error {
        match self.parent() {
            Some(p) if matches!(e.kind(), ErrorKind::Connection | ErrorKind::Database) => {
                p.ctx.fail(e)
            }
            _ => e,
        }
    }

    /// Inserts the fresh debounced workflow; `Ok(false)`: a concurrent call inserted one
    /// first (the key is held), nothing was written.
    async fn insert(&self, new: &NewWorkflow<'_>) -> Result<bool> {
        let inserted = match self {
            Caller::Runtime { rt, parent } => {
                insert(rt, new, parent.map(|p| &*p.ctx)).await.map(|_| ())
            }
            // A client's id is a fresh UUID: the row is new, never another workflow's.
            Caller::Client(c) => match c.system_database().start_workflow(new).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(Error::new(
                    ErrorKind::Database,
                    format!("workflow `{}` was not inserted", new.id),
                )),
                Err(e) => Err(e),
            },
        };
        match inserted {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::QueueDeduplicated => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl<'a> Plan<'a> {
    /// Checks a call's options before anything is written.
    fn new(
        name: &'a str,
        key: &str,
        period: Duration,
        timeout: Option<Duration>,
        queue: &'a str,
        partitioned: bool,
    ) -> Result<Plan<'a>> {
        if key.trim().is_empty() {
            return Err(Error::invalid(format!(
                "the debounce key of workflow `{name}` is blank: give the key whose calls are to become one run \
                 (a user id, a document id)"
            )));
        }
        if period.is_zero() {
            return Err(Error::invalid(format!(
                "a debounce period of 0 for workflow `{name}` would start it at once, debouncing nothing: give a \
                 positive period (how long after the last call the workflow starts)"
            )));
        }
        let timeout_ms = match timeout {
            Some(t) if t.is_zero() => {
                return Err(Error::invalid(format!(
                    "the debounce timeout of workflow `{name}` is 0, so no call could push its start: give a \
                     positive timeout, or none"
                )))
            }
            Some(t) if period > t => {
                return Err(Error::invalid(format!(
                    "the debounce period {period:?} of workflow `{name}` is longer than the debouncer's timeout \
                     {t:?}, so no call could ever wait its whole period: give a period of at most the timeout, or a \
                     longer timeout"
                )))
            }
            Some(t) => Some(clamped_ms(t).max(1)),
            None => None,
        };
        if queue.trim().is_empty() {
            return Err(Error::invalid(
                "the queue name is blank: give the name of a queue some executor serves",
            ));
        }
        if partitioned {
            return Err(partitioned_queue(queue));
        }
        Ok(Plan {
            name,
            queue,
            deduplication_id: format!("{name}-{key}"),
            period_ms: clamped_ms(period).max(1),
            timeout_ms,
        })
    }

    /// Pushes the workflow holding the key, or creates it; returns its id.
    async fn run(&self, inputs: &str, fresh: &Fresh<'_>, caller: Caller<'_>) -> Result<String> {
        let sysdb = caller.sysdb();
        let mut holder_retries = 0;
        loop {
            if let Caller::Runtime { rt, parent: None } = caller {
                rt.check_accepting()?;
            }
            let now = caller.now_ms();
            let until = now.saturating_add(self.period_ms);
            let parent = caller.parent();
            let bounce = Bounce {
                name: self.name,
                queue: self.queue,
                deduplication_id: &self.deduplication_id,
                until_ms: until,
                inputs,
                app_name: caller.app_name(),
                parent: parent.map(|p| crate::sysdb::workflows::ParentLink {
                    workflow_id: &p.ctx.workflow_id,
                    owner_xid: &p.owner,
                    function_id: p.function_id,
                }),
            };
            let outcome = sysdb.bounce(&bounce).await.map_err(|e| caller.failed(e))?;
            match outcome {
                BounceOutcome::Bounced(id) | BounceOutcome::Recorded(id) => return Ok(id),
                BounceOutcome::NotOwner => {
                    let p = parent.ok_or_else(|| {
                        Error::new(
                            ErrorKind::Database,
                            "a debounce outside a workflow found no owner to check",
                        )
                    })?;
                    return Err(p.ctx.fail(sysdb.ownership_error(&p.ctx.workflow_id).await));
                }
                BounceOutcome::Held {
                    workflow_id,
                    debounced,
                    name,
                    app_name,
                } => {
                    let foreign_app = matches!((caller.app_name(), &app_name), (Some(mine), Some(theirs)) if mine != theirs);
                    if debounced
                        && name == self.name
                        && !foreign_app
                        && holder_retries < HOLDER_RETRIES
                    {
                        // The holder was leaving DELAYED as this call looked (the sweep
                        // enqueued it, releasing the key): look again.
                        holder_retries += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    let holder = Holder {
                        id: &workflow_id,
                        debounced,
                        name: &name,
                        foreign_app: app_name.as_deref().filter(|_| foreign_app),
                    };
                    let refusal = self.held_by(&holder);
                    if let Some(p) = parent {
                        record_refusal(&p.ctx, p.function_id, self.name, None, &refusal).await?;
                    }
                    return Err(refusal);
                }
                BounceOutcome::Free => {
                    let deadline = self.timeout_ms.map(|t| now.saturating_add(t));
                    let new = NewWorkflow {
                        id: fresh.id,
                        fresh_id: fresh.fresh_id,
                        name: self.name,
                        creator_xid: &uuid::Uuid::new_v4().to_string(),
                        owner_xid: None,
                        executor_id: None,
                        app_version: fresh.app_version,
                        app_name: caller.app_name(),
                        inputs,
                        timeout_ms: fresh.timeout_ms,
                        deadline_ms: fresh.deadline_ms,
                        parent: bounce.parent.clone(),
                        queue: Some(QueueFields {
                            queue_name: self.queue,
                            deduplication_id: Some(&self.deduplication_id),
                            delay_until_ms: Some(deadline.map_or(until, |d| until.min(d))),
                            debounced: true,
                            debounce_deadline_ms: deadline,
                            ..QueueFields::default()
                        }),
                        attributes: fresh.attributes,
                        reject_existing: false,
                        identity: fresh.identity,
                    };
                    if caller.insert(&new).await? {
                        return Ok(fresh.id.to_owned());
                    }
                    // A concurrent first call inserted it: push that one.
                }
            }
        }
    }

    /// The refusal when the key's deduplication id is held by what a debounce must not push.
    fn held_by(&self, holder: &Holder<'_>) -> Error {
        let (queue, dedup, id, name) = (self.queue, &self.deduplication_id, holder.id, holder.name);
        let why = if !holder.debounced {
            format!(
                "workflow `{id}` ({name}), enqueued with that deduplication id by hand, holds it"
            )
        } else if name != self.name {
            format!("a debounced run of workflow `{name}` (`{id}`) holds it: its name and key read the same")
        } else if let Some(app) = holder.foreign_app {
            format!("a debounced run (`{id}`) of application `{app}` holds it, and is not this application's to push")
        } else {
            format!(
                "a debounced run (`{id}`) holds it but is no longer DELAYED, so it cannot be pushed (its key should \
                 have been released when it left DELAYED: was the row changed by hand?)"
            )
        };
        Error::new(
            ErrorKind::QueueDeduplicated,
            format!(
                "cannot debounce workflow `{}` under deduplication id `{dedup}` on queue `{queue}`: {why}. Use another \
                 key (or queue); the id is free again once that workflow leaves the queue",
                self.name
            ),
        )
        .with_workflow_id(id)
    }
}

/// The row holding a key that a call could not push.
struct Holder<'a> {
    id: &'a str,
    debounced: bool,
    name: &'a str,
    /// The holder's application, when it is not the caller's.
    foreign_app: Option<&'a str>,
}

/// The refusal of a partitioned queue.
fn partitioned_queue(queue: &str) -> Error {
    Error::invalid(format!(
        "queue `{queue}` is partitioned, and a debounce needs the deduplication DBOS allows only on queues without \
         partitions: debounce onto a queue without partitions"
    ))
}
