use dbos_macros::workflow;

#[workflow]
async fn checkout(order_id: String) -> Result<String, dbos_core::Error> {
    let label = match order_id.len() {
        #[nondeterministic]
        0 => String::from("empty"),
        _ => order_id,
    };
    Ok(label)
}

fn main() {}
