use dbos_core::schedule::chrono::{DateTime, Utc};
use dbos_macros::workflow;

#[workflow(
    schedule = "0 0 2 * * *",
    timezone = "Europe/Paris",
    automatic_backfill,
    queue = "reports"
)]
async fn nightly(at: DateTime<Utc>, context: serde_json::Value) -> Result<(), dbos_core::Error> {
    let _ = (at, context);
    Ok(())
}

#[workflow(schedule = "*/15 * * * *", automatic_backfill = false)]
async fn quarter_hourly(at: String, context: Option<u32>) -> Result<(), dbos_core::Error> {
    let _ = (at, context);
    Ok(())
}

#[test]
fn scheduled_workflows_are_plain_calls_too() {
    let _ = nightly(Utc::now(), serde_json::Value::Null);
    let _ = quarter_hourly(String::new(), None);
}
