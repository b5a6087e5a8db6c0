use dbos_macros::workflow;

#[workflow(max_recovery_attempts = 0)]
async fn checkout(order_id: String) -> Result<String, dbos_core::Error> {
    Ok(order_id)
}

fn main() {}
