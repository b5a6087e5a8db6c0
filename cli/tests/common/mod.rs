//! Running the real `dbos-rs` binary from the CLI's tests.
// Each test binary uses some of these.
#![allow(dead_code)]

use std::process::Output;

use serde_json::Value;

/// Runs `dbos-rs` with `args` and `env` (off the async runtime), without the caller's
/// environment's database settings.
pub(crate) async fn dbos_rs_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_dbos-rs"))
            .env_remove("DBOS_SYSTEM_DATABASE_URL")
            .env_remove("DBOS_SYSTEM_SCHEMA")
            .env_remove("DBOS_LOCAL_POSTGRES_DIR")
            .env("RUST_BACKTRACE", "1")
            .envs(env)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("cannot run dbos-rs")
    })
    .await
    .unwrap()
}

/// Runs `dbos-rs` with `args`.
pub(crate) async fn dbos_rs(args: &[&str]) -> Output {
    dbos_rs_with(args, &[]).await
}

/// Runs `dbos-rs`, expecting success; returns stdout and stderr.
pub(crate) async fn ok_with_note(args: &[&str]) -> (String, String) {
    let out = dbos_rs(args).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "dbos-rs {args:?} failed ({}): {stderr}",
        out.status
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// Runs `dbos-rs`, expecting success; returns stdout.
pub(crate) async fn ok(args: &[&str]) -> String {
    ok_with_note(args).await.0
}

/// Runs `dbos-rs --json`, expecting success; returns the JSON it printed.
pub(crate) async fn json_of(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let text = ok(&all).await;
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("dbos-rs {args:?} printed non-JSON ({e}): {text}"))
}

/// Checks a failed run: exit code 1 and one line on stderr, no panic, no backtrace. Returns
/// that line.
pub(crate) fn one_line_error(args: &[&str], out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "dbos-rs {args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        !stderr.contains("panicked")
            && !stderr.contains("backtrace")
            && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    stderr
}

/// Runs `dbos-rs`, expecting a one-line failure; returns that line.
pub(crate) async fn fails(args: &[&str]) -> String {
    one_line_error(args, &dbos_rs(args).await)
}

/// A port nothing listens on.
pub(crate) fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
