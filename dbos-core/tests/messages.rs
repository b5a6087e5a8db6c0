//! Messages between workflows and from the outside world: FIFO per topic, kept until
//! received, exactly once (the consume and its checkpoint commit together), durable
//! timeouts, typed errors that leave the row where it is, and the rows as DBOS writes them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dbos_core::{step, workflow, Dbos, Error, ErrorKind, Message};
use dbos_testkit::crash::{eventually, run_then_kill, IsolatedRuntime};
use dbos_testkit::TestDatabase;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Payment {
    cents: u64,
    card: String,
}

/// What `inbox` received: three on "data", one without a topic, and a timed-out receive.
type Received = (Vec<u64>, Option<String>, Option<u64>);

/// Waits for a "go" message, then receives three on "data", one with no topic, and one
/// that times out.
#[workflow]
async fn inbox() -> Result<Received, Error> {
    let _: Option<bool> = dbos_core::recv("go", Duration::from_secs(30)).await?;
    let mut data = Vec::new();
    for _ in 0..3 {
        data.push(
            dbos_core::recv::<u64>("data", Duration::from_secs(30))
                .await?
                .expect("a data message"),
        );
    }
    let untitled = dbos_core::recv::<String>(None, Duration::from_secs(30)).await?;
    let late = dbos_core::recv::<u64>("data", Duration::from_millis(300)).await?;
    Ok((data, untitled, late))
}

