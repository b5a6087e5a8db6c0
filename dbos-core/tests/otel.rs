//! OpenTelemetry export (feature `opentelemetry`): the spans a run exports, and the trace
//! context a workflow keeps in its attributes (`dbos.otelContext`) so that its child, its
//! dequeue after a `Client` enqueue, and its recovery in another process after a SIGKILL
//! all join one trace. Spans of this process go to the SDK's in-memory exporter (one global
//! subscriber for the binary); a child process exports over OTLP/HTTP to a receiver in the
//! test that decodes the protobuf.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use dbos_core::otel::Telemetry;
use dbos_core::{step, workflow, Client, Config, Dbos, Error, ErrorKind, Queue};
use dbos_testkit::crash::ChildProcess;
use dbos_testkit::otlp::OtlpReceiver;
use dbos_testkit::TestDatabase;
use opentelemetry::trace::SpanId;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

/// The in-memory exporter behind this binary's global subscriber (installed once, before
/// the testkit's own, which then stays out).
fn exported() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let telemetry: &'static Telemetry = Box::leak(Box::new(Telemetry::with_exporter(
            exporter.clone(),
            "otel-tests",
        )));
        let subscriber = tracing_subscriber::registry()
            .with(telemetry.layer())
            .with(tracing_subscriber::filter::LevelFilter::INFO);
        tracing::subscriber::set_global_default(subscriber).expect("the first subscriber");
        exporter
    })
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

fn spans() -> Vec<SpanData> {
    exported().get_finished_spans().expect("the finished spans")
}

/// The spans named `name` whose `dbos.operation.<key>` is `value`.
fn find<'a>(all: &'a [SpanData], name: &str, key: &str, value: &str) -> Vec<&'a SpanData> {
    all.iter()
        .filter(|s| {
            s.name == name && attr(s, &format!("dbos.operation.{key}")).as_deref() == Some(value)
        })
        .collect()
}

fn one<'a>(found: Vec<&'a SpanData>, what: &str) -> &'a SpanData {
    assert_eq!(found.len(), 1, "exactly one {what}: {found:#?}");
    found[0]
}

fn trace_of(s: &SpanData) -> String {
    s.span_context.trace_id().to_string()
}

fn id_of(s: &SpanData) -> String {
    s.span_context.span_id().to_string()
}

/// The `traceparent` stored in workflow `id`'s attributes.
async fn stored_traceparent(db: &TestDatabase, id: &str) -> Option<String> {
    let row = db
        .connect()
        .await
        .query_one(
            "SELECT attributes -> 'dbos.otelContext' ->> 'traceparent' FROM dbos.workflow_status WHERE workflow_uuid = $1",
            &[&id],
        )
        .await
        .unwrap();
    row.get(0)
}

static FLAKY: AtomicU32 = AtomicU32::new(0);

/// Workflow ids started twice, and with a carrier given in the attributes.
const GIVEN_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const GIVEN_PARENT: &str = "00f067aa0ba902b7";

#[workflow]
async fn echo(x: u32) -> Result<u32, Error> {
    Ok(x)
}

#[step]
async fn plain(x: u32) -> Result<u32, Error> {
    Ok(x + 1)
}

/// Fails its first attempt.
#[step(max_attempts = 3, interval = "10ms")]
async fn flaky() -> Result<u32, Error> {
    if FLAKY.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(Error::new(ErrorKind::Io, "try again"));
    }
    Ok(10)
}

#[workflow]
async fn pinged(base: u32) -> Result<u32, Error> {
    let got: Option<u32> = dbos_core::recv("ping", Duration::from_secs(60)).await?;
    Ok(base + got.unwrap_or(0))
}

#[workflow]
async fn traced() -> Result<u32, Error> {
    let a = plain(1).await?;
    let b = flaky().await?;
    let child = pinged(a).id("otel-child").start().await?;
    dbos_core::send("otel-child", &b, "ping").await?;
    child.result().await
}

