//! The real `dbos-rs` binary against the test cluster: every verb, table and `--json`
//! output with DBOS's keys, and errors as one line with a nonzero exit code.

use std::time::Duration;

mod common;

use common::{dbos_rs, fails, json_of, ok};
use dbos_core::{step, workflow, Client, Dbos, Error, ErrorKind, Queue};
use dbos_testkit::crash::eventually;
use dbos_testkit::runs::{bump, runs as count};
use dbos_testkit::TestDatabase;
use serde_json::{json, Value};

#[step]
async fn one(key: String) -> Result<i64, Error> {
    bump(&format!("{key}/one"));
    Ok(1)
}

#[step]
async fn two(key: String, ms: u64) -> Result<i64, Error> {
    bump(&format!("{key}/two"));
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(2)
}

#[step]
async fn three(key: String) -> Result<i64, Error> {
    bump(&format!("{key}/three"));
    Ok(3)
}

#[workflow]
async fn flow(key: String, ms: u64) -> Result<i64, Error> {
    Ok(one(key.clone()).await? + two(key.clone(), ms).await? + three(key).await?)
}

#[workflow]
async fn broken(code: i32) -> Result<(), Error> {
    Err(Error::new(
        ErrorKind::WorkflowFailed,
        format!("broken {code}"),
    ))
}

#[workflow]
async fn parent(key: String) -> Result<i64, Error> {
    flow(format!("{key}-kid"), 1).start().await?.result().await
}

static PARKED: Queue = Queue::new("parked");
static LIMITED: Queue = Queue::new("limited").concurrency(2);

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|w| w["workflow_id"].as_str().unwrap())
        .collect()
}

