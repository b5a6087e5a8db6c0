//! Through a connection pooler (the real PgBouncer, started by the testkit): in session mode
//! everything works; in transaction mode, where named prepared statements, `LISTEN` and
//! session advisory locks do not survive from one transaction to the next, the pooler is
//! found at connection and every statement is sent unnamed: a client works as is, a runtime
//! with a session URL for its listener and executor lock. A runtime without one is refused
//! at once with an error naming the pooler mode and what to do, instead of failing later on
//! `prepared statement "s3" does not exist` or hanging.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use dbos_core::manage::ListWorkflows;
use dbos_core::prelude::*;
use dbos_core::{Queue, Status, WorkflowCall};
use dbos_testkit::crash::{eventually, IsolatedRuntime};
use dbos_testkit::logs::CapturedLogs;
use dbos_testkit::pgbouncer::{PgBouncer, PoolMode, SERVER_POOL_SIZE};
use dbos_testkit::TestDatabase;

#[step]
async fn add(a: i64, b: i64) -> Result<i64, dbos_core::Error> {
    Ok(a + b)
}

#[workflow]
async fn two_steps(x: i64) -> Result<i64, dbos_core::Error> {
    let y = add(x, 1).await?;
    add(y, 10).await
}

static SERVED: Queue = Queue::new("served");

/// Bounds every launch here: a pooler must never make one hang.
const BOUND: Duration = Duration::from_secs(60);

