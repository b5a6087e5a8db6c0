//! The system schema: our migrations produce exactly DBOS's schema 125, and every kind of
//! existing schema is accepted or refused with a clear error.

use dbos_core::sysdb::{MigrationOutcome, SCHEMA_VERSION};
use dbos_core::{Dbos, ErrorKind};
use dbos_testkit::database::normalize_dump;
use dbos_testkit::TestDatabase;

const REFERENCE: &str = include_str!("fixtures/dbos-system-schema-125.sql");

fn reference_dump() -> String {
    normalize_dump(REFERENCE)
}

fn first_difference(a: &str, b: &str) -> String {
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {}: ours `{x}` vs reference `{y}`", i + 1);
        }
    }
    format!(
        "lengths differ: {} vs {} lines",
        a.lines().count(),
        b.lines().count()
    )
}

#[dbos_testkit::test]
async fn migrations_on_an_empty_database_dump_equal_to_the_reference(db: TestDatabase) {
    let dbos = db.launch().await;
    assert_eq!(
        dbos.migration(),
        &MigrationOutcome::Applied {
            from: None,
            to: 125
        }
    );
    assert_eq!(SCHEMA_VERSION, 125);
    let ours = db.dump_schema(db.name(), "dbos");
    let reference = reference_dump();
    assert!(
        ours == reference,
        "schema differs from the reference: {}",
        first_difference(&ours, &reference)
    );
    let version: i64 = db
        .connect()
        .await
        .query_one("SELECT version FROM dbos.dbos_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 125);
}

#[dbos_testkit::test]
async fn a_second_launch_changes_nothing(db: TestDatabase) {
    db.launch().await.shutdown().await.unwrap();
    let before = db.dump_schema(db.name(), "dbos");
    let again = db.launch().await;
    assert_eq!(again.migration(), &MigrationOutcome::UpToDate);
    assert_eq!(db.dump_schema(db.name(), "dbos"), before);
}

#[dbos_testkit::test]
async fn concurrent_launches_on_one_empty_database_all_succeed(db: TestDatabase) {
    let launches = (0..6).map(|_| Dbos::launch(db.config("testapp")));
    let results = futures_util::future::join_all(launches).await;
    let mut applied = 0;
    for r in results {
        let dbos = r.expect("every concurrent launch succeeds");
        assert_eq!(dbos.migration().version(), 125);
        if matches!(dbos.migration(), MigrationOutcome::Applied { .. }) {
            applied += 1;
        }
    }
    assert_eq!(applied, 1, "exactly one launch applies the migration");
    let count: i64 = db
        .connect()
        .await
        .query_one("SELECT count(*) FROM dbos.dbos_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

#[dbos_testkit::test]
async fn a_custom_schema_name_works_and_its_functions_use_it(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").schema("my_sys"))
        .await
        .unwrap();
    assert_eq!(dbos.migration().version(), 125);
    let client = db.connect().await;
    let id: String = client
        .query_one(
            "SELECT my_sys.enqueue_workflow('wf', 'q', ARRAY['1'::json], workflow_id => 'x1')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, "x1");
    client
        .execute(
            "SELECT my_sys.send_message('x1', '{\"a\":1}'::json, 'topic')",
            &[],
        )
        .await
        .unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM my_sys.notifications", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let dbos_schema: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'dbos')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!dbos_schema, "nothing is created in the default schema");
    // Same shape as the reference once the schema name is substituted.
    let ours = db
        .dump_schema(db.name(), "my_sys")
        .replace("my_sys.", "dbos.")
        .replace("\"my_sys\".", "\"dbos\".")
        .replace("SCHEMA my_sys", "SCHEMA dbos");
    assert!(
        ours == reference_dump(),
        "{}",
        first_difference(&ours, &reference_dump())
    );
}

#[dbos_testkit::test]
async fn a_foreign_dbos_schema_is_refused_untouched(db: TestDatabase) {
    let client = db.connect().await;
    client
        .batch_execute("CREATE SCHEMA dbos; CREATE TABLE dbos.accounts (id int)")
        .await
        .unwrap();
    let e = Dbos::launch(db.config("testapp")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema);
    let msg = e.to_string();
    assert!(
        msg.contains("not a DBOS system schema") && msg.contains("accounts"),
        "{msg}"
    );
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'dbos'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 1, "the foreign schema is left as it was");
}

#[dbos_testkit::test]
async fn an_empty_existing_schema_is_used(db: TestDatabase) {
    db.connect()
        .await
        .batch_execute("CREATE SCHEMA dbos")
        .await
        .unwrap();
    let dbos = db.launch().await;
    assert_eq!(dbos.migration().version(), 125);
}

#[dbos_testkit::test]
async fn an_older_dbos_schema_gets_an_error_naming_both_versions(db: TestDatabase) {
    let client = db.connect().await;
    client
        .batch_execute("CREATE SCHEMA dbos; CREATE TABLE dbos.dbos_migrations (version bigint PRIMARY KEY); INSERT INTO dbos.dbos_migrations VALUES (107)")
        .await
        .unwrap();
    let e = Dbos::launch(db.config("testapp")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema);
    let msg = e.to_string();
    assert!(
        msg.contains("version 107") && msg.contains("125") && msg.contains("dbos migrate"),
        "{msg}"
    );
    let v: i64 = client
        .query_one("SELECT version FROM dbos.dbos_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 107, "nothing was changed");
}

#[dbos_testkit::test]
async fn an_interrupted_dbos_migration_is_reported(db: TestDatabase) {
    db.connect()
        .await
        .batch_execute(
            "CREATE SCHEMA dbos; CREATE TABLE dbos.dbos_migrations (version bigint PRIMARY KEY)",
        )
        .await
        .unwrap();
    let e = Dbos::launch(db.config("testapp")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema);
    assert!(e.to_string().contains("empty dbos_migrations"), "{e}");
}

#[dbos_testkit::test]
async fn a_newer_schema_is_accepted_as_is(db: TestDatabase) {
    db.launch().await.shutdown().await.unwrap();
    let client = db.connect().await;
    client
        .batch_execute("UPDATE dbos.dbos_migrations SET version = 130")
        .await
        .unwrap();
    let dbos = db.launch().await;
    assert_eq!(dbos.migration(), &MigrationOutcome::Ahead { found: 130 });
    let v: i64 = client
        .query_one("SELECT version FROM dbos.dbos_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 130, "a newer version is never rewritten");
}

#[dbos_testkit::test]
async fn a_schema_missing_tables_is_reported(db: TestDatabase) {
    db.launch().await.shutdown().await.unwrap();
    db.connect()
        .await
        .batch_execute("DROP TABLE dbos.workflow_output")
        .await
        .unwrap();
    let e = Dbos::launch(db.config("testapp")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema);
    assert!(e.to_string().contains("workflow_output"), "{e}");
}
