//! Two workflows with one name fail at launch, naming both source locations. (Its own test
//! binary: a binary with a duplicate name cannot launch at all.)

use dbos_core::{workflow, Dbos, Error, ErrorKind};
use dbos_testkit::TestDatabase;

mod billing {
    #[dbos_core::workflow(name = "settle")]
    pub async fn settle_invoice(id: String) -> Result<String, dbos_core::Error> {
        Ok(id)
    }
}

#[workflow(name = "settle")]
async fn settle_refund(id: String) -> Result<String, Error> {
    Ok(id)
}

#[dbos_testkit::test]
async fn two_workflows_with_one_name_fail_at_launch_naming_both(db: TestDatabase) {
    let e = Dbos::launch(db.config("testapp")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConflictingRegistration);
    let msg = e.to_string();
    assert!(msg.contains("`settle`"), "{msg}");
    assert_eq!(
        msg.matches("tests/duplicate_names.rs:").count(),
        2,
        "both locations: {msg}"
    );
    assert!(msg.contains("name = "), "says how to fix it: {msg}");
}

#[dbos_testkit::test]
async fn calling_a_workflow_without_a_runtime_says_to_launch(_db: TestDatabase) {
    let e = settle_refund("r-1".into()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotLaunched);
    assert!(e.to_string().contains("Dbos::launch"), "{e}");
    let _ = billing::settle_invoice;
}
