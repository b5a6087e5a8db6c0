use std::time::Duration;

use dbos_macros::workflow;

#[workflow]
async fn checkout(order_id: String) -> Result<String, dbos_core::Error> {
    tokio::select! {
        _ = dbos_core::sleep(Duration::from_secs(1)) => Ok(order_id),
        _ = dbos_core::sleep(Duration::from_secs(2)) => Ok(String::new()),
    }
}

fn main() {}
