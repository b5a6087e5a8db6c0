use dbos_macros::workflow;

#[workflow(name = "  ")]
async fn checkout(order_id: String) -> Result<String, dbos_core::Error> {
    Ok(order_id)
}

fn main() {}
