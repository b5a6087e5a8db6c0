use dbos_macros::workflow;

#[workflow(schedule = "0 0 9 * * *")]
async fn report(context: serde_json::Value) -> Result<(), dbos_core::Error> {
    let _ = context;
    Ok(())
}

#[workflow(timezone = "Europe/Paris", automatic_backfill)]
async fn unscheduled(n: u32) -> Result<u32, dbos_core::Error> {
    Ok(n)
}

fn main() {}
