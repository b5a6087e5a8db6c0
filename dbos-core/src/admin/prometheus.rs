//! `GET /metrics`: the process's metrics in Prometheus's text format, rendered by the
//! `metrics-exporter-prometheus` recorder the application installed and handed over with
//! [`expose_prometheus`].
//!
//! The application installs the recorder, not the admin server: a `metrics` recorder is one
//! per process, chosen by the application (its buckets, a layered or fan-out recorder, or
//! none), and a server that installed one itself would refuse to start beside the
//! application's own, or take the application's choice away. The admin server only serves
//! what that recorder renders, behind the same token as its other endpoints.

use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use super::error::ApiError;
use super::AppState;

/// The handle of the process's Prometheus recorder, once the application handed it over.
static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The content type of Prometheus's text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `handle`'s rendering at `GET /metrics` on every admin server of this process
/// (token required when the server has one): the handle of the
/// `metrics-exporter-prometheus` recorder the application installed, before
/// [`Dbos::launch`](crate::Dbos::launch) so the library's metrics are described to it.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use dbos_core::admin::AdminServer;
/// use metrics_exporter_prometheus::PrometheusBuilder;
///
/// let handle = PrometheusBuilder::new()
///     .set_buckets(&[0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0])?
///     .install_recorder()?;
/// dbos_core::admin::expose_prometheus(handle)?;
/// let config = dbos_core::Config::new("shop").admin_server(AdminServer::new(3001));
/// let dbos = dbos_core::Dbos::launch(config).await?;
/// // curl http://127.0.0.1:3001/metrics
/// # let _ = dbos;
/// # Ok(())
/// # }
/// # let _ = demo;
/// ```
///
/// # Errors
/// [`ErrorKind::Config`](crate::ErrorKind::Config) when a handle was handed over already
/// (the process has one recorder; the first handle stays).
pub fn expose_prometheus(handle: PrometheusHandle) -> crate::Result<()> {
    PROMETHEUS.set(handle).map_err(|_| {
        crate::Error::config(
            "a Prometheus handle is exposed already: a process has one metrics recorder, so hand its \
             handle over once",
        )
    })
}

/// `GET /metrics` (token required when the server has one).
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

async fn render() -> Result<Response, ApiError> {
    let Some(handle) = PROMETHEUS.get() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "no Prometheus recorder is exposed: install one with metrics_exporter_prometheus's \
             `PrometheusBuilder::install_recorder()` before launching and pass its handle to \
             `dbos_core::admin::expose_prometheus`",
        ));
    };
    // Upkeep (draining histogram samples into their buckets) at each scrape, so an
    // application need not run a timer for it.
    handle.run_upkeep();
    Ok(([(CONTENT_TYPE, TEXT_FORMAT)], handle.render()).into_response())
}
