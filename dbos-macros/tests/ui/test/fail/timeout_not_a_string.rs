use dbos_testkit::TestDatabase;

#[dbos_testkit::test(timeout = 60)]
async fn migrates(db: TestDatabase) {
    let _dbos = db.launch().await;
}

fn main() {}
