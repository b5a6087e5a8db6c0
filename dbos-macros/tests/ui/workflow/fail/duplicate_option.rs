use dbos_macros::workflow;

#[workflow(name = "checkout", name = "checkout_v2")]
async fn checkout(order_id: String) -> Result<String, dbos_core::Error> {
    Ok(order_id)
}

fn main() {
    let _call = checkout("o-1".into()).id("a");
}
