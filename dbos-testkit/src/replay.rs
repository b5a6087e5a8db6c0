//! Time travel in tests: replay a recorded workflow execution with the test binary's code.

use dbos_core::manage::{ForkOptions, ListWorkflows};
use dbos_core::replay::{Replay, ReplayReport, Replayer};

/// Replays workflow `workflow_id` recorded in the system database at `url` with this
/// binary's workflows, read-only: every durable operation returns its recorded result, no
/// step body runs, nothing is written. Run it in a test under a debugger and a breakpoint in
/// the workflow body stops with the recorded values. `println!("{replay}")` prints the
/// trace.
///
/// ```no_run
/// # async fn demo(url: &str) {
/// let replay = dbos_testkit::replay(url, "order-42").await.unwrap();
/// println!("{replay}");
/// assert!(replay.divergence().is_none(), "{replay}");
/// # }
/// # let _ = demo;
/// ```
///
/// # Errors
/// As [`Replayer::connect`] and [`Replayer::replay`].
pub async fn replay(url: &str, workflow_id: &str) -> dbos_core::Result<Replay> {
    Replayer::connect(url).await?.replay(workflow_id).await
}

/// Replays every workflow `which` selects (see [`Replayer::check`]): what a CI job runs to
/// learn whether a build still replays the recorded histories.
///
/// # Errors
/// As [`Replayer::connect`] and [`Replayer::check`].
pub async fn replay_check(url: &str, which: &ListWorkflows) -> dbos_core::Result<ReplayReport> {
    Replayer::connect(url).await?.check(which).await
}

/// Forks workflow `workflow_id` at step `start_step` under the id `new_id` on `dbos`, and
/// waits for the fork's result: the operations before `start_step` replay from the
/// original's records with this binary's code, which is how a test runs a recorded history
/// under changed code.
///
/// ```no_run
/// # async fn demo(dbos: dbos_core::Dbos) {
/// let again = dbos_testkit::fork_and_wait(&dbos, "order-42", 3, "order-42-again").await;
/// assert_eq!(again.unwrap(), serde_json::json!("shipped"));
/// # }
/// # let _ = demo;
/// ```
///
/// # Panics
/// When the fork cannot be made (no such workflow or step, `new_id` taken).
pub async fn fork_and_wait(
    dbos: &dbos_core::Dbos,
    workflow_id: &str,
    start_step: u32,
    new_id: &str,
) -> dbos_core::Result<serde_json::Value> {
    dbos.fork_workflow(
        workflow_id,
        start_step,
        &ForkOptions::new().workflow_id(new_id),
    )
    .await
    .unwrap_or_else(|e| panic!("dbos-testkit: forking `{workflow_id}` at step {start_step}: {e}"))
    .result()
    .await
}