#[dbos_testkit::test]
async fn messages_are_fifo_per_topic_kept_until_received_and_recorded_as_dbos_does(
    db: TestDatabase,
) {
    let dbos = db.launch().await;
    let handle = inbox().id("inbox-1").on(&dbos).start().await.unwrap();
    // Sent before the receiver waits for them: kept.
    for n in [10_u64, 20, 30] {
        dbos_core::send("inbox-1", &n, "data").await.unwrap();
    }
    dbos.send("inbox-1", &"no topic", None)
        .idempotency_key("plain-1")
        .await
        .unwrap();
    dbos.send("inbox-1", &true, "go").await.unwrap();
    let (data, untitled, late) = handle.result().await.unwrap();
    assert_eq!(data, vec![10, 20, 30], "FIFO per destination and topic");
    assert_eq!(untitled.as_deref(), Some("no topic"));
    assert_eq!(late, None, "the last receive timed out");

    let client = db.connect().await;
    let rows = client
        .query(
            "SELECT message_uuid, topic, message, serialization, consumed, consumed_by_function_id
               FROM dbos.notifications WHERE destination_uuid = 'inbox-1' ORDER BY consumed_by_function_id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, String, bool, Option<i32>)> = rows
        .iter()
        .map(|r| (r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    let pj = "portable_json".to_owned();
    assert_eq!(
        got,
        vec![
            ("go".into(), "true".into(), pj.clone(), true, Some(1)),
            ("data".into(), "10".into(), pj.clone(), true, Some(3)),
            ("data".into(), "20".into(), pj.clone(), true, Some(5)),
            ("data".into(), "30".into(), pj.clone(), true, Some(7)),
            (
                "__null__topic__".into(),
                "\"no topic\"".into(),
                pj.clone(),
                true,
                Some(9)
            ),
        ]
    );
    let keyed: Vec<String> = rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|id| id.contains("::"))
        .collect();
    assert_eq!(keyed, vec!["plain-1::inbox-1".to_owned()]);

    let steps = db.steps_of("inbox-1").await;
    let names: Vec<(i32, String)> = steps
        .iter()
        .map(|s| (s.function_id, s.function_name.clone()))
        .collect();
    let expected: Vec<(i32, String)> = (1..=12)
        .map(|i| {
            (
                i,
                if i % 2 == 1 {
                    "DBOS.recv"
                } else {
                    "DBOS.sleep"
                }
                .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        names, expected,
        "each recv takes two step ids: itself and its deadline"
    );
    let outputs: Vec<Option<String>> = steps
        .iter()
        .filter(|s| s.function_name == "DBOS.recv")
        .map(|s| s.output.clone())
        .collect();
    assert_eq!(
        outputs,
        ["true", "10", "20", "30", "\"no topic\"", "null"]
            .map(|s| Some(s.to_owned()))
            .to_vec()
    );
    // The deadline is DBOS's: a wake-up time in epoch seconds, as portable JSON.
    let deadline = steps[1].output.clone().unwrap();
    let secs: f64 = deadline.parse().unwrap();
    assert!(secs > 1.7e9, "{deadline}");
    assert!(steps
        .iter()
        .all(|s| s.serialization.as_deref() == Some("portable_json")));
}

#[workflow]
async fn receives_one() -> Result<Option<Payment>, Error> {
    dbos_core::recv::<Payment>("payment", Duration::from_secs(30)).await
}

#[dbos_testkit::test]
async fn an_idempotency_key_sends_once(db: TestDatabase) {
    let dbos = db.launch().await;
    let handle = receives_one().id("idem-1").on(&dbos).start().await.unwrap();
    let p = Payment {
        cents: 1999,
        card: "visa".into(),
    };
    for _ in 0..3 {
        dbos.send("idem-1", &p, "payment")
            .idempotency_key("webhook-7")
            .await
            .unwrap();
    }
    assert_eq!(handle.result().await.unwrap(), Some(p));
    let n: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM dbos.notifications WHERE message_uuid = 'webhook-7::idem-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[workflow]
async fn sends_to(dest: String) -> Result<String, Error> {
    match dbos_core::send(dest.as_str(), &1_u32, None).await {
        Ok(()) => Ok("sent".into()),
        Err(e) => Ok(format!("{:?}: {}", e.kind(), e.message())),
    }
}

#[dbos_testkit::test]
async fn a_send_to_a_missing_workflow_is_non_existent_and_writes_nothing(db: TestDatabase) {
    let dbos = db.launch().await;
    let e = dbos.send("nobody", &1_u32, "t").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonExistentWorkflow);
    assert!(e.to_string().contains("`nobody`"), "{e}");
    let e = dbos
        .send_batch(vec![Message::new("nobody-2", &1_u32)])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonExistentWorkflow);

    let out = sends_to("nobody-3".into())
        .id("sender-x")
        .on(&dbos)
        .await
        .unwrap();
    assert!(out.starts_with("NonExistentWorkflow"), "{out}");
    assert!(out.contains("nobody-3"), "{out}");
    let client = db.connect().await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM dbos.notifications", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "nothing was written");
    // As DBOS records it: the send's step holds its error, so a replay returns it.
    let steps = db.steps_of("sender-x").await;
    assert_eq!(steps.len(), 1, "{steps:?}");
    let step = &steps[0];
    assert_eq!(
        (step.function_name.as_str(), &step.output),
        ("DBOS.send", &None)
    );
    let error: serde_json::Value = serde_json::from_str(step.error.as_deref().unwrap()).unwrap();
    assert!(
        error["message"].as_str().unwrap().contains("nobody-3"),
        "{error}"
    );
}

static SEND_HANG: AtomicU32 = AtomicU32::new(0);

#[step]
async fn hang_after_the_send() -> Result<(), Error> {
    if SEND_HANG.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

/// Sends to `dest`, catching the error, then hangs once.
#[workflow]
async fn sends_then_hangs(dest: String) -> Result<String, Error> {
    let sent = dbos_core::send(dest.as_str(), &"late hello", "t").await;
    hang_after_the_send().await?;
    Ok(match sent {
        Ok(()) => "sent".into(),
        Err(e) => format!("{:?}", e.kind()),
    })
}

#[dbos_testkit::test]
async fn a_send_to_a_missing_workflow_replays_its_error_once_the_workflow_exists(db: TestDatabase) {
    let config = db
        .config("testapp")
        .executor_id("send-missing")
        .application_version("v-send-missing");
    run_then_kill(
        config.clone(),
        |dbos| async move {
            sends_then_hangs("not-yet".into())
                .id("sender-y")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        },
        "the send to fail",
        || SEND_HANG.load(Ordering::SeqCst) == 1,
    )
    .await;
    // The destination exists before the recovery: a replay that sent again would deliver
    // the message. (A finished workflow, as another process could have left it.)
    db.connect()
        .await
        .execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name) VALUES ('not-yet', 'SUCCESS', 'elsewhere')",
            &[],
        )
        .await
        .unwrap();
    let dbos = Dbos::launch(config).await.unwrap();
    let got = dbos
        .retrieve_workflow::<String, Error>("sender-y")
        .result()
        .await
        .unwrap();
    assert_eq!(
        got, "NonExistentWorkflow",
        "the replay returns the recorded error"
    );
    let delivered: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM dbos.notifications WHERE destination_uuid = 'not-yet'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(delivered, 0, "the replay sent nothing");
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn bad_sends_are_refused_before_anything_is_written(db: TestDatabase) {
    let dbos = db.launch().await;
    let _h = receives_one().id("bad-1").on(&dbos).start().await.unwrap();
    let e = dbos.send(" ", &1, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = dbos
        .send("bad-1", &1, None)
        .idempotency_key(" ")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("idempotency key"), "{e}");
    let e = dbos
        .send_batch(vec![
            Message::new("bad-1", &1).idempotency_key("k"),
            Message::new("bad-1", &2).idempotency_key("k"),
        ])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("`k`"), "{e}");
    let mut unstorable = std::collections::HashMap::new();
    unstorable.insert((1, 2), 3);
    let e = dbos.send("bad-1", &unstorable, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialization);
    let n: i64 = db
        .connect()
        .await
        .query_one("SELECT count(*) FROM dbos.notifications", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    for (topic, named) in [(Some("x"), "topic `x`"), (None, "topic (none)")] {
        let e = dbos_core::recv::<u32>(topic, Duration::from_millis(1))
            .await
            .expect_err("recv outside a workflow is an error");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let text = e.to_string();
        assert!(
            text.contains(named) && text.contains("outside a workflow"),
            "names the topic and what was wrong: {text}"
        );
    }
}

#[workflow]
async fn batch_receiver() -> Result<Vec<String>, Error> {
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(
            dbos_core::recv::<String>("jobs", Duration::from_secs(30))
                .await?
                .unwrap_or_default(),
        );
    }
    Ok(got)
}

#[workflow]
async fn batch_sender(to: String) -> Result<(), Error> {
    dbos_core::send_batch(
        (0..4)
            .map(|i| Message::new(to.as_str(), &format!("job {i}")).topic("jobs"))
            .collect(),
    )
    .await
}

#[dbos_testkit::test]
async fn a_batch_is_one_durable_operation_and_keeps_its_order(db: TestDatabase) {
    let dbos = db.launch().await;
    let r = batch_receiver()
        .id("batch-r")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    batch_sender("batch-r".into())
        .id("batch-s")
        .on(&dbos)
        .await
        .unwrap();
    assert_eq!(
        r.result().await.unwrap(),
        vec!["job 0", "job 1", "job 2", "job 3"]
    );
    assert_eq!(db.step_names("batch-s").await, vec!["DBOS.send_bulk"]);
}

static HANG: AtomicU32 = AtomicU32::new(0);
static AFTER: AtomicU32 = AtomicU32::new(0);

/// Hangs the first time it runs: the process is killed there.
#[step]
async fn hang_first_time() -> Result<(), Error> {
    AFTER.fetch_add(1, Ordering::SeqCst);
    if HANG.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[workflow]
async fn receive_then_hang() -> Result<Option<String>, Error> {
    let got = dbos_core::recv::<String>("t", Duration::from_secs(60)).await?;
    hang_first_time().await?;
    Ok(got)
}

#[dbos_testkit::test]
async fn a_receive_is_neither_lost_nor_delivered_twice_when_the_process_dies_after_it(
    db: TestDatabase,
) {
    let config = db
        .config("testapp")
        .executor_id("recv-crash")
        .application_version("v-recv-crash");
    let first = IsolatedRuntime::new();
    let c = config.clone();
    first
        .run(async move {
            let dbos = Dbos::launch(c).await.unwrap();
            receive_then_hang()
                .id("rc-1")
                .on(&dbos)
                .start()
                .await
                .unwrap();
            dbos.send("rc-1", &"first", "t").await.unwrap();
            dbos.send("rc-1", &"second", "t").await.unwrap();
        })
        .await;
    eventually(
        "the receiver to reach its hanging step",
        Duration::from_secs(10),
        || async { (AFTER.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;
    // Killed between the consume and the next step.
    first.abort();
    let client = db.connect().await;
    let consumed: Vec<(String, bool, Option<i32>)> = client
        .query(
            "SELECT message, consumed, consumed_by_function_id FROM dbos.notifications ORDER BY message",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        consumed,
        vec![
            ("\"first\"".to_owned(), true, Some(1)),
            ("\"second\"".to_owned(), false, None)
        ]
    );

    let dbos = Dbos::launch(config).await.unwrap();
    let got = dbos
        .retrieve_workflow::<Option<String>, Error>("rc-1")
        .result()
        .await
        .unwrap();
    assert_eq!(
        got.as_deref(),
        Some("first"),
        "the recovered receive replays its message"
    );
    assert_eq!(
        AFTER.load(Ordering::SeqCst),
        2,
        "the step after it ran again, the receive did not"
    );
    let second: (bool, Option<i32>) = client
        .query_one(
            "SELECT consumed, consumed_by_function_id FROM dbos.notifications WHERE message = '\"second\"'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        second,
        (false, None),
        "the second message was not taken by the replay"
    );
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn times_out_then_hangs(timeout_ms: u64) -> Result<Option<String>, Error> {
    let got = dbos_core::recv::<String>("late", Duration::from_millis(timeout_ms)).await?;
    hang_first_time_b().await?;
    Ok(got)
}

static HANG_B: AtomicU32 = AtomicU32::new(0);

#[step]
async fn hang_first_time_b() -> Result<(), Error> {
    if HANG_B.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[dbos_testkit::test]
async fn a_timed_out_receive_replays_as_timed_out_without_waiting(db: TestDatabase) {
    let config = db
        .config("testapp")
        .executor_id("recv-timeout")
        .application_version("v-recv-timeout");
    run_then_kill(
        config.clone(),
        |dbos| async move {
            times_out_then_hangs(1500)
                .id("to-1")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        },
        "the receive to time out",
        || HANG_B.load(Ordering::SeqCst) == 1,
    )
    .await;
    // A message that arrives after the timeout is not what the replay returns. It is there
    // before the recovery starts, so a replay that looked for messages would find it.
    dbos_core::Client::connect(db.url())
        .await
        .unwrap()
        .send("to-1", &"too late", "late")
        .await
        .unwrap();
    let dbos = Dbos::launch(config).await.unwrap();
    let started = Instant::now();
    let got = dbos
        .retrieve_workflow::<Option<String>, Error>("to-1")
        .result()
        .await
        .unwrap();
    assert_eq!(got, None, "replayed as timed out");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the replay waited again: {:?}",
        started.elapsed()
    );
    let consumed: bool = db
        .connect()
        .await
        .query_one("SELECT consumed FROM dbos.notifications", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!consumed, "the late message stays for a later receive");
    // Recorded as DBOS records a timed-out receive: JSON `null` (a DBOS replay of a NULL
    // output raises "No output recorded in the last recv").
    let recorded: (Option<String>, Option<String>) = db
        .connect()
        .await
        .query_one(
            "SELECT output, serialization FROM dbos.operation_outputs WHERE workflow_uuid = 'to-1' AND function_name = 'DBOS.recv'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        recorded,
        (Some("null".to_owned()), Some("portable_json".to_owned()))
    );
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn waits_eight_seconds() -> Result<Option<String>, Error> {
    dbos_core::recv::<String>("never", Duration::from_secs(8)).await
}

#[dbos_testkit::test]
async fn a_receive_recovered_mid_wait_waits_only_the_remainder(db: TestDatabase) {
    let config = db
        .config("testapp")
        .executor_id("recv-mid")
        .application_version("v-recv-mid");
    let first = IsolatedRuntime::new();
    let c = config.clone();
    first
        .run(async move {
            let dbos = Dbos::launch(c).await.unwrap();
            waits_eight_seconds()
                .id("mid-1")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        })
        .await;
    let client = db.connect().await;
    let deadline_secs: f64 = eventually(
        "the deadline to be recorded",
        Duration::from_secs(30),
        || async {
            client
                .query_opt(
                    "SELECT output FROM dbos.operation_outputs WHERE workflow_uuid = 'mid-1' AND function_name = 'DBOS.sleep'",
                    &[],
                )
                .await
                .unwrap()
                .map(|r| r.get::<_, String>(0).parse().unwrap())
        },
    )
    .await;
    let deadline = UNIX_EPOCH + Duration::from_secs_f64(deadline_secs);
    // Killed 3 s into the wait: about 5 s remain. Resuming waits those (or less, if the
    // relaunch is slow); restarting would wait 8 s from the replay.
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.abort();
    let relaunched = Instant::now();
    let dbos = Dbos::launch(config).await.unwrap();
    let got = dbos
        .retrieve_workflow::<Option<String>, Error>("mid-1")
        .result()
        .await
        .unwrap();
    assert_eq!(got, None);
    assert!(
        SystemTime::now() >= deadline,
        "woke before the recorded deadline"
    );
    let waited = relaunched.elapsed();
    assert!(
        waited < Duration::from_secs(7),
        "the wait restarted instead of resuming: {waited:?} after the relaunch"
    );
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn expects_a_number() -> Result<String, Error> {
    match dbos_core::recv::<u64>("n", Duration::from_secs(30)).await {
        Ok(v) => Ok(format!("got {v:?}")),
        Err(e) => Ok(format!("{:?}|{}", e.kind(), e)),
    }
}

#[dbos_testkit::test]
async fn a_message_that_does_not_decode_is_a_typed_error_and_stays_unconsumed(db: TestDatabase) {
    let dbos = db.launch().await;
    let h = expects_a_number()
        .id("num-1")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    dbos.send("num-1", &"forty-two", "n").await.unwrap();
    let out = h.result().await.unwrap();
    assert!(out.starts_with("Serialization|"), "{out}");
    for part in ["num-1", "`n`", "\"forty-two\"", "u64"] {
        assert!(out.contains(part), "`{part}` missing from: {out}");
    }
    let (consumed, by): (bool, Option<i32>) = db
        .connect()
        .await
        .query_one(
            "SELECT consumed, consumed_by_function_id FROM dbos.notifications",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((consumed, by), (false, None), "the row stays where it is");
    // The receive records nothing; its deadline, recorded before it looked, stays: a
    // `DBOS.sleep` at the step id after the receive's, and no `DBOS.recv` row.
    let recorded: Vec<(i32, String)> = db
        .steps_of("num-1")
        .await
        .into_iter()
        .map(|s| (s.function_id, s.function_name))
        .collect();
    assert_eq!(
        recorded,
        vec![(2, "DBOS.sleep".to_owned())],
        "a receive that does not decode records only its deadline"
    );
}

#[workflow]
async fn receives_many(n: u32) -> Result<Vec<u32>, Error> {
    let _: Option<bool> = dbos_core::recv("go", Duration::from_secs(30)).await?;
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(
            dbos_core::recv::<u32>("seq", Duration::from_secs(30))
                .await?
                .unwrap_or(u32::MAX),
        );
    }
    Ok(got)
}

#[dbos_testkit::test]
async fn messages_sent_in_one_millisecond_keep_their_order(db: TestDatabase) {
    const N: u32 = 200;
    let dbos = db.launch().await;
    let h = receives_many(N)
        .id("seq-1")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    for i in 0..N {
        dbos.send("seq-1", &i, "seq").await.unwrap();
    }
    dbos.send("seq-1", &true, "go").await.unwrap();
    assert_eq!(h.result().await.unwrap(), (0..N).collect::<Vec<_>>());
    let stamps: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(DISTINCT created_at_epoch_ms) FROM dbos.notifications WHERE topic = 'seq'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // Several messages share a millisecond: their order comes from the sending
    // transactions, not the clock.
    assert!(
        stamps < i64::from(N),
        "every message had its own millisecond"
    );
}

/// The database's clock, in epoch milliseconds.
async fn db_clock_ms(sql: &tokio_postgres::Client) -> i64 {
    sql.query_one(
        "SELECT (EXTRACT(epoch FROM clock_timestamp()) * 1000.0)::bigint",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[dbos_testkit::test]
async fn a_batch_is_read_after_what_was_sent_before_it_and_before_what_is_sent_after(
    db: TestDatabase,
) {
    const N: u32 = 50;
    let dbos = db.launch().await;
    let h = receives_many(N + 2)
        .id("after-batch")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let sql = db.connect().await;
    dbos.send("after-batch", &0_u32, "seq").await.unwrap();
    dbos.send_batch(
        (1..=N)
            .map(|i| Message::new("after-batch", &i).topic("seq"))
            .collect(),
    )
    .await
    .unwrap();
    let clock_after_batch = db_clock_ms(&sql).await;
    dbos.send("after-batch", &(N + 1), "seq").await.unwrap();
    dbos.send("after-batch", &true, "go").await.unwrap();
    assert_eq!(
        h.result().await.unwrap(),
        (0..=N + 1).collect::<Vec<_>>(),
        "the batch is received between the messages sent before and after it"
    );
    // What a DBOS reader (ordering by `created_at_epoch_ms` alone) needs: a distinct,
    // increasing stamp per message in the order sent, none of them in the future.
    let stamps: Vec<i64> = sql
        .query(
            "SELECT created_at_epoch_ms FROM dbos.notifications
              WHERE destination_uuid = 'after-batch' AND topic = 'seq' ORDER BY message::bigint",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "stamps are not strictly increasing in the order sent: {stamps:?}"
    );
    assert!(
        stamps[..=N as usize]
            .iter()
            .all(|&t| t <= clock_after_batch),
        "a batch message is stamped in the future: {stamps:?}, clock {clock_after_batch}"
    );
}

#[dbos_testkit::test]
async fn messages_stamped_in_one_millisecond_are_read_in_the_order_sent_not_stored(
    db: TestDatabase,
) {
    let dbos = db.launch().await;
    let h = receives_many(2)
        .id("tie-r")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let sql = db.connect().await;
    let insert = "INSERT INTO dbos.notifications (message_uuid, destination_uuid, topic, message, serialization,
                                                 created_at_epoch_ms)
                  VALUES ($1, 'tie-r', $2, $3, 'portable_json', 1000)";
    // Two senders stamp the same millisecond, one after the other; the second one's row is
    // stored before the first one's, in a slot freed by a vacuum. (A vacuum cannot free
    // the slot while another session's snapshot still sees the rows, as on a busy
    // cluster: then the setup is made again.)
    let mut stored = Vec::new();
    for _ in 0..50 {
        for i in 0..5 {
            sql.execute(insert, &[&format!("filler-{i}"), &"fill", &"0"])
                .await
                .unwrap();
        }
        sql.execute(insert, &[&"tie-a", &"seq", &"1"])
            .await
            .unwrap();
        sql.execute(
            "DELETE FROM dbos.notifications WHERE message_uuid LIKE 'filler-%'",
            &[],
        )
        .await
        .unwrap();
        sql.batch_execute("VACUUM dbos.notifications")
            .await
            .unwrap();
        sql.execute(insert, &[&"tie-b", &"seq", &"2"])
            .await
            .unwrap();
        stored = sql
            .query(
                "SELECT message_uuid FROM dbos.notifications WHERE topic = 'seq' ORDER BY ctid",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        if stored == ["tie-b", "tie-a"] {
            break;
        }
        sql.execute("DELETE FROM dbos.notifications WHERE topic = 'seq'", &[])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        stored,
        vec!["tie-b", "tie-a"],
        "the test's setup: the later message is stored first"
    );
    dbos.send("tie-r", &true, "go").await.unwrap();
    assert_eq!(h.result().await.unwrap(), vec![1, 2]);
}

#[workflow]
async fn waits_for_payment(ms: u64) -> Result<Option<String>, Error> {
    dbos_core::recv::<String>("payment", Duration::from_millis(ms)).await
}

async fn message_ids(db: &TestDatabase, topic: &str) -> Vec<(String, String)> {
    db.connect()
        .await
        .query(
            "SELECT destination_uuid, message_uuid FROM dbos.notifications WHERE topic = $1 ORDER BY 1, 2",
            &[&topic],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[dbos_testkit::test]
async fn a_send_to_forks_reaches_every_fork_recursively_once(db: TestDatabase) {
    use dbos_core::manage::ForkOptions;
    let dbos = db.launch().await;
    let original = waits_for_payment(60_000)
        .id("shop-order")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let fork = dbos
        .fork_workflow(
            "shop-order",
            1,
            &ForkOptions::new().workflow_id("shop-order-retry"),
        )
        .await
        .unwrap();
    let fork_of_fork = dbos
        .fork_workflow(
            "shop-order-retry",
            1,
            &ForkOptions::new().workflow_id("shop-order-retry-2"),
        )
        .await
        .unwrap();
    // A plain send reaches the original only.
    dbos.send("shop-order", &"plain", "other").await.unwrap();
    assert_eq!(
        message_ids(&db, "other").await.len(),
        1,
        "without to_forks only the destination"
    );

    dbos.send("shop-order", &"paid", "payment")
        .idempotency_key("webhook-1")
        .to_forks()
        .await
        .unwrap();
    // Sent again (a webhook retried): nothing new for anyone.
    dbos.send("shop-order", &"paid", "payment")
        .idempotency_key("webhook-1")
        .to_forks()
        .await
        .unwrap();
    assert_eq!(
        message_ids(&db, "payment").await,
        vec![
            ("shop-order".to_owned(), "webhook-1::shop-order".to_owned()),
            (
                "shop-order-retry".to_owned(),
                "webhook-1::shop-order-retry".to_owned()
            ),
            (
                "shop-order-retry-2".to_owned(),
                "webhook-1::shop-order-retry-2".to_owned()
            ),
        ]
    );
    assert_eq!(original.result().await.unwrap().as_deref(), Some("paid"));
    for h in [fork, fork_of_fork] {
        let out = tokio::time::timeout(Duration::from_secs(30), h.result())
            .await
            .expect("the fork receives its copy")
            .unwrap();
        assert_eq!(out, serde_json::json!("paid"));
    }

    // From inside a workflow too, with a batch and no key.
    waits_for_payment(60_000)
        .id("later-order")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let later_fork = dbos
        .fork_workflow(
            "later-order",
            1,
            &ForkOptions::new().workflow_id("later-fork"),
        )
        .await
        .unwrap();
    sends_to_forks("later-order".into())
        .on(&dbos)
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), later_fork.result())
        .await
        .expect("the fork receives its copy")
        .unwrap();
    assert_eq!(out, serde_json::json!("from a workflow"));
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn sends_to_forks(to: String) -> Result<(), Error> {
    dbos_core::send_batch(vec![Message::new(to, &"from a workflow")
        .topic("payment")
        .to_forks()])
    .await
}

/// A send the database fails (an error of its statement, not a missing destination) is no
/// answer to record: the execution stops with nothing recorded, even though the body
/// catches the error, and the workflow, resumed once the database takes the message, sends
/// it once. Returning the failure to the body as a plain error would let the body record
/// it (here as its result) instead of leaving the send to recovery.
#[dbos_testkit::test]
async fn a_send_the_database_fails_stops_the_execution_and_is_made_when_resumed(db: TestDatabase) {
    let dbos = db.launch().await;
    let _inbox = waits_for_payment(600_000)
        .id("refusing-inbox")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let admin = db.connect().await;
    admin
        .batch_execute(
            "CREATE FUNCTION refuse_message() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'the test refuses this message'; END $$;
             CREATE TRIGGER refuse_message BEFORE INSERT ON dbos.notifications FOR EACH ROW
               WHEN (NEW.destination_uuid = 'refusing-inbox') EXECUTE FUNCTION refuse_message();",
        )
        .await
        .unwrap();
    let _sender = sends_to("refusing-inbox".into())
        .id("refused-sender")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually(
        "the sender's execution to stop",
        Duration::from_secs(60),
        || async { (dbos.running_workflows() == 1).then_some(()) },
    )
    .await;
    let row = |sql: &'static str| {
        let admin = &admin;
        async move { admin.query_one(sql, &[]).await.unwrap() }
    };
    let status: String =
        row("SELECT status FROM dbos.workflow_status WHERE workflow_uuid = 'refused-sender'")
            .await
            .get(0);
    assert_eq!(
        status, "PENDING",
        "a failed send leaves its workflow to be recovered"
    );
    let recorded: i64 =
        row("SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'refused-sender'")
            .await
            .get(0);
    assert_eq!(recorded, 0, "a failed send records nothing");
    admin
        .batch_execute("DROP TRIGGER refuse_message ON dbos.notifications")
        .await
        .unwrap();
    dbos.resume_workflow("refused-sender").await.unwrap();
    let resumed = dbos.retrieve_workflow::<String, Error>("refused-sender");
    let out = tokio::time::timeout(Duration::from_secs(60), resumed.result())
        .await
        .expect("the resumed sender finishes")
        .unwrap();
    assert_eq!(out, "sent");
    let sent: i64 =
        row("SELECT count(*) FROM dbos.notifications WHERE destination_uuid = 'refusing-inbox'")
            .await
            .get(0);
    assert_eq!(sent, 1, "the message, sent once");
    dbos.shutdown().await.unwrap();
}

/// Waits for "go", then for one message on "payment".
#[workflow]
async fn go_then_receives() -> Result<Option<String>, Error> {
    let _: Option<bool> = dbos_core::recv("go", Duration::from_secs(60)).await?;
    dbos_core::recv::<String>("payment", Duration::from_secs(60)).await
}

/// A message another consumer takes between the receive's look and its consume (here a
/// transaction of the test holds the row the consume waits on, and marks it consumed) is not
/// the receive's, and nothing is wrong with the execution: the receive waits for the next
/// message and returns it.
#[dbos_testkit::test]
async fn a_message_taken_between_the_look_and_the_consume_leaves_the_receive_waiting_for_the_next(
    db: TestDatabase,
) {
    let dbos = db.launch().await;
    let h = go_then_receives()
        .id("taken-inbox")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    dbos.send("taken-inbox", &"first", "payment")
        .idempotency_key("first")
        .await
        .unwrap();
    let mut taker = db.connect().await;
    let tx = taker.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM dbos.notifications WHERE message_uuid = 'first::taken-inbox' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    dbos.send("taken-inbox", &true, "go").await.unwrap();
    // The receive's consume now waits for the held message.
    db.until_blocked_on_lock("%consumed = true%").await;
    tx.execute(
        "UPDATE dbos.notifications SET consumed = true WHERE message_uuid = 'first::taken-inbox'",
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    dbos.send("taken-inbox", &"second", "payment")
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), h.result())
        .await
        .expect("the receive went on to the next message")
        .unwrap();
    assert_eq!(out.as_deref(), Some("second"));
    dbos.shutdown().await.unwrap();
}
