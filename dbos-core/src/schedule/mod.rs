//! Scheduled workflows: cron schedules stored in `dbos.workflow_schedules`, exactly as DBOS
//! Transact 3.4 stores them, fired by every executor with no coordinator.
//!
//! A schedule names a registered workflow, a cron expression (5 fields, or 6 with seconds
//! first), an optional IANA time zone, a context value and an optional queue. The workflow
//! takes `(scheduled_at, context)`: the tick's time (RFC 3339 UTC text, which deserializes
//! into a [`chrono::DateTime<Utc>`](chrono::DateTime) or a `String`) and the context.
//!
//! | operation | on [`Dbos`](crate::Dbos) and [`Client`](crate::Client) | recorded inside a workflow as |
//! | --- | --- | --- |
//! | create | `create_schedule` | `DBOS.createSchedule` |
//! | list | `list_schedules` | `DBOS.listSchedules` |
//! | get | `get_schedule` | `DBOS.getSchedule` |
//! | pause / resume | `pause_schedule` / `resume_schedule` | `DBOS.pauseSchedule` / `DBOS.resumeSchedule` |
//! | delete | `delete_schedule` | `DBOS.deleteSchedule` |
//! | apply a set atomically | `apply_schedules` | refused inside a workflow, as in DBOS |
//! | backfill a range | `backfill_schedule` | refused inside a workflow, as in DBOS |
//! | trigger now | `trigger_schedule` | refused inside a workflow, as in DBOS |
//!
//! Every executor polls the schedules of its application (and unclaimed ones) and fires each
//! tick after a small random jitter, as the deterministic workflow id
//! `sched-<schedule name>-<tick time>`: however many executors fire a tick, it makes one run.
//! See the book's "Scheduled workflows" chapter.

pub(crate) mod cron;
pub(crate) mod ops;
pub(crate) mod runner;

pub use chrono;

use serde_json::Value;

use crate::manage::Payload;
use crate::sysdb::schedules::ScheduleRow;

/// A schedule to create (or, through `apply_schedules`, to create or replace).
///
/// ```
/// use dbos_core::schedule::Schedule;
///
/// let nightly = Schedule::new("nightly-report", "report", "0 0 2 * * *")
///     .timezone("Europe/Paris")
///     .context(serde_json::json!({"recipients": ["ops@example.com"]}))
///     .automatic_backfill(true);
/// assert_eq!(nightly.name(), "nightly-report");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub(crate) name: String,
    pub(crate) workflow_name: String,
    pub(crate) cron: String,
    pub(crate) context: Value,
    pub(crate) timezone: Option<String>,
    pub(crate) queue: Option<String>,
    pub(crate) automatic_backfill: bool,
    pub(crate) class_name: Option<String>,
}

impl Schedule {
    /// A schedule named `name` running the registered workflow `workflow_name` at every
    /// tick of `cron` (5 fields, or 6 with seconds first), in UTC, with a `null` context, on
    /// the internal queue, skipping ticks missed while no executor ran.
    pub fn new(
        name: impl Into<String>,
        workflow_name: impl Into<String>,
        cron: impl Into<String>,
    ) -> Self {
        Schedule {
            name: name.into(),
            workflow_name: workflow_name.into(),
            cron: cron.into(),
            context: Value::Null,
            timezone: None,
            queue: None,
            automatic_backfill: false,
            class_name: None,
        }
    }

    /// The IANA time zone the cron's wall-clock times are in (default UTC); daylight saving
    /// transitions are handled by the cron library.
    pub fn timezone(mut self, zone: impl Into<String>) -> Self {
        self.timezone = Some(zone.into());
        self
    }

    /// The value every run receives as its second argument (default `null`).
    pub fn context(mut self, context: Value) -> Self {
        self.context = context;
        self
    }

    /// Enqueues the runs on this queue (it must be declared) instead of the internal queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// When an executor starts serving the schedule, runs the ticks missed since its
    /// `last_fired_at` first (default: missed ticks are skipped).
    pub fn automatic_backfill(mut self, backfill: bool) -> Self {
        self.automatic_backfill = backfill;
        self
    }

    /// The class of a workflow written in another SDK as a class method
    /// (`workflow_class_name`); Rust workflows have none.
    pub fn class_name(mut self, class: impl Into<String>) -> Self {
        self.class_name = Some(class.into());
        self
    }

