//! The dashboard's schedules (DBOS's admin server defines no schedule endpoints, so these
//! are ours, under `/api/`): every schedule with its next ticks computed from its cron, and
//! pause, resume and trigger over the schedule operations.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;
use crate::error::{Error, ErrorKind};
use crate::schedule::cron::{iso, CronSpec};
use crate::schedule::ops::{PAUSE, RESUME};
use crate::schedule::{ListSchedules, ScheduleInfo, ScheduleStatus};

type Answer = Result<Response, ApiError>;

/// How many coming ticks each schedule shows.
pub(super) const NEXT_TICKS: usize = 5;

/// The schedule endpoints (token required when the server has one).
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/schedules", get(list))
        .route("/api/schedules/{name}/pause", post(pause))
        .route("/api/schedules/{name}/resume", post(resume))
        .route("/api/schedules/{name}/trigger", post(trigger))
}

/// The first `count` ticks of `cron` (in `zone`) strictly after `after`, as DBOS writes tick
/// times (ISO 8601 with the zone's offset). Fewer when the expression stops matching.
pub(super) fn next_ticks(
    cron: &str,
    zone: Option<&str>,
    after: DateTime<Utc>,
    count: usize,
) -> crate::Result<Vec<String>> {
    let spec = CronSpec::parse(cron, zone)?;
    let mut ticks = Vec::with_capacity(count);
    let mut at = after;
    while ticks.len() < count {
        let Some(next) = spec.next_after(at) else {
            break;
        };
        at = next.to_utc();
        ticks.push(iso(&next));
    }
    Ok(ticks)
}

fn shown(s: &ScheduleInfo, now: DateTime<Utc>) -> Value {
    let mut v = s.to_dbos_json();
    // A row another SDK wrote with a cron this one cannot read still lists, saying so.
    match next_ticks(&s.schedule, s.cron_timezone.as_deref(), now, NEXT_TICKS) {
        Ok(ticks) => v["next_ticks"] = json!(ticks),
        Err(e) => {
            v["next_ticks"] = json!([]);
            v["cron_error"] = json!(e.message());
        }
    }
    v
}

/// `GET /api/schedules`: every schedule (of the acting application, and unclaimed ones),
/// by name, with its next ticks after the runtime's clock.
async fn list(State(s): State<AppState>) -> Answer {
    let now = DateTime::<Utc>::from(s.manager.clock().now());
    let schedules = s.manager.list_schedules(&ListSchedules::new()).await?;
    let out: Vec<Value> = schedules.iter().map(|x| shown(x, now)).collect();
    Ok(Json(out).into_response())
}

/// The schedule named `name`, or a 404 (the library's pause and resume of an unknown name
/// do nothing, as in DBOS; an operator clicking one should hear that it is gone).
async fn existing(s: &AppState, name: &str) -> Result<ScheduleInfo, ApiError> {
    s.manager.get_schedule(name).await?.ok_or_else(|| {
        Error::new(
            ErrorKind::ScheduleNotFound,
            format!("no schedule named `{name}` exists (deleted meanwhile?): reload the schedules"),
        )
        .into()
    })
}

async fn set_status(s: &AppState, name: &str, status: ScheduleStatus) -> Answer {
    existing(s, name).await?;
    let op = match status {
        ScheduleStatus::Paused => PAUSE,
        ScheduleStatus::Active => RESUME,
    };
    s.manager.change_schedule(op, name, Some(status)).await?;
    tracing::info!(
        schedule = name,
        status = status.as_str(),
        "schedule changed from the admin server"
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/schedules/{name}/pause`: 204; no executor fires it until resumed.
async fn pause(State(s): State<AppState>, Path(name): Path<String>) -> Answer {
    set_status(&s, &name, ScheduleStatus::Paused).await
}

/// `POST /api/schedules/{name}/resume`: 204.
async fn resume(State(s): State<AppState>, Path(name): Path<String>) -> Answer {
    set_status(&s, &name, ScheduleStatus::Active).await
}

/// `POST /api/schedules/{name}/trigger`: runs its workflow now, whatever its status;
/// answers `{"workflow_id": id}`.
async fn trigger(State(s): State<AppState>, Path(name): Path<String>) -> Answer {
    let handle = s.manager.trigger_schedule(&name).await?;
    Ok(Json(json!({"workflow_id": handle.id()})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn next_ticks_follow_the_cron_and_its_zone() {
        let ticks = next_ticks("*/15 * * * *", None, at("2026-12-07T10:07:00Z"), 3).unwrap();
        assert_eq!(
            ticks,
            vec![
                "2026-12-07T10:15:00+00:00",
                "2026-12-07T10:30:00+00:00",
                "2026-12-07T10:45:00+00:00"
            ]
        );
        // Strictly after: a tick at `after` itself is not next.
        let ticks = next_ticks(
            "0 9 * * *",
            Some("Europe/Paris"),
            at("2026-12-07T08:00:00Z"),
            2,
        )
        .unwrap();
        assert_eq!(
            ticks,
            vec!["2026-12-08T09:00:00+01:00", "2026-12-09T09:00:00+01:00"]
        );
        assert!(next_ticks("not a cron", None, at("2026-12-07T08:00:00Z"), 2).is_err());
    }
}
