//! An order that talks to the outside world: it publishes its progress as events, waits
//! for a payment confirmation message (with a timeout), and streams a log as it goes.
//!
//! ```sh
//! cargo run -p examples --bin order                          # order-2001: paid and shipped
//! cargo run -p examples --bin order -- order-7 --no-payment  # nobody pays: cancelled after 5 s
//! ```
//!
//! `main` plays the outside world: a dashboard that follows the order's status (`get_event`)
//! and tails its log live (`read_stream`), and a payment provider whose webhook delivers the
//! confirmation (`send`, twice, as webhooks do: the idempotency key makes it count once).
//! Run the same command again: the order id is the workflow id, so the recorded order is
//! shown (its log replayed from the start) and nothing runs twice.

use std::time::Duration;

use dbos_core::prelude::*;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// What the payment provider's webhook says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payment {
    payment_id: String,
    cents: i64,
}

/// Appends a line to the order's log stream.
async fn log(line: impl Into<String>) -> Result<(), Error> {
    dbos_core::write_stream("log", &line.into()).await
}

/// Hands the parcel to the carrier; returns the tracking number.
#[step]
async fn ship(order_id: String) -> Result<String, Error> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(format!("TRACK-{}", order_id.to_uppercase()))
}

#[workflow]
async fn order(order_id: String, cents: i64, pay_within_secs: u64) -> Result<String, Error> {
    log(format!(
        "order {order_id} received: {:.2} to pay",
        cents as f64 / 100.0
    ))
    .await?;
    dbos_core::set_event("status", &"awaiting payment").await?;
    let payment =
        dbos_core::recv::<Payment>("payment", Duration::from_secs(pay_within_secs)).await?;
    let outcome = match payment {
        Some(p) if p.cents == cents => {
            dbos_core::set_event("status", &"paid").await?;
            log(format!("paid: {}", p.payment_id)).await?;
            let tracking = ship(order_id.clone()).await?;
            dbos_core::set_event("tracking", &tracking).await?;
            dbos_core::set_event("status", &"shipped").await?;
            log(format!("shipped: {tracking}")).await?;
            "shipped"
        }
        Some(p) => {
            dbos_core::set_event("status", &"refused: wrong amount").await?;
            log(format!(
                "refused {}: {} paid, {cents} due",
                p.payment_id, p.cents
            ))
            .await?;
            "refused"
        }
        None => {
            dbos_core::set_event("status", &"cancelled: not paid in time").await?;
            log(format!("no payment within {pay_within_secs} s: cancelled")).await?;
            "cancelled"
        }
    };
    dbos_core::close_stream("log").await?;
    Ok(outcome.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let _telemetry = examples::init_logs();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let order_id = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "order-2001".to_owned());
    let pays = !args.iter().any(|a| a == "--no-payment");
    let dbos = Dbos::launch(Config::from_env("order")?).await?;
    println!("system database: {}", dbos.system_database().redacted_url());

    let handle = order(order_id.clone(), 4200, 5)
        .id(order_id.clone())
        .start()
        .await?;

    // The dashboard tails the log live, from the first line.
    let mut lines = dbos.read_stream::<String>(&order_id, "log");
    let tail = tokio::spawn(async move {
        while let Some(line) = lines.next().await {
            match line {
                Ok(line) => println!("  log | {line}"),
                Err(e) => println!("  log | unreadable: {e}"),
            }
        }
    });

    // ...and follows the status.
    let status: Option<String> = dbos
        .get_event(&order_id, "status", Duration::from_secs(10))
        .await?;
    println!(
        "status: {}",
        status.as_deref().unwrap_or("(not published yet)")
    );

    if pays && status.as_deref() == Some("awaiting payment") {
        // The payment provider's webhook, delivered twice: it counts once.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let payment = Payment {
            payment_id: format!("pay_{order_id}"),
            cents: 4200,
        };
        println!(
            "webhook: payment {} (delivered twice, as webhooks are)",
            payment.payment_id
        );
        for _ in 0..2 {
            dbos.send(order_id.as_str(), &payment, "payment")
                .idempotency_key(payment.payment_id.as_str())
                .await?;
        }
    } else if status.as_deref() == Some("awaiting payment") {
        println!("webhook: nobody pays; the order gives up after 5 s");
    }

    let outcome = handle.result().await?;
    let _ = tail.await;
    println!("outcome: {outcome}");
    for (key, value) in dbos.get_all_events(&order_id).await? {
        println!("event {key} = {value}");
    }
    dbos.shutdown().await?;
    Ok(())
}
