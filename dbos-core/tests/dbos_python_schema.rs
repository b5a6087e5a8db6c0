//! A database migrated by DBOS's own tool (`dbos migrate`, dbos==3.4.0) is accepted untouched.

use dbos_core::sysdb::MigrationOutcome;
use dbos_core::Dbos;
use dbos_testkit::python::dbos_cli;
use dbos_testkit::TestDatabase;

#[dbos_testkit::test]
async fn a_database_migrated_by_dbos_python_is_accepted_untouched(db: TestDatabase) {
    // Python migrates this test's database...
    let out = dbos_cli(&["migrate", "-s", &db.url()]).await;
    assert!(
        out.status.success(),
        "dbos migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python_dump = db.dump_schema(db.name(), "dbos");

    // ...our launch finds it current and changes nothing...
    let dbos = Dbos::launch(db.config("testapp")).await.unwrap();
    assert_eq!(dbos.migration(), &MigrationOutcome::UpToDate);
    assert_eq!(
        db.dump_schema(db.name(), "dbos"),
        python_dump,
        "launch changed the Python-made schema"
    );

    // ...and a database migrated by us dumps identically.
    let ours_url = db.sibling_url("ours");
    let ours = Dbos::launch(
        dbos_core::Config::new("testapp")
            .system_database_url(&ours_url)
            .pool_size(2),
    )
    .await
    .unwrap();
    assert!(matches!(ours.migration(), MigrationOutcome::Applied { .. }));
    let ours_name = ours.system_database().database_name().to_owned();
    assert_eq!(db.dump_schema(&ours_name, "dbos"), python_dump);
}

#[dbos_testkit::test]
async fn dbos_python_accepts_a_database_we_migrated(db: TestDatabase) {
    db.launch().await.shutdown().await.unwrap();
    let before = db.dump_schema(db.name(), "dbos");
    let out = dbos_cli(&["migrate", "-s", &db.url()]).await;
    assert!(
        out.status.success(),
        "dbos migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        db.dump_schema(db.name(), "dbos"),
        before,
        "dbos migrate found something to change"
    );
}
