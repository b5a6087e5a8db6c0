//! The promise under faults: a database outage delays work but strands none; a panic, an
//! output that cannot be stored or a shutdown answers the caller; one id runs one body.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dbos_core::local_postgres::LocalPostgres;
use dbos_core::{step, workflow, Config, Dbos, Error, ErrorKind, Queue};
use dbos_testkit::crash::eventually;
use dbos_testkit::proxy::Proxy;
use dbos_testkit::runs::{bump, runs as bodies};
use dbos_testkit::TestDatabase;

#[step]
async fn counted(wf: String, n: u32) -> Result<u32, Error> {
    bump(&format!("{wf}/{n}"));
    tokio::time::sleep(Duration::from_millis(15)).await;
    Ok(n * 10)
}

#[workflow]
async fn four_steps(wf: String) -> Result<u32, Error> {
    let mut sum = 0;
    for n in 1..=4 {
        sum += counted(wf.clone(), n).await?;
    }
    Ok(sum)
}

static OUTAGE_QUEUE: Queue = Queue::new("outage-q").worker_concurrency(16);

/// A Postgres of this test's own (not the shared test cluster, which it crashes), durable
/// enough that an immediate shutdown loses no acknowledged commit.
async fn own_postgres(name: &str) -> LocalPostgres {
    LocalPostgres::builder(dbos_testkit::cluster::cluster_dir().join(name))
        .start()
        .await
        .expect("start a dedicated Postgres")
}

