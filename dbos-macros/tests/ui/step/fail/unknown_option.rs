use dbos_macros::step;

#[step(retries_allowed = true, intervall = "1s")]
async fn charge(order_id: String) -> Result<String, dbos_core::Error> {
    Ok(order_id)
}

fn main() {}
