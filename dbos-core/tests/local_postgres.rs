//! The Postgres that starts itself: initialised on first use, reused while running,
//! restarted with its data after it stops, run unprivileged when we are root.

use dbos_core::local_postgres::LocalPostgres;
use dbos_core::{Config, Dbos};
use dbos_testkit::TestDatabase;

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("dbos-local-pg-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[dbos_testkit::test]
async fn starts_reuses_and_restarts_with_its_data(_db: TestDatabase) {
    let dir = scratch_dir("lifecycle");
    let first = LocalPostgres::builder(&dir)
        .ephemeral(true)
        .start()
        .await
        .unwrap();
    assert!(!first.reused());

    let dbos = Dbos::launch(
        Config::new("lifecycle")
            .local_postgres_dir(&dir)
            .pool_size(2),
    )
    .await
    .unwrap();
    assert_eq!(dbos.migration().version(), 125);
    assert_eq!(
        dbos.local_postgres().unwrap().port(),
        first.port(),
        "the running server is reused"
    );
    assert!(dbos.local_postgres().unwrap().reused());
    let client = dbos.system_database().client().await.unwrap();
    client
        .batch_execute("CREATE TABLE keep_me (v int); INSERT INTO keep_me VALUES (7)")
        .await
        .unwrap();
    drop(client);
    dbos.shutdown().await.unwrap();

    // The password never appears in what we log.
    assert!(!first.redacted_url("x").contains(
        &std::fs::read_to_string(dir.join("password"))
            .unwrap()
            .trim()
            .to_string()
    ));

    // Stopped (as after a reboot), the next launch starts it again and finds the data.
    first.stop().await.unwrap();
    let dbos = Dbos::launch(
        Config::new("lifecycle")
            .local_postgres_dir(&dir)
            .pool_size(2),
    )
    .await
    .unwrap();
    assert!(!dbos.local_postgres().unwrap().reused());
    let client = dbos.system_database().client().await.unwrap();
    let v: i32 = client
        .query_one("SELECT v FROM keep_me", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 7);
    assert_eq!(dbos.system_database().database_name(), "lifecycle_dbos_sys");
    drop(client);
    let pg = dbos.local_postgres().unwrap().clone();
    dbos.shutdown().await.unwrap();
    pg.stop().await.unwrap();

    // As root, the data directory belongs to the unprivileged server account.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(dir.join("data")).unwrap().uid();
        assert_ne!(owner, 0, "the data directory must not be owned by root");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[dbos_testkit::test]
async fn parallel_starts_share_one_server(_db: TestDatabase) {
    let dir = scratch_dir("parallel");
    let starts = (0..3).map(|_| LocalPostgres::builder(&dir).ephemeral(true).start());
    let servers: Vec<LocalPostgres> = futures_util::future::join_all(starts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert!(servers.iter().all(|s| s.port() == servers[0].port()));
    assert_eq!(servers.iter().filter(|s| !s.reused()).count(), 1);
    servers[0].stop().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
