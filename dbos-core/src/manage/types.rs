//! What management operations return: typed rows that never fail to build (a value this
//! library cannot decode is kept as the stored text), with DBOS's JSON rendering.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use crate::codec::{check_serialization, PortableError, PortableInputs};
use crate::error::{Error, ErrorKind, Result};
use crate::queue::RateLimit;
use crate::sysdb::manage::{QueueDepth, QueueRow, StepRow, VersionRow, WorkflowRow};
use crate::workflow::call::Status;

/// A stored value as listed: decoded when it is in an encoding this library reads
/// (`portable_json`), else the text as stored, with the reason. Listing never fails because
/// of one value: a workflow written by DBOS Python's pickle serializer lists with its input
/// as [`Payload::Raw`].
///
/// Recorded inside a workflow (as part of a `DBOS.listWorkflows` answer) as
/// `{"decoded": value}` or `{"raw": {"text": ..., "serialization": ..., "reason": ...}}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Payload<T> {
    /// The decoded value.
    Decoded(T),
    /// A value this library cannot decode.
    Raw {
        /// The stored text.
        text: String,
        /// The row's `serialization` column.
        serialization: Option<String>,
        /// Why it did not decode.
        reason: String,
    },
}

impl<T> Payload<T> {
    /// The decoded value, if it decoded.
    pub fn decoded(&self) -> Option<&T> {
        match self {
            Payload::Decoded(v) => Some(v),
            Payload::Raw { .. } => None,
        }
    }

    /// The stored text of a value that did not decode.
    pub fn raw_text(&self) -> Option<&str> {
        match self {
            Payload::Decoded(_) => None,
            Payload::Raw { text, .. } => Some(text),
        }
    }

    fn map_json(&self, f: impl FnOnce(&T) -> Value) -> Value {
        match self {
            Payload::Decoded(v) => f(v),
            Payload::Raw { text, .. } => Value::String(text.clone()),
        }
    }
}

/// Decodes a stored value; any failure keeps the text.
pub(crate) fn decode<T: DeserializeOwned>(
    text: Option<String>,
    serialization: Option<&str>,
    what: &str,
) -> Option<Payload<T>> {
    let text = text?;
    let decoded = check_serialization(serialization, what).and_then(|()| {
        serde_json::from_str::<T>(&text).map_err(|e| {
            Error::new(
                ErrorKind::Serialization,
                format!("{what} does not decode: {e}"),
            )
        })
    });
    Some(match decoded {
        Ok(v) => Payload::Decoded(v),
        Err(e) => Payload::Raw {
            text,
            serialization: serialization.map(str::to_owned),
            reason: e.message().to_owned(),
        },
    })
}

