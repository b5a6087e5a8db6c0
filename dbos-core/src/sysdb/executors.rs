//! Executors: the session-level advisory lock each one holds for its lifetime, and finding
//! the executors that own `PENDING` work.
//!
//! A live executor holds the lock of its id on a connection it keeps open; when its process
//! or machine dies, Postgres ends that session and releases the lock (at once when the
//! process dies; about `Config::vanished_executor_timeout` after a machine vanished without
//! closing the connection, by the server's TCP keepalives that the session asks for). A peer
//! that can take the lock knows the executor is gone.
//!
//! Behind a transaction-mode pooler with no session URL there is no session to hold a lock
//! on: each executor then holds a lease instead, a row of `<schema>.dbos_rs_executor_leases`
//! (created by such a launch only; DBOS's tools ignore it) whose expiry it pushes forward in
//! short transactions of its own. A peer may take a lease only once it has expired, and only
//! while no session holds that executor's advisory lock (see [`SystemDatabase::take_lease`]).

use super::{Sql, SystemDatabase};
use crate::error::{Error, ErrorKind, Result};

/// The advisory-lock key of executor `executor_id` of application `app_name` in `schema`:
/// the first 8 bytes (big-endian) of sha256("dbos-rs.executor:<schema>:<app>:<executor id>").
pub(crate) fn executor_lock_key(schema: &str, app_name: &str, executor_id: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest =
        Sha256::digest(format!("dbos-rs.executor:{schema}:{app_name}:{executor_id}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// Exempts a dedicated session from the server's `idle_session_timeout` (Postgres 14 and
/// later; older servers have no such setting): a role or database default that ends idle
/// sessions would otherwise end the executor's lock session, and free its lock while the
/// executor lives, whenever it has nothing to ask.
pub(crate) const NO_IDLE_SESSION_TIMEOUT: &str =
    "SELECT set_config('idle_session_timeout', '0', false) \
     WHERE current_setting('server_version_num')::int >= 140000";

/// The `application_name` of executor `executor_id`'s lock session, `dbos-rs lock <id>`, as
/// Postgres keeps it (so that a peer can find it by name): printable ASCII only (others
/// become `?`), cut to 63 bytes.
pub(crate) fn lock_session_label(executor_id: &str) -> String {
    format!("dbos-rs lock {executor_id}")
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(63)
        .collect()
}

/// A session (its own connection) that holds this executor's lock and tries peers' locks.
pub(crate) struct LockSession {
    client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
    /// When the session was opened.
    pub(crate) since: std::time::Instant,
}

impl std::fmt::Debug for LockSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockSession")
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

impl LockSession {
    /// Takes `key` if nobody holds it (reentrant within this session).
    pub(crate) async fn try_lock(&self, key: i64) -> Result<bool> {
        self.client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map(|r| r.get(0))
            .map_err(|e| Error::db("could not try an executor lock", e))
    }

    /// Releases `key`, taken with [`try_lock`](Self::try_lock).
    pub(crate) async fn unlock(&self, key: i64) -> Result<()> {
        self.client
            .query_one("SELECT pg_advisory_unlock($1)", &[&key])
            .await
            .map(|_| ())
            .map_err(|e| Error::db("could not release an executor lock", e))
    }

    /// Runs a trivial statement, failing if the session does not answer within `timeout`:
    /// keeps the session from looking idle to a proxy that cuts idle connections, and tells
    /// a connection that died silently (its locks may be free) from a live one.
    pub(crate) async fn ping(&self, timeout: std::time::Duration) -> Result<()> {
        match tokio::time::timeout(timeout, self.client.simple_query("SELECT 1")).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::db("the executor's lock session failed", e)),
            Err(_) => Err(Error::new(
                ErrorKind::Connection,
                format!("the executor's lock session did not answer within {timeout:?}"),
            )),
        }
    }

    /// How long the database server has been up (`pg_postmaster_start_time()`). Right after a
    /// server restart every executor is reconnecting, its lock free for a while although it
    /// lives; peers must not read a free lock as a death then.
    pub(crate) async fn server_uptime(&self) -> Result<std::time::Duration> {
        let secs: f64 = self
            .client
            .query_one(
                "SELECT GREATEST(0, extract(epoch FROM now() - pg_postmaster_start_time()))::float8",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .map_err(|e| Error::db("could not read how long the database server has been up", e))?;
        Ok(std::time::Duration::try_from_secs_f64(secs).unwrap_or_default())
    }

    /// Whether a session named as executor `executor_id`'s lock session (other than this one)
    /// is connected to this database: that executor lives, and is taking its lock (back).
    pub(crate) async fn lock_session_open(&self, executor_id: &str) -> Result<bool> {
        self.client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                                 WHERE application_name = $1 AND datname = current_database()
                                   AND pid <> pg_backend_pid())",
                &[&lock_session_label(executor_id)],
            )
            .await
            .map(|r| r.get(0))
            .map_err(|e| Error::db("could not look for an executor's lock session", e))
    }

    /// Resolves when the session's connection has ended (its locks are then released).
    pub(crate) async fn closed(&mut self) {
        let _ = (&mut self.task).await;
    }
}