#[dbos_testkit::test]
async fn a_workload_survives_two_immediate_postgres_restarts_with_nothing_lost_or_repeated(
    _db: TestDatabase,
) {
    let pg = own_postgres("outage-pg").await;
    let db_name = format!("outage_{}", std::process::id());
    let dbos = Dbos::launch(
        Config::new("outage")
            .system_database_url(pg.url(&db_name))
            .pool_size(8)
            .queue(&OUTAGE_QUEUE),
    )
    .await
    .unwrap();
    const N: usize = 150;
    let run = std::process::id();
    let mut handles = Vec::new();
    let submit = {
        let dbos = dbos.clone();
        tokio::spawn(async move {
            let mut handles = Vec::new();
            for i in 0..N {
                let id = format!("out-{run}-{i}");
                let call = four_steps(id.clone()).id(id).on(&dbos);
                let h = if i % 2 == 0 {
                    call.start().await
                } else {
                    call.enqueue(&OUTAGE_QUEUE).await
                };
                handles.push(h.expect("start or enqueue rides out the outage"));
                tokio::time::sleep(Duration::from_millis(8)).await;
            }
            handles
        })
    };
    // Two crashes while work is being submitted and run.
    tokio::time::sleep(Duration::from_millis(400)).await;
    pg.restart_immediate().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    pg.restart_immediate().await.unwrap();
    handles.extend(submit.await.unwrap());
    let started = Instant::now();
    for h in &handles {
        let out = tokio::time::timeout(Duration::from_secs(120), h.result())
            .await
            .unwrap_or_else(|_| panic!("workflow {} never finished", h.id()))
            .unwrap();
        assert_eq!(out, 100, "{}", h.id());
    }
    eprintln!(
        "all {N} workflows finished {:?} after the last submit",
        started.elapsed()
    );
    // Nothing ran twice: the process never died, so no step body needed re-running.
    for i in 0..N {
        for n in 1..=4 {
            let key = format!("out-{run}-{i}/{n}");
            assert_eq!(bodies(&key), 1, "step body {key}");
        }
    }
    let client = tokio_postgres::connect(&pg.url(&db_name), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(client.1);
    let row = client
        .0
        .query_one(
            "SELECT count(*), count(DISTINCT (workflow_uuid, function_id)) FROM dbos.operation_outputs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), (N * 4) as i64);
    assert_eq!(row.get::<_, i64>(1), (N * 4) as i64);
    let pending: i64 = client
        .0
        .query_one(
            "SELECT count(*) FROM dbos.workflow_status WHERE status <> 'SUCCESS'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 0);
    dbos.shutdown().await.unwrap();
    let _ = pg.stop().await;
}

#[dbos_testkit::test]
async fn launch_rides_out_connections_dropped_between_its_statements(db: TestDatabase) {
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    // The first connections die mid-launch: during the handshake, in the migration, after it
    // (the third is the launch's second connection, which probes for a transaction-mode
    // pooler and closes before its cut).
    proxy.cut_after(&[600, 3_000, 20_000, 20_000, 36_000]);
    let dbos = Dbos::launch(
        db.config("testapp")
            .system_database_url(proxy.url(&db.url()))
            .pool_size(2),
    )
    .await
    .unwrap();
    assert!(
        proxy.cut() >= 3,
        "only {} of {} connections were cut",
        proxy.cut(),
        proxy.accepted()
    );
    assert_eq!(dbos.migration().version(), 125);
    assert_eq!(
        four_steps("through-proxy".into()).on(&dbos).await.unwrap(),
        100
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn launch_gives_up_after_the_connect_retry_window(db: TestDatabase) {
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    proxy.refuse(true);
    let started = Instant::now();
    let e = Dbos::launch(
        db.config("testapp")
            .system_database_url(proxy.url(&db.url()))
            .connect_retry_for(Duration::from_secs(1)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connection, "{e:?}");
    assert!(proxy.cut() >= 3, "retried only {} times", proxy.cut());
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[dbos_testkit::test]
async fn statements_in_flight_when_connections_drop_are_retried_not_failed(db: TestDatabase) {
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let dbos = Dbos::launch(
        db.config("testapp")
            .system_database_url(proxy.url(&db.url()))
            .pool_size(4),
    )
    .await
    .unwrap();
    let mut handles = Vec::new();
    for i in 0..40 {
        let id = format!("blip-{i}");
        handles.push(
            four_steps(id.clone())
                .id(id)
                .on(&dbos)
                .start()
                .await
                .unwrap(),
        );
    }
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        proxy.cut_all();
    }
    for h in &handles {
        assert_eq!(h.result().await.unwrap(), 100);
    }
    assert!(proxy.cut() > 0);
    let client = db.connect().await;
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid LIKE 'blip-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 40 * 4);
    for i in 0..40 {
        for n in 1..=4 {
            assert_eq!(bodies(&format!("blip-{i}/{n}")), 1);
        }
    }
    dbos.shutdown().await.unwrap();
}

/// Its output is the marker the proxy watches for: only the checkpoint insert sends it.
#[step]
async fn returns_the_cut_marker() -> Result<String, Error> {
    bump("cut-record/step");
    Ok("CUT-THIS-CHECKPOINT".into())
}

#[workflow]
async fn records_through_a_cut() -> Result<String, Error> {
    let out = returns_the_cut_marker().await?;
    bump("cut-record/after");
    Ok(out)
}

/// A checkpoint insert whose connection dies before it reaches the server is sent again
/// once the database is back: the error is a connection's, not a conflict with another
/// execution's record, so the step is not looked up as refused (where, with no row found,
/// it would read as a lost ownership and stop the execution).
#[dbos_testkit::test]
async fn a_checkpoint_insert_cut_before_the_server_is_sent_again(db: TestDatabase) {
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let dbos = Dbos::launch(
        db.config("testapp")
            .system_database_url(proxy.url(&db.url()))
            .cancel_poll_interval(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    proxy.cut_when_sent(b"CUT-THIS-CHECKPOINT");
    let handle = records_through_a_cut()
        .id("cut-record")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually(
        "the checkpoint insert to be cut off",
        Duration::from_secs(20),
        || async { (proxy.fired() == 1).then_some(()) },
    )
    .await;
    proxy.refuse(false);
    let out = tokio::time::timeout(Duration::from_secs(30), handle.result())
        .await
        .expect("the workflow finishes once the database is back")
        .unwrap();
    assert_eq!(out, "CUT-THIS-CHECKPOINT");
    assert_eq!(bodies("cut-record/step"), 1, "the step ran once");
    assert_eq!(bodies("cut-record/after"), 1);
    let recorded = db.steps_of("cut-record").await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(
        recorded[0].output.as_deref(),
        Some("\"CUT-THIS-CHECKPOINT\"")
    );
    dbos.shutdown().await.unwrap();
}

#[step]
async fn explodes() -> Result<u32, Error> {
    panic!("the step blew up");
}

#[workflow]
async fn panics_in_a_step() -> Result<u32, Error> {
    explodes().await
}

#[workflow]
async fn panics_in_its_body(x: u32) -> Result<u32, Error> {
    if x > 0 {
        panic!("the body blew up at {x}");
    }
    Ok(x)
}

#[dbos_testkit::test]
async fn a_panic_answers_the_caller_and_leaves_the_row_pending(db: TestDatabase) {
    let dbos = db.launch().await;
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        panics_in_a_step().id("panic-step").on(&dbos),
    )
    .await
    .expect("the caller gets an answer")
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ExecutionPanicked, "{e:?}");
    assert!(e.to_string().contains("the step blew up"), "{e}");
    let h = panics_in_its_body(3)
        .id("panic-body")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), h.result())
        .await
        .expect("the caller gets an answer")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ExecutionPanicked, "{e:?}");
    // A second handle, made after the panic, answers too (from the database: still pending).
    assert_eq!(dbos.running_workflows(), 0, "the bookkeeping does not leak");
    for id in ["panic-step", "panic-body"] {
        assert_eq!(
            db.status_of(id).await.as_deref(),
            Some("PENDING"),
            "{id} stays pending for recovery"
        );
    }
    dbos.shutdown().await.unwrap();
}

#[step]
async fn unstorable_step() -> Result<HashMap<(u8, u8), u8>, Error> {
    Ok(HashMap::from([((1, 2), 3)]))
}

#[workflow]
async fn stores_a_bad_step_output() -> Result<usize, Error> {
    Ok(unstorable_step().await?.len())
}

#[workflow]
async fn returns_a_bad_output() -> Result<HashMap<(u8, u8), u8>, Error> {
    Ok(HashMap::from([((1, 2), 3)]))
}

#[dbos_testkit::test]
async fn an_output_that_cannot_be_stored_is_recorded_as_an_error_naming_the_type(db: TestDatabase) {
    let dbos = db.launch().await;
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        returns_a_bad_output().id("bad-out").on(&dbos),
    )
    .await
    .expect("the caller gets an answer")
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialization, "{e:?}");
    assert!(e.to_string().contains("HashMap<(u8, u8), u8>"), "{e}");
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        stores_a_bad_step_output().id("bad-step-out").on(&dbos),
    )
    .await
    .expect("the caller gets an answer")
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialization, "{e:?}");
    let client = db.connect().await;
    for id in ["bad-out", "bad-step-out"] {
        let row = client
            .query_one(
                "SELECT s.status, o.error FROM dbos.workflow_status s JOIN dbos.workflow_output o USING (workflow_uuid) \
                 WHERE workflow_uuid = $1",
                &[&id],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "ERROR", "{id}");
        let error: String = row.get(1);
        assert!(error.contains("HashMap<(u8, u8), u8>"), "{id}: {error}");
        assert!(
            error.contains("dbos_core::Error::Serialization"),
            "{id}: {error}"
        );
    }
    // The step's own checkpoint records the error, so a replay fails the same way.
    let step_error = db.step_of("bad-step-out", 1).await.error.unwrap();
    assert!(step_error.contains("unstorable_step"), "{step_error}");
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn naps(ms: u64) -> Result<u64, Error> {
    dbos_core::sleep(Duration::from_millis(ms)).await?;
    Ok(ms)
}

