use dbos_macros::workflow;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct ShopError(String);

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// Missing: impl From<dbos_core::Error> for ShopError. The one error is at the signature; the
// call sites below compile as they would with a good error type.
#[workflow]
async fn job(order_id: String) -> Result<String, ShopError> {
    Ok(order_id)
}

static QUEUE: dbos_core::Queue = dbos_core::Queue::new("jobs");

async fn caller() -> Result<String, ShopError> {
    let first = job("a".into()).await?;
    let handle = job(first).id("b").timeout(std::time::Duration::from_secs(60)).start().await?;
    let second = handle.result().await?;
    let queued = job(second).enqueue(&QUEUE).priority(1).await?;
    let _status = queued.status().await;
    queued.await
}

fn main() {
    let _ = caller();
}
