//! Patching across real processes: this test binary re-executes itself (the `role` test,
//! selected by `DBOS_PATCH_ROLE`) as the application running the old, the patched or the
//! deprecated code of one workflow. An execution of one version is killed (SIGKILL) at a
//! step that hangs, and a process with the next version recovers it.

use std::time::Duration;

use dbos_core::{step, workflow, Dbos, Error};
use dbos_testkit::crash::{eventually, ChildProcess};
use dbos_testkit::TestDatabase;

/// Which code this process runs: `old` (no patch), `new` (`patch("x")`) or `deprecated`
/// (`deprecate_patch("x")`).
fn code() -> String {
    std::env::var("DBOS_PATCH_CODE").unwrap_or_else(|_| "new".into())
}

#[step]
async fn first() -> Result<String, Error> {
    Ok("first".into())
}

#[step]
async fn old_way() -> Result<String, Error> {
    Ok("old".into())
}

#[step]
async fn new_way() -> Result<String, Error> {
    Ok("new".into())
}

/// Hangs in the process started with `DBOS_PATCH_HANG` (which the test then kills).
#[step]
async fn gate() -> Result<(), Error> {
    if std::env::var("DBOS_PATCH_HANG").is_ok() {
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[step]
async fn last() -> Result<String, Error> {
    Ok("last".into())
}

#[workflow(name = "patching::versioned")]
async fn versioned() -> Result<Vec<String>, Error> {
    let mut path = vec![first().await?];
    let middle = match code().as_str() {
        "old" => old_way().await?,
        "deprecated" => {
            assert!(dbos_core::deprecate_patch("x").await?);
            new_way().await?
        }
        _ => {
            if dbos_core::patch("x").await? {
                new_way().await?
            } else {
                old_way().await?
            }
        }
    };
    path.push(middle);
    gate().await?;
    path.push(last().await?);
    Ok(path)
}

/// The application process, run by the tests below (a no-op in a normal test run): launches
/// on `DBOS_PATCH_URL` (recovering its pending workflows), starts the workflows named in
/// `DBOS_PATCH_START`, then hangs (with `DBOS_PATCH_HANG`) or waits for every workflow named
/// in `DBOS_PATCH_START` and `DBOS_PATCH_AWAIT` and exits.
#[test]
fn role() {
    let Ok(url) = std::env::var("DBOS_PATCH_URL") else {
        return;
    };
    let list = |var: &str| -> Vec<String> {
        std::env::var(var)
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let config = dbos_core::Config::new("patching")
            .system_database_url(url)
            .executor_id("patch-exec")
            .application_version("v-patch")
            .pool_size(4);
        let dbos = Dbos::launch(config).await.unwrap();
        let started = list("DBOS_PATCH_START");
        for id in &started {
            versioned().id(id.as_str()).on(&dbos).start().await.unwrap();
        }
        if std::env::var("DBOS_PATCH_HANG").is_ok() {
            std::future::pending::<()>().await;
        }
        for id in started.iter().chain(&list("DBOS_PATCH_AWAIT")) {
            let r = dbos
                .retrieve_workflow::<Vec<String>, Error>(id.as_str())
                .result()
                .await;
            println!("{id}: {r:?}");
        }
        dbos.shutdown().await.unwrap();
    });
}

/// Runs this binary as the application with `code`, with extra environment.
fn app(db: &TestDatabase, code: &str, env: &[(&str, &str)]) -> ChildProcess {
    let url = db.url();
    let mut all = vec![("DBOS_PATCH_URL", url.as_str()), ("DBOS_PATCH_CODE", code)];
    all.extend_from_slice(env);
    ChildProcess::spawn_test("role", &all)
}

/// Starts `ids` in a process running `code` and kills it once each has recorded `steps`
/// operations (it hangs at `gate`).
async fn start_then_kill(db: &TestDatabase, code: &str, ids: &[&str], steps: usize) {
    // The schema first, so the test can watch the rows appear.
    let sysdb = dbos_core::sysdb::SystemDatabase::connect(
        &db.url(),
        "dbos",
        &dbos_core::sysdb::ConnectOptions::default(),
    )
    .await
    .unwrap();
    sysdb.migrate().await.unwrap();
    sysdb.close();
    let joined = ids.join(",");
    let doomed = app(
        db,
        code,
        &[("DBOS_PATCH_START", &joined), ("DBOS_PATCH_HANG", "1")],
    );
    for id in ids {
        eventually(
            "the old process to reach the gate",
            Duration::from_secs(60),
            || async { (db.step_names(id).await.len() == steps).then_some(()) },
        )
        .await;
    }
    doomed.kill9().await;
}

/// Runs `code` until `start` (fresh) and `recover` (recovered) workflows are done.
async fn run_to_completion(db: &TestDatabase, code: &str, start: &[&str], recover: &[&str]) {
    let (start, recover) = (start.join(","), recover.join(","));
    let process = app(
        db,
        code,
        &[("DBOS_PATCH_START", &start), ("DBOS_PATCH_AWAIT", &recover)],
    );
    assert_eq!(process.wait(Duration::from_secs(120)).await, Some(0));
}

async fn outcome(db: &TestDatabase, id: &str) -> (String, Option<String>) {
    let row = db
        .connect()
        .await
        .query_one(
            "SELECT s.status, o.output FROM dbos.workflow_status s
               LEFT JOIN dbos.workflow_output o USING (workflow_uuid) WHERE workflow_uuid = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

fn done(path: &str) -> (String, Option<String>) {
    ("SUCCESS".to_owned(), Some(path.to_owned()))
}

#[dbos_testkit::test]
async fn an_execution_of_the_old_code_recovered_by_the_patched_code_stays_on_the_old_branch(
    db: TestDatabase,
) {
    // The old code passes the patch point (records `old_way`) and is killed at the gate.
    start_then_kill(&db, "old", &["in-flight"], 2).await;
    assert_eq!(db.step_names("in-flight").await, ["first", "old_way"]);

    // The patched code recovers it and starts a new one.
    run_to_completion(&db, "new", &["fresh"], &["in-flight"]).await;
    assert_eq!(
        outcome(&db, "in-flight").await,
        done(r#"["first","old","last"]"#)
    );
    assert_eq!(
        db.step_names("in-flight").await,
        ["first", "old_way", "gate", "last"],
        "the old execution records no marker"
    );
    assert_eq!(
        outcome(&db, "fresh").await,
        done(r#"["first","new","last"]"#)
    );
    assert_eq!(
        db.step_names("fresh").await,
        ["first", "DBOS.patch-x", "new_way", "gate", "last"]
    );
    // The marker row is value-less, as DBOS writes it.
    let marker = db.step_of("fresh", 2).await;
    let nulls = (
        marker.output,
        marker.error,
        marker.serialization,
        marker.child_workflow_id,
    );
    assert_eq!(nulls, (None, None, None, None));
}

#[dbos_testkit::test]
async fn a_patched_execution_recovered_by_the_patched_code_stays_on_the_new_branch(
    db: TestDatabase,
) {
    start_then_kill(&db, "new", &["new-in-flight"], 3).await;
    run_to_completion(&db, "new", &[], &["new-in-flight"]).await;
    assert_eq!(
        outcome(&db, "new-in-flight").await,
        done(r#"["first","new","last"]"#)
    );
    assert_eq!(
        db.step_names("new-in-flight").await,
        ["first", "DBOS.patch-x", "new_way", "gate", "last"],
        "one marker, the new step ran once"
    );
}

#[dbos_testkit::test]
async fn deprecating_consumes_a_recorded_marker_and_never_inserts_one(db: TestDatabase) {
    // A patched execution (marker recorded) in flight when the patch is deprecated.
    start_then_kill(&db, "new", &["marked"], 3).await;
    assert_eq!(
        db.step_names("marked").await,
        ["first", "DBOS.patch-x", "new_way"]
    );
    run_to_completion(&db, "deprecated", &["after"], &["marked"]).await;
    assert_eq!(
        outcome(&db, "marked").await,
        done(r#"["first","new","last"]"#)
    );
    assert_eq!(
        db.step_names("marked").await,
        ["first", "DBOS.patch-x", "new_way", "gate", "last"]
    );
    assert_eq!(
        outcome(&db, "after").await,
        done(r#"["first","new","last"]"#)
    );
    assert_eq!(
        db.step_names("after").await,
        ["first", "new_way", "gate", "last"],
        "a deprecated patch records no marker"
    );
}

#[workflow]
async fn patch_twice() -> Result<(bool, bool), Error> {
    let a = dbos_core::patch("twice").await?;
    let b = dbos_core::patch("twice").await?;
    Ok((a, b))
}

#[dbos_testkit::test]
async fn patch_outside_a_workflow_or_without_a_name_is_refused(db: TestDatabase) {
    let dbos = db.launch().await;
    let e = dbos_core::patch("x").await.unwrap_err();
    assert_eq!(e.kind(), dbos_core::ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("outside a workflow"), "{e}");
    let e = dbos_core::deprecate_patch("").await.unwrap_err();
    assert_eq!(e.kind(), dbos_core::ErrorKind::InvalidArgument);
    // Each call of one name is its own operation (DBOS's too).
    assert_eq!(
        patch_twice().id("twice").on(&dbos).await.unwrap(),
        (true, true)
    );
    assert_eq!(
        db.step_names("twice").await,
        ["DBOS.patch-twice", "DBOS.patch-twice"]
    );
    dbos.shutdown().await.unwrap();
}

const PY_STEPS: &str = r#"
import sys, json
from dbos import DBOSClient
c = DBOSClient(system_database_url=sys.argv[1])
print(json.dumps([s["function_name"] for s in c.list_workflow_steps(sys.argv[2])]))
c.destroy()
"#;

#[dbos_testkit::test]
async fn dbos_python_lists_the_marker(db: TestDatabase) {
    let dbos = db.launch().await;
    patch_twice().id("py-twice").on(&dbos).await.unwrap();
    dbos.shutdown().await.unwrap();
    let out = dbos_testkit::python::run_python(PY_STEPS, &[&db.url(), "py-twice"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(names, ["DBOS.patch-twice", "DBOS.patch-twice"]);
}
