//! The SQL of the "Running in production" chapter runs against a real system database and
//! does what the chapter says.

use dbos_core::{step, workflow, Error};
use dbos_testkit::TestDatabase;

#[step]
async fn double(n: u32) -> Result<u32, Error> {
    Ok(n * 2)
}

#[workflow]
async fn doubled_twice(n: u32) -> Result<u32, Error> {
    let once = double(n).await?;
    double(once).await
}

/// The ```sql blocks of the chapter.
fn sql_blocks() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src/production.md");
    let chapter = std::fs::read_to_string(path).unwrap();
    chapter
        .split("```sql\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap().to_owned())
        .collect()
}

#[dbos_testkit::test]
async fn the_production_chapter_s_queries_run_and_its_retention_deletes_only_old_work(
    db: TestDatabase,
) {
    let dbos = db.launch().await;
    for (id, n) in [("old", 1), ("recent", 2)] {
        assert_eq!(doubled_twice(n).id(id).on(&dbos).await.unwrap(), n * 4);
    }
    let client = db.connect().await;
    // "old" finished 40 days ago.
    client
        .execute(
            "UPDATE dbos.workflow_status SET completed_at = completed_at - 40 * 86400 * 1000::bigint \
             WHERE workflow_uuid = 'old'",
            &[],
        )
        .await
        .unwrap();

    let blocks = sql_blocks();
    let (retention, monitoring): (Vec<_>, Vec<_>) =
        blocks.iter().partition(|b| b.contains("DELETE"));
    assert_eq!(retention.len(), 1, "one retention query");
    assert!(!monitoring.is_empty(), "monitoring queries");
    for block in monitoring {
        client
            .simple_query(block)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{block}"));
    }
    client.simple_query(retention[0]).await.unwrap();

    let left = |table: &'static str| {
        let client = &client;
        async move {
            client
                .query(
                    &format!("SELECT DISTINCT workflow_uuid FROM dbos.{table} ORDER BY 1"),
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    for table in [
        "workflow_status",
        "workflow_input",
        "workflow_output",
        "operation_outputs",
    ] {
        assert_eq!(left(table).await, ["recent"], "{table}");
    }
    dbos.shutdown().await.unwrap();
}
