//! `Config::from_env` reads the environment and `Config::new` does not. Alone in its binary:
//! it sets environment variables for the whole process.

use dbos_core::{Config, Dbos};
use dbos_testkit::TestDatabase;

#[dbos_testkit::test]
async fn from_env_reads_the_environment_and_new_does_not(db: TestDatabase) {
    std::env::set_var("DBOS_SYSTEM_DATABASE_URL", db.url());
    std::env::set_var("DBOS__VMID", "exec-from-env");
    std::env::set_var("DBOS__APPVERSION", "v-from-env");

    let from_env = Dbos::launch(Config::from_env("testapp").unwrap())
        .await
        .unwrap();
    assert_eq!(from_env.executor_id(), "exec-from-env");
    assert_eq!(from_env.application_version(), "v-from-env");
    assert_eq!(
        from_env.system_database().database_name(),
        db.name(),
        "the URL came from DBOS_SYSTEM_DATABASE_URL"
    );
    from_env.shutdown().await.unwrap();

    // The same environment, but `new`: the defaults, and the URL only when given.
    let new = Dbos::launch(Config::new("testapp").system_database_url(db.url()))
        .await
        .unwrap();
    assert!(
        new.executor_id().starts_with("dbos-rs-"),
        "a generated id: {}",
        new.executor_id()
    );
    assert_ne!(new.application_version(), "v-from-env");
    new.shutdown().await.unwrap();
    let debug = format!("{:?}", Config::new("testapp"));
    assert!(
        debug.contains("system_database_url: None"),
        "no URL from the environment: {debug}"
    );
}
