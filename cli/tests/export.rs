//! `dbos-rs workflow export` and `workflow import` between two live databases: every row
//! arrives equal, a taken id fails the import with nothing written (or is skipped), and a
//! bad file is a one-line error before connecting.

mod common;

use common::{fails, json_of, ok};
use dbos_testkit::TestDatabase;
use serde_json::{json, Value};

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

async fn rows(db: &tokio_postgres::Client, table: &str, order: &str) -> Vec<Value> {
    db.query(
        &format!(
            "SELECT to_jsonb(t) - 'owner_xid' - 'creator_xid' FROM dbos.{table} t ORDER BY {order}"
        ),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn all_rows(db: &tokio_postgres::Client) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for (table, order) in TABLES {
        out.push(rows(db, table, order).await);
    }
    out
}

#[dbos_testkit::test]
async fn export_and_import_move_workflows_between_databases(db: TestDatabase) {
    db.launch().await.shutdown().await.unwrap();
    let source = db.connect().await;
    source
        .batch_execute(
            r#"INSERT INTO dbos.workflow_status (workflow_uuid, status, name, created_at, updated_at, application_name, attributes)
               VALUES ('p-1', 'PENDING', 'parent', 1700000000000, 1700000000100, 'testapp', '{"customer": "acme"}'),
                      ('p-1-2', 'SUCCESS', 'child', 1700000000050, 1700000000060, 'testapp', NULL),
                      ('x-1', 'ERROR', 'other', 1700000000070, 1700000000080, 'testapp', NULL);
               UPDATE dbos.workflow_status SET parent_workflow_id = 'p-1' WHERE workflow_uuid = 'p-1-2';
               INSERT INTO dbos.workflow_input (workflow_uuid, inputs, retention_timestamp)
               VALUES ('p-1', '{"positionalArgs":[1],"namedArgs":{}}', 1700000000000),
                      ('p-1-2', '{"positionalArgs":[],"namedArgs":{}}', 1700000000050);
               INSERT INTO dbos.workflow_output (workflow_uuid, output, retention_timestamp)
               VALUES ('p-1-2', '"done"', 1700000000060);
               INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output, child_workflow_id,
                                                   started_at_epoch_ms, completed_at_epoch_ms, serialization, retention_timestamp)
               VALUES ('p-1', 1, 'reserve', 'true', NULL, 1700000000001, 1700000000002, 'portable_json', 1700000000002),
                      ('p-1', 2, 'child', NULL, 'p-1-2', 1700000000003, 1700000000004, 'portable_json', 1700000000004);
               INSERT INTO dbos.workflow_events (workflow_uuid, key, value, serialization)
               VALUES ('p-1', 'stage', '"packing"', 'portable_json');
               INSERT INTO dbos.workflow_events_history (workflow_uuid, function_id, key, value, serialization)
               VALUES ('p-1', 3, 'stage', '"packing"', 'portable_json');
               INSERT INTO dbos.streams (workflow_uuid, key, value, "offset", function_id, serialization)
               VALUES ('p-1', 'log', '"one"', 0, 4, 'portable_json');
               INSERT INTO dbos.notifications (message_uuid, destination_uuid, topic, message, created_at_epoch_ms, serialization)
               VALUES ('m-1', 'p-1', 'go', '"go!"', 1700000000009, 'portable_json');"#,
        )
        .await
        .unwrap();
    let src = db.url();
    let dst = db.sibling_url("target");
    let file = std::env::temp_dir().join(format!("{}-export.json", db.name()));
    let path = file.to_str().unwrap();

    let said = ok(&[
        "workflow",
        "export",
        "p-1",
        "--children",
        "-o",
        path,
        "-s",
        &src,
    ])
    .await;
    assert_eq!(said.trim(), format!("exported 2 workflows to {path}"));
    ok(&["migrate", "-s", &dst]).await;
    let said = ok(&["workflow", "import", path, "-s", &dst]).await;
    assert_eq!(said.trim(), "imported 2 workflows");

    let target = db.cluster().connect(&format!("{}_target", db.name())).await;
    let want: Vec<Vec<Value>> = {
        let mut want = Vec::new();
        for (table, order) in TABLES {
            let id = if *table == "notifications" {
                "destination_uuid"
            } else {
                "workflow_uuid"
            };
            let rows: Vec<Value> = rows(&source, table, order)
                .await
                .into_iter()
                .filter(|r| r[id] != json!("x-1"))
                .collect();
            assert!(!rows.is_empty(), "no {table} rows to compare");
            want.push(rows);
        }
        want
    };
    assert_eq!(all_rows(&target).await, want);

    // Again: both ids are taken, so nothing is written; --skip-existing skips them.
    let err = fails(&["workflow", "import", path, "-s", &dst]).await;
    assert!(
        err.contains("already has workflows `p-1`, `p-1-2`") && err.contains("--skip-existing"),
        "{err}"
    );
    let skipped = json_of(&["workflow", "import", path, "--skip-existing", "-s", &dst]).await;
    assert_eq!(
        skipped,
        json!({"imported": [], "skipped": ["p-1", "p-1-2"]})
    );
    assert_eq!(all_rows(&target).await, want);

    // Without ids: what the filters select, printed.
    let printed: Value =
        serde_json::from_str(&ok(&["workflow", "export", "-S", "ERROR", "-s", &src]).await)
            .unwrap();
    assert_eq!(printed["format_version"], json!(1));
    assert_eq!(printed["workflows"].as_array().unwrap().len(), 1);
    assert_eq!(
        printed["workflows"][0]["workflow_status"]["workflow_uuid"],
        json!("x-1")
    );

    // Bad input: one line naming the problem, before connecting, nothing written.
    let err = fails(&["workflow", "export", "p-1", "-S", "ERROR", "-s", &src]).await;
    assert!(err.contains("not both"), "{err}");
    let err = fails(&["workflow", "export", "nope", "-s", &src]).await;
    assert!(err.contains("`nope`"), "{err}");
    std::fs::write(
        &file,
        "{\"format\": \"dbos-workflow-export\", \"format_version\": 1, \"workflows\": []}",
    )
    .unwrap();
    let err = fails(&[
        "workflow",
        "import",
        path,
        "-s",
        "postgres://nobody@127.0.0.1:1/none",
    ])
    .await;
    assert!(err.contains("no `schema_version`"), "{err}");
    std::fs::write(&file, "not json").unwrap();
    let err = fails(&["workflow", "import", path, "-s", &dst]).await;
    assert!(err.contains("not valid JSON"), "{err}");
    let err = fails(&["workflow", "import", "/nonexistent/export.json", "-s", &dst]).await;
    assert!(
        err.contains("could not read /nonexistent/export.json"),
        "{err}"
    );
    assert_eq!(all_rows(&target).await, want);
    std::fs::remove_file(&file).unwrap();
}
