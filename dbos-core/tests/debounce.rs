//! Debouncing (DBOS's `Debouncer`): calls of one workflow with one key inside a window
//! become one run with the last call's inputs, started a period after the last call and at
//! most the timeout after the first; the key is released when the run is enqueued. The
//! window runs on a `TestClock`, so every step of it is decided by the test, not by timing.

use std::time::{Duration, UNIX_EPOCH};

use dbos_core::{
    workflow, Client, Dbos, Debouncer, Error, ErrorKind, IdReusePolicy, Queue, Status,
};
use dbos_testkit::crash::{eventually, IsolatedRuntime};
use dbos_testkit::runs::{bump, runs};
use dbos_testkit::{TestClock, TestDatabase};
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);
/// How long a workflow that must run is given (the machine is loaded).
const RUNS_WITHIN: Duration = Duration::from_secs(60);

/// Counts its runs per key and returns the value it was given.
#[workflow]
async fn summarize(key: String, n: u32) -> Result<u32, Error> {
    bump(&format!("summarize/{key}"));
    Ok(n)
}

/// The debounced row of a workflow, as DBOS reads it.
#[derive(Debug, PartialEq)]
struct Row {
    status: String,
    name: String,
    dedup: Option<String>,
    debounced: bool,
    delay_until: Option<i64>,
    deadline: Option<i64>,
    queue: Option<String>,
}

async fn row(db: &TestDatabase, id: &str) -> Row {
    let r = db
        .connect()
        .await
        .query_one(
            "SELECT status, name, deduplication_id, is_debounced, delay_until_epoch_ms, debounce_deadline_epoch_ms,
                    queue_name
               FROM dbos.workflow_status WHERE workflow_uuid = $1",
            &[&id],
        )
        .await
        .unwrap();
    Row {
        status: r.get(0),
        name: r.get(1),
        dedup: r.get(2),
        debounced: r.get(3),
        delay_until: r.get(4),
        deadline: r.get(5),
        queue: r.get(6),
    }
}

/// The workflow rows of `summarize` for `key` (its first argument).
async fn rows_for(db: &TestDatabase, key: &str) -> i64 {
    db.connect()
        .await
        .query_one(
            "SELECT count(*) FROM dbos.workflow_status ws JOIN dbos.workflow_input wi USING (workflow_uuid)
              WHERE ws.name = 'summarize' AND (wi.inputs::json -> 'positionalArgs' ->> 0) = $1",
            &[&key],
        )
        .await
        .unwrap()
        .get(0)
}

