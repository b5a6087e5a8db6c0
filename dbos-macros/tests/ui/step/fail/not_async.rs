use dbos_macros::step;

#[step]
fn charge(order_id: String) -> Result<String, dbos_core::Error> {
    Ok(order_id)
}

async fn caller() -> Result<String, dbos_core::Error> {
    // No cascade: the stub is an `async fn`, as the step would be.
    charge("o-1".into()).await
}

fn main() {
    let _ = caller();
}
