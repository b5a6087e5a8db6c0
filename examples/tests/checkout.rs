//! The checkout example, run as a newcomer would: interrupted with Ctrl-C (SIGINT) midway,
//! run again to resume, and run a third time to see the recorded receipt. Its reservation and
//! payment record are transactions in the shop's own database (a data source). The interrupt
//! lands right after the card was charged and before that step's checkpoint (a test-only pause
//! in the example), so the rerun charges again and the idempotency key must make it one
//! payment.

use std::process::Stdio;
use std::time::Duration;

use dbos_testkit::TestDatabase;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn checkout(db: &TestDatabase) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_checkout"));
    cmd.env("DBOS_SYSTEM_DATABASE_URL", db.url())
        .env("SHOP_DATABASE_URL", db.sibling_url("shop"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    dbos_testkit::crash::interruptible(&mut cmd);
    cmd
}

async fn shop(db: &TestDatabase) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&db.sibling_url("shop"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// (requests the payment provider received, the payment id it gave) for the order.
async fn provider(db: &TestDatabase) -> (i64, Option<String>) {
    let row = shop(db)
        .await
        .query_one(
            "SELECT COALESCE(sum(requests), 0)::bigint, max(payment_id) FROM shop.provider_charges \
             WHERE idempotency_key = 'order-1001'",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The names of the operations recorded for the order, in order.
async fn recorded_steps(db: &TestDatabase) -> Vec<String> {
    db.connect()
        .await
        .query(
            "SELECT function_name FROM dbos.operation_outputs WHERE workflow_uuid = 'order-1001' ORDER BY function_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn run_to_end(db: &TestDatabase) -> String {
    let out = tokio::time::timeout(Duration::from_secs(60), checkout(db).output())
        .await
        .expect("checkout hung")
        .unwrap();
    assert!(out.status.success(), "checkout failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[dbos_testkit::test]
async fn interrupted_checkout_resumes_and_charges_once(db: TestDatabase) {
    // First run: interrupt it (as Ctrl-C does) after the card was charged and before the
    // charge was checkpointed, the one moment a rerun could charge twice.
    let mut child = checkout(&db)
        .env("CHECKOUT_PAUSE_AFTER_CHARGE", "1")
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("no output")
            .unwrap();
        let line = line.expect("checkout exited before pausing after the charge");
        seen.push(line.clone());
        if line.contains("paused after the charge") {
            break;
        }
    }
    let first_payment = seen
        .iter()
        .find_map(|l| l.trim().strip_prefix("charged: "))
        .expect("the first run charged")
        .to_owned();
    assert_eq!(
        provider(&db).await,
        (1, Some(first_payment.clone())),
        "the charge happened"
    );
    assert_eq!(
        recorded_steps(&db).await,
        vec!["reserve_inventory"],
        "and was not checkpointed yet"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) };
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "Ctrl-C stops the process");
    assert!(seen.iter().any(|l| l.contains("[1/4]")), "{seen:?}");

    // Second run: resumes; the reservation is not repeated, the charge runs again (its
    // checkpoint was lost) and the idempotency key makes it the same payment.
    let second = run_to_end(&db).await;
    assert!(second.contains("was interrupted"), "{second}");
    assert!(
        !second.contains("[1/4]"),
        "the completed reservation ran again:\n{second}"
    );
    assert!(
        second.contains("[2/4]")
            && second.contains("[3/4]")
            && second.contains("[4/4]")
            && second.contains("done:"),
        "{second}"
    );
    assert_eq!(
        provider(&db).await,
        (2, Some(first_payment.clone())),
        "the provider got the charge twice and charged once"
    );
    assert!(
        second.contains(&format!("\"payment_id\":\"{first_payment}\"")),
        "the receipt names the first run's payment:\n{second}"
    );

    // Third run: nothing runs; the recorded receipt is printed.
    let third = run_to_end(&db).await;
    assert!(
        third.contains("already completed") && third.contains("done:"),
        "{third}"
    );
    assert!(!third.contains("[2/4]"), "{third}");

    let client = shop(&db).await;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM shop.reservations), (SELECT count(*) FROM shop.payments),
                    (SELECT count(*) FROM shop.emails), (SELECT 100 - stock FROM shop.inventory WHERE sku = 'rust-mug')::bigint",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<i64> = (0..4).map(|i| row.get(i)).collect();
    assert_eq!(
        got,
        vec![1, 1, 1, 1],
        "one reservation, one payment, one email, one unit of stock"
    );

    // DBOS's own CLI shows the example's steps, decoded.
    let out =
        dbos_testkit::python::dbos_cli(&["workflow", "steps", "order-1001", "-s", &db.url()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "the CLI warned: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["function_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "reserve_inventory",
            "charge_card",
            "record_payment",
            "email_receipt"
        ]
    );
    assert_eq!(steps[0]["output"], 99, "{steps}");
    assert!(
        steps[1]["output"].as_str().unwrap().starts_with("pay_"),
        "{steps}"
    );
    // The two transactions left their completion rows in the shop's database.
    let completions: i64 = client
        .query_one(
            "SELECT count(*) FROM dbos.datasource_outputs WHERE workflow_id = 'order-1001'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(completions, 2);
}

/// The shop's database outlives the system database (a reset, a new system database name):
/// the example runs again without tripping over the rows of the first run, and reserves and
/// records the order once.
#[dbos_testkit::test]
async fn a_rerun_against_a_new_system_database_does_not_reserve_twice(db: TestDatabase) {
    run_to_end(&db).await;
    let fresh_system = db.sibling_url("system2");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        checkout(&db)
            .env("DBOS_SYSTEM_DATABASE_URL", &fresh_system)
            .stderr(Stdio::piped())
            .output(),
    )
    .await
    .expect("checkout hung")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the rerun failed: {stderr}{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let row = shop(&db)
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM shop.reservations WHERE order_id = 'order-1001'),
                    (SELECT count(*) FROM shop.payments WHERE order_id = 'order-1001'),
                    (SELECT 100 - stock FROM shop.inventory WHERE sku = 'rust-mug')::bigint",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<i64> = (0..3).map(|i| row.get(i)).collect();
    assert_eq!(got, vec![1, 1, 1], "one reservation, one payment, one unit");
}
