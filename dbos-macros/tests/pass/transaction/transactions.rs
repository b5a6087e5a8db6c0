//! Transactions as free functions, with options, as `&self` methods, taking the transaction
//! as `dbos_core::Transaction` or as the `tokio_postgres::Transaction` it derefs to, with
//! borrowed and owned arguments; called from a workflow without the transaction.

use dbos_core::Transaction;
use dbos_macros::{transaction, workflow};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct ShopError(String);

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<dbos_core::Error> for ShopError {
    fn from(e: dbos_core::Error) -> Self {
        ShopError(e.to_string())
    }
}

impl From<tokio_postgres::Error> for ShopError {
    fn from(e: tokio_postgres::Error) -> Self {
        ShopError(e.to_string())
    }
}

fn is_busy(e: &ShopError) -> bool {
    e.0.contains("busy")
}

#[transaction]
async fn reserve(tx: &Transaction<'_>, sku: String, qty: i32) -> Result<i32, ShopError> {
    let row = tx
        .query_one(
            "UPDATE shop.inventory SET stock = stock - $2 WHERE sku = $1 AND stock >= $2 RETURNING stock",
            &[&sku, &qty],
        )
        .await?;
    Ok(row.get(0))
}

#[transaction(
    name = "record_payment",
    isolation = "read_committed",
    datasource = "app",
    max_attempts = 3,
    interval = "10ms",
    retry_if = is_busy
)]
async fn pay(
    tx: &tokio_postgres::Transaction<'_>,
    order: &str,
    mut cents: i64,
) -> Result<(), ShopError> {
    cents += 1;
    tx.execute("INSERT INTO payments VALUES ($1, $2)", &[&order, &cents])
        .await?;
    Ok(())
}

pub struct Ledger {
    table: String,
}

impl Ledger {
    #[transaction(isolation = "repeatable_read")]
    pub async fn balance(&self, tx: &Transaction<'_>, account: i32) -> Result<i64, ShopError> {
        let sql = format!("SELECT balance FROM {} WHERE id = $1", self.table);
        Ok(tx.query_one(sql.as_str(), &[&account]).await?.get(0))
    }
}

#[workflow]
async fn checkout(sku: String) -> Result<i32, ShopError> {
    let left = reserve(sku.clone(), 1).await?;
    pay(&sku, 1999).await?;
    let ledger = Ledger {
        table: "ledger".into(),
    };
    ledger.balance(1).await?;
    Ok(left)
}

#[test]
fn a_workflow_calls_its_transactions_without_the_transaction() {
    let _ = checkout("mug".into());
}
