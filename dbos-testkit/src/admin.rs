//! The admin server and dashboard's test fixture (with the `admin` feature): a runtime that
//! serves the admin API on a free port, an HTTP client for it, and workflows to seed it with.
//!
//! ```no_run
//! use dbos_testkit::admin::{self, AdminApi};
//! use dbos_testkit::TestDatabase;
//!
//! #[dbos_testkit::test]
//! async fn lists_a_workflow(db: TestDatabase) {
//!     let (dbos, api) = admin::launch(db.config("testapp")).await;
//!     admin::run_checkout(&dbos, "ord-1").await;
//!     let listed = api.post_json("/workflows", serde_json::json!({})).await;
//!     assert_eq!(listed[0]["WorkflowUUID"], "ord-1");
//!     dbos.shutdown().await.unwrap();
//! }
//! ```
//!
//! The workflows are registered under names of their own (`testkit.checkout`,
//! `testkit.refused`, `testkit.waiting`, `testkit.scheduled`), so they cannot collide with a test's, and they count
//! their steps' runs with [`runs::bump`](crate::runs::bump) under `<key>/first`, `<key>/second`,
//! `<key>/third`.

use std::net::SocketAddr;
use std::time::Duration;

use dbos_core::admin::AdminServer;
use dbos_core::{step, workflow, Config, Dbos, Error, ErrorKind};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::runs::bump;
use crate::TestDatabase;

/// Launches a runtime from `config` that serves the admin API and the dashboard on a free
/// loopback port, and a client for it.
///
/// # Panics
/// When launch fails.
pub async fn launch(config: Config) -> (Dbos, AdminApi) {
    let dbos = Dbos::launch(config.admin_server(AdminServer::new(0)))
        .await
        .unwrap_or_else(|e| panic!("dbos-testkit: launch with an admin server failed: {e}"));
    let addr = dbos
        .admin_address()
        .expect("dbos-testkit: the admin server listens once launched");
    (dbos, AdminApi::new(addr))
}

/// An answer of the admin server: its status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    ///
    /// # Panics
    /// When it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.body))
    }

    /// Asserts a JSON error `{"error": message, ...}` with this status and a message.
    ///
    /// # Panics
    /// When it is not one.
    pub fn assert_error(&self, status: u16, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.body);
        let v = self.json();
        assert!(
            v["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: no error message in {v}"
        );
    }
}

/// An HTTP/1.1 client for the admin server: one request per connection, an optional bearer
/// token.
#[derive(Debug, Clone)]
pub struct AdminApi {
    addr: SocketAddr,
    token: Option<String>,
}

impl AdminApi {
    /// A client for the server at `addr`, without a token.
    pub fn new(addr: SocketAddr) -> Self {
        AdminApi { addr, token: None }
    }

    /// The same client, sending `Authorization: Bearer <token>`.
    #[must_use]
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// The server's address.
    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// The dashboard's URL, `http://<address>/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// One request with a raw body.
    ///
    /// # Panics
    /// When the server cannot be reached or answers something that is not HTTP/1.1.
    pub async fn call(&self, method: &str, path: &str, body: &[u8]) -> Answer {
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the admin server at {}: {e}", self.addr));
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{auth}\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        stream.write_all(&request).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw))
            .await
            .unwrap_or_else(|_| panic!("no answer to {method} {path} within 60 s"))
            .unwrap();
        parse_answer(&raw).unwrap_or_else(|| {
            panic!(
                "{method} {path}: not an HTTP answer: {}",
                String::from_utf8_lossy(&raw)
            )
        })
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, b"").await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call("POST", path, body.to_string().as_bytes()).await
    }

    /// `GET path`, which must answer 200 with JSON.
    ///
    /// # Panics
    /// On another status or a body that is not JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let a = self.get(path).await;
        assert_eq!(a.status, 200, "GET {path}: {}", a.body);
        a.json()
    }

    /// `POST path` with a JSON body, which must answer 200 with JSON.
    ///
    /// # Panics
    /// On another status or a body that is not JSON.
    pub async fn post_json(&self, path: &str, body: Value) -> Value {
        let a = self.post(path, body).await;
        assert_eq!(a.status, 200, "POST {path}: {}", a.body);
        a.json()
    }
}

