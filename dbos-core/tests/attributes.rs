//! Workflow attributes: a JSON object of the user's own keys, written with the start or the
//! enqueue (in process or by a `Client`), filtered by containment in listings, replaced or
//! cleared later, never inherited by children; an update inside a workflow is recorded.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dbos_core::manage::ListWorkflows;
use dbos_core::{step, workflow, Client, Dbos, Error, ErrorKind, Queue};
use dbos_testkit::crash::run_then_kill;
use dbos_testkit::TestDatabase;
use serde_json::{json, Value};

static TAGGED: Queue = Queue::new("tagged").polling_interval(Duration::from_millis(50));

#[workflow]
async fn tagged_child() -> Result<u32, Error> {
    Ok(1)
}

#[workflow]
async fn tagged(n: u32) -> Result<u32, Error> {
    Ok(n + tagged_child().id(format!("kid-of-{n}")).await?)
}

#[dbos_testkit::test]
async fn attributes_are_written_by_every_way_in_and_filter_listings(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").queue(&TAGGED))
        .await
        .unwrap();
    let acme_eu = json!({"customer": "acme", "region": "eu"});
    tagged(1)
        .id("started")
        .attributes(acme_eu.clone())
        .on(&dbos)
        .await
        .unwrap();
    tagged(2)
        .id("enqueued")
        .on(&dbos)
        .enqueue(&TAGGED)
        .attributes(json!({"customer": "acme"}))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    let client = Client::connect(db.url()).await.unwrap();
    client
        .enqueue("tagged", "tagged")
        .id("by-client")
        .arg(&3)
        .attributes(json!({"customer": "other"}))
        .await
        .unwrap();
    let typed = client
        .enqueue_workflow(tagged(4).id("by-client-typed"), &TAGGED)
        .attributes(json!({"customer": "typed"}))
        .await
        .unwrap();
    assert_eq!(typed.result().await.unwrap(), 5);

    assert_eq!(db.attributes_of("started").await, Some(acme_eu));
    assert_eq!(
        db.attributes_of("enqueued").await,
        Some(json!({"customer": "acme"}))
    );
    assert_eq!(
        db.attributes_of("by-client").await,
        Some(json!({"customer": "other"}))
    );
    assert_eq!(
        db.attributes_of("by-client-typed").await,
        Some(json!({"customer": "typed"}))
    );
    assert_eq!(
        db.attributes_of("kid-of-1").await,
        None,
        "children do not inherit attributes"
    );

    let mut acme: Vec<String> = dbos
        .list_workflows(&ListWorkflows::new().attributes(json!({"customer": "acme"})))
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.workflow_id)
        .collect();
    acme.sort();
    assert_eq!(acme, vec!["enqueued", "started"]);
    let eu = dbos
        .list_workflows(&ListWorkflows::new().attributes(json!({"region": "eu"})))
        .await
        .unwrap();
    assert_eq!(eu.len(), 1);
    assert_eq!(
        eu[0].attributes,
        Some(json!({"customer": "acme", "region": "eu"}))
    );
    client.close();
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn attributes_that_are_not_an_object_are_refused_before_anything_is_written(
    db: TestDatabase,
) {
    let dbos = Dbos::launch(db.config("testapp").queue(&TAGGED))
        .await
        .unwrap();
    let client = Client::connect(db.url()).await.unwrap();
    let refusals = [
        tagged(1)
            .id("bad-start")
            .attributes(json!(["acme"]))
            .on(&dbos)
            .start()
            .await
            .map(drop),
        tagged(1)
            .id("bad-enqueue")
            .on(&dbos)
            .enqueue(&TAGGED)
            .attributes(json!("acme"))
            .await
            .map(drop),
        client
            .enqueue("tagged", "tagged")
            .id("bad-client")
            .arg(&1)
            .attributes(json!(7))
            .await
            .map(drop),
    ];
    for r in refusals {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains("must be a JSON object"), "{e}");
    }
    let rows: i64 = db
        .connect()
        .await
        .query_one("SELECT count(*) FROM dbos.workflow_status", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "nothing was written");
    client.close();
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn updates_replace_or_clear_attributes_and_an_unknown_id_is_non_existent(db: TestDatabase) {
    let dbos = db.launch().await;
    tagged(1)
        .id("upd")
        .attributes(json!({"a": 1, "b": 2}))
        .on(&dbos)
        .await
        .unwrap();
    dbos.update_workflow_attributes("upd", Some(json!({"c": 3})))
        .await
        .unwrap();
    assert_eq!(db.attributes_of("upd").await, Some(json!({"c": 3})));
    let client = Client::connect(db.url()).await.unwrap();
    client
        .update_workflow_attributes("upd", Some(json!({"d": 4})))
        .await
        .unwrap();
    assert_eq!(db.attributes_of("upd").await, Some(json!({"d": 4})));
    dbos.merge_workflow_attributes("upd", json!({"e": 5, "d": null}))
        .await
        .unwrap();
    assert_eq!(
        db.attributes_of("upd").await,
        Some(json!({"d": null, "e": 5}))
    );
    client
        .merge_workflow_attributes("upd", json!({"f": 6}))
        .await
        .unwrap();
    assert_eq!(
        db.attributes_of("upd").await,
        Some(json!({"d": null, "e": 5, "f": 6}))
    );
    dbos.update_workflow_attributes("upd", None).await.unwrap();
    assert_eq!(db.attributes_of("upd").await, None);
    client
        .merge_workflow_attributes("upd", json!({"g": 7}))
        .await
        .unwrap();
    assert_eq!(
        db.attributes_of("upd").await,
        Some(json!({"g": 7})),
        "a merge into no attributes starts from an empty object"
    );

    let e = dbos
        .update_workflow_attributes("nobody", Some(json!({"x": 1})))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonExistentWorkflow, "{e}");
    let e = client
        .update_workflow_attributes("upd", Some(json!([1])))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(
        db.attributes_of("upd").await,
        Some(json!({"g": 7})),
        "left as it was"
    );
    client.close();
    dbos.shutdown().await.unwrap();
}

