//! Detecting a transaction-mode connection pooler between us and the system database.
//!
//! A pooler in transaction mode (PgBouncer's `pool_mode = transaction`, the pooled endpoints
//! of most managed Postgres services) gives a client connection a server connection for
//! one transaction at a time. What this library keeps on a session does not survive that:
//! named prepared statements (`prepared statement "s3" does not exist`), `LISTEN` (the
//! notification listener), session advisory locks (the executor lock). With
//! [`PoolerMode::Auto`](crate::PoolerMode::Auto) the first connection finds out, and the
//! handle then sends its statements unnamed (see [`statements`](super::statements)); a
//! runtime's session connections go to its session URL, or without one its waits poll and
//! its liveness is a lease (see [`executors`](super::executors)).
//!
//! How: two client connections ask for their server's `pg_backend_pid()`. Without a pooler,
//! or with one in session mode, a client connection keeps one server session for its whole
//! life, and two open client connections never share one. So the probe connection reads its
//! backend; the other connection opens a transaction (which pins a server connection) and
//! reads its backend; the probe reads its own again. In transaction mode either the second
//! connection was handed the probe's idle server (same backend on two client connections:
//! the probe is then not asked again, as its statement could only wait for that server)
//! or, that server being taken, the probe got another (its backend changed). Everything is
//! sent with the simple query protocol: no named statement exists yet to fail.

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::error::{Error, Result};

/// How many times the probe is repeated before the path is taken to be session-preserving.
const ROUNDS: usize = 3;

/// Whether `probe` and `other` (two open connections to the system database, `other` idle
/// and outside any transaction) reach it through a transaction-mode pooler.
pub(crate) async fn transaction_pooling(probe: &Client, other: &Client) -> Result<bool> {
    for _ in 0..ROUNDS {
        let before = backend(probe).await?;
        other
            .batch_execute("BEGIN")
            .await
            .map_err(|e| Error::db("could not probe the system database connection", e))?;
        let pinned = backend(other).await;
        // Shared already: the probe is not asked again, since with no other idle server
        // its statement would wait for the one `other` holds.
        let after = match &pinned {
            Ok(pinned) if *pinned == before => None,
            _ => Some(backend(probe).await),
        };
        let ended = other.batch_execute("ROLLBACK").await;
        let pinned = pinned?;
        let after = after.transpose()?;
        ended.map_err(|e| Error::db("could not probe the system database connection", e))?;
        if pinned == before || after.is_some_and(|after| after != before) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The server process behind `client` for this statement.
async fn backend(client: &Client) -> Result<String> {
    let messages = client
        .simple_query("SELECT pg_backend_pid()")
        .await
        .map_err(|e| Error::db("could not probe the system database connection", e))?;
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .ok_or_else(|| {
            Error::new(
                crate::ErrorKind::Database,
                "could not probe the system database connection: `SELECT pg_backend_pid()` returned no row",
            )
        })
}
