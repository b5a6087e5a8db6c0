//! The statements behind schedules: rows of `dbos.workflow_schedules` written and read as
//! DBOS Transact 3.4 does (see [`crate::schedule`]), and the scheduler's per-tick reads and
//! writes.

use super::Sql;
use tokio_postgres::Row;

use super::in_workflow::{Outcome, Recorder};
use super::records::is_unique_violation;
use super::SystemDatabase;
use crate::error::{Error, ErrorKind, Result};

/// A row of `dbos.workflow_schedules`, as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScheduleRow {
    pub(crate) schedule_id: String,
    pub(crate) schedule_name: String,
    pub(crate) workflow_name: String,
    pub(crate) workflow_class_name: Option<String>,
    pub(crate) schedule: String,
    pub(crate) status: String,
    pub(crate) context: String,
    pub(crate) last_fired_at: Option<String>,
    pub(crate) automatic_backfill: bool,
    pub(crate) cron_timezone: Option<String>,
    pub(crate) queue_name: Option<String>,
    pub(crate) application_name: Option<String>,
}

const COLUMNS: &str = "schedule_id, schedule_name, workflow_name, workflow_class_name, schedule, status, context, \
                       last_fired_at, automatic_backfill, cron_timezone, queue_name, application_name";

fn from_row(r: &Row) -> ScheduleRow {
    ScheduleRow {
        schedule_id: r.get(0),
        schedule_name: r.get(1),
        workflow_name: r.get(2),
        workflow_class_name: r.get(3),
        schedule: r.get(4),
        status: r.get(5),
        context: r.get(6),
        last_fired_at: r.get(7),
        automatic_backfill: r.get(8),
        cron_timezone: r.get(9),
        queue_name: r.get(10),
        application_name: r.get(11),
    }
}

/// Which schedules a listing returns; every filter is optional.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScheduleFilter<'a> {
    pub(crate) statuses: &'a [String],
    pub(crate) workflow_names: &'a [String],
    pub(crate) name_prefixes: &'a [String],
    /// `Some`: that application's schedules and unclaimed ones; `None`: all.
    pub(crate) app_name: Option<&'a str>,
}

fn conflict(name: &str, owner: Option<&str>) -> Error {
    let message = match owner {
        Some(owner) => format!(
            "schedule `{name}` is already registered by application `{owner}` in this system database: schedule \
             names are unique across the applications sharing it; give this schedule another name"
        ),
        None => format!(
            "a schedule named `{name}` exists already: pick another name, delete it first, or use apply_schedules \
             to replace its definition"
        ),
    };
    Error::new(ErrorKind::ConflictingSchedule, message)
}

