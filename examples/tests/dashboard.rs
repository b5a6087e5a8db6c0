//! The checkout and pipeline examples serve the dashboard when `DBOS_DASHBOARD_PORT` is set:
//! they print its URL, it answers with their workflows, and it stays up until Ctrl-C.

use std::process::Stdio;
use std::time::Duration;

use dbos_testkit::admin::AdminApi;
use dbos_testkit::TestDatabase;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

/// The next line of the example's output that contains `wanted`.
async fn line_with(lines: &mut Lines<BufReader<ChildStdout>>, wanted: &str) -> String {
    tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(wanted) {
                return line;
            }
        }
        panic!("the example ended without printing `{wanted}`");
    })
    .await
    .unwrap_or_else(|_| panic!("no `{wanted}` within 90 s"))
}

/// Runs `example` with the dashboard on a free port; checks it prints the URL, serves the
/// run's workflow `workflow_id` finished, stays up once done, and stops on Ctrl-C.
async fn serves_its_dashboard(db: &TestDatabase, example: &str, args: &[&str], workflow_id: &str) {
    let mut cmd = Command::new(example);
    cmd.args(args)
        .env("DBOS_SYSTEM_DATABASE_URL", db.url())
        .env("SHOP_DATABASE_URL", db.sibling_url("shop"))
        .env("DBOS_DASHBOARD_PORT", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    dbos_testkit::crash::interruptible(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = line_with(&mut lines, "dashboard: http://").await;
    let url = line.trim_start_matches("dashboard: ").trim();
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {line}"));
    let api = AdminApi::new(address);
    let health = api.get("/dbos-healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "healthy"));
    assert!(api.get("/").await.body.contains("dbos-rs dashboard"));

    line_with(&mut lines, "stays up until Ctrl-C").await;
    let listed = api
        .post_json("/workflows", json!({"workflow_uuids": [workflow_id]}))
        .await;
    assert_eq!(listed[0]["Status"], "SUCCESS", "{listed}");
    // Still serving once the run is done, until Ctrl-C.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.get("/dbos-healthz").await.status, 200);
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the example did not stop within 60 s of Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[dbos_testkit::test(timeout = "180s")]
async fn the_checkout_example_serves_its_dashboard(db: TestDatabase) {
    serves_its_dashboard(&db, env!("CARGO_BIN_EXE_checkout"), &["order-7"], "order-7").await;
}

#[dbos_testkit::test(timeout = "180s")]
async fn the_pipeline_example_serves_its_dashboard(db: TestDatabase) {
    serves_its_dashboard(&db, env!("CARGO_BIN_EXE_pipeline"), &[], "digest-batch-1").await;
}
