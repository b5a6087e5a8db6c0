use std::rc::Rc;

use dbos_macros::workflow;

#[workflow]
async fn checkout(order_id: String) -> Result<String, dbos_core::Error> {
    let shared = Rc::new(order_id);
    dbos_core::sleep(std::time::Duration::from_secs(1)).await?;
    Ok(shared.to_string())
}

fn main() {}
