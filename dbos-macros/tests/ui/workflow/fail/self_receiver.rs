use dbos_macros::workflow;

pub struct Shop;

impl Shop {
    #[workflow]
    async fn checkout(&self, order_id: String) -> Result<String, dbos_core::Error> {
        Ok(order_id)
    }
}

fn main() {
    let _call = Shop.checkout("o-1".into()).id("a");
}
