//! A Postgres that starts itself: the default system database when no URL is configured.
//!
//! [`LocalPostgres`] runs a server from the installed Postgres binaries with its data under a
//! folder of the application ([`LocalPostgres::default_dir`] by default). The first start initialises the data
//! directory with a random superuser password (kept in `<folder>/password`); later starts,
//! including after the application was killed, find the data and reuse a server that is
//! still running. The server listens on 127.0.0.1 only, on the port of its previous start
//! while that is free (kept in `<folder>/port`), else on a free port.
//!
//! When the process runs as root, the server runs as the `postgres` account (Postgres refuses
//! root) and its data directory is owned by it.
//!
//! A server can stop itself once no process uses it and no client is connected
//! ([`LocalPostgresBuilder::stop_when_unused`]); the one [`Dbos::launch`](crate::Dbos::launch)
//! starts does, [`APP_IDLE_STOP`] after its last user, unless
//! [`Config::keep_local_postgres`](crate::Config::keep_local_postgres) keeps it running.
//!
//! ```no_run
//! use dbos_core::local_postgres::LocalPostgres;
//!
//! #[tokio::main]
//! async fn main() -> dbos_core::Result<()> {
//!     let pg = LocalPostgres::builder(".dbos").start().await?;
//!     println!("listening on port {}", pg.port());
//!     let url = pg.url("shop_dbos_sys"); // contains the password: never log it
//!     println!("{}", dbos_core::sysdb::redact_url(&url));
//!     Ok(())
//! }
//! ```

mod account;
mod binaries;
mod watchdog;

use std::fs::{self, File};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use account::ServerAccount;
pub use binaries::ENV_POSTGRES_BIN_DIR;

use crate::error::{Error, ErrorKind, Result};

/// The superuser the local server is initialised with.
pub const SUPERUSER: &str = "postgres";

/// How long the local Postgres that [`Dbos::launch`](crate::Dbos::launch) starts stays up
/// once unused (no process using it, no client connected), unless
/// [`Config::keep_local_postgres`](crate::Config::keep_local_postgres) keeps it running: see
/// [`LocalPostgresBuilder::stop_when_unused`].
pub const APP_IDLE_STOP: Duration = Duration::from_secs(5);

/// A running local Postgres server.
#[derive(Clone)]
pub struct LocalPostgres {
    root: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    password: String,
    account: Option<ServerAccount>,
    reused: bool,
    /// This process's use lease (see [`LocalPostgres::release`]), shared by the clones.
    lease: Arc<Mutex<Option<File>>>,
}

impl std::fmt::Debug for LocalPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPostgres")
            .field("root", &self.root)
            .field("bin_dir", &self.bin_dir)
            .field("port", &self.port)
            .field("reused", &self.reused)
            .finish_non_exhaustive()
    }
}

/// Options for starting a [`LocalPostgres`]; see [`LocalPostgres::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct LocalPostgresBuilder {
    root: PathBuf,
    ephemeral: bool,
    fresh: bool,
    standby_of: Option<Box<LocalPostgres>>,
    tls: Option<(String, String)>,
    settings: Vec<(String, String)>,
    stop_when_unused: Option<Duration>,
}

impl LocalPostgres {
    /// A builder for a server whose files live under `root`.
    pub fn builder(root: impl Into<PathBuf>) -> LocalPostgresBuilder {
        LocalPostgresBuilder {
            root: root.into(),
            ephemeral: false,
            fresh: false,
            standby_of: None,
            tls: None,
            settings: Vec::new(),
            stop_when_unused: None,
        }
    }

