//! `Telemetry::store_trace_context(false)`: starts store no trace carrier in the workflow's
//! row, so an execution after the first (here a dequeue after an enqueue) starts a trace of
//! its own; a carrier given in the attributes is still joined; turned back on, the next
//! start stores its carrier again. Its own test binary: the switch is on the one global
//! subscriber's `Telemetry`, which the tests of `otel.rs` need left on.

use std::sync::OnceLock;

use dbos_core::otel::Telemetry;
use dbos_core::{step, workflow, Client, Dbos, Error, Queue};
use dbos_testkit::TestDatabase;
use opentelemetry::trace::{SpanId, TraceContextExt as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// The global subscriber's telemetry and its in-memory exporter (installed once, before the
/// testkit's own subscriber, which then stays out).
fn telemetry() -> &'static (Telemetry, InMemorySpanExporter) {
    static TELEMETRY: OnceLock<(Telemetry, InMemorySpanExporter)> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let telemetry = Telemetry::with_exporter(exporter.clone(), "uncarried-tests");
        let subscriber = tracing_subscriber::registry()
            .with(telemetry.layer())
            .with(tracing_subscriber::filter::LevelFilter::INFO);
        tracing::subscriber::set_global_default(subscriber).expect("the first subscriber");
        (telemetry, exporter)
    })
}

static LATER: Queue = Queue::new("uncarried");

#[step]
async fn add_one(x: u32) -> Result<u32, Error> {
    Ok(x + 1)
}

#[workflow]
async fn job(x: u32) -> Result<u32, Error> {
    add_one(x).await
}

/// The one `workflow` span of workflow `id`.
fn workflow_span(all: &[SpanData], id: &str) -> SpanData {
    let found: Vec<&SpanData> = all
        .iter()
        .filter(|s| {
            s.name == "workflow"
                && s.attributes.iter().any(|kv| {
                    kv.key.as_str() == "dbos.operation.workflow_id" && kv.value.as_str() == id
                })
        })
        .collect();
    assert_eq!(found.len(), 1, "one workflow span of {id}: {found:#?}");
    found[0].clone()
}

#[test]
fn without_a_stored_carrier_a_dequeued_workflow_starts_its_own_trace() {
    let (telemetry, exporter) = telemetry();
    dbos_testkit::__private::run_test(
        "otel_uncarried::without_a_stored_carrier_a_dequeued_workflow_starts_its_own_trace",
        None,
        |db: TestDatabase| async move {
            // Migrated; nobody serves the queue until the relaunch below.
            db.migrate().await;
            let client = Client::builder(db.url())
                .application_name("testapp")
                .connect()
                .await
                .unwrap();
            let request = tracing::info_span!("http_request");
            let caller = request.context().span().span_context().clone();
            let enqueue = |id: &'static str, store: bool| {
                let client = &client;
                async move {
                    telemetry.store_trace_context(store);
                    client
                        .enqueue_workflow(job(1).id(id), &LATER)
                        .await
                        .unwrap();
                }
            };
            enqueue("uncarried", false)
                .instrument(request.clone())
                .await;
            enqueue("carried", true).instrument(request.clone()).await;
            // A carrier given by the caller (or written by DBOS Python) is joined all the same.
            telemetry.store_trace_context(false);
            let given_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
            let given = serde_json::json!({
                "dbos.otelContext": {"traceparent": format!("00-{given_trace}-00f067aa0ba902b7-01")}
            });
            client
                .enqueue_workflow(job(2).id("given"), &LATER)
                .attributes(given.clone())
                .await
                .unwrap();
            drop(request);

            let dbos = Dbos::launch(db.config("testapp").queue(&LATER))
                .await
                .unwrap();
            for id in ["uncarried", "carried", "given"] {
                dbos.retrieve_workflow::<u32, Error>(id)
                    .result()
                    .await
                    .unwrap();
            }
            dbos.shutdown().await.unwrap();
            telemetry.flush().unwrap();
            let all = exporter.get_finished_spans().unwrap();

            assert_eq!(db.attributes_of("uncarried").await, None, "nothing stored");
            let uncarried = workflow_span(&all, "uncarried");
            assert_ne!(
                uncarried.span_context.trace_id(),
                caller.trace_id(),
                "the dequeued execution is a trace of its own"
            );
            assert_eq!(uncarried.parent_span_id, SpanId::INVALID, "a root");

            let stored = db.attributes_of("carried").await.expect("a carrier stored");
            let carried = workflow_span(&all, "carried");
            assert_eq!(carried.span_context.trace_id(), caller.trace_id());
            assert_eq!(
                stored["dbos.otelContext"]["traceparent"]
                    .as_str()
                    .map(|t| t.split('-').nth(1) == Some(&caller.trace_id().to_string())),
                Some(true),
                "the stored carrier is in the caller's trace: {stored}"
            );

            assert_eq!(
                db.attributes_of("given").await,
                Some(given),
                "kept as given"
            );
            assert_eq!(
                workflow_span(&all, "given")
                    .span_context
                    .trace_id()
                    .to_string(),
                given_trace
            );
        },
    );
}
