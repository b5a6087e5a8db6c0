use dbos_testkit::TestDatabase;

#[dbos_testkit::test(time_limit = "60s")]
async fn migrates(db: TestDatabase) {
    let _dbos = db.launch().await;
}

fn main() {}
