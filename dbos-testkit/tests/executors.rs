//! Many executors: a dead executor's work is recovered by its live peers with no call from
//! anyone; a live one never loses its work; one whose lock connection dies hands its work
//! over and its old execution is fenced off; ids are unique by default.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dbos_core::{step, workflow, Config, Dbos, Error, Queue};
use dbos_testkit::crash::{eventually, ChildProcess, IsolatedRuntime};
use dbos_testkit::TestDatabase;
use serde_json::json;

const WORKER: &str = env!("CARGO_BIN_EXE_dbos-queue-worker");

fn fast_recovery(config: Config) -> Config {
    config
        .recovery_interval(Duration::from_millis(200))
        .recovery_grace(Duration::from_millis(600))
}

#[dbos_testkit::test]
async fn a_sigkilled_executor_s_work_is_finished_by_its_peers_with_no_call(db: TestDatabase) {
    db.connect()
        .await
        .batch_execute(
            "CREATE TABLE queue_events (id bigserial PRIMARY KEY, workflow_id text NOT NULL, executor text NOT NULL,
                                        started_ms bigint NOT NULL, ended_ms bigint)",
        )
        .await
        .unwrap();
    let producer = Dbos::launch(
        Config::new("queue-subject")
            .system_database_url(db.url())
            .application_version("queue-subject-v1")
            .pool_size(2),
    )
    .await
    .unwrap();
    let url = db.url();
    // Pinned ids with the generated ids' prefix, so the test knows which process is which;
    // peers recover them as they do generated ones.
    let spawn = |name: &str| {
        ChildProcess::spawn(
            WORKER,
            &[],
            &[
                ("DBOS_SYSTEM_DATABASE_URL", url.as_str()),
                ("DBOS__VMID", name),
                ("DBOS_TEST_RECOVERY_MS", "250"),
                ("RUST_LOG", "warn"),
            ],
        )
    };
    let mut workers: HashMap<&str, ChildProcess> = ["dbos-rs-w1", "dbos-rs-w2", "dbos-rs-w3"]
        .into_iter()
        .map(|n| (n, spawn(n)))
        .collect();
    let mut ids = Vec::new();
    for i in 0..18 {
        let id = format!("job-{i}");
        producer
            .enqueue_by_name("job", "plain", vec![json!(1500)], Some(id.clone()))
            .await
            .unwrap();
        ids.push(id);
    }
    let client = db.connect().await;
    // The victim: a worker with work in progress.
    let (victim, in_flight) =
        eventually("a worker to be busy", Duration::from_secs(30), || async {
            let rows = client
                .query(
                    "SELECT executor_id, array_agg(workflow_uuid) FROM dbos.workflow_status \
                 WHERE status = 'PENDING' AND executor_id LIKE 'dbos-rs-w%' GROUP BY executor_id",
                    &[],
                )
                .await
                .unwrap();
            rows.first()
                .map(|r| (r.get::<_, String>(0), r.get::<_, Vec<String>>(1)))
        })
        .await;
    let victim_name: &str = workers
        .keys()
        .copied()
        .find(|n| *n == victim)
        .expect("the victim is one of the workers");
    let killed_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    workers.remove(victim_name).unwrap().kill9().await;
    // No call from the test: the peers notice by themselves.
    eventually("every job to succeed", Duration::from_secs(60), || async {
        let done: i64 = client
            .query_one(
                "SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid = ANY($1) AND status = 'SUCCESS'",
                &[&ids],
            )
            .await
            .unwrap()
            .get(0);
        (done as usize == ids.len()).then_some(())
    })
    .await;
    for id in &in_flight {
        let executor: String = client
            .query_one(
                "SELECT executor_id FROM dbos.workflow_status WHERE workflow_uuid = $1",
                &[id],
            )
            .await
            .unwrap()
            .get(0);
        assert_ne!(executor, victim, "{id} was finished by a live peer");
    }
    let first_recovered: i64 = client
        .query_one(
            "SELECT min(started_ms) FROM queue_events WHERE workflow_id = ANY($1) AND executor <> $2",
            &[&in_flight, &victim],
        )
        .await
        .unwrap()
        .get(0);
    eprintln!(
        "SIGKILL to the first recovered step: {} ms (3 workers, recovery interval 250 ms)",
        first_recovered - killed_at_ms
    );
    for (_, w) in workers {
        w.kill9().await;
    }
    producer.shutdown().await.unwrap();
}

static LONG_STEP_RUNS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn long_step(ms: u64) -> Result<u32, Error> {
    let n = LONG_STEP_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(n)
}

#[workflow]
async fn blocked_for_a_while(ms: u64) -> Result<u32, Error> {
    long_step(ms).await
}

