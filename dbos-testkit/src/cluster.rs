//! The ephemeral Postgres cluster shared by every test of a run.
//!
//! One cluster per checkout, started on demand by the first test that needs it and reused by
//! every other test process (nextest runs each test in its own process; they serialise on
//! the cluster folder's lock file). It serves TLS with a self-signed certificate so
//! connection tests can exercise `sslmode=require` and `verify-full`.

use std::path::{Path, PathBuf};

use dbos_core::local_postgres::LocalPostgres;
use tokio::sync::OnceCell;

/// Environment variable overriding the cluster folder.
pub const ENV_TESTKIT_DIR: &str = "DBOS_TESTKIT_DIR";

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
            let root = cluster_dir();
            let (cert, key) = certificate(&root).unwrap_or_else(|e| panic!("dbos-testkit: {e}"));
            let postgres = LocalPostgres::builder(root.join("pg"))
                .ephemeral(true)
                .tls(cert, key)
                .setting("max_connections", "300")
                .start()
                .await
                .unwrap_or_else(|e| panic!("dbos-testkit: could not start the test Postgres: {e}"));
            TestCluster { postgres, root }
        })
        .await
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