/// A workflow as listed: its status row, with its input and outcome decoded where they
/// decode. Times are milliseconds since the Unix epoch, as stored. The field names are
/// DBOS's (`WorkflowStatus` in its SDKs), and [`to_dbos_json`](Self::to_dbos_json) renders
/// the JSON DBOS's CLI prints. Inside a workflow a listing is recorded (`DBOS.listWorkflows`,
/// `DBOS.getStatus`) as these fields, by name.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct WorkflowInfo {
    /// The workflow id.
    pub workflow_id: String,
    /// The status.
    pub status: Status,
    /// The registered workflow name.
    pub name: String,
    /// The class of a workflow method (other SDKs).
    pub class_name: Option<String>,
    /// The configured instance of a workflow method (other SDKs).
    pub config_name: Option<String>,
    /// The user who ran it, if recorded.
    pub authenticated_user: Option<String>,
    /// The role it ran with, if recorded.
    pub assumed_role: Option<String>,
    /// The roles the user could assume, if recorded.
    pub authenticated_roles: Option<Vec<String>>,
    /// The input (`None` when absent or not loaded).
    pub input: Option<Payload<PortableInputs>>,
    /// The output of a `SUCCESS` workflow (`None` when absent or not loaded).
    pub output: Option<Payload<Value>>,
    /// The error of an `ERROR` workflow (`None` when absent or not loaded).
    pub error: Option<Payload<PortableError>>,
    /// When it was created.
    pub created_at: i64,
    /// When its status row last changed.
    pub updated_at: i64,
    /// Its queue, while it is on one.
    pub queue_name: Option<String>,
    /// The executor that last ran it.
    pub executor_id: Option<String>,
    /// The application version that runs it (`None`: any executor of the latest version).
    pub app_version: Option<String>,
    /// DBOS Cloud's application id, if recorded.
    pub app_id: Option<String>,
    /// Its timeout.
    pub workflow_timeout_ms: Option<i64>,
    /// Its deadline (set when it starts running).
    pub workflow_deadline_epoch_ms: Option<i64>,
    /// Its queue deduplication id, while active.
    pub deduplication_id: Option<String>,
    /// Its queue priority (lower runs first).
    pub priority: i32,
    /// Its partition on a partitioned queue.
    pub queue_partition_key: Option<String>,
    /// The workflow it was forked from.
    pub forked_from: Option<String>,
    /// Whether a fork was made from it.
    pub was_forked_from: bool,
    /// The workflow that started it.
    pub parent_workflow_id: Option<String>,
    /// When it was last dequeued (epoch ms): `None` for a workflow started directly (never
    /// on a queue), or put back on one and not dequeued since, as in DBOS.
    pub dequeued_at: Option<i64>,
    /// When a `DELAYED` workflow becomes eligible to run.
    pub delay_until_epoch_ms: Option<i64>,
    /// When it completed (`SUCCESS`, `ERROR`, `CANCELLED`, dead-lettered).
    pub completed_at: Option<i64>,
    /// Its attributes (a JSON object), if any.
    pub attributes: Option<Value>,
    /// The schedule that started it, if any.
    pub schedule_name: Option<String>,
    /// The application owning it (`None`: unclaimed).
    pub application_name: Option<String>,
    /// How many times it was dispatched (started, dequeued or recovered).
    pub recovery_attempts: i64,
    /// The encoding of its input and outcome (`portable_json` for this library's rows).
    pub serialization: Option<String>,
}

