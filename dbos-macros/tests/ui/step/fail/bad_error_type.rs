use dbos_macros::step;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct PaymentError(String);

impl std::fmt::Display for PaymentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// Missing: impl From<dbos_core::Error> for PaymentError

#[step]
async fn charge(order_id: String) -> Result<String, PaymentError> {
    Ok(order_id)
}

fn main() {}