#[test]
fn a_workflows_step_retry_child_and_message_export_as_one_trace_tree() {
    exported();
    dbos_testkit::__private::run_test(
        "otel::a_workflows_step_retry_child_and_message_export_as_one_trace_tree",
        None,
        |db: TestDatabase| async move {
            let dbos = db.launch().await;
            assert_eq!(traced().id("otel-wf").on(&dbos).await.unwrap(), 12);
            assert_eq!(echo(1).id("otel-wf-again").on(&dbos).await.unwrap(), 1);
            assert_eq!(echo(1).id("otel-wf-again").on(&dbos).await.unwrap(), 1);
            let carrier = json!({"dbos.otelContext": {
                "traceparent": format!("00-{GIVEN_TRACE}-{GIVEN_PARENT}-01")
            }});
            let given = echo(2).id("otel-wf-given").attributes(carrier);
            assert_eq!(given.on(&dbos).await.unwrap(), 2);
            dbos.shutdown().await.unwrap();

            let all = spans();
            let wf = one(
                find(&all, "workflow", "workflow_id", "otel-wf"),
                "workflow span",
            );
            let trace = trace_of(wf);
            assert_eq!(attr(wf, "dbos.operation.type").as_deref(), Some("workflow"));
            assert_eq!(
                attr(wf, "dbos.workflow.recovered").as_deref(),
                Some("false")
            );

            // Started from outside any workflow and any span: no span of the start's own, the
            // execution's span a root, and the row stores its context (W3C, sampled).
            assert_eq!(wf.parent_span_id, SpanId::INVALID, "a root: {wf:#?}");
            let stored = stored_traceparent(&db, "otel-wf")
                .await
                .expect("a stored carrier");
            assert_eq!(stored, format!("00-{trace}-{}-01", id_of(wf)));
            // The second start of the same id found it recorded: its span (opened before the
            // row was written) holds the `exists` event and nothing else, in a trace of its
            // own; the row keeps the first start's context.
            let exists = |s: &SpanData| {
                s.events.iter().any(|e| {
                    e.attributes
                        .iter()
                        .any(|kv| kv.key.as_str() == "dbos.event" && kv.value.as_str() == "exists")
                })
            };
            let (again, first_again): (Vec<&SpanData>, Vec<&SpanData>) =
                find(&all, "workflow", "workflow_id", "otel-wf-again")
                    .into_iter()
                    .partition(|s| exists(s));
            let again = one(again, "the second start's span");
            let first_again = one(first_again, "the first start's execution span");
            assert!(!all
                .iter()
                .any(|s| s.parent_span_id == again.span_context.span_id()));
            assert_ne!(trace_of(again), trace_of(first_again));
            assert_eq!(
                stored_traceparent(&db, "otel-wf-again").await,
                Some(format!(
                    "00-{}-{}-01",
                    trace_of(first_again),
                    id_of(first_again)
                ))
            );
            // A carrier given in the attributes is joined by the first execution's span, and
            // kept in the row.
            let given = one(
                find(&all, "workflow", "workflow_id", "otel-wf-given"),
                "the span of the start with a carrier",
            );
            assert_eq!(trace_of(given), GIVEN_TRACE);
            assert_eq!(given.parent_span_id.to_string(), GIVEN_PARENT);
            assert!(given.parent_span_is_remote);
            assert_eq!(
                stored_traceparent(&db, "otel-wf-given").await,
                Some(format!("00-{GIVEN_TRACE}-{GIVEN_PARENT}-01"))
            );

            let in_wf = |s: &SpanData| trace_of(s) == trace;
            let plain = one(
                find(&all, "step", "name", "plain")
                    .into_iter()
                    .filter(|s| in_wf(s))
                    .collect(),
                "plain step",
            );
            assert!(in_wf(plain) && plain.parent_span_id == wf.span_context.span_id());
            let attempts: Vec<&SpanData> = find(&all, "step", "name", "flaky")
                .into_iter()
                .filter(|s| in_wf(s))
                .collect();
            assert_eq!(attempts.len(), 2, "two attempts: {attempts:#?}");
            for a in &attempts {
                assert_eq!(a.parent_span_id, wf.span_context.span_id());
            }
            let first = attempts
                .iter()
                .find(|a| attr(a, "dbos.step.attempt").as_deref() == Some("1"))
                .expect("attempt 1");
            // Numbers export as integers, not as their text.
            for key in ["dbos.step.attempt", "dbos.operation.step_id"] {
                assert!(
                    first.attributes.iter().any(|kv| kv.key.as_str() == key
                        && matches!(kv.value, opentelemetry::Value::I64(_))),
                    "{key} is an integer attribute: {:?}",
                    first.attributes
                );
            }
            // No attribute that every span would carry alike (the `tracing` target).
            assert_eq!(attr(first, "target"), None);
            assert!(
                first.events.iter().any(|e| e
                    .attributes
                    .iter()
                    .any(|kv| kv.key.as_str() == "dbos.event" && kv.value.as_str() == "retry")),
                "the retry is an event of the failed attempt: {first:#?}"
            );

            // The child: its start is an operation of the parent, its workflow span inside
            // it, its recv inside that: all one trace.
            let child_start = one(find(&all, "operation", "type", "child"), "child start");
            assert!(in_wf(child_start) && child_start.parent_span_id == wf.span_context.span_id());
            let child = one(
                find(&all, "workflow", "workflow_id", "otel-child"),
                "child span",
            );
            assert_eq!(trace_of(child), trace, "the child joins the parent's trace");
            assert_eq!(child.parent_span_id, child_start.span_context.span_id());
            assert_eq!(
                stored_traceparent(&db, "otel-child").await.as_deref(),
                Some(format!("00-{trace}-{}-01", id_of(child_start)).as_str()),
                "the child's row stores its start's context"
            );
            let recv = one(find(&all, "operation", "type", "recv"), "recv");
            assert_eq!(recv.parent_span_id, child.span_context.span_id());
            let send = one(find(&all, "operation", "type", "send"), "send");
            assert!(in_wf(send) && send.parent_span_id == wf.span_context.span_id());
        },
    );
}

