//! Verbs that start real work or delete history are chosen, not fallen into: `workflow fork`
//! and `rewind` need `--step` (or ask on a terminal), `gc` asks before deleting unless
//! `-y`, and off a terminal they refuse and say how to go ahead.

mod common;

use common::{fails, json_of, ok};
use dbos_core::{step, workflow, Error};
use dbos_testkit::TestDatabase;
use serde_json::Value;

#[step]
async fn first(n: u32) -> Result<u32, Error> {
    Ok(n + 1)
}

#[step]
async fn second(n: u32) -> Result<u32, Error> {
    Ok(n * 2)
}

#[workflow]
async fn twice(n: u32) -> Result<u32, Error> {
    second(first(n).await?).await
}

/// Runs `dbos-rs` on a terminal (a pseudo-terminal `script` opens), typing `answer`;
/// returns what the terminal showed.
async fn on_terminal(args: &[&str], answer: &str) -> String {
    use std::io::Write;
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_dbos-rs"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let command = quoted.join(" ");
    let answer = answer.to_owned();
    let what = format!("{args:?}");
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env_remove("DBOS_SYSTEM_DATABASE_URL")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("cannot run `script` (util-linux)");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let shown = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        assert!(
            out.status.success(),
            "dbos-rs {what} on a terminal: {shown}"
        );
        shown
    })
    .await
    .unwrap()
}

fn count(list: &Value) -> usize {
    list.as_array().unwrap().len()
}

#[dbos_testkit::test]
async fn fork_rewind_and_gc_are_chosen_not_fallen_into(db: TestDatabase) {
    let dbos = db.launch().await;
    for n in 0..3 {
        twice(n).id(format!("wf-{n}")).on(&dbos).await.unwrap();
    }
    // No executor from here on: a fork stays ENQUEUED where the test can see it.
    dbos.shutdown().await.unwrap();
    let url = db.url();
    let s = url.as_str();
    let listed = |extra: &'static [&'static str]| {
        let s = url.clone();
        async move {
            let mut args = vec!["workflow", "list", "-l", "0", "-s", &s];
            args.extend_from_slice(extra);
            count(&json_of(&args).await)
        }
    };
    assert_eq!(listed(&[]).await, 3);

    // Off a terminal, without --step: refused, saying how, and nothing forked or rewound.
    let e = fails(&["workflow", "fork", "wf-0", "-s", s]).await;
    assert!(
        e.contains("needs -S/--step N") && e.contains("dbos-rs workflow steps wf-0"),
        "{e}"
    );
    let e = fails(&["workflow", "rewind", "wf-0", "-s", s]).await;
    assert!(e.contains("needs -S/--step N"), "{e}");
    assert_eq!(listed(&[]).await, 3);
    assert_eq!(listed(&["-S", "SUCCESS"]).await, 3);

    // gc without -y off a terminal: refused, nothing deleted or cancelled.
    let e = fails(&["gc", "--keep", "1", "-s", s]).await;
    assert!(e.contains("pass -y/--yes"), "{e}");
    let e = fails(&["gc", "--cancel-active-before", "2999-01-01", "-s", s]).await;
    assert!(e.contains("pass -y/--yes"), "{e}");
    assert_eq!(listed(&[]).await, 3);

    // On a terminal the fork asks which step, saying how far the workflow got.
    let shown = on_terminal(
        &["workflow", "fork", "wf-1", "-f", "wf-1-fork", "-s", s],
        "2",
    )
    .await;
    assert!(
        shown.contains("fork workflow `wf-1` from which step?")
            && shown.contains("recorded steps up to 2 (`second`)"),
        "{shown}"
    );
    assert!(
        shown.contains("forked workflow wf-1 from step 2 as wf-1-fork"),
        "{shown}"
    );
    let fork = json_of(&["workflow", "get", "wf-1-fork", "-s", s]).await;
    assert_eq!(fork["forked_from"], "wf-1");
    let steps = json_of(&["workflow", "steps", "wf-1-fork", "-s", s]).await;
    assert_eq!(count(&steps), 1, "step 1 copied, step 2 re-runs: {steps}");
    // An empty answer declines.
    let shown = on_terminal(&["workflow", "fork", "wf-1", "-f", "wf-1-no", "-s", s], "").await;
    assert!(shown.contains("Operation cancelled."), "{shown}");
    let e = fails(&["workflow", "get", "wf-1-no", "-s", s]).await;
    assert!(e.contains("no workflow has the id"), "{e}");

    // gc on a terminal: "n" keeps everything, "y" deletes.
    let shown = on_terminal(&["gc", "--keep", "1", "-s", s], "n").await;
    assert!(
        shown.contains("deletes every finished workflow but the newest 1")
            && shown.contains("Operation cancelled."),
        "{shown}"
    );
    assert_eq!(listed(&[]).await, 4);
    // -y goes ahead without asking.
    let out = ok(&["gc", "--keep", "3", "-y", "-s", s]).await;
    assert!(out.contains("deleted 1 finished workflows"), "{out}");
    assert_eq!(listed(&[]).await, 3);
    let shown = on_terminal(&["gc", "--keep", "1", "-s", s], "y").await;
    assert!(shown.contains("deleted 2 finished workflows"), "{shown}");
    assert_eq!(
        listed(&[]).await,
        1,
        "the newest, the ENQUEUED fork, is kept"
    );
}
