use dbos_macros::workflow;

#[workflow]
async fn checkout(order_id: String) -> Result<String, dbos_core::Error> {
    let task = tokio::spawn(async move { order_id.len() });
    let _ = task;
    Ok(String::new())
}

fn main() {}
