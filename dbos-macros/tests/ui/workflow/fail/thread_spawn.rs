use dbos_macros::workflow;

#[workflow]
async fn checkout(order_id: String) -> Result<String, dbos_core::Error> {
    std::thread::spawn(move || println!("{order_id}"));
    Ok(String::new())
}

fn main() {}