/// Status line, headers and body of an HTTP/1.1 answer (a chunked body decoded).
fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut body = raw[split + 4..].to_vec();
    let status = head.get(9..12)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// A workflow's status in the system database.
///
/// # Panics
/// When the row does not exist.
pub async fn status_of(db: &TestDatabase, id: &str) -> String {
    db.connect()
        .await
        .query_one(
            "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = $1",
            &[&id],
        )
        .await
        .unwrap_or_else(|e| panic!("no workflow `{id}`: {e}"))
        .get(0)
}

/// A schedule's status in the system database (`ACTIVE` or `PAUSED`).
///
/// # Panics
/// When the schedule does not exist.
pub async fn schedule_status(db: &TestDatabase, name: &str) -> String {
    db.connect()
        .await
        .query_one(
            "SELECT status FROM dbos.workflow_schedules WHERE schedule_name = $1",
            &[&name],
        )
        .await
        .unwrap_or_else(|e| panic!("no schedule `{name}`: {e}"))
        .get(0)
}

/// Step 1 of [`checkout`]: returns 1.
#[step]
pub async fn first(key: String) -> Result<i64, Error> {
    bump(&format!("{key}/first"));
    Ok(1)
}

/// Step 2 of [`checkout`]: returns 2, after 30 ms (so its timeline bar has a width).
#[step]
pub async fn second(key: String) -> Result<i64, Error> {
    bump(&format!("{key}/second"));
    tokio::time::sleep(Duration::from_millis(30)).await;
    Ok(2)
}

/// Step 3 of [`checkout`]: returns 3.
#[step]
pub async fn third(key: String) -> Result<i64, Error> {
    bump(&format!("{key}/third"));
    Ok(3)
}

/// Three steps, [`first`], [`second`], [`third`]: returns 6.
#[workflow(name = "testkit.checkout")]
pub async fn checkout(key: String) -> Result<i64, Error> {
    Ok(first(key.clone()).await? + second(key.clone()).await? + third(key).await?)
}

/// A step that fails with `card <key> declined`.
#[step]
pub async fn declined(key: String) -> Result<i64, Error> {
    Err(Error::new(
        ErrorKind::InvalidArgument,
        format!("card {key} declined"),
    ))
}

/// A workflow whose one step ([`declined`]) fails: it ends `ERROR`.
#[workflow(name = "testkit.refused")]
pub async fn refused(key: String) -> Result<i64, Error> {
    declined(key).await
}

/// Step 1, then a durable sleep of 10 minutes, then step 3: running until cancelled.
#[workflow(name = "testkit.waiting")]
pub async fn waiting(key: String) -> Result<i64, Error> {
    first(key.clone()).await?;
    dbos_core::sleep(Duration::from_secs(600)).await?;
    third(key).await
}

/// A workflow for schedules: each tick runs it with its time and the schedule's context,
/// and it returns the context.
#[workflow(name = "testkit.scheduled")]
pub async fn scheduled(
    _scheduled_at: dbos_core::schedule::chrono::DateTime<dbos_core::schedule::chrono::Utc>,
    context: Value,
) -> Result<Value, Error> {
    Ok(context)
}

/// Runs [`checkout`] under the id `id` (its key too) to the end.
///
/// # Panics
/// When it does not succeed.
pub async fn run_checkout(dbos: &Dbos, id: &str) {
    let out = checkout(id.to_owned())
        .id(id)
        .on(dbos)
        .start()
        .await
        .unwrap()
        .result()
        .await
        .unwrap_or_else(|e| panic!("{id} failed: {e}"));
    assert_eq!(out, 6);
}

/// Runs [`refused`] under the id `id` (its key too) to its error.
///
/// # Panics
/// When it does not fail.
pub async fn run_refused(dbos: &Dbos, id: &str) {
    let out = refused(id.to_owned())
        .id(id)
        .on(dbos)
        .start()
        .await
        .unwrap()
        .result()
        .await;
    assert!(out.is_err(), "{id} should fail: {out:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_plain_and_chunked() {
        let plain = parse_answer(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((plain.status, plain.body.as_str()), (404, "{}"));
        let chunked = parse_answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((chunked.status, chunked.body.as_str()), (200, "abcde"));
        assert!(parse_answer(b"garbage").is_none());
    }
}
