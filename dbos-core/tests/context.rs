//! Which runtime a call uses, and what a step can learn about itself.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use dbos_core::{step, workflow, Dbos, Error};
use dbos_testkit::TestDatabase;

#[workflow]
async fn tagged(tag: String) -> Result<String, Error> {
    Ok(tag)
}

async fn count(url: &str, tag: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .query_one(
            "SELECT count(*) FROM dbos.workflow_status s JOIN dbos.workflow_input i USING (workflow_uuid) \
             WHERE i.inputs LIKE '%' || $1 || '%'",
            &[&tag],
        )
        .await
        .unwrap()
        .get(0)
}

#[dbos_testkit::test]
async fn calls_in_a_scope_use_the_runtime_launched_in_it(db: TestDatabase) {
    let (url_a, url_b) = (db.sibling_url("a"), db.sibling_url("b"));
    let both_launched = Arc::new(tokio::sync::Barrier::new(2));
    let run = |url: String, tag: &'static str| {
        let barrier = both_launched.clone();
        let config = db.config("testapp").system_database_url(url);
        Dbos::scope(async move {
            let dbos = Dbos::launch(config).await.unwrap();
            // Both runtimes are up: the process-wide "last launched" is one of them.
            barrier.wait().await;
            for _ in 0..5 {
                assert_eq!(tagged(tag.to_owned()).await.unwrap(), tag);
            }
            dbos
        })
    };
    let (a, b) = tokio::join!(run(url_a.clone(), "alpha"), run(url_b.clone(), "beta"));
    assert_eq!(count(&url_a, "alpha").await, 5);
    assert_eq!(count(&url_a, "beta").await, 0);
    assert_eq!(count(&url_b, "beta").await, 5);
    assert_eq!(count(&url_b, "alpha").await, 0);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

static ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// What a step saw: its workflow id, step id and attempt.
type Seen = (Option<String>, Option<i32>, Option<u32>);

#[step(max_attempts = 3, interval = "10ms")]
async fn introspect() -> Result<Seen, Error> {
    let seen = (
        dbos_core::workflow_id(),
        dbos_core::step_id(),
        dbos_core::step_attempt(),
    );
    if ATTEMPTS.fetch_add(1, Ordering::SeqCst) < 2 {
        return Err(Error::new(dbos_core::ErrorKind::Io, "try again"));
    }
    Ok(seen)
}

#[step]
async fn starts_a_workflow() -> Result<String, Error> {
    // No `.on(..)`: the enclosing workflow's runtime, not the process's last launched one.
    tagged("from-a-step".into()).await
}

#[workflow]
async fn looks_around() -> Result<(Seen, String), Error> {
    dbos_core::sleep(std::time::Duration::from_millis(1)).await?;
    let seen = introspect().await?;
    let started = starts_a_workflow().await?;
    Ok((seen, started))
}

#[dbos_testkit::test]
async fn a_step_knows_its_workflow_step_and_attempt_and_starts_work_on_its_runtime(
    db: TestDatabase,
) {
    let home = db.launch().await;
    // Launched last: the process-wide current runtime, on another database.
    let other_url = db.sibling_url("other");
    let other = Dbos::launch(db.config("testapp").system_database_url(other_url.clone()))
        .await
        .unwrap();
    let ((wf, step, attempt), started) = looks_around().id("curious").on(&home).await.unwrap();
    assert_eq!(wf.as_deref(), Some("curious"));
    assert_eq!(step, Some(2), "the sleep is step 1, the step is 2");
    assert_eq!(attempt, Some(3), "recorded on its third attempt");
    assert_eq!(started, "from-a-step");
    assert_eq!(count(&db.url(), "from-a-step").await, 1);
    assert_eq!(count(&other_url, "from-a-step").await, 0);
    // Outside any workflow or step there is nothing to know.
    assert_eq!(dbos_core::workflow_id(), None);
    assert_eq!(dbos_core::step_attempt(), None);
    other.shutdown().await.unwrap();
    home.shutdown().await.unwrap();
}

#[step]
async fn runtime_of_my_step() -> Result<String, Error> {
    Ok(Dbos::current()?.executor_id().to_owned())
}

#[workflow]
async fn runtime_of_me() -> Result<(String, String), Error> {
    let here = Dbos::current()?.executor_id().to_owned();
    Ok((here, runtime_of_my_step().await?))
}

/// Inside a workflow or a step, `Dbos::current()` is the runtime running it, whatever was
/// launched last in the process (a runtime on an isolated tokio runtime, as in crash tests,
/// sets no scope).
#[dbos_testkit::test]
async fn inside_a_workflow_the_current_runtime_is_the_one_running_it(db: TestDatabase) {
    let mine = Dbos::launch(db.config("testapp").executor_id("mine"))
        .await
        .unwrap();
    let other_url = db.sibling_url("other");
    let other = dbos_testkit::crash::IsolatedRuntime::new();
    let config = db
        .config("testapp")
        .system_database_url(other_url)
        .executor_id("other");
    // Launched last, outside this test's scope: the process-wide current runtime.
    let other_dbos = other
        .run(async move { Dbos::launch(config).await.unwrap() })
        .await;
    let (in_workflow, in_step) = runtime_of_me().on(&mine).await.unwrap();
    assert_eq!(in_workflow, "mine");
    assert_eq!(in_step, "mine");
    other
        .run(async move { other_dbos.shutdown().await.unwrap() })
        .await;
    mine.shutdown().await.unwrap();
}
