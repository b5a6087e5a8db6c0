//! The pipeline example fans 12 documents out to its rate-limited queue and gathers them.

use dbos_testkit::TestDatabase;

#[dbos_testkit::test]
async fn the_pipeline_respects_its_rate_limit_and_gathers_every_summary(db: TestDatabase) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .env("DBOS_SYSTEM_DATABASE_URL", db.url())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pipeline failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("batch batch-1: 12 summaries"), "{stdout}");
    assert!(stdout.contains("doc-12: 11 words"), "{stdout}");
    assert!(
        stdout.contains("12 summary workflows carry the attribute batch=batch-1"),
        "{stdout}"
    );
    let client = db.connect().await;
    let starts: Vec<i64> = client
        .query("SELECT started_at_epoch_ms FROM dbos.workflow_status WHERE queue_name = 'llm' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(starts.len(), 12);
    for (i, &t) in starts.iter().enumerate() {
        assert!(
            starts[i..].iter().take_while(|&&u| u < t + 2000).count() <= 5,
            "{starts:?}"
        );
    }
    let children: i64 = client
        .query_one(
            "SELECT count(*) FROM dbos.workflow_status WHERE parent_workflow_id = 'digest-batch-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(children, 12);
}