    /// The folder [`Dbos::launch`](crate::Dbos::launch) keeps the local Postgres of the
    /// application `app_name` in when none is configured: `$XDG_DATA_HOME/dbos-rs/<app>`, or
    /// `$HOME/.local/share/dbos-rs/<app>` when `XDG_DATA_HOME` is unset. It does not depend
    /// on the working directory, so the same program started from another folder finds its
    /// data (and its finished work). `DBOS_LOCAL_POSTGRES_DIR` or
    /// [`Config::local_postgres_dir`](crate::Config::local_postgres_dir) override it.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when neither `XDG_DATA_HOME` nor `HOME` is set (say which
    /// folder to use with `DBOS_LOCAL_POSTGRES_DIR`), or the name is unusable as a folder.
    pub fn default_dir(app_name: &str) -> Result<PathBuf> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        default_dir_from(app_name, var("XDG_DATA_HOME"), var("HOME"))
    }

    /// The URL of `database` on this server, with the superuser's password in it.
    /// Log [`redacted_url`](Self::redacted_url) instead.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// The database [`Dbos::launch`](crate::Dbos::launch) uses on the local Postgres for the
    /// application `app_name` when no URL is configured: `<app>_dbos_sys` (lowercase, `-`
    /// as `_`).
    ///
    /// ```
    /// assert_eq!(dbos_core::local_postgres::LocalPostgres::database_for_app("my-Shop"), "my_shop_dbos_sys");
    /// ```
    pub fn database_for_app(app_name: &str) -> String {
        format!("{}_dbos_sys", app_name.replace('-', "_").to_lowercase())
    }

    /// The URL of `database` with the password replaced by `***`.
    pub fn redacted_url(&self, database: &str) -> String {
        crate::sysdb::redact_url(&self.url(database))
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder holding the data directory, password, log and lock.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of the server binaries in use (`pg_dump`, `psql` live there too).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Whether an already running server was reused instead of started.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Ends this process's use of the server (for every clone of this value; dropping them
    /// all, or the process exiting, does the same). A server started with
    /// [`stop_when_unused`](LocalPostgresBuilder::stop_when_unused) stops once no process
    /// uses it and no client is connected for its idle limit. [`Dbos::shutdown`](crate::Dbos::shutdown)
    /// calls it.
    pub fn release(&self) {
        let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(lease);
    }

    /// Stops the server (fast shutdown: open sessions are ended).
    ///
    /// # Errors
    /// [`ErrorKind::LocalPostgres`] when `pg_ctl stop` fails.
    pub async fn stop(&self) -> Result<()> {
        let this = self.clone();
        blocking(move || {
            let mut cmd = account::command(&this.bin_dir.join("pg_ctl"), this.account.as_ref());
            cmd.arg("-D")
                .arg(this.root.join("data"))
                .args(["-m", "fast", "-w", "stop"]);
            run(cmd, "pg_ctl stop").map(|_| ())
        })
        .await
    }

    /// Stops the server the way a crash would (`pg_ctl stop -m immediate`): every process
    /// exits at once, without a checkpoint; the next start replays the WAL. Open
    /// connections see their socket closed. Meant for failover tests: stop a primary this
    /// way, then [`promote`](Self::promote) its standby.
    ///
    /// # Errors
    /// [`ErrorKind::LocalPostgres`] when `pg_ctl stop` fails (no server running, say).
    pub async fn stop_immediate(&self) -> Result<()> {
        let this = self.clone();
        blocking(move || {
            let mut cmd = account::command(&this.bin_dir.join("pg_ctl"), this.account.as_ref());
            cmd.arg("-D")
                .arg(this.root.join("data"))
                .args(["-m", "immediate", "-w", "stop"]);
            run(cmd, "pg_ctl stop -m immediate").map(|_| ())
        })
        .await
    }

    /// Promotes a standby (started with [`LocalPostgresBuilder::standby_of`]) to a primary
    /// that accepts writes, and waits until it does (`pg_ctl promote -w`).
    ///
    /// # Errors
    /// [`ErrorKind::LocalPostgres`] when `pg_ctl promote` fails, for instance because the
    /// server is not a standby.
    pub async fn promote(&self) -> Result<()> {
        let this = self.clone();
        blocking(move || {
            let mut cmd = account::command(&this.bin_dir.join("pg_ctl"), this.account.as_ref());
            cmd.arg("-D")
                .arg(this.root.join("data"))
                .args(["-w", "-t", "60", "promote"]);
            run(cmd, "pg_ctl promote").map(|_| ())
        })
        .await
    }

    /// Crashes and restarts the server on the same port, as a power cut or an
    /// `OOM kill` of the postmaster would: `pg_ctl restart -m immediate` ends every
    /// session without a checkpoint, and the server replays its WAL on the way back up.
    /// Meant for fault-injection tests; open connections see their socket closed. A server
    /// started [`ephemeral`](LocalPostgresBuilder::ephemeral) loses acknowledged commits in
    /// such a crash unless `synchronous_commit` was turned back on.
    ///
    /// # Errors
    /// [`ErrorKind::LocalPostgres`] when `pg_ctl restart` fails.
    pub async fn restart_immediate(&self) -> Result<()> {
        let this = self.clone();
        blocking(move || {
            let mut cmd = account::command(&this.bin_dir.join("pg_ctl"), this.account.as_ref());
            {
                use std::os::unix::process::CommandExt;
                cmd.process_group(0);
            }
            cmd.current_dir(&this.root)
                .arg("-D")
                .arg(this.root.join("data"))
                .arg("-l")
                .arg(this.root.join("server.log"))
                .args(["-m", "immediate", "-w", "-t", "60", "restart"]);
            run(cmd, "pg_ctl restart").map(|_| ())
        })
        .await
    }
}

