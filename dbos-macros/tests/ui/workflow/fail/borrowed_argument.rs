use dbos_macros::workflow;

// Arguments are recorded and decoded again on recovery, so they must own their data.
#[workflow]
async fn greet(name: &str) -> Result<String, dbos_core::Error> {
    Ok(format!("hello {name}"))
}

async fn caller() -> Result<String, dbos_core::Error> {
    greet("ada").await
}

fn main() {
    let _ = caller();
}
