//! The admin HTTP server: DBOS's admin endpoints and a web dashboard, over the management
//! operations (the same ones [`Dbos`](crate::Dbos) and [`Client`] offer).
//!
//! It runs inside an application ([`Config::admin_server`](crate::Config::admin_server)) or
//! beside it over a [`Client`] ([`serve`]; `dbos-rs dashboard`), with no application code.
//! Off by default, and only with the `admin` cargo feature.
//!
//! - **DBOS's endpoints** keep DBOS's paths and JSON shapes (`GET /dbos-healthz`,
//!   `POST /workflows`, `GET /workflows/{id}/steps`, `POST /workflows/{id}/fork`, ...), so
//!   DBOS tooling that speaks them works; see [`api`](self) in the book's Dashboard chapter.
//! - **The dashboard** is served at `/` from assets embedded in the binary (no CDN, no build
//!   step); the page reads the same endpoints, plus a few of its own under `/api/`.
//! - **Security**: it listens on 127.0.0.1 unless told otherwise, and refuses to listen on any
//!   other address without a bearer token ([`AdminServer::token`]). With a token, every
//!   endpoint but the health check and the page's static files answers 401 to a request
//!   without `Authorization: Bearer <token>`.
//! - **Errors** are JSON `{"error": message, "kind": kind}` with a status: 404 for an unknown
//!   workflow or path, 400 for a malformed body or filter, 401 for a missing or wrong token,
//!   409 for a conflict (a fork's id taken), 500 for a database error.

mod api;
mod dashboard;
mod error;
mod filters;
mod prometheus;
mod schedules;
mod shapes;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::{Error, ErrorKind, Result};
use crate::manage::Manager;
use crate::runtime::RuntimeInner;

use error::ApiError;

#[doc(hidden)]
pub use dashboard::explain_queue_throughput;
pub use prometheus::expose_prometheus;

/// Where and how the admin server listens: a port, an address (127.0.0.1 by default) and
/// an optional bearer token.
///
/// ```
/// use dbos_core::admin::AdminServer;
///
/// // Local only, no token: the default.
/// let local = AdminServer::new(3001);
/// // Reachable from other machines: a token is required.
/// let shared = AdminServer::new(3001)
///     .bind("0.0.0.0".parse().unwrap())
///     .token(std::env::var("ADMIN_TOKEN").unwrap_or_default());
/// # let _ = (local, shared);
/// ```
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct AdminServer {
    pub(crate) port: u16,
    pub(crate) bind: IpAddr,
    pub(crate) token: Option<String>,
}

impl fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminServer")
            .field("port", &self.port)
            .field("bind", &self.bind)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AdminServer {
    /// A server on `port` (0: any free port; see
    /// [`Dbos::admin_address`](crate::Dbos::admin_address)), on 127.0.0.1, without a token.
    pub fn new(port: u16) -> Self {
        AdminServer {
            port,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            token: None,
        }
    }

    /// The address to listen on (default 127.0.0.1). Any address other than a loopback one
    /// needs a [`token`](Self::token).
    pub fn bind(mut self, address: IpAddr) -> Self {
        self.bind = address;
        self
    }

    /// Requires `Authorization: Bearer <token>` on every request but the health check and
    /// the dashboard's static files.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Refuses a configuration that would expose the server: a non-loopback address without
    /// a token, or a blank token.
    pub(crate) fn check(&self) -> Result<()> {
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(Error::config(
                "the admin server's token is blank: give a secret token, or none for a loopback-only server",
            ));
        }
        if !self.bind.is_loopback() && self.token.is_none() {
            return Err(Error::config(format!(
                "the admin server would listen on {} without a token, so anyone who can reach it could cancel, \
                 fork and delete workflows: give it a token (AdminServer::token, `--token`), or listen on \
                 127.0.0.1",
                self.bind
            )));
        }
        Ok(())
    }
}

/// A running admin server started by [`serve`].
#[derive(Debug)]
pub struct AdminHandle {
    address: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl AdminHandle {
    /// The address it listens on (with the port chosen when 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops listening and waits for the requests in flight to finish.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// Waits until the server stops (it stops only when [`shutdown`](Self::shutdown) is
    /// called or its listener fails).
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}

/// What every handler reaches: the management operations and the server's settings.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) manager: Manager,
    token: Option<Arc<str>>,
}

