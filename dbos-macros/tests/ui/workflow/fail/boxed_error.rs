use dbos_macros::workflow;

// A trait object cannot be recorded or rebuilt on replay.
#[workflow]
async fn job(n: u32) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    Ok(n)
}

async fn caller() -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    job(1).await
}

fn main() {
    let _ = caller();
}
