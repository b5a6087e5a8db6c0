//! An e-commerce checkout that survives crashes.
//!
//! ```sh
//! cargo run -p examples --bin checkout            # order-1001
//! cargo run -p examples --bin checkout -- order-7 # another order
//! ```
//!
//! The `checkout` workflow reserves inventory, charges the card, and emails a receipt; each
//! step takes about a second so you can press Ctrl-C midway. Run the same command again: the
//! runtime recovers the interrupted workflow, skips the steps that completed (watch for
//! "resuming"), and finishes the rest. Run it a third time and it prints the recorded receipt
//! without running anything: the order id is the workflow id, so an order is processed once.
//!
//! The shop's own tables live in the schema `shop` of the same database.

use std::time::Duration;

use dbos_core::prelude::*;
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

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
enum ShopError {
    #[error("`{0}` is out of stock")]
    OutOfStock(String),
    #[error("the system database failed: {0}")]
    Dbos(String),
}

impl From<dbos_core::Error> for ShopError {
    fn from(e: dbos_core::Error) -> Self {
        ShopError::Dbos(e.to_string())
    }
}

async fn shop_db() -> Result<deadpool_postgres::Object, ShopError> {
    Ok(Dbos::current()?.system_database().client().await?)
}

fn db_error(e: tokio_postgres::Error) -> ShopError {
    ShopError::Dbos(e.to_string())
}

/// Reserves one unit, once per order (the reservation row is keyed by order id).
#[step]
async fn reserve_inventory(order: Order) -> Result<String, ShopError> {
    println!("  [1/3] reserving one `{}` for {} ...", order.sku, order.id);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let db = shop_db().await?;
    let reserved = db
        .execute(
            "WITH r AS (INSERT INTO shop.reservations (order_id, sku) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING sku)
             UPDATE shop.inventory SET stock = stock - 1 WHERE sku IN (SELECT sku FROM r) AND stock > 0",
            &[&order.id, &order.sku],
        )
        .await
        .map_err(db_error)?;
    let stock: i32 = db
        .query_one(
            "SELECT stock FROM shop.inventory WHERE sku = $1",
            &[&order.sku],
        )
        .await
        .map_err(db_error)?
        .get(0);
    if reserved == 0 && stock <= 0 {
        return Err(ShopError::OutOfStock(order.sku));
    }
    println!("        reserved; {stock} left in stock");
    Ok(order.sku)
}

/// Test-only: set, the charge pauses right after its effect and before its checkpoint, so a
/// test can interrupt the process exactly there and check that the rerun charges once.
const PAUSE_AFTER_CHARGE: &str = "CHECKOUT_PAUSE_AFTER_CHARGE";

/// Charges the card. The order id is the idempotency key, as a payment API would take it: the
/// (stand-in) payment provider records every request under its key and charges once per key.
#[step(max_attempts = 3, interval = "200ms")]
async fn charge_card(order_id: String, cents: i64) -> Result<String, ShopError> {
    println!(
        "  [2/3] charging {:.2} for {order_id} ...",
        cents as f64 / 100.0
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let db = shop_db().await?;
    let row = db
        .query_one(
            "INSERT INTO shop.payments (order_id, cents, payment_id) VALUES ($1, $2, 'pay_' || md5($1))
             ON CONFLICT (order_id) DO UPDATE SET requests = shop.payments.requests + 1 RETURNING payment_id",
            &[&order_id, &cents],
        )
        .await
        .map_err(db_error)?;
    let payment_id: String = row.get(0);
    println!("        charged: {payment_id}");
    if std::env::var_os(PAUSE_AFTER_CHARGE).is_some() {
        println!(
            "        paused after the charge, before its checkpoint ({PAUSE_AFTER_CHARGE} is set)"
        );
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
    Ok(payment_id)
}

#[step]
async fn email_receipt(
    email: String,
    order_id: String,
    payment_id: String,
) -> Result<(), ShopError> {
    println!("  [3/3] emailing the receipt to {email} ...");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let db = shop_db().await?;
    db.execute(
        "INSERT INTO shop.emails (order_id, body) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&order_id, &format!("Thanks! Payment {payment_id}")],
    )
    .await
    .map_err(db_error)?;
    println!("        sent");
    Ok(())
}

#[workflow]
async fn checkout(order: Order) -> Result<Receipt, ShopError> {
    let reserved_sku = reserve_inventory(order.clone()).await?;
    let payment_id = charge_card(order.id.clone(), order.cents).await?;
    email_receipt(order.email.clone(), order.id.clone(), payment_id.clone()).await?;
    Ok(Receipt {
        order_id: order.id,
        payment_id,
        reserved_sku,
    })
}

#[tokio::main]
async fn main() -> Result<(), ShopError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let order_id = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "order-1001".to_owned());
    let dbos = Dbos::launch(Config::from_env("checkout")?).await?;
    println!("system database: {}", dbos.system_database().redacted_url());
    dbos.system_database()
        .client()
        .await?
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS shop;
             CREATE TABLE IF NOT EXISTS shop.inventory (sku text PRIMARY KEY, stock int NOT NULL);
             CREATE TABLE IF NOT EXISTS shop.reservations (order_id text PRIMARY KEY, sku text NOT NULL);
             CREATE TABLE IF NOT EXISTS shop.payments (order_id text PRIMARY KEY, cents bigint NOT NULL, payment_id text NOT NULL);
             ALTER TABLE shop.payments ADD COLUMN IF NOT EXISTS requests int NOT NULL DEFAULT 1;
             CREATE TABLE IF NOT EXISTS shop.emails (order_id text PRIMARY KEY, body text NOT NULL);
             INSERT INTO shop.inventory VALUES ('rust-mug', 100) ON CONFLICT DO NOTHING;",
        )
        .await
        .map_err(db_error)?;

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
    dbos.shutdown().await?;
    Ok(())
}