fn ms(clock: &TestClock) -> i64 {
    clock.now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn far_clock() -> TestClock {
    TestClock::starting_at(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
}

async fn launch(db: &TestDatabase, clock: &TestClock) -> Dbos {
    Dbos::launch(db.config("testapp").clock(clock.clock()))
        .await
        .unwrap()
}

/// Asserts the workflow stays DELAYED across a sweep (sweeps run every second and at each
/// clock advance).
async fn still_delayed(db: &TestDatabase, id: &str, what: &str) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(row(db, id).await.status, "DELAYED", "{what}");
}

#[dbos_testkit::test(timeout = "180s")]
async fn calls_inside_the_window_make_one_run_with_the_last_inputs(db: TestDatabase) {
    let clock = far_clock();
    let t0 = ms(&clock);
    let dbos = launch(&db, &clock).await;
    static D: Debouncer = Debouncer::new();

    let first = D
        .debounce("k1", MINUTE, summarize("k1".into(), 1))
        .await
        .unwrap();
    let r = row(&db, first.id()).await;
    assert_eq!(
        r,
        Row {
            status: "DELAYED".into(),
            name: "summarize".into(),
            dedup: Some("summarize-k1".into()),
            debounced: true,
            delay_until: Some(t0 + 60_000),
            deadline: None,
            queue: Some("_dbos_internal_queue".into()),
        },
        "DBOS's debounced row"
    );

    // Half a period later a second call pushes the start to its own period's end.
    clock.advance(MINUTE / 2);
    let second = D
        .debounce("k1", MINUTE, summarize("k1".into(), 2))
        .await
        .unwrap();
    assert_eq!(second.id(), first.id(), "one workflow per window");
    assert_eq!(row(&db, first.id()).await.delay_until, Some(t0 + 90_000));

    // Past the first call's period (t0 + 70 s) it still waits: the last call's period rules.
    clock.advance(Duration::from_secs(40));
    still_delayed(
        &db,
        first.id(),
        "started before the last call's period ended",
    )
    .await;
    assert_eq!(runs("summarize/k1"), 0);

    clock.advance(Duration::from_secs(25)); // t0 + 95 s
    let n = tokio::time::timeout(RUNS_WITHIN, second.result())
        .await
        .expect("the debounced workflow did not run")
        .unwrap();
    assert_eq!(n, 2, "the last call's inputs");
    assert_eq!(runs("summarize/k1"), 1);
    let done = row(&db, first.id()).await;
    assert_eq!(done.status, "SUCCESS");
    assert_eq!(done.dedup, None, "the key is released");

    // The key is free again: the next call starts a new window.
    let next = D
        .debounce("k1", MINUTE, summarize("k1".into(), 3))
        .await
        .unwrap();
    assert_ne!(next.id(), first.id());
    assert_eq!(row(&db, next.id()).await.status, "DELAYED");
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test(timeout = "180s")]
async fn the_key_is_released_when_the_run_is_enqueued_not_when_it_ends(db: TestDatabase) {
    // A queue no executor serves: the run stays ENQUEUED after the sweep, so only the
    // sweep's release can free the key.
    static PARKED: Queue = Queue::new("debounce-parked");
    let clock = far_clock();
    let dbos = launch(&db, &clock).await;
    let d = Debouncer::new().queue(&PARKED);
    let first = d
        .debounce("rel", MINUTE, summarize("rel".into(), 1))
        .await
        .unwrap();
    clock.advance(MINUTE);
    eventually("the sweep to enqueue it", RUNS_WITHIN, || async {
        (row(&db, first.id()).await.status == "ENQUEUED").then_some(())
    })
    .await;
    let r = row(&db, first.id()).await;
    assert_eq!(r.dedup, None, "the sweep releases a debounced key");
    let second = d
        .debounce("rel", MINUTE, summarize("rel".into(), 2))
        .await
        .unwrap();
    assert_ne!(
        second.id(),
        first.id(),
        "a call after the release starts a new workflow"
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test(timeout = "180s")]
async fn the_timeout_caps_how_far_calls_push_the_start(db: TestDatabase) {
    let clock = far_clock();
    let t0 = ms(&clock);
    let dbos = launch(&db, &clock).await;
    let d = Debouncer::new().timeout(Duration::from_secs(100));
    let h = d
        .debounce("cap", MINUTE, summarize("cap".into(), 1))
        .await
        .unwrap();
    let r = row(&db, h.id()).await;
    assert_eq!(r.deadline, Some(t0 + 100_000), "first call + timeout");
    assert_eq!(r.delay_until, Some(t0 + 60_000));
    for (i, n) in [(1, 2u32), (2, 3)] {
        clock.advance(Duration::from_secs(30));
        let again = d
            .debounce("cap", MINUTE, summarize("cap".into(), n))
            .await
            .unwrap();
        assert_eq!(again.id(), h.id());
        let expected = (t0 + 30_000 * i + 60_000).min(t0 + 100_000);
        assert_eq!(
            row(&db, h.id()).await.delay_until,
            Some(expected),
            "call {n}"
        );
    }
    // At t0 + 60 s the last call asked for t0 + 120 s; the deadline holds it to t0 + 100 s.
    clock.advance(Duration::from_secs(39)); // t0 + 99 s
    still_delayed(&db, h.id(), "started before the deadline").await;
    clock.advance(Duration::from_secs(1));
    let n = tokio::time::timeout(RUNS_WITHIN, h.result())
        .await
        .expect("the capped workflow did not run at its deadline")
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(runs("summarize/cap"), 1);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test(timeout = "300s")]
async fn two_executors_debouncing_one_key_concurrently_make_one_run(db: TestDatabase) {
    let clock = far_clock();
    let a = launch(&db, &clock).await;
    let b = launch(&db, &clock).await;
    static D: Debouncer = Debouncer::new();
    let mut tasks = Vec::new();
    for task in 0..16u32 {
        let dbos = if task % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for call in 0..4u32 {
                let h = D
                    .debounce(
                        "race",
                        MINUTE,
                        summarize("race".into(), task * 10 + call).on(&dbos),
                    )
                    .await
                    .unwrap();
                ids.push(h.id().to_owned());
            }
            ids
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    assert_eq!(ids.len(), 1, "every call got the same workflow: {ids:?}");
    assert_eq!(rows_for(&db, "race").await, 1, "one workflow row");
    // The last call (after all the concurrent ones) wins.
    let last = D
        .debounce("race", MINUTE, summarize("race".into(), 999).on(&b))
        .await
        .unwrap();
    assert!(ids.contains(last.id()));
    clock.advance(MINUTE * 2);
    let n = tokio::time::timeout(RUNS_WITHIN, last.result())
        .await
        .expect("the debounced workflow did not run")
        .unwrap();
    assert_eq!(n, 999);
    assert_eq!(runs("summarize/race"), 1, "exactly one run");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[dbos_testkit::test(timeout = "180s")]
async fn a_client_and_an_executor_push_one_workflow(db: TestDatabase) {
    // The client stamps times on the system clock; the executor's test clock starts there.
    let clock = TestClock::new();
    let dbos = launch(&db, &clock).await;
    let client = Client::connect(db.url()).await.unwrap();
    let d = Debouncer::new().timeout(MINUTE * 10);
    let from_client = d
        .debounce_from_client(
            &client,
            "summarize",
            "cli",
            MINUTE,
            vec![json!("cli"), json!(1)],
        )
        .await
        .unwrap();
    let r = row(&db, from_client.id()).await;
    assert_eq!((r.status.as_str(), r.debounced), ("DELAYED", true));
    assert_eq!(r.dedup.as_deref(), Some("summarize-cli"));
    let from_app = d
        .debounce("cli", MINUTE, summarize("cli".into(), 2))
        .await
        .unwrap();
    assert_eq!(from_app.id(), from_client.id());
    let last = d
        .debounce_from_client(
            &client,
            "summarize",
            "cli",
            MINUTE,
            vec![json!("cli"), json!(3)],
        )
        .await
        .unwrap();
    assert_eq!(last.id(), from_client.id());
    clock.advance(MINUTE * 3);
    let v: Value = tokio::time::timeout(RUNS_WITHIN, last.result())
        .await
        .expect("the client's debounced workflow did not run")
        .unwrap();
    assert_eq!(v, json!(3), "the client's last inputs");
    assert_eq!(runs("summarize/cli"), 1);
    // By name, bad input is refused before anything is written, as in process.
    let e = d
        .debounce_from_client(&client, " ", "cli", MINUTE, vec![])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test(timeout = "180s")]
async fn bad_input_is_refused_and_nothing_is_written(db: TestDatabase) {
    static SPLIT: Queue = Queue::new("debounce-split").partitioned();
    let clock = far_clock();
    let dbos = Dbos::launch(db.config("testapp").clock(clock.clock()).queue(&SPLIT))
        .await
        .unwrap();
    let capped = Debouncer::new().timeout(MINUTE);
    let cases: Vec<(&str, dbos_core::Result<_>)> = vec![
        (
            "empty key",
            Debouncer::new()
                .debounce("", MINUTE, summarize("bad".into(), 1))
                .await,
        ),
        (
            "blank key",
            Debouncer::new()
                .debounce("  ", MINUTE, summarize("bad".into(), 1))
                .await,
        ),
        (
            "zero period",
            Debouncer::new()
                .debounce("k", Duration::ZERO, summarize("bad".into(), 1))
                .await,
        ),
        (
            "period past the timeout",
            capped
                .debounce("k", MINUTE * 2, summarize("bad".into(), 1))
                .await,
        ),
        (
            "zero timeout",
            Debouncer::new()
                .timeout(Duration::ZERO)
                .debounce("k", MINUTE, summarize("bad".into(), 1))
                .await,
        ),
        (
            "partitioned queue",
            Debouncer::new()
                .queue(&SPLIT)
                .debounce("k", MINUTE, summarize("bad".into(), 1))
                .await,
        ),
        (
            "reject id reuse",
            Debouncer::new()
                .debounce(
                    "k",
                    MINUTE,
                    summarize("bad".into(), 1).id_reuse_policy(IdReusePolicy::Reject),
                )
                .await,
        ),
    ];
    for (what, result) in cases {
        let e = result.map(|h| h.id().to_owned()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{what}: {e}");
        eprintln!("{what}: {e}");
    }
    // The period may equal the timeout.
    capped
        .debounce("edge", MINUTE, summarize("edge".into(), 1))
        .await
        .unwrap();
    assert_eq!(rows_for(&db, "bad").await, 0, "nothing written");
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test(timeout = "180s")]
async fn a_key_held_by_a_plain_enqueue_is_refused(db: TestDatabase) {
    static PLAIN: Queue = Queue::new("debounce-plain");
    let clock = far_clock();
    let dbos = Dbos::launch(db.config("testapp").clock(clock.clock()).queue(&PLAIN))
        .await
        .unwrap();
    let plain = summarize("held".into(), 1)
        .enqueue(&PLAIN)
        .deduplication_id("summarize-held")
        .delay(MINUTE)
        .await
        .unwrap();
    let e = Debouncer::new()
        .queue(&PLAIN)
        .debounce("held", MINUTE, summarize("held".into(), 2))
        .await
        .map(|h| h.id().to_owned())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueDeduplicated, "{e}");
    assert_eq!(e.workflow_id(), Some(plain.id()));
    assert_eq!(rows_for(&db, "held").await, 1, "the plain enqueue only");
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test(timeout = "240s")]
async fn a_crash_while_delayed_still_runs_it_once(db: TestDatabase) {
    let clock = far_clock();
    let config = db.config("testapp").clock(clock.clock());
    let first = IsolatedRuntime::new();
    let c = config.clone();
    let id = first
        .run(async move {
            let dbos = Dbos::launch(c).await.unwrap();
            Debouncer::new()
                .debounce("crash", MINUTE, summarize("crash".into(), 1).on(&dbos))
                .await
                .unwrap()
                .id()
                .to_owned()
        })
        .await;
    first.abort();
    assert_eq!(row(&db, &id).await.status, "DELAYED");

    let dbos = Dbos::launch(config).await.unwrap();
    // The key is still held by the dead executor's row: a call pushes it.
    clock.advance(MINUTE / 2);
    let again = Debouncer::new()
        .debounce("crash", MINUTE, summarize("crash".into(), 2))
        .await
        .unwrap();
    assert_eq!(again.id(), id);
    clock.advance(MINUTE * 2);
    let n = tokio::time::timeout(RUNS_WITHIN, again.result())
        .await
        .expect("the debounced workflow did not run after the crash")
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(runs("summarize/crash"), 1);
    dbos.shutdown().await.unwrap();
}

/// Debounces twice (the first call creates the workflow, the second pushes it), then waits
/// for a message, returning the debounced workflow's id.
#[workflow]
async fn debounces_then_waits(key: String) -> Result<String, Error> {
    let created = Debouncer::new()
        .debounce(&key, MINUTE, summarize(key.clone(), 7))
        .await?;
    let pushed = Debouncer::new()
        .debounce(&key, MINUTE, summarize(key.clone(), 8))
        .await?;
    if pushed.id() != created.id() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "two workflows in one window",
        ));
    }
    let _: Option<bool> = dbos_core::recv("go", MINUTE * 60).await?;
    Ok(pushed.id().to_owned())
}

#[dbos_testkit::test(timeout = "240s")]
async fn a_debounce_in_a_workflow_is_not_repeated_by_its_recovery(db: TestDatabase) {
    let clock = far_clock();
    let config = db.config("testapp").clock(clock.clock());
    let first = IsolatedRuntime::new();
    let c = config.clone();
    first
        .run(async move {
            let dbos = Dbos::launch(c).await.unwrap();
            debounces_then_waits("inwf".into())
                .id("parent")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        })
        .await;
    let sql = db.connect().await;
    // The second call's inputs are in: both calls are done.
    let child: String = eventually("the second debounce", RUNS_WITHIN, || async {
        sql.query_opt(
            "SELECT ws.workflow_uuid FROM dbos.workflow_status ws JOIN dbos.workflow_input wi USING (workflow_uuid)
              WHERE ws.name = 'summarize' AND wi.inputs::jsonb -> 'positionalArgs' = '[\"inwf\", 8]'::jsonb",
            &[],
        )
        .await
        .unwrap()
        .map(|r| r.get::<_, String>(0))
    })
    .await;
    // Both calls are recorded, as the start of the workflow each got.
    let recorded: Vec<Option<String>> = sql
        .query(
            "SELECT child_workflow_id FROM dbos.operation_outputs WHERE workflow_uuid = 'parent'
              AND function_id IN (1, 2) ORDER BY function_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        recorded,
        vec![Some(child.clone()), Some(child.clone())],
        "both debounces recorded"
    );
    let before = row(&db, &child).await;
    first.abort();

    // Time passes; a repeated debounce would push the start to the new now + period.
    clock.advance(MINUTE / 2);
    let dbos = Dbos::launch(config).await.unwrap();
    let parent = dbos.retrieve_workflow::<String, Error>("parent");
    dbos.send("parent", &true, "go").await.unwrap();
    let got = tokio::time::timeout(RUNS_WITHIN, parent.result())
        .await
        .expect("the recovered parent did not finish")
        .unwrap();
    assert_eq!(got, child, "the replay returns the recorded workflow");
    assert_eq!(row(&db, &child).await, before, "the replay pushed nothing");
    clock.advance(MINUTE);
    let n = tokio::time::timeout(
        RUNS_WITHIN,
        dbos.retrieve_workflow::<u32, Error>(&child).result(),
    )
    .await
    .expect("the debounced child did not run")
    .unwrap();
    assert_eq!(n, 8, "the second call's inputs");
    assert_eq!(runs("summarize/inwf"), 1);
    assert_eq!(
        dbos.retrieve_workflow::<String, Error>("parent")
            .status()
            .await
            .unwrap(),
        Status::Success
    );
    dbos.shutdown().await.unwrap();
}

const PY_DEBOUNCE: &str = r#"
import sys
from dbos import DBOSClient, DebouncerClient, WorkflowSerializationFormat
url, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = DBOSClient(system_database_url=url)
d = DebouncerClient(c, {"workflow_name": "summarize", "queue_name": "_dbos_internal_queue",
                        "serialization_type": WorkflowSerializationFormat.PORTABLE},
                    debounce_timeout_sec=3600)
h = d.debounce(key, 60, key, n)
print(h.workflow_id)
c.destroy()
"#;

async fn python_debounce(db: &TestDatabase, key: &str, n: u32) -> String {
    let out =
        dbos_testkit::python::run_python(PY_DEBOUNCE, &[&db.url(), key, &n.to_string()]).await;
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[dbos_testkit::test(timeout = "300s")]
async fn dbos_pythons_debouncer_client_and_ours_push_one_workflow(db: TestDatabase) {
    // Python stamps times on the system clock; the executor's test clock starts there.
    let clock = TestClock::new();
    let dbos = launch(&db, &clock).await;
    let d = Debouncer::new().timeout(MINUTE * 60);

    // Ours first: Python's DebouncerClient finds our row and pushes it.
    let ours = d
        .debounce("py1", MINUTE, summarize("py1".into(), 1))
        .await
        .unwrap();
    let theirs = python_debounce(&db, "py1", 2).await;
    assert_eq!(theirs, ours.id(), "Python pushed our debounced workflow");
    assert_eq!(rows_for(&db, "py1").await, 1);

    // Python's first: ours finds its row and pushes it.
    let py_first = python_debounce(&db, "py2", 1).await;
    let r = row(&db, &py_first).await;
    assert_eq!((r.status.as_str(), r.debounced), ("DELAYED", true));
    assert_eq!(r.dedup.as_deref(), Some("summarize-py2"));
    let pushed = d
        .debounce("py2", MINUTE, summarize("py2".into(), 5))
        .await
        .unwrap();
    assert_eq!(
        pushed.id(),
        py_first,
        "we pushed Python's debounced workflow"
    );

    clock.advance(MINUTE * 3);
    let n = tokio::time::timeout(RUNS_WITHIN, ours.result())
        .await
        .expect("the workflow Python pushed did not run")
        .unwrap();
    assert_eq!(n, 2, "Python's inputs, the last");
    let n = tokio::time::timeout(RUNS_WITHIN, pushed.result())
        .await
        .expect("Python's debounced workflow did not run")
        .unwrap();
    assert_eq!(n, 5, "our inputs, the last");
    assert_eq!((runs("summarize/py1"), runs("summarize/py2")), (1, 1));
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test(timeout = "180s")]
async fn a_key_held_by_a_row_that_cannot_be_pushed_is_refused(db: TestDatabase) {
    // A queue no executor serves, so what is ENQUEUED on it stays.
    static UNSERVED: Queue = Queue::new("debounce-unserved");
    let clock = far_clock();
    let dbos = launch(&db, &clock).await;
    let d = Debouncer::new().queue(&UNSERVED);
    let sql = db.connect().await;

    // Another application's debounced row is not ours to push.
    let theirs = d
        .debounce("foreign", MINUTE, summarize("foreign".into(), 1))
        .await
        .unwrap();
    sql.execute(
        "UPDATE dbos.workflow_status SET application_name = 'otherapp' WHERE workflow_uuid = $1",
        &[&theirs.id()],
    )
    .await
    .unwrap();
    let e = d
        .debounce("foreign", MINUTE, summarize("foreign".into(), 2))
        .await
        .map(|h| h.id().to_owned())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueDeduplicated, "{e}");
    assert!(e.to_string().contains("application `otherapp`"), "{e}");

    // A debounced row that left DELAYED still holding its key (changed by hand): the call
    // looks again a bounded number of times, then refuses instead of spinning.
    let stuck = d
        .debounce("stuck", MINUTE, summarize("stuck".into(), 1))
        .await
        .unwrap();
    sql.execute(
        "UPDATE dbos.workflow_status SET status = 'ENQUEUED' WHERE workflow_uuid = $1",
        &[&stuck.id()],
    )
    .await
    .unwrap();
    let e = d
        .debounce("stuck", MINUTE, summarize("stuck".into(), 2))
        .await
        .map(|h| h.id().to_owned())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueDeduplicated, "{e}");
    assert_eq!(e.workflow_id(), Some(stuck.id()));
    assert!(e.to_string().contains("no longer DELAYED"), "{e}");
    assert_eq!(rows_for(&db, "stuck").await, 1);
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn unrelated() -> Result<(), Error> {
    Ok(())
}

#[dbos_testkit::test(timeout = "180s")]
async fn the_creating_calls_id_names_the_workflow_and_another_workflows_id_is_refused(
    db: TestDatabase,
) {
    let clock = far_clock();
    let dbos = launch(&db, &clock).await;
    static D: Debouncer = Debouncer::new();
    let named = D
        .debounce(
            "named",
            MINUTE,
            summarize("named".into(), 1).id("digest-named"),
        )
        .await
        .unwrap();
    assert_eq!(named.id(), "digest-named");
    // A later call's id is not used: it joins the window.
    let joined = D
        .debounce("named", MINUTE, summarize("named".into(), 2).id("ignored"))
        .await
        .unwrap();
    assert_eq!(joined.id(), "digest-named");

    unrelated().id("taken").await.unwrap();
    let e = D
        .debounce("taken", MINUTE, summarize("taken".into(), 1).id("taken"))
        .await
        .map(|h| h.id().to_owned())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConflictingWorkflow, "{e}");
    assert_eq!(rows_for(&db, "taken").await, 0);
    dbos.shutdown().await.unwrap();
}