#[dbos_testkit::test]
async fn every_workflow_verb_on_a_live_database(db: TestDatabase) {
    let dbos = Dbos::launch(
        db.config("testapp")
            .queue(&LIMITED)
            .cancel_poll_interval(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let url = db.url();
    let s = url.as_str();
    flow("a".into(), 1).id("wf-a").on(&dbos).await.unwrap();
    broken(4).id("wf-broken").on(&dbos).await.unwrap_err();
    parent("p".into()).id("wf-parent").on(&dbos).await.unwrap();
    flow("q".into(), 1)
        .id("wf-queued")
        .on(&dbos)
        .enqueue(&PARKED)
        .await
        .unwrap();

    // list: DBOS's defaults (10, oldest first) and flags.
    let all = json_of(&["workflow", "list", "-s", s]).await;
    assert_eq!(
        ids(&all),
        vec!["wf-a", "wf-broken", "wf-parent", "wf-parent-1", "wf-queued"]
    );
    let a = &all[0];
    assert_eq!(a["status"], "SUCCESS");
    assert_eq!(a["name"], "flow");
    assert_eq!(a["input"], json!({"args": ["a", 1], "kwargs": {}}));
    assert_eq!(a["output"], json!(6));
    assert_eq!(a["error"], Value::Null);
    assert_eq!(all[1]["error"], json!("broken 4"));
    assert_eq!(
        ids(&json_of(&["workflow", "list", "-s", s, "-S", "ERROR"]).await),
        vec!["wf-broken"]
    );
    assert_eq!(
        ids(&json_of(&["workflow", "list", "-s", s, "--status", "ERROR,ENQUEUED"]).await),
        vec!["wf-broken", "wf-queued"]
    );
    assert_eq!(
        ids(&json_of(&["workflow", "list", "-s", s, "-n", "parent"]).await),
        vec!["wf-parent"]
    );
    assert_eq!(
        ids(&json_of(&["workflow", "list", "-s", s, "-l", "2", "-d"]).await),
        vec!["wf-queued", "wf-parent-1"]
    );
    assert_eq!(
        ids(&json_of(&["workflow", "list", "-s", s, "-l", "1", "-o", "1"]).await),
        vec!["wf-broken"]
    );
    assert_eq!(
        ids(&json_of(&["workflow", "list", "-s", s, "--parent", "wf-parent"]).await),
        vec!["wf-parent-1"]
    );
    assert_eq!(
        ids(&json_of(&["workflow", "list", "-s", s, "--prefix", "wf-p"]).await),
        vec!["wf-parent", "wf-parent-1"]
    );
    assert_eq!(
        ids(&json_of(&["workflow", "list", "-s", s, "-q", "parked"]).await),
        vec!["wf-queued"]
    );
    assert_eq!(
        ids(&json_of(&[
            "workflow",
            "list",
            "-s",
            s,
            "-t",
            "2000-01-01",
            "-e",
            "2999-01-01T00:00:00+02:00",
            "-a",
            "testapp",
            "-v",
            dbos.application_version()
        ])
        .await)
        .len(),
        5
    );
    assert!(ids(&json_of(&["workflow", "list", "-s", s, "-e", "2000-01-01"]).await).is_empty());
    // The table.
    let table = ok(&["workflow", "list", "-s", s]).await;
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in ["WORKFLOW ID", "STATUS", "NAME", "CREATED", "QUEUE"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(
        table.contains("wf-broken") && table.contains("ERROR") && table.contains("parked"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 6, "{table}");
    // The queued listing, DBOS's `workflow queue list`.
    assert_eq!(
        ids(&json_of(&["workflow", "queue", "list", "-s", s]).await),
        vec!["wf-queued"]
    );

    // get and steps.
    let got = json_of(&["workflow", "get", "wf-a", "-s", s]).await;
    assert_eq!(got["workflow_id"], "wf-a");
    assert_eq!(got["output"], json!(6));
    assert!(
        got.get("dequeued_at").is_some() && got.get("app_version").is_some(),
        "{got}"
    );
    let text = ok(&["workflow", "get", "wf-broken", "-s", s]).await;
    assert!(
        text.contains("broken 4") && text.contains("ERROR"),
        "{text}"
    );
    let steps = json_of(&["workflow", "steps", "wf-parent", "-s", s]).await;
    assert_eq!(steps[0]["function_name"], "flow");
    assert_eq!(steps[0]["child_workflow_id"], "wf-parent-1");
    assert_eq!(steps[1]["function_name"], "DBOS.getResult");
    assert_eq!(steps[1]["output"], json!(6));
    let table = ok(&["workflow", "steps", "wf-a", "-s", s]).await;
    assert!(
        table.contains("one") && table.contains("three") && table.lines().count() == 4,
        "{table}"
    );

    // cancel, then resume: the running workflow stops before its next step, and continues
    // from its last completed one.
    flow("c".into(), 1500)
        .id("wf-c")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("step two to start", Duration::from_secs(10), || async {
        (count("c/two") == 1).then_some(())
    })
    .await;
    let out = ok(&["workflow", "cancel", "wf-c", "-s", s]).await;
    assert_eq!(out.trim(), "cancelled workflow wf-c");
    eventually("it to stop", Duration::from_secs(10), || async {
        (dbos.running_workflows() == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(count("c/three"), 0);
    // The runtime may dequeue it before the CLI reads it back.
    let running = |j: &Value| {
        ["ENQUEUED", "PENDING", "SUCCESS"].contains(&j["status"].as_str().unwrap_or(""))
    };
    let resumed = json_of(&["workflow", "resume", "wf-c", "-s", s]).await;
    assert!(running(&resumed), "{resumed}");
    assert_eq!(resumed["queue_name"], "_dbos_internal_queue");
    assert_eq!(
        dbos.retrieve_workflow::<i64, Error>("wf-c").await.unwrap(),
        6
    );
    assert_eq!(
        (count("c/one"), count("c/two"), count("c/three")),
        (1, 2, 1)
    );
    let out = ok(&["workflow", "resume", "wf-c", "-s", s]).await;
    assert!(out.contains("already finished (SUCCESS)"), "{out}");
    let out = ok(&["workflow", "cancel", "wf-a", "-s", s]).await;
    assert!(out.contains("already finished"), "{out}");

    // fork (DBOS's flags), restart, rewind.
    let forked = json_of(&[
        "workflow",
        "fork",
        "wf-c",
        "-S",
        "3",
        "-f",
        "wf-c-fork",
        "-s",
        s,
    ])
    .await;
    assert_eq!(forked["workflow_id"], "wf-c-fork");
    assert_eq!(forked["forked_from"], "wf-c");
    assert_eq!(
        dbos.retrieve_workflow::<i64, Error>("wf-c-fork")
            .await
            .unwrap(),
        6
    );
    assert_eq!(
        (count("c/one"), count("c/two"), count("c/three")),
        (1, 2, 2)
    );
    let out = ok(&["workflow", "restart", "wf-c", "-f", "wf-c-again", "-s", s]).await;
    assert!(out.contains("as wf-c-again"), "{out}");
    assert_eq!(
        dbos.retrieve_workflow::<i64, Error>("wf-c-again")
            .await
            .unwrap(),
        6
    );
    assert_eq!((count("c/one"), count("c/three")), (2, 3));
    let out = ok(&[
        "workflow",
        "fork",
        "wf-c",
        "--step",
        "2",
        "-q",
        "limited",
        "--timeout",
        "60",
        "-f",
        "wf-c-2",
        "-s",
        s,
    ])
    .await;
    assert!(out.contains("on limited"), "{out}");
    dbos.retrieve_workflow::<i64, Error>("wf-c-2")
        .await
        .unwrap();
    let rewound = json_of(&["workflow", "rewind", "wf-c", "-S", "3", "-s", s]).await;
    assert!(running(&rewound), "{rewound}");
    assert_eq!(
        dbos.retrieve_workflow::<i64, Error>("wf-c").await.unwrap(),
        6
    );
    assert_eq!(count("c/three"), 5);

    // delete, with descendants.
    let deleted = json_of(&["workflow", "delete", "wf-parent", "--children", "-s", s]).await;
    let mut deleted: Vec<String> = serde_json::from_value(deleted["deleted"].clone()).unwrap();
    deleted.sort();
    assert_eq!(deleted, vec!["wf-parent", "wf-parent-1"]);

    // queues and versions.
    let queues = json_of(&["queue", "list", "-s", s]).await;
    let names: Vec<&str> = queues
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["limited", "parked"]);
    assert_eq!(queues[0]["concurrency"], 2);
    assert_eq!(queues[1]["enqueued"], 1);
    let table = ok(&["queue", "list", "-s", s]).await;
    assert!(table.contains("parked (not registered)"), "{table}");
    let versions = json_of(&["app-version", "list", "-s", s]).await;
    assert_eq!(versions[0]["version_name"], dbos.application_version());
    let v = dbos.application_version().to_owned();
    assert!(ok(&["app-version", "set-latest", &v, "-s", s])
        .await
        .contains("is now the latest"));

    // Errors: one line, what was wrong and what to do, exit code 1.
    let e = fails(&["workflow", "get", "nobody", "-s", s]).await;
    assert!(
        e.contains("no workflow has the id `nobody`") && e.contains("dbos-rs workflow list"),
        "{e}"
    );
    for verb in [
        "steps", "cancel", "resume", "restart", "fork", "rewind", "delete",
    ] {
        let mut args = vec!["workflow", verb, "nobody", "-s", s];
        if ["fork", "rewind"].contains(&verb) {
            args.extend(["-S", "1"]);
        }
        let e = fails(&args).await;
        assert!(e.contains("no workflow has the id `nobody`"), "{verb}: {e}");
    }
    let e = fails(&["workflow", "fork", "wf-a", "--step", "9", "-s", s]).await;
    assert!(e.contains("recorded steps up to 3 (`three`)"), "{e}");
    let e = fails(&["workflow", "rewind", "wf-queued", "-S", "1", "-s", s]).await;
    assert!(e.contains("cancel it first"), "{e}");
    let e = fails(&["workflow", "list", "-S", "DONE", "-s", s]).await;
    assert!(e.contains("unknown status `DONE`"), "{e}");
    let e = fails(&["workflow", "list", "-t", "last tuesday", "-s", s]).await;
    assert!(e.contains("not a time"), "{e}");
    let e = fails(&["workflow", "list", "--attributes", "{nope", "-s", s]).await;
    assert!(e.contains("not JSON"), "{e}");
    let e = fails(&["workflow", "list"]).await;
    assert!(e.contains("DBOS_SYSTEM_DATABASE_URL"), "{e}");
    let e = fails(&["workflow", "list", "-s", "not-a-url"]).await;
    assert!(e.contains("not a Postgres URL"), "{e}");
    let e = fails(&["workflow", "list", "-s", s, "--schema", "elsewhere"]).await;
    assert!(e.contains("holds no DBOS system schema `elsewhere`"), "{e}");
    let e = fails(&["gc", "-s", s]).await;
    assert!(e.contains("nothing to do"), "{e}");
    // A usage error is clap's: exit code 2.
    let out = dbos_rs(&["workflow", "explode"]).await;
    assert_eq!(out.status.code(), Some(2));
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn migrate_gc_and_version(db: TestDatabase) {
    // migrate creates the database and the schema; a client then connects.
    let url = db.sibling_url("migrated");
    let out = ok(&["migrate", "-s", &url]).await;
    assert!(
        out.contains("created the DBOS system schema `dbos`") && out.contains("125"),
        "{out}"
    );
    let again = json_of(&["migrate", "-s", &url]).await;
    assert_eq!(again["version"], 125);
    let client = Client::connect(url.clone()).await.unwrap();
    assert_eq!(client.schema_version(), 125);
    client.close();
    let v = json_of(&["version"]).await;
    assert_eq!(v["schema_version"], 125);
    assert!(ok(&["version"]).await.starts_with("dbos-rs version "));

    // gc: old finished workflows go in batches; the global timeout cancels old active ones.
    let dbos = db.launch().await;
    for i in 0..5 {
        flow(format!("gc{i}"), 1)
            .id(format!("gc-{i}"))
            .on(&dbos)
            .await
            .unwrap();
    }
    flow("gcq".into(), 1)
        .id("gc-active")
        .on(&dbos)
        .enqueue(&PARKED)
        .await
        .unwrap();
    let s = db.url();
    let r = json_of(&["gc", "--older-than", "1d", "-y", "-s", &s]).await;
    assert_eq!(r["deleted"], 0);
    let r = json_of(&["gc", "--keep", "3", "--batch-size", "1", "-y", "-s", &s]).await;
    assert_eq!(
        (r["deleted"].as_i64(), r["batches"].as_i64()),
        (Some(3), Some(4)),
        "{r}"
    );
    let out = ok(&[
        "gc",
        "--cancel-active-before",
        "2999-01-01",
        "--before",
        "2999-01-01",
        "-y",
        "-s",
        &s,
    ])
    .await;
    assert!(out.contains("cancelled 1 active workflows"), "{out}");
    assert!(out.contains("deleted 3 finished workflows"), "{out}");
    let left = json_of(&["workflow", "list", "-s", &s]).await;
    assert!(left.as_array().unwrap().is_empty(), "{left}");
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn the_local_postgres(_db: TestDatabase) {
    let dir = std::env::temp_dir().join(format!("dbos-rs-cli-{}", std::process::id()));
    let d = dir.to_str().unwrap().to_owned();
    let out = ok(&["postgres", "status", "--dir", &d]).await;
    assert!(out.contains("no local Postgres"), "{out}");
    let e = fails(&["postgres", "url", "--dir", &d]).await;
    assert!(e.contains("dbos-rs postgres start"), "{e}");
    let started = json_of(&["postgres", "start", "--dir", &d]).await;
    assert_eq!(started["running"], true);
    assert!(
        !started["url"]
            .as_str()
            .unwrap()
            .contains("postgres:postgres"),
        "the password is redacted"
    );
    let again = json_of(&["postgres", "start", "--dir", &d]).await;
    assert_eq!(
        (again["started"].as_bool(), again["port"].clone()),
        (Some(false), started["port"].clone())
    );
    let status = json_of(&["postgres", "status", "--dir", &d]).await;
    assert_eq!(
        (status["running"].as_bool(), status["port"].clone()),
        (Some(true), started["port"].clone())
    );
    // The URL of an application's database, as the library names it.
    let url = ok(&["postgres", "url", "--dir", &d, "--app", "my-shop"]).await;
    let url = url.trim();
    assert!(url.ends_with("/my_shop_dbos_sys"), "{url}");
    let out = ok(&["migrate", "-s", url]).await;
    assert!(out.contains("my_shop_dbos_sys"), "{out}");
    let stopped = ok(&["postgres", "stop", "--dir", &d]).await;
    assert!(stopped.contains("stopped the local Postgres"), "{stopped}");
    let out = ok(&["postgres", "status", "--dir", &d]).await;
    assert!(out.starts_with("stopped"), "{out}");
    let out = ok(&["postgres", "stop", "--dir", &d]).await;
    assert!(out.contains("nothing to stop"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[dbos_testkit::test]
async fn rename_application_re_owns_rows_and_asks_first(db: TestDatabase) {
    let dbos = db.launch().await;
    for i in 0..3 {
        flow(format!("rn{i}"), 1)
            .id(format!("rn-{i}"))
            .on(&dbos)
            .await
            .unwrap();
    }
    dbos.shutdown().await.unwrap();
    let s = db.url();
    // Not a terminal and no -y: refused, nothing moved.
    let line = fails(&[
        "rename-application",
        "--from",
        "testapp",
        "--to",
        "renamed",
        "-s",
        &s,
    ])
    .await;
    assert!(line.contains("-y"), "{line}");
    let line = fails(&["rename-application", "--to", "renamed", "-y", "-s", &s]).await;
    assert!(line.contains("nothing to re-own"), "{line}");
    let r = json_of(&[
        "rename-application",
        "-f",
        "testapp",
        "-t",
        "renamed",
        "--batch-size",
        "2",
        "-y",
        "-s",
        &s,
    ])
    .await;
    assert_eq!(r["workflows"], 3, "{r}");
    assert_eq!(r["steps"], 9, "{r}");
    let owners: Vec<Option<String>> = db
        .connect()
        .await
        .query(
            "SELECT DISTINCT application_name FROM dbos.workflow_status",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, vec![Some("renamed".to_owned())]);
    let out = ok(&[
        "rename-application",
        "-f",
        "testapp",
        "-t",
        "renamed",
        "-y",
        "-s",
        &s,
    ])
    .await;
    assert!(
        out.contains("0 workflows, 0 steps"),
        "a second run finds nothing: {out}"
    );
}

/// Without `--dir`, the folder is the application's, where the library keeps it (not the
/// working directory's `.dbos`); with neither `--dir` nor `--app` the CLI asks which.
#[dbos_testkit::test]
async fn the_local_postgres_folder_is_the_application_s(_db: TestDatabase) {
    let data_home = std::env::temp_dir().join(format!("dbos-rs-cli-xdg-{}", std::process::id()));
    let home = data_home.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_dbos-rs"))
            .env_remove("DBOS_LOCAL_POSTGRES_DIR")
            .env("XDG_DATA_HOME", &home)
            .args(["postgres", "status", "--app", "my-shop", "--json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status["dir"].as_str().unwrap(),
        data_home.join("dbos-rs").join("my-shop").to_str().unwrap()
    );
    let e = fails(&["postgres", "status"]).await;
    assert!(e.contains("--app NAME") && e.contains("--dir"), "{e}");
}
