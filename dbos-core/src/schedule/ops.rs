//! The schedule operations, shared by a runtime and a client (through [`Manager`]), and the
//! enqueue of one tick's run shared by the scheduler, backfill and trigger.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::cron::{tick_id, trigger_id, CronSpec};
use super::{ListSchedules, Schedule, ScheduleInfo, ScheduleStatus};
use crate::client::Client;
use crate::codec::PortableInputs;
use crate::error::{Error, ErrorKind, Result};
use crate::manage::durable;
use crate::manage::Manager;
use crate::runtime::Dbos;
use crate::sysdb::schedules::{ScheduleFilter, ScheduleRow};
use crate::sysdb::workflows::{NewWorkflow, QueueFields, INTERNAL_QUEUE};
use crate::sysdb::SystemDatabase;
use crate::workflow::call::WorkflowHandle;

/// `create_schedule` inside a workflow.
pub(crate) const CREATE: &str = "DBOS.createSchedule";
/// `list_schedules` inside a workflow.
pub(crate) const LIST: &str = "DBOS.listSchedules";
/// `get_schedule` inside a workflow.
pub(crate) const GET: &str = "DBOS.getSchedule";
/// `pause_schedule` inside a workflow.
pub(crate) const PAUSE: &str = "DBOS.pauseSchedule";
/// `resume_schedule` inside a workflow.
pub(crate) const RESUME: &str = "DBOS.resumeSchedule";
/// `delete_schedule` inside a workflow.
pub(crate) const DELETE: &str = "DBOS.deleteSchedule";

/// Enqueues the run of `schedule`'s tick at `scheduled_at` as workflow `id`, unless a
/// workflow with that id exists (another executor fired the tick, or a backfill did).
/// `firing_app` owns the run when the schedule is unclaimed. Returns whether this call
/// created it.
pub(crate) async fn enqueue_tick(
    sysdb: &SystemDatabase,
    schedule: &ScheduleRow,
    scheduled_at: DateTime<Utc>,
    id: &str,
    firing_app: Option<&str>,
) -> Result<bool> {
    if sysdb.workflow_exists(id).await? {
        return Ok(false);
    }
    let owner = schedule.application_name.as_deref().or(firing_app);
    let version = sysdb.latest_version(owner).await?;
    let context: Value = serde_json::from_str(&schedule.context).map_err(|e| {
        Error::new(
            ErrorKind::Serialization,
            format!(
                "the context of schedule `{}` is not JSON ({e}): it was written with another serializer (DBOS Python's \
                 default is pickle; create schedules for this executor with the portable JSON serializer)",
                schedule.schedule_name
            ),
        )
    })?;
    let at = crate::codec::format_rfc3339(SystemTime::from(scheduled_at));
    let inputs = PortableInputs::positional(vec![Value::String(at), context]).to_text()?;
    let creator = uuid::Uuid::new_v4().to_string();
    let queue_name = schedule.queue_name.as_deref().unwrap_or(INTERNAL_QUEUE);
    let new = NewWorkflow {
        id,
        fresh_id: false,
        name: &schedule.workflow_name,
        creator_xid: &creator,
        owner_xid: None,
        executor_id: None,
        app_version: version.as_deref(),
        app_name: owner,
        inputs: &inputs,
        timeout_ms: None,
        deadline_ms: None,
        parent: None,
        queue: Some(QueueFields {
            queue_name,
            schedule_name: Some(&schedule.schedule_name),
            ..Default::default()
        }),
        attributes: None,
        reject_existing: false,
        identity: None,
    };
    Ok(sysdb
        .start_workflow(&new)
        .await?
        .is_some_and(|row| row.created))
}

fn refuse_in_workflow(what: &str) -> Result<()> {
    if crate::workflow::context::current().is_some() {
        return Err(Error::invalid(format!(
            "{what} cannot be called inside a workflow (as in DBOS): call it from outside, or from a step"
        )));
    }
    Ok(())
}

fn not_found(name: &str) -> Error {
    Error::new(
        ErrorKind::ScheduleNotFound,
        format!("no schedule named `{name}` exists; list_schedules shows the ones that do"),
    )
}

