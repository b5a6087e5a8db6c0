//! PgBouncer in front of the test cluster: what a fleet sees behind a connection pooler.
//!
//! Starts the installed `pgbouncer` (Debian's `pgbouncer` package; `.ci/run` installs it) on
//! a free local port, pooling every database of the shared test cluster with a small server
//! pool, in [`PoolMode::Transaction`] (a server connection per transaction, what Supabase's,
//! Neon's and most managed poolers do) or [`PoolMode::Session`] (one per client connection).
//! Clients authenticate as the cluster's superuser (PgBouncer checks nothing,
//! `auth_type = trust`, and logs in to Postgres with the superuser's password). After a failed
//! server login (Postgres restarting) it tries again after a second (`server_login_retry = 1`)
//! rather than PgBouncer's default 15 s, which would stall every client for that long. The process
//! is killed when the value is dropped (and when the test process dies, by
//! `PR_SET_PDEATHSIG`).
//!
//! ```no_run
//! # async fn demo(db: dbos_testkit::TestDatabase) {
//! use dbos_testkit::pgbouncer::{PgBouncer, PoolMode};
//!
//! let bouncer = PgBouncer::start(db.cluster(), PoolMode::Transaction).await;
//! let url = bouncer.url(&db.url()); // the same database, through PgBouncer
//! # let _ = url;
//! # }
//! ```

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::cluster::TestCluster;

/// How PgBouncer hands out server connections (its `pool_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection for each client connection, for as long as it lasts.
    Session,
    /// A server connection for each transaction (or statement outside one): session state
    /// (prepared statements, `LISTEN`, advisory locks, `SET`) does not survive from one
    /// transaction to the next.
    Transaction,
}

