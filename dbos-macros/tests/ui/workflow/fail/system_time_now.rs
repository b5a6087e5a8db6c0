use dbos_macros::workflow;

#[workflow]
async fn checkout(order_id: String) -> Result<String, dbos_core::Error> {
    let at = std::time::SystemTime::now();
    Ok(format!("{order_id} at {at:?}"))
}

fn main() {}
