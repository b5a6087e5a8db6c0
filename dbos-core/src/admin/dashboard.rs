//! The web dashboard: one page and its script and stylesheet, embedded in the binary (plain
//! HTML, CSS and JavaScript: no build step, nothing fetched from elsewhere), and the few
//! endpoints it reads besides DBOS's (under `/api/`).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;
use crate::manage::{decode, Payload};
use crate::sysdb::messages::ExchangeRow;
use crate::workflow::placement::check_id;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// How many minutes of throughput the queues view shows.
const THROUGHPUT_MINUTES: i64 = 15;

/// How many rows of each kind the workflow view shows.
const EXCHANGES_SHOWN: i64 = 500;

/// The page and its assets: open (they hold no data; the page asks for the token).
pub(super) fn public_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

/// The dashboard's own reads (token required when the server has one).
pub(super) fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/api/queues", get(queues))
        .route("/api/workflows/{id}/exchanges", get(exchanges))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

/// `GET /api/queues`: every queue with its limits, its depth by status, its throughput
/// (`throughput`: workflows completed in each of the last [`THROUGHPUT_MINUTES`] minutes,
/// oldest first, the current minute last) and its oldest waiting workflow
/// (`oldest_waiting`: `{workflow_id, created_at}` or null).
async fn queues(State(s): State<AppState>) -> Result<Response, ApiError> {
    let m = &s.manager;
    let app = m.app_name.as_deref();
    let queues = m.list_queues().await?;
    let now_ms = epoch_ms(SystemTime::now());
    let first_minute = now_ms / 60_000 * 60_000 - (THROUGHPUT_MINUTES - 1) * 60_000;
    let minutes = m.sysdb.queue_throughput(first_minute, app).await?;
    let oldest = m.sysdb.oldest_waiting(app).await?;
    let out: Vec<Value> = queues
        .iter()
        .map(|q| {
            let mut v = q.to_dbos_json();
            let throughput: Vec<Value> = (0..THROUGHPUT_MINUTES)
                .map(|i| {
                    let minute = first_minute + i * 60_000;
                    let completed = minutes
                        .iter()
                        .find(|x| x.queue == q.name && x.minute_ms == minute)
                        .map_or(0, |x| x.completed);
                    json!({"minute": minute, "completed": completed})
                })
                .collect();
            v["throughput"] = json!(throughput);
            v["oldest_waiting"] = oldest.iter().find(|o| o.queue == q.name).map_or(
                Value::Null,
                |o| json!({"workflow_id": o.workflow_id, "created_at": o.created_at}),
            );
            v
        })
        .collect();
    Ok(Json(out).into_response())
}

fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Not public API: `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` of the statement behind the
/// queues view's throughput (completed workflows per queue and minute since `since`), for
/// the query-plan test.
#[doc(hidden)]
pub async fn explain_queue_throughput(
    sysdb: &crate::sysdb::SystemDatabase,
    since: SystemTime,
    app: Option<&str>,
) -> crate::Result<Value> {
    sysdb.explain_queue_throughput(epoch_ms(since), app).await
}

/// A stored value decoded, or its text when it does not decode.
fn decoded(text: String, serialization: Option<&str>, what: &str) -> Value {
    match decode::<Value>(Some(text), serialization, what) {
        Some(Payload::Decoded(v)) => v,
        Some(Payload::Raw { text, .. }) => Value::String(text),
        None => Value::Null,
    }
}

fn value_of(row: &ExchangeRow, what: &str) -> Value {
    decoded(
        row.value.text.clone(),
        row.value.serialization.as_deref(),
        what,
    )
}

/// `GET /api/workflows/{id}/exchanges`: the workflow's events (current values and history),
/// the messages sent to it, and its stream entries, values decoded (as stored text when they
/// do not decode). 404 for an unknown workflow.
async fn exchanges(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    // The workflow must exist: its events and messages go with it.
    s.manager.get_workflow(&id).await?;
    let sysdb = &s.manager.sysdb;
    let current = sysdb.get_all_events(&id).await?;
    let x = sysdb.workflow_exchanges(&id, EXCHANGES_SHOWN).await?;
    let events: Vec<Value> = current
        .into_iter()
        .map(|(key, v)| {
            let value = decoded(v.text, v.serialization.as_deref(), "event");
            json!({"key": key, "value": value})
        })
        .collect();
    let history: Vec<Value> = x
        .events_history
        .iter()
        .map(|r| json!({"key": r.key, "function_id": r.function_id, "value": value_of(r, "event")}))
        .collect();
    let messages: Vec<Value> = x
        .messages
        .iter()
        .map(|r| {
            json!({
                "topic": r.key,
                "sent_at_epoch_ms": r.position,
                "consumed": r.consumed,
                "consumed_by_function_id": r.function_id,
                "value": value_of(r, "message"),
            })
        })
        .collect();
    let streams: Vec<Value> = x
        .streams
        .iter()
        .map(|r| {
            json!({
                "key": r.key,
                "offset": r.position,
                "function_id": r.function_id,
                "value": value_of(r, "stream entry"),
            })
        })
        .collect();
    Ok(Json(json!({
        "events": events,
        "events_history": history,
        "messages": messages,
        "streams": streams,
    }))
    .into_response())
}
