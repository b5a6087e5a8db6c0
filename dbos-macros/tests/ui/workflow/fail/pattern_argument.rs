use dbos_macros::workflow;

#[workflow]
async fn checkout((order_id, cents): (String, i64)) -> Result<String, dbos_core::Error> {
    Ok(format!("{order_id}: {cents}"))
}

fn main() {}
