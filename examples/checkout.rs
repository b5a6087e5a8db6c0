//! An e-commerce checkout that survives crashes.
//!
//! ```sh
//! cargo run -p examples --bin checkout            # order-1001
//! cargo run -p examples --bin checkout -- order-7 # another order
//! ```
//!
//! The `checkout` workflow reserves inventory, charges the card, records the payment and emails
//! a receipt; each takes about a second so you can press Ctrl-C midway. Run the same command
//! again: the runtime recovers the interrupted workflow, skips what completed (watch for
//! "resuming"), and finishes the rest. Run it a third time and it prints the recorded receipt
//! without running anything: the order id is the workflow id, so an order is processed once.
//!
//! With `DBOS_DASHBOARD_PORT=3001` it serves the dashboard while it runs (and until Ctrl-C
//! once done), printing its URL: watch the steps land on the workflow's timeline.
//!
//! The shop's own tables live in an application database apart from the system database, the
//! data source `shop`: `SHOP_DATABASE_URL`, or else the database `checkout_shop` on the system
//! database's server. The reservation and the payment record are `#[transaction]`s there: their
//! SQL commits together with a completion row, so each happens exactly once. The shop's rows
//! are keyed by order id as well, so when the shop's database outlives the system database (a
//! reset, a new system database name) a rerun finds the order reserved and paid and does not
//! do it again. Charging the card and emailing are steps (calls to other systems): they run at
//! least once, so they pass the order id as an idempotency key.
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318` (any OTLP/HTTP collector), each run
//! exports its spans: an interrupted order and its rerun are one trace.

use std::time::Duration;

use dbos_core::prelude::*;
use dbos_core::DataSourceConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: String,
    sku: String,
    cents: i64,
    email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Receipt {
    order_id: String,
    payment_id: String,
    reserved_sku: String,
}

#[derive(Serialize, Deserialize, thiserror::Error)]
enum ShopError {
    #[error("`{0}` is out of stock")]
    OutOfStock(String),
    #[error("the system database failed: {0}")]
    Dbos(String),
}

/// The message: `main` returning the error prints its `Debug`, which should read as one.
impl std::fmt::Debug for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl From<dbos_core::Error> for ShopError {
    fn from(e: dbos_core::Error) -> Self {
        ShopError::Dbos(e.to_string())
    }
}

impl From<tokio_postgres::Error> for ShopError {
    fn from(e: tokio_postgres::Error) -> Self {
        ShopError::Dbos(match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        })
    }
}

/// Reserves one unit: the stock decrement and the reservation row commit together with the
/// transaction's completion row, so an interrupted reservation either happened once or not at
/// all.
#[transaction(datasource = "shop")]
async fn reserve_inventory(
    tx: &Transaction<'_>,
    order_id: String,
    sku: String,
) -> Result<i32, ShopError> {
    println!("  [1/4] reserving one `{sku}` for {order_id} ...");
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The shop's rows are keyed by order id: an order reserved by an earlier run whose
    // system database is gone (reset, renamed) is not reserved again.
    if let Some(row) = tx
        .query_opt(
            "SELECT i.stock FROM shop.reservations r JOIN shop.inventory i USING (sku) WHERE r.order_id = $1",
            &[&order_id],
        )
        .await?
    {
        let stock: i32 = row.get(0);
        println!("        reserved already (by an earlier run); {stock} left in stock");
        return Ok(stock);
    }
    let Some(row) = tx
        .query_opt(
            "UPDATE shop.inventory SET stock = stock - 1 WHERE sku = $1 AND stock > 0 RETURNING stock",
            &[&sku],
        )
        .await?
    else {
        return Err(ShopError::OutOfStock(sku));
    };
    tx.execute(
        "INSERT INTO shop.reservations (order_id, sku) VALUES ($1, $2)",
        &[&order_id, &sku],
    )
    .await?;
    let stock: i32 = row.get(0);
    println!("        reserved; {stock} left in stock");
    Ok(stock)
}

/// Test-only: set, the charge pauses right after its effect and before its checkpoint, so a
/// test can interrupt the process exactly there and check that the rerun charges once.
const PAUSE_AFTER_CHARGE: &str = "CHECKOUT_PAUSE_AFTER_CHARGE";

/// Charges the card at the payment provider. A call to another system is a step: it runs at
/// least once, so the order id goes along as the idempotency key. The (stand-in) provider
/// keeps every request in `shop.provider_charges` under its key, charges once per key, and
/// answers a repeated request with the same payment id.
#[step(max_attempts = 3, interval = "200ms")]
async fn charge_card(order_id: String, cents: i64) -> Result<String, ShopError> {
    println!(
        "  [2/4] charging {:.2} for {order_id} ...",
        cents as f64 / 100.0
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let payment_id: String = shop_db()
        .await?
        .query_one(
            "INSERT INTO shop.provider_charges (idempotency_key, cents, payment_id) VALUES ($1, $2, 'pay_' || md5($1))
             ON CONFLICT (idempotency_key) DO UPDATE SET requests = shop.provider_charges.requests + 1
             RETURNING payment_id",
            &[&order_id, &cents],
        )
        .await?
        .get(0);
    println!("        charged: {payment_id}");
    if std::env::var_os(PAUSE_AFTER_CHARGE).is_some() {
        println!(
            "        paused after the charge, before its checkpoint ({PAUSE_AFTER_CHARGE} is set)"
        );
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
    Ok(payment_id)
}

/// A connection to the shop's database (the data source `shop`), for steps that talk to it
/// without a transaction of their own.
async fn shop_db() -> Result<deadpool_postgres::Object, ShopError> {
    let dbos = Dbos::current()?;
    let Some(db) = dbos.data_source("shop") else {
        return Err(ShopError::Dbos(
            "the data source `shop` is not configured".into(),
        ));
    };
    Ok(db.client().await?)
}

/// Records the payment in the shop's books, exactly once.
#[transaction(datasource = "shop")]
async fn record_payment(
    tx: &Transaction<'_>,
    order_id: String,
    cents: i64,
    payment_id: String,
) -> Result<(), ShopError> {
    println!("  [3/4] recording payment {payment_id} ...");
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Keyed by order id, as the reservation: recorded by an earlier run, it stays as it is.
    let recorded = tx
        .execute(
            "INSERT INTO shop.payments (order_id, cents, payment_id) VALUES ($1, $2, $3)
             ON CONFLICT (order_id) DO NOTHING",
            &[&order_id, &cents, &payment_id],
        )
        .await?;
    if recorded == 1 {
        println!("        recorded");
    } else {
        println!("        recorded already (by an earlier run)");
    }
    Ok(())
}

/// Emails the receipt (simulated by a row in `shop.emails`). A step: it runs at least once,
/// so a repeated send is absorbed by the order id (the mail service's idempotency key).
#[step]
async fn email_receipt(
    email: String,
    order_id: String,
    payment_id: String,
) -> Result<(), ShopError> {
    println!("  [4/4] emailing the receipt to {email} ...");
    tokio::time::sleep(Duration::from_secs(1)).await;
    shop_db()
        .await?
        .execute(
            "INSERT INTO shop.emails (order_id, body) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&order_id, &format!("Thanks! Payment {payment_id}")],
        )
        .await?;
    println!("        sent");
    Ok(())
}

#[workflow]
async fn checkout(order: Order) -> Result<Receipt, ShopError> {
    reserve_inventory(order.id.clone(), order.sku.clone()).await?;
    let payment_id = charge_card(order.id.clone(), order.cents).await?;
    record_payment(order.id.clone(), order.cents, payment_id.clone()).await?;
    email_receipt(order.email.clone(), order.id.clone(), payment_id.clone()).await?;
    Ok(Receipt {
        order_id: order.id,
        payment_id,
        reserved_sku: order.sku,
    })
}

#[tokio::main]
async fn main() -> Result<(), ShopError> {
    let _telemetry = examples::init_logs();
    let order_id = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "order-1001".to_owned());
    let config = examples::with_dashboard(Config::from_env("checkout")?)?;
    let config = match std::env::var("SHOP_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => config.data_source("shop", url),
        _ => config.add_data_source(DataSourceConfig::database("shop", "checkout_shop")),
    };
    let dbos = Dbos::launch(config).await?;
    let Some(shop) = dbos.data_source("shop") else {
        return Err(ShopError::Dbos(
            "the data source `shop` is not configured".into(),
        ));
    };
    println!("system database: {}", dbos.system_database().redacted_url());
    println!("shop database:   {}", shop.redacted_url());
    examples::print_dashboard(&dbos);
    shop.client()
        .await?
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS shop;
             CREATE TABLE IF NOT EXISTS shop.inventory (sku text PRIMARY KEY, stock int NOT NULL);
             CREATE TABLE IF NOT EXISTS shop.reservations (order_id text PRIMARY KEY, sku text NOT NULL);
             CREATE TABLE IF NOT EXISTS shop.payments (order_id text PRIMARY KEY, cents bigint NOT NULL, payment_id text NOT NULL);
             CREATE TABLE IF NOT EXISTS shop.provider_charges (idempotency_key text PRIMARY KEY, cents bigint NOT NULL,
                                                               payment_id text NOT NULL, requests int NOT NULL DEFAULT 1);
             CREATE TABLE IF NOT EXISTS shop.emails (order_id text PRIMARY KEY, body text NOT NULL);
             INSERT INTO shop.inventory VALUES ('rust-mug', 100) ON CONFLICT DO NOTHING;",
        )
        .await?;

    let order = Order {
        id: order_id.clone(),
        sku: "rust-mug".into(),
        cents: 1999,
        email: "ferris@example.com".into(),
    };
    match dbos.retrieve_workflow::<Receipt, ShopError>(order_id.clone()).status().await {
        Ok(Status::Success) => println!("checkout {order_id} already completed; its recorded receipt:"),
        Ok(status) => println!("checkout {order_id} was interrupted ({status:?}); resuming after its last completed step"),
        Err(_) => println!("checkout {order_id} (press Ctrl-C midway, then run again to watch it resume)"),
    }
    let handle = checkout(order).id(order_id.clone()).start().await?;
    let receipt = handle.result().await?;
    println!(
        "done: {}",
        serde_json::to_string(&receipt).unwrap_or_default()
    );
    examples::hold_dashboard(&dbos).await;
    dbos.shutdown().await?;
    Ok(())
}
