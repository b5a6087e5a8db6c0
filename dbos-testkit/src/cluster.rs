//! The ephemeral Postgres cluster shared by every test of a run.
//!
//! One cluster per checkout, started on demand by the first test that needs it and reused by
//! every other test process (nextest runs each test in its own process; they serialise on
//! the cluster folder's lock file). It serves TLS with a self-signed certificate so
//! connection tests can exercise `sslmode=require` and `verify-full`.
//!
//! The cluster outlives the test run, so the next run starts at once, but not for long: it
//! stops itself once unused for [`DEFAULT_IDLE_STOP`] (10 minutes; `DBOS_TESTKIT_IDLE_STOP`
//! changes it). Unused means no test process holds it (each holds a use lease from its first
//! test until it exits, so the pauses between the test binaries `cargo test` runs one after
//! another never count) and no client is connected; see
//! [`LocalPostgresBuilder::stop_when_unused`](dbos_core::local_postgres::LocalPostgresBuilder::stop_when_unused).

use std::path::{Path, PathBuf};
use std::time::Duration;

use dbos_core::local_postgres::LocalPostgres;
use tokio::sync::OnceCell;

/// Environment variable overriding the cluster folder.
pub const ENV_TESTKIT_DIR: &str = "DBOS_TESTKIT_DIR";

/// Environment variable setting how long the test cluster stays up unused before it stops
/// itself: a duration (`30s`, `10m`, `1h`), or `none` to keep it running until
/// `dbos-rs postgres stop --dir <cluster folder>/pg`.
pub const ENV_IDLE_STOP: &str = "DBOS_TESTKIT_IDLE_STOP";

/// How long the test cluster stays up unused when [`ENV_IDLE_STOP`] is not set.
pub const DEFAULT_IDLE_STOP: Duration = Duration::from_secs(600);

/// The idle limit of the test cluster from the value of [`ENV_IDLE_STOP`]: `Ok(None)` to
/// keep it running.
///
/// # Errors
/// A description of the problem when `env` is neither a duration nor `none`.
pub fn idle_stop(env: Option<&str>) -> Result<Option<Duration>, String> {
    match env.map(str::trim) {
        None | Some("") => Ok(Some(DEFAULT_IDLE_STOP)),
        Some("none") => Ok(None),
        Some(text) => match crate::parse_duration(text) {
            Some(d) if !d.is_zero() => Ok(Some(d)),
            _ => Err(format!(
                "{ENV_IDLE_STOP}={text:?} is not an idle limit: write a duration such as 30s, 10m \
                 or 1h (a number and one of ms, s, m, h), or `none` to keep the test Postgres running"
            )),
        },
    }
}

/// The idle limit of every server the testkit starts, from [`ENV_IDLE_STOP`].
///
/// # Panics
/// When the variable holds neither a duration nor `none`.
pub fn idle_limit() -> Option<Duration> {
    let env = std::env::var(ENV_IDLE_STOP).ok();
    idle_stop(env.as_deref()).unwrap_or_else(|e| panic!("dbos-testkit: {e}"))
}

/// The shared test cluster.
#[derive(Debug)]
pub struct TestCluster {
    postgres: LocalPostgres,
    root: PathBuf,
}

static CLUSTER: OnceCell<TestCluster> = OnceCell::const_new();

/// The folder of this checkout's test cluster: `$DBOS_TESTKIT_DIR`, or
/// `<tmp>/dbos-testkit-<hash of this checkout's path>`.
pub fn cluster_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(ENV_TESTKIT_DIR) {
        return PathBuf::from(dir);
    }
    use sha2::{Digest, Sha256};
    let hash = format!(
        "{:x}",
        Sha256::digest(env!("CARGO_MANIFEST_DIR").as_bytes())
    );
    std::env::temp_dir().join(format!("dbos-testkit-{}", &hash[..12]))
}

/// The shared cluster, started (or found running) on first use.
///
/// # Panics
/// When the cluster cannot be started: tests cannot run without it.
pub async fn cluster() -> &'static TestCluster {
    CLUSTER
        .get_or_init(|| async {
            start_cluster(cluster_dir(), idle_limit())
                .await
                .unwrap_or_else(|e| panic!("dbos-testkit: {e}"))
        })
        .await
}

/// Starts a test cluster in `root` (or finds it running), as [`cluster()`] does with
/// [`cluster_dir()`] and [`ENV_IDLE_STOP`]; when this call starts it and `idle` is set, it
/// stops itself after `idle` unused. This process uses it (holds a use lease) until the
/// returned value's [`postgres()`](TestCluster::postgres) is
/// [released](LocalPostgres::release) or dropped with every clone, or the process exits.
///
/// # Errors
/// A description of what failed.
pub async fn start_cluster(root: PathBuf, idle: Option<Duration>) -> Result<TestCluster, String> {
    let (cert, key) = certificate(&root)?;
    let mut builder = LocalPostgres::builder(root.join("pg"))
        .ephemeral(true)
        .tls(cert, key)
        .setting("max_connections", "300");
    if let Some(idle) = idle {
        builder = builder.stop_when_unused(idle);
    }
    let postgres = builder
        .start()
        .await
        .map_err(|e| format!("could not start the test Postgres: {e}"))?;
    Ok(TestCluster { postgres, root })
}

/// The self-signed certificate the cluster serves (valid for `localhost` and `127.0.0.1`),
/// made once and kept beside the cluster.
fn certificate(root: &Path) -> Result<(String, String), String> {
    let dir = root.join("tls");
    let (cert_path, key_path) = (dir.join("server.crt"), dir.join("server.key"));
    if let (Ok(c), Ok(k)) = (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
    ) {
        return Ok((c, k));
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("could not create {}: {e}", dir.display()))?;
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(|e| format!("could not make a test certificate: {e}"))?;
    let (c, k) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    // Write the key first: a cert without key is regenerated, a key without cert too.
    std::fs::write(&key_path, &k)
        .map_err(|e| format!("could not write {}: {e}", key_path.display()))?;
    std::fs::write(&cert_path, &c)
        .map_err(|e| format!("could not write {}: {e}", cert_path.display()))?;
    Ok((c, k))
}

impl TestCluster {
    /// The URL of `database` on the cluster (with password).
    pub fn url(&self, database: &str) -> String {
        self.postgres.url(database)
    }

    /// The running server.
    pub fn postgres(&self) -> &LocalPostgres {
        &self.postgres
    }

    /// The PEM file of the certificate the server presents (a self-signed root), for
    /// `sslrootcert=`.
    pub fn ca_certificate(&self) -> PathBuf {
        self.root.join("tls").join("server.crt")
    }

    /// The cluster folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs a server program (`pg_dump`, `psql`) from the cluster's binaries.
    pub fn program(&self, name: &str) -> PathBuf {
        self.postgres.bin_dir().join(name)
    }

    /// A plain connection to `database`.
    ///
    /// # Panics
    /// When the connection fails.
    pub async fn connect(&self, database: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(database), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("dbos-testkit: could not connect to `{database}`: {e}"));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }
}
