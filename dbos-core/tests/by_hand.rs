//! Everything the macros do is public API: a workflow and its steps written by hand run,
//! record and replay like macro-made ones.

use std::sync::atomic::{AtomicU32, Ordering};

use dbos_core::workflow::registry::{erase, inventory, Args, WorkflowDef, WorkflowRegistration};
use dbos_core::{Error, ErrorKind, StepOptions, WorkflowCall};
use dbos_testkit::TestDatabase;

static SHOUTS: AtomicU32 = AtomicU32::new(0);
static FLAKY: AtomicU32 = AtomicU32::new(0);

fn retry_io_only(e: &Error) -> bool {
    e.kind() == ErrorKind::Io
}

async fn greet_body(name: String) -> Result<String, Error> {
    let loud: String = dbos_core::run_step("shout", StepOptions::DEFAULT, || {
        let name = name.clone();
        async move {
            SHOUTS.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(name.to_uppercase())
        }
    })
    .await?;
    let options = StepOptions {
        max_attempts: 5,
        interval: std::time::Duration::from_millis(5),
        ..StepOptions::DEFAULT
    };
    // Retried while the error is an I/O error; a config error stops the retries at once.
    let n = FLAKY.load(Ordering::SeqCst);
    let tries: u32 = dbos_core::run_step_retry_if("flaky", options, retry_io_only, || async {
        match FLAKY.fetch_add(1, Ordering::SeqCst) {
            k if k < n + 2 => Err(Error::new(ErrorKind::Io, "flaky")),
            k => Ok(k - n + 1),
        }
    })
    .await?;
    let refused = dbos_core::run_step_retry_if("refused", options, retry_io_only, || async {
        Err::<(), _>(Error::new(ErrorKind::Config, "never retried"))
    })
    .await
    .unwrap_err();
    Ok(format!(
        "hello, {loud} after {tries} tries; {:?}",
        refused.kind()
    ))
}

static GREET: WorkflowDef = WorkflowDef {
    name: "greet_by_hand",
    file: file!(),
    line: line!(),
    source_hash: "greet-v1",
    max_recovery_attempts: 100,
    required_roles: &[],
    invoke: |args: Args| {
        Box::pin(async move {
            let name: String = args.decode(0, "name")?;
            erase::<String, Error>(greet_body(name).await)
        })
    },
};
inventory::submit! { WorkflowRegistration(&GREET) }

fn greet(name: String) -> WorkflowCall<String, Error> {
    WorkflowCall::new(&GREET, vec![dbos_core::codec::to_value(&name)])
}

#[dbos_testkit::test]
async fn a_workflow_written_without_macros_runs_records_and_replays(db: TestDatabase) {
    let dbos = db.launch().await;
    let out = greet("ada".into()).id("by-hand").await.unwrap();
    assert_eq!(out, "hello, ADA after 3 tries; Config");
    // Same id: the recorded outcome, no step runs again.
    assert_eq!(greet("ada".into()).id("by-hand").await.unwrap(), out);
    assert_eq!(SHOUTS.load(Ordering::SeqCst), 1);
    // Started by name too (recovery finds it the same way).
    let by_name = dbos
        .start_workflow_by_name("greet_by_hand", vec!["bob".into()], None)
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert!(by_name.as_str().unwrap().starts_with("hello, BOB"));
    let steps: Vec<(String, bool)> = db
        .steps_of("by-hand")
        .await
        .into_iter()
        .map(|s| (s.function_name, s.error.is_some()))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("shout".to_owned(), false),
            ("flaky".to_owned(), false),
            ("refused".to_owned(), true)
        ]
    );
    dbos.shutdown().await.unwrap();
}