/// What a folder holds, as [`LocalPostgres::probe`] finds it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LocalPostgresState {
    /// No server was ever initialised there.
    Absent {
        /// The folder looked at.
        root: PathBuf,
    },
    /// A data directory is there, and no server runs on it.
    Stopped {
        /// The folder holding the data directory.
        root: PathBuf,
    },
    /// A server runs on it.
    Running(LocalPostgres),
}

impl LocalPostgres {
    /// What the folder `root` holds (the same folder rules as
    /// [`LocalPostgresBuilder::start`], including the relocation made when running as root),
    /// without starting or creating anything: for `dbos-rs postgres status|url|stop`.
    ///
    /// # Errors
    /// [`ErrorKind::LocalPostgres`] when the Postgres binaries are missing (needed to stop a
    /// server) or no account can run it as root; [`ErrorKind::Io`] when the folder cannot be
    /// read.
    pub async fn probe(root: impl Into<PathBuf>) -> Result<LocalPostgresState> {
        let wanted = root.into();
        blocking(move || {
            let mut root = std::path::absolute(&wanted)
                .map_err(|e| Error::io(format!("invalid folder {}", wanted.display()), e))?;
            if let Ok(moved) = fs::read_to_string(root.join("LOCATION")) {
                root = PathBuf::from(moved.trim());
            }
            let data = root.join("data");
            if !data.join("PG_VERSION").is_file() {
                return Ok(LocalPostgresState::Absent { root });
            }
            let Some(port) = running_port(&data) else {
                return Ok(LocalPostgresState::Stopped { root });
            };
            let password_file = root.join("password");
            let password = fs::read_to_string(&password_file)
                .map_err(|e| Error::io(format!("could not read {}", password_file.display()), e))?
                .trim()
                .to_owned();
            Ok(LocalPostgresState::Running(LocalPostgres {
                bin_dir: binaries::find()?,
                account: account::server_account()?,
                root,
                port,
                password,
                reused: true,
                lease: Arc::default(),
            }))
        })
        .await
    }
}

impl LocalPostgresBuilder {
    /// Trades durability for speed (`fsync=off`, `synchronous_commit=off`, no sync at init):
    /// for tests and benchmarks, never for data you keep. With `synchronous_commit=off` a
    /// server crash ([`LocalPostgres::restart_immediate`]) loses the last acknowledged
    /// commits; a test that crashes the server should add
    /// `.setting("synchronous_commit", "on")` (later settings win).
    pub fn ephemeral(mut self, ephemeral: bool) -> Self {
        self.ephemeral = ephemeral;
        self
    }

    /// Starts from an empty folder: a server still running on it is stopped (immediate
    /// shutdown) and its data, password and log are deleted before the server is created
    /// again. For tests that need a server in a known state.
    pub fn fresh(mut self, fresh: bool) -> Self {
        self.fresh = fresh;
        self
    }

