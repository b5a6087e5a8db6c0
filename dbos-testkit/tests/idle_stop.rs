//! The test Postgres stops itself once unused, and never while a test process or a client
//! uses it. Each test here runs its own cluster in its own folder with a short idle limit,
//! never the shared one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dbos_core::local_postgres::{LocalPostgres, LocalPostgresState};
use dbos_testkit::cluster::{start_cluster, TestCluster};

const IDLE: Duration = Duration::from_secs(2);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dbos-idle-stop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn running(root: &std::path::Path) -> bool {
    matches!(
        LocalPostgres::probe(root.join("pg")).await.unwrap(),
        LocalPostgresState::Running(_)
    )
}

/// Waits (generously: the machine is shared) until the server in `root` has stopped.
async fn stops_within(root: &std::path::Path, limit: Duration) -> Duration {
    let start = Instant::now();
    while running(root).await {
        assert!(
            start.elapsed() < limit,
            "the unused test Postgres in {} still runs after {limit:?}",
            root.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    start.elapsed()
}

/// Several idle limits pass while `cluster` is used; it must still run.
async fn stays_up(root: &std::path::Path, why: &str) {
    tokio::time::sleep(IDLE * 4).await;
    assert!(running(root).await, "the test Postgres stopped while {why}");
}

async fn start(root: &std::path::Path) -> TestCluster {
    start_cluster(root.to_path_buf(), Some(IDLE)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unused_cluster_stops_and_the_next_test_start_brings_it_back() {
    let root = scratch("cycle");
    let cluster = start(&root).await;
    assert!(!cluster.postgres().reused());

    // A process holds it (its lease), with no connection open: it stays.
    stays_up(&root, "a test process held it").await;

    // A client is connected, and no process holds a lease: it stays.
    let client = cluster.connect("postgres").await;
    cluster.postgres().release();
    stays_up(&root, "a client was connected").await;
    client.simple_query("SELECT 1").await.unwrap();

    // The last client leaves: it stops, within a few polls after the idle limit.
    drop(client);
    let took = stops_within(&root, Duration::from_secs(60)).await;
    println!("stopped {took:?} after its last client left (idle limit {IDLE:?})");

    // The next test start brings it back, with its data folder, and it works.
    let again = start(&root).await;
    assert!(!again.postgres().reused(), "started anew");
    assert_eq!(
        again.postgres().port(),
        cluster.postgres().port(),
        "on its port"
    );
    again
        .connect("postgres")
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
    again.postgres().release();
    stops_within(&root, Duration::from_secs(60)).await;
    let _ = std::fs::remove_dir_all(&root);
}

/// Test binaries run one after another: each takes the cluster as the last one lets it go,
/// with no client connected in between. A start that reuses the server holds it from the
/// moment it decides to reuse it, so the watchdog's last look never stops it under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binaries_run_in_sequence_keep_it_up() {
    let root = scratch("sequence");
    let first = start(&root).await;
    let port = first.postgres().port();
    let mut previous = first;
    let until = Instant::now() + IDLE * 4;
    while Instant::now() < until {
        let next = start(&root).await;
        assert!(
            next.postgres().reused(),
            "stopped between two test processes"
        );
        assert_eq!(next.postgres().port(), port);
        previous.postgres().release();
        previous = next;
        tokio::time::sleep(IDLE / 4).await;
    }
    previous
        .connect("postgres")
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
    previous.postgres().release();
    stops_within(&root, Duration::from_secs(60)).await;
    let _ = std::fs::remove_dir_all(&root);
}

/// An application's local Postgres stops once the last process using it has exited, here
/// killed with SIGKILL (no shutdown ran): the kernel ends its lease and its connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_s_server_stops_after_its_last_process_is_killed() {
    use dbos_core::local_postgres::APP_IDLE_STOP;
    use dbos_testkit::crash::{eventually, ChildProcess};
    const SUBJECT: &str = env!("CARGO_BIN_EXE_dbos-crash-subject");
    let root = scratch("killed");
    let pg_dir = root.join("pg");
    std::fs::create_dir_all(&root).unwrap();
    let dir = pg_dir.to_str().unwrap().to_owned();
    let spawn = |name: &str| {
        let ready = root.join(name);
        let process = ChildProcess::spawn(
            SUBJECT,
            &["hold", ready.to_str().unwrap()],
            &[
                ("DBOS_LOCAL_POSTGRES_DIR", dir.as_str()),
                ("DBOS_SYSTEM_DATABASE_URL", ""),
                ("DBOS_KEEP_LOCAL_POSTGRES", ""),
                ("RUST_LOG", "warn"),
            ],
        );
        (process, ready)
    };
    let launched = |ready: PathBuf| async move {
        eventually("the process to launch", Duration::from_secs(120), || {
            let ready = ready.clone();
            async move { ready.exists().then_some(()) }
        })
        .await
    };
    let (first, ready) = spawn("first");
    launched(ready).await;
    let (second, ready) = spawn("second");
    launched(ready).await;

    first.kill9().await;
    tokio::time::sleep(APP_IDLE_STOP * 3).await;
    assert!(
        running(&root).await,
        "stopped while a process still used it"
    );

    second.kill9().await;
    let took = stops_within(&root, APP_IDLE_STOP + Duration::from_secs(55)).await;
    println!("stopped {took:?} after the last process using it was killed");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_idle_limit_is_read_from_the_environment() {
    use dbos_testkit::cluster::{idle_stop, DEFAULT_IDLE_STOP, ENV_IDLE_STOP};
    assert_eq!(idle_stop(None), Ok(Some(DEFAULT_IDLE_STOP)));
    assert_eq!(idle_stop(Some("")), Ok(Some(DEFAULT_IDLE_STOP)));
    assert_eq!(idle_stop(Some("30s")), Ok(Some(Duration::from_secs(30))));
    assert_eq!(idle_stop(Some("none")), Ok(None));
    for bad in ["0s", "ten", "5"] {
        let e = idle_stop(Some(bad)).unwrap_err();
        assert!(
            e.contains(ENV_IDLE_STOP) && e.contains("none"),
            "{bad}: {e}"
        );
    }
}
