//! Values through `portable_json` come back exactly: a step's recorded output replayed after a
//! crash, and a workflow's output read from its row, equal what the code returned, floats
//! included (the serialization chapter's promise).

use std::sync::atomic::{AtomicU32, Ordering};

use dbos_core::prelude::*;
use dbos_testkit::crash::run_then_kill;
use dbos_testkit::TestDatabase;

/// Floats whose shortest decimal form a best-effort parser reads back one unit in the last
/// place off (serde_json without `float_roundtrip` does, for about one double in five).
const TRICKY: [f64; 4] = [
    90.28571428571429,
    90.42857142857143,
    91.28571428571429,
    918.5714285714286,
];

static HANG: AtomicU32 = AtomicU32::new(0);
static MEASURED: std::sync::Mutex<Vec<f64>> = std::sync::Mutex::new(Vec::new());

#[step]
async fn measure() -> Result<Vec<f64>, Error> {
    Ok(TRICKY.to_vec())
}

#[step]
async fn hang_once() -> Result<(), Error> {
    if HANG.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[workflow]
async fn uses_floats() -> Result<Vec<f64>, Error> {
    let got = measure().await?;
    MEASURED.lock().unwrap().extend(got.iter().copied());
    hang_once().await?;
    Ok(got)
}

#[dbos_testkit::test]
async fn floats_replay_and_read_back_exactly(db: TestDatabase) {
    let config = db.config("testapp").executor_id("floats");
    run_then_kill(
        config.clone(),
        |dbos| async move {
            uses_floats()
                .id("floats-1")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        },
        "the workflow to hang after its step",
        || HANG.load(Ordering::SeqCst) == 1,
    )
    .await;
    let dbos = Dbos::launch(config).await.unwrap();
    let read = dbos
        .retrieve_workflow::<Vec<f64>, Error>("floats-1")
        .result()
        .await
        .unwrap();
    let seen = MEASURED.lock().unwrap().clone();
    assert_eq!(
        seen,
        [TRICKY, TRICKY].concat(),
        "the first run's step output, then the recovered run's replay of its record"
    );
    assert_eq!(read, TRICKY, "the workflow's output read from its row");
    dbos.shutdown().await.unwrap();
}