impl WorkflowInfo {
    pub(crate) fn from_row(r: WorkflowRow) -> WorkflowInfo {
        let id = r.workflow_id;
        let ser = r.serialization.as_deref();
        let input = decode::<PortableInputs>(r.inputs, ser, &format!("the input of `{id}`"));
        let output = decode::<Value>(r.output, ser, &format!("the output of `{id}`"));
        let error = decode::<PortableError>(r.error, ser, &format!("the error of `{id}`"));
        let authenticated_roles = r
            .authenticated_roles
            .and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok());
        WorkflowInfo {
            status: Status::parse(r.status.as_deref().unwrap_or_default()),
            name: r.name.unwrap_or_default(),
            class_name: r.class_name,
            config_name: r.config_name,
            authenticated_user: r.authenticated_user,
            assumed_role: r.assumed_role,
            authenticated_roles,
            input,
            output,
            error,
            created_at: r.created_at,
            updated_at: r.updated_at,
            queue_name: r.queue_name,
            executor_id: r.executor_id,
            app_version: r.app_version,
            app_id: r.app_id,
            workflow_timeout_ms: r.timeout_ms,
            workflow_deadline_epoch_ms: r.deadline_ms,
            deduplication_id: r.deduplication_id,
            priority: r.priority,
            queue_partition_key: r.partition_key,
            forked_from: r.forked_from,
            was_forked_from: r.was_forked_from,
            parent_workflow_id: r.parent_workflow_id,
            dequeued_at: r.started_at,
            delay_until_epoch_ms: r.delay_until,
            completed_at: r.completed_at,
            attributes: r.attributes.filter(|a| !a.is_null()),
            schedule_name: r.schedule_name,
            application_name: r.application_name,
            recovery_attempts: r.recovery_attempts.unwrap_or(0),
            serialization: r.serialization,
            workflow_id: id,
        }
    }

    /// The output decoded as `T`: `Ok(None)` when there is none (the workflow has not
    /// succeeded, or the listing left outputs out).
    ///
    /// # Errors
    /// [`ErrorKind::Serialization`] when the output is in a foreign encoding or does not
    /// have `T`'s shape.
    pub fn output_as<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        match &self.output {
            None => Ok(None),
            Some(Payload::Decoded(v)) => crate::codec::from_value(
                v.clone(),
                &format!("the output of workflow `{}`", self.workflow_id),
            )
            .map(Some),
            Some(Payload::Raw { reason, .. }) => {
                Err(Error::new(ErrorKind::Serialization, reason.clone())
                    .with_workflow_id(&self.workflow_id))
            }
        }
    }

    /// The JSON DBOS's CLI prints for a workflow (`dbos workflow get`), with its keys:
    /// `input` as `{"args": [...], "kwargs": {...}}`, `error` as the error's message, a value
    /// that does not decode as its stored text.
    pub fn to_dbos_json(&self) -> Value {
        let input = self
            .input
            .as_ref()
            .map(|p| p.map_json(|i| json!({"args": i.positional_args, "kwargs": i.named_args})));
        let output = self.output.as_ref().map(|p| p.map_json(Clone::clone));
        let error = self
            .error
            .as_ref()
            .map(|p| p.map_json(|e| Value::String(e.message.clone())));
        json!({
            "workflow_id": self.workflow_id,
            "status": self.status.as_str(),
            "name": self.name,
            "recovery_attempts": self.recovery_attempts,
            "config_name": self.config_name,
            "class_name": self.class_name,
            "authenticated_user": self.authenticated_user,
            "authenticated_roles": self.authenticated_roles,
            "assumed_role": self.assumed_role,
            "queue_name": self.queue_name,
            "executor_id": self.executor_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "app_version": self.app_version,
            "app_id": self.app_id,
            "workflow_deadline_epoch_ms": self.workflow_deadline_epoch_ms,
            "workflow_timeout_ms": self.workflow_timeout_ms,
            "deduplication_id": self.deduplication_id,
            "priority": self.priority,
            "queue_partition_key": self.queue_partition_key,
            "forked_from": self.forked_from,
            "parent_workflow_id": self.parent_workflow_id,
            "dequeued_at": self.dequeued_at,
            "delay_until_epoch_ms": self.delay_until_epoch_ms,
            "was_forked_from": self.was_forked_from,
            "completed_at": self.completed_at,
            "attributes": self.attributes,
            "schedule_name": self.schedule_name,
            "application_name": self.application_name,
            "shard_key": Value::Null,
            "parent_shard_key": Value::Null,
            "input": input,
            "output": output,
            "error": error,
        })
    }
}

/// One recorded operation of a workflow (a step, a child start, a sleep, ...), as listed
/// (and recorded by `DBOS.listWorkflowSteps` inside a workflow, as these fields by name).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct StepInfo {
    /// Its step id (the first operation is 1).
    pub function_id: i32,
    /// Its name (`charge_card`, `DBOS.sleep`, a child workflow's name, ...).
    pub function_name: String,
    /// Its recorded output, if any.
    pub output: Option<Payload<Value>>,
    /// Its recorded error, if any.
    pub error: Option<Payload<PortableError>>,
    /// The workflow it started or awaited, if any.
    pub child_workflow_id: Option<String>,
    /// When it started (epoch ms).
    pub started_at_epoch_ms: Option<i64>,
    /// When it completed (epoch ms; a sleep records its wake-up time).
    pub completed_at_epoch_ms: Option<i64>,
}

impl StepInfo {
    pub(crate) fn from_row(workflow_id: &str, r: StepRow) -> StepInfo {
        let ser = r.serialization.as_deref();
        let what = |part: &str| format!("the {part} of step {} of `{workflow_id}`", r.function_id);
        StepInfo {
            output: decode(r.output, ser, &what("output")),
            error: decode(r.error, ser, &what("error")),
            function_id: r.function_id,
            function_name: r.function_name,
            child_workflow_id: r.child_workflow_id,
            started_at_epoch_ms: r.started_at,
            completed_at_epoch_ms: r.completed_at,
        }
    }