/// The context `current_context()` gave inside `calls_out`.
static INSIDE_STEP: Mutex<Option<String>> = Mutex::new(None);

/// A step calling out in a span of its own, logging in its own span and in that one.
#[step]
async fn calls_out(order: u32) -> Result<u32, Error> {
    use opentelemetry::trace::TraceContextExt as _;
    let cx = dbos_core::otel::current_context();
    *INSIDE_STEP.lock().unwrap() = Some(cx.span().span_context().span_id().to_string());
    tracing::info!(order, "the step logs");
    let call = tracing::info_span!("bank_call");
    call.in_scope(|| tracing::info!("calling the bank"));
    Ok(order)
}

#[workflow]
async fn sectioned(order: u32) -> Result<u32, Error> {
    use tracing::Instrument as _;
    async move { calls_out(order).await }
        .instrument(tracing::info_span!("app_section"))
        .await
}

#[test]
fn application_spans_and_library_spans_nest_both_ways_in_one_tree() {
    exported();
    dbos_testkit::__private::run_test(
        "otel::application_spans_and_library_spans_nest_both_ways_in_one_tree",
        None,
        |db: TestDatabase| async move {
            let dbos = db.launch().await;
            assert_eq!(
                sectioned(7).id("otel-sectioned").on(&dbos).await.unwrap(),
                7
            );
            dbos.shutdown().await.unwrap();
            let all = spans();
            let wf = one(
                find(&all, "workflow", "workflow_id", "otel-sectioned"),
                "workflow span",
            );
            let trace = trace_of(wf);
            let in_wf = |s: &&SpanData| trace_of(s) == trace;
            // The spans named `name` in the workflow's trace.
            let named = |name: &str| -> Vec<&SpanData> {
                all.iter()
                    .filter(|s| s.name == name)
                    .filter(in_wf)
                    .collect()
            };
            let section = one(
                named("app_section"),
                "the application's span in the workflow",
            );
            // An application span inside a library span: its child.
            assert_eq!(section.parent_span_id, wf.span_context.span_id());
            // A library span inside an application span: its child.
            let step = one(
                find(&all, "step", "name", "calls_out")
                    .into_iter()
                    .filter(in_wf)
                    .collect(),
                "the step span",
            );
            assert_eq!(step.parent_span_id, section.span_context.span_id());
            // And an application span inside that step: the step's child.
            let call = one(named("bank_call"), "the application's span in the step");
            assert_eq!(call.parent_span_id, step.span_context.span_id());
            assert!(
                call.events.iter().any(|e| e.name == "calling the bank"),
                "the call's log line is its event: {call:#?}"
            );
            // The step's own log line is an event of the step span, with its fields.
            let logged = step
                .events
                .iter()
                .find(|e| e.name == "the step logs")
                .unwrap_or_else(|| panic!("the step's log line is its event: {step:#?}"));
            assert!(
                logged.attributes.iter().any(
                    |kv| kv.key.as_str() == "order" && kv.value == opentelemetry::Value::I64(7)
                ),
                "the log line's fields are its attributes: {logged:?}"
            );
            // Inside the step, `current_context` is the step span's.
            assert_eq!(
                INSIDE_STEP.lock().unwrap().clone(),
                Some(id_of(step)),
                "current_context() inside the step"
            );
        },
    );
}

