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

/// A PEM file holding a self-signed root, named unlike the server's certificate, that signed
/// nothing the server presents.
fn unrelated_root() -> tempfile_path::TempPem {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "an unrelated test root");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    tempfile_path::TempPem::write(&cert.pem())
}

mod tempfile_path {
    /// A file under the temp folder, removed when dropped.
    pub(super) struct TempPem(pub(super) std::path::PathBuf);

    impl TempPem {
        pub(super) fn write(pem: &str) -> TempPem {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "dbos-other-ca-{}-{}.pem",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, pem).unwrap();
            TempPem(path)
        }
    }

    impl Drop for TempPem {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// The test URL with its host name replaced. The cluster's certificate names `localhost` and
/// `127.0.0.1`; for any other name, `hostaddr=127.0.0.1` still reaches the server while the
/// name is what TLS checks (libpq's rule, and tokio-postgres's).
fn with_host(url: &str, host: &str) -> String {
    let at = url.rfind('@').expect("the test URL has credentials");
    let rest = &url[at + 1..];
    let port = rest.find(':').expect("the test URL has a port");
    format!("{}@{host}{}", &url[..at], &rest[port..])
}

/// The host of the test URL.
fn host_of(url: &str) -> &str {
    let rest = &url[url.rfind('@').expect("credentials") + 1..];
    &rest[..rest.find(':').expect("port")]
}

/// The options of a connect that must fail: a generous retry window, so a failure that was
/// retried instead of reported at once would be seen in the time it took.
fn patient() -> ConnectOptions {
    ConnectOptions {
        retry_for: Duration::from_secs(20),
        ..Default::default()
    }
}

/// Connects, expecting a TLS error reported at once (well within the retry window).
async fn expect_tls_error(url: &str) -> dbos_core::Error {
    let started = std::time::Instant::now();
    let e = SystemDatabase::connect(url, "dbos", &patient())
        .await
        .expect_err("the connection must be refused");
    let took = started.elapsed();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e:?}");
    assert!(!e.is_transient(), "a certificate problem is not transient");
    assert!(
        took < Duration::from_secs(5),
        "reported after {took:?}: it was retried instead of failing at once"
    );
    e
}

#[dbos_testkit::test]
async fn sslmode_verify_full_checks_the_chain_and_the_host_name(db: TestDatabase) {
    let ca = db.cluster().ca_certificate();
    assert_eq!(host_of(&db.url()), "127.0.0.1");

    // The root that signed the server's certificate, and a host the certificate names.
    for host in ["127.0.0.1", "localhost"] {
        let url = with_params(
            &with_host(&db.url(), host),
            &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
        );
        let sys = SystemDatabase::connect(&url, "dbos", &ConnectOptions::default())
            .await
            .unwrap_or_else(|e| panic!("verify-full with the right root, host {host}: {e}"));
        assert!(ssl_in_use(&sys).await);
    }

    // A root that did not sign it: refused at once, saying what to fix.
    let other = unrelated_root();
    let url = with_params(
        &db.url(),
        &format!("sslmode=verify-full&sslrootcert={}", other.0.display()),
    );
    let e = expect_tls_error(&url).await;
    let msg = e.to_string();
    assert!(msg.contains("invalid peer certificate"), "{msg}");
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    assert!(
        msg.contains("sslrootcert") && msg.contains("sslmode=require"),
        "{msg}"
    );
    let password = db
        .url()
        .split(':')
        .nth(2)
        .and_then(|p| p.split('@').next())
        .unwrap_or_default()
        .to_owned();
    assert!(
        password.len() > 3 && !msg.contains(&password),
        "the password leaked: {msg}"
    );

    // The right root, but a host name the certificate does not name.
    let url = with_params(
        &with_host(&db.url(), "db.example.invalid"),
        &format!(
            "hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
            ca.display()
        ),
    );
    let e = expect_tls_error(&url).await;
    let msg = e.to_string();
    assert!(
        msg.contains("certificate not valid for name \"db.example.invalid\""),
        "{msg}"
    );
    assert!(msg.contains("sslmode=verify-ca"), "{msg}");
}

