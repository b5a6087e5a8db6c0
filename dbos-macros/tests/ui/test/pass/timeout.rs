use dbos_testkit::TestDatabase;

#[dbos_testkit::test(timeout = "90s")]
async fn with_its_own_timeout(db: TestDatabase) {
    let _dbos = db.launch().await;
}

#[dbos_testkit::test]
async fn with_the_default_timeout(db: TestDatabase) -> Result<(), String> {
    let _dbos = db.launch().await;
    Ok(())
}

fn main() {}
