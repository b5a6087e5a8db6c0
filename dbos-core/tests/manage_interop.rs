//! DBOS Python's CLI (`dbos==3.4.0`) operating our workflows: its `workflow cancel` stops our
//! execution before the next step, its `workflow resume` makes our executor continue without
//! re-running recorded steps, and its `workflow fork` runs on our executor without re-running
//! the copied steps.

use std::time::Duration;

use dbos_core::{step, workflow, Dbos, Error, Status};
use dbos_testkit::crash::eventually;
use dbos_testkit::python::dbos_cli;
use dbos_testkit::runs::{bump, runs as count};
use dbos_testkit::TestDatabase;
use serde_json::Value;

#[step]
async fn step_a(key: String) -> Result<u32, Error> {
    bump(&format!("{key}/a"));
    Ok(1)
}

#[step]
async fn step_b(key: String, ms: u64) -> Result<u32, Error> {
    bump(&format!("{key}/b-started"));
    tokio::time::sleep(Duration::from_millis(ms)).await;
    bump(&format!("{key}/b-finished"));
    Ok(2)
}

#[step]
async fn step_c(key: String) -> Result<u32, Error> {
    bump(&format!("{key}/c"));
    Ok(3)
}

#[workflow]
async fn abc(key: String, ms: u64) -> Result<u32, Error> {
    let a = step_a(key.clone()).await?;
    let b = step_b(key.clone(), ms).await?;
    let c = step_c(key).await?;
    Ok(a + b + c)
}

async fn cli(args: &[&str]) -> String {
    let out = dbos_cli(args).await;
    assert!(
        out.status.success(),
        "dbos {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[dbos_testkit::test]
async fn the_dbos_python_cli_cancels_resumes_and_forks_our_workflows(db: TestDatabase) {
    let dbos = Dbos::launch(
        db.config("testapp")
            .cancel_poll_interval(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let url = db.url();
    abc("py".into(), 4_000)
        .id("py-abc")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("step b to start", Duration::from_secs(10), || async {
        (count("py/b-started") == 1).then_some(())
    })
    .await;

    // Cancelled by DBOS's CLI: our execution stops before its next step.
    cli(&["workflow", "cancel", "py-abc", "-s", &url]).await;
    eventually("our execution to stop", Duration::from_secs(10), || async {
        (dbos.running_workflows() == 0).then_some(())
    })
    .await;
    eventually("step b to finish", Duration::from_secs(10), || async {
        (count("py/b-finished") == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count("py/c"), 0, "no step starts after the cancel");
    assert_eq!(
        dbos.get_workflow("py-abc").await.unwrap().status,
        Status::Cancelled
    );

    // Resumed by DBOS's CLI: our executor dequeues it and replays step a.
    cli(&["workflow", "resume", "py-abc", "-s", &url]).await;
    let out = dbos
        .retrieve_workflow::<u32, Error>("py-abc")
        .result()
        .await
        .unwrap();
    assert_eq!(out, 6);
    assert_eq!(
        (count("py/a"), count("py/b-started"), count("py/c")),
        (1, 2, 1),
        "the recorded step was not run again; the unrecorded one was"
    );

    // Forked by DBOS's CLI from step 3: the copied steps a and b do not run again.
    let printed = cli(&[
        "workflow", "fork", "py-abc", "--step", "3", "-f", "py-fork", "-s", &url,
    ])
    .await;
    let status: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(status["workflow_id"], "py-fork");
    assert_eq!(status["forked_from"], "py-abc");
    let out = dbos
        .retrieve_workflow::<u32, Error>("py-fork")
        .result()
        .await
        .unwrap();
    assert_eq!(out, 6);
    assert_eq!(
        (count("py/a"), count("py/b-started"), count("py/c")),
        (1, 2, 2)
    );
    let steps = dbos.list_workflow_steps("py-fork").await.unwrap();
    assert_eq!(
        steps
            .iter()
            .map(|s| s.function_name.as_str())
            .collect::<Vec<_>>(),
        vec!["step_a", "step_b", "step_c"]
    );

    // A fork from step 1 (DBOS's default) runs everything again.
    let printed = cli(&["workflow", "fork", "py-abc", "-f", "py-restart", "-s", &url]).await;
    let status: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(status["workflow_id"], "py-restart");
    dbos.retrieve_workflow::<u32, Error>("py-restart")
        .result()
        .await
        .unwrap();
    assert_eq!(
        (count("py/a"), count("py/b-started"), count("py/c")),
        (2, 3, 3)
    );
    dbos.shutdown().await.unwrap();
}
