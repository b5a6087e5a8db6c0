use dbos_core::Transaction;
use dbos_macros::transaction;

pub struct Order {
    pub sku: String,
}

#[transaction]
async fn reserve(tx: &Transaction<'_>, order: Order) -> Result<u64, dbos_core::Error> {
    let _ = (tx, order.sku);
    Ok(1)
}

fn main() {}