impl Manager {
    /// Checks a schedule and builds its row; nothing is written.
    async fn schedule_row(&self, s: &Schedule) -> Result<ScheduleRow> {
        if s.name.trim().is_empty() {
            return Err(Error::invalid(
                "the schedule name is blank: give each schedule a unique, non-empty name",
            ));
        }
        if s.workflow_name.trim().is_empty() {
            return Err(Error::invalid(format!(
                "schedule `{}` names no workflow: give the registered name of the workflow each tick runs",
                s.name
            )));
        }
        CronSpec::parse(&s.cron, s.timezone.as_deref())?;
        if let Some(rt) = &self.runtime {
            if rt.registry.get(&s.workflow_name).is_none() {
                return Err(Error::new(
                    ErrorKind::WorkflowFunctionNotFound,
                    format!(
                        "schedule `{}`: no #[workflow] named `{}` is registered in this binary, so no tick could run",
                        s.name, s.workflow_name
                    ),
                ));
            }
        }
        if let Some(queue) = &s.queue {
            if queue != INTERNAL_QUEUE && self.sysdb.queue_row(queue).await?.is_none() {
                return Err(Error::invalid(format!(
                    "schedule `{}`: queue `{queue}` is not declared; declare it (Config::queue) before scheduling onto it",
                    s.name
                )));
            }
        }
        Ok(ScheduleRow {
            schedule_id: uuid::Uuid::new_v4().to_string(),
            schedule_name: s.name.clone(),
            workflow_name: s.workflow_name.clone(),
            workflow_class_name: s.class_name.clone(),
            schedule: s.cron.clone(),
            status: ScheduleStatus::Active.as_str().to_owned(),
            context: crate::codec::to_text(&s.context)?,
            last_fired_at: None,
            automatic_backfill: s.automatic_backfill,
            cron_timezone: s.timezone.clone(),
            queue_name: s.queue.clone(),
            application_name: self.app_name.clone(),
        })
    }

