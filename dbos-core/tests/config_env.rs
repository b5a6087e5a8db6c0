//! `Config::from_env` reads the environment and `Config::new` does not. Alone in its binary:
//! it sets environment variables for the whole process.

use dbos_core::{Config, Dbos};
use dbos_testkit::TestDatabase;

#[dbos_testkit::test]
async fn from_env_reads_the_environment_and_new_does_not(db: TestDatabase) {
    std::env::set_var("DBOS_SYSTEM_DATABASE_URL", db.url());
    std::env::set_var("DBOS__VMID", "exec-from-env");
    std::env::set_var("DBOS__APPVERSION", "v-from-env");
    std::env::set_var("DBOS_KEEP_LOCAL_POSTGRES", "1");

    let from_env = Dbos::launch(Config::from_env("testapp").unwrap())
        .await
        .unwrap();
    assert_eq!(from_env.executor_id(), "exec-from-env");
    assert_eq!(from_env.application_version(), "v-from-env");
    assert!(
        format!("{:?}", from_env.config()).contains("keep_local_postgres: true"),
        "DBOS_KEEP_LOCAL_POSTGRES=1 keeps the local Postgres"
    );
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
        debug.contains("system_database_url: None") && debug.contains("keep_local_postgres: false"),
        "nothing from the environment: {debug}"
    );

    // A value that is not a yes or no is refused, saying what to write.
    std::env::set_var("DBOS_KEEP_LOCAL_POSTGRES", "sometimes");
    let e = Config::from_env("testapp").unwrap_err();
    assert_eq!(e.kind(), dbos_core::ErrorKind::Config);
    assert!(
        e.to_string().contains("DBOS_KEEP_LOCAL_POSTGRES") && e.to_string().contains("true"),
        "{e}"
    );
    std::env::remove_var("DBOS_KEEP_LOCAL_POSTGRES");
}

/// The local Postgres's folder follows the application, not the working directory, and its
/// port stays the same across restarts.
#[dbos_testkit::test]
async fn the_local_postgres_is_per_application_whatever_the_working_directory(_db: TestDatabase) {
    let data_home = std::env::temp_dir().join(format!("dbos-xdg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_home);
    std::env::set_var("XDG_DATA_HOME", &data_home);
    std::env::remove_var("DBOS_LOCAL_POSTGRES_DIR");
    let here = std::env::current_dir().unwrap();
    let elsewhere = std::env::temp_dir();

    // Kept running: the server started here outlives each shutdown of this test.
    let config = || {
        Config::new("newcomer")
            .pool_size(2)
            .keep_local_postgres(true)
    };
    let dbos = Dbos::launch(config()).await.unwrap();
    let pg = dbos.local_postgres().unwrap().clone();
    assert_eq!(pg.root(), data_home.join("dbos-rs").join("newcomer"));
    let client = dbos.system_database().client().await.unwrap();
    client
        .batch_execute("CREATE TABLE done (v int); INSERT INTO done VALUES (1)")
        .await
        .unwrap();
    drop(client);
    dbos.shutdown().await.unwrap();

    // Started from another folder: the same server, the same data.
    std::env::set_current_dir(&elsewhere).unwrap();
    let dbos = Dbos::launch(config()).await;
    std::env::set_current_dir(&here).unwrap();
    let dbos = dbos.unwrap();
    assert_eq!(dbos.local_postgres().unwrap().root(), pg.root());
    assert!(dbos.local_postgres().unwrap().reused());
    let client = dbos.system_database().client().await.unwrap();
    let rows = client.query("SELECT v FROM done", &[]).await.unwrap();
    assert_eq!(rows.len(), 1, "the data of the first run");
    drop(client);
    dbos.shutdown().await.unwrap();
    assert!(!here.join(".dbos").join("newcomer").exists());

    // Stopped and started again: the same port, so a URL printed before still works.
    pg.stop().await.unwrap();
    let dbos = Dbos::launch(config()).await.unwrap();
    let again = dbos.local_postgres().unwrap().clone();
    assert!(!again.reused());
    assert_eq!(again.port(), pg.port(), "the port is remembered");
    dbos.shutdown().await.unwrap();
    again.stop().await.unwrap();
    std::env::remove_var("XDG_DATA_HOME");
    let _ = std::fs::remove_dir_all(&data_home);
}
