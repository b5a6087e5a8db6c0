use dbos_macros::step;

#[step(timeout = "0s")]
async fn charge(order_id: String) -> Result<String, dbos_core::Error> {
    Ok(order_id)
}

fn main() {}
