use dbos_macros::workflow;

// Stands in for the `rand` crate: the guard matches the path, not the crate.
mod rand {
    pub fn random<T: Default>() -> T {
        T::default()
    }
}

#[workflow]
async fn checkout(order_id: String) -> Result<String, dbos_core::Error> {
    let coupon: u32 = rand::random();
    Ok(format!("{order_id}-{coupon}"))
}

fn main() {}
