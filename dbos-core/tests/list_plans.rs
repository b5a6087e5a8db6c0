//! Listing and aggregates stay on an index: listing 100 of 100,000 workflows with each of
//! DBOS's common filters, and counting the workflows or steps of a window, read a bounded
//! number of rows through an index, never the whole table.
//! (Counted from `EXPLAIN (ANALYZE, BUFFERS)` of the exact statement the library runs, not
//! timed; the times are printed for the record.)

use std::time::{Duration, Instant, SystemTime};

use dbos_core::manage::{
    explain_list_workflows, explain_step_aggregates, explain_workflow_aggregates, GroupBy,
    ListWorkflows, StepAggregates, StepGroupBy, WorkflowAggregates,
};
use dbos_core::{Client, Status};
use dbos_testkit::TestDatabase;
use serde_json::{json, Value};

const WORKFLOWS: i64 = 100_000;

/// What a plan did to a table: the scan node types, and the rows it read
/// (returned plus removed by filters and rechecks).
#[derive(Debug, Default)]
struct Reads {
    scans: Vec<String>,
    rows: f64,
}

fn walk(node: &Value, reads: &mut Reads) {
    walk_table(node, "workflow_status", reads);
}

fn walk_table(node: &Value, table: &str, reads: &mut Reads) {
    if node["Relation Name"] == table {
        let loops = node["Actual Loops"].as_f64().unwrap_or(1.0);
        let returned = node["Actual Rows"].as_f64().unwrap_or(0.0) * loops;
        let removed = node["Rows Removed by Filter"].as_f64().unwrap_or(0.0)
            + node["Rows Removed by Index Recheck"]
                .as_f64()
                .unwrap_or(0.0);
        reads.rows += returned + removed;
        let index = node["Index Name"].as_str().unwrap_or("");
        reads.scans.push(
            format!("{} {index}", node["Node Type"].as_str().unwrap_or("?"))
                .trim()
                .to_owned(),
        );
    }
    if node["Node Type"] == "Bitmap Index Scan"
        && node["Index Name"]
            .as_str()
            .is_some_and(|i| i.starts_with(&format!("idx_{table}")) || i.starts_with(table))
    {
        reads.scans.push(format!(
            "Bitmap Index Scan {}",
            node["Index Name"].as_str().unwrap_or("")
        ));
    }
    if let Some(children) = node["Plans"].as_array() {
        for c in children {
            walk_table(c, table, reads);
        }
    }
}

/// Writes the 100,000 workflows the plan tests read; returns the "now" they end at.
async fn seed(db: &TestDatabase) -> SystemTime {
    db.launch().await.shutdown().await.unwrap();
    let sql = db.connect().await;
    let now = dbos_core::codec::parse_rfc3339(&dbos_core::codec::format_rfc3339(SystemTime::now()))
        .unwrap();
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // 100,000 workflows over about 30 days: mostly SUCCESS, 2 % ERROR, some CANCELLED, a
    // few active on five queues, 5 % children, a few forks, 1 % with attributes.
    sql.execute(
        "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, executor_id, application_version, application_name,
                                           created_at, updated_at, completed_at, queue_name, parent_workflow_id,
                                           forked_from, serialization, recovery_attempts, attributes)
         SELECT 'wf-' || lpad(g::text, 6, '0'),
                CASE WHEN g % 50 = 0 THEN 'ERROR' WHEN g % 97 = 0 THEN 'ENQUEUED' WHEN g % 89 = 0 THEN 'PENDING'
                     WHEN g % 83 = 0 THEN 'CANCELLED' ELSE 'SUCCESS' END,
                'workflow_' || (g % 10), 'exec-' || (g % 4), 'v1', 'testapp',
                $1::bigint - ($2::bigint - g) * 26000, $1::bigint - ($2::bigint - g) * 26000 + 5,
                CASE WHEN g % 97 = 0 OR g % 89 = 0 THEN NULL ELSE $1::bigint - ($2::bigint - g) * 26000 + 5 END,
                CASE WHEN g % 97 = 0 OR g % 89 = 0 THEN 'q-' || (g % 5) END,
                CASE WHEN g % 20 = 1 AND g > 1 THEN 'wf-' || lpad((g - 1)::text, 6, '0') END,
                CASE WHEN g % 1000 = 7 THEN 'wf-000001' END,
                'portable_json', 1,
                CASE WHEN g % 100 = 0 THEN jsonb_build_object('tenant', 't' || (g % 7)) END
           FROM generate_series(1, $2::bigint) AS g",
        &[&now_ms, &WORKFLOWS],
    )
    .await
    .unwrap();
    sql.batch_execute(
        "INSERT INTO dbos.workflow_input (workflow_uuid, inputs)
         SELECT workflow_uuid, '{\"positionalArgs\":[1],\"namedArgs\":{}}' FROM dbos.workflow_status;
         INSERT INTO dbos.workflow_output (workflow_uuid, output)
         SELECT workflow_uuid, '42' FROM dbos.workflow_status WHERE status = 'SUCCESS';
         ANALYZE dbos.workflow_status; ANALYZE dbos.workflow_input; ANALYZE dbos.workflow_output;",
    )
    .await
    .unwrap();
    now
}

