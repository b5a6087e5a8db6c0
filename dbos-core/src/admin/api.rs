//! DBOS's admin endpoints, with DBOS's paths, methods and JSON shapes (DBOS Transact's
//! `_admin_server.py`), over the management operations. Where DBOS answers 500 for a
//! caller's mistake (a fork from a step that does not exist), this answers 4xx.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::filters::{parse_body, WorkflowFilter};
use super::{shapes, AppState};
use crate::manage::{ForkOptions, GarbageCollect};

type Answer = Result<Response, ApiError>;

/// The endpoints that need the token (when the server has one).
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/dbos-workflow-recovery", post(recover))
        .route("/deactivate", get(deactivate))
        .route("/dbos-workflow-queues-metadata", get(queues_metadata))
        .route("/dbos-garbage-collect", post(garbage_collect))
        .route("/dbos-global-timeout", post(global_timeout))
        .route("/workflows", post(list_workflows))
        .route("/queues", post(list_queued))
        .route("/workflows/{id}", get(get_workflow))
        .route("/workflows/{id}/steps", get(steps))
        .route("/workflows/{id}/cancel", post(cancel))
        .route("/workflows/{id}/resume", post(resume))
        .route("/workflows/{id}/restart", post(restart))
        .route("/workflows/{id}/fork", post(fork))
}

/// The endpoints open to anyone who can reach the server.
pub(super) fn public_routes() -> Router<AppState> {
    Router::new().route("/dbos-healthz", get(health))
}

async fn health() -> &'static str {
    "healthy"
}

/// `POST /dbos-workflow-recovery` `["executor-id", ...]`: the `PENDING` workflows of these
/// executors (which the caller says are gone) go back to their queues; answers their ids.
async fn recover(State(s): State<AppState>, body: Bytes) -> Answer {
    let executors: Vec<String> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be a JSON list of executor ids, such as [\"dbos-rs-host-1a2b\"]: {e}"
        ))
    })?;
    if executors.iter().any(|e| e.trim().is_empty()) {
        return Err(ApiError::bad_request(
            "a blank executor id recovers nothing: give the ids of the executors that are gone",
        ));
    }
    let m = &s.manager;
    let mut recovered = Vec::new();
    match &m.runtime {
        Some(rt) => {
            let alive = rt.alive_here();
            for executor in &executors {
                recovered.extend(
                    m.sysdb
                        .requeue_pending(executor, &rt.app_version, &rt.app_name, &alive)
                        .await?,
                );
            }
            rt.wake_all_queues();
        }
        None => {
            // A client runs nothing: every registered version's work goes back to its
            // queue, for the executors of that version to dequeue.
            for version in m.list_versions().await? {
                let app = m
                    .app_name
                    .clone()
                    .or(version.application_name.clone())
                    .unwrap_or_default();
                for executor in &executors {
                    recovered.extend(
                        m.sysdb
                            .requeue_pending(executor, &version.version_name, &app, &[])
                            .await?,
                    );
                }
            }
        }
    }
    tracing::info!(executors = ?executors, count = recovered.len(), "recovered workflows on request");
    Ok(Json(recovered).into_response())
}

/// `GET /deactivate`: this executor starts no more scheduled workflows (as DBOS's stops its
/// schedulers); the work it runs and its queues continue. Over a client nothing runs, so
/// nothing stops.
async fn deactivate(State(s): State<AppState>) -> &'static str {
    if let Some(rt) = &s.manager.runtime {
        if !rt.schedules_stop.is_cancelled() {
            tracing::info!(executor_id = %rt.executor_id, "deactivated: no more scheduled workflows start here");
        }
        rt.schedules_stop.cancel();
    }
    "deactivated"
}

