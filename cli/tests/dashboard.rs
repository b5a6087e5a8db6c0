//! `dbos-rs dashboard`: the real binary serves the admin API and the page over a client, for
//! a database an application wrote, and refuses to listen beyond loopback without a token.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::dbos_rs;
use dbos_core::{step, workflow, Error};
use dbos_testkit::TestDatabase;
use serde_json::Value;

#[step]
async fn only(n: i64) -> Result<i64, Error> {
    Ok(n * 2)
}

#[workflow]
async fn doubled(n: i64) -> Result<i64, Error> {
    only(n).await
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[dbos_testkit::test]
async fn the_dashboard_verb_serves_the_api_and_the_page(db: TestDatabase) {
    let dbos = db.launch().await;
    doubled(21)
        .id("d-1")
        .on(&dbos)
        .start()
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
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

    let a = addr.clone();
    let answers = tokio::task::spawn_blocking(move || {
        (
            http(&a, "GET", "/", None, ""),
            http(&a, "POST", "/workflows", None, "{}"),
            http(
                &a,
                "POST",
                "/workflows",
                Some("tok"),
                "{\"load_output\": true}",
            ),
            http(&a, "GET", "/workflows/d-1/steps", Some("tok"), ""),
        )
    })
    .await
    .unwrap();
    let (page, refused, listed, steps) = answers;
    assert_eq!(page.0, 200);
    assert!(page.1.contains("dbos-rs dashboard"), "{}", page.1);
    assert_eq!(refused.0, 401, "{}", refused.1);
    assert_eq!(listed.0, 200, "{}", listed.1);
    let listed: Value = serde_json::from_str(&listed.1).unwrap();
    assert_eq!(listed[0]["WorkflowUUID"], "d-1");
    assert_eq!(listed[0]["Output"], "42");
    let steps: Value = serde_json::from_str(&steps.1).unwrap();
    assert_eq!(steps[0]["function_name"], "only");

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
