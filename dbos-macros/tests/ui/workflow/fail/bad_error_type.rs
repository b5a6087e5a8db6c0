use dbos_macros::workflow;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct ShopError(String);

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// Missing: impl From<dbos_core::Error> for ShopError

#[workflow]
async fn checkout(order_id: String) -> Result<String, ShopError> {
    Ok(order_id)
}

fn main() {}
