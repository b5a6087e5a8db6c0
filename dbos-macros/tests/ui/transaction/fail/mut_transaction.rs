use dbos_core::Transaction;
use dbos_macros::transaction;

#[transaction]
async fn reserve(tx: &mut Transaction<'_>, sku: String) -> Result<u64, dbos_core::Error> {
    let _ = (sku, tx);
    Ok(1)
}

fn main() {}
