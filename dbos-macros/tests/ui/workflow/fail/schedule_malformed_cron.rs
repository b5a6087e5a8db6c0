use dbos_core::schedule::chrono::{DateTime, Utc};
use dbos_macros::workflow;

#[workflow(schedule = "*/5 * * *")]
async fn report(at: DateTime<Utc>, context: serde_json::Value) -> Result<(), dbos_core::Error> {
    let _ = (at, context);
    Ok(())
}

#[workflow(schedule = "0 99 * * *")]
async fn report2(at: DateTime<Utc>, context: serde_json::Value) -> Result<(), dbos_core::Error> {
    let _ = (at, context);
    Ok(())
}

fn main() {}
