//! Tracing spans: a workflow's execution, its step attempts, a child start and its messages
//! are spans nested as they run (across the tokio tasks that run them), with DBOS's
//! attribute names in semantic-convention form, and retries, replays and recoveries are
//! events inside them. A small `tracing_subscriber::Layer` records what a subscriber sees.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use dbos_core::manage::ForkOptions;
use dbos_core::{step, transaction, workflow, Error, ErrorKind, Transaction};
use dbos_testkit::TestDatabase;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// One span as the subscriber saw it.
#[derive(Debug, Clone)]
struct SpanRec {
    name: &'static str,
    parent: Option<usize>,
    fields: BTreeMap<String, String>,
}

/// One event: its fields (the message under `message`) and the span it happened in.
#[derive(Debug, Clone)]
struct EventRec {
    span: Option<usize>,
    fields: BTreeMap<String, String>,
}

#[derive(Default, Clone)]
struct Seen {
    spans: Vec<SpanRec>,
    events: Vec<EventRec>,
}

/// A span's index in `Seen::spans` (span ids are reused once closed; indices are not).
struct Index(usize);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

struct Recorder(&'static Mutex<Seen>);

fn index_of<S: Subscriber + for<'a> LookupSpan<'a>>(
    ctx: &Context<'_, S>,
    id: &Id,
) -> Option<usize> {
    ctx.span(id)?.extensions().get::<Index>().map(|i| i.0)
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let parent = ctx.span_scope(id).and_then(|mut scope| {
            scope.next();
            scope
                .next()
                .and_then(|p| p.extensions().get::<Index>().map(|i| i.0))
        });
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut seen = self.0.lock().unwrap();
        seen.spans.push(SpanRec {
            name: attrs.metadata().name(),
            parent,
            fields,
        });
        let n = seen.spans.len() - 1;
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Index(n));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(n) = index_of(&ctx, id) {
            let mut seen = self.0.lock().unwrap();
            values.record(&mut Fields(&mut seen.spans[n].fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let span = ctx
            .event_span(event)
            .and_then(|s| s.extensions().get::<Index>().map(|i| i.0));
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0
            .lock()
            .unwrap()
            .events
            .push(EventRec { span, fields });
    }
}

/// Installs the recorder as the process's subscriber (before the testkit's, which then
/// stays out) and returns what it saw.
fn recorder() -> &'static Mutex<Seen> {
    static SEEN: OnceLock<&'static Mutex<Seen>> = OnceLock::new();
    SEEN.get_or_init(|| {
        let seen: &'static Mutex<Seen> = Box::leak(Box::default());
        let subscriber = tracing_subscriber::registry()
            .with(Recorder(seen))
            .with(tracing_subscriber::filter::LevelFilter::DEBUG);
        tracing::subscriber::set_global_default(subscriber).expect("the first subscriber");
        seen
    })
}

static FLAKY: AtomicU32 = AtomicU32::new(0);

#[step]
async fn plain(x: u32) -> Result<u32, Error> {
    tracing::info!("a log line in a step");
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

/// Reads one row in the system database's own transaction.
#[transaction]
async fn touch(tx: &Transaction<'_>) -> Result<i32, Error> {
    tracing::info!("a log line in a transaction");
    let row = tx
        .query_one("SELECT 5", &[])
        .await
        .map_err(|e| Error::new(ErrorKind::Database, e.to_string()))?;
    Ok(row.get(0))
}

#[workflow]
async fn pinged(base: u32) -> Result<u32, Error> {
    let got: Option<u32> = dbos_core::recv("ping", Duration::from_secs(60)).await?;
    Ok(base + got.unwrap_or(0))
}

#[workflow]
async fn traced() -> Result<u32, Error> {
    tracing::info!("a log line in the workflow");
    let a = plain(1).await?;
    let b = flaky().await?;
    let five = touch().await?;
    let child = pinged(a).id("spans-child").start().await?;
    dbos_core::send("spans-child", &b, "ping").await?;
    dbos_core::set_event("progress", &"sent").await?;
    dbos_core::write_stream("log", &"sent").await?;
    Ok(child.result().await? + five.unsigned_abs())
}

fn field<'a>(fields: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    fields.get(name).map(String::as_str)
}

/// The spans named `name` whose `dbos.operation.<key>` is `value`, by index.
fn find(seen: &Seen, name: &str, key: &str, value: &str) -> Vec<usize> {
    (0..seen.spans.len())
        .filter(|&i| {
            seen.spans[i].name == name
                && field(&seen.spans[i].fields, &format!("dbos.operation.{key}")) == Some(value)
        })
        .collect()
}

fn one(found: Vec<usize>, what: &str) -> usize {
    assert_eq!(found.len(), 1, "exactly one {what}: {found:?}");
    found[0]
}

#[test]
fn a_workflows_steps_child_and_messages_are_spans_nested_as_they_run() {
    let seen = recorder();
    dbos_testkit::__private::run_test(
        "spans::a_workflows_steps_child_and_messages_are_spans_nested_as_they_run",
        None,
        |db: TestDatabase| async move {
            let dbos = db.launch().await;
            assert_eq!(traced().id("spans-wf").on(&dbos).await.unwrap(), 17);

            let s = seen.lock().unwrap().clone();
            let id = "dbos.operation.workflow_id";
            let wf = one(
                find(&s, "workflow", "workflow_id", "spans-wf"),
                "workflow span",
            );
            let w = &s.spans[wf];
            // Started from outside any workflow and any span: the start opens no span of its
            // own, so the first execution's span is a root.
            assert_eq!(w.parent, None, "{w:?}");
            assert_eq!(field(&w.fields, id), Some("spans-wf"));
            assert_eq!(field(&w.fields, "dbos.operation.type"), Some("workflow"));
            assert!(
                field(&w.fields, "dbos.operation.name").is_some_and(|n| n.ends_with("traced")),
                "{w:?}"
            );
            assert_eq!(field(&w.fields, "dbos.workflow.recovered"), Some("false"));
            assert!(field(&w.fields, "dbos.executor.id").is_some(), "{w:?}");
            assert!(
                field(&w.fields, "dbos.application.version").is_some(),
                "{w:?}"
            );
            assert_eq!(
                field(&w.fields, "dbos.queue.name"),
                None,
                "not from a queue"
            );

            // The user's log line carries the workflow (it is inside the workflow's span).
            let log = s
                .events
                .iter()
                .find(|e| field(&e.fields, "message") == Some("a log line in the workflow"))
                .expect("the workflow's log line");
            assert_eq!(log.span, Some(wf));

            // Step attempts: children of the workflow's span, one span per attempt.
            let plain_span = one(find(&s, "step", "name", "plain"), "`plain` step span");
            assert_eq!(s.spans[plain_span].parent, Some(wf));
            assert_eq!(
                field(&s.spans[plain_span].fields, "dbos.operation.step_id"),
                Some("1")
            );
            assert_eq!(
                field(&s.spans[plain_span].fields, "dbos.step.attempt"),
                Some("1")
            );
            let in_step = s
                .events
                .iter()
                .find(|e| field(&e.fields, "message") == Some("a log line in a step"))
                .expect("the step's log line");
            assert_eq!(in_step.span, Some(plain_span));

            let flaky_spans = find(&s, "step", "name", "flaky");
            assert_eq!(flaky_spans.len(), 2, "two attempts, two spans");
            let attempts: Vec<_> = flaky_spans
                .iter()
                .map(|&i| {
                    assert_eq!(s.spans[i].parent, Some(wf));
                    field(&s.spans[i].fields, "dbos.step.attempt").unwrap_or("")
                })
                .collect();
            assert_eq!(attempts, ["1", "2"]);
            let retries: Vec<_> = s
                .events
                .iter()
                .filter(|e| field(&e.fields, "dbos.event") == Some("retry"))
                .filter(|e| e.span.is_some_and(|i| flaky_spans.contains(&i)))
                .collect();
            assert_eq!(retries.len(), 1, "one retry event");
            assert_eq!(
                retries[0].span,
                Some(flaky_spans[0]),
                "in the attempt that failed"
            );

            // A transaction: a span of the workflow, with the step id it took and the body's
            // log line inside it.
            let tx = one(find(&s, "transaction", "name", "touch"), "transaction span");
            assert_eq!(s.spans[tx].parent, Some(wf));
            assert_eq!(
                field(&s.spans[tx].fields, "dbos.operation.step_id"),
                Some("3")
            );
            let in_tx = s
                .events
                .iter()
                .find(|e| field(&e.fields, "message") == Some("a log line in a transaction"))
                .expect("the transaction's log line");
            assert_eq!(in_tx.span, Some(tx));

            // The child start is an operation of the parent; the child's workflow span is in it.
            let start = one(find(&s, "operation", "type", "child"), "child start span");
            assert_eq!(s.spans[start].parent, Some(wf));
            let child = one(
                find(&s, "workflow", "workflow_id", "spans-child"),
                "child's workflow span",
            );
            assert_eq!(
                s.spans[child].parent,
                Some(start),
                "the child's span is inside its start"
            );

            // send in the parent, recv in the child, each with the step id it took.
            let send = one(find(&s, "operation", "type", "send"), "send span");
            assert_eq!(s.spans[send].parent, Some(wf));
            assert_eq!(
                field(&s.spans[send].fields, "dbos.operation.name"),
                Some("DBOS.send")
            );
            assert!(
                field(&s.spans[send].fields, "dbos.operation.step_id").is_some(),
                "{:?}",
                s.spans[send]
            );
            let recv = one(find(&s, "operation", "type", "recv"), "recv span");
            assert_eq!(s.spans[recv].parent, Some(child));
            assert_eq!(
                field(&s.spans[recv].fields, "dbos.operation.step_id"),
                Some("1")
            );
            for (op, name) in [
                ("set_event", "DBOS.setEvent"),
                ("stream", "DBOS.writeStream"),
            ] {
                let span = one(find(&s, "operation", "type", op), op);
                assert_eq!(s.spans[span].parent, Some(wf), "{op}");
                assert!(
                    field(&s.spans[span].fields, "dbos.operation.name")
                        .is_some_and(|n| n.eq_ignore_ascii_case(name)),
                    "{:?}",
                    s.spans[span]
                );
            }
            // Its recorded deadline is a `sleep` operation inside it, at the next step id.
            let deadline = s
                .spans
                .iter()
                .position(|sp| {
                    sp.parent == Some(recv)
                        && field(&sp.fields, "dbos.operation.type") == Some("sleep")
                })
                .expect("the recv's deadline");
            assert_eq!(
                field(&s.spans[deadline].fields, "dbos.operation.step_id"),
                Some("2")
            );

            // A fork from step 3 re-executes from the recorded history: recovered, from the
            // internal queue, with steps 1 and 2 replayed (events, no attempt spans).
            let fork = dbos
                .fork_workflow("spans-wf", 3, &ForkOptions::new().workflow_id("spans-fork"))
                .await
                .unwrap();
            assert_eq!(fork.typed::<u32, Error>().result().await.unwrap(), 17);
            let s = seen.lock().unwrap().clone();
            let forked = one(
                find(&s, "workflow", "workflow_id", "spans-fork"),
                "forked workflow span",
            );
            assert_eq!(
                field(&s.spans[forked].fields, "dbos.workflow.recovered"),
                Some("true")
            );
            assert!(
                field(&s.spans[forked].fields, "dbos.queue.name").is_some(),
                "{:?}",
                s.spans[forked]
            );
            let in_fork = |e: &&EventRec| e.span == Some(forked);
            let replayed: Vec<_> = s
                .events
                .iter()
                .filter(in_fork)
                .filter(|e| field(&e.fields, "dbos.event") == Some("replay"))
                .map(|e| {
                    field(&e.fields, "dbos.operation.name")
                        .unwrap_or("")
                        .to_owned()
                })
                .collect();
            assert_eq!(replayed.len(), 2, "{replayed:?}");
            assert!(
                replayed[0].ends_with("plain") && replayed[1].ends_with("flaky"),
                "{replayed:?}"
            );
            assert!(
                s.events
                    .iter()
                    .filter(in_fork)
                    .any(|e| field(&e.fields, "dbos.event") == Some("recovery")),
                "a recovery event"
            );
            assert!(
                !s.spans
                    .iter()
                    .any(|sp| sp.parent == Some(forked) && sp.name == "step"),
                "replayed steps run no attempt"
            );
            dbos.shutdown().await.unwrap();
        },
    );
}
