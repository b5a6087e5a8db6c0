use dbos_macros::step;

#[step(max_attempts = 3, timeout = "1.5s", preemptible)]
async fn charge(order_id: String) -> Result<String, dbos_core::Error> {
    Ok(order_id)
}

#[step(preemptible = false)]
async fn refund(order_id: String) -> Result<String, dbos_core::Error> {
    Ok(order_id)
}

fn main() {
    let _ = charge(String::new());
    let _ = refund(String::new());
}
