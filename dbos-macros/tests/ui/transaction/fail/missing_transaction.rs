use dbos_macros::transaction;

#[transaction]
async fn reserve(sku: String) -> Result<i32, dbos_core::Error> {
    Ok(sku.len() as i32)
}

fn main() {}
