//! A fresh database per test.
//!
//! Named from a hash of the test's path, created empty before the test, dropped when it
//! passes and kept when it fails (the next run of the same test drops it first; databases
//! of tests that no longer run are swept after a day).

use dbos_core::{Config, Dbos};

use crate::cluster::{cluster, TestCluster};

const REGISTRY: &str = "dbos_testkit_databases";
/// Advisory lock serialising database setup across test processes.
const SETUP_LOCK: i64 = 0x0db0_5e57_0000_0001;

/// The empty database a test receives.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    name: String,
    test_path: String,
    cluster: &'static TestCluster,
}

impl TestDatabase {
    /// Creates the database for `test_path`, dropping a leftover of a previous failed run.
    ///
    /// # Panics
    /// When the cluster is unusable.
    pub async fn create(test_path: &str) -> TestDatabase {
        let cluster = cluster().await;
        let name = database_name(test_path);
        let admin = cluster.connect("postgres").await;
        let setup = async {
            admin
                .execute("SELECT pg_advisory_lock($1)", &[&SETUP_LOCK])
                .await?;
            admin
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {REGISTRY} (name text PRIMARY KEY, test_path text NOT NULL, \
                     created_at timestamptz NOT NULL DEFAULT now())"
                ))
                .await?;
            let stale = admin
                .query(
                    &format!("SELECT name FROM {REGISTRY} WHERE name = $1 OR created_at < now() - interval '1 day'"),
                    &[&name],
                )
                .await?;
            for row in stale {
                let old: String = row.get(0);
                // Its siblings (`sibling_url`) too: a failed run kept them with it.
                let siblings = admin
                    .query(
                        "SELECT datname FROM pg_database WHERE datname LIKE $1",
                        &[&format!("{old}\\_%")],
                    )
                    .await?;
                for sibling in siblings {
                    let sibling: String = sibling.get(0);
                    admin
                        .batch_execute(&format!(
                            "DROP DATABASE IF EXISTS \"{sibling}\" WITH (FORCE)"
                        ))
                        .await?;
                }
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{old}\" WITH (FORCE)"))
                    .await?;
                admin
                    .execute(&format!("DELETE FROM {REGISTRY} WHERE name = $1"), &[&old])
                    .await?;
            }
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await?;
            admin
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await?;
            admin
                .execute(
                    &format!("INSERT INTO {REGISTRY} (name, test_path) VALUES ($1, $2)"),
                    &[&name, &test_path],
                )
                .await?;
            admin
                .execute("SELECT pg_advisory_unlock($1)", &[&SETUP_LOCK])
                .await?;
            Ok::<_, tokio_postgres::Error>(())
        };
        if let Err(e) = setup.await {
            panic!("dbos-testkit: could not create the test database `{name}`: {e}");
        }
        TestDatabase {
            name,
            test_path: test_path.to_owned(),
            cluster,
        }
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database URL (with the cluster's password).
    pub fn url(&self) -> String {
        self.cluster.url(&self.name)
    }

    /// The URL of another database on the same cluster, named after this one plus `suffix`
    /// (not created; the library creates missing databases). Dropped with this one.
    pub fn sibling_url(&self, suffix: &str) -> String {
        self.cluster.url(&format!("{}_{suffix}", self.name))
    }

    /// The cluster this database lives on.
    pub fn cluster(&self) -> &'static TestCluster {
        self.cluster
    }

    /// A plain tokio-postgres connection to the database.
    pub async fn connect(&self) -> tokio_postgres::Client {
        self.cluster.connect(&self.name).await
    }

    /// A runtime configuration pointing at this database, with a small pool.
    pub fn config(&self, app_name: &str) -> Config {
        Config::new(app_name)
            .system_database_url(self.url())
            .pool_size(4)
    }

    /// Launches a runtime on this database (migrating it).
    ///
    /// # Panics
    /// When launch fails.
    pub async fn launch(&self) -> Dbos {
        Dbos::launch(self.config("testapp"))
            .await
            .unwrap_or_else(|e| panic!("dbos-testkit: launch on `{}` failed: {e}", self.name))
    }

    /// `pg_dump --schema-only` of one schema of this (or a sibling) database, normalised for
    /// comparison: no comments, no ownership, no `\restrict` lines, no blank-line runs.
    pub fn dump_schema(&self, database: &str, schema: &str) -> String {
        let out = std::process::Command::new(self.cluster.program("pg_dump"))
            .args(["--schema-only", "--no-owner", "-n", schema, "-d"])
            .arg(self.cluster.url(database))
            .output()
            .expect("dbos-testkit: could not run pg_dump");
        assert!(
            out.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        normalize_dump(&String::from_utf8_lossy(&out.stdout))
    }

    /// Drops the database and its siblings.
    pub(crate) async fn drop_database(&self) {
        let admin = self.cluster.connect("postgres").await;
        let siblings = admin
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE $1",
                &[&format!("{}\\_%", self.name)],
            )
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for db in siblings.iter().chain(std::iter::once(&self.name)) {
            if let Err(e) = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                .await
            {
                eprintln!("dbos-testkit: could not drop `{db}`: {e}");
            }
        }
        let _ = admin
            .execute(
                &format!("DELETE FROM {REGISTRY} WHERE name = $1"),
                &[&self.name],
            )
            .await;
    }

    /// The test this database belongs to.
    pub fn test_path(&self) -> &str {
        &self.test_path
    }
}

/// `dbos_test_<16 hex of sha256(test path)>`: stable per test, within Postgres' 63 bytes.
pub fn database_name(test_path: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = format!("{:x}", Sha256::digest(test_path.as_bytes()));
    format!("dbos_test_{}", &hash[..16])
}

/// Normalises `pg_dump` output for comparison: drops comments, `OWNER TO` statements,
/// `\restrict` lines and runs of blank lines.
pub fn normalize_dump(dump: &str) -> String {
    let mut out = Vec::new();
    let mut blank = false;
    for line in dump.lines() {
        let t = line.trim_end();
        if t.starts_with("--") || t.starts_with("\\restrict") || t.starts_with("\\unrestrict") {
            continue;
        }
        if t.starts_with("ALTER ") && t.contains(" OWNER TO ") {
            continue;
        }
        if t.is_empty() {
            if blank {
                continue;
            }
            blank = true;
        } else {
            blank = false;
        }
        out.push(t);
    }
    out.join("\n").trim().to_owned() + "\n"
}