    /// Creates the data directory as a streaming standby of `primary` instead of with
    /// `initdb`: `pg_basebackup -R` copies the primary (its superuser password included)
    /// and leaves the standby configured to stream from it. The standby is read-only until
    /// [`LocalPostgres::promote`]. For synchronous replication, start the primary with
    /// `.setting("synchronous_standby_names", "'*'")`; its commits then wait until the
    /// standby has flushed them (and hang while no standby is connected).
    ///
    /// Only used when the folder holds no data directory yet (see [`fresh`](Self::fresh)).
    ///
    /// ```no_run
    /// use dbos_core::local_postgres::LocalPostgres;
    ///
    /// #[tokio::main]
    /// async fn main() -> dbos_core::Result<()> {
    ///     let primary = LocalPostgres::builder("pg/primary")
    ///         // Quoted: pg_ctl passes settings through a shell.
    ///         .setting("synchronous_standby_names", "'*'")
    ///         .start()
    ///         .await?;
    ///     let standby = LocalPostgres::builder("pg/standby")
    ///         .standby_of(&primary)
    ///         .start()
    ///         .await?;
    ///     primary.stop_immediate().await?;
    ///     standby.promote().await?;
    ///     Ok(())
    /// }
    /// ```
    pub fn standby_of(mut self, primary: &LocalPostgres) -> Self {
        self.standby_of = Some(Box::new(primary.clone()));
        self
    }

