use dbos_core::schedule::chrono::{DateTime, Utc};
use dbos_macros::workflow;

#[workflow(schedule = "0 0 9 * * *", timezone = "Europe/Pariss")]
async fn report(at: DateTime<Utc>, context: serde_json::Value) -> Result<(), dbos_core::Error> {
    let _ = (at, context);
    Ok(())
}

fn main() {}