impl SystemDatabase {
    /// Opens a lock session (retried like any statement), named in `pg_stat_activity` as
    /// `dbos-rs lock <executor id>` so an operator can see which session holds which
    /// executor's lock, and probed by the server with TCP keepalives so that it ends about
    /// `vanish_after` after this machine vanishes without closing it (see
    /// [`keepalive_settings`]).
    pub(crate) async fn lock_session(
        &self,
        executor_id: &str,
        vanish_after: std::time::Duration,
    ) -> Result<LockSession> {
        let (client, task) = self.dedicated("open the executor's lock session").await?;
        let label = lock_session_label(executor_id);
        let k = keepalive_settings(vanish_after);
        client
            .execute(
                "SELECT set_config('application_name', $1, false),
                        set_config('tcp_keepalives_idle', $2, false),
                        set_config('tcp_keepalives_interval', $3, false),
                        set_config('tcp_keepalives_count', $4, false),
                        set_config('tcp_user_timeout', $5, false)",
                &[
                    &label,
                    &k.idle_secs.to_string(),
                    &k.interval_secs.to_string(),
                    &k.count.to_string(),
                    &k.user_timeout_ms.to_string(),
                ],
            )
            .await
            .map_err(|e| Error::db("could not set up the executor's lock session", e))?;
        client
            .batch_execute(NO_IDLE_SESSION_TIMEOUT)
            .await
            .map_err(|e| Error::db("could not set up the executor's lock session", e))?;
        Ok(LockSession {
            client,
            task,
            since: std::time::Instant::now(),
        })
    }