    /// Serves TLS with this PEM certificate and key (written into the data directory).
    pub fn tls(mut self, cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        self.tls = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// When this start starts the server (rather than finding it running), the server stops
    /// itself once it has been unused for `idle`: no process holds a use lease on it (every
    /// process that started or reused it through [`start`](Self::start) holds one until
    /// [`LocalPostgres::release`] or its exit, crash included) and no client is connected
    /// (`pg_stat_activity`). A small watchdog process started beside the server checks every
    /// `idle / 3` (1 to 30 s) and stops it with `pg_ctl stop -m fast`; it needs `sh` and
    /// `flock` (util-linux), and without them the server keeps running. It never stops a
    /// server that a starting process has just chosen to reuse (both take the folder's lock).
    ///
    /// Without this option (the default), the server keeps running until stopped
    /// (`dbos-rs postgres stop`, [`LocalPostgres::stop`]), and a start that finds a
    /// self-stopping server running asks it to keep running too.
    /// [`Dbos::launch`](crate::Dbos::launch) starts its server with
    /// [`APP_IDLE_STOP`] unless [`Config::keep_local_postgres`](crate::Config::keep_local_postgres)
    /// says otherwise.
    pub fn stop_when_unused(mut self, idle: Duration) -> Self {
        self.stop_when_unused = Some(idle);
        self
    }

    /// Passes `-c name=value` to the server. `pg_ctl` hands the options to a shell, so quote
    /// a value holding spaces or `*` in single quotes (`"'*'"`).
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Starts the server, or reuses the one already running on this folder.
    ///
    /// Safe to call from several processes at once: they serialise on a lock file and all
    /// end up using one server.
    ///
    /// # Errors
    /// [`ErrorKind::LocalPostgres`] when the binaries are missing, `initdb` or `pg_ctl` fail
    /// (the message carries the end of the server log), or no unprivileged account exists
    /// when running as root.
    pub async fn start(self) -> Result<LocalPostgres> {
        blocking(move || self.start_blocking()).await
    }

    fn start_blocking(self) -> Result<LocalPostgres> {
        let bin_dir = binaries::find()?;
        let account = account::server_account()?;
        let root = self.resolve_root(account.as_ref())?;
        let lock = File::create(root.join("lock")).map_err(|e| {
            Error::io(
                format!("could not create {}", root.join("lock").display()),
                e,
            )
        })?;
        lock.lock()
            .map_err(|e| Error::io("could not lock the local Postgres folder", e))?;

        let data = root.join("data");
        let password_file = root.join("password");
        if self.fresh {
            discard(&bin_dir, &root, account.as_ref())?;
        }
        if !data.join("PG_VERSION").is_file() {
            match &self.standby_of {
                Some(primary) => self.base_backup(primary, &bin_dir, &root, account.as_ref())?,
                None => self.initdb(&bin_dir, &root, account.as_ref())?,
            }
        }
        let password = fs::read_to_string(&password_file)
            .map_err(|e| Error::io(format!("could not read {}", password_file.display()), e))?
            .trim()
            .to_owned();
        let keep_marker = root.join(watchdog::KEEP_RUNNING_FILE);
        let running = running_port(&data);
        let port = match running {
            Some(port) => {
                tracing::debug!(port, root = %root.display(), "reusing the running local Postgres");
                port
            }
            None => {
                let port = self.pg_ctl_start(&bin_dir, &root, account.as_ref())?;
                tracing::info!(port, root = %root.display(), "started a local Postgres");
                port
            }
        };
        // Taken before the start lock is let go: a watchdog about to stop the server takes
        // that lock and then sees this lease.
        let lease = watchdog::take_lease(&root)?;
        match (self.stop_when_unused, running) {
            (None, _) => write_private(&keep_marker, "", None)?,
            (Some(idle), None) => {
                remove_if_present(&keep_marker)?;
                watchdog::spawn(&root, &bin_dir, port, &password, idle, account.as_ref())?;
            }
            // Reused: the server keeps the lifetime its starter chose.
            (Some(_), Some(_)) => {}
        }
        Ok(LocalPostgres {
            root,
            bin_dir,
            port,
            password,
            account,
            reused: running.is_some(),
            lease: Arc::new(Mutex::new(Some(lease))),
        })
    }

    /// The absolute root folder, created; when running as root and the `postgres` account
    /// cannot reach it (say, under /root), a folder under /var/tmp keyed by its path.
    fn resolve_root(&self, account: Option<&ServerAccount>) -> Result<PathBuf> {
        let mut root = std::path::absolute(&self.root)
            .map_err(|e| Error::io(format!("invalid folder {}", self.root.display()), e))?;
        // Created first, so that whether the account can reach it is judged on the folders
        // as they are (a parent that did not exist yet is made here, traversable).
        fs::create_dir_all(&root)
            .map_err(|e| Error::io(format!("could not create {}", root.display()), e))?;
        if let Some(a) = account {
            if !a.can_reach(&root) {
                use sha2::{Digest, Sha256};
                let hash = format!("{:x}", Sha256::digest(root.to_string_lossy().as_bytes()));
                let fallback = PathBuf::from("/var/tmp/dbos-local-postgres").join(&hash[..16]);
                tracing::warn!(
                    wanted = %root.display(),
                    using = %fallback.display(),
                    "the `{}` account cannot reach the local Postgres folder; keeping the data in a reachable folder instead",
                    a.name
                );
                let _ = fs::write(root.join("LOCATION"), format!("{}\n", fallback.display()));
                root = fallback;
            }
        }
        fs::create_dir_all(&root)
            .map_err(|e| Error::io(format!("could not create {}", root.display()), e))?;
        if account.is_some() {
            fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).map_err(|e| {
                Error::io(
                    format!("could not set permissions on {}", root.display()),
                    e,
                )
            })?;
        }
        Ok(root)
    }

    fn initdb(&self, bin_dir: &Path, root: &Path, account: Option<&ServerAccount>) -> Result<()> {
        let data = empty_data_dir(root, account)?;
        let password = uuid::Uuid::new_v4().simple().to_string();
        write_private(&root.join("password"), &password, None)?;
        let pwfile = root.join("pwfile.tmp");
        write_private(&pwfile, &password, account)?;
        let mut cmd = account::command(&bin_dir.join("initdb"), account);
        cmd.current_dir(root)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--auth=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        if self.ephemeral {
            cmd.arg("--no-sync");
        }
        let result = run(cmd, "initdb");
        let _ = fs::remove_file(&pwfile);
        result?;
        self.write_tls(&data, account)
    }

