use dbos_macros::step;

#[step(max_attempts = 3, interval = "500")]
async fn charge(order_id: String) -> Result<String, dbos_core::Error> {
    Ok(order_id)
}

fn main() {}
