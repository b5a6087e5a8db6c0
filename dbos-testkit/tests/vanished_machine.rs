//! A machine that vanishes without closing its connections (power loss, a cut cable, a VM
//! destroyed) sends no FIN and no RST: Postgres keeps its sessions, and the executor lock
//! they hold, until TCP gives up on them. With the server's default keepalives that is over
//! two hours; the lock session asks for `Config::vanished_executor_timeout` instead.
//!
//! The vanishing machine is a worker process in its own network namespace, joined to the
//! host by a veth pair: the test takes the namespace's link down, then kills the process
//! (its kernel's FIN and RST go nowhere). Needs root (`ip netns`); CI runs as root.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dbos_core::local_postgres::LocalPostgres;
use dbos_testkit::cluster::cluster_dir;
use dbos_testkit::crash::{eventually, ChildProcess};
use serde_json::json;

const WORKER: &str = env!("CARGO_BIN_EXE_dbos-queue-worker");

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A network namespace joined to the host by a veth pair: host side `.1`, inside `.2`.
struct Namespace {
    name: String,
    host_link: String,
    inner_link: String,
    subnet: u8,
}

impl Namespace {
    fn create() -> Result<Namespace, String> {
        let pid = std::process::id();
        let ns = Namespace {
            name: format!("dbos-vanish-{pid}"),
            host_link: format!("dv{}h", pid % 100_000),
            inner_link: format!("dv{}i", pid % 100_000),
            subnet: (pid % 200) as u8 + 20,
        };
        let (host, inner) = (ns.host_addr(), ns.inner_addr());
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &ns.inner_link,
        ])?;
        ip(&["link", "set", &ns.inner_link, "netns", &ns.name])?;
        ip(&["addr", "add", &format!("{host}/24"), "dev", &ns.host_link])?;
        ip(&["link", "set", &ns.host_link, "up"])?;
        ns.inside(&["addr", "add", &format!("{inner}/24"), "dev", &ns.inner_link])?;
        ns.inside(&["link", "set", &ns.inner_link, "up"])?;
        ns.inside(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn host_addr(&self) -> String {
        format!("10.231.{}.1", self.subnet)
    }

    fn inner_addr(&self) -> String {
        format!("10.231.{}.2", self.subnet)
    }

    fn inside(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// The machine drops off the network: nothing it sends arrives, nothing reaches it.
    fn cut(&self) {
        self.inside(&["link", "set", &self.inner_link, "down"])
            .expect("take the namespace's link down");
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_link]);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_machine_s_work_is_recovered_by_a_peer_within_the_timeout() {
    if !is_root() {
        eprintln!(
            "SKIPPED: making a machine vanish needs root (a network namespace); CI runs as root"
        );
        return;
    }
    let ns =
        Arc::new(Namespace::create().expect("create a network namespace (needs root and `ip`)"));
    let mut server = LocalPostgres::builder(cluster_dir().join("vanished-machine"))
        .fresh(true)
        .ephemeral(true)
        .setting("listen_addresses", format!("127.0.0.1,{}", ns.host_addr()));
    if let Some(idle) = dbos_testkit::cluster::idle_limit() {
        server = server.stop_when_unused(idle);
    }
    let server = server
        .start()
        .await
        .expect("start a server listening on the namespace's link");
    let hba = server.root().join("data").join("pg_hba.conf");
    let mut rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    rules.push_str(&format!(
        "host all all 10.231.{}.0/24 scram-sha-256\n",
        ns.subnet
    ));
    std::fs::write(&hba, rules).expect("allow the namespace in pg_hba.conf");
    let (admin, conn) = tokio_postgres::connect(&server.url("postgres"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    admin.batch_execute("CREATE DATABASE vanish").await.unwrap();
    drop(admin);

    // The scenario runs in its own task so that the server and the namespace are cleaned
    // up whatever its outcome.
    let scenario = tokio::spawn(vanish(ns.clone(), server.url("vanish")));
    let outcome = tokio::time::timeout(Duration::from_secs(240), scenario).await;
    server.stop().await.unwrap();
    drop(ns);
    match outcome {
        Err(_) => panic!("the scenario did not finish within 4 minutes"),
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(r) => r.unwrap(),
    }
}

async fn vanish(ns: Arc<Namespace>, url: String) {
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE queue_events (id bigserial PRIMARY KEY, workflow_id text NOT NULL, executor text NOT NULL,
                                        started_ms bigint NOT NULL, ended_ms bigint)",
        )
        .await
        .unwrap();

    // The machine that will vanish reaches the server through the veth pair.
    let remote_url = url.replacen("127.0.0.1", &ns.host_addr(), 1);
    let doomed = ChildProcess::spawn(
        "ip",
        &["netns", "exec", &ns.name, WORKER],
        &[
            ("DBOS_SYSTEM_DATABASE_URL", remote_url.as_str()),
            ("DBOS__VMID", "dbos-rs-vanishing"),
            ("DBOS_TEST_RECOVERY_MS", "250"),
            ("DBOS_TEST_VANISH_SECS", "6"),
            ("RUST_LOG", "warn"),
        ],
    );
    // Its launch migrated the schema and took its lock, across the veth pair.
    let lock_from = eventually(
        "the far machine to hold its lock",
        Duration::from_secs(60),
        || async {
            client
                .query_opt(
                    "SELECT host(client_addr) FROM pg_stat_activity \
                      WHERE application_name = 'dbos-rs lock dbos-rs-vanishing'",
                    &[],
                )
                .await
                .unwrap()
                .map(|r| r.get::<_, String>(0))
        },
    )
    .await;
    assert_eq!(
        lock_from,
        ns.inner_addr(),
        "the lock session crosses the veth pair"
    );
    let producer = dbos_core::Client::builder(url.clone())
        .application_name("queue-subject")
        .connect()
        .await
        .unwrap();
    let ids: Vec<String> = (0..2).map(|i| format!("far-{i}")).collect();
    for id in &ids {
        producer
            .enqueue("job", "plain")
            .id(id.clone())
            .args(vec![json!(4_000)])
            .app_version("queue-subject-v1")
            .await
            .unwrap();
    }
    eventually(
        "the far machine to run both jobs",
        Duration::from_secs(60),
        || async {
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM queue_events WHERE executor = 'dbos-rs-vanishing'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (n == 2).then_some(())
        },
    )
    .await;
    // A live peer on this machine, past its grace before the cut.
    let peer = ChildProcess::spawn(
        WORKER,
        &[],
        &[
            ("DBOS_SYSTEM_DATABASE_URL", url.as_str()),
            ("DBOS__VMID", "dbos-rs-peer"),
            ("DBOS_TEST_RECOVERY_MS", "250"),
            ("RUST_LOG", "warn"),
        ],
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    ns.cut();
    doomed.kill9().await; // its FIN and RST go nowhere
    let cut_at = Instant::now();
    let cut_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    eventually(
        "the peer to finish the vanished machine's jobs",
        Duration::from_secs(60),
        || async {
            let rows = client
                .query(
                    "SELECT executor_id FROM dbos.workflow_status WHERE workflow_uuid = ANY($1) AND status = 'SUCCESS'",
                    &[&ids],
                )
                .await
                .unwrap();
            (rows.len() == ids.len()).then(|| rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>())
        },
    )
    .await
    .iter()
    .for_each(|executor| assert_eq!(executor, "dbos-rs-peer"));
    let took = cut_at.elapsed();
    let first_recovered_ms: i64 = client
        .query_one(
            "SELECT min(started_ms) FROM queue_events WHERE executor = 'dbos-rs-peer'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let to_recovery = Duration::from_millis((first_recovered_ms - cut_ms).max(0) as u64);
    eprintln!(
        "vanished machine: first recovered step {to_recovery:?} after the cut, all done after {took:?} \
         (timeout 6 s, jobs 4 s)"
    );
    // The server's default keepalives would hold the lock for hours; the session's own probes end
    // it about 6 s after its last traffic, then the peer's next look (250 ms) recovers.
    assert!(
        to_recovery <= Duration::from_secs(12),
        "the vanished executor's lock was held {to_recovery:?} after the cut"
    );

    peer.kill9().await;
}
