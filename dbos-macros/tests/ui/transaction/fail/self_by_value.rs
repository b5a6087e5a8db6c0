use dbos_core::Transaction;
use dbos_macros::transaction;

pub struct Shop;

impl Shop {
    #[transaction]
    async fn reserve(self, tx: &Transaction<'_>) -> Result<u64, dbos_core::Error> {
        let _ = tx;
        Ok(1)
    }
}

fn main() {}
