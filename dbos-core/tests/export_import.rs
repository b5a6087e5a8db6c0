//! Export and import of workflows between two system databases: every row of every table
//! arrives equal, DBOS Python's CLI shows the same workflows in the new database, an imported
//! `PENDING` workflow finishes there without re-running its recorded steps, and a failing
//! import writes nothing.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dbos_core::export::{ExportWorkflows, ImportWorkflows, WorkflowExport};
use dbos_core::manage::ListWorkflows;
use dbos_core::{step, workflow, Client, Config, Dbos, Error, ErrorKind, Status};
use dbos_testkit::crash::{eventually, IsolatedRuntime};
use dbos_testkit::proxy::Proxy;
use dbos_testkit::python::dbos_cli;
use dbos_testkit::TestDatabase;
use serde_json::{json, Value};

/// The tables an export carries, with the order their rows are compared in.
const TABLES: &[(&str, &str)] = &[
    ("workflow_status", "workflow_uuid"),
    ("workflow_input", "workflow_uuid"),
    ("workflow_output", "workflow_uuid"),
    ("operation_outputs", "workflow_uuid, function_id"),
    ("workflow_events", "workflow_uuid, key"),
    ("workflow_events_history", "workflow_uuid, function_id, key"),
    ("streams", "workflow_uuid, key, \"offset\""),
    ("notifications", "destination_uuid, message_uuid"),
];

#[step]
async fn price(item: String) -> Result<u32, Error> {
    Ok(item.len() as u32 * 100)
}

#[step]
async fn refuse(reason: String) -> Result<(), Error> {
    Err(Error::new(ErrorKind::WorkflowFailed, reason))
}

#[workflow]
async fn pack(item: String) -> Result<String, Error> {
    let cents = price(item.clone()).await?;
    dbos_core::set_event("packed", &cents).await?;
    Ok(format!("{item}:{cents}"))
}

#[workflow]
async fn order(items: Vec<String>) -> Result<Vec<String>, Error> {
    dbos_core::set_event("stage", &"packing").await?;
    let mut packed = Vec::new();
    for item in items {
        packed.push(pack(item).await?);
    }
    dbos_core::write_stream("progress", &packed.len()).await?;
    dbos_core::write_stream("progress", &"done").await?;
    let note: Option<String> = dbos_core::recv("note", Duration::from_secs(30)).await?;
    packed.push(note.unwrap_or_default());
    dbos_core::set_event("stage", &"shipped").await?;
    Ok(packed)
}

#[workflow]
async fn doomed(code: i32) -> Result<(), Error> {
    refuse(format!("refused {code}")).await
}

