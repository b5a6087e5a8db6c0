//! A primary and a streaming standby, for failover tests.
//!
//! Both servers run from the installed binaries in their own folders (not the shared test
//! cluster): the primary made with `initdb`, the standby with `pg_basebackup -R` from it,
//! streaming its WAL. With [`Replication::Synchronous`] the primary runs with
//! `synchronous_standby_names = '*'`, so a commit is acknowledged only once the standby
//! has flushed it: after the primary dies, the promoted standby holds every acknowledged
//! commit. With [`Replication::Asynchronous`] it does not wait, and a failover may lose the
//! last acknowledged commits.
//!
//! ```no_run
//! use std::time::Duration;
//! use dbos_testkit::replication::{Replication, ReplicatedPostgres};
//!
//! # async fn failover() {
//! let pair = ReplicatedPostgres::start("my-failover-test", Replication::Synchronous).await;
//! let url = pair.url("app_sys"); // both hosts, target_session_attrs=read-write
//! // ... launch a runtime on `url`, start work ...
//! pair.primary().stop_immediate().await.unwrap();
//! tokio::time::sleep(Duration::from_secs(1)).await;
//! pair.standby().promote().await.unwrap();
//! // ... the runtime now writes to the former standby ...
//! pair.shutdown().await;
//! # }
//! ```

use std::time::{Duration, Instant};

use dbos_core::local_postgres::LocalPostgres;

/// How the primary waits for the standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// `synchronous_standby_names = '*'`: a commit is acknowledged once the standby has
    /// flushed its WAL (`synchronous_commit = on`, the default).
    Synchronous,
    /// No waiting: the standby trails the primary, usually by well under a second.
    Asynchronous,
}

/// A running primary and its streaming standby.
#[derive(Debug)]
pub struct ReplicatedPostgres {
    primary: LocalPostgres,
    standby: LocalPostgres,
    mode: Replication,
}

impl ReplicatedPostgres {
    /// Starts a fresh pair under `<cluster dir>/<name>/{primary,standby}` (servers left
    /// there by an earlier run are stopped and their data deleted first), and returns once
    /// the standby streams from the primary (for [`Replication::Synchronous`]: once it is
    /// the synchronous standby).
    ///
    /// # Panics
    /// When either server cannot be started, or the standby does not catch up within a
    /// minute.
    pub async fn start(name: &str, mode: Replication) -> ReplicatedPostgres {
        let root = crate::cluster::cluster_dir().join(name);
        let mut primary = LocalPostgres::builder(root.join("primary")).fresh(true);
        if mode == Replication::Synchronous {
            primary = primary.setting("synchronous_standby_names", "'*'");
        }
        // Like the shared cluster, the pair stops itself once no test uses it.
        let idle = crate::cluster::idle_limit();
        if let Some(idle) = idle {
            primary = primary.stop_when_unused(idle);
        }
        let primary = primary
            .start()
            .await
            .unwrap_or_else(|e| panic!("dbos-testkit: could not start the primary: {e}"));
        let mut standby = LocalPostgres::builder(root.join("standby"))
            .fresh(true)
            .standby_of(&primary);
        if let Some(idle) = idle {
            standby = standby.stop_when_unused(idle);
        }
        let standby = standby
            .start()
            .await
            .unwrap_or_else(|e| panic!("dbos-testkit: could not start the standby: {e}"));
        let pair = ReplicatedPostgres {
            primary,
            standby,
            mode,
        };
        pair.wait_streaming().await;
        pair
    }

    /// The primary (until it is stopped).
    pub fn primary(&self) -> &LocalPostgres {
        &self.primary
    }

    /// The standby (the primary once promoted).
    pub fn standby(&self) -> &LocalPostgres {
        &self.standby
    }

    /// How the primary waits for the standby.
    pub fn mode(&self) -> Replication {
        self.mode
    }

    /// The URL of `database` naming both servers, primary first, with
    /// `target_session_attrs=read-write`: it reaches whichever of them accepts writes.
    pub fn url(&self, database: &str) -> String {
        let single = self.primary.url(database);
        let primary = format!("127.0.0.1:{}", self.primary.port());
        let both = format!("{primary},127.0.0.1:{}", self.standby.port());
        format!(
            "{}?target_session_attrs=read-write",
            single.replacen(&primary, &both, 1)
        )
    }

    /// A plain connection to `database` on one server of the pair.
    ///
    /// # Panics
    /// When the connection fails.
    pub async fn connect(server: &LocalPostgres, database: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&server.url(database), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "dbos-testkit: could not connect to port {}: {e}",
                    server.port()
                )
            });
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Waits until the primary reports the standby streaming (and, in synchronous mode,
    /// as its synchronous standby).
    async fn wait_streaming(&self) {
        let client = Self::connect(&self.primary, "postgres").await;
        let want = match self.mode {
            Replication::Synchronous => "sync",
            Replication::Asynchronous => "async",
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let row = client
                .query_opt(
                    "SELECT state, sync_state FROM pg_stat_replication LIMIT 1",
                    &[],
                )
                .await
                .unwrap_or_else(|e| {
                    panic!("dbos-testkit: could not read pg_stat_replication: {e}")
                });
            let state = row.map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)));
            if let Some((s, sync)) = &state {
                if s == "streaming" && sync == want {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "dbos-testkit: the standby is not streaming ({want}) after a minute: {state:?}; see {}",
                self.standby.root().join("server.log").display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the standby has replayed everything the primary has written so far.
    ///
    /// # Panics
    /// When it has not within a minute.
    pub async fn wait_caught_up(&self) {
        let client = Self::connect(&self.primary, "postgres").await;
        let target: String = client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .unwrap_or_else(|e| panic!("dbos-testkit: could not read the WAL position: {e}"))
            .get(0);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let caught_up: Option<bool> = client
                .query_opt(
                    "SELECT replay_lsn >= $1::text::pg_lsn FROM pg_stat_replication LIMIT 1",
                    &[&target],
                )
                .await
                .unwrap_or_else(|e| panic!("dbos-testkit: could not read pg_stat_replication: {e}"))
                .and_then(|r| r.get(0));
            if caught_up == Some(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dbos-testkit: the standby has not replayed up to {target} after a minute"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Freezes the primary's WAL sender (`SIGSTOP`), so nothing committed from now on
    /// reaches the standby. In [`Replication::Asynchronous`] mode commits are still
    /// acknowledged, and a failover now loses them; in synchronous mode commits wait. The
    /// sender is ended with the primary ([`LocalPostgres::stop_immediate`] kills processes
    /// that do not exit within seconds).
    ///
    /// # Panics
    /// When no WAL sender runs, or it cannot be signalled.
    pub async fn freeze_wal_sender(&self) {
        let client = Self::connect(&self.primary, "postgres").await;
        let pid: i32 = client
            .query_one("SELECT pid FROM pg_stat_replication LIMIT 1", &[])
            .await
            .unwrap_or_else(|e| panic!("dbos-testkit: no WAL sender: {e}"))
            .get(0);
        // SAFETY: kill has no memory-safety preconditions; pid names the WAL sender.
        let rc = unsafe { libc::kill(pid, libc::SIGSTOP) };
        assert_eq!(
            rc,
            0,
            "dbos-testkit: could not stop the WAL sender {pid}: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Stops both servers (immediate shutdown), ignoring one that is already stopped. The
    /// folders stay for inspection; the next [`start`](Self::start) with the same name
    /// deletes them.
    pub async fn shutdown(&self) {
        let _ = self.primary.stop_immediate().await;
        let _ = self.standby.stop_immediate().await;
    }
}