#[dbos_testkit::test(timeout = "180s")]
async fn a_client_through_a_transaction_mode_pooler_sends_its_statements_unnamed(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").queue(&SERVED))
        .await
        .unwrap();
    two_steps(1).id("direct-wf").on(&dbos).await.unwrap();
    let bouncer = PgBouncer::start(db.cluster(), PoolMode::Transaction).await;
    let client = tokio::time::timeout(
        BOUND,
        dbos_core::client::Client::connect(bouncer.url(&db.url())),
    )
    .await
    .expect("a client connecting through a transaction-mode pooler must not hang")
    .expect("a client through a transaction-mode pooler");
    // Many statements on few server connections, from several tasks at once: a named
    // statement would be missing on the next server, or already there.
    let mut reads = Vec::new();
    for _ in 0..8 {
        let client = client.clone();
        reads.push(tokio::spawn(async move {
            for _ in 0..10 {
                let status = client.get_workflow_status("direct-wf").await.unwrap();
                assert_eq!(status, Status::Success);
            }
        }));
    }
    for r in reads {
        r.await.unwrap();
    }
    // Enqueued through the pooler, run by the direct runtime, awaited through the pooler.
    let handle = client
        .enqueue_workflow(two_steps(2).id("client-wf"), &SERVED)
        .await
        .unwrap();
    assert_eq!(handle.result().await.unwrap(), 13);
    let listed = client
        .list_workflows(&ListWorkflows::new().id_prefix("client-"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn inbox() -> Result<(i64, i64), dbos_core::Error> {
    dbos_core::set_event("ready", &true).await?;
    let a: i64 = dbos_core::recv("n", Duration::from_secs(60))
        .await?
        .unwrap_or(-1);
    let b: i64 = dbos_core::recv("n", Duration::from_secs(60))
        .await?
        .unwrap_or(-1);
    dbos_core::set_event("sum", &(a + b)).await?;
    Ok((a, b))
}

#[dbos_testkit::test(timeout = "300s")]
async fn a_runtime_with_a_session_url_works_through_a_transaction_mode_pooler(db: TestDatabase) {
    through_the_pooler(&db, true).await;
}

#[dbos_testkit::test(timeout = "300s")]
async fn a_runtime_without_a_session_url_works_through_a_transaction_mode_pooler(db: TestDatabase) {
    through_the_pooler(&db, false).await;
    // No session: no listener, no lock session; the executor held a lease.
    let sessions: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND (application_name = 'dbos_listener' OR application_name LIKE 'dbos-rs lock %')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sessions, 0);
}

/// Workflows (direct and queued), messages, events and a listing through PgBouncer in
/// transaction mode with 5 server connections and a pool of 10; `session`: with a session
/// URL (else waits poll and the executor holds a lease).
async fn through_the_pooler(db: &TestDatabase, session: bool) {
    let bouncer = PgBouncer::start(db.cluster(), PoolMode::Transaction).await;
    let mut config = db
        .config("pooled")
        .system_database_url(bouncer.url(&db.url()))
        .pool_size(10)
        .queue(&SERVED);
    if session {
        config = config.session_url(db.url());
    }
    let dbos = tokio::time::timeout(BOUND, Dbos::launch(config))
        .await
        .expect("launch through a transaction-mode pooler must not hang")
        .expect("launch through a transaction-mode pooler");
    // Workflows started at once, directly and through a queue, on 10 client connections
    // sharing 5 server connections.
    let mut runs = Vec::new();
    for i in 0..20_i64 {
        let dbos = dbos.clone();
        runs.push(tokio::spawn(async move {
            let direct = two_steps(i).id(format!("tx-direct-{i}")).on(&dbos).await?;
            let queued = two_steps(i)
                .id(format!("tx-queued-{i}"))
                .on(&dbos)
                .enqueue(&SERVED)
                .await?
                .result()
                .await?;
            Ok::<_, dbos_core::Error>((direct, queued))
        }));
    }
    for (i, r) in runs.into_iter().enumerate() {
        let (direct, queued) = tokio::time::timeout(BOUND, r)
            .await
            .expect("a workflow through the pooler must not hang")
            .unwrap()
            .unwrap();
        assert_eq!((direct, queued), (i as i64 + 11, i as i64 + 11));
    }
    // Messages and events, woken by the listener on the session URL.
    let handle = inbox().id("tx-inbox").on(&dbos).start().await.unwrap();
    let ready: Option<bool> = dbos
        .get_event("tx-inbox", "ready", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(ready, Some(true));
    // Sent by another process (a client on the direct URL): only the listener, or polling
    // without one, wakes the receiver.
    let sender = dbos_core::client::Client::connect(db.url()).await.unwrap();
    // The receiver is waiting by now (it set `ready` just before its `recv`).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = std::time::Instant::now();
    sender.send("tx-inbox", &4_i64, "n").await.unwrap();
    sender.send("tx-inbox", &5_i64, "n").await.unwrap();
    assert_eq!(handle.result().await.unwrap(), (4, 5));
    // Woken by the listener, or by the 100 ms polling without one: well before the
    // 30 s safety re-check of a wait that nothing wakes.
    let took = sent.elapsed();
    eprintln!(
        "messages from another process received {took:?} after sending (session URL: {session})"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    let sum: Option<i64> = dbos
        .get_event("tx-inbox", "sum", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(sum, Some(9));
    // Management through the pooler.
    let listed = dbos
        .list_workflows(&ListWorkflows::new().id_prefix("tx-"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 41);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test(timeout = "180s")]
async fn a_transaction_mode_pooler_with_one_server_connection_is_found_without_waiting(
    db: TestDatabase,
) {
    // One server connection: while the check's second connection holds it in a
    // transaction, a statement on the first would wait for it (until PgBouncer's
    // query_wait_timeout, two minutes) — the check must not send one.
    let bouncer = PgBouncer::start_with_pool(db.cluster(), PoolMode::Transaction, 1).await;
    let config = db
        .config("pooled")
        .system_database_url(bouncer.url(&db.url()));
    let dbos = tokio::time::timeout(BOUND, Dbos::launch(config))
        .await
        .expect("launch through a one-connection transaction-mode pooler must not hang")
        .expect("launch through a one-connection transaction-mode pooler");
    let out = tokio::time::timeout(BOUND, two_steps(1).id("one-server").on(&dbos))
        .await
        .expect("a workflow through one server connection must not hang")
        .unwrap();
    assert_eq!(out, 12);
    dbos.shutdown().await.unwrap();
}

static ENTERED: AtomicU32 = AtomicU32::new(0);
static RELEASE: AtomicBool = AtomicBool::new(false);

/// Holds its workflow until the test releases it.
#[step]
async fn hold() -> Result<(), dbos_core::Error> {
    ENTERED.fetch_add(1, Ordering::SeqCst);
    while !RELEASE.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[workflow]
async fn held(i: i64) -> Result<i64, dbos_core::Error> {
    hold().await?;
    Ok(i)
}

/// The executors owning the `leased-` workflows.
async fn owners(db: &TestDatabase) -> Vec<String> {
    texts(
        db,
        "SELECT DISTINCT executor_id FROM dbos.workflow_status WHERE workflow_uuid LIKE 'leased-%'",
    )
    .await
}

/// The first column of `sql`'s rows.
async fn texts(db: &TestDatabase, sql: &str) -> Vec<String> {
    db.connect()
        .await
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Short lease and recovery timings, through `bouncer`, no session URL.
fn leased(db: &TestDatabase, bouncer: &PgBouncer) -> dbos_core::Config {
    db.config("leased")
        .system_database_url(bouncer.url(&db.url()))
        .pool_size(10)
        .vanished_executor_timeout(Duration::from_secs(3))
        .recovery_interval(Duration::from_millis(500))
        .recovery_grace(Duration::from_secs(2))
}

/// Executor A: launched with a lease (`leased`, behind `bouncer`) on a runtime of its own, it
/// starts `workflow(0..3)` with ids `{prefix}0..3` and is kept alive with its runtime until
/// the test aborts it. Returns, with the runtime and A's executor id, once `entered` says the
/// three are held in their step.
async fn a_lease_executor_holding_three(
    db: &TestDatabase,
    bouncer: &PgBouncer,
    workflow: fn(i64) -> WorkflowCall<i64, dbos_core::Error>,
    prefix: &'static str,
    entered: &AtomicU32,
) -> (IsolatedRuntime, String) {
    let a = IsolatedRuntime::new();
    let config = leased(db, bouncer);
    let a_id = a
        .run(async move {
            let dbos = Dbos::launch(config).await.unwrap();
            for i in 0..3 {
                workflow(i)
                    .id(format!("{prefix}{i}"))
                    .on(&dbos)
                    .start()
                    .await
                    .unwrap();
            }
            let id = dbos.executor_id().to_owned();
            // Kept alive with its runtime until the abort.
            std::mem::forget(dbos);
            id
        })
        .await;
    eventually("A's three steps run", BOUND, || async {
        (entered.load(Ordering::SeqCst) == 3).then_some(())
    })
    .await;
    // Through the pooler without a session URL A holds a lease, not a lock: what both tests
    // are about (without this, A on a lock passes the recovery test just as well).
    eventually("A to hold a lease", BOUND, || async {
        leases(db).await.contains(&a_id).then_some(())
    })
    .await;
    (a, a_id)
}

#[dbos_testkit::test(timeout = "300s")]
async fn a_killed_executor_s_work_is_recovered_through_a_pooler_without_a_session_url(
    db: TestDatabase,
) {
    let bouncer = PgBouncer::start(db.cluster(), PoolMode::Transaction).await;
    // Executor A runs three workflows, held in their step.
    let (a, a_id) = a_lease_executor_holding_three(&db, &bouncer, held, "leased-", &ENTERED).await;
    // B and C live beside A for three lease times: A's lease is renewed, its work stays.
    let b = Dbos::launch(leased(&db, &bouncer)).await.unwrap();
    let c = Dbos::launch(leased(&db, &bouncer)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(
        ENTERED.load(Ordering::SeqCst),
        3,
        "a live executor's work was taken"
    );
    assert_eq!(owners(&db).await, vec![a_id.clone()]);
    // A dies (its connections cut, nothing released): B or C takes its work once its lease
    // expires, within the lease time plus a recovery interval or two.
    a.abort();
    RELEASE.store(true, Ordering::SeqCst);
    let killed = std::time::Instant::now();
    eventually("A's workflows finish elsewhere", BOUND, || async {
        let done: i64 = db
            .connect()
            .await
            .query_one(
                "SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid LIKE 'leased-%' AND status = 'SUCCESS'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (done == 3).then_some(())
    })
    .await;
    let took = killed.elapsed();
    eprintln!("A's work recovered and finished {took:?} after the kill (lease 3 s)");
    assert!(ENTERED.load(Ordering::SeqCst) >= 4);
    for owner in owners(&db).await {
        assert!(
            owner == b.executor_id() || owner == c.executor_id(),
            "{owner}"
        );
    }
    // The peer that recovered A's work deleted A's lease.
    assert!(!leases(&db).await.contains(&a_id));
    b.shutdown().await.unwrap();
    c.shutdown().await.unwrap();
}

/// The executors holding a row of the lease table, of the `leased` application.
async fn leases(db: &TestDatabase) -> Vec<String> {
    texts(
        db,
        "SELECT executor_id FROM dbos.dbos_rs_executor_leases WHERE application_name = 'leased' ORDER BY 1",
    )
    .await
}

#[dbos_testkit::test(timeout = "300s")]
async fn the_leases_of_killed_executors_are_deleted_so_restarts_do_not_grow_the_table(
    db: TestDatabase,
) {
    let bouncer = PgBouncer::start(db.cluster(), PoolMode::Transaction).await;
    // Three executors in turn, each killed (its runtime dropped, its connections cut,
    // nothing released) with no work left to recover: their leases stay behind.
    let mut killed = Vec::new();
    for _ in 0..3 {
        let rt = IsolatedRuntime::new();
        let config = leased(&db, &bouncer);
        let id = rt
            .run(async move {
                let dbos = Dbos::launch(config).await.unwrap();
                let id = dbos.executor_id().to_owned();
                std::mem::forget(dbos);
                id
            })
            .await;
        rt.abort();
        killed.push(id);
    }
    killed.sort();
    assert_eq!(leases(&db).await, killed);
    // A live executor deletes them once they have expired for a lease time and the recovery
    // grace (3 s + 2 s), and keeps its own.
    let live = Dbos::launch(leased(&db, &bouncer)).await.unwrap();
    let me = live.executor_id().to_owned();
    eventually(
        "the dead executors' leases to be deleted",
        BOUND,
        || async { (leases(&db).await == vec![me.clone()]).then_some(()) },
    )
    .await;
    // Its own lease, renewed, is never deleted.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(leases(&db).await, vec![me]);
    live.shutdown().await.unwrap();
    // A clean shutdown lets its lease go.
    assert_eq!(leases(&db).await, Vec::<String>::new());
}

#[dbos_testkit::test(timeout = "180s")]
async fn a_session_mode_pooler_runs_workflows_normally(db: TestDatabase) {
    // In session mode every client connection holds a server connection: the pooler's pool
    // must cover all of the runtime's (see the server count below).
    let bouncer = PgBouncer::start_with_pool(db.cluster(), PoolMode::Session, 30).await;
    let config = db
        .config("pooled")
        .system_database_url(bouncer.url(&db.url()));
    let dbos = tokio::time::timeout(BOUND, Dbos::launch(config))
        .await
        .expect("launch through a session-mode pooler must not hang")
        .expect("launch through a session-mode pooler");
    let out = tokio::time::timeout(BOUND, two_steps(5).id("pooled-wf").on(&dbos))
        .await
        .expect("the workflow must not hang")
        .unwrap();
    assert_eq!(out, 16);
    let steps = db
        .connect()
        .await
        .query(
            "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'pooled-wf'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(steps[0].get::<_, i64>(0), 2);
    let servers: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    eprintln!("server connections held for one runtime with pool_size 4: {servers}");
    // Not taken for a transaction-mode pooler: the executor holds its lock on a session of
    // its own, through the pooler (no session URL), rather than a lease.
    let lock_sessions: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
            &[&format!("dbos-rs lock {}", dbos.executor_id())],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(lock_sessions, 1);
    // The documented budget: the pool, its two side connections, the notification
    // listener and the executor lock.
    assert!(servers <= 4 + 4, "{servers} server connections");
    dbos.shutdown().await.unwrap();
}

/// The holder of `executor`'s lease, and whether it is unexpired.
async fn lease_of(db: &TestDatabase, executor: &str) -> Option<(String, bool)> {
    db.connect()
        .await
        .query_opt(
            "SELECT holder, expires_at > clock_timestamp() FROM dbos.dbos_rs_executor_leases WHERE executor_id = $1",
            &[&executor],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1)))
}

#[dbos_testkit::test(timeout = "300s")]
async fn an_executor_whose_lease_was_taken_takes_it_back_once_it_expires(db: TestDatabase) {
    let bouncer = PgBouncer::start(db.cluster(), PoolMode::Transaction).await;
    let dbos = Dbos::launch(leased(&db, &bouncer)).await.unwrap();
    let me = dbos.executor_id().to_owned();
    let mine = format!("{me}:");
    eventually("the executor to hold its lease", BOUND, || async {
        lease_of(&db, &me)
            .await
            .filter(|(holder, live)| holder.starts_with(&mine) && *live)
    })
    .await;
    // A peer takes it for 4 s, as after a partition longer than the lease: the executor's
    // next renewal finds it lost.
    db.connect()
        .await
        .execute(
            "UPDATE dbos.dbos_rs_executor_leases SET holder = 'a-peer', expires_at = clock_timestamp() + interval '4 seconds'
              WHERE executor_id = $1",
            &[&me],
        )
        .await
        .unwrap();
    // Once the peer's lease has expired, the executor takes its own back and renews it.
    eventually("the executor to take its lease back", BOUND, || async {
        lease_of(&db, &me)
            .await
            .filter(|(holder, _)| holder.starts_with(&mine))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (holder, live) = lease_of(&db, &me).await.expect("the lease");
    assert!(holder.starts_with(&mine) && live, "{holder} {live}");
    dbos.shutdown().await.unwrap();
}

/// The session advisory lock a migration of schema `dbos` takes (its key: the first 8 bytes
/// of sha256("dbos.migrate.dbos")).
const MIGRATION_LOCK: &str = "SELECT pg_advisory_lock(('x' || substr(encode(sha256('dbos.migrate.dbos'), 'hex'), 1, 16))::bit(64)::bigint)";

/// Executors launched at the same moment on a database without the lease table all start:
/// `CREATE TABLE IF NOT EXISTS` alone fails for all but one of concurrent creators (on the
/// table's row type, `type "dbos_rs_executor_leases" already exists`), which the chaos
/// program through the pooler met as a worker exiting at launch.
#[dbos_testkit::test(timeout = "300s")]
async fn executors_launched_at_once_through_a_pooler_all_create_or_find_the_lease_table(
    db: TestDatabase,
) {
    let bouncer = PgBouncer::start(db.cluster(), PoolMode::Transaction).await;
    // The schema first, so that the launches below meet only on the lease table.
    Dbos::launch(leased(&db, &bouncer))
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    // As many launches as the chaos program's workers (more at once than the pooler has
    // server connections: `more_launches_at_once_than_the_pooler_has_server_connections_all_finish`).
    for round in 0..20 {
        db.connect()
            .await
            .batch_execute("DROP TABLE dbos.dbos_rs_executor_leases")
            .await
            .unwrap();
        // The launches wait behind the schema's migration lock, held here, and go on to the
        // lease table together when it is released.
        let gate = db.connect().await;
        gate.batch_execute(MIGRATION_LOCK).await.unwrap();
        let launches =
            futures_util::future::join_all((0..3).map(|_| Dbos::launch(leased(&db, &bouncer))));
        let release = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            gate.batch_execute(&MIGRATION_LOCK.replace("pg_advisory_lock", "pg_advisory_unlock"))
                .await
                .unwrap();
        };
        let (launched, ()) = tokio::join!(launches, release);
        let mut started = Vec::new();
        for launched in launched {
            match launched {
                Ok(dbos) => started.push(dbos),
                Err(e) => panic!("round {round}: a launch failed: {e}"),
            }
        }
        for dbos in started {
            dbos.shutdown().await.unwrap();
        }
    }
}

/// More launches at once than the pooler has server connections all finish, and none waits
/// at the pooler for a server connection: a launch never holds one (a transaction open)
/// while it asks for another, which launches at once holding every server would wait for
/// among themselves until PgBouncer's `query_wait_timeout` (two minutes by default; a few
/// seconds here, so that such a stall fails the test at once).
#[dbos_testkit::test(timeout = "300s")]
async fn more_launches_at_once_than_the_pooler_has_server_connections_all_finish(db: TestDatabase) {
    let query_wait = Duration::from_secs(10);
    let bouncer = PgBouncer::start_with_query_wait(
        db.cluster(),
        PoolMode::Transaction,
        SERVER_POOL_SIZE,
        query_wait,
    )
    .await;
    let launches = SERVER_POOL_SIZE + 1;
    for round in 0..5 {
        // Released together from behind the migration lock, held here, after their
        // pooler checks, which run at once too.
        let gate = db.connect().await;
        gate.batch_execute(MIGRATION_LOCK).await.unwrap();
        let started = std::time::Instant::now();
        let all = futures_util::future::join_all(
            (0..launches).map(|_| tokio::time::timeout(BOUND, Dbos::launch(leased(&db, &bouncer)))),
        );
        let release = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            gate.batch_execute(&MIGRATION_LOCK.replace("pg_advisory_lock", "pg_advisory_unlock"))
                .await
                .unwrap();
        };
        let (launched, ()) = tokio::join!(all, release);
        let took = started.elapsed();
        eprintln!("round {round}: {launches} launches took {took:?}");
        let mut ok = Vec::new();
        for launched in launched {
            match launched {
                Ok(Ok(dbos)) => ok.push(dbos),
                Ok(Err(e)) => panic!("round {round}: a launch failed after {took:?}: {e}"),
                Err(_) => panic!("round {round}: a launch did not finish within {BOUND:?}"),
            }
        }
        // A launch that waited for a server connection until PgBouncer gave up would have
        // been retried, and finished after `query_wait`.
        let waited = bouncer.waited_lines();
        assert!(
            waited.is_empty(),
            "round {round}: clients waited {query_wait:?} for a server connection: {waited:#?}"
        );
        assert!(took < query_wait, "round {round}: {took:?}");
        for dbos in ok {
            dbos.shutdown().await.unwrap();
        }
    }
}

/// What the stall tests look for is found: a client that waits for PgBouncer's only server
/// connection, held in another client's open transaction, past `query_wait_timeout` is given
/// an error, and the log line PgBouncer writes for it is among
/// [`PgBouncer::waited_lines`], which were empty before.
#[dbos_testkit::test(timeout = "180s")]
async fn a_client_that_waited_past_query_wait_timeout_is_in_pgbouncer_s_waited_lines(
    db: TestDatabase,
) {
    let bouncer = PgBouncer::start_with_query_wait(
        db.cluster(),
        PoolMode::Transaction,
        1,
        Duration::from_secs(1),
    )
    .await;
    let connect = || async {
        let (client, conn) =
            tokio_postgres::connect(&bouncer.url(&db.url()), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        client
    };
    let holder = connect().await;
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let waiter = connect().await;
    assert_eq!(bouncer.waited_lines(), Vec::<String>::new());
    let err = tokio::time::timeout(BOUND, waiter.batch_execute("SELECT 1"))
        .await
        .expect("PgBouncer answers a waiting client after its query_wait_timeout")
        .expect_err("a client that waits past query_wait_timeout");
    eprintln!("the waiting client's error: {err:?}");
    let waited = eventually("PgBouncer to log the wait", BOUND, || async {
        let waited = bouncer.waited_lines();
        (!waited.is_empty()).then_some(waited)
    })
    .await;
    eprintln!("PgBouncer's waited lines: {waited:#?}");
    holder.batch_execute("COMMIT").await.unwrap();
}

/// A login role for this test's database (named after it: roles belong to the cluster),
/// given the system schema's tables and sequences that exist now, as an operator's
/// `GRANT ... ON ALL TABLES IN SCHEMA` gives them, and no `CREATE` on the schema; and its
/// URL, straight to Postgres (PgBouncer here knows only the superuser).
async fn restricted_role(db: &TestDatabase, suffix: &str) -> (String, String) {
    let role = format!("{}_{suffix}", db.name());
    db.connect()
        .await
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role};
             CREATE ROLE {role} LOGIN PASSWORD 'restricted';
             GRANT USAGE ON SCHEMA dbos TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA dbos TO {role};
             GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA dbos TO {role};"
        ))
        .await
        .unwrap();
    let url = db.url();
    let (_, server) = url.split_once('@').expect("a URL with a user");
    let url = format!("postgres://{role}:restricted@{server}");
    (role, url)
}

/// Drops a role of [`restricted_role`] (its privileges in this database first).
async fn drop_role(db: &TestDatabase, role: &str) {
    db.connect()
        .await
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();
}

static MIXED_ENTERED: AtomicU32 = AtomicU32::new(0);
static MIXED_RELEASE: AtomicBool = AtomicBool::new(false);

/// Holds its workflow until the test releases it (the mixed-executors test's own counters).
#[step]
async fn hold_mixed() -> Result<(), dbos_core::Error> {
    MIXED_ENTERED.fetch_add(1, Ordering::SeqCst);
    while !MIXED_RELEASE.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[workflow]
async fn held_mixed(i: i64) -> Result<i64, dbos_core::Error> {
    hold_mixed().await?;
    Ok(i)
}

/// The executors owning the `mixed-` workflows, and how many of those have finished.
async fn mixed(db: &TestDatabase) -> (Vec<String>, i64) {
    let owners = texts(
        db,
        "SELECT DISTINCT executor_id FROM dbos.workflow_status WHERE workflow_uuid LIKE 'mixed-%'",
    )
    .await;
    let done: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid LIKE 'mixed-%' AND status = 'SUCCESS'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    (owners, done)
}

/// One application with an executor of each kind: one behind the pooler with no session URL
/// (it holds a lease) and one straight to Postgres (it holds a lock). The lease executor's
/// lock is always free, so the lock executor must also find its lease expired before it
/// takes its work: not while the lease is renewed, not when it cannot read the lease table
/// (a role given the system tables before that table existed), and at once when the lease
/// executor is killed and its lease expires. B's looks failing says so in one WARN for the
/// whole streak (its later failures at DEBUG), and their working again in one INFO.
#[dbos_testkit::test(timeout = "300s")]
async fn a_lock_executor_leaves_a_live_lease_executor_s_work_alone_and_takes_it_once_it_dies(
    db: TestDatabase,
) {
    let bouncer = PgBouncer::start(db.cluster(), PoolMode::Transaction).await;
    // The schema, and the lock executor's role, granted the system tables before the lease
    // table exists: it may not read the leases.
    db.migrate().await;
    let (role, role_url) = restricted_role(&db, "lock").await;
    // A, the lease executor, runs three workflows, held in their step.
    let (a, a_id) =
        a_lease_executor_holding_three(&db, &bouncer, held_mixed, "mixed-", &MIXED_ENTERED).await;
    // B, the lock executor of the same application, straight to Postgres, on a runtime
    // whose threads log to `logs`.
    let logs = CapturedLogs::default();
    // Recovery at DEBUG, the rest at INFO.
    let b_runtime = logs.runtime("info,dbos_core::recovery=debug");
    let b = b_runtime
        .spawn(Dbos::launch(
            leased(&db, &bouncer).system_database_url(role_url),
        ))
        .await
        .unwrap()
        .unwrap();
    let lock_sessions = texts(
        &db,
        &format!(
            "SELECT application_name FROM pg_stat_activity WHERE application_name = 'dbos-rs lock {}'",
            b.executor_id()
        ),
    )
    .await;
    assert_eq!(lock_sessions.len(), 1, "B holds a lock, not a lease");
    // Three lease times in which B cannot read A's lease (its every look fails): A's work
    // stays with A.
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(
        MIXED_ENTERED.load(Ordering::SeqCst),
        3,
        "a live executor's work was taken by a peer that could not read its lease"
    );
    assert_eq!(mixed(&db).await, (vec![a_id.clone()], 0));
    // Said once, at WARN, with what the database refused; the other failed looks at DEBUG.
    let warned = logs.lines_with("WARN", "could not look for dead executors");
    assert_eq!(warned.len(), 1, "one WARN per streak: {warned:#?}");
    for said in [
        "recovers no dead executor's workflows",
        "permission denied for table dbos_rs_executor_leases",
        b.executor_id(),
    ] {
        assert!(warned[0].contains(said), "`{said}` not in: {}", warned[0]);
    }
    let quiet = logs
        .lines_with("DEBUG", "could not look for dead executors")
        .len();
    assert!(quiet >= 3, "several failed looks at DEBUG, not {quiet}");
    eprintln!("B's failed looks: 1 at WARN, {quiet} at DEBUG");
    // Three more in which B reads A's lease, renewed: A's work stays with A.
    db.connect()
        .await
        .batch_execute(&format!(
            "GRANT SELECT ON dbos.dbos_rs_executor_leases TO {role}"
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(
        MIXED_ENTERED.load(Ordering::SeqCst),
        3,
        "a live lease executor's work was taken by a lock executor"
    );
    assert_eq!(mixed(&db).await, (vec![a_id.clone()], 0));
    let again = logs.lines_with("INFO", "looking for dead executors works again");
    assert_eq!(again.len(), 1, "{again:#?}");
    // A dies (its connections cut, nothing released): B takes its work once its lease
    // expires, within the lease time and a recovery interval or two.
    a.abort();
    MIXED_RELEASE.store(true, Ordering::SeqCst);
    let killed = std::time::Instant::now();
    let b_id = b.executor_id().to_owned();
    eventually("A's workflows finish on B", BOUND, || async {
        (mixed(&db).await == (vec![b_id.clone()], 3)).then_some(())
    })
    .await;
    eprintln!(
        "A's work recovered by the lock executor and finished {:?} after the kill (lease 3 s)",
        killed.elapsed()
    );
    assert!(MIXED_ENTERED.load(Ordering::SeqCst) >= 4);
    assert_eq!(
        logs.lines_with("WARN", "could not look for dead executors")
            .len(),
        1
    );
    b_runtime
        .spawn(async move { b.shutdown().await })
        .await
        .unwrap()
        .unwrap();
    b_runtime.shutdown_background();
    drop_role(&db, &role).await;
}

/// A launch that holds a lease (no session URL behind a transaction-mode pooler, here
/// declared with `PoolerMode::Transaction`: PgBouncer here knows only the superuser) under a
/// role that may not create tables in the system schema, on a database without the lease
/// table, fails at once saying which table, why it is needed, what the database refused and
/// what to do; with `CREATE` granted it launches; and once the table exists, another role
/// without `CREATE` launches too.
#[dbos_testkit::test(timeout = "300s")]
async fn a_lease_launch_that_may_not_create_the_lease_table_fails_saying_so(db: TestDatabase) {
    db.migrate().await;
    let (role, url) = restricted_role(&db, "nocreate").await;
    let config = || {
        db.config("leased")
            .system_database_url(url.clone())
            .pooler(dbos_core::PoolerMode::Transaction)
    };
    let err = tokio::time::timeout(BOUND, Dbos::launch(config()))
        .await
        .expect("the launch must not hang")
        .expect_err("a launch that cannot create the lease table");
    let text = err.to_string();
    eprintln!("{text}");
    assert_eq!(err.kind(), dbos_core::ErrorKind::Database, "{text}");
    for said in [
        "could not create the executor lease table `dbos.dbos_rs_executor_leases`",
        "permission denied for schema dbos",
        "GRANT CREATE ON SCHEMA \"dbos\" TO <role>",
        "Config::session_url",
    ] {
        assert!(text.contains(said), "`{said}` not in: {text}");
    }
    // With the privilege the same launch works (and creates the table).
    let admin = db.connect().await;
    admin
        .batch_execute(&format!("GRANT CREATE ON SCHEMA dbos TO {role}"))
        .await
        .unwrap();
    Dbos::launch(config())
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    // Once the table exists, a role without CREATE (given it with the other tables) launches.
    let (other, other_url) = restricted_role(&db, "later").await;
    let dbos = Dbos::launch(
        db.config("leased")
            .system_database_url(other_url)
            .pooler(dbos_core::PoolerMode::Transaction),
    )
    .await
    .unwrap();
    dbos.shutdown().await.unwrap();
    drop_role(&db, &other).await;
    drop_role(&db, &role).await;
}

/// A lease table created while a launch creates it, by a process that takes no lock (an
/// older build of this library), is taken as found: the launch, whose creation waits on the
/// other's uncommitted table and then fails on its name, starts.
#[dbos_testkit::test(timeout = "300s")]
async fn a_lease_table_created_meanwhile_without_the_lock_is_taken_as_found(db: TestDatabase) {
    let bouncer = PgBouncer::start(db.cluster(), PoolMode::Transaction).await;
    db.migrate().await;
    let mut creator = db.connect().await;
    let tx = creator.transaction().await.unwrap();
    tx.batch_execute(
        "CREATE TABLE dbos.dbos_rs_executor_leases (
             application_name text NOT NULL,
             executor_id text NOT NULL,
             holder text NOT NULL,
             expires_at timestamptz NOT NULL,
             PRIMARY KEY (application_name, executor_id))",
    )
    .await
    .unwrap();
    let launch = tokio::spawn(Dbos::launch(leased(&db, &bouncer)));
    db.until_blocked_on_lock("%CREATE TABLE IF NOT EXISTS%dbos_rs_executor_leases%")
        .await;
    tx.commit().await.unwrap();
    let dbos = tokio::time::timeout(BOUND, launch)
        .await
        .expect("the launch must not hang")
        .unwrap()
        .expect("a launch that finds the lease table created meanwhile");
    dbos.shutdown().await.unwrap();
}