/// Every row of `table` (of the workflows `ids`, or all), as JSON objects without the
/// execution tokens an export leaves out.
async fn rows(
    db: &tokio_postgres::Client,
    table: &str,
    order: &str,
    ids: Option<&[&str]>,
) -> Vec<Value> {
    let id = if table == "notifications" {
        "destination_uuid"
    } else {
        "workflow_uuid"
    };
    let filter = match ids {
        Some(_) => format!("WHERE {id} = ANY($1)"),
        None => "WHERE $1::text[] IS NOT NULL".to_owned(),
    };
    let ids: Vec<String> = ids.unwrap_or(&[]).iter().map(|s| (*s).to_owned()).collect();
    db.query(
        &format!("SELECT to_jsonb(t) - 'owner_xid' - 'creator_xid' FROM dbos.{table} t {filter} ORDER BY {order}"),
        &[&ids],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// A runtime on a second, fresh database of the test (created and migrated by the launch).
async fn launch_target(db: &TestDatabase) -> (Dbos, String) {
    let url = db.sibling_url("target");
    let dbos = Dbos::launch(
        Config::new("testapp")
            .system_database_url(url.clone())
            .pool_size(4),
    )
    .await
    .unwrap();
    (dbos, url)
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

async fn cli_json(args: &[&str]) -> Value {
    let out = dbos_cli(args).await;
    assert!(
        out.status.success(),
        "dbos {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "dbos {args:?} printed non-JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[dbos_testkit::test]
async fn an_export_imports_into_a_fresh_database_with_every_row_equal(db: TestDatabase) {
    let source = db.launch().await;
    let h = order(vec!["mug".into(), "lamp".into()])
        .id("order-1")
        .on(&source)
        .start()
        .await
        .unwrap();
    source.send("order-1", &"fragile", "note").await.unwrap();
    h.result().await.unwrap();
    doomed(7).id("doomed-1").on(&source).await.unwrap_err();
    pack("left-behind".into())
        .id("other-1")
        .on(&source)
        .await
        .unwrap();
    // A message nobody received yet travels with its workflow.
    source
        .send("doomed-1", &"late", "never-read")
        .await
        .unwrap();

    let export = source
        .export_workflows(&ExportWorkflows::ids(["order-1", "doomed-1"]).with_children())
        .await
        .unwrap();
    let mut ids = export.workflow_ids();
    ids.sort_unstable();
    assert_eq!(ids, ["doomed-1", "order-1", "order-1-2", "order-1-4"]);
    // Through the file format and back.
    let export = WorkflowExport::from_json(&export.to_json()).unwrap();

    let (target, target_url) = launch_target(&db).await;
    let report = target
        .import_workflows(&export, &ImportWorkflows::new())
        .await
        .unwrap();
    assert_eq!(report.imported.len(), 4);
    assert!(report.skipped.is_empty());

    let (from, to) = (db.connect().await, connect(&target_url).await);
    for (table, order) in TABLES {
        let want = rows(&from, table, order, Some(&ids)).await;
        assert!(
            !want.is_empty(),
            "the source has no {table} rows to compare"
        );
        assert_eq!(rows(&to, table, order, None).await, want, "{table} differs");
    }
    // The imported workflows answer as they did at the source.
    let result: Vec<String> = target
        .retrieve_workflow::<Vec<String>, Error>("order-1")
        .result()
        .await
        .unwrap();
    assert_eq!(result, ["mug:300", "lamp:400", "fragile"]);
    let stage: Option<String> = target
        .get_event("order-1", "stage", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(stage.as_deref(), Some("shipped"));
    assert_eq!(
        target.list_workflow_steps("order-1").await.unwrap(),
        source.list_workflow_steps("order-1").await.unwrap()
    );

    // DBOS Python's CLI shows the same workflows in the new database.
    let url = db.url();
    for id in &ids {
        let there = cli_json(&["workflow", "get", id, "-s", &url]).await;
        let here = cli_json(&["workflow", "get", id, "-s", &target_url]).await;
        assert_eq!(here, there, "dbos workflow get {id}");
    }
    let listed = cli_json(&["workflow", "list", "-s", &target_url]).await;
    let mut listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workflow_id"].as_str().unwrap())
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, ids);

    // Importing again: every id is taken, so nothing is written; with skip_existing, all skipped.
    let again = target
        .import_workflows(&export, &ImportWorkflows::new())
        .await
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::ConflictingWorkflowId);
    assert!(again.message().contains("`order-1`"), "{again}");
    let skipped = target
        .import_workflows(&export, &ImportWorkflows::new().skip_existing())
        .await
        .unwrap();
    assert!(skipped.imported.is_empty());
    assert_eq!(skipped.skipped.len(), 4);
    target.shutdown().await.unwrap();
    source.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn an_export_by_listing_takes_what_the_filter_selects(db: TestDatabase) {
    let dbos = db.launch().await;
    doomed(1).id("bad-1").on(&dbos).await.unwrap_err();
    doomed(2).id("bad-2").on(&dbos).await.unwrap_err();
    pack("ok".into()).id("good-1").on(&dbos).await.unwrap();
    let export = dbos
        .export_workflows(&ExportWorkflows::matching(
            ListWorkflows::new().status(Status::Error),
        ))
        .await
        .unwrap();
    let mut ids = export.workflow_ids();
    ids.sort_unstable();
    assert_eq!(ids, ["bad-1", "bad-2"]);
    let missing = dbos
        .export_workflows(&ExportWorkflows::ids(["good-1", "nope"]))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NonExistentWorkflow);
    assert!(missing.message().contains("`nope`"), "{missing}");
    let none = dbos
        .export_workflows(&ExportWorkflows::ids(Vec::<String>::new()))
        .await
        .unwrap_err();
    assert_eq!(none.kind(), ErrorKind::InvalidArgument);
    dbos.shutdown().await.unwrap();
}

static BEFORE: AtomicU32 = AtomicU32::new(0);
static AFTER: AtomicU32 = AtomicU32::new(0);

#[step]
async fn before_the_wait() -> Result<u32, Error> {
    Ok(BEFORE.fetch_add(1, Ordering::SeqCst) + 1)
}

#[step]
async fn after_the_wait() -> Result<u32, Error> {
    Ok(AFTER.fetch_add(1, Ordering::SeqCst) + 1)
}

#[workflow]
async fn waits_for_go() -> Result<(u32, String, u32), Error> {
    let first = before_the_wait().await?;
    let go: Option<String> = dbos_core::recv("go", Duration::from_secs(120)).await?;
    let second = after_the_wait().await?;
    Ok((first, go.unwrap_or_default(), second))
}

#[dbos_testkit::test]
async fn an_imported_pending_workflow_finishes_on_the_new_database_without_rerunning_its_steps(
    db: TestDatabase,
) {
    // The source executor records the first step, waits for a message, and dies.
    let doomed = IsolatedRuntime::new();
    let config = db.config("testapp");
    doomed
        .run(async move {
            let dbos = Dbos::launch(config).await.unwrap();
            let h = waits_for_go()
                .id("waiting-1")
                .on(&dbos)
                .start()
                .await
                .unwrap();
            std::mem::forget((dbos, h));
        })
        .await;
    let source = Client::connect(db.url()).await.unwrap();
    eventually(
        "the workflow waits for its message",
        Duration::from_secs(30),
        || async {
            // The first step recorded, and `recv` waiting (its deadline recorded as DBOS.sleep).
            let steps = source.list_workflow_steps("waiting-1").await.ok()?;
            steps
                .iter()
                .any(|s| s.function_name == "DBOS.sleep")
                .then_some(())
        },
    )
    .await;
    doomed.abort();
    assert_eq!(BEFORE.load(Ordering::SeqCst), 1);
    // The message arrives after the executor died: it waits, unread, in the source.
    source.send("waiting-1", &"go!", "go").await.unwrap();
    assert_eq!(
        source.get_workflow_status("waiting-1").await.unwrap(),
        Status::Pending
    );

    let export = source
        .export_workflows(&ExportWorkflows::ids(["waiting-1"]))
        .await
        .unwrap();
    let (target, _) = launch_target(&db).await;
    target
        .import_workflows(&export, &ImportWorkflows::new())
        .await
        .unwrap();
    target.resume_workflow("waiting-1").await.unwrap();
    let done = target
        .retrieve_workflow::<(u32, String, u32), Error>("waiting-1")
        .result()
        .await
        .unwrap();
    // The first step's recorded answer, the imported message, the second step run once.
    assert_eq!(done, (1, "go!".to_owned(), 1));
    assert_eq!(
        BEFORE.load(Ordering::SeqCst),
        1,
        "the recorded step ran again"
    );
    assert_eq!(AFTER.load(Ordering::SeqCst), 1);
    target.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_failing_import_writes_nothing(db: TestDatabase) {
    let source = db.launch().await;
    for id in ["a-1", "a-2", "a-3"] {
        pack(id.into()).id(id).on(&source).await.unwrap();
    }
    let export = source
        .export_workflows(&ExportWorkflows::ids(["a-1", "a-2", "a-3"]))
        .await
        .unwrap();
    let (target, target_url) = launch_target(&db).await;
    let to = connect(&target_url).await;
    let empty = || async {
        for (table, order) in TABLES {
            assert_eq!(
                rows(&to, table, order, None).await,
                Vec::<Value>::new(),
                "{table} was written"
            );
        }
    };

    // The middle workflow records one step twice: the check passes, the database refuses it.
    let mut doc = export.to_value();
    let steps = doc["workflows"][1]["operation_outputs"]
        .as_array_mut()
        .unwrap();
    let twice = steps[0].clone();
    steps.push(twice);
    let bad = WorkflowExport::from_value(doc).unwrap();
    let e = target
        .import_workflows(&bad, &ImportWorkflows::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Database, "{e}");
    assert!(e.to_string().contains("operation_outputs"), "{e}");
    empty().await;

    // The middle workflow lacks a required field: refused before anything is written.
    let mut doc = export.to_value();
    doc["workflows"][1]["workflow_status"]
        .as_object_mut()
        .unwrap()
        .remove("created_at");
    let e = WorkflowExport::from_value(doc).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(
        e.message().contains("workflow 1 (`a-2`)") && e.message().contains("`created_at`"),
        "{e}"
    );

    // Other files that do not check, each with a typed error naming the problem.
    for (text, says) in [
        ("not json", "not valid JSON"),
        ("[]", "JSON array"),
        (
            r#"{"format": "dbos-workflow-export", "format_version": 1, "workflows": []}"#,
            "no `schema_version`",
        ),
        (
            r#"{"format": "dbos-workflow-export", "schema_version": 125, "workflows": []}"#,
            "no `format_version`",
        ),
    ] {
        let e = WorkflowExport::from_json(text).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{text}");
        assert!(e.message().contains(says), "{text}: {e}");
    }
    let mut doc = export.to_value();
    doc["schema_version"] = json!(99);
    assert_eq!(
        WorkflowExport::from_value(doc).unwrap_err().kind(),
        ErrorKind::Schema
    );

    // One id the target has already: nothing is written, unless skipping is asked for.
    let one = source
        .export_workflows(&ExportWorkflows::ids(["a-2"]))
        .await
        .unwrap();
    target
        .import_workflows(&one, &ImportWorkflows::new())
        .await
        .unwrap();
    let before: Vec<Vec<Value>> =
        futures_util::future::join_all(TABLES.iter().map(|(t, o)| rows(&to, t, o, None))).await;
    let e = target
        .import_workflows(&export, &ImportWorkflows::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConflictingWorkflowId);
    assert!(
        e.message().contains("`a-2`") && !e.message().contains("`a-1`"),
        "{e}"
    );
    let after: Vec<Vec<Value>> =
        futures_util::future::join_all(TABLES.iter().map(|(t, o)| rows(&to, t, o, None))).await;
    assert_eq!(after, before);
    let report = target
        .import_workflows(&export, &ImportWorkflows::new().skip_existing())
        .await
        .unwrap();
    let mut imported = report.imported.clone();
    imported.sort_unstable();
    assert_eq!(imported, ["a-1", "a-3"]);
    assert_eq!(report.skipped, ["a-2"]);
    let from = db.connect().await;
    for (table, order) in TABLES {
        assert_eq!(
            rows(&to, table, order, None).await,
            rows(&from, table, order, Some(&["a-1", "a-2", "a-3"])).await,
            "{table}"
        );
    }
    target.shutdown().await.unwrap();
    source.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_retried_import_reports_what_its_first_attempt_did(db: TestDatabase) {
    let source = db.launch().await;
    pack("cup".into()).id("acked-1").on(&source).await.unwrap();
    let export = source
        .export_workflows(&ExportWorkflows::ids(["acked-1"]))
        .await
        .unwrap();
    let (target, target_url) = launch_target(&db).await;
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let client = Client::connect(proxy.url(&target_url)).await.unwrap();
    // The import commits, and its acknowledgement is lost: the retry finds the workflow
    // there, and reports it imported (not "the target already has it").
    proxy.cut_after_commit(b"jsonb_populate_recordset", Duration::from_millis(100));
    let report = client
        .import_workflows(&export, &ImportWorkflows::new())
        .await
        .unwrap();
    assert_eq!(report.imported, ["acked-1"]);
    assert!(
        proxy.fired() >= 1,
        "the first commit's acknowledgement was lost"
    );
    let (from, to) = (db.connect().await, connect(&target_url).await);
    for (table, order) in TABLES {
        assert_eq!(
            rows(&to, table, order, None).await,
            rows(&from, table, order, Some(&["acked-1"])).await,
            "{table}"
        );
    }
    target.shutdown().await.unwrap();
    source.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_document_in_dbos_python_s_shape_imports(db: TestDatabase) {
    let source = db.launch().await;
    pack("cup".into())
        .id("dbos-shape-1")
        .on(&source)
        .await
        .unwrap();
    let export = source
        .export_workflows(&ExportWorkflows::ids(["dbos-shape-1"]))
        .await
        .unwrap();
    // What DBOS Python's `export_workflow` returns, as JSON: five tables, inputs and outcome
    // inline in the status row, no `request`, no `retention_timestamp`.
    let mut doc = export.to_value();
    for w in doc["workflows"].as_array_mut().unwrap() {
        let w = w.as_object_mut().unwrap();
        let input = w.remove("workflow_input").unwrap();
        let output = w.remove("workflow_output").unwrap();
        w.remove("notifications");
        let status = w["workflow_status"].as_object_mut().unwrap();
        status.remove("request");
        status.insert("inputs".into(), input["inputs"].clone());
        status.insert("output".into(), output["output"].clone());
        for step in w["operation_outputs"].as_array_mut().unwrap() {
            step.as_object_mut().unwrap().remove("retention_timestamp");
        }
    }
    let dbos_shaped = WorkflowExport::from_value(doc).unwrap();
    let (target, target_url) = launch_target(&db).await;
    target
        .import_workflows(&dbos_shaped, &ImportWorkflows::new())
        .await
        .unwrap();
    let result: String = target
        .retrieve_workflow::<String, Error>("dbos-shape-1")
        .result()
        .await
        .unwrap();
    assert_eq!(result, "cup:300");
    let (here, there) = (
        target.get_workflow("dbos-shape-1").await.unwrap(),
        source.get_workflow("dbos-shape-1").await.unwrap(),
    );
    assert_eq!(format!("{:?}", here.input), format!("{:?}", there.input));
    assert_eq!(
        target.list_workflow_steps("dbos-shape-1").await.unwrap(),
        source.list_workflow_steps("dbos-shape-1").await.unwrap()
    );
    // DBOS Python's CLI reads it as it reads the original.
    let there = cli_json(&["workflow", "get", "dbos-shape-1", "-s", &db.url()]).await;
    let here = cli_json(&["workflow", "get", "dbos-shape-1", "-s", &target_url]).await;
    assert_eq!(here, there);
    target.shutdown().await.unwrap();
    source.shutdown().await.unwrap();
}
