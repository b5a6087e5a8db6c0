use dbos_macros::step;

pub struct Payment {
    pub id: String,
}

#[step]
async fn charge(order_id: String) -> Result<Payment, dbos_core::Error> {
    Ok(Payment { id: order_id })
}

fn main() {}
