//! The order example, run as a newcomer would: paid (the webhook delivered twice counts
//! once), run again (the recorded order is shown, nothing runs twice), and not paid in time.

use std::time::Duration;

use dbos_testkit::TestDatabase;

async fn run(db: &TestDatabase, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_order"))
            .args(args)
            .env("DBOS_SYSTEM_DATABASE_URL", db.url())
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the order example hung")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "order failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn log_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  log | "))
        .collect()
}

#[dbos_testkit::test]
async fn a_paid_order_ships_and_a_second_run_shows_the_recorded_one(db: TestDatabase) {
    let first = run(&db, &["order-9"]).await;
    assert!(first.contains("status: awaiting payment"), "{first}");
    assert!(first.contains("outcome: shipped"), "{first}");
    assert!(
        first.contains("event tracking = \"TRACK-ORDER-9\""),
        "{first}"
    );
    let log = log_lines(&first);
    assert_eq!(log.len(), 3, "{first}");
    assert!(log[0].starts_with("order order-9 received"), "{first}");
    assert_eq!(log[1], "paid: pay_order-9");
    assert_eq!(log[2], "shipped: TRACK-ORDER-9");

    let again = run(&db, &["order-9"]).await;
    assert!(again.contains("outcome: shipped"), "{again}");
    assert_eq!(log_lines(&again), log, "the recorded log, replayed");
    let client = db.connect().await;
    let (messages, shipped): (i64, i64) = client
        .query_one(
            "SELECT (SELECT count(*) FROM dbos.notifications WHERE destination_uuid = 'order-9'),
                    (SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'order-9' AND function_name = 'ship')",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        (messages, shipped),
        (1, 1),
        "the webhook counted once; shipped once"
    );
}

#[dbos_testkit::test]
async fn an_unpaid_order_is_cancelled_at_its_timeout(db: TestDatabase) {
    let out = run(&db, &["order-10", "--no-payment"]).await;
    assert!(out.contains("outcome: cancelled"), "{out}");
    assert!(
        out.contains("event status = \"cancelled: not paid in time\""),
        "{out}"
    );
    assert_eq!(
        log_lines(&out).last().copied(),
        Some("no payment within 5 s: cancelled")
    );
}
