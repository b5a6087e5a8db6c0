use dbos_core::Transaction;
use dbos_macros::transaction;

#[transaction]
fn reserve(tx: &Transaction<'_>, sku: String) -> Result<u64, dbos_core::Error> {
    let _ = (sku, tx);
    Ok(1)
}

async fn caller() -> Result<u64, dbos_core::Error> {
    // No cascade: the stub is an `async fn` without the transaction, as the transaction would be.
    reserve("mug".into()).await
}

fn main() {
    let _ = caller();
}
