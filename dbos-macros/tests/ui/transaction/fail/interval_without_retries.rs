use dbos_core::Transaction;
use dbos_macros::transaction;

#[transaction(interval = "1s")]
async fn reserve(tx: &Transaction<'_>) -> Result<u64, dbos_core::Error> {
    let _ = tx;
    Ok(1)
}

fn main() {}
