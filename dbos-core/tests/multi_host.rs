//! URLs naming several servers (`postgres://u:p@db1:5432,db2:5432/sys`): hosts are tried in
//! order, each for at most the connect timeout; TLS checks each host's own name; a missing
//! database is created through them; and when no host accepts, the error says what each
//! one answered, without the password. (Failing over between a real primary and standby is
//! `tests/failover.rs`.)

use std::time::{Duration, Instant};

use dbos_core::sysdb::{ConnectOptions, SystemDatabase};
use dbos_core::ErrorKind;
use dbos_testkit::TestDatabase;

/// A port on 127.0.0.1 where nothing listens: connections are refused.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A server that accepts TCP connections and never answers, like a Postgres whose
/// postmaster is frozen (the kernel still completes the handshake).
async fn hung_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    port
}

/// The test database's URL with `hosts` (`host:port,host:port`) in place of its one host.
fn with_hosts(db: &TestDatabase, url: &str, hosts: &str) -> String {
    let own = format!("127.0.0.1:{}", db.cluster().postgres().port());
    assert!(url.contains(&own), "{url}");
    url.replacen(&own, hosts, 1)
}

fn password(db: &TestDatabase) -> String {
    let url = db.url();
    let rest = url.strip_prefix("postgres://postgres:").unwrap();
    rest[..rest.find('@').unwrap()].to_owned()
}

fn short_retry() -> ConnectOptions {
    ConnectOptions {
        retry_for: Duration::from_millis(800),
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

#[dbos_testkit::test]
async fn a_refusing_first_host_is_skipped(db: TestDatabase) {
    let port = db.cluster().postgres().port();
    let down = closed_port();
    let url = with_hosts(
        &db,
        &db.url(),
        &format!("127.0.0.1:{down},127.0.0.1:{port}"),
    );
    let sys = SystemDatabase::connect(&url, "dbos", &ConnectOptions::default())
        .await
        .unwrap();
    sys.migrate().await.unwrap();
    assert_eq!(sys.schema_version().await.unwrap(), Some(125));
    assert_eq!(
        sys.redacted_url(),
        format!(
            "postgres://postgres:***@127.0.0.1:{down},127.0.0.1:{port}/{}",
            db.name()
        )
    );
}

#[dbos_testkit::test]
async fn a_host_that_never_answers_costs_one_connect_timeout_then_is_passed_over(db: TestDatabase) {
    let port = db.cluster().postgres().port();
    let hung = hung_port().await;
    let url = with_hosts(
        &db,
        &db.url(),
        &format!("127.0.0.1:{hung},127.0.0.1:{port}"),
    );
    let options = ConnectOptions {
        connect_timeout: Duration::from_secs(1),
        retry_for: Duration::from_secs(20),
        pool_size: 4,
        ..Default::default()
    };
    let started = Instant::now();
    let sys = SystemDatabase::connect(&url, "dbos", &options)
        .await
        .expect("the second host is reached once the first has had its connect timeout");
    let first = started.elapsed();
    assert!(
        first >= Duration::from_secs(1),
        "the hung host was not tried first: connected in {first:?}"
    );
    // More connections go to the host that accepted, without waiting on the hung one.
    let started = Instant::now();
    let clients = futures_util::future::try_join_all((0..4).map(|_| sys.client()))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "new connections waited on the hung host again: {:?}",
        started.elapsed()
    );
    for c in &clients {
        let row = c.query_one("SELECT inet_server_port()", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i32::from(port));
    }
}

#[dbos_testkit::test]
async fn when_no_host_accepts_the_error_says_what_each_one_answered(db: TestDatabase) {
    let port = db.cluster().postgres().port();
    let secret = password(&db);
    let down = closed_port();

    // One refuses, the other is read-only (as a standby is): neither takes a read-write session.
    let url = with_hosts(
        &db,
        &format!(
            "{}?options=-c%20default_transaction_read_only%3Don",
            db.url()
        ),
        &format!("127.0.0.1:{down},localhost:{port}"),
    );
    let e = SystemDatabase::connect(&url, "dbos", &short_retry())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connection, "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("no host accepted the connection"), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{down}: ")), "{msg}");
    assert!(msg.contains("refused"), "{msg}");
    assert!(
        msg.contains(&format!("localhost:{port}: read-only (a standby")),
        "{msg}"
    );
    assert!(!msg.contains(&secret), "the password leaked: {msg}");

    // With `any`, the read-only host is accepted: the user asked for it.
    let any = format!("{url}&target_session_attrs=any");
    SystemDatabase::connect(&any, "dbos", &short_retry())
        .await
        .unwrap();

    // A wrong password on every host is reported at once, naming the hosts.
    let url = with_hosts(
        &db,
        &db.url().replacen(&secret, "wrong-pw", 1),
        &format!("127.0.0.1:{port},localhost:{port}"),
    );
    let started = Instant::now();
    let e = SystemDatabase::connect(&url, "dbos", &ConnectOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Database, "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "retried a permanent failure"
    );
    let msg = e.to_string();
    assert!(msg.contains("password authentication failed"), "{msg}");
    assert!(
        msg.contains(&format!("127.0.0.1:{port}: password authentication failed")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("localhost:{port}: password authentication failed")),
        "{msg}"
    );
    assert!(!msg.contains("wrong-pw"), "{msg}");
}

