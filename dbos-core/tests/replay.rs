//! Replay (time travel): a recorded execution re-run with the binary's code, read-only.
//! Every operation returns its recorded result, no step body runs, no row changes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dbos_core::replay::{DivergenceKind, ReplayEnd};
use dbos_core::{step, workflow, Error, ErrorKind};
use dbos_testkit::runs::{bump, runs};
use dbos_testkit::TestDatabase;
use serde_json::{json, Value};

/// Counts a step body's run under its workflow's id (tests run in parallel).
fn ran() {
    bump(&dbos_core::workflow_id().unwrap_or_default());
}

#[step]
async fn add(a: i64, b: i64) -> Result<i64, Error> {
    ran();
    Ok(a + b)
}

#[step]
async fn refuses() -> Result<i64, Error> {
    ran();
    Err(Error::new(ErrorKind::InvalidArgument, "refused on purpose"))
}

#[workflow]
async fn doubled(x: i64) -> Result<i64, Error> {
    add(x, x).await
}

/// One of each kind of durable operation.
#[workflow]
async fn traced(x: i64) -> Result<Value, Error> {
    let a = add(x, 1).await?; // 1
    let refused = refuses().await.unwrap_err().to_string(); // 2
    dbos_core::sleep(Duration::from_millis(20)).await?; // 3
    dbos_core::set_event("progress", &a).await?; // 4
    let child = doubled(a).await?; // 5 (start), 6 (result)
    let at = dbos_core::now().await?; // 7
    let id = dbos_core::uuid().await?; // 8
    let patched = dbos_core::patch("p").await?; // 9
    let at_ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    Ok(
        json!({ "a": a, "refused": refused, "child": child, "at": at_ms, "id": id, "patched": patched }),
    )
}

/// Every row of every table of the `dbos` schema, hashed per table (with its row count).
async fn snapshot(db: &TestDatabase) -> Vec<(String, i64, String)> {
    let c = db.connect().await;
    let tables: Vec<String> = c
        .query(
            "SELECT table_name::text FROM information_schema.tables
              WHERE table_schema = 'dbos' AND table_type = 'BASE TABLE' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() >= 10, "{tables:?}");
    let mut out = Vec::new();
    for t in tables {
        let row = c
            .query_one(
                &format!(
                    "SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))
                       FROM dbos.\"{t}\" x"
                ),
                &[],
            )
            .await
            .unwrap();
        out.push((t, row.get(0), row.get(1)));
    }
    out
}

#[dbos_testkit::test]
async fn a_replay_returns_every_recorded_result_and_writes_nothing(db: TestDatabase) {
    let dbos = db.launch().await;
    let recorded = traced(4).id("traced").on(&dbos).await.unwrap();
    let steps = dbos.list_workflow_steps("traced").await.unwrap();
    dbos.shutdown().await.unwrap();

    let before = snapshot(&db).await;
    let bodies = runs("traced");
    assert_eq!(bodies, 2);
    let replay = dbos_testkit::replay(&db.url(), "traced").await.unwrap();
    println!("{replay}");
    assert_eq!(runs("traced"), bodies, "no step body ran");
    assert_eq!(snapshot(&db).await, before, "no row changed");

    // The body saw the recorded values (the time, the uuid, the child's result, the
    // refusal), so it returns the recorded output.
    assert_eq!(
        replay.end,
        ReplayEnd::Returned {
            output: Some(recorded.clone()),
            error: None
        }
    );
    let names: Vec<&str> = replay.trace.iter().map(|o| o.name.as_str()).collect();
    let recorded_names: Vec<&str> = steps.iter().map(|s| s.function_name.as_str()).collect();
    assert_eq!(names, recorded_names);
    assert_eq!(
        names,
        [
            "add",
            "refuses",
            "DBOS.sleep",
            "DBOS.setEvent",
            "doubled",
            "DBOS.getResult",
            "dbos_core::now",
            "dbos_core::uuid",
            "DBOS.patch-p"
        ]
    );
    let ids: Vec<i32> = replay.trace.iter().map(|o| o.step_id).collect();
    assert_eq!(ids, (1..=9).collect::<Vec<_>>());
    assert_eq!(replay.trace[0].output.as_deref(), Some("5"));
    assert!(
        replay.trace[1]
            .error
            .as_deref()
            .unwrap()
            .contains("refused on purpose"),
        "{:?}",
        replay.trace[1]
    );
    assert_eq!(
        replay.trace[4].child_workflow_id.as_deref(),
        Some("traced-5")
    );
    assert_eq!(
        replay.trace[7].output,
        Some(Value::String(recorded["id"].as_str().unwrap().to_owned()).to_string())
    );
    assert!(replay.to_string().contains("DBOS.patch-p"));
}

#[dbos_testkit::test]
async fn replay_on_a_launched_runtime_and_of_a_missing_workflow(db: TestDatabase) {
    let dbos = db.launch().await;
    let recorded = traced(1).id("on-dbos").on(&dbos).await.unwrap();
    let bodies = runs("on-dbos");
    let replay = dbos.replay("on-dbos").await.unwrap();
    assert_eq!(runs("on-dbos"), bodies);
    assert_eq!(
        replay.end,
        ReplayEnd::Returned {
            output: Some(recorded),
            error: None
        }
    );
    let e = dbos.replay("nobody").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonExistentWorkflow);
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn waits() -> Result<Option<String>, Error> {
    add(1, 1).await?;
    dbos_core::recv::<String>("go", Duration::from_secs(600)).await
}

