//! Connecting to the system database: TLS, retries, missing databases, clear errors.

use std::time::Duration;

use dbos_core::sysdb::{ConnectOptions, SystemDatabase};
use dbos_core::ErrorKind;
use dbos_testkit::TestDatabase;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

fn with_params(url: &str, params: &str) -> String {
    format!("{url}?{params}")
}

async fn ssl_in_use(db: &SystemDatabase) -> bool {
    let client = db.client().await.unwrap();
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[dbos_testkit::test]
async fn sslmode_require_encrypts_without_checking_the_certificate(db: TestDatabase) {
    let sys = SystemDatabase::connect(
        &with_params(&db.url(), "sslmode=require"),
        "dbos",
        &ConnectOptions::default(),
    )
    .await
    .unwrap();
    assert!(ssl_in_use(&sys).await, "the connection must be encrypted");
    let plain = SystemDatabase::connect(
        &with_params(&db.url(), "sslmode=disable"),
        "dbos",
        &ConnectOptions::default(),
    )
    .await
    .unwrap();
    assert!(!ssl_in_use(&plain).await);
}

#[dbos_testkit::test]
async fn sslmode_verify_full_checks_the_certificate(db: TestDatabase) {
    let ca = db.cluster().ca_certificate();
    let url = with_params(
        &db.url(),
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    let sys = SystemDatabase::connect(&url, "dbos", &ConnectOptions::default())
        .await
        .unwrap();
    assert!(ssl_in_use(&sys).await);

    // A root that did not sign the server's certificate is refused, and not retried forever.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other_path = std::env::temp_dir().join(format!("dbos-other-ca-{}.pem", std::process::id()));
    std::fs::write(&other_path, other.cert.pem()).unwrap();
    let url = with_params(
        &db.url(),
        &format!("sslmode=verify-full&sslrootcert={}", other_path.display()),
    );
    let options = ConnectOptions {
        retry_for: Duration::from_secs(1),
        ..Default::default()
    };
    let e = SystemDatabase::connect(&url, "dbos", &options)
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Connection | ErrorKind::Database),
        "{e:?}"
    );
    std::fs::remove_file(other_path).unwrap();
}

#[dbos_testkit::test]
async fn a_missing_database_is_created(db: TestDatabase) {
    let url = db.sibling_url("created");
    let sys = SystemDatabase::connect(&url, "dbos", &ConnectOptions::default())
        .await
        .unwrap();
    assert_eq!(sys.database_name(), format!("{}_created", db.name()));
    sys.migrate().await.unwrap();
    assert_eq!(sys.schema_version().await.unwrap(), Some(125));
}

#[dbos_testkit::test]
async fn a_wrong_password_is_a_clear_error_without_the_password(db: TestDatabase) {
    let url = db
        .url()
        .replacen("postgres://postgres:", "postgres://postgres:wrong-", 1);
    let e = SystemDatabase::connect(&url, "dbos", &ConnectOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Database);
    let msg = e.to_string();
    assert!(msg.contains("password authentication failed"), "{msg}");
    assert!(!msg.contains("wrong-"), "the password leaked: {msg}");
    assert!(msg.contains("postgres:***@"), "{msg}");
}

/// A TCP proxy in front of the server that drops the first `refuse` connections.
async fn flaky_proxy(target_port: u16, refuse: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            seen += 1;
            if seen <= refuse {
                let _ = inbound.shutdown().await;
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target_port)).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    port
}

#[dbos_testkit::test]
async fn transient_connection_failures_are_retried(db: TestDatabase) {
    let server_port = db.cluster().postgres().port();
    let proxy_port = flaky_proxy(server_port, 3).await;
    let url = db
        .url()
        .replace(&format!(":{server_port}/"), &format!(":{proxy_port}/"));
    let sys = SystemDatabase::connect(&url, "dbos", &ConnectOptions::default())
        .await
        .unwrap();
    sys.migrate().await.unwrap();
    assert_eq!(sys.schema_version().await.unwrap(), Some(125));
}

#[dbos_testkit::test]
async fn an_unreachable_server_is_a_connection_error_after_the_retry_window(_db: TestDatabase) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let options = ConnectOptions {
        retry_for: Duration::from_millis(500),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let e = SystemDatabase::connect(
        &format!("postgres://u:p@127.0.0.1:{port}/x"),
        "dbos",
        &options,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connection, "{e:?}");
    assert!(e.is_transient());
    assert!(started.elapsed() < Duration::from_secs(5));
}