    /// The JSON DBOS's CLI prints for a step (`dbos workflow steps`).
    pub fn to_dbos_json(&self) -> Value {
        json!({
            "function_id": self.function_id,
            "function_name": self.function_name,
            "output": self.output.as_ref().map(|p| p.map_json(Clone::clone)),
            "error": self.error.as_ref().map(|p| p.map_json(|e| Value::String(e.message.clone()))),
            "child_workflow_id": self.child_workflow_id,
            "child_shard_key": Value::Null,
            "started_at_epoch_ms": self.started_at_epoch_ms,
            "completed_at_epoch_ms": self.completed_at_epoch_ms,
        })
    }
}

/// A registered application version.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VersionInfo {
    /// Its row id.
    pub version_id: String,
    /// The version.
    pub version_name: String,
    /// The time that orders versions: the latest version has the largest (epoch ms).
    pub version_timestamp: i64,
    /// When it was first registered (epoch ms).
    pub created_at: i64,
    /// The application owning it (`None`: unclaimed).
    pub application_name: Option<String>,
}

impl VersionInfo {
    pub(crate) fn from_row(r: VersionRow) -> VersionInfo {
        VersionInfo {
            version_id: r.version_id,
            version_name: r.version_name,
            version_timestamp: r.version_timestamp,
            created_at: r.created_at,
            application_name: r.application_name,
        }
    }

    /// DBOS's JSON for a version (`VersionInfo`).
    pub fn to_dbos_json(&self) -> Value {
        json!({
            "version_id": self.version_id,
            "version_name": self.version_name,
            "version_timestamp": self.version_timestamp,
            "created_at": self.created_at,
            "application_name": self.application_name,
        })
    }
}

/// A queue with its limits (as recorded in `dbos.queues` by the executors serving it) and
/// its depth.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct QueueInfo {
    /// The queue's name.
    pub name: String,
    /// Whether an executor registered it in `dbos.queues`. Workflows can sit on a queue no
    /// executor registered (enqueued by name, or DBOS's internal queue), which then has no
    /// recorded limits.
    pub registered: bool,
    /// At most this many run at once across every executor.
    pub concurrency: Option<u32>,
    /// At most this many run at once in each executor.
    pub worker_concurrency: Option<u32>,
    /// At most this many start per period.
    pub rate_limit: Option<RateLimit>,
    /// Whether workflows carry a partition key and the partition limits apply per key.
    pub partitioned: bool,
    /// Per partition, at most this many run at once.
    pub partition_concurrency: Option<u32>,
    /// Per partition and executor, at most this many run at once.
    pub partition_worker_concurrency: Option<u32>,
    /// Per partition, at most this many start per period.
    pub partition_rate_limit: Option<RateLimit>,
    /// How often executors poll it.
    pub polling_interval: Option<Duration>,
    /// The application owning it (`None`: unclaimed).
    pub application_name: Option<String>,
    /// Workflows waiting on it.
    pub enqueued: i64,
    /// Workflows dequeued from it and running (or to be recovered).
    pub pending: i64,
    /// Workflows waiting for their delay before they join it.
    pub delayed: i64,
}