#[dbos_testkit::test]
async fn an_in_flight_workflow_replays_up_to_where_it_is(db: TestDatabase) {
    let dbos = db.launch().await;
    waits().id("waiting").on(&dbos).start().await.unwrap();
    // Its `add` and the receive's deadline are recorded; the receive is not.
    dbos_testkit::crash::eventually("the wait to begin", Duration::from_secs(30), || async {
        (dbos.list_workflow_steps("waiting").await.unwrap().len() == 2).then_some(())
    })
    .await;
    dbos.shutdown().await.unwrap();
    let replay = dbos_testkit::replay(&db.url(), "waiting").await.unwrap();
    assert_eq!(
        replay.end,
        ReplayEnd::Frontier {
            step_id: 2,
            next: "DBOS.recv".into()
        },
        "{replay}"
    );
    assert_eq!(replay.trace.len(), 1);
    assert!(replay.divergence().is_none());
}

static SHAPE: AtomicU32 = AtomicU32::new(0);

#[step]
async fn step_b() -> Result<String, Error> {
    Ok("b".into())
}

#[step]
async fn step_c() -> Result<String, Error> {
    ran();
    Ok("c".into())
}

/// Its code changes during the test: 0 (b, a child), 1 (c instead of b), 2 (an extra c at
/// the end), 3 (nothing after the first step), 4 (another output), 5 (another child).
#[workflow]
async fn shifting() -> Result<String, Error> {
    add(0, 1).await?;
    let shape = SHAPE.load(Ordering::SeqCst);
    let out = match shape {
        1 => step_c().await?,
        3 => "b".into(),
        4 => format!("{}!", step_b().await?),
        _ => step_b().await?,
    };
    match shape {
        1 | 3 => {}
        5 => {
            doubled(1).id("another-child").await?;
        }
        _ => {
            doubled(1).await?;
        }
    }
    if shape == 2 {
        step_c().await?;
    }
    Ok(out)
}

#[dbos_testkit::test]
async fn each_kind_of_divergence_is_named(db: TestDatabase) {
    let dbos = db.launch().await;
    SHAPE.store(0, Ordering::SeqCst);
    shifting().id("shifting").on(&dbos).await.unwrap();
    let cases = [
        (
            1,
            DivergenceKind::DifferentOperation,
            Some(2),
            Some("step_b"),
            Some("step_c"),
        ),
        (
            3,
            DivergenceKind::MissingOperation,
            Some(2),
            Some("step_b"),
            None,
        ),
        (
            4,
            DivergenceKind::DifferentOutcome,
            None,
            Some("output `\"b\"`"),
            Some("output `\"b!\"`"),
        ),
        (
            5,
            DivergenceKind::DifferentChild,
            Some(3),
            Some("doubled (child `shifting-3`)"),
            Some("doubled (child `another-child`)"),
        ),
    ];
    for (shape, kind, step, recorded, new) in cases {
        SHAPE.store(shape, Ordering::SeqCst);
        let replay = dbos.replay("shifting").await.unwrap();
        let d = replay
            .divergence()
            .unwrap_or_else(|| panic!("shape {shape}: {replay}"));
        assert_eq!(
            (d.kind, d.step_id, d.recorded.as_deref(), d.new.as_deref()),
            (kind, step, recorded, new),
            "shape {shape}: {d}"
        );
    }
    // An operation past the end of a finished history.
    SHAPE.store(2, Ordering::SeqCst);
    let bodies = runs("shifting");
    let before = snapshot(&db).await;
    let replay = dbos.replay("shifting").await.unwrap();
    assert_eq!(runs("shifting"), bodies, "the extra step did not run");
    assert_eq!(snapshot(&db).await, before, "nor was it recorded");
    let d = replay.divergence().unwrap();
    assert_eq!(d.kind, DivergenceKind::ExtraOperation, "{d}");
    assert_eq!((d.step_id, d.new.as_deref()), (Some(5), Some("step_c")));
    assert!(d.to_string().contains("after the end"), "{d}");
    dbos.shutdown().await.unwrap();
}

static GROWN: AtomicU32 = AtomicU32::new(0);

/// Version 0 ends after its step; version 1 adds a patched step at the end.
#[workflow]
async fn grows() -> Result<i64, Error> {
    let a = add(2, 3).await?;
    if GROWN.load(Ordering::SeqCst) == 1 && dbos_core::patch("tail").await? {
        return Ok(add(a, 1).await? + 100);
    }
    Ok(a)
}

#[dbos_testkit::test]
async fn a_patch_after_the_end_of_a_finished_history_takes_the_old_branch(db: TestDatabase) {
    let dbos = db.launch().await;
    GROWN.store(0, Ordering::SeqCst);
    assert_eq!(grows().id("grown").on(&dbos).await.unwrap(), 5);
    GROWN.store(1, Ordering::SeqCst);
    let replay = dbos.replay("grown").await.unwrap();
    assert_eq!(
        replay.end,
        ReplayEnd::Returned {
            output: Some(json!(5)),
            error: None
        },
        "{replay}"
    );
    // A new execution takes the new branch, and replays it.
    assert_eq!(grows().id("grown-2").on(&dbos).await.unwrap(), 106);
    let replay = dbos.replay("grown-2").await.unwrap();
    let names: Vec<&str> = replay.trace.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["add", "DBOS.patch-tail", "add"]);
    assert!(replay.divergence().is_none(), "{replay}");
    dbos.shutdown().await.unwrap();
}