static JOINED: Queue = Queue::new("otel-joined");

#[workflow]
async fn queued_job(x: u32) -> Result<u32, Error> {
    plain(x).await
}

#[test]
fn a_client_enqueue_and_a_foreign_carrier_are_joined_by_the_dequeued_workflow() {
    exported();
    dbos_testkit::__private::run_test(
        "otel::a_client_enqueue_and_a_foreign_carrier_are_joined_by_the_dequeued_workflow",
        None,
        |db: TestDatabase| async move {
            // Migrated; nobody serves the queue until the relaunch below.
            db.migrate().await;
            let client = Client::builder(db.url())
                .application_name("testapp")
                .connect()
                .await
                .unwrap();
            // The caller's own span: the enqueue is inside it.
            let request = tracing::info_span!("http_request");
            let request_cx = {
                use tracing_opentelemetry::OpenTelemetrySpanExt as _;
                request.context()
            };
            use opentelemetry::trace::TraceContextExt as _;
            let caller_trace = request_cx.span().span_context().trace_id().to_string();
            let caller_span = request_cx.span().span_context().span_id();
            {
                use tracing::Instrument as _;
                async {
                    client
                        .enqueue_workflow(queued_job(1).id("otel-client"), &JOINED)
                        .await
                        .unwrap();
                }
                .instrument(request.clone())
                .await;
            }
            drop(request);
            // A row as DBOS Python writes it under `PropagateOtelContext`: its carrier holds
            // the caller's traceparent (a trace of another process).
            let foreign_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
            let foreign_parent = "00f067aa0ba902b7";
            client
                .enqueue_workflow(queued_job(2).id("otel-python"), &JOINED)
                .attributes(serde_json::json!({
                    "tier": "gold",
                    "dbos.otelContext": {"traceparent": format!("00-{foreign_trace}-{foreign_parent}-01")}
                }))
                .await
                .unwrap();

            let dbos = Dbos::launch(db.config("testapp").queue(&JOINED))
                .await
                .unwrap();
            for id in ["otel-client", "otel-python"] {
                dbos.retrieve_workflow::<u32, Error>(id)
                    .result()
                    .await
                    .unwrap();
            }
            dbos.shutdown().await.unwrap();

            let all = spans();
            let enqueue = one(
                all.iter()
                    .filter(|s| s.name == "operation" && trace_of(s) == caller_trace)
                    .filter(|s| attr(s, "dbos.operation.type").as_deref() == Some("enqueue"))
                    .collect(),
                "the client's enqueue span",
            );
            assert_eq!(
                enqueue.parent_span_id, caller_span,
                "inside the caller's span"
            );
            let wf = one(
                find(&all, "workflow", "workflow_id", "otel-client"),
                "workflow span",
            );
            assert_eq!(
                trace_of(wf),
                caller_trace,
                "the dequeued workflow joins the caller's trace"
            );
            assert_eq!(wf.parent_span_id, enqueue.span_context.span_id());
            assert_eq!(attr(wf, "dbos.queue.name").as_deref(), Some("otel-joined"));

            let py = one(
                find(&all, "workflow", "workflow_id", "otel-python"),
                "workflow span",
            );
            assert_eq!(
                trace_of(py),
                foreign_trace,
                "the foreign carrier's trace is joined"
            );
            assert_eq!(py.parent_span_id.to_string(), foreign_parent);
            // The carrier written by the other side is kept, and the other attributes with it.
            let attrs = db
                .attributes_of("otel-python")
                .await
                .expect("the row's attributes");
            assert_eq!(attrs["tier"], "gold");
            assert_eq!(
                attrs["dbos.otelContext"]["traceparent"],
                format!("00-{foreign_trace}-{foreign_parent}-01")
            );
        },
    );
}

