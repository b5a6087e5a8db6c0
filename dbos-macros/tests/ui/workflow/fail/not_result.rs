use dbos_macros::workflow;

#[workflow]
async fn checkout(order_id: String) -> String {
    order_id
}

fn main() {}
