//! The checkout example exporting its trace: run with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing
//! at an OTLP/HTTP receiver (in the test, decoding the protobuf), killed (SIGKILL) in its
//! third step and run again. The receiver holds one trace: the second run's workflow span and
//! the spans of all four steps, two from each run.

use std::process::Stdio;
use std::time::Duration;

use dbos_testkit::otlp::{OtlpReceiver, ReceivedSpan};
use dbos_testkit::TestDatabase;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn checkout(db: &TestDatabase, receiver: &OtlpReceiver) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_checkout"));
    cmd.env("DBOS_SYSTEM_DATABASE_URL", db.url())
        .env("SHOP_DATABASE_URL", db.sibling_url("shop"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd
}

/// The spans of operation `name` (a step or transaction) received, in arrival order.
fn operations<'a>(spans: &'a [ReceivedSpan], kind: &str, name: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.name == kind && s.attr("dbos.operation.name").ends_with(name))
        .collect()
}

/// The first span of operation `name`, if one was received.
fn operation<'a>(spans: &'a [ReceivedSpan], kind: &str, name: &str) -> Option<&'a ReceivedSpan> {
    operations(spans, kind, name).into_iter().next()
}

#[dbos_testkit::test]
async fn a_checkout_killed_in_its_third_step_and_run_again_is_one_trace(db: TestDatabase) {
    let receiver = OtlpReceiver::start();

    // First run: killed while the third step (recording the payment) runs, after the
    // spans of the first two were exported (the examples send a batch every half second).
    let mut child = checkout(&db, &receiver).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("no output")
            .unwrap()
            .expect("checkout exited before its third step");
        if line.contains("[3/4]") {
            break;
        }
    }
    receiver
        .wait_for("the first two steps' spans", Duration::from_secs(30), |s| {
            operation(s, "transaction", "reserve_inventory")?;
            operation(s, "step", "charge_card").map(|_| ())
        })
        .await;
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "killed");
    let recorded: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'order-1001'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 2, "killed in the third step");

    // Second run: recovers and finishes; ending, it sends the rest.
    let out = tokio::time::timeout(Duration::from_secs(60), checkout(&db, &receiver).output())
        .await
        .expect("checkout hung")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("was interrupted") && stdout.contains("done:"),
        "{stdout}"
    );

    let spans = receiver
        .wait_for("the second run's spans", Duration::from_secs(30), |s| {
            let wf = s.iter().find(|s| {
                // The recovered execution's (the second run's own `.start()` found the order
                // recorded: its span, in a trace of its own, holds only an `exists` event).
                s.name == "workflow"
                    && s.attr("dbos.operation.workflow_id") == "order-1001"
                    && s.attr("dbos.workflow.recovered") == "true"
            })?;
            operation(s, "transaction", "record_payment")?;
            operation(s, "step", "email_receipt")?;
            Some((wf.clone(), s.to_vec()))
        })
        .await;
    let (wf, all) = spans;
    assert_eq!(wf.attr("dbos.workflow.recovered"), "true");
    assert_eq!(wf.service, "checkout", "the example's name is the service");
    // The first run's two steps are in its (never exported) workflow span; the second
    // run's two in the recovered one, with the replayed transaction's span (a transaction's
    // span covers the look-up of its recorded result). One trace.
    let first_run = operations(&all, "step", "charge_card")[0]
        .parent_span_id
        .clone();
    assert_ne!(first_run, wf.span_id);
    assert_eq!(
        wf.parent_span_id, first_run,
        "the recovered execution is a child of the first, whose context the row stores"
    );
    for (kind, name, parents) in [
        (
            "transaction",
            "reserve_inventory",
            vec![first_run.as_str(), wf.span_id.as_str()],
        ),
        ("step", "charge_card", vec![first_run.as_str()]),
        ("transaction", "record_payment", vec![wf.span_id.as_str()]),
        ("step", "email_receipt", vec![wf.span_id.as_str()]),
    ] {
        let found = operations(&all, kind, name);
        let got: Vec<&str> = found.iter().map(|s| s.parent_span_id.as_str()).collect();
        assert_eq!(got, parents, "the `{name}` spans' parents");
        for s in found {
            assert_eq!(s.trace_id, wf.trace_id, "one trace: {s:#?}");
        }
    }
    let stored: String = db
        .connect()
        .await
        .query_one(
            "SELECT attributes -> 'dbos.otelContext' ->> 'traceparent' FROM dbos.workflow_status \
             WHERE workflow_uuid = 'order-1001'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored,
        format!("00-{}-{}-01", wf.trace_id, wf.parent_span_id)
    );
}