    /// The data directory as a base backup of `primary`, set up to stream from it.
    fn base_backup(
        &self,
        primary: &LocalPostgres,
        bin_dir: &Path,
        root: &Path,
        account: Option<&ServerAccount>,
    ) -> Result<()> {
        let data = empty_data_dir(root, account)?;
        // The copy carries the primary's roles, so its superuser password too.
        write_private(&root.join("password"), &primary.password, None)?;
        let conninfo = format!(
            "host=127.0.0.1 port={} user={SUPERUSER} password={} application_name={}",
            primary.port,
            primary.password,
            root.file_name()
                .map(|n| n
                    .to_string_lossy()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_"))
                .unwrap_or_else(|| "standby".to_owned())
        );
        let mut cmd = account::command(&bin_dir.join("pg_basebackup"), account);
        cmd.current_dir(root)
            .arg("-D")
            .arg(&data)
            .args(["-R", "-X", "stream", "-c", "fast", "-d", &conninfo]);
        if self.ephemeral {
            cmd.arg("--no-sync");
        }
        if let Err(e) = run(cmd, "pg_basebackup") {
            // Leave no half-copied data directory to be mistaken for a server next time.
            let _ = fs::remove_dir_all(&data);
            return Err(e);
        }
        self.write_tls(&data, account)
    }

    fn write_tls(&self, data: &Path, account: Option<&ServerAccount>) -> Result<()> {
        if let Some((cert, key)) = &self.tls {
            write_private(&data.join("server.crt"), cert, account)?;
            write_private(&data.join("server.key"), key, account)?;
        }
        Ok(())
    }

    fn pg_ctl_start(
        &self,
        bin_dir: &Path,
        root: &Path,
        account: Option<&ServerAccount>,
    ) -> Result<u16> {
        let log = root.join("server.log");
        File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| Error::io(format!("could not create {}", log.display()), e))?;
        if let Some(a) = account {
            a.own(&log)?;
        }
        // The port of the last start, while it is free: a URL printed or exported earlier
        // (`dbos-rs postgres url`) stays valid across restarts.
        let port_file = root.join("port");
        let remembered = fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok());
        let mut last_error = None;
        for attempt in 0..3 {
            let port = match remembered {
                Some(p) if attempt == 0 && TcpListener::bind(("127.0.0.1", p)).is_ok() => p,
                _ => free_port()?,
            };
            let mut options =
                format!("-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''");
            if self.ephemeral {
                options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
            }
            if self.tls.is_some() {
                options
                    .push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
            }
            for (k, v) in &self.settings {
                options.push_str(&format!(" -c {k}={v}"));
            }
            let mut cmd = account::command(&bin_dir.join("pg_ctl"), account);
            {
                use std::os::unix::process::CommandExt;
                // Its own process group: Ctrl-C on the application does not stop the server.
                cmd.process_group(0);
            }
            cmd.current_dir(root)
                .arg("-D")
                .arg(root.join("data"))
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &options, "start"]);
            match run(cmd, "pg_ctl start") {
                Ok(_) => {
                    if remembered.is_some_and(|r| r != port) {
                        tracing::warn!(
                            port,
                            previous = remembered,
                            "the local Postgres's previous port is taken; it listens on a new one (URLs printed before are stale)"
                        );
                    }
                    write_private(&port_file, &format!("{port}\n"), None)?;
                    return Ok(port);
                }
                Err(e) => {
                    let tail = log_tail(&log);
                    last_error = Some(Error::new(
                        ErrorKind::LocalPostgres,
                        format!("{e}\nserver log ({}):\n{tail}", log.display()),
                    ));
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| Error::new(ErrorKind::LocalPostgres, "pg_ctl start failed")))
    }
}

/// [`LocalPostgres::default_dir`] from the values of `XDG_DATA_HOME` and `HOME`.
fn default_dir_from(
    app_name: &str,
    xdg_data_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Result<PathBuf> {
    let name = app_name.trim();
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::config(format!(
            "the application name `{app_name}` cannot name the local Postgres folder: use a name \
             without `/`, or set DBOS_LOCAL_POSTGRES_DIR"
        )));
    }
    let base = match (xdg_data_home, home) {
        (Some(xdg), _) if Path::new(&xdg).is_absolute() => PathBuf::from(xdg),
        (_, Some(home)) => PathBuf::from(home).join(".local").join("share"),
        _ => {
            return Err(Error::config(
                "neither XDG_DATA_HOME nor HOME is set, so there is no folder for the local \
                 Postgres: set DBOS_LOCAL_POSTGRES_DIR (or Config::local_postgres_dir), or \
                 DBOS_SYSTEM_DATABASE_URL to use a Postgres you run",
            ))
        }
    };
    Ok(base.join("dbos-rs").join(name))
}