/// `GET /dbos-workflow-queues-metadata`: each queue's name and limits, the keys of limits it
/// does not have left out (DBOS's shape: `workerConcurrency`, `rateLimit: {limit, period}`).
async fn queues_metadata(State(s): State<AppState>) -> Answer {
    let queues = s.manager.list_queues().await?;
    let out: Vec<Value> = queues
        .iter()
        .map(|q| {
            let mut m = serde_json::Map::new();
            m.insert("name".into(), json!(q.name));
            if let Some(c) = q.concurrency {
                m.insert("concurrency".into(), json!(c));
            }
            if let Some(c) = q.worker_concurrency {
                m.insert("workerConcurrency".into(), json!(c));
            }
            if let Some(r) = q.rate_limit {
                m.insert(
                    "rateLimit".into(),
                    json!({"limit": r.max, "period": r.period.as_secs_f64()}),
                );
            }
            Value::Object(m)
        })
        .collect();
    Ok(Json(out).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GcBody {
    cutoff_epoch_timestamp_ms: Option<i64>,
    rows_threshold: Option<u64>,
}

/// `POST /dbos-garbage-collect` `{cutoff_epoch_timestamp_ms, rows_threshold}`: deletes
/// finished workflows created before the cutoff and/or beyond the newest `rows_threshold`.
/// 204, as DBOS.
async fn garbage_collect(State(s): State<AppState>, body: Bytes) -> Answer {
    let b: GcBody = parse_body(&body, "garbage collection body")?;
    let mut gc = GarbageCollect::new();
    if let Some(ms) = b.cutoff_epoch_timestamp_ms {
        gc = gc.created_before(epoch(ms));
    }
    if let Some(n) = b.rows_threshold {
        gc = gc.keep_newest(n);
    }
    s.manager.garbage_collect(&gc).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutBody {
    cutoff_epoch_timestamp_ms: Option<i64>,
}

/// `POST /dbos-global-timeout` `{cutoff_epoch_timestamp_ms}`: cancels every active workflow
/// created before the cutoff. 204, as DBOS.
async fn global_timeout(State(s): State<AppState>, body: Bytes) -> Answer {
    let b: TimeoutBody = parse_body(&body, "global timeout body")?;
    let ms = b.cutoff_epoch_timestamp_ms.ok_or_else(|| {
        ApiError::bad_request(
            "give cutoff_epoch_timestamp_ms: active workflows created before it are cancelled",
        )
    })?;
    s.manager.cancel_created_before(epoch(ms)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn epoch(ms: i64) -> std::time::SystemTime {
    let d = std::time::Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        std::time::UNIX_EPOCH + d
    } else {
        std::time::UNIX_EPOCH - d
    }
}

async fn listing(s: &AppState, body: &[u8], queued: bool) -> Answer {
    let filter: WorkflowFilter = parse_body(body, "filter")?;
    let q = filter.into_query(queued)?;
    let rows = if queued {
        s.manager.list_queued(&q).await?
    } else {
        s.manager.list_workflows(&q).await?
    };
    let out: Vec<Value> = rows.iter().map(shapes::workflow).collect();
    Ok(Json(out).into_response())
}

/// `POST /workflows` with DBOS's filters: the workflows, as DBOS's `WorkflowsOutput`.
async fn list_workflows(State(s): State<AppState>, body: Bytes) -> Answer {
    listing(&s, &body, false).await
}

/// `POST /queues` with DBOS's filters: the workflows waiting on or running from a queue.
async fn list_queued(State(s): State<AppState>, body: Bytes) -> Answer {
    listing(&s, &body, true).await
}

/// `GET /workflows/{id}`: one workflow with its input and outcome; 404 when unknown.
async fn get_workflow(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    let w = s.manager.get_workflow(&id).await?;
    Ok(Json(shapes::workflow(&w)).into_response())
}

/// `GET /workflows/{id}/steps`: its recorded operations, as DBOS's `WorkflowSteps`.
async fn steps(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    let steps = s.manager.list_steps(&id).await?;
    let out: Vec<Value> = steps.iter().map(shapes::step).collect();
    Ok(Json(out).into_response())
}

/// `POST /workflows/{id}/cancel`: 204.
async fn cancel(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    s.manager.cancel(&[id.as_str()], false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /workflows/{id}/resume`: 204.
async fn resume(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    s.manager.resume(&id, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /workflows/{id}/restart`: a fork from step 1; answers `{"workflow_id": new id}`.
async fn restart(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    let new_id = s.manager.fork(&id, 1, &ForkOptions::new()).await?;
    Ok(Json(json!({"workflow_id": new_id})).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForkBody {
    start_step: Option<u32>,
    new_workflow_id: Option<String>,
    application_version: Option<String>,
}

/// `POST /workflows/{id}/fork` `{start_step, new_workflow_id, application_version}`:
/// answers `{"workflow_id": new id}`.
async fn fork(State(s): State<AppState>, Path(id): Path<String>, body: Bytes) -> Answer {
    let b: ForkBody = parse_body(&body, "fork body")?;
    let mut options = ForkOptions::new();
    if let Some(new_id) = b.new_workflow_id {
        options = options.workflow_id(new_id);
    }
    if let Some(v) = b.application_version {
        options = options.app_version(v);
    }
    let new_id = s
        .manager
        .fork(&id, b.start_step.unwrap_or(1), &options)
        .await?;
    Ok(Json(json!({"workflow_id": new_id})).into_response())
}