/// Serves the admin API and the dashboard over `client` (no application runs here), until
/// [`AdminHandle::shutdown`].
///
/// ```no_run
/// use dbos_core::admin::{serve, AdminServer};
///
/// # async fn demo() -> dbos_core::Result<()> {
/// let client = dbos_core::Client::connect("postgres://localhost/shop_sys").await?;
/// let admin = serve(&client, AdminServer::new(3001)).await?;
/// println!("dashboard: http://{}/", admin.address());
/// # Ok(()) }
/// # let _ = demo;
/// ```
///
/// # Errors
/// [`ErrorKind::Config`] for a configuration [`AdminServer`] refuses,
/// [`ErrorKind::Io`] when the address cannot be listened on (a port in use).
pub async fn serve(client: &Client, server: AdminServer) -> Result<AdminHandle> {
    server.check()?;
    let listener = listen(&server).await?;
    let address = local_address(&listener)?;
    let stop = CancellationToken::new();
    let app = router(client.manager(), &server);
    let task = tokio::spawn(run(listener, app, stop.clone()));
    tracing::info!(%address, "admin server and dashboard listening");
    Ok(AdminHandle {
        address,
        stop,
        task,
    })
}

/// Starts the server a runtime's configuration asks for, as one of its tasks (stopped at
/// shutdown).
pub(crate) async fn start_in_runtime(rt: &Arc<RuntimeInner>) -> Result<()> {
    let Some(server) = rt.config.admin.clone() else {
        return Ok(());
    };
    let listener = listen(&server).await?;
    let address = local_address(&listener)?;
    let _ = rt.admin_address.set(address);
    let app = router(Manager::of_runtime(rt), &server);
    rt.spawn_task(run(listener, app, rt.shutdown.clone()));
    tracing::info!(%address, "admin server and dashboard listening");
    Ok(())
}

async fn listen(server: &AdminServer) -> Result<tokio::net::TcpListener> {
    let address = SocketAddr::new(server.bind, server.port);
    tokio::net::TcpListener::bind(address).await.map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!(
                "the admin server cannot listen on {address}: {e} (is the port in use? choose another, or 0 for any)"
            ),
        )
    })
}

fn local_address(listener: &tokio::net::TcpListener) -> Result<SocketAddr> {
    listener.local_addr().map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("the admin server's listener has no address: {e}"),
        )
    })
}

async fn run(listener: tokio::net::TcpListener, app: Router, stop: CancellationToken) {
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::warn!(error = %e, "the admin server stopped");
    }
}

fn router(manager: Manager, server: &AdminServer) -> Router {
    let state = AppState {
        manager,
        token: server.token.as_deref().map(Arc::from),
    };
    let guarded = api::routes()
        .merge(dashboard::api_routes())
        .merge(schedules::routes())
        .merge(prometheus::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .merge(guarded)
        .merge(dashboard::public_routes())
        .merge(api::public_routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "no admin endpoint at {} {}: see the Dashboard chapter of the book for the endpoints",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!(
            "{} is not allowed on {}: see the Dashboard chapter of the book for each endpoint's method",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Answers 401 unless the request carries the server's token (when it has one).
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if same_secret(token.as_bytes(), expected.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => ApiError::unauthorized("the bearer token is wrong").into_response(),
        None => ApiError::unauthorized(
            "this admin server requires a token: send `Authorization: Bearer <token>`",
        )
        .into_response(),
    }
}

/// Compares two secrets in time that depends only on their lengths.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_loopback_address_needs_a_token() {
        let open = AdminServer::new(1).bind("0.0.0.0".parse().unwrap());
        let e = open.clone().check().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("without a token"), "{e}");
        assert!(open.token("s3cret").check().is_ok());
        assert!(AdminServer::new(1).check().is_ok());
        assert!(AdminServer::new(1)
            .bind("::1".parse().unwrap())
            .check()
            .is_ok());
        let blank = AdminServer::new(1).token(" ").check().unwrap_err();
        assert_eq!(blank.kind(), ErrorKind::Config);
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }

    #[test]
    fn the_token_is_not_printed() {
        let text = format!("{:?}", AdminServer::new(1).token("s3cret"));
        assert!(!text.contains("s3cret"), "{text}");
    }
}