/// An empty data directory under `root` (an interrupted earlier attempt is cleared), with
/// the permissions Postgres demands, owned by the server's account.
fn empty_data_dir(root: &Path, account: Option<&ServerAccount>) -> Result<PathBuf> {
    let data = root.join("data");
    if data.exists() {
        fs::remove_dir_all(&data)
            .map_err(|e| Error::io(format!("could not clear {}", data.display()), e))?;
    }
    fs::create_dir_all(&data)
        .map_err(|e| Error::io(format!("could not create {}", data.display()), e))?;
    fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).map_err(|e| {
        Error::io(
            format!("could not set permissions on {}", data.display()),
            e,
        )
    })?;
    if let Some(a) = account {
        a.own(&data)?;
    }
    Ok(data)
}

/// Stops a server still running on `root` (immediate shutdown) and deletes its files.
fn discard(bin_dir: &Path, root: &Path, account: Option<&ServerAccount>) -> Result<()> {
    let data = root.join("data");
    if running_port(&data).is_some() || data.join("postmaster.pid").is_file() {
        let mut cmd = account::command(&bin_dir.join("pg_ctl"), account);
        cmd.arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"]);
        // Fails when no server runs (a stale pid file): nothing to stop then.
        let _ = run(cmd, "pg_ctl stop -m immediate");
    }
    if data.exists() {
        fs::remove_dir_all(&data)
            .map_err(|e| Error::io(format!("could not delete {}", data.display()), e))?;
    }
    for file in ["password", "server.log"] {
        remove_if_present(&root.join(file))?;
    }
    Ok(())
}

/// Deletes `path`; a file already absent is fine.
fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("could not delete {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

/// The port of a live server on `data`, from its `postmaster.pid`.
fn running_port(data: &Path) -> Option<u16> {
    let pidfile = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let mut lines = pidfile.lines();
    let pid: i32 = lines.next()?.trim().parse().ok()?;
    let port: u16 = lines.nth(2)?.trim().parse().ok()?;
    // SAFETY: kill with signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !alive {
        return None;
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .ok()
        .map(|_| port)
}

fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("could not find a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("could not find a free port", e))
}

fn write_private(path: &Path, contents: &str, account: Option<&ServerAccount>) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode_private()
        .open(path)
        .map_err(|e| Error::io(format!("could not write {}", path.display()), e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| Error::io(format!("could not write {}", path.display()), e))?;
    if let Some(a) = account {
        a.own(path)?;
    }
    Ok(())
}

trait ModePrivate {
    fn mode_private(&mut self) -> &mut Self;
}

impl ModePrivate for fs::OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| {
            Error::new(
                ErrorKind::LocalPostgres,
                format!("could not run {what}: {e}"),
            )
            .with_source(e)
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(Error::new(
        ErrorKind::LocalPostgres,
        format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ),
    ))
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::new(
            ErrorKind::LocalPostgres,
            format!("the local Postgres task failed: {e}"),
        )
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_folder_is_per_application_under_the_user_s_data_folder() {
        let dir = |xdg: Option<&str>, home: Option<&str>| {
            default_dir_from("shop", xdg.map(Into::into), home.map(Into::into))
        };
        assert_eq!(
            dir(Some("/data"), Some("/home/ferris")).unwrap(),
            Path::new("/data/dbos-rs/shop")
        );
        assert_eq!(
            dir(None, Some("/home/ferris")).unwrap(),
            Path::new("/home/ferris/.local/share/dbos-rs/shop")
        );
        // A relative XDG_DATA_HOME is ignored, as the XDG rules say.
        assert_eq!(
            dir(Some("rel"), Some("/home/ferris")).unwrap(),
            Path::new("/home/ferris/.local/share/dbos-rs/shop")
        );
        let e = dir(None, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("DBOS_LOCAL_POSTGRES_DIR"), "{e}");
        let e = default_dir_from("a/b", None, Some("/h".into())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }
}