// ---- A workflow SIGKILLed in one process and recovered in another ----

/// Set in the child process: the system database URL.
const CHILD_URL: &str = "DBOS_OTEL_CHILD_URL";
const EXECUTOR: &str = "otel-crash-exec";
const CRASHED: &str = "otel-crashed";

/// In the child process: the second step's retry hangs until the process is killed.
static HANG: AtomicBool = AtomicBool::new(false);
static SECOND: AtomicU32 = AtomicU32::new(0);

#[step]
async fn crash_first() -> Result<u32, Error> {
    Ok(1)
}

/// In the child: its first attempt fails (so it ends, and is exported), the second hangs
/// (the process dies mid-step). Elsewhere it succeeds at once.
#[step(max_attempts = 3, interval = "10ms")]
async fn crash_second() -> Result<u32, Error> {
    if HANG.load(Ordering::SeqCst) {
        if SECOND.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(Error::new(ErrorKind::Io, "first attempt fails"));
        }
        std::future::pending::<()>().await;
    }
    Ok(2)
}

#[step]
async fn crash_third() -> Result<u32, Error> {
    Ok(3)
}

#[workflow]
async fn crashing() -> Result<u32, Error> {
    Ok(crash_first().await? + crash_second().await? + crash_third().await?)
}

fn executor_config(url: &str) -> Config {
    Config::new("testapp")
        .system_database_url(url)
        .pool_size(4)
        .executor_id(EXECUTOR)
}

/// The process that is killed: exports over OTLP/HTTP as the `OTEL_*` variables say,
/// starts the workflow, and runs until killed. Not a test of its own.
#[test]
#[ignore = "a process started by `a_workflow_killed_in_one_process_and_recovered_in_another_keeps_its_trace`"]
fn crashing_process() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    HANG.store(true, Ordering::SeqCst);
    let telemetry = Telemetry::from_env("unused")
        .expect("the OTEL_* variables")
        .expect("an endpoint is set");
    telemetry.init().expect("the global subscriber");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let dbos = Dbos::launch(executor_config(&url)).await.expect("launch");
        crashing()
            .id(CRASHED)
            .on(&dbos)
            .start()
            .await
            .expect("start");
        std::future::pending::<()>().await;
    });
}