#[dbos_testkit::test]
async fn a_live_executor_blocked_in_a_long_step_keeps_its_work(db: TestDatabase) {
    let a = Dbos::launch(fast_recovery(db.config("testapp")))
        .await
        .unwrap();
    let b = Dbos::launch(fast_recovery(db.config("testapp")))
        .await
        .unwrap();
    assert_ne!(a.executor_id(), b.executor_id());
    assert!(
        a.executor_id().starts_with("dbos-rs-"),
        "{}",
        a.executor_id()
    );
    // Ten of the peer's recovery intervals pass while the step runs.
    let runs = blocked_for_a_while(2_500)
        .id("blocked")
        .on(&a)
        .await
        .unwrap();
    assert_eq!(runs, 1);
    assert_eq!(
        LONG_STEP_RUNS.load(Ordering::SeqCst),
        1,
        "the step ran once"
    );
    let row = db
        .connect()
        .await
        .query_one(
            "SELECT executor_id, recovery_attempts FROM dbos.workflow_status WHERE workflow_uuid = 'blocked'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), a.executor_id());
    assert_eq!(row.get::<_, i64>(1), 1, "never recovered");
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

static GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();
static PEER_GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();
static GATED_RUNS: AtomicU32 = AtomicU32::new(0);

/// The first run waits for `GATE`, the second (a peer's) for `PEER_GATE`; later runs go
/// straight through.
#[step]
async fn gated() -> Result<u32, Error> {
    let n = GATED_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    match n {
        1 => GATE.notified().await,
        2 => PEER_GATE.notified().await,
        _ => {}
    }
    Ok(n)
}

static AFTER_GATE: AtomicU32 = AtomicU32::new(0);

#[step]
async fn after_gate() -> Result<(), Error> {
    AFTER_GATE.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[workflow]
async fn gated_workflow() -> Result<u32, Error> {
    let n = gated().await?;
    after_gate().await?;
    Ok(n)
}

#[dbos_testkit::test]
async fn an_executor_that_loses_its_lock_hands_its_work_over_and_is_fenced(db: TestDatabase) {
    let a = Dbos::launch(
        fast_recovery(db.config("testapp")).cancel_poll_interval(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let b = Dbos::launch(fast_recovery(db.config("testapp")))
        .await
        .unwrap();
    gated_workflow()
        .id("handed-over")
        .on(&a)
        .start()
        .await
        .unwrap();
    eventually(
        "the gated step to run on A",
        Duration::from_secs(10),
        || async { (GATED_RUNS.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;
    // B has been up for longer than its recovery grace (600 ms), as a peer in a running
    // deployment has: it recovers others.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let client = db.connect().await;
    let label = format!("dbos-rs lock {}", a.executor_id());
    let terminated: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = left($1, 63)",
            &[&label],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(terminated, 1, "A's lock session");
    // B notices A's lock is free, re-enqueues its work and runs it: its run waits in the
    // step, the row PENDING under B's claim.
    eventually("B to run the step", Duration::from_secs(20), || async {
        (GATED_RUNS.load(Ordering::SeqCst) == 2).then_some(())
    })
    .await;
    // A's old execution is told to stop by its own executor's periodic check while B's run
    // is still in progress (the workflow is taken over, not finished): checked by making the
    // check's "still ours" guards (same owner token; claimed again by this executor) answer
    // yes for any PENDING row, and watching this wait fail.
    eventually(
        "A's execution to stop while B runs it",
        Duration::from_secs(10),
        || async { (a.running_workflows() == 0).then_some(()) },
    )
    .await;
    PEER_GATE.notify_waiters();
    eventually("B to finish the workflow", Duration::from_secs(20), || async {
        let row = client
            .query_one(
                "SELECT status, executor_id FROM dbos.workflow_status WHERE workflow_uuid = 'handed-over'",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, String>(0) == "SUCCESS").then(|| row.get::<_, String>(1))
    })
    .await;
    // A's old execution's step, released now, completes unrecorded.
    GATE.notify_waiters();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let executor: String = client
        .query_one(
            "SELECT executor_id FROM dbos.workflow_status WHERE workflow_uuid = 'handed-over'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(executor, b.executor_id());
    let recorded: Vec<(i32, Option<String>)> = client
        .query(
            "SELECT function_id, output FROM dbos.operation_outputs WHERE workflow_uuid = 'handed-over' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        recorded,
        vec![(1, Some("2".into())), (2, Some("null".into()))],
        "B's run is the record"
    );
    assert_eq!(
        AFTER_GATE.load(Ordering::SeqCst),
        1,
        "A never went past the gate"
    );
    // A took its lock back.
    eventually(
        "A's lock session to come back",
        Duration::from_secs(10),
        || async {
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = left($1, 63)",
                    &[&label],
                )
                .await
                .unwrap()
                .get(0);
            (n == 1).then_some(())
        },
    )
    .await;
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

/// The pid of the session labelled `label` (an executor's lock session) holding an advisory
/// lock in this database, if any.
async fn lock_holder(client: &tokio_postgres::Client, label: &str) -> Option<i32> {
    client
        .query_opt(
            "SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = left($1, 63)
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              LIMIT 1",
            &[&label],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[dbos_testkit::test]
async fn an_executor_whose_lock_connection_drops_leaves_its_lock_free_for_two_recovery_intervals(
    db: TestDatabase,
) {
    // The window in which a peer, looking once per recovery interval, finds the lock free
    // and recovers the work (the hand-over above): the executor takes its lock back two
    // intervals after it noticed the loss, never sooner. With the wait shortened (`* 2` to
    // `/ 2` in recovery::serve), the lock came back about one interval after the cut.
    let interval = Duration::from_secs(1);
    let a = Dbos::launch(db.config("testapp").recovery_interval(interval))
        .await
        .unwrap();
    let client = db.connect().await;
    let label = format!("dbos-rs lock {}", a.executor_id());
    let old = eventually("A to hold its lock", Duration::from_secs(10), || {
        lock_holder(&client, &label)
    })
    .await;
    // The executor notices the loss after this instant, so it may take its lock back only
    // two intervals after it.
    let cut = Instant::now();
    let terminated: bool = client
        .query_one("SELECT pg_terminate_backend($1)", &[&old])
        .await
        .unwrap()
        .get(0);
    assert!(terminated, "A's lock session");
    let retaken = eventually(
        "A to take its lock back",
        Duration::from_secs(20),
        || async {
            let holder = lock_holder(&client, &label).await;
            // Read after the look: the lock was taken back no later than this.
            let seen = Instant::now();
            holder.filter(|pid| *pid != old).map(|_| seen)
        },
    )
    .await;
    let free_for = retaken - cut;
    assert!(
        free_for >= interval * 2,
        "the lock was taken back {free_for:?} after the cut, before two recovery intervals ({:?})",
        interval * 2
    );
    a.shutdown().await.unwrap();
}

static SAME_ID_RUNS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn counted_sleep() -> Result<(), Error> {
    SAME_ID_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    Ok(())
}

#[workflow]
async fn sleeps_in_a_step() -> Result<(), Error> {
    counted_sleep().await
}

#[dbos_testkit::test]
async fn a_second_process_with_a_live_executor_s_pinned_id_does_not_take_its_work(
    db: TestDatabase,
) {
    let config = db.config("testapp").executor_id("pinned");
    let first = Dbos::launch(config.clone()).await.unwrap();
    let h = sleeps_in_a_step()
        .id("pinned-work")
        .on(&first)
        .start()
        .await
        .unwrap();
    eventually("the step to start", Duration::from_secs(10), || async {
        (SAME_ID_RUNS.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let started = Instant::now();
    let second = Dbos::launch(config).await.unwrap();
    h.result().await.unwrap();
    assert_eq!(
        SAME_ID_RUNS.load(Ordering::SeqCst),
        1,
        "the second launch left it alone"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    second.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
}

static RETURNING_REACHED: AtomicU32 = AtomicU32::new(0);

/// Hangs the first time it runs (that process is then killed there).
#[step]
async fn hangs_the_first_time() -> Result<u32, Error> {
    if RETURNING_REACHED.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(7)
}

#[workflow]
async fn left_by_a_dying_process() -> Result<u32, Error> {
    hangs_the_first_time().await
}

/// A process restarted with its pinned id while the old session still holds the id's lock
/// (the old process is dying, or its machine vanished and Postgres has not noticed yet)
/// recovers the id's work as soon as it gets the lock, not only at launch.
#[dbos_testkit::test]
async fn a_pinned_id_whose_old_session_ends_after_the_relaunch_still_gets_its_work_back(
    db: TestDatabase,
) {
    let config = fast_recovery(
        db.config("testapp")
            .executor_id("pinned-again")
            .queue(&RARELY_POLLED),
    );
    let old = IsolatedRuntime::new();
    let c = config.clone();
    old.run(async move {
        let dbos = Dbos::launch(c).await.unwrap();
        left_by_a_dying_process()
            .id("orphan")
            .on(&dbos)
            .enqueue(&RARELY_POLLED)
            .await
            .unwrap();
    })
    .await;
    eventually(
        "the old process to reach its step",
        Duration::from_secs(10),
        || async { (RETURNING_REACHED.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;

    // The relaunch meets the old session's lock: the work stays with it while it lives.
    let new = Dbos::launch(config).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_000)).await; // five recovery looks
    assert_eq!(
        RETURNING_REACHED.load(Ordering::SeqCst),
        1,
        "left to the live session"
    );

    old.abort();
    let handle = new.retrieve_workflow::<u32, Error>("orphan");
    // The relaunch polled the queue at launch (the work was the old process's then), next in
    // about two minutes: it starts the work it recovers at once (it wakes its queues; checked
    // by removing that wake-up from `recover_own`, the work then waits for the poll).
    let out = tokio::time::timeout(Duration::from_secs(20), handle.result())
        .await
        .expect("the relaunched process recovers the work once the old session is gone, and starts it at once")
        .unwrap();
    assert_eq!(out, 7);
    assert_eq!(RETURNING_REACHED.load(Ordering::SeqCst), 2);
    new.shutdown().await.unwrap();
}

/// A queue polled so rarely that work on it waits for a wake-up: recovered work that started
/// only at the queue's next poll would start minutes late.
static RARELY_POLLED: Queue =
    Queue::new("rarely-polled").polling_interval(Duration::from_secs(120));

static QUEUED_REACHED: AtomicU32 = AtomicU32::new(0);

/// Hangs the first time it runs (that runtime is then killed there).
#[step]
async fn queued_hangs_the_first_time() -> Result<u32, Error> {
    if QUEUED_REACHED.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(9)
}

#[workflow]
async fn queued_left_by_a_dying_process() -> Result<u32, Error> {
    queued_hangs_the_first_time().await
}

static AGAIN_RUNS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn again_long_step() -> Result<u32, Error> {
    let n = AGAIN_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    Ok(n)
}

#[workflow]
async fn again_blocked() -> Result<u32, Error> {
    again_long_step().await
}

/// A peer that recovers a dead executor's queued work starts it at once (it wakes its
/// queues), not at the queue's next poll, two minutes away here: checked by removing the
/// wake-up after `recover_dead_peers` re-enqueues (the work then waits for the poll). And it
/// lets go of the dead executor's lock once done: the same id relaunched holds its lock and
/// keeps its work (checked with `LockSession::unlock` doing nothing: the peer, still holding
/// that lock, took the live relaunch for dead and recovered its work).
#[dbos_testkit::test]
async fn a_dead_peer_s_queued_work_starts_at_once_and_its_id_comes_back_cleanly(db: TestDatabase) {
    // The generated ids' prefix, so peers may recover it, pinned so it can come back.
    let config = || {
        fast_recovery(db.config("testapp"))
            .executor_id("dbos-rs-comes-back")
            .queue(&RARELY_POLLED)
    };
    let old = IsolatedRuntime::new();
    let c = config();
    old.run(async move {
        let dbos = Dbos::launch(c).await.unwrap();
        queued_left_by_a_dying_process()
            .id("queued-orphan")
            .on(&dbos)
            .enqueue(&RARELY_POLLED)
            .await
            .unwrap();
    })
    .await;
    eventually(
        "the old process to reach its step",
        Duration::from_secs(10),
        || async { (QUEUED_REACHED.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;
    // The peer polls the queue once at launch (the work is the old process's then), next in
    // about two minutes; it has been up for longer than its recovery grace when the old
    // process dies.
    let peer = Dbos::launch(fast_recovery(db.config("testapp")).queue(&RARELY_POLLED))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    old.abort();
    let handle = peer.retrieve_workflow::<u32, Error>("queued-orphan");
    let out = tokio::time::timeout(Duration::from_secs(15), handle.result())
        .await
        .expect("the peer starts the recovered work at once, not at the queue's next poll")
        .unwrap();
    assert_eq!(out, 9);
    assert_eq!(QUEUED_REACHED.load(Ordering::SeqCst), 2);

    // The id comes back: it takes its lock, and its new work stays with it.
    let back = Dbos::launch(config()).await.unwrap();
    let runs = again_blocked().id("comes-back").on(&back).await.unwrap();
    assert_eq!(runs, 1);
    assert_eq!(AGAIN_RUNS.load(Ordering::SeqCst), 1, "the step ran once");
    let row = db
        .connect()
        .await
        .query_one(
            "SELECT executor_id, recovery_attempts FROM dbos.workflow_status WHERE workflow_uuid = 'comes-back'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "dbos-rs-comes-back");
    assert_eq!(
        row.get::<_, i64>(1),
        1,
        "the peer that recovered the id's earlier work never took the relaunch for dead"
    );
    back.shutdown().await.unwrap();
    peer.shutdown().await.unwrap();
}