#[dbos_testkit::test]
async fn verify_full_checks_each_host_against_its_own_name(db: TestDatabase) {
    let port = db.cluster().postgres().port();
    let down = closed_port();
    let tls = format!(
        "sslmode=verify-full&sslrootcert={}",
        db.cluster().ca_certificate().display()
    );
    // `hostaddr` sends both to 127.0.0.1; the names are what the certificate is checked
    // against, and it is valid for `localhost` only (and 127.0.0.1).
    let url = |hosts: &str| {
        with_hosts(
            &db,
            &format!("{}?hostaddr=127.0.0.1,127.0.0.1&{tls}", db.url()),
            hosts,
        )
    };

    // The first host's name does not match: that host is passed over, the second matches.
    let sys = SystemDatabase::connect(
        &url(&format!("wrong.invalid:{port},localhost:{port}")),
        "dbos",
        &short_retry(),
    )
    .await
    .expect("the second host's own name is checked, and matches");
    let client = sys.client().await.unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);

    // The first host matches but is down; the second is checked against its own name and
    // refused for it.
    let e = SystemDatabase::connect(
        &url(&format!("localhost:{down},wrong.invalid:{port}")),
        "dbos",
        &short_retry(),
    )
    .await
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("wrong.invalid (127.0.0.1):{port}: ")),
        "{msg}"
    );
    assert!(
        msg.contains(r#"certificate not valid for name "wrong.invalid""#),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("localhost (127.0.0.1):{down}: ")),
        "{msg}"
    );
}

#[dbos_testkit::test]
async fn a_missing_database_is_created_through_several_hosts(db: TestDatabase) {
    let port = db.cluster().postgres().port();
    let down = closed_port();
    let url = with_hosts(
        &db,
        &db.sibling_url("multi"),
        &format!("127.0.0.1:{down},127.0.0.1:{port}"),
    );
    let sys = SystemDatabase::connect(&url, "dbos", &ConnectOptions::default())
        .await
        .unwrap();
    assert_eq!(sys.database_name(), format!("{}_multi", db.name()));
    sys.migrate().await.unwrap();
    let admin = db.connect().await;
    let found: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&format!("{}_multi", db.name())],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 1);

    // The database is missing and the only live host is read-only (a standby, say): the
    // error says it could not be created, and what each host answered.
    let url = with_hosts(
        &db,
        &format!(
            "{}?options=-c%20default_transaction_read_only%3Don",
            db.sibling_url("never")
        ),
        &format!("127.0.0.1:{down},127.0.0.1:{port}"),
    );
    let e = SystemDatabase::connect(&url, "dbos", &short_retry())
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("does not exist and the `postgres` database to create it from is unreachable"),
        "{msg}"
    );
    assert!(msg.contains(&format!("127.0.0.1:{down}: ")), "{msg}");
    assert!(
        msg.contains(&format!("127.0.0.1:{port}: read-only")),
        "{msg}"
    );
}
