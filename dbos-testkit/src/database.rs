//! A fresh database per test.
//!
//! Named from a hash of the test's path, created empty before the test, dropped when it
//! passes and kept when it fails (the next run of the same test drops it first; databases
//! of tests that no longer run are swept after a day).

use std::time::Duration;

use dbos_core::{Config, Dbos};

use crate::cluster::{cluster, TestCluster};

const REGISTRY: &str = "dbos_testkit_databases";
/// Advisory lock serialising database setup across test processes.
const SETUP_LOCK: i64 = 0x0db0_5e57_0000_0001;

/// One operation a workflow recorded: its row of `dbos.operation_outputs` (see
/// [`TestDatabase::steps_of`]). Text columns are as stored (`output` and `error` in the
/// encoding `serialization` names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedStep {
    /// The step id (the first operation is 1).
    pub function_id: i32,
    /// The operation's name: a step's, or a built-in's (`DBOS.sleep`, `DBOS.recv`, ...).
    pub function_name: String,
    /// The recorded output, `None` for an error.
    pub output: Option<String>,
    /// The recorded error, `None` for an output.
    pub error: Option<String>,
    /// The encoding of `output` and `error` (`portable_json`).
    pub serialization: Option<String>,
    /// The child workflow this operation started or awaited.
    pub child_workflow_id: Option<String>,
    /// When the operation started, in epoch milliseconds.
    pub started_at_epoch_ms: Option<i64>,
    /// When it was recorded, in epoch milliseconds.
    pub completed_at_epoch_ms: Option<i64>,
}

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

    /// Creates the system schema (a launch, then a shutdown), so that several processes can
    /// then launch on this database at once without each finding it empty.
    ///
    /// # Panics
    /// When the launch or the shutdown fails.
    pub async fn migrate(&self) {
        self.launch()
            .await
            .shutdown()
            .await
            .unwrap_or_else(|e| panic!("dbos-testkit: shutdown on `{}` failed: {e}", self.name));
    }

    /// Waits until one statement on this database whose text is `LIKE pattern` waits for a
    /// lock (`pg_stat_activity.wait_event_type = 'Lock'`), polling for up to 30 s, and returns
    /// the process id of its backend (for `pg_cancel_backend`, say).
    ///
    /// A test that holds a lock (a row written in its own open transaction, a `LOCK TABLE`)
    /// calls this to know that the code under test has reached the statement the lock stops,
    /// before it changes what that statement will find or lets the lock go. Exactly one
    /// statement must match: the test knows which one it is blocking.
    ///
    /// ```no_run
    /// # async fn demo(db: dbos_testkit::TestDatabase) {
    /// let mut locker = db.connect().await;
    /// let tx = locker.transaction().await.unwrap();
    /// tx.batch_execute("LOCK TABLE dbos.notifications IN ACCESS EXCLUSIVE MODE")
    ///     .await
    ///     .unwrap();
    /// // ... a workflow sends a message: its insert waits for the table ...
    /// db.until_blocked_on_lock("%INSERT INTO%notifications%").await;
    /// // ... change what the send will find, then let it go on:
    /// tx.commit().await.unwrap();
    /// # }
    /// ```
    ///
    /// # Panics
    /// When, after 30 s, not exactly one such statement is waiting; the message names
    /// `pattern`.
    pub async fn until_blocked_on_lock(&self, pattern: &str) -> i32 {
        let watcher = self.connect().await;
        crate::crash::eventually(
            &format!("one statement like `{pattern}` to wait for a lock"),
            Duration::from_secs(30),
            || async {
                let waiting = watcher
                    .query(
                        "SELECT pid FROM pg_stat_activity
                          WHERE datname = current_database() AND wait_event_type = 'Lock'
                            AND query LIKE $1",
                        &[&pattern],
                    )
                    .await
                    .expect("dbos-testkit: reading pg_stat_activity");
                match waiting.as_slice() {
                    [one] => Some(one.get(0)),
                    _ => None,
                }
            },
        )
        .await
    }

    /// The status of workflow `id` as its row in `dbos.workflow_status` has it (`PENDING`,
    /// `SUCCESS`, ...), or `None` when there is no such row: what a test asserts after a
    /// crash or a failure, read on a fresh connection.
    ///
    /// ```no_run
    /// # async fn example(db: dbos_testkit::TestDatabase) {
    /// assert_eq!(db.status_of("order-42").await.as_deref(), Some("PENDING"));
    /// # }
    /// ```
    ///
    /// # Panics
    /// When the row cannot be read.
    pub async fn status_of(&self, id: &str) -> Option<String> {
        self.connect()
            .await
            .query_opt(
                "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = $1",
                &[&id],
            )
            .await
            .unwrap_or_else(|e| panic!("dbos-testkit: reading the status of `{id}`: {e}"))
            .map(|r| r.get(0))
    }

    /// The `attributes` of workflow `id` (`None` for SQL `NULL`), read on a fresh connection.
    ///
    /// ```no_run
    /// # async fn example(db: dbos_testkit::TestDatabase) {
    /// let attributes = db.attributes_of("order-42").await;
    /// assert_eq!(attributes, Some(serde_json::json!({"tier": "gold"})));
    /// # }
    /// ```
    ///
    /// # Panics
    /// When the workflow has no row, or it cannot be read.
    pub async fn attributes_of(&self, id: &str) -> Option<serde_json::Value> {
        self.connect()
            .await
            .query_one(
                "SELECT attributes FROM dbos.workflow_status WHERE workflow_uuid = $1",
                &[&id],
            )
            .await
            .unwrap_or_else(|e| panic!("dbos-testkit: reading the attributes of `{id}`: {e}"))
            .get(0)
    }

    /// Every operation recorded for workflow `id` (its rows of `dbos.operation_outputs`), in
    /// step order, read on a fresh connection: what a test asserts about a workflow's
    /// history (which operations, under which names, with which outputs).
    ///
    /// ```no_run
    /// # async fn example(db: dbos_testkit::TestDatabase) {
    /// let steps = db.steps_of("order-42").await;
    /// assert_eq!(steps[0].function_name, "DBOS.sleep");
    /// assert_eq!(steps[0].output.as_deref(), Some("1700000000.5"));
    /// # }
    /// ```
    ///
    /// # Panics
    /// When the rows cannot be read.
    pub async fn steps_of(&self, id: &str) -> Vec<RecordedStep> {
        self.connect()
            .await
            .query(
                "SELECT function_id, function_name, output, error, serialization, child_workflow_id,
                        started_at_epoch_ms, completed_at_epoch_ms
                   FROM dbos.operation_outputs WHERE workflow_uuid = $1 ORDER BY function_id",
                &[&id],
            )
            .await
            .unwrap_or_else(|e| panic!("dbos-testkit: reading the steps of `{id}`: {e}"))
            .iter()
            .map(|r| RecordedStep {
                function_id: r.get(0),
                function_name: r.get(1),
                output: r.get(2),
                error: r.get(3),
                serialization: r.get(4),
                child_workflow_id: r.get(5),
                started_at_epoch_ms: r.get(6),
                completed_at_epoch_ms: r.get(7),
            })
            .collect()
    }

    /// The names of the operations recorded for workflow `id`, in step order (see
    /// [`steps_of`](Self::steps_of)).
    ///
    /// # Panics
    /// When the rows cannot be read.
    pub async fn step_names(&self, id: &str) -> Vec<String> {
        self.steps_of(id)
            .await
            .into_iter()
            .map(|s| s.function_name)
            .collect()
    }

    /// The operation recorded for workflow `id` at step `function_id`.
    ///
    /// # Panics
    /// When there is no such row, or it cannot be read.
    pub async fn step_of(&self, id: &str, function_id: i32) -> RecordedStep {
        self.steps_of(id)
            .await
            .into_iter()
            .find(|s| s.function_id == function_id)
            .unwrap_or_else(|| panic!("dbos-testkit: `{id}` has no step {function_id} recorded"))
    }

    /// Resumes the workflow `id` through `dbos` while an execution of it runs there, and
    /// waits (up to 60 s) until the resume's new claim is recorded: the workflow PENDING with
    /// an owner (`owner_xid`) other than the one it had. What a test checks next is how the
    /// running execution takes the claim handed to it.
    ///
    /// # Panics
    /// When the resume fails, or the new claim is not recorded within 60 s.
    pub async fn resume_until_claimed_again(&self, dbos: &Dbos, id: &str) {
        let client = self.connect().await;
        let owner = || async {
            let row = client
                .query_one(
                    "SELECT status, owner_xid FROM dbos.workflow_status WHERE workflow_uuid = $1",
                    &[&id],
                )
                .await
                .unwrap_or_else(|e| panic!("dbos-testkit: reading the status of `{id}`: {e}"));
            let status: String = row.get(0);
            let owner: Option<String> = row.get(1);
            (status, owner)
        };
        let (_, first) = owner().await;
        dbos.resume_workflow(id)
            .await
            .unwrap_or_else(|e| panic!("dbos-testkit: resuming `{id}`: {e}"));
        crate::crash::eventually(
            &format!("the resumed `{id}` to be claimed again"),
            Duration::from_secs(60),
            || async {
                let (status, now) = owner().await;
                (status == "PENDING" && now.is_some() && now != first).then_some(())
            },
        )
        .await;
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