    /// The executors, other than `except`, that own `PENDING` workflows of `version`.
    pub(crate) async fn pending_executors(
        &self,
        version: &str,
        app_name: &str,
        except: &str,
    ) -> Result<Vec<String>> {
        let s = self.quoted_schema();
        let rows = self
            .query(
                "find the executors owning pending workflows",
                &format!(
                    "SELECT DISTINCT executor_id FROM {s}.workflow_status
                      WHERE status = 'PENDING' AND application_version = $1
                        AND (application_name = $2 OR application_name IS NULL)
                        AND executor_id IS NOT NULL AND executor_id <> $3"
                ),
                &[&version, &app_name, &except],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// The lease table (in the system schema, beside DBOS's tables).
pub(crate) const LEASE_TABLE: &str = "dbos_rs_executor_leases";

impl SystemDatabase {
    /// Creates the lease table if it is missing (only then: a role that may not create tables
    /// in the schema uses the table another made). Launches at once take turns: `CREATE TABLE
    /// IF NOT EXISTS` alone is not safe against a concurrent creation (the loser fails on
    /// the table's row type, `42710`), so the creation holds a transaction lock of its own
    /// (keyed apart from the migration lock) until it commits. Both statements go in one
    /// simple query, which Postgres runs as one transaction (and a transaction-mode pooler
    /// keeps on one server): a launch waiting here holds one server connection and asks for
    /// no other.
    pub(crate) async fn ensure_lease_table(&self) -> Result<()> {
        let s = self.quoted_schema();
        let key = super::migrate::advisory_key("leases", self.schema());
        let create = format!(
            "SELECT pg_advisory_xact_lock({key});
             CREATE TABLE IF NOT EXISTS {s}.{LEASE_TABLE} (
                 application_name text NOT NULL,
                 executor_id text NOT NULL,
                 holder text NOT NULL,
                 expires_at timestamptz NOT NULL,
                 PRIMARY KEY (application_name, executor_id))"
        );
        let schema = self.schema();
        let table = format!("{s}.{LEASE_TABLE}");
        self.run("create the executor lease table", |client, _| {
            let (create, table) = (create.clone(), table.clone());
            async move {
                // `CREATE TABLE IF NOT EXISTS` needs `CREATE` on the schema even when the
                // table exists: a role without it finds the table made by another first.
                match client
                    .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
                    .await
                {
                    Ok(row) if row.get::<_, bool>(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => {
                        return Err(Error::db("could not look for the executor lease table", e))
                    }
                }
                match client.batch_execute(&create).await {
                    Ok(()) => Ok(()),
                    // Created meanwhile by a process that does not take the lock (an
                    // older version of this library).
                    Err(e)
                        if matches!(
                            e.code().map(|c| c.code()),
                            Some("23505" | "42P07" | "42710")
                        ) =>
                    {
                        Ok(())
                    }
                    // Most likely a missing privilege ("permission denied for schema"): say
                    // what the table is for and how to get past it.
                    Err(e) => Err(Error::db(
                        format!(
                            "could not create the executor lease table `{schema}.{LEASE_TABLE}` (an executor with \
                             no session URL, behind a transaction-mode pooler, holds its lease there; the role \
                             of the first such launch needs CREATE on schema `{schema}`: GRANT CREATE ON SCHEMA \
                             {s} TO <role>, or give the executors a session URL, Config::session_url, to hold a \
                             lock instead)"
                        ),
                        e,
                    )),
                }
            }
        })
        .await
    }

    /// Takes, or extends, executor `executor_id`'s lease for `holder` until `lease` from now
    /// (the server's clock): when nobody holds it, `holder` holds it already, or it expired;
    /// and only while no session holds that executor's advisory lock (an executor of the same
    /// application with a session of its own). Whether `holder` holds it now.
    pub(crate) async fn take_lease(
        &self,
        app_name: &str,
        executor_id: &str,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<bool> {
        let sql = self.sql("take_lease", |s| {
            format!(
                "INSERT INTO {s}.{LEASE_TABLE} AS l (application_name, executor_id, holder, expires_at)
                 SELECT $1, $2, $3, clock_timestamp() + $4::float8 * interval '1 millisecond'
                  WHERE pg_try_advisory_xact_lock($5)
                 ON CONFLICT (application_name, executor_id) DO UPDATE
                    SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                  WHERE l.holder = EXCLUDED.holder OR l.expires_at < clock_timestamp()
                 RETURNING 1"
            )
        });
        let key = executor_lock_key(self.schema(), app_name, executor_id);
        let ms = lease.as_millis() as f64;
        let rows = self
            .query(
                "take an executor lease",
                &sql,
                &[&app_name, &executor_id, &holder, &ms, &key],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Extends `holder`'s lease of `executor_id` until `lease` from now; `false` when it no
    /// longer holds it (it expired and a peer took it).
    pub(crate) async fn renew_lease(
        &self,
        app_name: &str,
        executor_id: &str,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<bool> {
        let sql = self.sql("renew_lease", |s| {
            format!(
                "UPDATE {s}.{LEASE_TABLE}
                    SET expires_at = clock_timestamp() + $4::float8 * interval '1 millisecond'
                  WHERE application_name = $1 AND executor_id = $2 AND holder = $3"
            )
        });
        let ms = lease.as_millis() as f64;
        let n = self
            .execute(
                "renew the executor lease",
                &sql,
                &[&app_name, &executor_id, &holder, &ms],
            )
            .await?;
        Ok(n == 1)
    }

    /// Gives up `holder`'s lease of `executor_id` (a peer done recovering it, or a shutdown).
    pub(crate) async fn release_lease(
        &self,
        app_name: &str,
        executor_id: &str,
        holder: &str,
    ) -> Result<()> {
        let sql = self.sql("release_lease", |s| {
            format!(
                "DELETE FROM {s}.{LEASE_TABLE}
                  WHERE application_name = $1 AND executor_id = $2 AND holder = $3"
            )
        });
        self.execute(
            "release an executor lease",
            &sql,
            &[&app_name, &executor_id, &holder],
        )
        .await
        .map(|_| ())
    }

    /// Deletes the leases of application `app_name` that expired more than `ago` ago: those
    /// of executors that died with no work left to recover (a peer that recovers an
    /// executor's work deletes its lease then), so the table does not grow with every
    /// restart. An expired lease and no lease mean the same to every statement here, except
    /// to its own holder's renewal, which then finds the lease lost, as when a peer took it.
    /// How many were deleted.
    pub(crate) async fn clear_expired_leases(
        &self,
        app_name: &str,
        ago: std::time::Duration,
    ) -> Result<u64> {
        let sql = self.sql("clear_expired_leases", |s| {
            format!(
                "DELETE FROM {s}.{LEASE_TABLE}
                  WHERE application_name = $1
                    AND expires_at < clock_timestamp() - $2::float8 * interval '1 millisecond'"
            )
        });
        let ms = ago.as_millis() as f64;
        self.execute("clear expired executor leases", &sql, &[&app_name, &ms])
            .await
    }

    /// Whether executor `executor_id` holds a lease that has not expired (an executor behind
    /// a transaction-mode pooler, which holds no session lock). `false` when no executor
    /// ever used a lease here (no table).
    pub(crate) async fn lease_alive(&self, app_name: &str, executor_id: &str) -> Result<bool> {
        let s = self.quoted_schema();
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {s}.{LEASE_TABLE}
                             WHERE application_name = $1 AND executor_id = $2
                               AND expires_at >= clock_timestamp())"
        );
        let what = "look for an executor's lease";
        self.run(what, |client, _| {
            let sql = sql.clone();
            async move {
                match client.query_one(&sql, &[&app_name, &executor_id]).await {
                    Ok(row) => Ok(row.get(0)),
                    Err(e) if e.code().map(|c| c.code()) == Some("42P01") => Ok(false),
                    Err(e) => Err(Error::db(format!("could not {what}"), e)),
                }
            }
        })
        .await
    }
}

/// The server-side TCP settings of a lock session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keepalives {
    /// Seconds of silence before the first probe.
    pub(crate) idle_secs: u64,
    /// Seconds between probes.
    pub(crate) interval_secs: u64,
    /// Unanswered probes before the server ends the session.
    pub(crate) count: u32,
    /// How long data the server sent may stay unacknowledged (ms).
    pub(crate) user_timeout_ms: u128,
}

/// Splits `vanish_after` into half of silence and three probes over the other half (whole
/// seconds, at least one each): a session whose peer vanished ends after about that long.
pub(crate) fn keepalive_settings(vanish_after: std::time::Duration) -> Keepalives {
    let total = vanish_after.as_secs().max(3);
    let idle_secs = (total / 2).max(1);
    let interval_secs = ((total - idle_secs) / 3).max(1);
    Keepalives {
        idle_secs,
        interval_secs,
        count: 3,
        user_timeout_ms: vanish_after.as_millis(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lock_session_labels_are_kept_by_postgres_as_written() {
        assert_eq!(lock_session_label("worker-1"), "dbos-rs lock worker-1");
        assert_eq!(lock_session_label("wörker\n1"), "dbos-rs lock w?rker?1");
        let long = lock_session_label(&"x".repeat(100));
        assert_eq!(long.len(), 63);
    }

    /// The key is part of the protocol between executors (and between versions of this
    /// library sharing a database): every one must derive the same key for an id, and
    /// different keys for different ids, or a live executor's lock reads as free.
    #[test]
    fn executor_lock_keys_follow_the_documented_derivation_and_differ_per_id() {
        // sha256("dbos-rs.executor:dbos:testapp:dbos-rs-w1"), first 8 bytes, big-endian.
        assert_eq!(
            executor_lock_key("dbos", "testapp", "dbos-rs-w1"),
            -2_067_521_597_410_822_447
        );
        assert_eq!(
            executor_lock_key("dbos", "testapp", "dbos-rs-w2"),
            3_513_619_336_943_177_473
        );
    }

    #[test]
    fn keepalives_add_up_to_the_timeout() {
        let k = keepalive_settings(Duration::from_secs(30));
        assert_eq!((k.idle_secs, k.interval_secs, k.count), (15, 5, 3));
        assert_eq!(k.idle_secs + k.interval_secs * u64::from(k.count), 30);
        assert_eq!(k.user_timeout_ms, 30_000);
        let k = keepalive_settings(Duration::from_secs(3));
        assert_eq!((k.idle_secs, k.interval_secs), (1, 1));
    }
}
