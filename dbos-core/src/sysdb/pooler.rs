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
//! How: two client connections ask, in turn, for their server's `pg_backend_pid()`, each
//! statement on its own. Without a pooler, or with one in session mode, a client connection
//! keeps one server session for its whole life, and two open client connections never share
//! one. In transaction mode a server goes back to the pool after each statement: the other
//! connection is then handed the one the first just used (PgBouncer hands out the most
//! recently used idle server), or, while other clients take servers meanwhile or the pooler
//! rotates them, a connection's next statement runs on another server than its last. Either
//! gives the pooler away. Neither connection ever holds a server while the other asks for
//! one: launches at once behind a small pool would otherwise hold every server and wait for
//! a second among themselves, until the pooler gives up on them (PgBouncer's
//! `query_wait_timeout`, two minutes by default). Everything is sent with the simple query
//! protocol: no named statement exists yet to fail.

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::error::{Error, Result};

/// How many times each connection asks before the path is taken to be session-preserving.
const ROUNDS: usize = 6;

/// Whether `probe` and `other` (two open connections to the system database, both idle and
/// outside any transaction) reach it through a transaction-mode pooler.
pub(crate) async fn transaction_pooling(probe: &Client, other: &Client) -> Result<bool> {
    let mut seen: [Option<String>; 2] = [None, None];
    for _ in 0..ROUNDS {
        for (i, client) in [probe, other].into_iter().enumerate() {
            let now = backend(client).await?;
            let changed = seen[i].as_ref().is_some_and(|last| *last != now);
            let shared = seen[1 - i].as_ref() == Some(&now);
            if changed || shared {
                return Ok(true);
            }
            seen[i] = Some(now);
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