    /// The schedule's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A static schedule, `#[workflow(schedule = "...")]`: registered with `inventory` by the
/// macro and written as a schedule row (named after the workflow) at every launch, through
/// `apply_schedules` (so its status and `last_fired_at` survive redeploys).
#[derive(Debug)]
pub struct ScheduleRegistration {
    /// The workflow's registered name (and the schedule's name).
    pub workflow: &'static str,
    /// The cron expression, checked at compile time.
    pub cron: &'static str,
    /// The IANA zone, checked at compile time.
    pub timezone: Option<&'static str>,
    /// Whether missed ticks run when an executor starts serving it.
    pub automatic_backfill: bool,
    /// The queue its runs go on (default: the internal queue).
    pub queue: Option<&'static str>,
}

inventory::collect!(ScheduleRegistration);

impl ScheduleRegistration {
    fn schedule(&self) -> Schedule {
        let mut s = Schedule::new(self.workflow, self.workflow, self.cron)
            .automatic_backfill(self.automatic_backfill);
        if let Some(zone) = self.timezone {
            s = s.timezone(zone);
        }
        if let Some(queue) = self.queue {
            s = s.queue(queue);
        }
        s
    }
}

/// Writes the binary's static schedules (`#[workflow(schedule = ..)]`) at launch, in one
/// transaction.
pub(crate) async fn register_static(
    rt: &std::sync::Arc<crate::runtime::RuntimeInner>,
) -> crate::Result<()> {
    let schedules: Vec<Schedule> = inventory::iter::<ScheduleRegistration>
        .into_iter()
        .map(ScheduleRegistration::schedule)
        .collect();
    if schedules.is_empty() {
        return Ok(());
    }
    crate::manage::Manager::of_runtime(rt)
        .apply_schedules(&schedules)
        .await
}

/// Whether a schedule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ScheduleStatus {
    /// It fires (`ACTIVE`).
    #[serde(rename = "ACTIVE")]
    Active,
    /// It does not fire until resumed (`PAUSED`).
    #[serde(rename = "PAUSED")]
    Paused,
}

impl ScheduleStatus {
    /// The stored text: `ACTIVE` or `PAUSED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleStatus::Active => "ACTIVE",
            ScheduleStatus::Paused => "PAUSED",
        }
    }

    fn from_stored(text: &str) -> ScheduleStatus {
        // DBOS treats anything but ACTIVE as not firing.
        if text == "ACTIVE" {
            ScheduleStatus::Active
        } else {
            ScheduleStatus::Paused
        }
    }
}

/// A stored schedule, as listed. Field names are DBOS's (`WorkflowSchedule`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ScheduleInfo {
    /// The row's id (a UUID).
    pub schedule_id: String,
    /// The unique name.
    pub schedule_name: String,
    /// The workflow each tick runs.
    pub workflow_name: String,
    /// The class of a class-method workflow (other SDKs).
    pub workflow_class_name: Option<String>,
    /// The cron expression.
    pub schedule: String,
    /// Whether it fires.
    pub status: ScheduleStatus,
    /// The context value (as stored text when it does not decode, e.g. a schedule created
    /// by DBOS Python with its default pickle serializer).
    pub context: Payload<Value>,
    /// The ISO time of the latest tick fired, if any.
    pub last_fired_at: Option<String>,
    /// Whether missed ticks are run when an executor starts serving it.
    pub automatic_backfill: bool,
    /// The IANA zone of the cron's times (`None`: UTC).
    pub cron_timezone: Option<String>,
    /// The queue its runs go on (`None`: the internal queue).
    pub queue_name: Option<String>,
    /// The application owning it (`None`: unclaimed, run by every application).
    pub application_name: Option<String>,
}

impl ScheduleInfo {
    /// The schedule as DBOS's tools show it: its row's columns by name, the context as
    /// its JSON value (or its stored text when it does not decode).
    pub fn to_dbos_json(&self) -> Value {
        let context = match &self.context {
            Payload::Decoded(v) => v.clone(),
            Payload::Raw { text, .. } => Value::String(text.clone()),
        };
        serde_json::json!({
            "schedule_id": self.schedule_id,
            "schedule_name": self.schedule_name,
            "workflow_name": self.workflow_name,
            "workflow_class_name": self.workflow_class_name,
            "schedule": self.schedule,
            "status": self.status.as_str(),
            "context": context,
            "last_fired_at": self.last_fired_at,
            "automatic_backfill": self.automatic_backfill,
            "cron_timezone": self.cron_timezone,
            "queue_name": self.queue_name,
            "application_name": self.application_name,
        })
    }

    pub(crate) fn from_row(r: ScheduleRow) -> ScheduleInfo {
        let what = format!("the context of schedule `{}`", r.schedule_name);
        let context = crate::manage::decode(Some(r.context), None, &what)
            .unwrap_or(Payload::Decoded(Value::Null));
        ScheduleInfo {
            schedule_id: r.schedule_id,
            schedule_name: r.schedule_name,
            workflow_name: r.workflow_name,
            workflow_class_name: r.workflow_class_name,
            schedule: r.schedule,
            status: ScheduleStatus::from_stored(&r.status),
            context,
            last_fired_at: r.last_fired_at,
            automatic_backfill: r.automatic_backfill,
            cron_timezone: r.cron_timezone,
            queue_name: r.queue_name,
            application_name: r.application_name,
        }
    }
}

/// Which schedules [`list_schedules`](crate::Dbos::list_schedules) returns: every filter
/// optional; each takes several values (any matches).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListSchedules {
    pub(crate) statuses: Vec<String>,
    pub(crate) workflow_names: Vec<String>,
    pub(crate) name_prefixes: Vec<String>,
}

impl ListSchedules {
    /// Every schedule of the acting application (and unclaimed ones).
    pub fn new() -> Self {
        Self::default()
    }

    /// Only schedules with this status.
    pub fn status(mut self, status: ScheduleStatus) -> Self {
        self.statuses.push(status.as_str().to_owned());
        self
    }

    /// Only schedules running this workflow.
    pub fn workflow_name(mut self, name: impl Into<String>) -> Self {
        self.workflow_names.push(name.into());
        self
    }

    /// Only schedules whose name starts with `prefix`.
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefixes.push(prefix.into());
        self
    }
}
