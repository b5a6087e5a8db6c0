//! Events (latest value wins, history kept), streams (live, in order, ending at the close
//! marker or when the writer is done) and `wait_first`, with their rows as DBOS writes them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dbos_core::{step, workflow, Dbos, Error, ErrorKind};
use dbos_testkit::crash::{eventually, run_then_kill};
use dbos_testkit::TestDatabase;
use futures_util::StreamExt;
use serde_json::json;

#[workflow]
async fn publishes() -> Result<(), Error> {
    dbos_core::set_event("status", &"reserved").await?;
    dbos_core::set_event("count", &1).await?;
    // Waits for the outside world before publishing the final status.
    let _: Option<bool> = dbos_core::recv("go", Duration::from_secs(30)).await?;
    dbos_core::set_event("status", &"paid").await?;
    Ok(())
}

#[dbos_testkit::test]
async fn the_latest_event_wins_and_every_value_is_kept_in_the_history(db: TestDatabase) {
    let dbos = db.launch().await;
    let h = publishes().id("pub-1").on(&dbos).start().await.unwrap();
    let first: Option<String> = dbos
        .get_event("pub-1", "status", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(first.as_deref(), Some("reserved"));
    dbos.send("pub-1", &true, "go").await.unwrap();
    h.result().await.unwrap();
    let last: Option<String> = dbos_core::get_event("pub-1", "status", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(last.as_deref(), Some("paid"));
    assert_eq!(
        dbos.get_all_events("pub-1").await.unwrap(),
        BTreeMap::from([
            ("count".to_owned(), json!(1)),
            ("status".to_owned(), json!("paid"))
        ])
    );
    let missing: Option<String> = dbos
        .get_event("pub-1", "nope", Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(missing, None);

    let client = db.connect().await;
    let history: Vec<(i32, String, String, String)> = client
        .query(
            "SELECT function_id, key, value, serialization FROM dbos.workflow_events_history
              WHERE workflow_uuid = 'pub-1' ORDER BY function_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let pj = "portable_json".to_owned();
    assert_eq!(
        history,
        vec![
            (1, "status".into(), "\"reserved\"".into(), pj.clone()),
            (2, "count".into(), "1".into(), pj.clone()),
            (5, "status".into(), "\"paid\"".into(), pj.clone()),
        ]
    );
    let steps = db.steps_of("pub-1").await;
    assert_eq!(
        steps
            .iter()
            .map(|s| (s.function_id, s.function_name.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (1, "DBOS.setEvent"),
            (2, "DBOS.setEvent"),
            (3, "DBOS.recv"),
            (4, "DBOS.sleep"),
            (5, "DBOS.setEvent")
        ]
    );
    assert_eq!(
        steps[0].output, None,
        "a set_event checkpoint has no value, as in DBOS"
    );
}

#[workflow]
async fn reads_an_event(target: String, timeout_ms: u64) -> Result<Option<u32>, Error> {
    let v =
        dbos_core::get_event::<u32>(&target, "ready", Duration::from_millis(timeout_ms)).await?;
    hang_once().await?;
    Ok(v)
}

static HANG: AtomicU32 = AtomicU32::new(0);

#[step]
async fn hang_once() -> Result<(), Error> {
    if HANG.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[workflow]
async fn sets_ready(n: u32) -> Result<(), Error> {
    dbos_core::set_event("ready", &n).await
}

#[dbos_testkit::test]
async fn get_event_in_a_workflow_is_recorded_and_replays_what_it_first_read(db: TestDatabase) {
    let config = db
        .config("testapp")
        .executor_id("ev-crash")
        .application_version("v-ev-crash");
    run_then_kill(
        config.clone(),
        |dbos| async move {
            reads_an_event("setter-1".into(), 30_000)
                .id("reader-1")
                .on(&dbos)
                .start()
                .await
                .unwrap();
            // Set after the reader started waiting: the wait is woken.
            tokio::time::sleep(Duration::from_millis(300)).await;
            sets_ready(7).id("setter-1").on(&dbos).await.unwrap();
        },
        "the reader to reach its hanging step",
        || HANG.load(Ordering::SeqCst) == 1,
    )
    .await;
    // The event changes while the reader is down; its replay returns what it read.
    let client = db.connect().await;
    client
        .execute(
            "UPDATE dbos.workflow_events SET value = '8' WHERE workflow_uuid = 'setter-1'",
            &[],
        )
        .await
        .unwrap();
    let dbos = Dbos::launch(config).await.unwrap();
    let got = dbos
        .retrieve_workflow::<Option<u32>, Error>("reader-1")
        .result()
        .await
        .unwrap();
    assert_eq!(got, Some(7));
    let steps = db.steps_of("reader-1").await;
    assert_eq!(steps[0].function_name, "DBOS.getEvent");
    assert_eq!(steps[0].output.as_deref(), Some("7"));
    assert_eq!(steps[1].function_name, "DBOS.sleep");
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn get_event_on_a_workflow_that_does_not_exist_yet_waits_for_it(db: TestDatabase) {
    // As DBOS's: a reader may start before the workflow it reads (a client asking for the
    // status of an order another service is about to start). Unlike a send, which needs
    // the row to attach its message to, it waits, and gets the value once it is set.
    let dbos = db.launch().await;
    let started = Instant::now();
    let (got, ()) = tokio::join!(
        dbos.get_event::<u32>("starts-later", "ready", Duration::from_secs(30)),
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            sets_ready(7).id("starts-later").on(&dbos).await.unwrap();
        }
    );
    assert_eq!(got.unwrap(), Some(7));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "woken by the event, not the timeout"
    );
    // One that never comes: `None` at the timeout, not an error.
    let started = Instant::now();
    let none = dbos
        .get_event::<u32>("never-started", "ready", Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(none, None);
    assert!(started.elapsed() >= Duration::from_millis(300));
    dbos.shutdown().await.unwrap();
}

static ALL_HANG: AtomicU32 = AtomicU32::new(0);

#[step]
async fn hang_after_reading_all() -> Result<(), Error> {
    if ALL_HANG.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[workflow]
async fn reads_all_events(target: String) -> Result<BTreeMap<String, serde_json::Value>, Error> {
    let all = dbos_core::get_all_events(&target).await?;
    hang_after_reading_all().await?;
    Ok(all)
}

#[dbos_testkit::test]
async fn get_all_events_in_a_workflow_is_recorded_as_dbos_get_events_and_replayed(
    db: TestDatabase,
) {
    let config = db
        .config("testapp")
        .executor_id("all-crash")
        .application_version("v-all-crash");
    run_then_kill(
        config.clone(),
        |dbos| async move {
            sets_ready(1).id("all-target").on(&dbos).await.unwrap();
            reads_all_events("all-target".into())
                .id("all-reader")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        },
        "the events to be read",
        || ALL_HANG.load(Ordering::SeqCst) == 1,
    )
    .await;
    // The events change meanwhile: the replay returns what was recorded.
    db.connect()
        .await
        .execute(
            "UPDATE dbos.workflow_events SET value = '2' WHERE workflow_uuid = 'all-target'",
            &[],
        )
        .await
        .unwrap();
    let dbos = Dbos::launch(config).await.unwrap();
    let all = dbos
        .retrieve_workflow::<BTreeMap<String, serde_json::Value>, Error>("all-reader")
        .result()
        .await
        .unwrap();
    assert_eq!(all, BTreeMap::from([("ready".to_owned(), json!(1))]));
    let step = db.step_of("all-reader", 1).await;
    // The name DBOS 3.4 records for `DBOS.get_all_events` (`_dbos.py`).
    assert_eq!(
        (step.function_name.as_str(), step.output.as_deref()),
        ("DBOS.get_events", Some("{\"ready\":1}"))
    );
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn event_times_out() -> Result<Option<u32>, Error> {
    dbos_core::get_event::<u32>("nobody-sets-it", "ready", Duration::from_millis(300)).await
}

#[dbos_testkit::test]
async fn a_get_event_that_timed_out_is_recorded_as_null(db: TestDatabase) {
    let dbos = db.launch().await;
    assert_eq!(event_times_out().id("eto").on(&dbos).await.unwrap(), None);
    let out = db.step_of("eto", 1).await.output;
    assert_eq!(out.as_deref(), Some("null"));
}

#[workflow]
async fn sets_text() -> Result<(), Error> {
    dbos_core::set_event("n", &"not a number").await
}

#[dbos_testkit::test]
async fn an_event_that_does_not_decode_is_a_typed_error_naming_it(db: TestDatabase) {
    let dbos = db.launch().await;
    sets_text().id("txt").on(&dbos).await.unwrap();
    let e = dbos
        .get_event::<u32>("txt", "n", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialization);
    assert_eq!(e.workflow_id(), Some("txt"));
    let text = e.to_string();
    for part in ["`n`", "`txt`", "\"not a number\"", "u32"] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
}

#[dbos_testkit::test]
async fn events_and_streams_outside_a_workflow_are_refused(db: TestDatabase) {
    let _dbos = db.launch().await;
    for e in [
        dbos_core::set_event("k", &1).await.unwrap_err(),
        dbos_core::write_stream("k", &1).await.unwrap_err(),
        dbos_core::close_stream("k").await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains("outside a workflow"), "{e}");
    }
}

/// Writes three values, each after a message from the test, then closes the stream.
#[workflow]
async fn streams_on_cue() -> Result<(), Error> {
    for i in 0..3_u32 {
        let _: Option<bool> = dbos_core::recv("next", Duration::from_secs(30)).await?;
        dbos_core::write_stream("log", &format!("line {i}")).await?;
    }
    dbos_core::close_stream("log").await
}

#[dbos_testkit::test]
async fn a_stream_is_read_live_in_order_and_ends_at_the_close_marker(db: TestDatabase) {
    let dbos = db.launch().await;
    let h = streams_on_cue()
        .id("writer-1")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    // The readers read again only every minute: each value within 10 s is a wake-up, by the
    // writer here, and by its notification (the listener) in another runtime.
    let elsewhere = Dbos::launch(db.config("testapp").executor_id("stream-reader"))
        .await
        .unwrap();
    let slow = Duration::from_secs(60);
    let mut reader = dbos
        .read_stream::<String>("writer-1", "log")
        .poll_interval(slow);
    let mut remote = elsewhere
        .read_stream::<String>("writer-1", "log")
        .poll_interval(slow);
    let live = Duration::from_secs(10);
    for i in 0..3 {
        // Both readers are waiting (they found nothing) before the value is written.
        let cue = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            dbos.send("writer-1", &true, "next").await.unwrap();
        };
        let (here, there, ()) = tokio::join!(
            tokio::time::timeout(live, reader.next()),
            tokio::time::timeout(live, remote.next()),
            cue
        );
        for (who, line) in [("here", here), ("elsewhere", there)] {
            let line = line
                .unwrap_or_else(|_| panic!("the value arrives live {who}"))
                .unwrap()
                .unwrap();
            assert_eq!(line, format!("line {i}"), "{who}");
        }
    }
    for reader in [&mut reader, &mut remote] {
        let end = tokio::time::timeout(Duration::from_secs(10), reader.next()).await;
        assert!(matches!(end, Ok(None)), "ends at the close marker at once");
    }
    h.result().await.unwrap();
    let from_two: Vec<String> = dbos_core::read_stream::<String>("writer-1", "log")
        .from_offset(2)
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(from_two, vec!["line 2"]);
    elsewhere.shutdown().await.unwrap();

    let rows: Vec<(String, i32, i32, String)> = db
        .connect()
        .await
        .query(
            "SELECT value, \"offset\", function_id, serialization FROM dbos.streams
              WHERE workflow_uuid = 'writer-1' AND key = 'log' ORDER BY \"offset\"",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let pj = "portable_json".to_owned();
    assert_eq!(
        rows,
        vec![
            ("\"line 0\"".into(), 0, 3, pj.clone()),
            ("\"line 1\"".into(), 1, 6, pj.clone()),
            ("\"line 2\"".into(), 2, 9, pj.clone()),
            ("\"__DBOS_STREAM_CLOSED__\"".into(), 3, 10, pj.clone()),
        ]
    );
}

#[workflow]
async fn writes_without_closing(n: u32) -> Result<(), Error> {
    for i in 0..n {
        dbos_core::write_stream("s", &i).await?;
    }
    Ok(())
}

#[dbos_testkit::test]
async fn a_stream_ends_when_its_writer_is_no_longer_active(db: TestDatabase) {
    let dbos = db.launch().await;
    writes_without_closing(3)
        .id("unclosed")
        .on(&dbos)
        .await
        .unwrap();
    let values: Vec<u32> = tokio::time::timeout(
        Duration::from_secs(10),
        dbos.read_stream::<u32>("unclosed", "s")
            .map(|r| r.unwrap())
            .collect(),
    )
    .await
    .expect("the stream ends");
    assert_eq!(values, vec![0, 1, 2]);
    let mut missing = dbos.read_stream::<u32>("no-such-writer", "s");
    let e = missing.next().await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonExistentWorkflow);
    assert!(missing.next().await.is_none());
}

#[dbos_testkit::test]
async fn a_stream_of_a_thousand_values_is_read_in_at_most_twenty_statements(db: TestDatabase) {
    // The cost Messages promises: a reader takes up to 100 values per round trip. Counted
    // at a proxy between a `Client` (which runs nothing else) and the server. With one value
    // per read (`+` to `-` in the batch's offset check, sysdb::messages::read_stream) it
    // took 1,002.
    let dbos = db.launch().await;
    writes_without_closing(1_000)
        .id("long-stream")
        .on(&dbos)
        .await
        .unwrap();
    let proxy = dbos_testkit::proxy::Proxy::start(db.cluster().postgres().port()).await;
    let client = dbos_core::client::Client::connect(proxy.url(&db.url()))
        .await
        .unwrap();
    let before = proxy.statements();
    let values: Vec<u32> = tokio::time::timeout(
        Duration::from_secs(60),
        client
            .read_stream::<u32>("long-stream", "s")
            .map(|r| r.unwrap())
            .collect(),
    )
    .await
    .expect("the stream ends");
    let reads = proxy.statements() - before;
    assert_eq!(values, (0..1_000).collect::<Vec<u32>>());
    assert!(reads <= 20, "reading 1,000 values took {reads} statements");
    // Not vacuous: the reads went through the proxy.
    assert!(reads >= 10, "{reads} statements for 1,000 values");
}

#[workflow]
async fn writes_a_word() -> Result<(), Error> {
    dbos_core::write_stream("w", &"word").await?;
    dbos_core::close_stream("w").await
}

#[dbos_testkit::test]
async fn a_stream_value_that_does_not_decode_is_a_typed_error_naming_it(db: TestDatabase) {
    let dbos = db.launch().await;
    writes_a_word().id("wordy").on(&dbos).await.unwrap();
    let mut s = dbos.read_stream::<u64>("wordy", "w");
    let e = s.next().await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialization);
    let text = e.to_string();
    for part in ["`w`", "`wordy`", "\"word\"", "u64"] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
    assert!(s.next().await.is_none(), "the stream ends after an error");
}

static READ_HANG: AtomicU32 = AtomicU32::new(0);

#[step]
async fn hang_once_more() -> Result<(), Error> {
    if READ_HANG.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

/// Reads a stream to its end inside a workflow, then hangs once.
#[workflow]
async fn reads_a_stream(writer: String) -> Result<Vec<u32>, Error> {
    let mut values = Vec::new();
    let mut s = dbos_core::read_stream::<u32>(&writer, "s");
    while let Some(v) = s.next().await {
        values.push(v?);
    }
    hang_once_more().await?;
    Ok(values)
}

#[dbos_testkit::test]
async fn a_stream_read_in_a_workflow_records_each_value_and_replays_them(db: TestDatabase) {
    let config = db
        .config("testapp")
        .executor_id("rs-crash")
        .application_version("v-rs-crash");
    run_then_kill(
        config.clone(),
        |dbos| async move {
            writes_without_closing(2).id("w-2").on(&dbos).await.unwrap();
            reads_a_stream("w-2".into())
                .id("r-2")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        },
        "the reader to finish reading",
        || READ_HANG.load(Ordering::SeqCst) == 1,
    )
    .await;
    // The stream changes meanwhile: the replay reads what was recorded, not the table.
    db.connect()
        .await
        .execute(
            "UPDATE dbos.streams SET value = '99' WHERE workflow_uuid = 'w-2'",
            &[],
        )
        .await
        .unwrap();
    let dbos = Dbos::launch(config).await.unwrap();
    let values = dbos
        .retrieve_workflow::<Vec<u32>, Error>("r-2")
        .result()
        .await
        .unwrap();
    assert_eq!(values, vec![0, 1]);
    let steps = db.steps_of("r-2").await;
    assert_eq!(
        steps
            .iter()
            .map(|s| (s.function_name.as_str(), s.output.as_deref()))
            .collect::<Vec<_>>(),
        vec![
            ("DBOS.readStream", Some("0")),
            ("DBOS.readStream", Some("1")),
            ("DBOS.readStream", Some("\"__DBOS_STREAM_CLOSED__\"")),
            ("hang_once_more", Some("null")),
        ]
    );
    dbos.shutdown().await.unwrap();
}

#[step]
async fn step_writes() -> Result<(), Error> {
    dbos_core::set_event("from-step", &"yes").await?;
    dbos_core::write_stream("step-log", &"hello").await
}

#[workflow]
async fn writes_from_a_step() -> Result<(), Error> {
    step_writes().await
}

#[dbos_testkit::test]
async fn a_step_sets_events_and_writes_streams_of_its_workflow(db: TestDatabase) {
    let dbos = db.launch().await;
    writes_from_a_step().id("stepper").on(&dbos).await.unwrap();
    let v: Option<String> = dbos
        .get_event("stepper", "from-step", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("yes"));
    let (fid, sfid): (i32, i32) = db
        .connect()
        .await
        .query_one(
            "SELECT (SELECT function_id FROM dbos.workflow_events_history WHERE workflow_uuid = 'stepper'),
                    (SELECT function_id FROM dbos.streams WHERE workflow_uuid = 'stepper')",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((fid, sfid), (1, 1), "recorded with the step's id");
}

/// Writes the same value twenty times at once from one step.
#[step]
async fn step_writes_one_value_at_once() -> Result<(), Error> {
    let writes = (0..20).map(|_| dbos_core::write_stream("same", &"x"));
    for r in futures_util::future::join_all(writes).await {
        r?;
    }
    Ok(())
}

#[workflow]
async fn writes_one_value_at_once() -> Result<(), Error> {
    step_writes_one_value_at_once().await
}

#[dbos_testkit::test]
async fn concurrent_step_writes_of_one_value_each_append(db: TestDatabase) {
    // A step's append recognises its own row at its offset only after a retried statement:
    // a row of the same step and value there is otherwise another write's.
    let dbos = db.launch().await;
    writes_one_value_at_once()
        .id("same-value")
        .on(&dbos)
        .await
        .unwrap();
    let offsets: Vec<i32> = db
        .connect()
        .await
        .query(
            "SELECT \"offset\" FROM dbos.streams WHERE workflow_uuid = 'same-value' ORDER BY \"offset\"",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(offsets, (0..20).collect::<Vec<i32>>());
}

/// Waits for the test's cue, then writes one value to stream `shared` in its body.
#[workflow]
async fn writes_shared_on_cue() -> Result<(), Error> {
    let _: Option<bool> = dbos_core::recv("go", Duration::from_secs(60)).await?;
    dbos_core::write_stream("shared", &"body").await
}

#[dbos_testkit::test]
async fn a_body_write_whose_offset_another_writer_takes_first_moves_to_the_next(db: TestDatabase) {
    // Another writer of the stream (a step of the workflow, or another process) has the
    // next offset inserted and not yet committed. The body's write computes the same offset,
    // waits on that row, and when the other commits it must take the next offset, not fail.
    let dbos = db.launch().await;
    let h = writes_shared_on_cue()
        .id("shared-1")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let mut other = db.connect().await;
    let tx = other.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO dbos.streams (workflow_uuid, key, value, \"offset\", function_id, serialization)
         VALUES ('shared-1', 'shared', '\"other\"', 0, 99, 'portable_json')",
        &[],
    )
    .await
    .unwrap();
    dbos.send("shared-1".to_owned(), &true, "go").await.unwrap();
    let watcher = db.connect().await;
    // The body's write now waits on the other writer's row.
    db.until_blocked_on_lock("%INSERT INTO%streams%").await;
    tx.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), h.result())
        .await
        .expect("the workflow finishes")
        .unwrap();
    let rows: Vec<(i32, String, i32)> = watcher
        .query(
            "SELECT \"offset\", value, function_id FROM dbos.streams
              WHERE workflow_uuid = 'shared-1' ORDER BY \"offset\"",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (0, "\"other\"".to_owned(), 99),
            (1, "\"body\"".to_owned(), 3)
        ]
    );
    dbos.shutdown().await.unwrap();
}

/// Set by the test once another process's deletion of the workflow is under way.
static APPEND_GO: AtomicU32 = AtomicU32::new(0);
/// Set when [`step_appends_on_cue`] has started.
static APPEND_STARTED: AtomicU32 = AtomicU32::new(0);
/// What [`step_appends_on_cue`]'s write came to.
static APPEND_WROTE: std::sync::Mutex<Option<Option<ErrorKind>>> = std::sync::Mutex::new(None);

/// Waits (inside the step) for the test's cue, then appends to a stream of its workflow.
#[step]
async fn step_appends_on_cue() -> Result<(), Error> {
    APPEND_STARTED.store(1, Ordering::SeqCst);
    let until = Instant::now() + Duration::from_secs(60);
    while APPEND_GO.load(Ordering::SeqCst) == 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = dbos_core::write_stream("gone", &"x").await;
    *APPEND_WROTE.lock().unwrap() = Some(r.as_ref().err().map(Error::kind));
    r
}

#[workflow]
async fn appends_from_a_step_on_cue() -> Result<(), Error> {
    step_appends_on_cue().await
}

#[dbos_testkit::test]
async fn a_step_append_to_a_workflow_deleted_meanwhile_is_non_existent(db: TestDatabase) {
    // Another process deletes the workflow while its step appends: the deletion is not yet
    // committed when the append's statement sees the workflow, so the append waits on the
    // workflow's row and then finds it gone. The step gets `NonExistentWorkflow`.
    let dbos = db.launch().await;
    appends_from_a_step_on_cue()
        .id("gone-1")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("the step to start", Duration::from_secs(30), || async {
        (APPEND_STARTED.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let mut other = db.connect().await;
    let tx = other.transaction().await.unwrap();
    tx.execute(
        "DELETE FROM dbos.workflow_status WHERE workflow_uuid = 'gone-1'",
        &[],
    )
    .await
    .unwrap();
    APPEND_GO.store(1, Ordering::SeqCst);
    let watcher = db.connect().await;
    // The append now waits on the workflow's row.
    db.until_blocked_on_lock("%INSERT INTO%streams%").await;
    tx.commit().await.unwrap();
    let wrote = eventually("the append to end", Duration::from_secs(30), || async {
        *APPEND_WROTE.lock().unwrap()
    })
    .await;
    assert_eq!(wrote, Some(ErrorKind::NonExistentWorkflow));
    let rows: i64 = watcher
        .query_one(
            "SELECT count(*) FROM dbos.streams WHERE workflow_uuid = 'gone-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
    let _ = dbos.shutdown().await;
}

#[workflow]
async fn sleeps_ms(ms: u64, x: u32) -> Result<u32, Error> {
    dbos_core::sleep(Duration::from_millis(ms)).await?;
    Ok(x)
}

#[workflow]
async fn races(a: String, b: String) -> Result<String, Error> {
    let ha = dbos_core::Dbos::current()?.retrieve_workflow::<u32, Error>(a);
    let hb = dbos_core::Dbos::current()?.retrieve_workflow::<u32, Error>(b);
    let first = dbos_core::wait_first(&[ha, hb]).await?;
    Ok(first.id().to_owned())
}

#[dbos_testkit::test]
async fn wait_first_returns_the_first_to_finish_and_records_it(db: TestDatabase) {
    let dbos = db.launch().await;
    let slow = sleeps_ms(3_000, 1)
        .id("slow")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let fast = sleeps_ms(200, 2)
        .id("fast")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    let first = dbos_core::wait_first(&[slow.clone(), fast.clone()])
        .await
        .unwrap();
    assert_eq!(first.id(), "fast");
    assert_eq!(first.result().await.unwrap(), 2);
    assert!(started.elapsed() < Duration::from_secs(3));

    assert_eq!(
        races("slow".into(), "fast".into())
            .id("racer")
            .on(&dbos)
            .await
            .unwrap(),
        "fast"
    );
    let steps = db.steps_of("racer").await;
    assert_eq!(
        steps
            .iter()
            .map(|s| (s.function_name.as_str(), s.output.as_deref()))
            .collect::<Vec<_>>(),
        [("DBOS.waitFirst", Some("\"fast\""))]
    );

    let none: [dbos_core::WorkflowHandle<u32, Error>; 0] = [];
    assert_eq!(
        dbos_core::wait_first(&none).await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        dbos_core::wait_first(&[fast.clone(), fast.clone()])
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    let ghost = dbos.retrieve_workflow::<u32, Error>("ghost");
    assert_eq!(
        dbos_core::wait_first(&[slow, ghost])
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NonExistentWorkflow
    );
}

#[dbos_testkit::test]
async fn a_client_sends_and_reads_events_and_streams(db: TestDatabase) {
    let dbos = db.launch().await;
    let client = dbos_core::client::Client::connect(db.url()).await.unwrap();
    let h = streams_on_cue()
        .id("via-client")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let mut lines = client.read_stream::<String>("via-client", "log");
    for i in 0..3 {
        client
            .send("via-client", &true, "next")
            .idempotency_key(format!("cue-{i}"))
            .await
            .unwrap();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next())
            .await
            .expect("the value arrives")
            .unwrap()
            .unwrap();
        assert_eq!(line, format!("line {i}"));
    }
    assert!(lines.next().await.is_none());
    h.result().await.unwrap();
    let e = client.send("nobody", &1, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonExistentWorkflow);

    let p = publishes()
        .id("client-pub")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let status: Option<String> = client
        .get_event("client-pub", "status", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(status.as_deref(), Some("reserved"));
    client
        .send_batch(vec![
            dbos_core::Message::new("client-pub", &true).topic("go")
        ])
        .await
        .unwrap();
    p.result().await.unwrap();
    assert_eq!(
        client.get_all_events("client-pub").await.unwrap()["status"],
        json!("paid")
    );
}

#[workflow]
async fn writes_words_on_cue() -> Result<(), Error> {
    dbos_core::write_stream("words", &"a").await?;
    let _: Option<bool> = dbos_core::recv("next", Duration::from_secs(60)).await?;
    dbos_core::write_stream("words", &"b").await?;
    dbos_core::close_stream("words").await
}

static WORDS_GO: AtomicU32 = AtomicU32::new(0);

/// Holds the reader before its first read until the test lets it go.
#[step]
async fn waits_for_go() -> Result<(), Error> {
    while WORDS_GO.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[workflow]
async fn reads_words(writer: String) -> Result<Vec<String>, Error> {
    waits_for_go().await?;
    let mut words = Vec::new();
    let mut s = dbos_core::read_stream::<String>(&writer, "words");
    while let Some(w) = s.next().await {
        words.push(w?);
    }
    Ok(words)
}

/// Records a read of the reader's stream as another execution would have, at `function_id`.
async fn record_read(db: &TestDatabase, reader: &str, function_id: i32, output: &str) {
    db.connect()
        .await
        .execute(
            "INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output, serialization)
             VALUES ($1, $2, 'DBOS.readStream', $3, 'portable_json')",
            &[&reader, &function_id, &output],
        )
        .await
        .unwrap();
}

/// A read of a stream in a workflow that finds a value already recorded for its step (by an
/// earlier execution, or by another execution while this one read) takes that value and
/// goes on at the next offset: the workflow's values are the recorded ones, in order, each
/// offset once. With the offset not moved past a recorded read (`+=` to `*=` in
/// `State::step`) the reader read `a` twice; moved back (`-=`), it stopped.
#[dbos_testkit::test]
async fn a_stream_read_that_finds_its_value_recorded_goes_on_at_the_next_offset(db: TestDatabase) {
    let dbos = db.launch().await;
    let writer = writes_words_on_cue()
        .id("words-w")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    // Recorded before the read's step begins: the read replays it.
    let replayed = reads_words("words-w".into())
        .id("words-r1")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    record_read(&db, "words-r1", 2, "\"theirs\"").await;
    // Recorded by another execution while this one waits for the value (its step begun).
    let raced = reads_words("words-w".into())
        .id("words-r2")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    WORDS_GO.store(1, Ordering::SeqCst);
    let client = db.connect().await;
    eventually("the second reader's first read", Duration::from_secs(30), || async {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'words-r2' AND function_id = 2",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (n == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    record_read(&db, "words-r2", 3, "\"theirs\"").await;
    dbos.send("words-w", &true, "next").await.unwrap();
    writer.result().await.unwrap();
    let within = Duration::from_secs(30);
    let first = tokio::time::timeout(within, replayed.result())
        .await
        .expect("the first reader ends");
    assert_eq!(first.unwrap(), ["theirs", "b"]);
    let second = tokio::time::timeout(within, raced.result())
        .await
        .expect("the second reader ends");
    assert_eq!(second.unwrap(), ["a", "theirs"]);
    dbos.shutdown().await.unwrap();
}

static RACE_CHANGED: AtomicU32 = AtomicU32::new(0);

#[step]
async fn before_the_race() -> Result<(), Error> {
    Ok(())
}

/// Waits for the first of `a` and `b` at step 2; once `RACE_CHANGED` is set, for `a` and
/// `c` instead (its code changed).
#[workflow]
async fn races_at_step_two(a: String, b: String, c: String) -> Result<String, Error> {
    before_the_race().await?;
    let dbos = dbos_core::Dbos::current()?;
    let ids = if RACE_CHANGED.load(Ordering::SeqCst) == 0 {
        [a, b]
    } else {
        [a, c]
    };
    let handles = ids.map(|id| dbos.retrieve_workflow::<u32, Error>(id));
    let first = dbos_core::wait_first(&handles).await?;
    Ok(first.id().to_owned())
}

/// A replayed `wait_first` returns the workflow recorded as first, whichever the statuses
/// would name now; one whose code no longer waits for the recorded workflow fails with
/// `UnexpectedStep`, naming its step.
#[dbos_testkit::test]
async fn a_replayed_wait_first_returns_the_recorded_workflow_or_names_its_step(db: TestDatabase) {
    use dbos_testkit::fork_and_wait;
    let dbos = db.launch().await;
    let slow = sleeps_ms(1_500, 1)
        .id("wf-slow")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    sleeps_ms(100, 2)
        .id("wf-fast")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    sleeps_ms(0, 3).id("wf-other").on(&dbos).await.unwrap();
    let first = races_at_step_two("wf-slow".into(), "wf-fast".into(), "wf-other".into())
        .id("wf-race")
        .on(&dbos)
        .await
        .unwrap();
    assert_eq!(first, "wf-fast");
    slow.result().await.unwrap();
    // Both have finished: a fresh look would name the first handle, `wf-slow`.
    let replayed = fork_and_wait(&dbos, "wf-race", 3, "wf-race-again")
        .await
        .unwrap();
    assert_eq!(replayed, serde_json::json!("wf-fast"));
    RACE_CHANGED.store(1, Ordering::SeqCst);
    let changed = fork_and_wait(&dbos, "wf-race", 3, "wf-race-changed")
        .await
        .unwrap_err();
    assert_eq!(changed.kind(), ErrorKind::UnexpectedStep, "{changed}");
    assert!(
        changed
            .to_string()
            .contains("`wf-fast` finished first at step 2"),
        "{changed}"
    );
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn reads_words_at_once(writer: String) -> Result<Vec<String>, Error> {
    let mut words = Vec::new();
    let mut s = dbos_core::read_stream::<String>(&writer, "words");
    while let Some(w) = s.next().await {
        words.push(w?);
    }
    Ok(words)
}

/// A database failure of a workflow's stream read stops the execution (the workflow stays
/// `PENDING`, to be recovered or resumed) instead of reaching the body as an error it would
/// end with. With the read's failure passed to the body as it is (the durability-failure
/// guard of `State::read` answering no) the reader ended `ERROR`.
#[dbos_testkit::test]
async fn a_database_failure_of_a_stream_read_in_a_workflow_leaves_it_to_be_resumed(
    db: TestDatabase,
) {
    // Nothing parks: both workflows stay running while they wait.
    let dbos = Dbos::launch(db.config("testapp").park_after(Duration::from_secs(600)))
        .await
        .unwrap();
    let writer = writes_words_on_cue()
        .id("dur-w")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let reader = reads_words_at_once("dur-w".into())
        .id("dur-r")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let admin = db.connect().await;
    eventually(
        "the reader's first value",
        Duration::from_secs(30),
        || async {
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'dur-r'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (n == 1).then_some(())
        },
    )
    .await;
    // The reader waits for the next value; its next look fails.
    admin
        .batch_execute("ALTER TABLE dbos.streams RENAME TO streams_away")
        .await
        .unwrap();
    eventually(
        "the reader's execution to stop",
        Duration::from_secs(30),
        || async { (dbos.running_workflows() == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        db.status_of("dur-r").await.as_deref(),
        Some("PENDING"),
        "a failed read leaves the workflow to be recovered"
    );
    admin
        .batch_execute("ALTER TABLE dbos.streams_away RENAME TO streams")
        .await
        .unwrap();
    dbos.resume_workflow("dur-r").await.unwrap();
    dbos.send("dur-w", &true, "next").await.unwrap();
    writer.result().await.unwrap();
    let words = tokio::time::timeout(Duration::from_secs(30), reader.result())
        .await
        .expect("the resumed reader ends")
        .unwrap();
    assert_eq!(words, ["a", "b"]);
    dbos.shutdown().await.unwrap();
}

/// `wait_first` reads the statuses at growing intervals (10 ms, doubling up to 500 ms): a
/// `Client` (no runtime, so nothing but the reads) waiting for a workflow that finishes
/// 2 s into the wait makes about a dozen statements, at most 8 plus one per 500 ms waited. With the
/// interval growing by nanoseconds (`*` to `+`) it read every 10 ms; shrinking (`/`), in a
/// loop.
#[dbos_testkit::test]
async fn wait_first_reads_the_statuses_at_growing_intervals(db: TestDatabase) {
    let dbos = db.launch().await;
    finishes_on_go()
        .id("wf-polled")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let proxy = dbos_testkit::proxy::Proxy::start(db.cluster().postgres().port()).await;
    let client = dbos_core::client::Client::connect(proxy.url(&db.url()))
        .await
        .unwrap();
    let handle = client.retrieve_workflow::<u32, Error>("wf-polled");
    let before = proxy.statements();
    let started = Instant::now();
    // The workflow finishes 2 s into the wait, however long the set-up above took.
    let cue = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        dbos.send("wf-polled", &true, "go").await.unwrap();
    };
    let handles = [handle];
    let (first, ()) = tokio::join!(dbos_core::wait_first(&handles), cue);
    let first = first.unwrap();
    let waited = started.elapsed();
    let reads = proxy.statements() - before;
    assert_eq!(first.id(), "wf-polled");
    let bound = 8 + waited.as_millis() / 500;
    assert!(
        reads as u128 <= bound,
        "{reads} status reads in {waited:?} (at most {bound})"
    );
    assert!(reads >= 2, "not vacuous: the reads went through the proxy");
    dbos.shutdown().await.unwrap();
}

/// Finishes (with 7) once it receives "go".
#[workflow]
async fn finishes_on_go() -> Result<u32, Error> {
    let _: Option<bool> = dbos_core::recv("go", Duration::from_secs(600)).await?;
    Ok(7)
}

/// Waits for the first of `other` to finish; a body that catches `wait_first`'s error and
/// makes an answer of it.
#[workflow]
async fn waits_first_or_gives_up(other: String) -> Result<String, Error> {
    let handle = dbos_core::Dbos::current()?.retrieve_workflow::<u32, Error>(other);
    match dbos_core::wait_first(&[handle]).await {
        Ok(first) => Ok(format!("first {}", first.id())),
        Err(e) => Ok(format!("gave up: {e}")),
    }
}

/// A database error of `wait_first`'s status read inside a workflow is no answer: the
/// execution stops with nothing recorded (the workflow stays `PENDING`, to be recovered or
/// resumed), even though the body catches the error and returns. The test fails that one
/// statement alone: it holds `workflow_status` locked, so every statement on it waits, and
/// cancels the backend of the waiting status read (`pg_cancel_backend`: SQLSTATE 57014, a
/// `Database` error, not retried). With the read's failure handed to the body as a plain
/// error (the durability-failure guard of `first_finished` answering no) the workflow ended
/// `SUCCESS` with the body's "gave up".
#[dbos_testkit::test]
async fn a_database_failure_of_wait_first_s_status_read_leaves_the_workflow_to_be_resumed(
    db: TestDatabase,
) {
    // Nothing parks: the child waits in memory, the waiter polls.
    let dbos = Dbos::launch(db.config("testapp").park_after(Duration::from_secs(600)))
        .await
        .unwrap();
    let child = finishes_on_go()
        .id("wfd-child")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let waiter = waits_first_or_gives_up("wfd-child".into())
        .id("wfd-waiter")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let admin = db.connect().await;
    let mut locker = db.connect().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE dbos.workflow_status IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // The waiter's next status read waits on the lock: cancel that statement alone.
    let pid = db
        .until_blocked_on_lock(
            "SELECT workflow_uuid, status FROM %workflow_status WHERE workflow_uuid = ANY($1)",
        )
        .await;
    let cancelled: bool = admin
        .query_one("SELECT pg_cancel_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(cancelled);
    lock.commit().await.unwrap();
    eventually(
        "the waiter's execution to stop",
        Duration::from_secs(30),
        || async { (dbos.running_workflows() == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        db.status_of("wfd-waiter").await.as_deref(),
        Some("PENDING"),
        "a failed status read leaves the workflow to be recovered"
    );
    assert_eq!(
        db.steps_of("wfd-waiter").await,
        [],
        "a failed status read records nothing"
    );
    dbos.resume_workflow("wfd-waiter").await.unwrap();
    dbos.send("wfd-child", &true, "go").await.unwrap();
    assert_eq!(child.result().await.unwrap(), 7);
    let out = tokio::time::timeout(Duration::from_secs(30), waiter.result())
        .await
        .expect("the resumed waiter ends")
        .unwrap();
    assert_eq!(out, "first wfd-child");
    dbos.shutdown().await.unwrap();
}

/// A `Client`'s `get_event` (no listener: it polls) reads at growing intervals (20 ms,
/// doubling up to 1 s) until its timeout: waiting 2 s for an event never set takes 8 reads,
/// at most 8 plus one per second waited, and it returns `None` at the timeout, not before.
#[dbos_testkit::test]
async fn a_client_get_event_reads_at_growing_intervals_until_its_timeout(db: TestDatabase) {
    // The runtime creates the schema; its own statements do not go through the proxy.
    let dbos = db.launch().await;
    let proxy = dbos_testkit::proxy::Proxy::start(db.cluster().postgres().port()).await;
    let client = dbos_core::client::Client::connect(proxy.url(&db.url()))
        .await
        .unwrap();
    let before = proxy.statements();
    let started = Instant::now();
    let found: Option<String> = client
        .get_event("nobody", "never", Duration::from_secs(2))
        .await
        .unwrap();
    let waited = started.elapsed();
    let reads = proxy.statements() - before;
    eprintln!("{reads} event reads in {waited:?}");
    assert_eq!(found, None);
    assert!(waited >= Duration::from_secs(2), "gave up after {waited:?}");
    let bound = 8 + waited.as_millis() / 1000;
    assert!(
        reads as u128 <= bound,
        "{reads} event reads in {waited:?} (at most {bound})"
    );
    assert!(reads >= 2, "not vacuous: the reads went through the proxy");
    dbos.shutdown().await.unwrap();
}

/// Reads an event, catching any error of the read as its result.
#[workflow]
async fn reads_event_or_says_why(target: String) -> Result<String, Error> {
    match dbos_core::get_event::<String>(&target, "status", Duration::from_secs(5)).await {
        Ok(value) => Ok(format!("read {value:?}")),
        Err(e) => Ok(format!("failed: {e}")),
    }
}

/// A `get_event` whose read the database fails (an error of its statement) has no answer to
/// record: the execution stops with the read unrecorded, even though the body catches the
/// error, and the workflow, resumed once the database answers, reads the event. Handing
/// the failure to the body as a plain error would let the body record it (here as its
/// result) instead of leaving the read to recovery.
#[dbos_testkit::test]
async fn a_get_event_the_database_fails_stops_the_execution_and_reads_when_resumed(
    db: TestDatabase,
) {
    let dbos = db.launch().await;
    let publisher = publishes()
        .id("failing-pub")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    dbos.send("failing-pub", &true, "go").await.unwrap();
    publisher.result().await.unwrap();
    let admin = db.connect().await;
    // Every read of the events table now fails with an error of its statement.
    admin
        .batch_execute("ALTER TABLE dbos.workflow_events RENAME TO workflow_events_away")
        .await
        .unwrap();
    reads_event_or_says_why("failing-pub".into())
        .id("failing-reader")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually(
        "the reader's execution to stop",
        Duration::from_secs(60),
        || async { (dbos.running_workflows() == 0).then_some(()) },
    )
    .await;
    assert_eq!(
        db.status_of("failing-reader").await.as_deref(),
        Some("PENDING"),
        "a failed read leaves its workflow to be recovered"
    );
    let reads: i64 = admin
        .query_one(
            "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'failing-reader' AND function_name = 'DBOS.getEvent'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reads, 0, "a failed read records nothing");
    admin
        .batch_execute("ALTER TABLE dbos.workflow_events_away RENAME TO workflow_events")
        .await
        .unwrap();
    dbos.resume_workflow("failing-reader").await.unwrap();
    let resumed = dbos.retrieve_workflow::<String, Error>("failing-reader");
    let out = tokio::time::timeout(Duration::from_secs(60), resumed.result())
        .await
        .expect("the resumed reader finishes")
        .unwrap();
    assert_eq!(out, "read Some(\"paid\")");
    dbos.shutdown().await.unwrap();
}
