//! `#[dbos_testkit::test]` with its `timeout` option and without it, on a test that returns
//! `()` and on one that returns a `Result`. (As a trybuild case these were only expanded: a
//! `#[test]` function is left out of a build without `--test`. Here they are type-checked and
//! run.)

use dbos_testkit::TestDatabase;

#[dbos_testkit::test(timeout = "90s")]
async fn with_its_own_timeout(db: TestDatabase) {
    assert!(db.name().starts_with("dbos_test_"), "{}", db.name());
}

#[dbos_testkit::test]
async fn with_the_default_timeout(db: TestDatabase) -> Result<(), String> {
    db.name()
        .starts_with("dbos_test_")
        .then_some(())
        .ok_or(db.name().to_owned())
}