impl QueueInfo {
    pub(crate) fn from_row(r: Option<QueueRow>, name: String, depth: QueueDepth) -> QueueInfo {
        let limit = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok());
        let rate = |max: Option<i32>, period: Option<f64>| match (limit(max), period) {
            (Some(max), Some(p)) if p.is_finite() && p >= 0.0 => Some(RateLimit {
                max,
                period: Duration::from_secs_f64(p),
            }),
            _ => None,
        };
        let registered = r.is_some();
        let r = r.unwrap_or(QueueRow {
            name: name.clone(),
            concurrency: None,
            worker_concurrency: None,
            rate_limit_max: None,
            rate_limit_period_sec: None,
            partitioned: false,
            partition_concurrency: None,
            partition_worker_concurrency: None,
            partition_rate_limit_max: None,
            partition_rate_limit_period_sec: None,
            polling_interval_sec: f64::NAN,
            application_name: None,
        });
        QueueInfo {
            registered,
            concurrency: limit(r.concurrency),
            worker_concurrency: limit(r.worker_concurrency),
            rate_limit: rate(r.rate_limit_max, r.rate_limit_period_sec),
            partitioned: r.partitioned
                || r.partition_concurrency.is_some()
                || r.partition_worker_concurrency.is_some()
                || r.partition_rate_limit_max.is_some(),
            partition_concurrency: limit(r.partition_concurrency),
            partition_worker_concurrency: limit(r.partition_worker_concurrency),
            partition_rate_limit: rate(
                r.partition_rate_limit_max,
                r.partition_rate_limit_period_sec,
            ),
            polling_interval: (r.polling_interval_sec.is_finite() && r.polling_interval_sec >= 0.0)
                .then(|| Duration::from_secs_f64(r.polling_interval_sec)),
            application_name: r.application_name,
            enqueued: depth.enqueued,
            pending: depth.pending,
            delayed: depth.delayed,
            name,
        }
    }

    /// The queue as JSON, with DBOS's names for the limits (`dbos.queues` columns) and the
    /// depth.
    pub fn to_dbos_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), json!(self.name));
        m.insert("registered".into(), json!(self.registered));
        m.insert("concurrency".into(), json!(self.concurrency));
        m.insert("worker_concurrency".into(), json!(self.worker_concurrency));
        m.insert(
            "rate_limit_max".into(),
            json!(self.rate_limit.map(|r| r.max)),
        );
        m.insert(
            "rate_limit_period_sec".into(),
            json!(self.rate_limit.map(|r| r.period.as_secs_f64())),
        );
        m.insert("partition_queue".into(), json!(self.partitioned));
        m.insert(
            "partition_concurrency".into(),
            json!(self.partition_concurrency),
        );
        m.insert(
            "partition_worker_concurrency".into(),
            json!(self.partition_worker_concurrency),
        );
        m.insert(
            "partition_rate_limit_max".into(),
            json!(self.partition_rate_limit.map(|r| r.max)),
        );
        m.insert(
            "partition_rate_limit_period_sec".into(),
            json!(self.partition_rate_limit.map(|r| r.period.as_secs_f64())),
        );
        m.insert(
            "polling_interval_sec".into(),
            json!(self.polling_interval.map(|d| d.as_secs_f64())),
        );
        m.insert("application_name".into(), json!(self.application_name));
        m.insert("enqueued".into(), json!(self.enqueued));
        m.insert("pending".into(), json!(self.pending));
        m.insert("delayed".into(), json!(self.delayed));
        Value::Object(m)
    }
}

/// What [`resume_workflow`](crate::Dbos::resume_workflow) did. Recorded inside a workflow
/// (`DBOS.resumeWorkflow`) as `{"enqueued":{"queue":"..."}}` or `{"already_finished":"SUCCESS"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Resumed {
    /// The workflow is `ENQUEUED` on this queue again and continues from its last
    /// checkpoint once an executor dequeues it.
    Enqueued {
        /// The queue it waits on.
        queue: String,
    },
    /// The workflow had finished (`SUCCESS` or `ERROR`): nothing was changed. Fork it to
    /// run it again.
    AlreadyFinished(Status),
}

/// What [`set_workflow_delay`](crate::Dbos::set_workflow_delay) did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DelaySet {
    /// The workflow is `DELAYED` until this time (milliseconds since the Unix epoch); the
    /// queue's delay sweep enqueues it then (within about a second).
    Delayed {
        /// The new wake-up time.
        until_epoch_ms: i64,
    },
    /// The workflow was not `DELAYED` (already enqueued, running or finished): nothing
    /// was changed.
    NotDelayed(Status),
}

/// What [`Client::rename_application`](crate::Client::rename_application) moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RenameReport {
    /// Queue definitions (`dbos.queues`).
    pub queues: u64,
    /// Schedules (`dbos.workflow_schedules`).
    pub schedules: u64,
    /// Application versions.
    pub versions: u64,
    /// Workflows, active and finished.
    pub workflows: u64,
    /// Recorded steps.
    pub steps: u64,
}

/// What a garbage collection deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GcReport {
    /// Workflows deleted (with their inputs, outcomes, steps, messages, events and streams).
    pub deleted: u64,
    /// Transactions it took.
    pub batches: u32,
    /// The creation time (epoch ms) before which finished workflows were deleted, `None`
    /// when nothing qualified.
    pub cutoff_ms: Option<i64>,
}