static HANGS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn hang_the_first_time() -> Result<(), Error> {
    if HANGS.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[workflow]
async fn marks_itself_paid() -> Result<(), Error> {
    let id = dbos_core::workflow_id().unwrap_or_default();
    Dbos::current()?
        .update_workflow_attributes(&id, Some(json!({"stage": "paid"})))
        .await?;
    hang_the_first_time().await
}

#[dbos_testkit::test]
async fn an_update_inside_a_workflow_is_recorded_and_not_repeated_after_a_crash(db: TestDatabase) {
    let config = db.config("testapp").executor_id("attr-exec");
    run_then_kill(
        config.clone(),
        |dbos| async move {
            marks_itself_paid()
                .id("payer")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        },
        "the workflow to reach its hanging step",
        || HANGS.load(Ordering::SeqCst) == 1,
    )
    .await;
    assert_eq!(
        db.attributes_of("payer").await,
        Some(json!({"stage": "paid"}))
    );
    // An operator changes them while the process is down; the recovered workflow must not
    // write its recorded update again.
    db.connect()
        .await
        .execute(
            "UPDATE dbos.workflow_status SET attributes = '{\"stage\": \"manual\"}' WHERE workflow_uuid = 'payer'",
            &[],
        )
        .await
        .unwrap();

    let dbos = Dbos::launch(config).await.unwrap();
    dbos.retrieve_workflow::<(), Error>("payer")
        .result()
        .await
        .unwrap();
    assert_eq!(HANGS.load(Ordering::SeqCst), 2);
    assert_eq!(
        db.attributes_of("payer").await,
        Some(json!({"stage": "manual"})),
        "the update was replayed from its record, not repeated"
    );
    let ops = db.steps_of("payer").await;
    assert_eq!(
        (ops[0].function_id, ops[0].function_name.as_str()),
        (1, "DBOS.updateWorkflowAttributes")
    );
    dbos.shutdown().await.unwrap();
}

const PY_ATTRIBUTES: &str = r#"
import sys, json
from dbos import DBOSClient
url = sys.argv[1]
c = DBOSClient(system_database_url=url)
found = c.list_workflows(attributes={"customer": "acme"})
print(json.dumps(sorted([[w.workflow_id, w.attributes] for w in found])))
c.update_workflow_attributes("ours", {"touched_by": "python"}, merge=True)
c.destroy()
"#;

/// DBOS Python's client filters our workflows by the attributes we wrote, and its merge is
/// what our listing then reads.
#[dbos_testkit::test]
async fn dbos_python_filters_and_updates_our_attributes(db: TestDatabase) {
    let dbos = db.launch().await;
    tagged(1)
        .id("ours")
        .attributes(json!({"customer": "acme"}))
        .on(&dbos)
        .await
        .unwrap();
    tagged(2)
        .id("not-ours")
        .attributes(json!({"customer": "else"}))
        .on(&dbos)
        .await
        .unwrap();
    let out = dbos_testkit::python::run_python(PY_ATTRIBUTES, &[&db.url()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(found, json!([["ours", {"customer": "acme"}]]));
    let ours = dbos.get_workflow("ours").await.unwrap();
    assert_eq!(
        ours.attributes,
        Some(json!({"customer": "acme", "touched_by": "python"}))
    );
    dbos.shutdown().await.unwrap();
}
