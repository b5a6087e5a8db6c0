use dbos_macros::workflow;

#[workflow]
fn checkout(order_id: String) -> Result<String, dbos_core::Error> {
    Ok(order_id)
}

fn main() {
    // No cascade: the stub keeps the signature the workflow would have.
    let _call = checkout("o-1".into()).id("a");
}
