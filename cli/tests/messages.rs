//! What the CLI says when something is wrong or cut short: connection failures with their
//! real cause, and listings that say when rows were left out.

mod common;

use common::{closed_port, dbos_rs, dbos_rs_with, fails, ok_with_note as ok};
use dbos_core::manage::ListWorkflows;
use dbos_core::{workflow, Client, Error};
use dbos_testkit::TestDatabase;
use serde_json::Value;

/// A URL the test cluster refuses for want of a password, and one with a wrong password.
fn bad_passwords(db: &TestDatabase) -> (String, String) {
    let url = db.url();
    let at = url.rfind('@').unwrap();
    let none = format!("postgres://postgres@{}", &url[at + 1..]);
    let wrong = url.replacen("postgres://postgres:", "postgres://postgres:wrong-", 1);
    assert_ne!(wrong, url);
    (none, wrong)
}

/// Each connection failure names its real cause (not tokio-postgres' "invalid
/// configuration" or "error connecting to server"), and where the URL came from, once.
#[dbos_testkit::test]
async fn connection_failures_print_their_real_cause(db: TestDatabase) {
    let (no_password, wrong) = bad_passwords(&db);
    let e = fails(&["workflow", "list", "-s", &no_password]).await;
    assert!(
        e.contains("asks for a password") && e.contains("postgres://user:PASSWORD@"),
        "{e}"
    );
    assert!(e.contains("(the URL came from -s/--sys-db-url)"), "{e}");
    let e = fails(&["migrate", "-s", &no_password]).await;
    assert!(e.contains("asks for a password"), "{e}");
    let e = fails(&["workflow", "list", "-s", &wrong]).await;
    assert!(e.contains("password authentication failed"), "{e}");
    assert!(!e.contains("wrong-"), "the password leaked: {e}");

    let port = closed_port();
    let refused = format!("postgres://u:p@127.0.0.1:{port}/x");
    let refused_line = fails(&["workflow", "list", "-s", &refused]).await;
    assert!(
        refused_line.contains("connection refused")
            && refused_line.contains(&format!("127.0.0.1:{port}")),
        "{refused_line}"
    );
    let host_line = fails(&[
        "queue",
        "list",
        "-s",
        "postgres://u:p@no-such-host.invalid:5432/x",
    ])
    .await;
    assert!(
        host_line.contains("could not resolve the host name `no-such-host.invalid`"),
        "{host_line}"
    );
    for e in [&refused_line, &host_line] {
        assert!(
            !e.contains("error connecting to server") && !e.contains("invalid configuration"),
            "{e}"
        );
        // Said once: the cause says to check the server, the hint says where the URL came from.
        assert!(e.matches("check the URL").count() <= 1, "{e}");
        assert!(e.matches("server is running").count() <= 1, "{e}");
        assert!(!e.contains("os error"), "the cause said twice: {e}");
    }

    // From the environment, the error says so (a stale exported URL is a common cause).
    let out = dbos_rs_with(
        &["workflow", "list"],
        &[("DBOS_SYSTEM_DATABASE_URL", refused.as_str())],
    )
    .await;
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(
        e.contains("connection refused")
            && e.contains("the URL came from DBOS_SYSTEM_DATABASE_URL")
            && !e.contains("-s/--sys-db-url or"),
        "{e}"
    );
}

#[workflow]
async fn quick(n: u32) -> Result<u32, Error> {
    Ok(n)
}

/// A listing cut at its limit says so, with the total and the flags that show the rest;
/// `-l 0` (which the range message offers) lists everything.
#[dbos_testkit::test]
async fn a_cut_listing_says_how_many_match(db: TestDatabase) {
    let dbos = db.launch().await;
    for n in 0..12 {
        quick(n).id(format!("wf-{n:02}")).on(&dbos).await.unwrap();
    }
    dbos.shutdown().await.unwrap();
    let url = db.url();
    let s = url.as_str();

    // The default listing: 10 rows, and a word on standard error.
    let (table, note) = ok(&["workflow", "list", "-s", s]).await;
    assert_eq!(table.lines().count(), 11, "{table}");
    assert!(
        note.contains("10 of 12 workflows shown")
            && note.contains("-l/--limit")
            && note.contains("-d/--sort-desc"),
        "{note}"
    );
    // JSON stays parseable on standard output; the note goes to standard error.
    let (json, note) = ok(&["workflow", "list", "-s", s, "--json"]).await;
    let rows: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 10);
    assert!(note.contains("10 of 12 workflows shown"), "{note}");
    // A later page says where it starts.
    let (_, note) = ok(&["workflow", "list", "-l", "5", "-o", "5", "-d", "-s", s]).await;
    assert!(
        note.contains("5 of 12 workflows shown from offset 5 (newest first)"),
        "{note}"
    );
    // Nothing cut, nothing said.
    for args in [
        &["workflow", "list", "-l", "12", "-s", s][..],
        &["workflow", "list", "-l", "5", "-o", "10", "-s", s][..],
        &["workflow", "list", "-n", "nothing-has-this-name", "-s", s][..],
    ] {
        let (_, note) = ok(args).await;
        assert!(note.is_empty(), "{args:?}: {note}");
    }
    // -l 0: everything, as the range message (0..=4294967295) offers.
    let (table, note) = ok(&["workflow", "list", "-l", "0", "-s", s]).await;
    assert_eq!(table.lines().count(), 13, "{table}");
    assert!(note.is_empty(), "{note}");
    let (json, _) = ok(&["workflow", "queue", "list", "-l", "0", "-s", s, "--json"]).await;
    assert_eq!(json.trim(), "[]");
    let out = dbos_rs(&["workflow", "list", "-l", "99999999999", "-s", s]).await;
    let range = String::from_utf8_lossy(&out.stderr);
    assert!(range.contains("0..="), "{range}");

    // The count behind the note stops at its bound.
    let client = Client::connect(url.clone()).await.unwrap();
    let all = ListWorkflows::new();
    assert_eq!(client.count_workflows(&all, 100).await.unwrap(), 12);
    assert_eq!(client.count_workflows(&all, 3).await.unwrap(), 3);
    assert_eq!(
        client
            .count_workflows(&all.clone().id_prefix("wf-0"), 100)
            .await
            .unwrap(),
        10
    );
    client.close();
}
