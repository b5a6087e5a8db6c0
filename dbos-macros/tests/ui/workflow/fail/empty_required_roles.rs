use dbos_macros::workflow;

#[workflow(required_roles = [])]
async fn refund(order_id: String) -> Result<String, dbos_core::Error> {
    Ok(order_id)
}

fn main() {}
