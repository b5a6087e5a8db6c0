use dbos_core::Transaction;
use dbos_macros::transaction;

#[transaction]
async fn reserve(tx: &Transaction<'_>) -> u64 {
    let _ = tx;
    1
}

fn main() {}
