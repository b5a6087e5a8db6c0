//! Wake-ups, not polling: waiters are woken by the listener connection; a broken listener
//! falls back to polling so no wake-up is lost; long waits park the workflow and the
//! notification re-executes it. And the exactly-once guarantees under crashes, lost
//! ownership and connections cut mid-commit.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dbos_core::sysdb::LISTENER_APPLICATION_NAME;
use dbos_core::{step, workflow, Dbos, Error};
use dbos_testkit::crash::{eventually, IsolatedRuntime};
use dbos_testkit::proxy::Proxy;
use dbos_testkit::TestDatabase;
use futures_util::StreamExt;

#[workflow]
async fn waits_for_hello(topic: String) -> Result<Option<String>, Error> {
    dbos_core::recv::<String>(topic.as_str(), Duration::from_secs(60)).await
}

/// Sends a message with plain SQL, as another process or language would: the only
/// wake-up is the notification of the schema's trigger.
async fn sql_send(db: &TestDatabase, dest: &str, topic: &str, value: &str) {
    db.connect()
        .await
        .execute(
            "SELECT dbos.send_message($1, $2::text::json, $3)",
            &[&dest, &value, &topic],
        )
        .await
        .unwrap();
}

async fn listener_pids(db: &TestDatabase) -> Vec<i32> {
    db.connect()
        .await
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
            &[&LISTENER_APPLICATION_NAME],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn waiting(db: &TestDatabase, id: &str) {
    let client = db.connect().await;
    eventually("the workflow to wait", Duration::from_secs(10), || async {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = $1 AND function_name = 'DBOS.sleep'",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        (n == 1).then_some(())
    })
    .await;
}

#[dbos_testkit::test]
async fn a_message_sent_from_sql_wakes_a_waiting_workflow(db: TestDatabase) {
    let dbos = launched_listening(
        &db,
        db.config("testapp").park_after(Duration::from_secs(600)),
    )
    .await;
    let h = waits_for_hello("hi".into())
        .id("sql-1")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    waiting(&db, "sql-1").await;
    let sent = Instant::now();
    sql_send(&db, "sql-1", "hi", "\"from sql\"").await;
    assert_eq!(h.result().await.unwrap().as_deref(), Some("from sql"));
    // Woken by the notification, not by the fallback (1 s) or the safety recheck (30 s).
    assert!(
        sent.elapsed() < Duration::from_millis(900),
        "{:?}",
        sent.elapsed()
    );
}

/// An executor reaching the database through `proxy`, once its listener is connected.
async fn launch_listening(db: &TestDatabase, proxy: &Proxy, park_after: Duration) -> Dbos {
    launched_listening(
        db,
        db.config("testapp")
            .system_database_url(proxy.url(&db.url()))
            .park_after(park_after),
    )
    .await
}

/// An executor launched with `config`, once its listener is connected.
async fn launched_listening(db: &TestDatabase, config: dbos_core::Config) -> Dbos {
    let dbos = Dbos::launch(config).await.unwrap();
    eventually(
        "the listener to connect",
        Duration::from_secs(10),
        || async { (listener_pids(db).await.len() == 1).then_some(()) },
    )
    .await;
    dbos
}

/// The listener dies mid-wait and cannot come back (the proxy refuses new connections; the
/// pool keeps its own).
async fn take_the_listener_away(db: &TestDatabase, proxy: &Proxy) {
    proxy.refuse_new(true);
    let killed: Option<bool> = db
        .connect()
        .await
        .query_one(
            "SELECT bool_and(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
            &[&LISTENER_APPLICATION_NAME],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, Some(true));
    eventually(
        "the listener to be gone",
        Duration::from_secs(10),
        || async { listener_pids(db).await.is_empty().then_some(()) },
    )
    .await;
}

/// With the listener's backend terminated and its reconnections refused, messages still
/// arrive: waits fall back to polling. Once it is back, notifications wake them again.
async fn listener_outage(db: &TestDatabase, park_after: Duration) {
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let dbos = launch_listening(db, &proxy, park_after).await;
    let first = waits_for_hello("one".into())
        .id("lo-1")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let second = waits_for_hello("two".into())
        .id("lo-2")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    waiting(db, "lo-1").await;
    waiting(db, "lo-2").await;
    if park_after < Duration::from_secs(1) {
        eventually("both to park", Duration::from_secs(10), || async {
            (dbos.parked_workflows() == 2).then_some(())
        })
        .await;
    }
    take_the_listener_away(db, &proxy).await;
    sql_send(db, "lo-1", "one", "\"during the outage\"").await;
    let got = tokio::time::timeout(Duration::from_secs(10), first.result())
        .await
        .expect("the message arrives while the listener is away");
    assert_eq!(got.unwrap().as_deref(), Some("during the outage"));
    assert!(
        listener_pids(db).await.is_empty(),
        "the listener stayed away"
    );

    proxy.refuse_new(false);
    eventually(
        "the listener to reconnect",
        Duration::from_secs(15),
        || async { (listener_pids(db).await.len() == 1).then_some(()) },
    )
    .await;
    sql_send(db, "lo-2", "two", "\"after it\"").await;
    let got = tokio::time::timeout(Duration::from_secs(10), second.result())
        .await
        .expect("the message arrives once the listener is back");
    assert_eq!(got.unwrap().as_deref(), Some("after it"));
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_live_wait_survives_the_listener_backend_being_terminated(db: TestDatabase) {
    listener_outage(&db, Duration::from_secs(600)).await;
}

#[dbos_testkit::test]
async fn a_parked_wait_survives_the_listener_backend_being_terminated(db: TestDatabase) {
    listener_outage(&db, Duration::from_millis(200)).await;
}

#[workflow]
async fn awaits_event(target: String) -> Result<Option<String>, Error> {
    dbos_core::get_event::<String>(&target, "ready", Duration::from_secs(60)).await
}

/// An event set while the listener is away (by SQL, as another process would) still wakes
/// its waiter: the fallback poll looks for every awaited event (`present_events`). Checked:
/// with that look-up finding nothing, the wait runs into its 60 s timeout.
#[dbos_testkit::test]
async fn an_event_set_while_the_listener_is_away_still_wakes_its_waiter(db: TestDatabase) {
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let dbos = launch_listening(&db, &proxy, Duration::from_secs(600)).await;
    // The event's owner: any workflow row (this one waits for a message it never gets).
    let owner = waits_for_hello("never".into())
        .id("eo-owner")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let waiter = awaits_event("eo-owner".into())
        .id("eo-waiter")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    waiting(&db, "eo-waiter").await;
    take_the_listener_away(&db, &proxy).await;
    db.connect()
        .await
        .batch_execute(
            "INSERT INTO dbos.workflow_events (workflow_uuid, key, value, serialization)
             VALUES ('eo-owner', 'ready', '\"while away\"', 'portable_json')",
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), waiter.result())
        .await
        .expect("the event is found while the listener is away");
    assert_eq!(got.unwrap().as_deref(), Some("while away"));
    assert!(
        listener_pids(&db).await.is_empty(),
        "the listener stayed away"
    );
    drop(owner);
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn announces(value: String) -> Result<(), Error> {
    dbos_core::set_event("ready", &value).await
}

#[dbos_testkit::test]
async fn parked_waits_hold_no_task_and_are_woken_by_what_they_wait_for(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").park_after(Duration::from_millis(200)))
        .await
        .unwrap();
    let recv = waits_for_hello("wake".into())
        .id("pk-recv")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    // The event's writer exists before the reader waits (it waits for its go first).
    let event = awaits_event("pk-setter".into())
        .id("pk-event")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("both waits to park", Duration::from_secs(10), || async {
        (dbos.parked_workflows() == 2 && dbos.running_workflows() == 0).then_some(())
    })
    .await;

    let started = Instant::now();
    sql_send(&db, "pk-recv", "wake", "\"parked no more\"").await;
    assert_eq!(
        recv.result().await.unwrap().as_deref(),
        Some("parked no more")
    );
    announces("set".into())
        .id("pk-setter")
        .on(&dbos)
        .await
        .unwrap();
    assert_eq!(event.result().await.unwrap().as_deref(), Some("set"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken at their timeout (60 s), not by their notification: {:?}",
        started.elapsed()
    );
    assert_eq!(dbos.parked_workflows(), 0);
    // Re-executed from their history: one receive, one deadline, one event read.
    let names: Vec<(String, String)> = db
        .connect()
        .await
        .query(
            "SELECT workflow_uuid, function_name FROM dbos.operation_outputs
              WHERE workflow_uuid IN ('pk-recv', 'pk-event') ORDER BY workflow_uuid, function_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        names,
        [
            ("pk-event", "DBOS.getEvent"),
            ("pk-event", "DBOS.sleep"),
            ("pk-recv", "DBOS.recv"),
            ("pk-recv", "DBOS.sleep"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .to_vec()
    );
}

#[workflow]
async fn short_parked_wait() -> Result<Option<String>, Error> {
    dbos_core::recv::<String>("x", Duration::from_millis(1500)).await
}

#[dbos_testkit::test]
async fn a_parked_wait_times_out_at_its_deadline(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").park_after(Duration::from_millis(200)))
        .await
        .unwrap();
    let started = Instant::now();
    let h = short_parked_wait()
        .id("pto")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("the wait to park", Duration::from_secs(5), || async {
        (dbos.parked_workflows() == 1).then_some(())
    })
    .await;
    assert_eq!(h.result().await.unwrap(), None);
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

/// A long wait in a workflow whose own deadline comes first does not park: the execution
/// stays, and its deadline cancels the workflow on time. Parked, nothing would run the
/// deadline until the wait's wake-up (60 s), and the workflow would stay `PENDING` past it.
#[dbos_testkit::test]
async fn a_wait_that_outlasts_its_workflows_deadline_does_not_park_and_the_deadline_ends_it(
    db: TestDatabase,
) {
    let dbos = Dbos::launch(db.config("testapp").park_after(Duration::from_millis(200)))
        .await
        .unwrap();
    let started = Instant::now();
    let h = waits_for_hello("never".into())
        .id("deadline-first")
        .timeout(Duration::from_secs(2))
        .on(&dbos)
        .start()
        .await
        .unwrap();
    waiting(&db, "deadline-first").await;
    // Well past the park time (200 ms) and before the deadline: still a live wait.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(dbos.parked_workflows(), 0, "the wait parked");
    let e = tokio::time::timeout(Duration::from_secs(20), h.result())
        .await
        .expect("the workflow's deadline did not end it (it waits for the receive's 60 s)")
        .unwrap_err();
    assert_eq!(e.kind(), dbos_core::ErrorKind::Timeout, "{e:?}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(h.status().await.unwrap(), dbos_core::Status::Cancelled);
}

static HANG: AtomicU32 = AtomicU32::new(0);
static REACHED: AtomicU32 = AtomicU32::new(0);

#[step]
async fn hang_first_time() -> Result<(), Error> {
    REACHED.fetch_add(1, Ordering::SeqCst);
    if HANG.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[workflow]
async fn effects_then_hang(dest: String) -> Result<(), Error> {
    dbos_core::send(dest.as_str(), &"once", "t").await?;
    dbos_core::set_event("e", &1).await?;
    dbos_core::write_stream("s", &1).await?;
    dbos_core::close_stream("s").await?;
    hang_first_time().await
}

#[dbos_testkit::test]
async fn sends_events_and_stream_writes_are_not_repeated_by_recovery(db: TestDatabase) {
    let config = db
        .config("testapp")
        .executor_id("fx-crash")
        .application_version("v-fx-crash");
    let dbos = Dbos::launch(config.clone()).await.unwrap();
    let inbox = waits_for_hello("t".into())
        .id("fx-inbox")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    dbos.shutdown().await.unwrap();
    let first = IsolatedRuntime::new();
    let c = config.clone();
    first
        .run(async move {
            let dbos = Dbos::launch(c).await.unwrap();
            effects_then_hang("fx-inbox".into())
                .id("fx-1")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        })
        .await;
    eventually("the workflow to hang", Duration::from_secs(10), || async {
        (REACHED.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    first.abort();
    let dbos = Dbos::launch(config).await.unwrap();
    dbos.retrieve_workflow::<(), Error>("fx-1")
        .result()
        .await
        .unwrap();
    assert_eq!(REACHED.load(Ordering::SeqCst), 2);
    let _ = inbox;
    let client = db.connect().await;
    let counts: (i64, i64, i64, i64) = client
        .query_one(
            "SELECT (SELECT count(*) FROM dbos.notifications WHERE destination_uuid = 'fx-inbox'),
                    (SELECT count(*) FROM dbos.workflow_events_history WHERE workflow_uuid = 'fx-1'),
                    (SELECT count(*) FROM dbos.streams WHERE workflow_uuid = 'fx-1'),
                    (SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'fx-1')",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .unwrap();
    assert_eq!(
        counts,
        (1, 1, 2, 5),
        "(messages, event history, stream rows, checkpoints)"
    );
    dbos.shutdown().await.unwrap();
}

/// What each [`writes_after_a_nap`] write came to, by workflow id.
static NAP_WROTE: std::sync::Mutex<Vec<(String, Option<dbos_core::ErrorKind>)>> =
    std::sync::Mutex::new(Vec::new());

/// Sleeps (while the test takes its ownership away; long enough for a loaded machine to do
/// so first), then tries one write.
#[workflow]
async fn writes_after_a_nap(op: String, dest: String) -> Result<String, Error> {
    dbos_core::sleep(Duration::from_millis(1500)).await?;
    let r = match op.as_str() {
        "send" => dbos_core::send(dest.as_str(), &"x", "t").await,
        "set_event" => dbos_core::set_event("k", &"x").await,
        "write_stream" => dbos_core::write_stream("k", &"x").await,
        other => panic!("unknown op {other}"),
    };
    let id = dbos_core::workflow_id().unwrap_or_default();
    NAP_WROTE
        .lock()
        .unwrap()
        .push((id, r.as_ref().err().map(Error::kind)));
    Ok(format!("{r:?}"))
}

#[dbos_testkit::test]
async fn writes_are_fenced_by_the_executions_ownership(db: TestDatabase) {
    // The watchdog would stop the execution before the write; keep it out of the way so
    // the statement's own fence is what refuses.
    let dbos = Dbos::launch(
        db.config("testapp")
            .park_after(Duration::from_secs(600))
            .cancel_poll_interval(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    let _inbox = waits_for_hello("unused".into())
        .id("fence-inbox")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let client = db.connect().await;
    let take_over = |id: String| {
        let client = &client;
        async move {
            client
                .execute(
                    "UPDATE dbos.workflow_status SET owner_xid = 'someone-else' WHERE workflow_uuid = $1",
                    &[&id],
                )
                .await
                .unwrap();
        }
    };
    for op in ["send", "set_event", "write_stream", "recv"] {
        let id = format!("fence-{op}");
        if op == "recv" {
            // Waiting already (its deadline recorded) when the ownership changes; then the
            // message arrives and the consume must refuse.
            let _h = waits_for_hello("t".into())
                .id(id.clone())
                .on(&dbos)
                .start()
                .await
                .unwrap();
            waiting(&db, &id).await;
            take_over(id.clone()).await;
            dbos.send(id.clone(), &"kept", "t").await.unwrap();
        } else {
            let _h = writes_after_a_nap(op.into(), "fence-inbox".into())
                .id(id.clone())
                .on(&dbos)
                .start()
                .await
                .unwrap();
            waiting(&db, &id).await;
            take_over(id.clone()).await;
        }
        eventually("the execution to stop", Duration::from_secs(10), || async {
            (dbos.running_workflows() == 1).then_some(())
        })
        .await;
        let written: (i64, i64, i64, i64, i64) = client
            .query_one(
                "SELECT (SELECT count(*) FROM dbos.notifications WHERE destination_uuid = 'fence-inbox'),
                        (SELECT count(*) FROM dbos.workflow_events WHERE workflow_uuid = $1),
                        (SELECT count(*) FROM dbos.streams WHERE workflow_uuid = $1),
                        (SELECT count(*) FROM dbos.notifications WHERE destination_uuid = $1 AND consumed),
                        (SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = $1)",
                &[&id],
            )
            .await
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .unwrap();
        assert_eq!(
            written,
            (0, 0, 0, 0, 1),
            "{op}: only the sleep was recorded"
        );
        if op != "recv" {
            // The refused write is an error to the body, not a write that "happened": the
            // execution must not go on as if its effect were recorded.
            let wrote = NAP_WROTE.lock().unwrap().clone();
            let kind = wrote.iter().find(|(w, _)| *w == id).map(|(_, k)| *k);
            assert_eq!(
                kind,
                Some(Some(dbos_core::ErrorKind::ConflictingWorkflowId)),
                "{op}: the write was refused"
            );
        }
    }
}

/// Set by the test once it has taken the workflows of [`step_write_on_cue`] away.
static STEP_GO: AtomicU32 = AtomicU32::new(0);
/// How many [`step_write_on_cue`] steps have started.
static STEP_STARTED: AtomicU32 = AtomicU32::new(0);
/// What each step's write came to, by workflow id.
static STEP_WROTE: std::sync::Mutex<Vec<(String, Option<dbos_core::ErrorKind>)>> =
    std::sync::Mutex::new(Vec::new());

/// Waits (inside the step) until the test has taken its workflow away, then tries one write.
#[step]
async fn step_write_on_cue(op: String, dest: String) -> Result<(), Error> {
    STEP_STARTED.fetch_add(1, Ordering::SeqCst);
    let until = Instant::now() + Duration::from_secs(60);
    while STEP_GO.load(Ordering::SeqCst) == 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = match op.as_str() {
        "send" => dbos_core::send(dest.as_str(), &"x", "t").await,
        "set_event" => dbos_core::set_event("k", &"x").await,
        "write_stream" => dbos_core::write_stream("k", &"x").await,
        other => panic!("unknown op {other}"),
    };
    let id = dbos_core::workflow_id().unwrap_or_default();
    STEP_WROTE
        .lock()
        .unwrap()
        .push((id, r.as_ref().err().map(Error::kind)));
    r
}

#[workflow]
async fn writes_from_a_step_on_cue(op: String, dest: String) -> Result<(), Error> {
    step_write_on_cue(op, dest).await
}

#[dbos_testkit::test]
async fn step_writes_are_fenced_when_the_workflow_is_cancelled_or_taken_over_elsewhere(
    db: TestDatabase,
) {
    // The watchdog would stop the execution; keep it away so the write's own fence is what
    // refuses. The steps are mid-body when their workflows are cancelled or taken over by
    // SQL, as another process would.
    let dbos = Dbos::launch(
        db.config("testapp")
            .park_after(Duration::from_secs(600))
            .cancel_poll_interval(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    waits_for_hello("unused".into())
        .id("sfence-inbox")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for how in ["cancelled", "taken"] {
        for op in ["send", "set_event", "write_stream"] {
            let id = format!("sfence-{how}-{op}");
            writes_from_a_step_on_cue(op.into(), "sfence-inbox".into())
                .id(id.clone())
                .on(&dbos)
                .start()
                .await
                .unwrap();
            ids.push((how, id));
        }
    }
    eventually("every step to start", Duration::from_secs(30), || async {
        (STEP_STARTED.load(Ordering::SeqCst) == 6).then_some(())
    })
    .await;
    let client = db.connect().await;
    for (how, id) in &ids {
        let sql = if *how == "cancelled" {
            "UPDATE dbos.workflow_status SET status = 'CANCELLED', owner_xid = NULL WHERE workflow_uuid = $1"
        } else {
            "UPDATE dbos.workflow_status SET owner_xid = 'another-process' WHERE workflow_uuid = $1"
        };
        client.execute(sql, &[id]).await.unwrap();
    }
    STEP_GO.store(1, Ordering::SeqCst);
    eventually("every step to write", Duration::from_secs(30), || async {
        (STEP_WROTE.lock().unwrap().len() == 6).then_some(())
    })
    .await;
    let wrote = STEP_WROTE.lock().unwrap().clone();
    for (how, id) in &ids {
        let kind = wrote.iter().find(|(w, _)| w == id).and_then(|(_, k)| *k);
        let expected = if *how == "cancelled" {
            dbos_core::ErrorKind::WorkflowCancelled
        } else {
            dbos_core::ErrorKind::ConflictingWorkflowId
        };
        assert_eq!(kind, Some(expected), "{id}: the write was refused");
    }
    let written: (i64, i64, i64, i64) = client
        .query_one(
            "SELECT (SELECT count(*) FROM dbos.notifications WHERE destination_uuid = 'sfence-inbox'),
                    (SELECT count(*) FROM dbos.workflow_events WHERE workflow_uuid LIKE 'sfence-%'),
                    (SELECT count(*) FROM dbos.workflow_events_history WHERE workflow_uuid LIKE 'sfence-%'),
                    (SELECT count(*) FROM dbos.streams WHERE workflow_uuid LIKE 'sfence-%')",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .unwrap();
    assert_eq!(
        written,
        (0, 0, 0, 0),
        "(messages, events, history, stream rows)"
    );
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn pinger(peer: String, n: u32) -> Result<u32, Error> {
    for i in 0..n {
        dbos_core::send(peer.as_str(), &i, "ping").await?;
        let back = dbos_core::recv::<u32>("pong", Duration::from_secs(60)).await?;
        if back != Some(i) {
            return Err(Error::new(
                dbos_core::ErrorKind::WorkflowFailed,
                format!("expected pong {i}, got {back:?}"),
            ));
        }
        dbos_core::set_event("progress", &i).await?;
        dbos_core::write_stream("log", &i).await?;
    }
    dbos_core::close_stream("log").await?;
    Ok(n)
}

#[workflow]
async fn ponger(peer: String, n: u32) -> Result<(), Error> {
    for _ in 0..n {
        let i = dbos_core::recv::<u32>("ping", Duration::from_secs(60))
            .await?
            .unwrap_or(u32::MAX);
        dbos_core::send(peer.as_str(), &i, "pong").await?;
    }
    Ok(())
}

#[dbos_testkit::test]
async fn connections_cut_mid_commit_neither_lose_nor_repeat_anything(db: TestDatabase) {
    const N: u32 = 40;
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let dbos = Dbos::launch(
        db.config("testapp")
            .system_database_url(proxy.url(&db.url()))
            .pool_size(4),
    )
    .await
    .unwrap();
    let pong = ponger("ping-x".into(), N)
        .id("pong-x")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let ping = pinger("pong-x".into(), N)
        .id("ping-x")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let reader = tokio::spawn({
        let dbos = dbos.clone();
        async move {
            dbos.read_stream::<u32>("ping-x", "log")
                .map(|r| r.unwrap())
                .collect::<Vec<_>>()
                .await
        }
    });
    let cutter = tokio::spawn({
        let proxy_cuts = std::sync::Arc::new(proxy);
        let p = proxy_cuts.clone();
        async move {
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                p.cut_all();
            }
            p
        }
    });
    assert_eq!(ping.result().await.unwrap(), N);
    pong.result().await.unwrap();
    let proxy = cutter.await.unwrap();
    assert!(proxy.cut() > 0, "no connection was cut");
    assert_eq!(reader.await.unwrap(), (0..N).collect::<Vec<_>>());
    let client = db.connect().await;
    let counts: (i64, i64, i64, i64, i64) = client
        .query_one(
            "SELECT (SELECT count(*) FROM dbos.notifications),
                    (SELECT count(*) FROM dbos.notifications WHERE consumed),
                    (SELECT count(DISTINCT (destination_uuid, consumed_by_function_id)) FROM dbos.notifications),
                    (SELECT count(*) FROM dbos.workflow_events_history WHERE workflow_uuid = 'ping-x'),
                    (SELECT count(*) FROM dbos.streams WHERE workflow_uuid = 'ping-x')",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .unwrap();
    let n = i64::from(N);
    assert_eq!(counts, (2 * n, 2 * n, 2 * n, n, n + 1));
    dbos.shutdown().await.unwrap();
}

/// Each phase waits for its cue, then makes one write whose statement carries a marker
/// the proxy loses the acknowledgement of.
/// A runtime whose system database is reached through a proxy, with a workflow `inbox`
/// waiting (a destination for sends).
async fn through_a_proxy(db: &TestDatabase, inbox: &str) -> (Proxy, Dbos) {
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let dbos = Dbos::launch(
        db.config("testapp")
            .system_database_url(proxy.url(&db.url()))
            .pool_size(4),
    )
    .await
    .unwrap();
    waits_for_hello("unused".into())
        .id(inbox)
        .on(&dbos)
        .start()
        .await
        .unwrap();
    (proxy, dbos)
}

#[workflow]
async fn lost_acks(inbox: String) -> Result<Option<String>, Error> {
    let cue = |n: u32| async move {
        dbos_core::recv::<bool>(format!("go{n}").as_str(), Duration::from_secs(30)).await
    };
    cue(1).await?;
    dbos_core::send(inbox.as_str(), &"LOSE-ACK-send", "t").await?;
    cue(2).await?;
    dbos_core::set_event("e", &"LOSE-ACK-event").await?;
    cue(3).await?;
    dbos_core::write_stream("s", &"LOSE-ACK-stream").await?;
    cue(4).await?;
    dbos_core::recv::<String>("data", Duration::from_secs(30)).await
}

/// Waits for the event that `lost_acks` sets with its acknowledgement lost.
#[workflow]
async fn awaits_lost_ack_event(target: String) -> Result<Option<String>, Error> {
    dbos_core::get_event::<String>(&target, "e", Duration::from_secs(120)).await
}

/// Every write made under a lost acknowledgement is retried, recognised as this execution's
/// own (not another execution's), and therefore acts as a write of its own: the event wakes
/// its waiting reader at once (a write taken for another execution's announces nothing, and
/// the reader would wait for its 30 s re-check). Nothing is written twice.
#[dbos_testkit::test]
async fn a_write_whose_acknowledgement_was_lost_is_retried_and_recognised(db: TestDatabase) {
    let (proxy, dbos) = through_a_proxy(&db, "la-inbox").await;
    // A send from outside any workflow: its message id, drawn once, makes the retry a no-op.
    proxy.lose_reply_to(b"LOSE-ACK-client");
    dbos.send("la-inbox", &"LOSE-ACK-client", "other")
        .await
        .unwrap();
    assert_eq!(proxy.fired(), 1);
    let h = lost_acks("la-inbox".into())
        .id("la-1")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    // A reader of the event, waiting before it is written (its deadline is recorded).
    let reader = awaits_lost_ack_event("la-1".into())
        .id("la-reader")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    waiting(&db, "la-reader").await;
    // Sent before the receive's marker is armed (its id carries the marker).
    dbos.send("la-1", &"payload", "data")
        .idempotency_key("LOSE-ACK-recv")
        .await
        .unwrap();
    let markers = [
        "LOSE-ACK-send",
        "LOSE-ACK-event",
        "LOSE-ACK-stream",
        "LOSE-ACK-recv",
    ];
    for (n, marker) in markers.iter().enumerate() {
        proxy.lose_reply_to(marker.as_bytes());
        dbos.send("la-1", &true, format!("go{}", n + 1).as_str())
            .await
            .unwrap();
        eventually("the reply to be lost", Duration::from_secs(10), || async {
            (proxy.fired() == n + 2).then_some(())
        })
        .await;
        if *marker == "LOSE-ACK-event" {
            // Woken by the retried write's announcement ("at once"; the bound is generous
            // for a loaded machine and well below the 30 s re-check).
            let read = tokio::time::timeout(Duration::from_secs(8), reader.result())
                .await
                .expect("the event's reader was not woken by the recognised write");
            assert_eq!(read.unwrap().as_deref(), Some("LOSE-ACK-event"));
        }
    }
    assert_eq!(h.result().await.unwrap().as_deref(), Some("payload"));
    let counts: (i64, i64, i64, i64, i64) = db
        .connect()
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM dbos.notifications WHERE destination_uuid = 'la-inbox' AND topic = 't'),
                    (SELECT count(*) FROM dbos.workflow_events_history WHERE workflow_uuid = 'la-1'),
                    (SELECT count(*) FROM dbos.streams WHERE workflow_uuid = 'la-1'),
                    (SELECT count(*) FROM dbos.notifications WHERE destination_uuid = 'la-1' AND consumed),
                    (SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'la-1')",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .unwrap();
    // 4 cues and the data: 5 receives (10 ids), plus send, set_event, write_stream.
    assert_eq!(counts, (1, 1, 1, 5, 13));
    let client_sends: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM dbos.notifications WHERE topic = 'other'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(client_sends, 1);
    dbos.shutdown().await.unwrap();
}

/// A step that writes three stream values, a message and an event, each carrying a marker
/// whose acknowledgement the test may have the proxy lose.
#[step]
async fn step_writes_marked(inbox: String) -> Result<(), Error> {
    dbos_core::write_stream("s", &"STEP-ACK-first").await?;
    dbos_core::write_stream("s", &"STEP-ACK-stream").await?;
    dbos_core::write_stream("s", &"STEP-ACK-last").await?;
    dbos_core::send(inbox.as_str(), &"STEP-ACK-send", "t").await?;
    dbos_core::set_event("e", &"STEP-ACK-event").await
}

#[workflow]
async fn writes_from_a_marked_step(inbox: String) -> Result<(), Error> {
    step_writes_marked(inbox).await
}

#[dbos_testkit::test]
async fn a_step_write_whose_acknowledgement_was_lost_is_not_repeated(db: TestDatabase) {
    let (proxy, dbos) = through_a_proxy(&db, "sla-inbox").await;
    let client = db.connect().await;
    let mut fired = 0;
    for (n, marker) in ["STEP-ACK-stream", "STEP-ACK-send", "STEP-ACK-event"]
        .into_iter()
        .enumerate()
    {
        // The id must not carry the marker (the workflow's start would lose its reply).
        let id = format!("sla-{n}");
        proxy.lose_reply_to(marker.as_bytes());
        writes_from_a_marked_step("sla-inbox".into())
            .id(id.clone())
            .on(&dbos)
            .await
            .unwrap();
        fired += 1;
        assert_eq!(proxy.fired(), fired, "{marker}: the reply was lost");
        let stream: Vec<(String, i32, i32)> = client
            .query(
                "SELECT value, \"offset\", function_id FROM dbos.streams WHERE workflow_uuid = $1 ORDER BY \"offset\"",
                &[&id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(
            stream,
            vec![
                ("\"STEP-ACK-first\"".to_owned(), 0, 1),
                ("\"STEP-ACK-stream\"".to_owned(), 1, 1),
                ("\"STEP-ACK-last\"".to_owned(), 2, 1),
            ],
            "{marker}: each value appended once, in order"
        );
        let (events, history): (i64, i64) = client
            .query_one(
                "SELECT (SELECT count(*) FROM dbos.workflow_events WHERE workflow_uuid = $1),
                        (SELECT count(*) FROM dbos.workflow_events_history WHERE workflow_uuid = $1)",
                &[&id],
            )
            .await
            .map(|r| (r.get(0), r.get(1)))
            .unwrap();
        assert_eq!((events, history), (1, 1), "{marker}: one event");
    }
    let sent: i64 = client
        .query_one(
            "SELECT count(*) FROM dbos.notifications WHERE destination_uuid = 'sla-inbox' AND topic = 't'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sent, 3, "one message per workflow");
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_cancel_ends_a_wait_at_once_live_or_parked(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").park_after(Duration::from_millis(300)))
        .await
        .unwrap();
    let live = waits_for_hello("c".into())
        .id("cancel-live")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    waiting(&db, "cancel-live").await;
    let started = Instant::now();
    dbos.cancel_workflow("cancel-live").await.unwrap();
    let e = live.result().await.unwrap_err();
    assert_eq!(
        e.kind(),
        dbos_core::ErrorKind::AwaitedWorkflowCancelled,
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let parked = waits_for_hello("c".into())
        .id("cancel-parked")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("the wait to park", Duration::from_secs(10), || async {
        (dbos.parked_workflows() == 1).then_some(())
    })
    .await;
    dbos.cancel_workflow("cancel-parked").await.unwrap();
    assert_eq!(dbos.parked_workflows(), 0);
    let e = parked.result().await.unwrap_err();
    assert_eq!(
        e.kind(),
        dbos_core::ErrorKind::AwaitedWorkflowCancelled,
        "{e}"
    );
    // A message sent now is not received by anyone: it stays.
    dbos.send("cancel-parked", &"late", "c").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let consumed: bool = db
        .connect()
        .await
        .query_one(
            "SELECT consumed FROM dbos.notifications WHERE destination_uuid = 'cancel-parked'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!consumed);
}

#[workflow]
async fn sleeps_forever() -> Result<(), Error> {
    dbos_core::sleep(Duration::MAX).await
}

#[workflow]
async fn waits_forever() -> Result<Option<String>, Error> {
    dbos_core::recv::<String>("never", Duration::MAX).await
}

#[dbos_testkit::test]
async fn a_sleep_or_wait_of_duration_max_waits_a_century_without_panicking(db: TestDatabase) {
    let dbos = db.launch().await;
    let sleeper = sleeps_forever()
        .id("forever-sleep")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let waiter = waits_forever()
        .id("forever-recv")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let sql = db.connect().await;
    for id in ["forever-sleep", "forever-recv"] {
        let wake_at: f64 = eventually("the wake-up time to be recorded", Duration::from_secs(30), || async {
            let row = sql
                .query_opt(
                    "SELECT output FROM dbos.operation_outputs WHERE workflow_uuid = $1 AND function_name = 'DBOS.sleep'",
                    &[&id],
                )
                .await
                .unwrap()?;
            row.get::<_, Option<String>>(0).and_then(|t| t.parse().ok())
        })
        .await;
        let years = (wake_at
            - std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64())
            / (365.0 * 24.0 * 3600.0);
        assert!(
            (99.0..=100.5).contains(&years),
            "{id} wakes in {years} years"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in ["forever-sleep", "forever-recv"] {
        let status: String = sql
            .query_one(
                "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(status, "PENDING", "{id}");
    }
    dbos.cancel_workflow("forever-sleep").await.unwrap();
    dbos.cancel_workflow("forever-recv").await.unwrap();
    assert!(sleeper.result().await.is_err());
    assert!(waiter.result().await.is_err());
}

#[workflow]
async fn waits_an_hour() -> Result<Option<String>, Error> {
    dbos_core::recv::<String>("never", Duration::from_secs(3600)).await
}

#[dbos_testkit::test]
async fn parked_workflows_cancelled_or_deleted_elsewhere_leave_memory(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").park_after(Duration::from_millis(100)))
        .await
        .unwrap();
    for id in ["parked-cancel", "parked-delete", "parked-stays"] {
        waits_an_hour().id(id).on(&dbos).start().await.unwrap();
    }
    eventually(
        "three workflows to park",
        Duration::from_secs(30),
        || async { (dbos.parked_workflows() == 3).then_some(()) },
    )
    .await;
    // Another process (or SQL) cancels one and deletes another: no notification reaches
    // this executor.
    let sql = db.connect().await;
    sql.batch_execute(
        "UPDATE dbos.workflow_status SET status = 'CANCELLED' WHERE workflow_uuid = 'parked-cancel';
         DELETE FROM dbos.operation_outputs WHERE workflow_uuid = 'parked-delete';
         DELETE FROM dbos.workflow_input WHERE workflow_uuid = 'parked-delete';
         DELETE FROM dbos.workflow_status WHERE workflow_uuid = 'parked-delete';",
    )
    .await
    .unwrap();
    let started = Instant::now();
    eventually(
        "the two entries to leave",
        Duration::from_secs(30),
        || async { (dbos.parked_workflows() == 1).then_some(()) },
    )
    .await;
    // The documented bound: a sweep every 5 s (with slack for a loaded machine).
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "the entries left after {:?}",
        started.elapsed()
    );
    // A later sweep keeps the one still waiting.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(dbos.parked_workflows(), 1);
    dbos.shutdown().await.unwrap();
}

/// A write finds its step recorded by another execution: the recorded step counts only when
/// it is the same operation and this execution still owns the workflow. Under another name
/// (the two executions run different code), or with the ownership gone, the write is refused:
/// the body's call fails and nothing is written, rather than going on with the other
/// execution's answer.
#[dbos_testkit::test]
async fn a_write_whose_step_another_execution_recorded_counts_only_for_the_same_operation_and_owner(
    db: TestDatabase,
) {
    let dbos = Dbos::launch(
        db.config("testapp")
            .park_after(Duration::from_secs(600))
            .cancel_poll_interval(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    let _inbox = waits_for_hello("unused".into())
        .id("recorded-inbox")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let client = db.connect().await;
    for (op, name) in [
        ("send", "DBOS.send"),
        ("set_event", "DBOS.setEvent"),
        ("write_stream", "DBOS.writeStream"),
    ] {
        for case in ["another-operation", "taken-over"] {
            let id = format!("recorded-{op}-{case}");
            let _h = writes_after_a_nap(op.into(), "recorded-inbox".into())
                .id(id.clone())
                .on(&dbos)
                .start()
                .await
                .unwrap();
            waiting(&db, &id).await;
            // The step after the sleep, recorded by "another execution": under another
            // operation's name, or under this one's by an execution that took the workflow.
            let recorded = if case == "another-operation" {
                "DBOS.getEvent"
            } else {
                name
            };
            client
                .execute(
                    "INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output,
                                                         started_at_epoch_ms, completed_at_epoch_ms)
                     SELECT $1, max(function_id) + 1, $2, 'null', 1, 1
                       FROM dbos.operation_outputs WHERE workflow_uuid = $1",
                    &[&id, &recorded],
                )
                .await
                .unwrap();
            if case == "taken-over" {
                client
                    .execute(
                        "UPDATE dbos.workflow_status SET owner_xid = 'someone-else' WHERE workflow_uuid = $1",
                        &[&id],
                    )
                    .await
                    .unwrap();
            }
            eventually("the execution to stop", Duration::from_secs(20), || async {
                (dbos.running_workflows() == 1).then_some(())
            })
            .await;
            let wrote = NAP_WROTE.lock().unwrap().clone();
            let kind = wrote.iter().find(|(w, _)| *w == id).map(|(_, k)| *k);
            assert_eq!(
                kind,
                Some(Some(dbos_core::ErrorKind::ConflictingWorkflowId)),
                "{op}, {case}: the write was refused"
            );
            let written: (i64, i64, i64, String) = client
                .query_one(
                    "SELECT (SELECT count(*) FROM dbos.notifications WHERE destination_uuid = 'recorded-inbox'),
                            (SELECT count(*) FROM dbos.workflow_events WHERE workflow_uuid = $1),
                            (SELECT count(*) FROM dbos.streams WHERE workflow_uuid = $1),
                            (SELECT status FROM dbos.workflow_status WHERE workflow_uuid = $1)",
                    &[&id],
                )
                .await
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .unwrap();
            assert_eq!(
                written,
                (0, 0, 0, "PENDING".to_owned()),
                "{op}, {case}: nothing written, the workflow left as it was"
            );
        }
    }
    dbos.shutdown().await.unwrap();
}

/// Set by [`a_send_under_a_claim_handed_over_mid_write_is_made_once`] to let
/// [`send_cue`] return.
static HANDOVER_GO: AtomicU32 = AtomicU32::new(0);

/// Waits (in a step) until the test lets it go.
#[step]
async fn send_cue() -> Result<(), Error> {
    let until = Instant::now() + Duration::from_secs(60);
    while HANDOVER_GO.load(Ordering::SeqCst) == 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Sends one message once the test lets it.
#[workflow]
async fn sends_on_cue(dest: String) -> Result<(), Error> {
    send_cue().await?;
    dbos_core::send(dest.as_str(), &"handed", "t").await
}

/// A send whose statement runs after a new claim of its workflow was handed to its
/// execution (a resume while it runs): the statement's fence, carrying the old claim,
/// refuses, and the send is made again under the new one, once. Taking that refusal for a
/// lost ownership would stop the execution and leave the workflow pending, claimed here,
/// with nothing running it. The test holds the messages table locked so that the send's
/// statement waits, before taking its snapshot, until the claim has been handed over.
#[dbos_testkit::test]
async fn a_send_under_a_claim_handed_over_mid_write_is_made_once(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").park_after(Duration::from_secs(600)))
        .await
        .unwrap();
    let _inbox = waits_for_hello("unused".into())
        .id("handover-inbox")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let id = "handover-sender";
    let h = sends_on_cue("handover-inbox".into())
        .id(id)
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let mut locker = db.connect().await;
    let sys = db.connect().await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE dbos.notifications IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    HANDOVER_GO.store(1, Ordering::SeqCst);
    db.until_blocked_on_lock("%INSERT INTO%notifications%")
        .await;
    db.resume_until_claimed_again(&dbos, id).await;
    // The claim is handed to the execution right after it commits, in the same task.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        dbos.running_workflows(),
        2,
        "the claim attached to the running execution (no second body)"
    );
    tx.rollback().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), h.result())
        .await
        .expect("the workflow finished after the hand-over")
        .unwrap();
    let sent: i64 = sys
        .query_one(
            "SELECT count(*) FROM dbos.notifications WHERE destination_uuid = 'handover-inbox'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sent, 1, "the message, sent once");
    dbos.shutdown().await.unwrap();
}

static WAITS_FOR_B_RUNS: AtomicU32 = AtomicU32::new(0);

/// Counts its executions (its body's code runs again at each re-execution) when it waits
/// on topic `b`.
#[workflow]
async fn counted_wait(topic: String) -> Result<Option<String>, Error> {
    if topic == "b" {
        WAITS_FOR_B_RUNS.fetch_add(1, Ordering::SeqCst);
    }
    dbos_core::recv::<String>(topic.as_str(), Duration::from_secs(60)).await
}

/// A notification re-executes only the parked workflows waiting for its key: the one parked
/// on the next key in the parking lot's order stays parked, not run again.
#[dbos_testkit::test]
async fn a_wake_up_re_executes_only_the_workflows_waiting_for_its_key(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").park_after(Duration::from_millis(200)))
        .await
        .unwrap();
    // Keys `pw-a::a` and `pw-b::b`, in that order.
    let a = counted_wait("a".into())
        .id("pw-a")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let b = counted_wait("b".into())
        .id("pw-b")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("both waits to park", Duration::from_secs(10), || async {
        (dbos.parked_workflows() == 2 && dbos.running_workflows() == 0).then_some(())
    })
    .await;
    assert_eq!(WAITS_FOR_B_RUNS.load(Ordering::SeqCst), 1);
    sql_send(&db, "pw-a", "a", "\"for a\"").await;
    assert_eq!(a.result().await.unwrap().as_deref(), Some("for a"));
    // A wrong wake-up re-executes at once; give it time to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        WAITS_FOR_B_RUNS.load(Ordering::SeqCst),
        1,
        "the workflow waiting for another key was re-executed"
    );
    assert_eq!(dbos.parked_workflows(), 1);
    sql_send(&db, "pw-b", "b", "\"for b\"").await;
    assert_eq!(b.result().await.unwrap().as_deref(), Some("for b"));
    dbos.shutdown().await.unwrap();
}

/// While the listener is connected, nothing re-checks the tables for a parked wait: a
/// message written with the schema's trigger off (so no notification comes) leaves it parked
/// until a notification for its key arrives. The re-check every second runs only while the
/// listener is away (it costs a query per second per 1,000 keys waited on); with it running
/// all the time the message was found within a second.
#[dbos_testkit::test]
async fn while_the_listener_is_up_a_parked_wait_is_woken_by_notifications_alone(db: TestDatabase) {
    let dbos = launched_listening(
        &db,
        db.config("testapp").park_after(Duration::from_millis(200)),
    )
    .await;
    let h = waits_for_hello("quiet".into())
        .id("quiet-1")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    // Parked: it has looked and found nothing.
    eventually("the wait to park", Duration::from_secs(10), || async {
        (dbos.parked_workflows() == 1 && dbos.running_workflows() == 0).then_some(())
    })
    .await;
    let quiet = db.connect().await;
    quiet
        .batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    quiet
        .execute(
            "SELECT dbos.send_message('quiet-1', '\"unannounced\"'::json, 'quiet')",
            &[],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        dbos.parked_workflows(),
        1,
        "the parked wait was woken without a notification while the listener was up"
    );
    quiet
        .execute(
            "SELECT pg_notify('dbos_notifications_channel', 'quiet-1::quiet')",
            &[],
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), h.result())
        .await
        .expect("woken by the notification");
    assert_eq!(got.unwrap().as_deref(), Some("unannounced"));
    dbos.shutdown().await.unwrap();
}
