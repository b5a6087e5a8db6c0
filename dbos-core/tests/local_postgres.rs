//! The Postgres that starts itself: initialised on first use, reused while running,
//! restarted with its data after it stops, run unprivileged when we are root.

use std::path::Path;
use std::time::{Duration, Instant};

use dbos_core::local_postgres::{LocalPostgres, LocalPostgresState};
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
            .keep_local_postgres(true)
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

async fn running(dir: &Path) -> bool {
    matches!(
        LocalPostgres::probe(dir).await.unwrap(),
        LocalPostgresState::Running(_)
    )
}

/// How long after the last process using it lets go the server in `dir` stops; fails past
/// `limit` (generous: the machine is shared).
async fn stops_within(dir: &Path, limit: Duration) -> Duration {
    let start = Instant::now();
    while running(dir).await {
        assert!(
            start.elapsed() < limit,
            "the unused local Postgres in {} still runs after {limit:?}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    start.elapsed()
}

/// The idle limit of the servers the launches below start: shorter than the default
/// [`dbos_core::local_postgres::APP_IDLE_STOP`] (5 s; `dbos-testkit/tests/idle_stop.rs`
/// checks a server with the default after its process is killed), so that waiting several
/// limits long takes seconds instead of most of a minute.
const IDLE: Duration = Duration::from_secs(1);

/// The server a launch started stops once the last process using it has shut down (here two
/// runtimes, each holding the server as a process does), and stays when asked to.
#[dbos_testkit::test(timeout = "300s")]
async fn a_launched_server_stops_after_its_last_user_unless_kept(_db: TestDatabase) {
    let dir = scratch_dir("idle-stop");
    let config = || {
        Config::new("idle-stop")
            .local_postgres_dir(&dir)
            .local_postgres_idle_stop(IDLE)
            .pool_size(2)
    };
    let first = Dbos::launch(config()).await.unwrap();
    assert!(!first.local_postgres().unwrap().reused());
    let second = Dbos::launch(config()).await.unwrap();
    assert!(second.local_postgres().unwrap().reused());

    // One user left: the server stays, several idle limits long.
    first.shutdown().await.unwrap();
    tokio::time::sleep(IDLE * 3).await;
    assert!(running(&dir).await, "stopped while a runtime still used it");
    second
        .system_database()
        .client()
        .await
        .unwrap()
        .simple_query("SELECT 1")
        .await
        .unwrap();

    // The last user shuts down: gone soon after the idle limit, even while the application
    // still holds a clone of the server's handle.
    let held = second.local_postgres().unwrap().clone();
    second.shutdown().await.unwrap();
    let took = stops_within(&dir, IDLE + Duration::from_secs(55)).await;
    println!("the local Postgres stopped {took:?} after the last shutdown");
    drop(held);

    // Asked to stay: still up well past the idle limit, until stopped.
    let kept = Dbos::launch(config().keep_local_postgres(true))
        .await
        .unwrap();
    assert!(!kept.local_postgres().unwrap().reused(), "started again");
    let pg = kept.local_postgres().unwrap().clone();
    kept.shutdown().await.unwrap();
    tokio::time::sleep(IDLE * 3).await;
    assert!(running(&dir).await, "stopped although asked to stay");

    // A launch that reuses a self-stopping server and asks to stay keeps it running too.
    pg.stop().await.unwrap();
    let stopping = Dbos::launch(config()).await.unwrap();
    let staying = Dbos::launch(config().keep_local_postgres(true))
        .await
        .unwrap();
    assert!(staying.local_postgres().unwrap().reused());
    stopping.shutdown().await.unwrap();
    staying.shutdown().await.unwrap();
    tokio::time::sleep(IDLE * 3).await;
    assert!(
        running(&dir).await,
        "stopped although a user asked it to stay"
    );
    pg.stop().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
