//! The `hello` example, run as a newcomer would, against an empty database.

use dbos_testkit::database::normalize_dump;
use dbos_testkit::TestDatabase;

#[dbos_testkit::test]
async fn hello_migrates_an_empty_database_to_the_reference_schema(db: TestDatabase) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hello"))
        .env("DBOS_SYSTEM_DATABASE_URL", db.url())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hello failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("version 125"), "{stdout}");
    // One INFO line on stderr (the examples' logs) says where the system database is, with
    // the password hidden, and which executor id this process took.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let launch: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("system database ready"))
        .collect();
    assert_eq!(launch.len(), 1, "{stderr}");
    assert!(launch[0].contains("INFO"), "{stderr}");
    assert!(
        launch[0].contains("postgres:***@") && launch[0].contains(db.name()),
        "{stderr}"
    );
    assert!(launch[0].contains("executor_id=dbos-rs-"), "{stderr}");
    assert!(
        !stderr.contains(&db.url()),
        "the password was logged: {stderr}"
    );
    assert!(stdout.contains(db.name()), "{stdout}");
    assert!(
        !stdout.contains(&db.url()),
        "the password was printed: {stdout}"
    );
    let reference = normalize_dump(include_str!(
        "../../dbos-core/tests/fixtures/dbos-system-schema-125.sql"
    ));
    assert_eq!(db.dump_schema(db.name(), "dbos"), reference);
}
