use dbos_macros::workflow;

// `String` has no `From<dbos_core::Error>`: a lost connection could not travel through `?`.
#[workflow]
async fn job(n: u32) -> Result<u32, String> {
    Ok(n)
}

async fn caller() -> Result<u32, String> {
    job(1).id("job-1").await
}

fn main() {
    let _ = caller();
}
