//! `dbos-rs workflow aggregate` and `workflow step-aggregate` against a live database:
//! counts as tables and as DBOS's JSON, and bad groupings refused before connecting.

mod common;

use common::{fails, json_of, ok};
use dbos_testkit::TestDatabase;
use serde_json::json;

#[dbos_testkit::test]
async fn aggregate_verbs_count_and_refuse_bad_groupings(db: TestDatabase) {
    db.launch().await.shutdown().await.unwrap();
    db.connect()
        .await
        .batch_execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, queue_name, created_at, application_name)
             VALUES ('a-1', 'SUCCESS', 'pay', NULL,  1700000040000, 'testapp'),
                    ('a-2', 'SUCCESS', 'pay', NULL,  1700000041000, 'testapp'),
                    ('a-3', 'ERROR',   'pay', NULL,  1700000100000, 'testapp'),
                    ('a-4', 'ENQUEUED','ship','q-1', 1700000100001, 'testapp');
             INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output, error,
                                                started_at_epoch_ms, completed_at_epoch_ms)
             VALUES ('a-1', 1, 'charge', '1', NULL, 1700000040000, 1700000040010),
                    ('a-2', 1, 'charge', '1', NULL, 1700000041000, 1700000041030),
                    ('a-3', 1, 'charge', NULL, '{\"message\":\"no\"}', 1700000100000, 1700000100020);",
        )
        .await
        .unwrap();
    let url = db.url();
    let s = url.as_str();

    let by_status = json_of(&["workflow", "aggregate", "-s", s, "-g", "status"]).await;
    assert_eq!(
        by_status,
        json!([
            {"group": {"status": "ENQUEUED"}, "count": 1},
            {"group": {"status": "ERROR"}, "count": 1},
            {"group": {"status": "SUCCESS"}, "count": 2},
        ])
    );
    // With a listing filter and a one-minute bucket.
    let buckets = json_of(&[
        "workflow",
        "aggregate",
        "-s",
        s,
        "-g",
        "name",
        "-b",
        "1m",
        "-n",
        "pay",
    ])
    .await;
    assert_eq!(
        buckets,
        json!([
            {"group": {"name": "pay", "time_bucket": 1_700_000_040_000_i64}, "count": 2},
            {"group": {"name": "pay", "time_bucket": 1_700_000_100_000_i64}, "count": 1},
        ])
    );
    let table = ok(&["workflow", "aggregate", "-s", s, "-g", "status,queue_name"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["status", "queue_name", "count"]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["ENQUEUED", "q-1", "1"]),
        "{table}"
    );

    let steps = json_of(&["workflow", "step-aggregate", "-s", s]).await;
    assert_eq!(
        steps,
        json!([{"group": {"function_name": "charge"}, "count": 3, "errors": 1,
                "min_duration_ms": 10, "avg_duration_ms": 20.0, "max_duration_ms": 30}])
    );
    let table = ok(&["workflow", "step-aggregate", "-s", s, "-g", "status"]).await;
    assert!(
        table.lines().next().unwrap().starts_with("status"),
        "{table}"
    );
    assert!(table.contains("ERROR"), "{table}");

    // Refused before connecting: the URL points nowhere and the error is about the input.
    for (args, words) in [
        (
            vec!["workflow", "aggregate", "-g", "state"],
            "unknown workflow grouping `state`",
        ),
        (
            vec!["workflow", "aggregate", "-g", "name", "-b", "0s"],
            "at least 1 ms",
        ),
        (vec!["workflow", "aggregate"], "group by"),
        (
            vec!["workflow", "step-aggregate", "-g", "name"],
            "unknown step grouping",
        ),
    ] {
        let mut all = args.clone();
        all.extend(["-s", "postgres://nobody@127.0.0.1:1/nothing"]);
        let line = fails(&all).await;
        assert!(line.contains(words), "{args:?}: {line}");
    }
}
