use dbos_macros::step;

#[step(max_attempts = 3, timeout = "1.5s", preemptible)]
async fn charge(order_id: String) -> Result<String, dbos_core::Error> {
    Ok(order_id)
}

#[step(preemptible = false)]
async fn refund(order_id: String) -> Result<String, dbos_core::Error> {
    Ok(order_id)
}

#[test]
fn timeout_and_preemptible_options_expand() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(charge("o-1".into()).await.unwrap(), "o-1");
        assert_eq!(refund("o-2".into()).await.unwrap(), "o-2");
    });
}
