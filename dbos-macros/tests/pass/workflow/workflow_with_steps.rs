//! A workflow calling steps that use every option.

use dbos_macros::{step, workflow};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub cents: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Receipt {
    pub payment: String,
    pub note: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum ShopError {
    Declined(String),
    Dbos(String),
}

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl From<dbos_core::Error> for ShopError {
    fn from(e: dbos_core::Error) -> Self {
        ShopError::Dbos(e.to_string())
    }
}

fn is_transient(e: &ShopError) -> bool {
    matches!(e, ShopError::Dbos(_))
}

/// Charges the card.
#[step(
    name = "charge_card",
    max_attempts = 3,
    interval = "500ms",
    backoff = 1.5,
    max_interval = "10s",
    retry_if = is_transient
)]
pub async fn charge(order_id: String, mut cents: i64) -> Result<String, ShopError> {
    if cents < 0 {
        return Err(ShopError::Declined(order_id));
    }
    cents += 0;
    Ok(format!("paid {cents} for {order_id}"))
}

/// A step without retries, with a pattern argument and a `mut` one.
#[step]
async fn describe((id, cents): (String, i64), mut note: String) -> Result<String, ShopError> {
    note.push_str(&format!(" {id}:{cents}"));
    Ok(note)
}

/// A retried step whose argument is a pattern: it is destructured from a fresh clone on every
/// attempt.
#[step(max_attempts = 2, interval = "1ms")]
async fn total((a, b): (i64, i64)) -> Result<i64, ShopError> {
    Ok(a + b)
}

/// Checks out an order.
#[workflow(name = "checkout", max_recovery_attempts = 10)]
pub async fn checkout(order: Order, mut attempts: u32) -> Result<Receipt, ShopError> {
    attempts += 1;
    let payment = charge(order.id.clone(), order.cents).await?;
    let cents = total((order.cents, i64::from(attempts))).await?;
    let note = describe((order.id, cents), String::from("note")).await?;
    let _time = dbos_core::now().await?;
    Ok(Receipt { payment, note })
}

/// A workflow without arguments, using `dbos_core::Error` as its error.
#[workflow]
async fn no_arguments() -> Result<(), dbos_core::Error> {
    Ok(())
}

#[test]
fn a_workflow_calls_steps_that_use_every_option() {
    // The workflow is a plain function returning the call builder.
    let _call: dbos_core::WorkflowCall<Receipt, ShopError> = checkout(
        Order {
            id: "o-1".into(),
            cents: 100,
        },
        0,
    )
    .id("order-1");
    let _other: dbos_core::WorkflowCall<(), dbos_core::Error> = no_arguments();

    // Outside a workflow a step is a plain call.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(charge("o-1".into(), 5).await.unwrap(), "paid 5 for o-1");
        assert_eq!(
            charge("o-2".into(), -1).await,
            Err(ShopError::Declined("o-2".into()))
        );
        assert_eq!(
            describe(("o-3".into(), 7), "n".into()).await.unwrap(),
            "n o-3:7"
        );
        assert_eq!(total((2, 3)).await.unwrap(), 5);
    });
}
