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

use std::time::Duration;

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::error::{Error, Result};

/// How many times each connection asks before the path is taken to be session-preserving.
const ROUNDS: usize = 12;

/// The pause before about half of the statements, at random (see `transaction_pooling`).
const JITTER: Duration = Duration::from_micros(200);

/// Whether `probe` and `other` (two open connections to the system database, both idle and
/// outside any transaction) reach it through a transaction-mode pooler.
///
/// Probes running at once in one process (executors launched together) would otherwise
/// move in lockstep, and their statements can take turns on the pooler's servers so that
/// each connection keeps meeting a server of its own: the pooler goes unseen, and named
/// statements sent through it fail (`prepared statement "s2340" does not exist`). Three
/// probes at once, six rounds each with no pause, missed about one in a hundred times. A
/// short pause before a random half of the statements breaks the lockstep, and twelve
/// rounds give each probe twice the chances: none of 10,800 such probes missed. What it
/// costs a launch on a direct connection: 24 statements and about a dozen pauses, a few
/// milliseconds.
pub(crate) async fn transaction_pooling(probe: &Client, other: &Client) -> Result<bool> {
    let mut seen: [Option<String>; 2] = [None, None];
    // One random bit per statement: whether to pause before it.
    let pauses = uuid::Uuid::new_v4().as_u128();
    for round in 0..ROUNDS {
        for (i, client) in [probe, other].into_iter().enumerate() {
            if (pauses >> (2 * round + i)) & 1 == 1 {
                tokio::time::sleep(JITTER).await;
            }
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

#[cfg(test)]
mod tests {
    use dbos_testkit::pgbouncer::{PgBouncer, PoolMode};

    async fn open(url: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
    }

    /// Three probes at once through a transaction-mode PgBouncer, 300 times: every one finds
    /// the pooler. Without the random pauses, and with six rounds, about one probe in a
    /// hundred missed it (two of 180 in a run; checked), as one of three executors launched
    /// at once in `pooler.rs`'s lease-table test did in CI.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn probes_at_once_through_a_pooler_all_find_it() {
        let cluster = dbos_testkit::cluster().await;
        let bouncer = PgBouncer::start(cluster, PoolMode::Transaction).await;
        let url = bouncer.url(&cluster.url("postgres"));
        let rounds = 300;
        let mut missed = 0;
        for _ in 0..rounds {
            let probes = (0..3).map(|_| {
                let url = url.clone();
                async move {
                    let (a, b) = (open(&url).await, open(&url).await);
                    super::transaction_pooling(&a, &b).await.expect("probe")
                }
            });
            let found = futures_util::future::join_all(probes).await;
            missed += found.iter().filter(|f| !**f).count();
        }
        assert_eq!(
            missed,
            0,
            "probes that missed the pooler, of {}",
            rounds * 3
        );
    }

    /// Two connections straight to Postgres are never taken for a pooler, whatever the
    /// pauses.
    #[tokio::test]
    async fn direct_connections_are_not_taken_for_a_pooler() {
        let cluster = dbos_testkit::cluster().await;
        let url = cluster.url("postgres");
        for _ in 0..5 {
            let (a, b) = (open(&url).await, open(&url).await);
            assert!(!super::transaction_pooling(&a, &b).await.expect("probe"));
        }
    }
}
