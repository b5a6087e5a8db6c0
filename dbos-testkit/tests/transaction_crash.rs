//! `#[transaction]` is exactly once under crashes: a process running workflows of five
//! transactions, each adding 1 to its own counter row, is SIGKILLed at random points over
//! many runs and started again until every workflow is done. Every counter ends at exactly 1,
//! with the transactions in the system database and in a separate data source.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use dbos_testkit::crash::ChildProcess;
use dbos_testkit::TestDatabase;

const SUBJECT: &str = env!("CARGO_BIN_EXE_dbos-crash-subject");
const WORKFLOWS: usize = 30;
const KILLS: usize = 8;

/// A random number in `[0, n)`.
fn random_below(n: u64) -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % n
}

/// Reads the counters on one kept connection, made at the first look that can make it (the
/// data source's database may not exist before the subject's first run).
struct Watcher {
    url: String,
    client: Option<tokio_postgres::Client>,
}

impl Watcher {
    /// (rows, rows above 1, rows below 1) of `tx_counters` (none before the subject creates
    /// the table).
    async fn counters(&mut self) -> (i64, i64, i64) {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let Ok((client, conn)) =
                tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await
            else {
                return (0, 0, 0);
            };
            tokio::spawn(conn);
            self.client = Some(client);
        }
        let Some(client) = &self.client else {
            return (0, 0, 0);
        };
        match client
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE n > 1), count(*) FILTER (WHERE n < 1) FROM tx_counters",
                &[],
            )
            .await
        {
            Ok(r) => (r.get(0), r.get(1), r.get(2)),
            Err(_) => (0, 0, 0),
        }
    }
}

async fn kill_at_random_points_then_finish(db: &TestDatabase, app_url: Option<String>) {
    let sys_url = db.url();
    let mut env = vec![
        ("DBOS_SYSTEM_DATABASE_URL", sys_url.clone()),
        ("DBOS__VMID", "tx-crash".to_owned()),
        ("RUST_LOG", "error".to_owned()),
    ];
    if let Some(url) = &app_url {
        env.push(("DBOS_CRASH_DATASOURCE_URL", url.clone()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let counters_url = app_url.clone().unwrap_or_else(|| sys_url.clone());
    // One connection for every look: the kill follows the target by one query, not by a
    // connection set-up per look (with one per look an idle machine finished the work between
    // the target and the kill, so too few kills landed).
    let mut watcher = Watcher {
        url: counters_url,
        client: None,
    };
    let n = WORKFLOWS.to_string();
    let total = (WORKFLOWS * 5) as i64;
    let mut interrupted = 0;
    for _ in 0..KILLS {
        // Kill on progress, not on a timer: after a random number of further transactions,
        // wherever the process then is (mid-transaction, between its commit and the
        // checkpoint, between steps). A fast machine cannot finish the work before the kill.
        let (before, _, _) = watcher.counters().await;
        if before >= total {
            break;
        }
        let target = before + 1 + random_below((total - before).min(12) as u64) as i64;
        let child = ChildProcess::spawn(SUBJECT, &["transactions", &n], &env);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (rows, _, _) = watcher.counters().await;
            if rows >= target || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        child.kill9().await;
        let (rows, above, below) = watcher.counters().await;
        assert_eq!((above, below), (0, 0), "after a kill, a counter is not 1");
        if rows < total {
            interrupted += 1;
        }
    }
    assert!(
        interrupted >= 2,
        "only {interrupted} of {KILLS} kills landed before the work was done: the test did not test crashes"
    );
    let last = ChildProcess::spawn(SUBJECT, &["transactions", &n], &env);
    assert_eq!(
        last.wait(Duration::from_secs(120)).await,
        Some(0),
        "the last run completes every workflow"
    );
    let (rows, above, below) = watcher.counters().await;
    assert_eq!(
        (rows, above, below),
        ((WORKFLOWS * 5) as i64, 0, 0),
        "every transaction of every workflow counted exactly once"
    );
    let client = db.connect().await;
    let done: i64 = client
        .query_one(
            "SELECT count(*) FROM dbos.workflow_status s JOIN dbos.workflow_output o USING (workflow_uuid)
              WHERE s.workflow_uuid LIKE 'tx-%' AND s.status = 'SUCCESS' AND o.output = '[1,1,1,1,1]'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(done, WORKFLOWS as i64);
    let checkpoints: i64 = client
        .query_one(
            "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid LIKE 'tx-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        checkpoints,
        (WORKFLOWS * 5) as i64,
        "one checkpoint per transaction"
    );
}

#[dbos_testkit::test]
async fn transactions_in_the_system_database_count_once_under_sigkill(db: TestDatabase) {
    kill_at_random_points_then_finish(&db, None).await;
}

#[dbos_testkit::test]
async fn transactions_in_a_data_source_count_once_under_sigkill(db: TestDatabase) {
    let app = db.sibling_url("app");
    kill_at_random_points_then_finish(&db, Some(app.clone())).await;
    // Every transaction left its completion row in the data source.
    let (client, conn) = tokio_postgres::connect(&app, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows: i64 = client
        .query_one(
            "SELECT count(*) FROM dbos.datasource_outputs WHERE workflow_id LIKE 'tx-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, (WORKFLOWS * 5) as i64);
}