impl PoolMode {
    fn setting(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// Server connections PgBouncer opens per database and user unless told otherwise: small,
/// as in front of a Postgres shared by a fleet.
pub const SERVER_POOL_SIZE: usize = 5;

/// How long a client waits for a server connection before PgBouncer answers it with an
/// error (`query_wait_timeout`), unless told otherwise: PgBouncer's default.
pub const QUERY_WAIT_TIMEOUT: Duration = Duration::from_secs(120);

/// A running PgBouncer; dropping it kills the process.
#[derive(Debug)]
pub struct PgBouncer {
    child: Child,
    port: u16,
    target_port: u16,
    mode: PoolMode,
    dir: PathBuf,
}

impl PgBouncer {
    /// Starts PgBouncer in `mode` in front of `cluster` with [`SERVER_POOL_SIZE`] server
    /// connections per database, and returns once it accepts connections.
    ///
    /// # Panics
    /// When `pgbouncer` is not installed or does not come up within 30 seconds.
    pub async fn start(cluster: &TestCluster, mode: PoolMode) -> PgBouncer {
        PgBouncer::start_with_pool(cluster, mode, SERVER_POOL_SIZE).await
    }

    /// [`start`](Self::start) with `server_pool` server connections per database (its
    /// `default_pool_size`). In session mode each client connection holds one for its
    /// whole life, so the pool must be at least as large as the client connections: beyond
    /// it, a client waits for a server connection to be freed.
    ///
    /// # Panics
    /// As `start`.
    pub async fn start_with_pool(
        cluster: &TestCluster,
        mode: PoolMode,
        server_pool: usize,
    ) -> PgBouncer {
        PgBouncer::start_for(
            &cluster.url("postgres"),
            crate::cluster::cluster_dir(),
            mode,
            server_pool,
        )
        .await
    }

    /// PgBouncer in front of the server of `admin_url` (any Postgres URL of it, with the
    /// user and password PgBouncer logs in with), its files in a folder under `parent`:
    /// what the benchmark puts in front of its own server.
    ///
    /// # Panics
    /// As `start`, and when the URL does not parse or names no port.
    pub async fn start_for(
        admin_url: &str,
        parent: PathBuf,
        mode: PoolMode,
        server_pool: usize,
    ) -> PgBouncer {
        PgBouncer::start_waiting(admin_url, parent, mode, server_pool, QUERY_WAIT_TIMEOUT).await
    }

    /// [`start_with_pool`](Self::start_with_pool) where a client that waits `query_wait`
    /// for a server connection gets an error instead (PgBouncer's `query_wait_timeout`,
    /// [`QUERY_WAIT_TIMEOUT`] elsewhere): what a test of a stall at the pooler sets short,
    /// so that the stall fails it at once rather than after two minutes.
    ///
    /// # Panics
    /// As `start`.
    pub async fn start_with_query_wait(
        cluster: &TestCluster,
        mode: PoolMode,
        server_pool: usize,
        query_wait: Duration,
    ) -> PgBouncer {
        PgBouncer::start_waiting(
            &cluster.url("postgres"),
            crate::cluster::cluster_dir(),
            mode,
            server_pool,
            query_wait,
        )
        .await
    }

    async fn start_waiting(
        admin_url: &str,
        parent: PathBuf,
        mode: PoolMode,
        server_pool: usize,
        query_wait: Duration,
    ) -> PgBouncer {
        let admin = tokio_postgres::Config::from_str(admin_url)
            .unwrap_or_else(|e| panic!("dbos-testkit: the server URL does not parse: {e}"));
        let target_port = *admin
            .get_ports()
            .first()
            .unwrap_or_else(|| panic!("dbos-testkit: the server URL names no port"));
        let user = admin.get_user().unwrap_or("postgres").to_owned();
        let password = admin
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let port = free_port();
        let dir = parent.join(format!("pgbouncer-{port}"));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("dbos-testkit: cannot create {}: {e}", dir.display()));
        let auth_file = dir.join("users.txt");
        write(&auth_file, &format!("\"{user}\" \"{password}\"\n"));
        let ini = dir.join("pgbouncer.ini");
        write(
            &ini,
            &format!(
                "[databases]\n\
                 * = host=127.0.0.1 port={target_port}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {auth}\n\
                 pool_mode = {mode}\n\
                 default_pool_size = {server_pool}\n\
                 max_client_conn = 1000\n\
                 server_tls_sslmode = disable\n\
                 server_login_retry = 1\n\
                 query_wait_timeout = {query_wait}\n\
                 ignore_startup_parameters = extra_float_digits,options\n\
                 admin_users = {user}\n",
                auth = auth_file.display(),
                mode = mode.setting(),
                query_wait = query_wait.as_secs().max(1),
            ),
        );
        let log = std::fs::File::create(dir.join("pgbouncer.log"))
            .unwrap_or_else(|e| panic!("dbos-testkit: cannot create the PgBouncer log: {e}"));
        let mut cmd = Command::new(program());
        // PgBouncer refuses to run as root, as Postgres does: it switches to the account the
        // cluster runs as once it has read its files.
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            cmd.arg("-u").arg("postgres");
        }
        cmd.arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // SAFETY: prctl with PR_SET_PDEATHSIG only sets a flag of the child process; it
        // allocates nothing and is async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("dbos-testkit: cannot start pgbouncer ({e}): install the `pgbouncer` package")
        });
        let mut bouncer = PgBouncer {
            child,
            port,
            target_port,
            mode,
            dir,
        };
        bouncer.wait_ready().await;
        bouncer
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "dbos-testkit: pgbouncer exited at start ({status}): {}",
                    self.log()
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "dbos-testkit: pgbouncer did not listen on port {} within 30 s: {}",
                    self.port,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What PgBouncer logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    /// The lines PgBouncer logged so far that name `query_wait_timeout`: each says a client
    /// waited that long for a server connection and was given an error instead, what a stall
    /// at the pooler leaves behind (see [`start_with_query_wait`](Self::start_with_query_wait)).
    /// Empty when no client waited that long.
    pub fn waited_lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("query_wait_timeout"))
            .map(str::to_owned)
            .collect()
    }

    /// The port PgBouncer listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pool mode it runs in.
    pub fn mode(&self) -> PoolMode {
        self.mode
    }

    /// `url` (a URL of a database on the cluster) rewritten to go through PgBouncer, with
    /// TLS off (PgBouncer here serves none).
    pub fn url(&self, url: &str) -> String {
        let through = url.replace(
            &format!(":{}/", self.target_port),
            &format!(":{}/", self.port),
        );
        let sep = if through.contains('?') { '&' } else { '?' };
        format!("{through}{sep}sslmode=disable")
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `pgbouncer` program: on the `PATH`, or where Debian installs it.
fn program() -> PathBuf {
    let debian = PathBuf::from("/usr/sbin/pgbouncer");
    if debian.exists() {
        debian
    } else {
        PathBuf::from("pgbouncer")
    }
}

/// A local port nothing listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("dbos-testkit: cannot bind a local port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("dbos-testkit: local address: {e}"))
        .port()
}

fn write(path: &std::path::Path, text: &str) {
    std::fs::write(path, text)
        .unwrap_or_else(|e| panic!("dbos-testkit: cannot write {}: {e}", path.display()));
}