#[test]
fn a_workflow_killed_in_one_process_and_recovered_in_another_keeps_its_trace() {
    exported();
    dbos_testkit::__private::run_test(
        "otel::a_workflow_killed_in_one_process_and_recovered_in_another_keeps_its_trace",
        None,
        |db: TestDatabase| async move {
            // Migrated before the child starts (it launches on the same database).
            db.migrate().await;
            let receiver = OtlpReceiver::start();
            let url = db.url();
            let endpoint = receiver.endpoint();
            let child = ChildProcess::spawn_test(
                "crashing_process",
                &[
                    (CHILD_URL, url.as_str()),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                    ("OTEL_SERVICE_NAME", "crashing-process"),
                    // Export each batch within 50 ms: the process dies without a flush.
                    ("OTEL_BSP_SCHEDULE_DELAY", "50"),
                    ("RUST_LOG", "info"),
                ],
            );
            // The first step done and the second's first attempt failed: exported, and the
            // second attempt is running (hanging) now.
            let (first, failed) = receiver
                .wait_for(
                    "the killed process's first step and failed attempt",
                    Duration::from_secs(60),
                    |s| {
                        let first = s.iter().find(|s| {
                            s.name == "step"
                                && s.attr("dbos.operation.name").ends_with("crash_first")
                        })?;
                        let failed = s.iter().find(|s| {
                            s.name == "step"
                                && s.attr("dbos.operation.name").ends_with("crash_second")
                        })?;
                        Some((first.clone(), failed.clone()))
                    },
                )
                .await;
            child.kill9().await;

            // Exported over OTLP/HTTP as protobuf: the resource, the fields as attributes.
            assert_eq!(first.service, "crashing-process");
            assert_eq!(first.attr("dbos.operation.type"), "step");
            assert_eq!(first.attr("dbos.operation.step_id"), "1");
            assert_eq!(failed.attr("dbos.step.attempt"), "1");
            assert_eq!(first.trace_id, failed.trace_id);
            assert_eq!(
                first.parent_span_id, failed.parent_span_id,
                "both in the workflow's span"
            );
            // The stored carrier is the context of the killed execution's span (never ended,
            // so never exported): the steps' parent, in that trace.
            let stored = stored_traceparent(&db, CRASHED)
                .await
                .expect("a stored carrier");
            let start_span = stored
                .strip_prefix(&format!("00-{}-", first.trace_id))
                .and_then(|rest| rest.strip_suffix("-01"))
                .unwrap_or_else(|| panic!("{stored}: not in the killed run's trace"))
                .to_owned();
            assert_eq!(
                start_span, first.parent_span_id,
                "the first execution's span"
            );

            // Another process (this one) recovers it at launch, with the same executor id.
            let dbos = Dbos::launch(executor_config(&url)).await.unwrap();
            let out = dbos
                .retrieve_workflow::<u32, Error>(CRASHED)
                .result()
                .await
                .unwrap();
            assert_eq!(out, 6);
            dbos.shutdown().await.unwrap();

            let all = spans();
            let recovered = one(
                find(&all, "workflow", "workflow_id", CRASHED),
                "recovered workflow span",
            );
            assert_eq!(
                attr(recovered, "dbos.workflow.recovered").as_deref(),
                Some("true")
            );
            assert_eq!(
                trace_of(recovered),
                first.trace_id,
                "the recovery continues the killed run's trace"
            );
            assert_eq!(
                recovered.parent_span_id.to_string(),
                start_span,
                "a child of the first execution's span, whose context the row stores"
            );
            for name in ["crash_second", "crash_third"] {
                let s = one(
                    all.iter()
                        .filter(|s| s.name == "step" && trace_of(s) == first.trace_id)
                        .filter(|s| {
                            attr(s, "dbos.operation.name").is_some_and(|n| n.ends_with(name))
                        })
                        .collect(),
                    name,
                );
                assert_eq!(s.parent_span_id, recovered.span_context.span_id());
            }
        },
    );
}
