use std::time::{Duration, Instant};

use dbos_macros::workflow;

#[workflow]
async fn checkout(order_id: String) -> Result<String, dbos_core::Error> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let _ = deadline;
    Ok(order_id)
}

fn main() {}
