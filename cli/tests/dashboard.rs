//! `dbos-rs dashboard`: the real binary serves the admin API and the page over a client, for
//! a database an application wrote, and refuses to listen beyond loopback without a token.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

mod common;

use common::dbos_rs;
use dbos_testkit::admin::{run_checkout, AdminApi};
use dbos_testkit::TestDatabase;
use serde_json::Value;

#[dbos_testkit::test]
async fn the_dashboard_verb_serves_the_api_and_the_page(db: TestDatabase) {
    let dbos = db.launch().await;
    run_checkout(&dbos, "d-1").await;
    let url = db.url();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dbos-rs"))
        .args([
            "dashboard",
            "-s",
            &url,
            "--port",
            "0",
            "--token",
            "tok",
            "--json",
        ])
        .env_remove("DBOS_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let started: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let addr = started["address"].as_str().unwrap().to_owned();
    assert_eq!(started["url"], format!("http://{addr}/"));

    let api = AdminApi::new(addr.parse().unwrap());
    let page = api.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("dbos-rs dashboard"), "{}", page.body);
    api.post("/workflows", serde_json::json!({}))
        .await
        .assert_error(401, "a listing without the token");
    let api = api.with_token("tok");
    let listed = api
        .post_json("/workflows", serde_json::json!({"load_output": true}))
        .await;
    assert_eq!(listed[0]["WorkflowUUID"], "d-1");
    assert_eq!(listed[0]["Output"], "6");
    let steps = api.get_json("/workflows/d-1/steps").await;
    assert_eq!(steps[0]["function_name"], "first");

    // SIGTERM stops it cleanly.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn the_dashboard_verb_refuses_an_open_address_without_a_token(db: TestDatabase) {
    let dbos = db.launch().await;
    let out = dbos_rs(&[
        "dashboard",
        "-s",
        &db.url(),
        "--port",
        "0",
        "--bind",
        "0.0.0.0",
    ])
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("without a token"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    dbos.shutdown().await.unwrap();
}