    pub(crate) async fn create_schedule(&self, s: &Schedule) -> Result<()> {
        let row = self.schedule_row(s).await?;
        durable::write(
            self.runtime.as_ref(),
            CREATE,
            |_| Ok(()),
            async |rec| self.sysdb.create_schedule(&row, rec).await,
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn list_schedules(&self, q: &ListSchedules) -> Result<Vec<ScheduleInfo>> {
        durable::read(LIST, || async {
            let rows = self
                .sysdb
                .list_schedule_rows(&ScheduleFilter {
                    statuses: &q.statuses,
                    workflow_names: &q.workflow_names,
                    name_prefixes: &q.name_prefixes,
                    app_name: self.app_name.as_deref(),
                })
                .await?;
            Ok(rows.into_iter().map(ScheduleInfo::from_row).collect())
        })
        .await
    }

    pub(crate) async fn get_schedule(&self, name: &str) -> Result<Option<ScheduleInfo>> {
        durable::read(GET, || async {
            Ok(self
                .sysdb
                .get_schedule_row(name)
                .await?
                .map(ScheduleInfo::from_row))
        })
        .await
    }

    pub(crate) async fn change_schedule(
        &self,
        op: &'static str,
        name: &str,
        status: Option<ScheduleStatus>,
    ) -> Result<()> {
        let status = status.map(ScheduleStatus::as_str);
        durable::write(
            self.runtime.as_ref(),
            op,
            |_| Ok(()),
            async |rec| self.sysdb.change_schedule(name, status, rec).await,
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn apply_schedules(&self, schedules: &[Schedule]) -> Result<()> {
        refuse_in_workflow("apply_schedules")?;
        let mut rows = Vec::with_capacity(schedules.len());
        for s in schedules {
            if rows.iter().any(|r: &ScheduleRow| r.schedule_name == s.name) {
                return Err(Error::invalid(format!(
                    "schedule `{}` appears twice in the set: give each schedule of the set its own name",
                    s.name
                )));
            }
            rows.push(self.schedule_row(s).await?);
        }
        self.sysdb.apply_schedules(&rows).await
    }

    pub(crate) async fn backfill_schedule(
        &self,
        name: &str,
        start: SystemTime,
        end: SystemTime,
    ) -> Result<Vec<WorkflowHandle<Value, Error>>> {
        refuse_in_workflow("backfill_schedule")?;
        let row = self
            .sysdb
            .get_schedule_row(name)
            .await?
            .ok_or_else(|| not_found(name))?;
        let spec = CronSpec::parse(&row.schedule, row.cron_timezone.as_deref())?;
        let mut handles = Vec::new();
        for tick in spec.ticks_between(start.into(), end.into()) {
            let id = tick_id(name, &tick);
            enqueue_tick(
                &self.sysdb,
                &row,
                tick.to_utc(),
                &id,
                self.app_name.as_deref(),
            )
            .await?;
            handles.push(self.handle(id));
        }
        self.wake(row.queue_name.as_deref().unwrap_or(INTERNAL_QUEUE));
        Ok(handles)
    }

    pub(crate) async fn trigger_schedule(
        &self,
        name: &str,
    ) -> Result<WorkflowHandle<Value, Error>> {
        refuse_in_workflow("trigger_schedule")?;
        let row = self
            .sysdb
            .get_schedule_row(name)
            .await?
            .ok_or_else(|| not_found(name))?;
        // A trigger's scheduled time is durable time: the runtime's clock.
        let now = DateTime::<Utc>::from(self.clock().now());
        let id = trigger_id(name, &now);
        enqueue_tick(&self.sysdb, &row, now, &id, self.app_name.as_deref()).await?;
        self.wake(row.queue_name.as_deref().unwrap_or(INTERNAL_QUEUE));
        Ok(self.handle(id))
    }
}

/// The schedule operations of a launched runtime and of a client: the same methods, with
/// the same semantics, on both.
macro_rules! schedule_methods {
    ($ty:ty) => {
        impl $ty {
            /// Creates a schedule (status `ACTIVE`). Inside a workflow it is recorded as
            /// `DBOS.createSchedule` and made once.
            ///
            /// # Errors
            /// Nothing is written on any of these: [`ErrorKind::InvalidArgument`] for a
            /// malformed cron, an unknown time zone, a blank name or an undeclared queue;
            /// [`ErrorKind::WorkflowFunctionNotFound`] (on a runtime) for a workflow this
            /// binary does not register; [`ErrorKind::ConflictingSchedule`] when the name is
            /// taken. Or a database error.
            pub async fn create_schedule(&self, schedule: &Schedule) -> Result<()> {
                self.schedules().create_schedule(schedule).await
            }

            /// The schedules `query` selects (of the acting application, and unclaimed
            /// ones), by name. Recorded as `DBOS.listSchedules` inside a workflow.
            ///
            /// # Errors
            /// A database error.
            pub async fn list_schedules(&self, query: &ListSchedules) -> Result<Vec<ScheduleInfo>> {
                self.schedules().list_schedules(query).await
            }

            /// The schedule named `name`, if it exists. Recorded as `DBOS.getSchedule` inside
            /// a workflow.
            ///
            /// # Errors
            /// A database error.
            pub async fn get_schedule(&self, name: &str) -> Result<Option<ScheduleInfo>> {
                self.schedules().get_schedule(name).await
            }

            /// Pauses a schedule: no executor fires it (from its next poll of the
            /// schedules) until it is resumed. No-op for an unknown name, as in DBOS.
            /// Recorded as `DBOS.pauseSchedule` inside a workflow.
            ///
            /// # Errors
            /// A database error.
            pub async fn pause_schedule(&self, name: &str) -> Result<()> {
                self.schedules()
                    .change_schedule(PAUSE, name, Some(ScheduleStatus::Paused))
                    .await
            }

            /// Resumes a paused schedule. Ticks missed while it was paused run only with
            /// `automatic_backfill`. No-op for an unknown name. Recorded as
            /// `DBOS.resumeSchedule` inside a workflow.
            ///
            /// # Errors
            /// A database error.
            pub async fn resume_schedule(&self, name: &str) -> Result<()> {
                self.schedules()
                    .change_schedule(RESUME, name, Some(ScheduleStatus::Active))
                    .await
            }

            /// Deletes a schedule (runs already made stay). No-op for an unknown name.
            /// Recorded as `DBOS.deleteSchedule` inside a workflow.
            ///
            /// # Errors
            /// A database error.
            pub async fn delete_schedule(&self, name: &str) -> Result<()> {
                self.schedules().change_schedule(DELETE, name, None).await
            }

            /// Creates or replaces a set of schedules in one transaction: an existing one
            /// keeps its id, status and `last_fired_at` and takes the new definition.
            ///
            /// # Errors
            /// As [`create_schedule`](Self::create_schedule) for any schedule of the set (a
            /// name taken by another application: [`ErrorKind::ConflictingSchedule`]), and
            /// [`ErrorKind::InvalidArgument`] inside a workflow; nothing is written.
            pub async fn apply_schedules(&self, schedules: &[Schedule]) -> Result<()> {
                self.schedules().apply_schedules(schedules).await
            }

            /// Enqueues every tick of the schedule strictly between `start` and `end`, with
            /// the ids the scheduler uses (so a tick that already ran is not run again), and
            /// returns their handles.
            ///
            /// # Errors
            /// [`ErrorKind::ScheduleNotFound`]; [`ErrorKind::InvalidArgument`] inside a
            /// workflow; a database error.
            pub async fn backfill_schedule(
                &self,
                name: &str,
                start: SystemTime,
                end: SystemTime,
            ) -> Result<Vec<WorkflowHandle<Value, Error>>> {
                self.schedules().backfill_schedule(name, start, end).await
            }

            /// Runs the schedule's workflow now, as `sched-<name>-trigger-<now>`, whatever
            /// its status.
            ///
            /// # Errors
            /// [`ErrorKind::ScheduleNotFound`]; [`ErrorKind::InvalidArgument`] inside a
            /// workflow; a database error.
            pub async fn trigger_schedule(
                &self,
                name: &str,
            ) -> Result<WorkflowHandle<Value, Error>> {
                self.schedules().trigger_schedule(name).await
            }
        }
    };
}

impl Dbos {
    fn schedules(&self) -> Manager {
        Manager::of_runtime(self.inner())
    }
}

impl Client {
    fn schedules(&self) -> Manager {
        self.manager()
    }
}

schedule_methods!(Dbos);
schedule_methods!(Client);
