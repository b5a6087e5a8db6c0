use dbos_core::Transaction;
use dbos_macros::transaction;

pub struct Reservation {
    pub left: i32,
}

#[transaction]
async fn reserve(tx: &Transaction<'_>, sku: String) -> Result<Reservation, dbos_core::Error> {
    let _ = (tx, sku);
    Ok(Reservation { left: 1 })
}

fn main() {}