#[dbos_testkit::test]
async fn sslmode_verify_ca_checks_the_chain_but_not_the_host_name(db: TestDatabase) {
    let ca = db.cluster().ca_certificate();
    // A host name the certificate does not name: verify-ca accepts it.
    let url = with_params(
        &with_host(&db.url(), "db.example.invalid"),
        &format!(
            "hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert={}",
            ca.display()
        ),
    );
    let sys = SystemDatabase::connect(&url, "dbos", &ConnectOptions::default())
        .await
        .unwrap_or_else(|e| panic!("verify-ca ignores the host name: {e}"));
    assert!(ssl_in_use(&sys).await);

    // But not a chain that leads to an untrusted root.
    let other = unrelated_root();
    let url = with_params(
        &db.url(),
        &format!("sslmode=verify-ca&sslrootcert={}", other.0.display()),
    );
    let e = expect_tls_error(&url).await;
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
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

/// A server that accepts every connection and closes it at once (a Postgres that is not
/// ready), recording when each attempt arrived.
async fn closing_server() -> (
    u16,
    std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let attempts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = attempts.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            seen.lock().unwrap().push(std::time::Instant::now());
            let _ = socket.shutdown().await;
        }
    });
    (port, attempts)
}

#[dbos_testkit::test]
async fn an_unreachable_server_is_a_connection_error_after_the_retry_window(_db: TestDatabase) {
    let (port, attempts) = closing_server().await;
    let window = Duration::from_secs(2);
    let options = ConnectOptions {
        retry_for: window,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let e = SystemDatabase::connect(
        &format!("postgres://u:p@127.0.0.1:{port}/x?sslmode=disable"),
        "dbos",
        &options,
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.kind(), ErrorKind::Connection, "{e:?}");
    assert!(e.is_transient());

    // It retried, with growing waits (50 ms, then doubling), for most of the window...
    let at: Vec<Duration> = attempts
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.duration_since(started))
        .collect();
    assert!(at.len() >= 4, "only {} attempts: {at:?}", at.len());
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] > g[0]),
        "the waits between attempts grow: {gaps:?}"
    );
    assert!(
        took >= window / 2,
        "gave up after {took:?}, long before the {window:?} window"
    );
    // ...and then gave up: it stops before a wait would cross the window, and tries no more.
    assert!(
        *at.last().unwrap() <= window && took < window + Duration::from_secs(3),
        "kept trying past the window: attempts at {at:?}, error after {took:?}"
    );
    let count = at.len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        attempts.lock().unwrap().len(),
        count,
        "no attempt after the error"
    );
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn quick() -> ConnectOptions {
    ConnectOptions {
        retry_for: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// `fn main() -> Result<(), dbos_core::Error>` prints the error's `Debug`: it must read as a
/// message (no `Error { kind: .. }` struct dump, no `DbError { file: Some("auth.c") .. }`).
fn assert_reads_like_a_message(e: &dbos_core::Error) {
    let debug = format!("{e:?}");
    assert!(debug.starts_with(&e.to_string()), "{debug}");
    for dump in ["Error {", "kind:", "DbError", "Some("] {
        assert!(!debug.contains(dump), "a struct dump: {debug}");
    }
}

#[dbos_testkit::test]
async fn a_refused_port_says_connection_refused(_db: TestDatabase) {
    let port = closed_port();
    let e = SystemDatabase::connect(
        &format!("postgres://u:p@127.0.0.1:{port}/x?sslmode=disable"),
        "dbos",
        &quick(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connection, "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("connection refused"), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert_reads_like_a_message(&e);
}

#[dbos_testkit::test]
async fn an_unknown_host_says_it_cannot_be_resolved(_db: TestDatabase) {
    let e = SystemDatabase::connect(
        "postgres://u:p@no-such-host.invalid:5432/x?sslmode=disable",
        "dbos",
        &quick(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connection, "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("could not resolve the host name `no-such-host.invalid`"),
        "{msg}"
    );
    assert_reads_like_a_message(&e);
}

#[dbos_testkit::test]
async fn a_url_without_a_password_says_so(db: TestDatabase) {
    let url = db.url();
    let at = url.rfind('@').unwrap();
    let no_password = format!("postgres://postgres@{}", &url[at + 1..]);
    let e = SystemDatabase::connect(&no_password, "dbos", &quick())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("asks for a password") && msg.contains("postgres://user:PASSWORD@"),
        "{msg}"
    );
    assert_reads_like_a_message(&e);
}

#[dbos_testkit::test]
async fn a_refused_password_reads_like_a_message(db: TestDatabase) {
    let url = db
        .url()
        .replacen("postgres://postgres:", "postgres://postgres:wrong-", 1);
    let e = SystemDatabase::connect(&url, "dbos", &quick())
        .await
        .unwrap_err();
    assert_reads_like_a_message(&e);
    assert!(format!("{e:?}").contains("password authentication failed"));
}

#[dbos_testkit::test]
async fn a_launch_waiting_for_a_database_says_so_once(_db: TestDatabase) {
    use tracing::instrument::WithSubscriber;
    let logs = dbos_testkit::logs::CapturedLogs::default();
    let subscriber = logs.subscriber("info");
    let port = closed_port();
    let config = dbos_core::Config::new("waiting")
        .system_database_url(format!("postgres://u:p@127.0.0.1:{port}/x?sslmode=disable"))
        .connect_retry_for(Duration::from_secs(2));
    let e = dbos_core::Dbos::launch(config)
        .with_subscriber(subscriber)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connection, "{e:?}");
    let text = logs.text();
    let waiting: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("waiting for the system database"))
        .collect();
    assert_eq!(waiting.len(), 1, "said once: {text}");
    assert!(waiting[0].contains("INFO"), "{text}");
    assert!(waiting[0].contains("connection refused"), "{text}");
    assert!(waiting[0].contains(&format!("127.0.0.1:{port}")), "{text}");
}

static OUTAGE_GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Waits for the test's go, so its checkpoint is written during the outage.
#[dbos_core::step]
async fn finishes_during_the_outage() -> Result<u32, dbos_core::Error> {
    OUTAGE_GATE.notified().await;
    Ok(1)
}

#[dbos_core::workflow]
async fn checkpoints_during_the_outage() -> Result<u32, dbos_core::Error> {
    finishes_during_the_outage().await
}

static OUTAGE_TX_GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[dbos_core::transaction]
async fn reads_during_the_outage(tx: &dbos_core::Transaction<'_>) -> Result<i32, dbos_core::Error> {
    let row = tx
        .query_one("SELECT 1", &[])
        .await
        .map_err(|e| dbos_core::Error::new(ErrorKind::Database, e.to_string()))?;
    Ok(row.get(0))
}

/// Waits (in memory) for the test's go, so its transaction begins during the outage.
#[dbos_core::workflow]
async fn transacts_during_the_outage() -> Result<i32, dbos_core::Error> {
    OUTAGE_TX_GATE.notified().await;
    reads_during_the_outage().await
}

/// A launched runtime retries a statement (or a transaction's connection) for as long as the
/// database is unreachable, except once it shuts down: then the work that cannot reach the
/// database stays PENDING for recovery and the shutdown does not wait for it (workflows.md,
/// "Shutdown").
#[dbos_testkit::test]
async fn a_shutdown_during_an_outage_does_not_wait_for_the_database(db: TestDatabase) {
    let proxy = dbos_testkit::proxy::Proxy::start(db.cluster().postgres().port()).await;
    let dbos = dbos_core::Dbos::launch(
        db.config("testapp")
            .system_database_url(proxy.url(&db.url())),
    )
    .await
    .unwrap();
    let _running = checkpoints_during_the_outage()
        .id("outage-shutdown")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let _transacting = transacts_during_the_outage()
        .id("outage-shutdown-tx")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let client = db.connect().await;
    dbos_testkit::crash::eventually("the step to run", Duration::from_secs(20), || async {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid LIKE 'outage-shutdown%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (n == 2).then_some(())
    })
    .await;
    proxy.refuse(true);
    proxy.cut_all();
    OUTAGE_GATE.notify_one();
    OUTAGE_TX_GATE.notify_one();
    // Let the checkpoint fail and start retrying.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let timeout = Duration::from_secs(60);
    let started = std::time::Instant::now();
    dbos.shutdown_with_timeout(timeout).await.unwrap();
    // Retrying until the timeout would take all of it (the documented promise is only that
    // the shutdown does not wait for the database: half the timeout is a generous bound).
    assert!(
        started.elapsed() < timeout / 2,
        "the shutdown waited {:?} for an unreachable database",
        started.elapsed()
    );
    let (pending, checkpoints): (i64, i64) = client
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'PENDING'),
                    (SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid LIKE 'outage-shutdown%')
               FROM dbos.workflow_status WHERE workflow_uuid LIKE 'outage-shutdown%'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((pending, checkpoints), (2, 0));
}