impl SystemDatabase {
    /// Inserts a new schedule, failing with [`ErrorKind::ConflictingSchedule`] (nothing
    /// written) when the name is taken. With `rec`, recorded as the calling workflow's
    /// operation in the same transaction.
    pub(crate) async fn create_schedule(
        &self,
        row: &ScheduleRow,
        rec: Option<&Recorder<'_, ()>>,
    ) -> Result<Outcome<()>> {
        let s = self.quoted_schema();
        let sql = format!(
            "INSERT INTO {s}.workflow_schedules ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
        let what = format!("create schedule `{}`", row.schedule_name);
        self.run(&what, |mut client, attempt| {
            let (sql, what) = (&sql, &what);
            async move {
                let failed = |e| Error::db(format!("could not {what}"), e);
                let tx = client.transaction().await.map_err(failed)?;
                if let Some(done) = self.open_record(&tx, rec).await.map_err(failed)? {
                    return Ok(done);
                }
                let inserted = tx.execute(sql.as_str(), &params(row)).await;
                match inserted {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => {
                        drop(tx);
                        // A retry whose first attempt committed unseen finds its own row.
                        if attempt > 1 {
                            if let Some(found) = self.get_schedule_row(&row.schedule_name).await? {
                                if found.schedule_id == row.schedule_id {
                                    return Ok(Outcome::Done(()));
                                }
                            }
                        }
                        return Err(conflict(&row.schedule_name, None));
                    }
                    Err(e) => return Err(failed(e)),
                }
                self.close_record(&tx, rec, &()).await?;
                tx.commit().await.map_err(failed)?;
                Ok(Outcome::Done(()))
            }
        })
        .await
    }

    /// Creates or replaces the schedules `rows` in one transaction (DBOS's
    /// `apply_schedules`): an existing row keeps its id, status and `last_fired_at` and takes
    /// the new definition. A name owned by another application fails the whole set with
    /// [`ErrorKind::ConflictingSchedule`], nothing written.
    pub(crate) async fn apply_schedules(&self, rows: &[ScheduleRow]) -> Result<()> {
        let s = self.quoted_schema();
        let sql = format!(
            "INSERT INTO {s}.workflow_schedules ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (schedule_name) DO UPDATE SET
                 workflow_name = EXCLUDED.workflow_name, workflow_class_name = EXCLUDED.workflow_class_name,
                 schedule = EXCLUDED.schedule, context = EXCLUDED.context,
                 automatic_backfill = EXCLUDED.automatic_backfill, cron_timezone = EXCLUDED.cron_timezone,
                 queue_name = EXCLUDED.queue_name,
                 application_name = COALESCE({s}.workflow_schedules.application_name, EXCLUDED.application_name)
              WHERE {s}.workflow_schedules.application_name IS NULL
                 OR EXCLUDED.application_name IS NULL
                 OR {s}.workflow_schedules.application_name = EXCLUDED.application_name
             RETURNING schedule_id"
        );
        let owner_sql =
            format!("SELECT application_name FROM {s}.workflow_schedules WHERE schedule_name = $1");
        self.run("apply schedules", |mut client, _| {
            let (sql, owner_sql) = (&sql, &owner_sql);
            async move {
                let failed = |e| Error::db("could not apply the schedules", e);
                let tx = client.transaction().await.map_err(failed)?;
                for row in rows {
                    let written = tx
                        .query_opt(sql.as_str(), &params(row))
                        .await
                        .map_err(failed)?;
                    if written.is_none() {
                        let owner: Option<String> = tx
                            .query_opt(owner_sql.as_str(), &[&row.schedule_name])
                            .await
                            .map_err(failed)?
                            .and_then(|r| r.get(0));
                        return Err(conflict(&row.schedule_name, owner.as_deref()));
                    }
                }
                tx.commit().await.map_err(failed)
            }
        })
        .await
    }

    /// The schedules `filter` selects, by name.
    pub(crate) async fn list_schedule_rows(
        &self,
        filter: &ScheduleFilter<'_>,
    ) -> Result<Vec<ScheduleRow>> {
        let s = self.quoted_schema();
        let sql = format!(
            "SELECT {COLUMNS} FROM {s}.workflow_schedules
              WHERE (cardinality($1::text[]) = 0 OR status = ANY($1))
                AND (cardinality($2::text[]) = 0 OR workflow_name = ANY($2))
                AND (cardinality($3::text[]) = 0
                     OR EXISTS (SELECT 1 FROM unnest($3::text[]) p WHERE starts_with(schedule_name, p)))
                AND ($4::text IS NULL OR application_name = $4 OR application_name IS NULL)
              ORDER BY schedule_name"
        );
        let rows = self
            .query(
                "list schedules",
                &sql,
                &[
                    &filter.statuses,
                    &filter.workflow_names,
                    &filter.name_prefixes,
                    &filter.app_name,
                ],
            )
            .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// The schedule named `name`, if it exists.
    pub(crate) async fn get_schedule_row(&self, name: &str) -> Result<Option<ScheduleRow>> {
        let s = self.quoted_schema();
        let row = self
            .query_opt(
                &format!("read schedule `{name}`"),
                &format!("SELECT {COLUMNS} FROM {s}.workflow_schedules WHERE schedule_name = $1"),
                &[&name],
            )
            .await?;
        Ok(row.as_ref().map(from_row))
    }

    /// Sets a schedule's status (`ACTIVE` or `PAUSED`), or deletes it (`status` `None`);
    /// no-op for a name that does not exist, as in DBOS. Returns whether a row changed. With
    /// `rec`, recorded as the calling workflow's operation in the same transaction.
    pub(crate) async fn change_schedule(
        &self,
        name: &str,
        status: Option<&str>,
        rec: Option<&Recorder<'_, ()>>,
    ) -> Result<Outcome<()>> {
        let s = self.quoted_schema();
        let sql = match status {
            Some(_) => {
                format!("UPDATE {s}.workflow_schedules SET status = $2 WHERE schedule_name = $1")
            }
            None => format!(
                "DELETE FROM {s}.workflow_schedules WHERE schedule_name = $1 AND $2::text IS NULL"
            ),
        };
        let what = match status {
            Some(status) => format!("set schedule `{name}` {status}"),
            None => format!("delete schedule `{name}`"),
        };
        self.run(&what, |mut client, _| {
            let (sql, what) = (&sql, &what);
            async move {
                let failed = |e| Error::db(format!("could not {what}"), e);
                let tx = client.transaction().await.map_err(failed)?;
                if let Some(done) = self.open_record(&tx, rec).await.map_err(failed)? {
                    return Ok(done);
                }
                tx.execute(sql.as_str(), &[&name, &status])
                    .await
                    .map_err(failed)?;
                self.close_record(&tx, rec, &()).await?;
                tx.commit().await.map_err(failed)?;
                Ok(Outcome::Done(()))
            }
        })
        .await
    }

    /// Records the latest tick fired (DBOS's `update_last_fired_at`; the text is the tick's
    /// ISO time).
    pub(crate) async fn set_last_fired_at(&self, name: &str, fired: &str) -> Result<()> {
        let s = self.quoted_schema();
        self.execute(
            &format!("record the last tick of schedule `{name}`"),
            &format!(
                "UPDATE {s}.workflow_schedules SET last_fired_at = $2 WHERE schedule_name = $1"
            ),
            &[&name, &fired],
        )
        .await?;
        Ok(())
    }

    /// Whether a workflow with this id exists (the scheduler's check before firing a tick).
    pub(crate) async fn workflow_exists(&self, id: &str) -> Result<bool> {
        let s = self.quoted_schema();
        let row = self
            .query_opt(
                &format!("look up workflow `{id}`"),
                &format!("SELECT 1 FROM {s}.workflow_status WHERE workflow_uuid = $1"),
                &[&id],
            )
            .await?;
        Ok(row.is_some())
    }

    /// The latest registered application version of `app_name` (or of any application,
    /// for `None`): scheduled runs are enqueued at it, as in DBOS.
    pub(crate) async fn latest_version(&self, app_name: Option<&str>) -> Result<Option<String>> {
        let s = self.quoted_schema();
        let row = self
            .query_opt(
                "read the latest application version",
                &format!(
                    "SELECT version_name FROM {s}.application_versions
                      WHERE $1::text IS NULL OR application_name = $1 OR application_name IS NULL
                      ORDER BY version_timestamp DESC LIMIT 1"
                ),
                &[&app_name],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }
}

fn params(row: &ScheduleRow) -> [&(dyn tokio_postgres::types::ToSql + Sync); 12] {
    [
        &row.schedule_id,
        &row.schedule_name,
        &row.workflow_name,
        &row.workflow_class_name,
        &row.schedule,
        &row.status,
        &row.context,
        &row.last_fired_at,
        &row.automatic_backfill,
        &row.cron_timezone,
        &row.queue_name,
        &row.application_name,
    ]
}
