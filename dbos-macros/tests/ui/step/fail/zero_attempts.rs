use dbos_macros::step;

#[step(max_attempts = 0)]
async fn charge(order_id: String) -> Result<String, dbos_core::Error> {
    Ok(order_id)
}

fn main() {}
