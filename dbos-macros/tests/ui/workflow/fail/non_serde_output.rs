use dbos_macros::workflow;

pub struct Receipt {
    pub total: i64,
}

#[workflow]
async fn checkout(total: i64) -> Result<Receipt, dbos_core::Error> {
    Ok(Receipt { total })
}

fn main() {}
