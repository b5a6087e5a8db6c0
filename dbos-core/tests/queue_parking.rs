//! A queued workflow parked in a long sleep keeps its place in the queue's worker
//! concurrency, as a sleeping workflow does in every DBOS executor: `worker_concurrency(n)`
//! never lets more than n of the queue's workflows be in progress in one executor.

use std::sync::Mutex;
use std::time::Duration;

use dbos_core::{step, workflow, Dbos, Error, Queue};
use dbos_testkit::TestDatabase;

static ONE_AT_A_TIME: Queue = Queue::new("one-at-a-time").worker_concurrency(1);

static EVENTS: Mutex<Vec<(String, &'static str, i64)>> = Mutex::new(Vec::new());

#[step]
async fn mark(key: String, what: &'static str) -> Result<(), Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    EVENTS.lock().unwrap().push((key, what, now));
    Ok(())
}

#[workflow]
async fn sleeper(key: String, ms: u64) -> Result<(), Error> {
    mark(key.clone(), "begin").await?;
    dbos_core::sleep(Duration::from_millis(ms)).await?;
    mark(key, "end").await
}

#[dbos_testkit::test]
async fn a_parked_workflow_keeps_its_worker_concurrency_place(db: TestDatabase) {
    let dbos = Dbos::launch(
        db.config("testapp")
            .queue(&ONE_AT_A_TIME)
            .park_after(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    let mut handles = Vec::new();
    for i in 0..3 {
        handles.push(
            sleeper(format!("s{i}"), 400)
                .on(&dbos)
                .enqueue(&ONE_AT_A_TIME)
                .await
                .unwrap(),
        );
    }
    for h in &handles {
        h.result().await.unwrap();
    }
    let events = EVENTS.lock().unwrap().clone();
    let interval = |key: &str| {
        let at = |what| {
            events
                .iter()
                .find(|(k, w, _)| k == key && *w == what)
                .map(|e| e.2)
                .unwrap()
        };
        (at("begin"), at("end"))
    };
    let mut spans: Vec<(i64, i64)> = (0..3).map(|i| interval(&format!("s{i}"))).collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two workflows of a worker_concurrency(1) queue were in progress at once: {spans:?}"
        );
    }
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_parked_workflow_whose_resume_fails_stays_parked_and_resumes_later(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").park_after(Duration::from_millis(50)))
        .await
        .unwrap();
    // Long enough for the inputs to be broken before its wake-up on a loaded machine.
    let sleep_ms = 3_000;
    let h = sleeper("broken-resume".into(), sleep_ms)
        .id("broken-resume")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    let sql = db.connect().await;
    let began = dbos_testkit::crash::eventually(
        "the sleeper to begin",
        Duration::from_secs(30),
        || async {
            EVENTS
                .lock()
                .unwrap()
                .iter()
                .find(|(k, w, _)| k == "broken-resume" && *w == "begin")
                .map(|e| e.2)
        },
    )
    .await;
    let micros_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64
    };
    // Its inputs cannot be decoded when its wake-up time comes: the resume fails.
    let inputs: String = sql
        .query_one(
            "SELECT inputs FROM dbos.workflow_input WHERE workflow_uuid = 'broken-resume'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    sql.execute(
        "UPDATE dbos.workflow_input SET inputs = 'not json' WHERE workflow_uuid = 'broken-resume'",
        &[],
    )
    .await
    .unwrap();
    let broken_after = Duration::from_micros((micros_now() - began) as u64);
    assert!(
        broken_after < Duration::from_millis(sleep_ms),
        "the inputs were broken {broken_after:?} after the sleep began, past its wake-up: too slow a machine for this test"
    );
    // Past its wake-up time, with time for a resume to fail (or, wrongly, to run).
    tokio::time::sleep(
        Duration::from_millis(sleep_ms) - broken_after + Duration::from_millis(1500),
    )
    .await;
    let ended = |events: &[(String, &str, i64)]| {
        events
            .iter()
            .any(|(k, w, _)| k == "broken-resume" && *w == "end")
    };
    assert!(
        !ended(&EVENTS.lock().unwrap()),
        "it resumed with bad inputs"
    );
    // Repaired, it is resumed by its own executor, without a restart.
    sql.execute(
        "UPDATE dbos.workflow_input SET inputs = $1 WHERE workflow_uuid = 'broken-resume'",
        &[&inputs],
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(60), h.result())
        .await
        .expect("the parked workflow was lost after its failed resume")
        .unwrap();
    dbos.shutdown().await.unwrap();
}