#[dbos_testkit::test]
async fn listing_100_of_100k_workflows_uses_an_index(db: TestDatabase) {
    let now = seed(&db).await;
    let client = Client::connect(db.url()).await.unwrap();
    let day = Duration::from_secs(24 * 3600);
    let queries: Vec<(&str, ListWorkflows)> = vec![
        ("newest 100", ListWorkflows::new().newest_first()),
        (
            "errors of the last week",
            ListWorkflows::new()
                .status(Status::Error)
                .created_after(now - 7 * day)
                .newest_first(),
        ),
        (
            "enqueued on one queue",
            ListWorkflows::new().queue("q-3").status(Status::Enqueued),
        ),
        ("queued on one queue", ListWorkflows::queued().queue("q-3")),
        (
            "children of one workflow",
            ListWorkflows::new().parent("wf-050000"),
        ),
        (
            "one name in one day",
            ListWorkflows::new()
                .name("workflow_3")
                .created_after(now - 3 * day)
                .created_before(now - 2 * day),
        ),
        ("id prefix", ListWorkflows::new().id_prefix("wf-0421")),
        (
            "attributes",
            ListWorkflows::new().attributes(json!({"tenant": "t3"})),
        ),
        (
            "forks of one workflow",
            ListWorkflows::new().forked_from("wf-000001"),
        ),
        (
            "pending, oldest first",
            ListWorkflows::new().status(Status::Pending),
        ),
        (
            "completed in one hour",
            ListWorkflows::new()
                .completed_after(now - 49 * Duration::from_secs(3600))
                .completed_before(now - 48 * Duration::from_secs(3600)),
        ),
    ];
    let mut failures = Vec::new();
    for (what, q) in queries {
        let q = q.limit(100);
        let explained = explain_list_workflows(client.system_database(), &q, Some("testapp"))
            .await
            .unwrap();
        let plan = &explained[0]["Plan"];
        let mut reads = Reads::default();
        walk(plan, &mut reads);
        let exec_ms = explained[0]["Execution Time"].as_f64().unwrap_or(-1.0);
        // The library's own call, end to end (statement, transfer, decoding): best of five.
        let mut best = Duration::MAX;
        let mut listed = 0;
        for _ in 0..5 {
            let t = Instant::now();
            listed = client
                .list_workflows(&q.clone().application_name("testapp"))
                .await
                .unwrap()
                .len();
            best = best.min(t.elapsed());
        }
        eprintln!(
            "{what:<28} listed {listed:>3}  read {:>6} rows  plan {exec_ms:>7.2} ms  call {:>7.2} ms  via {:?}",
            reads.rows,
            best.as_secs_f64() * 1000.0,
            reads.scans
        );
        if reads.scans.iter().any(|s| s.starts_with("Seq Scan")) || reads.scans.is_empty() {
            failures.push(format!("{what}: scans the table ({:?})", reads.scans));
        }
        // 100 rows listed; a few thousand read at most, where a full scan reads 100,000.
        if reads.rows > 5_000.0 {
            failures.push(format!(
                "{what}: read {} rows of workflow_status ({:?})",
                reads.rows, reads.scans
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Counting the workflows of a window, grouped, reads that window through an index (about
/// 3,300 rows a day here), never the 100,000 rows; and the steps of an hour, grouped by
/// function, read that hour through DBOS's completion-time index.
#[dbos_testkit::test]
async fn aggregates_over_100k_workflows_use_an_index(db: TestDatabase) {
    let now = seed(&db).await;
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let sql = db.connect().await;
    // One step per workflow, completed when its workflow did, 0 to 99 ms long.
    sql.execute(
        "INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output,
                                             started_at_epoch_ms, completed_at_epoch_ms, application_name)
         SELECT 'wf-' || lpad(g::text, 6, '0'), 1, 'step_' || (g % 5), '1',
                $1::bigint - ($2::bigint - g) * 26000 + 5 - (g % 100), $1::bigint - ($2::bigint - g) * 26000 + 5,
                'testapp'
           FROM generate_series(1, $2::bigint) AS g",
        &[&now_ms, &WORKFLOWS],
    )
    .await
    .unwrap();
    sql.batch_execute("ANALYZE dbos.operation_outputs;")
        .await
        .unwrap();

    let client = Client::connect(db.url()).await.unwrap();
    let hour = Duration::from_secs(3600);
    let day = 24 * hour;
    let workflows: Vec<(&str, WorkflowAggregates)> = vec![
        (
            "by status, last day",
            WorkflowAggregates::new(ListWorkflows::new().created_after(now - day))
                .group_by(GroupBy::Status),
        ),
        (
            "errors by name, last week",
            WorkflowAggregates::new(
                ListWorkflows::new()
                    .status(Status::Error)
                    .created_after(now - 7 * day),
            )
            .group_by(GroupBy::Name),
        ),
        (
            "queued by queue and status",
            WorkflowAggregates::new(ListWorkflows::queued())
                .group_by(GroupBy::QueueName)
                .group_by(GroupBy::Status),
        ),
        (
            "one name per hour, one day",
            WorkflowAggregates::new(
                ListWorkflows::new()
                    .name("workflow_3")
                    .created_after(now - 3 * day)
                    .created_before(now - 2 * day),
            )
            .time_bucket(hour),
        ),
        (
            "completed in an hour by executor, 5-minute buckets",
            WorkflowAggregates::new(
                ListWorkflows::new()
                    .completed_after(now - 49 * hour)
                    .completed_before(now - 48 * hour),
            )
            .group_by(GroupBy::ExecutorId)
            .time_bucket(Duration::from_secs(300)),
        ),
    ];
    let mut failures = Vec::new();
    let mut check = |what: &str, table: &str, explained: Value| {
        let mut reads = Reads::default();
        walk_table(&explained[0]["Plan"], table, &mut reads);
        eprintln!(
            "{what:<52} read {:>6} rows  plan {:>7.2} ms  via {:?}",
            reads.rows,
            explained[0]["Execution Time"].as_f64().unwrap_or(-1.0),
            reads.scans
        );
        if reads.scans.iter().any(|s| s.starts_with("Seq Scan")) || reads.scans.is_empty() {
            failures.push(format!("{what}: scans the table ({:?})", reads.scans));
        }
        // At most a day of rows (about 3,300); a full scan reads 100,000.
        if reads.rows > 5_000.0 {
            failures.push(format!("{what}: read {} rows of {table}", reads.rows));
        }
    };
    for (what, q) in workflows {
        let explained = explain_workflow_aggregates(client.system_database(), &q, Some("testapp"))
            .await
            .unwrap();
        check(what, "workflow_status", explained);
        assert!(
            !client.workflow_aggregates(&q).await.unwrap().is_empty(),
            "{what}"
        );
    }
    let steps: Vec<(&str, StepAggregates)> = vec![
        (
            "steps by function, last hour",
            StepAggregates::new()
                .group_by(StepGroupBy::FunctionName)
                .completed_after(now - hour),
        ),
        (
            "one function by outcome per 10 minutes, one day",
            StepAggregates::new()
                .group_by(StepGroupBy::Status)
                .function_name("step_2")
                .completed_after(now - 2 * day)
                .completed_before(now - day)
                .time_bucket(Duration::from_secs(600)),
        ),
    ];
    for (what, q) in steps {
        let explained = explain_step_aggregates(client.system_database(), &q, Some("testapp"))
            .await
            .unwrap();
        check(what, "operation_outputs", explained);
        assert!(
            !client.step_aggregates(&q).await.unwrap().is_empty(),
            "{what}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
