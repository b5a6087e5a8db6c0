use dbos_macros::workflow;

#[workflow]
async fn checkout<T: serde::Serialize>(order: T) -> Result<(), dbos_core::Error> {
    let _ = order;
    Ok(())
}

fn main() {}