#[dbos_testkit::test]
async fn a_handle_awaited_during_shutdown_answers_at_once(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").park_after(Duration::from_secs(600)))
        .await
        .unwrap();
    let local = naps(60_000)
        .id("nap-local")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    // A handle to a workflow that is not running here: queued where nobody serves.
    let remote = naps(1)
        .id("nap-queued")
        .on(&dbos)
        .enqueue(&Queue::named("served-by-nobody"))
        .await
        .unwrap();
    let waiting = tokio::spawn(async move { (local.result().await, remote.result().await) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    dbos.shutdown_with_timeout(Duration::from_secs(20))
        .await
        .unwrap();
    let (a, b) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting handles answer during shutdown")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for e in [a.unwrap_err(), b.unwrap_err()] {
        assert_eq!(e.kind(), ErrorKind::NotLaunched, "{e:?}");
    }
}

static GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();
static GATED_RUNS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn gated_step() -> Result<u32, Error> {
    GATED_RUNS.fetch_add(1, Ordering::SeqCst);
    GATE.notified().await;
    Ok(7)
}

#[workflow]
async fn gated_workflow() -> Result<u32, Error> {
    Ok(gated_step().await? + 1)
}

#[dbos_testkit::test]
async fn recovering_or_resuming_a_workflow_running_here_attaches_to_it(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").executor_id("attach-exec"))
        .await
        .unwrap();
    let h = gated_workflow()
        .id("attach")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("the gated step to run", Duration::from_secs(10), || async {
        (GATED_RUNS.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    // Two concurrent recoveries naming this (live) executor: nothing to recover.
    let (a, b) = tokio::join!(
        dbos.recover_executors(&["attach-exec"]),
        dbos.recover_executors(&["attach-exec"])
    );
    assert!(a.unwrap().is_empty() && b.unwrap().is_empty());
    // A resume from outside (what DBOS's CLI writes): the row goes back to the internal
    // queue, this executor claims it and hands the claim to the live execution.
    let client = db.connect().await;
    client
        .execute(
            "UPDATE dbos.workflow_status SET status = 'ENQUEUED', owner_xid = NULL, queue_name = '_dbos_internal_queue', \
             recovery_attempts = 0, started_at_epoch_ms = NULL WHERE workflow_uuid = 'attach'",
            &[],
        )
        .await
        .unwrap();
    eventually("the resumed workflow to be claimed here", Duration::from_secs(10), || async {
        let row = client
            .query_one("SELECT status, owner_xid IS NOT NULL FROM dbos.workflow_status WHERE workflow_uuid = 'attach'", &[])
            .await
            .unwrap();
        (row.get::<_, String>(0) == "PENDING" && row.get::<_, bool>(1)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    GATE.notify_waiters();
    // The live execution records under the new claim (handed to it): without the hand-over
    // its step's checkpoint is refused, the execution ends, and the row stays PENDING under
    // a claim nobody runs (checked with `ExecutionControl::hand_over` doing nothing).
    let out = tokio::time::timeout(Duration::from_secs(20), h.result())
        .await
        .expect("the execution that took the new claim finishes the workflow");
    assert_eq!(out.unwrap(), 8);
    assert_eq!(
        GATED_RUNS.load(Ordering::SeqCst),
        1,
        "one body, however many claims"
    );
    assert_eq!(db.status_of("attach").await.as_deref(), Some("SUCCESS"));
    dbos.shutdown().await.unwrap();
}

static RECLAIM_GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();
static RECLAIM_RUNS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn reclaimed_step() -> Result<u32, Error> {
    RECLAIM_RUNS.fetch_add(1, Ordering::SeqCst);
    RECLAIM_GATE.notified().await;
    Ok(5)
}

#[workflow]
async fn reclaimed_workflow() -> Result<u32, Error> {
    Ok(reclaimed_step().await? + 1)
}

/// Between this executor's new claim of a workflow that runs here and the hand-over of that
/// claim to the live execution, the row names a claim the execution does not know yet. The
/// executor's periodic check (every millisecond here) must not read that as a takeover: a
/// stop there ends the live execution while the claim is handed to it. Two hundred resumes
/// of the running workflow, each claimed again here and handed over, give the check many
/// chances to look inside that window (checked: with the "claimed again by this executor"
/// guard answering no, the test failed in 2 runs of 2, the step's body having run 7 times:
/// each stopped execution was replaced by a new one at the next claim).
#[dbos_testkit::test]
async fn a_claim_being_handed_to_the_live_execution_is_not_taken_for_a_takeover(db: TestDatabase) {
    let dbos = Dbos::launch(
        db.config("testapp")
            .cancel_poll_interval(Duration::from_millis(1)),
    )
    .await
    .unwrap();
    let h = reclaimed_workflow()
        .id("reclaimed")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("the gated step to run", Duration::from_secs(10), || async {
        (RECLAIM_RUNS.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let client = db.connect().await;
    let owner = || async {
        client
            .query_one(
                "SELECT status, owner_xid FROM dbos.workflow_status WHERE workflow_uuid = 'reclaimed'",
                &[],
            )
            .await
            .unwrap()
    };
    for _ in 0..200 {
        let before: Option<String> = owner().await.get(1);
        dbos.resume_workflow("reclaimed").await.unwrap();
        eventually(
            "the resumed workflow to be claimed here",
            Duration::from_secs(10),
            || async {
                let row = owner().await;
                let now: Option<String> = row.get(1);
                (row.get::<_, String>(0) == "PENDING" && now.is_some() && now != before)
                    .then_some(())
            },
        )
        .await;
    }
    RECLAIM_GATE.notify_waiters();
    let out = tokio::time::timeout(Duration::from_secs(20), h.result())
        .await
        .expect("the live execution, never stopped, finishes the workflow");
    assert_eq!(out.unwrap(), 6);
    assert_eq!(RECLAIM_RUNS.load(Ordering::SeqCst), 1, "one body");
    dbos.shutdown().await.unwrap();
}

#[step]
async fn long_counted_step(key: String, ms: u64) -> Result<u32, Error> {
    let n = bump(&key);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(n)
}

#[workflow]
async fn one_long_step(key: String, ms: u64) -> Result<u32, Error> {
    long_counted_step(key, ms).await
}

fn quick_recovery(config: Config) -> Config {
    config
        .recovery_interval(Duration::from_millis(200))
        .recovery_grace(Duration::from_millis(600))
}

/// A server (or a proxy, or a managed service) that ends idle sessions must not free a live
/// executor's lock: before the lock session kept itself alive, the workflow below was
/// recovered 3 times in 6 s, bouncing between the two executors each time one's lock session
/// was cut while it had nothing to ask its peers.
#[dbos_testkit::test]
async fn a_server_ending_idle_sessions_does_not_move_a_live_executor_s_work(db: TestDatabase) {
    db.connect()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET idle_session_timeout = '700ms'",
            db.name()
        ))
        .await
        .unwrap();
    let a = Dbos::launch(quick_recovery(db.config("testapp")))
        .await
        .unwrap();
    let b = Dbos::launch(quick_recovery(db.config("testapp")))
        .await
        .unwrap();
    let key = "idle-cut/step";
    let out = one_long_step(key.into(), 6_000)
        .id("idle-cut")
        .on(&a)
        .await
        .unwrap();
    let row = db
        .connect()
        .await
        .query_one(
            "SELECT executor_id, recovery_attempts FROM dbos.workflow_status WHERE workflow_uuid = 'idle-cut'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), a.executor_id(), "it never left A");
    assert_eq!(row.get::<_, i64>(1), 1, "never recovered");
    assert_eq!(bodies(key), 1, "the step ran once");
    assert_eq!(out, 1);
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

/// The two halves of keeping the lock: the lock session is exempt from the server's
/// `idle_session_timeout` (its backend, and so its lock, outlives a 700 ms limit although it
/// speaks only once a second), and it speaks at least once per recovery interval (a proxy
/// that cuts connections idle for longer than that never sees it idle).
#[dbos_testkit::test]
async fn a_quiet_executor_s_lock_session_is_never_idle_for_long_and_never_cut(db: TestDatabase) {
    let client = db.connect().await;
    client
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET idle_session_timeout = '700ms'",
            db.name()
        ))
        .await
        .unwrap();
    let dbos = Dbos::launch(
        db.config("testapp")
            .recovery_interval(Duration::from_secs(1))
            .recovery_grace(Duration::from_millis(2_100)),
    )
    .await
    .unwrap();
    let label = format!("dbos-rs lock {}", dbos.executor_id());
    let look = || async {
        let row = client
            .query_one(
                "SELECT pid, extract(epoch FROM now() - state_change)::float8 FROM pg_stat_activity \
                  WHERE application_name = left($1, 63)",
                &[&label],
            )
            .await
            .unwrap();
        (row.get::<_, i32>(0), row.get::<_, f64>(1))
    };
    let (first_pid, _) = look().await;
    let mut oldest: f64 = 0.0;
    // Six seconds of looks: a session that did not speak would be seen silent for about that
    // long; one that speaks every interval (1 s, jittered by 5%) is silent for a little more
    // than 1 s, and the bound leaves room for a loaded machine's late timers (2.52 s was seen
    // at load average 14).
    for _ in 0..24 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (pid, idle) = look().await;
        assert_eq!(
            pid, first_pid,
            "the lock session was ended and opened again"
        );
        oldest = oldest.max(idle);
    }
    assert!(
        oldest < 3.5,
        "the lock session was silent for {oldest:.2} s with a recovery interval of 1 s"
    );
    dbos.shutdown().await.unwrap();
}

/// How long the server behind `url` has been up.
async fn server_uptime(url: &str) -> Duration {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let secs: f64 = client
        .query_one(
            "SELECT extract(epoch FROM now() - pg_postmaster_start_time())::float8",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    Duration::from_secs_f64(secs.max(0.0))
}

/// The protection the recovery grace gives after a database restart, kept for a process that
/// launches right then: every executor's lock is free while it reconnects, so a launch that
/// finds a free lock on a server up for less than the grace does not read it as a death. Here
/// A cannot reconnect for a while (its proxy refuses), and B launches on the restarted server:
/// B leaves A's workflow alone, A takes its lock back and finishes it, the step ran once.
/// (Checked: with B trusting a free lock at launch whatever the server's uptime, B took the
/// workflow over and its step ran twice.)
#[dbos_testkit::test]
async fn a_launch_right_after_a_database_restart_does_not_take_over_reconnecting_peers(
    _db: TestDatabase,
) {
    let pg = own_postgres("restart-grace-pg").await;
    let db_name = format!("restart_grace_{}", std::process::id());
    let url = pg.url(&db_name);
    let proxy = Proxy::start(pg.port()).await;
    let a = Dbos::launch(
        Config::new("restart-grace")
            .system_database_url(proxy.url(&url))
            .pool_size(4),
    )
    .await
    .unwrap();
    let key = "restart-grace/step";
    let handle = one_long_step(key.into(), 7_000)
        .id("restart-grace")
        .on(&a)
        .start()
        .await
        .unwrap();
    eventually("the step to start", Duration::from_secs(20), || async {
        (bodies(key) == 1).then_some(())
    })
    .await;
    proxy.refuse_new(true);
    pg.restart_immediate().await.unwrap();
    let b = Dbos::launch(
        Config::new("restart-grace")
            .system_database_url(url.clone())
            .pool_size(4)
            .recovery_grace(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    // B looks at launch and every 2 s meanwhile, with A's lock free and its session gone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.refuse_new(false);
    let out = tokio::time::timeout(Duration::from_secs(60), handle.result())
        .await
        .expect("the workflow finished")
        .unwrap();
    assert_eq!(out, 1);
    assert_eq!(bodies(key), 1, "the step ran once");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT executor_id, recovery_attempts FROM dbos.workflow_status WHERE workflow_uuid = 'restart-grace'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), a.executor_id(), "it never left A");
    assert_eq!(row.get::<_, i64>(1), 1, "never recovered");
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
    let _ = pg.stop().await;
}

static RETAKE_GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();
static RETAKE_RUNS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn retake_gated_step() -> Result<u32, Error> {
    let n = RETAKE_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    RETAKE_GATE.notified().await;
    Ok(n)
}

#[workflow]
async fn retake_gated() -> Result<u32, Error> {
    retake_gated_step().await
}

/// A launch on a server that has been up for long reads a free lock as a death only when
/// that executor's lock session is gone too: an executor that lost its connection reconnects
/// at once and takes its lock back two recovery intervals later, and a process launched
/// meanwhile leaves its work alone. (Checked: without the look at the sessions, or with it
/// answering "not connected", the new process took the workflow over and its step ran
/// twice.) The step is held until the new process has looked several times, well inside
/// the old one's retake delay (two of its 10 s intervals): with a step of fixed length the
/// workflow could end before the launch's first look on a loaded machine, and the test
/// then proved nothing.
#[dbos_testkit::test]
async fn a_launch_leaves_the_work_of_a_peer_taking_its_lock_back(db: TestDatabase) {
    let grace = Duration::from_secs(20);
    let up = server_uptime(&db.url()).await;
    if up < grace + Duration::from_secs(1) {
        tokio::time::sleep(grace + Duration::from_secs(1) - up).await;
    }
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let a = Dbos::launch(
        db.config("testapp")
            .system_database_url(proxy.url(&db.url()))
            .recovery_interval(Duration::from_secs(10))
            .recovery_grace(Duration::from_secs(25)),
    )
    .await
    .unwrap();
    let handle = retake_gated().id("retaking").on(&a).start().await.unwrap();
    eventually("the step to start", Duration::from_secs(20), || async {
        (RETAKE_RUNS.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let client = db.connect().await;
    let label = format!("dbos-rs lock {}", a.executor_id());
    let session_pid = || async {
        client
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE application_name = left($1, 63)",
                &[&label],
            )
            .await
            .unwrap()
            .map(|r| r.get::<_, i32>(0))
    };
    let before = session_pid().await.expect("A's lock session");
    proxy.cut_all();
    // A reconnected (a new lock session) and waits two recovery intervals to retake its lock.
    eventually("A's new lock session", Duration::from_secs(20), || async {
        session_pid().await.filter(|pid| *pid != before)
    })
    .await;
    let b = Dbos::launch(db.config("testapp").recovery_grace(grace))
        .await
        .unwrap();
    // B looks at once, then every 2 s (its recovery interval): three looks or more.
    tokio::time::sleep(Duration::from_secs(5)).await;
    RETAKE_GATE.notify_waiters();
    let out = tokio::time::timeout(Duration::from_secs(60), handle.result())
        .await
        .expect("the workflow finished")
        .unwrap();
    assert_eq!(out, 1);
    assert_eq!(RETAKE_RUNS.load(Ordering::SeqCst), 1, "the step ran once");
    let row = client
        .query_one(
            "SELECT executor_id, recovery_attempts FROM dbos.workflow_status WHERE workflow_uuid = 'retaking'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), a.executor_id(), "it never left A");
    assert_eq!(row.get::<_, i64>(1), 1, "never recovered");
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}
