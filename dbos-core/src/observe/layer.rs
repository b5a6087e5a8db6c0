//! The `tracing` layer behind [`Telemetry::layer`](super::otel::Telemetry::layer): this
//! library's own spans (the `workflow`, `step`, `transaction` and `operation` spans opened in
//! [`observe`](super)) are recorded here, straight into the SDK's `SpanData` handed to the
//! span processor when they close; every other span and event goes to `tracing-opentelemetry`
//! as before.
//!
//! Why: `tracing-opentelemetry` gives every span a span builder behind an `Arc<Mutex<_>>`,
//! starts an SDK span for it (a sampler call, another mutex, the span data built again when it
//! ends), and reads the clock and takes that lock at every exit, that is at every poll of a
//! workflow's future. For the four spans of a three-step workflow that was most of what the
//! exporter cost (the Observability chapter, "Cost"). Here a span is one value in the span's
//! extensions: its ids, start time, attributes and events, moved into the span data at close.
//!
//! The two halves still form one trace tree:
//! - a library span opened inside a span of the application takes that span's context
//!   (asked of `tracing-opentelemetry`);
//! - a span of the application opened inside a library span is handed to
//!   `tracing-opentelemetry` with the library span's context as the current OpenTelemetry
//!   context, which is where it looks for a parent when the `tracing` parent has none of its
//!   own data;
//! - events in a library span (the library's, and the application's log lines inside a step)
//!   become that span's events.
//!
//! What `tracing-opentelemetry`'s span extension cannot see: `Span::context()` and
//! `Span::set_parent()` (`OpenTelemetrySpanExt`) called on a library span itself. Code that
//! needs the context of the span it runs in calls [`current_context`](super::otel::current_context),
//! which knows both kinds.

use std::any::TypeId;
use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    IdGenerator as _, RandomIdGenerator, Sampler, SamplingDecision, SdkTracer, ShouldSample as _,
    Span as SdkSpan, SpanData, SpanEvents, SpanLinks, SpanProcessor,
};
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use super::SPAN_TARGET as TARGET;

/// At most this many events are kept per span, as the SDK's default span limits say; the
/// rest are counted as dropped.
const MAX_EVENTS: usize = 128;

/// Whether `meta` is one of this library's spans.
fn ours(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.target() == TARGET
}

// ---------------------------------------------------------------------------------------
// The shared span processor.

/// The span processor both halves end their spans in: the provider's (for
/// `tracing-opentelemetry`'s spans) and this layer's own.
#[derive(Debug, Clone)]
pub(crate) struct Shared(pub(crate) Arc<dyn SpanProcessor>);

impl SpanProcessor for Shared {
    fn on_start(&self, span: &mut SdkSpan, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    // `set_resource`: the exporter was given the resource before the processor was built
    // (the processor is shared, so the provider cannot reach it mutably).
}

/// What the layer needs to record spans: where they end, how ids are drawn, the sampler
/// for spans with no parent, the instrumentation scope, and whether starts store the trace
/// carrier in the workflow's row.
#[derive(Debug)]
pub(crate) struct Recorder {
    pub(crate) processor: Shared,
    pub(crate) sampler: Sampler,
    pub(crate) scope: InstrumentationScope,
    ids: RandomIdGenerator,
    /// [`Telemetry::store_trace_context`](super::otel::Telemetry::store_trace_context).
    pub(crate) store_carrier: AtomicBool,
}

impl Recorder {
    pub(crate) fn new(processor: Shared, sampler: Sampler, scope: InstrumentationScope) -> Self {
        Recorder {
            processor,
            sampler,
            scope,
            ids: RandomIdGenerator::default(),
            store_carrier: AtomicBool::new(true),
        }
    }
}

// ---------------------------------------------------------------------------------------
// A library span's record.

/// What a library span keeps in its extensions from its opening to its close.
struct Recorded {
    cx: SpanContext,
    parent: SpanId,
    parent_remote: bool,
    name: &'static str,
    start: SystemTime,
    attributes: Vec<KeyValue>,
    events: Vec<opentelemetry::trace::Event>,
    dropped_events: u32,
    status: Status,
}

impl Recorded {
    fn sampled(&self) -> bool {
        self.cx.is_sampled()
    }
}

/// The `dbos.operation.type` values, kept as static strings (no copy per span).
fn static_value(value: &str) -> Option<&'static str> {
    const KNOWN: [&str; 11] = [
        "workflow",
        "step",
        "transaction",
        "child",
        "enqueue",
        "send",
        "recv",
        "set_event",
        "get_event",
        "stream",
        "sleep",
    ];
    KNOWN.iter().copied().find(|k| *k == value)
}

/// Records a span's fields as attributes.
struct Fields<'a>(&'a mut Vec<KeyValue>);

impl Visit for Fields<'_> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push(KeyValue::new(field.name(), value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push(KeyValue::new(field.name(), value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push(match i64::try_from(value) {
            Ok(v) => KeyValue::new(field.name(), v),
            Err(_) => KeyValue::new(field.name(), value.to_string()),
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.push(KeyValue::new(field.name(), value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        // Only the operation type has a fixed set of values worth keeping static; every
        // other string (ids, names) is copied without looking it up.
        let known = (field.name() == "dbos.operation.type")
            .then(|| static_value(value))
            .flatten();
        let value = match known {
            Some(known) => Value::from(known),
            None => Value::from(value.to_owned()),
        };
        self.0.push(KeyValue::new(field.name(), value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .push(KeyValue::new(field.name(), format!("{value:?}")));
    }
}

/// Records an event's fields: `message` is its name, the rest its attributes.
struct EventFields<'a> {
    name: Option<Cow<'static, str>>,
    attributes: &'a mut Vec<KeyValue>,
}

impl Visit for EventFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.name = Some(value.to_owned().into());
        } else {
            Fields(self.attributes).record_str(field, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.name = Some(format!("{value:?}").into());
        } else {
            Fields(self.attributes).record_debug(field, value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        Fields(self.attributes).record_bool(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        Fields(self.attributes).record_i64(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        Fields(self.attributes).record_u64(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        Fields(self.attributes).record_f64(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        Fields(self.attributes).record_str(field, &value.to_string());
    }
}

// ---------------------------------------------------------------------------------------
// Hooks reachable from a `Span` handle (through the dispatcher), for the carrier.

/// Functions the layer answers through `Dispatch::downcast_ref`, monomorphised for the
/// subscriber it is in (as `tracing-opentelemetry` does for its span extension).
pub(crate) struct Hooks {
    /// The context of a library span (`None` for any other span).
    context: fn(&Dispatch, &Id) -> Option<SpanContext>,
    /// Makes a remote context the parent of a library span not yet entered; false for any
    /// other span.
    join: fn(&Dispatch, &Id, &SpanContext) -> bool,
    /// Whether starts store the trace carrier.
    recorder: Arc<Recorder>,
}

fn context_hook<S>(dispatch: &Dispatch, id: &Id) -> Option<SpanContext>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let span = dispatch.downcast_ref::<S>()?.span(id)?;
    let ext = span.extensions();
    ext.get::<Recorded>().map(|r| r.cx.clone())
}

fn join_hook<S>(dispatch: &Dispatch, id: &Id, remote: &SpanContext) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(span) = dispatch.downcast_ref::<S>().and_then(|s| s.span(id)) else {
        return false;
    };
    let mut ext = span.extensions_mut();
    let Some(r) = ext.get_mut::<Recorded>() else {
        return false;
    };
    r.cx = SpanContext::new(
        remote.trace_id(),
        r.cx.span_id(),
        remote.trace_flags(),
        false,
        remote.trace_state().clone(),
    );
    r.parent = remote.span_id();
    r.parent_remote = true;
    true
}

/// The OpenTelemetry context of `span` if a [`Layer`] records it as a library span.
pub(crate) fn context_of_library_span(span: &tracing::Span) -> Option<SpanContext> {
    span.with_subscriber(|(id, dispatch)| {
        let hooks = dispatch.downcast_ref::<Hooks>()?;
        (hooks.context)(dispatch, id)
    })
    .flatten()
}

/// Whether a start in `span` stores its trace carrier in the workflow's row: false only when
/// the [`TelemetryLayer`] that records the span was told not to
/// ([`Telemetry::store_trace_context`](super::otel::Telemetry::store_trace_context)).
pub(crate) fn stores_carrier(span: &tracing::Span) -> bool {
    span.with_subscriber(|(_, dispatch)| {
        dispatch
            .downcast_ref::<Hooks>()
            .is_none_or(|hooks| hooks.recorder.store_carrier.load(Ordering::Relaxed))
    })
    .unwrap_or(true)
}

/// Makes `remote` the parent of library span `span` (not yet entered). False when `span` is
/// not recorded as a library span by a [`Layer`].
pub(crate) fn join_library_span(span: &tracing::Span, remote: &SpanContext) -> bool {
    span.with_subscriber(|(id, dispatch)| {
        dispatch
            .downcast_ref::<Hooks>()
            .is_some_and(|hooks| (hooks.join)(dispatch, id, remote))
    })
    .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------
// The layer.

/// The `tracing` layer [`Telemetry::layer`](super::otel::Telemetry::layer) returns: this
/// library's spans recorded directly, every other span through `tracing-opentelemetry`, in
/// one trace tree (see the [module](self) documentation).
pub struct TelemetryLayer<S> {
    otel: OpenTelemetryLayer<S, SdkTracer>,
    recorder: Arc<Recorder>,
    hooks: Hooks,
    dispatch: OnceLock<WeakDispatch>,
}

impl<S> fmt::Debug for TelemetryLayer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryLayer")
            .field("recorder", &self.recorder)
            .finish_non_exhaustive()
    }
}

impl<S> TelemetryLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    pub(crate) fn new(otel: OpenTelemetryLayer<S, SdkTracer>, recorder: Arc<Recorder>) -> Self {
        TelemetryLayer {
            otel,
            hooks: Hooks {
                context: context_hook::<S>,
                join: join_hook::<S>,
                recorder: recorder.clone(),
            },
            recorder,
            dispatch: OnceLock::new(),
        }
    }

    /// The context a new library span's parent gives it: the nearest span up from `first`
    /// that has one (a library span's own, or one `tracing-opentelemetry` records).
    fn parent_context(&self, first: Option<SpanRef<'_, S>>) -> Option<SpanContext> {
        let first = first?;
        for span in first.scope() {
            if ours(span.metadata()) {
                if let Some(r) = span.extensions().get::<Recorded>() {
                    return Some(r.cx.clone());
                }
                continue;
            }
            let dispatch = self.dispatch.get().and_then(WeakDispatch::upgrade)?;
            let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
            let sc = cx.span().span_context().clone();
            if sc.is_valid() {
                return Some(sc);
            }
        }
        None
    }

    fn open(&self, attrs: &Attributes<'_>, id: &Id, ctx: &Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent_span = match attrs.parent() {
            Some(p) => ctx.span(p),
            None if attrs.is_contextual() => ctx.lookup_current(),
            None => None,
        };
        let parent = self.parent_context(parent_span);
        let meta = attrs.metadata();
        let span_id = self.recorder.ids.new_span_id();
        let (cx, parent, parent_remote) = match parent {
            Some(p) => {
                let flags = if matches!(self.recorder.sampler, Sampler::ParentBased(_)) {
                    p.trace_flags()
                } else {
                    self.decide(Some(&p), p.trace_id(), meta.name())
                };
                (
                    SpanContext::new(p.trace_id(), span_id, flags, false, p.trace_state().clone()),
                    p.span_id(),
                    p.is_remote(),
                )
            }
            None => {
                let trace_id = self.recorder.ids.new_trace_id();
                let flags = self.decide(None, trace_id, meta.name());
                (
                    SpanContext::new(trace_id, span_id, flags, false, TraceState::default()),
                    SpanId::INVALID,
                    false,
                )
            }
        };
        let mut attributes = Vec::with_capacity(meta.fields().len());
        attrs.record(&mut Fields(&mut attributes));
        span.extensions_mut().insert(Recorded {
            cx,
            parent,
            parent_remote,
            name: meta.name(),
            start: SystemTime::now(),
            attributes,
            events: Vec::new(),
            dropped_events: 0,
            status: Status::Unset,
        });
    }

    /// The configured sampler's decision for a span in trace `trace_id`, as trace flags.
    fn decide(&self, parent: Option<&SpanContext>, trace_id: TraceId, name: &str) -> TraceFlags {
        let parent_cx =
            parent.map(|p| opentelemetry::Context::new().with_remote_span_context(p.clone()));
        let result = self.recorder.sampler.should_sample(
            parent_cx.as_ref(),
            trace_id,
            name,
            &SpanKind::Internal,
            &[],
            &[],
        );
        match result.decision {
            SamplingDecision::RecordAndSample => TraceFlags::SAMPLED,
            _ => TraceFlags::default(),
        }
    }

    /// The library span an event or a span of the application is in, if it is directly in one.
    fn library_span_of<'c>(
        &self,
        parent: Option<&Id>,
        contextual: bool,
        ctx: &'c Context<'_, S>,
    ) -> Option<SpanRef<'c, S>> {
        let span = match parent {
            Some(p) => ctx.span(p),
            None if contextual => ctx.lookup_current(),
            None => None,
        }?;
        ours(span.metadata()).then_some(span)
    }

    /// Ends library span `span`: its data goes to the span processor (when sampled).
    fn close(&self, span: SpanRef<'_, S>) {
        let Some(r) = span.extensions_mut().remove::<Recorded>() else {
            return;
        };
        if !r.sampled() {
            return;
        }
        let mut events = SpanEvents::default();
        events.events = r.events;
        events.dropped_count = r.dropped_events;
        self.recorder.processor.on_end(SpanData {
            span_context: r.cx,
            parent_span_id: r.parent,
            parent_span_is_remote: r.parent_remote,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed(r.name),
            start_time: r.start,
            end_time: SystemTime::now(),
            attributes: r.attributes,
            dropped_attributes_count: 0,
            events,
            links: SpanLinks::default(),
            status: r.status,
            instrumentation_scope: self.recorder.scope.clone(),
        });
    }
}

impl<S> tracing_subscriber::Layer<S> for TelemetryLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
        self.otel.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.otel.on_layer(subscriber);
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if ours(attrs.metadata()) {
            self.open(attrs, id, &ctx);
            return;
        }
        // A span of the application directly in a library span: `tracing-opentelemetry`
        // finds none of its own data in that parent and takes the current OpenTelemetry
        // context instead, which is made the library span's for the call.
        let inside = self
            .library_span_of(attrs.parent(), attrs.is_contextual(), &ctx)
            .and_then(|s| s.extensions().get::<Recorded>().map(|r| r.cx.clone()));
        match inside {
            Some(sc) => {
                let _current = opentelemetry::Context::current()
                    .with_remote_span_context(sc)
                    .attach();
                self.otel.on_new_span(attrs, id, ctx);
            }
            None => self.otel.on_new_span(attrs, id, ctx),
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if ours(span.metadata()) {
            let mut ext = span.extensions_mut();
            if let Some(r) = ext.get_mut::<Recorded>() {
                values.record(&mut Fields(&mut r.attributes));
            }
            return;
        }
        drop(span);
        self.otel.on_record(id, values, ctx);
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        if ctx.metadata(id).is_some_and(|m| ours(m)) {
            return;
        }
        self.otel.on_follows_from(id, follows, ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(span) = self.library_span_of(event.parent(), event.is_contextual(), &ctx) else {
            self.otel.on_event(event, ctx);
            return;
        };
        let meta = event.metadata();
        let mut attributes = vec![
            KeyValue::new("level", meta.level().as_str()),
            KeyValue::new("target", meta.target().to_owned()),
        ];
        let mut fields = EventFields {
            name: None,
            attributes: &mut attributes,
        };
        event.record(&mut fields);
        let name = fields.name.unwrap_or(Cow::Borrowed(meta.name()));
        let mut ext = span.extensions_mut();
        let Some(r) = ext.get_mut::<Recorded>() else {
            return;
        };
        if *meta.level() == tracing::Level::ERROR {
            r.status = Status::error("");
        }
        if r.events.len() >= MAX_EVENTS {
            r.dropped_events += 1;
            return;
        }
        r.events.push(opentelemetry::trace::Event::new(
            name,
            SystemTime::now(),
            attributes,
            0,
        ));
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        // Configured without context activation or timings, `tracing-opentelemetry` does
        // nothing here, for any span: no check of whose span it is needed.
        self.otel.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if !ctx.metadata(id).is_some_and(|m| ours(m)) {
            self.otel.on_exit(id, ctx);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let theirs = match ctx.span(&id) {
            Some(span) if ours(span.metadata()) => {
                self.close(span);
                false
            }
            Some(_) => true,
            None => false,
        };
        if theirs {
            self.otel.on_close(id, ctx);
        }
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.otel.on_id_change(old, new, ctx);
    }

    // SAFETY: every pointer returned points into `self`, valid for as long as `&self` is,
    // and is of the type whose `TypeId` was asked for.
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else if id == TypeId::of::<Hooks>() {
            Some(&self.hooks as *const Hooks as *const ())
        } else {
            // SAFETY: the inner layer answers for itself under the same contract.
            unsafe { self.otel.downcast_raw(id) }
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanId, Status, TraceContextExt as _};
    use opentelemetry::Value;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SpanData};
    use tracing_subscriber::layer::SubscriberExt as _;

    use crate::otel::Telemetry;

    /// The spans `f` exports, run under a subscriber with only the layer of `telemetry`.
    fn exported_by(
        telemetry: Telemetry,
        exporter: &InMemorySpanExporter,
        f: impl FnOnce(),
    ) -> Vec<SpanData> {
        let subscriber = tracing_subscriber::registry().with(telemetry.layer());
        tracing::subscriber::with_default(subscriber, f);
        telemetry.flush().expect("flushed");
        exporter.get_finished_spans().expect("the finished spans")
    }

    fn exported(f: impl FnOnce()) -> Vec<SpanData> {
        let exporter = InMemorySpanExporter::default();
        exported_by(
            Telemetry::with_exporter(exporter.clone(), "layer-tests"),
            &exporter,
            f,
        )
    }

    fn attr(attributes: &[opentelemetry::KeyValue], key: &str) -> Option<Value> {
        attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    }

    #[test]
    fn every_span_the_library_opens_is_recorded_by_the_layer_itself() {
        use super::super::{operation, step, transaction, workflow, Op};
        exported(|| {
            let spans = [
                workflow("w", "f", Some("q"), "v", "e", false),
                step(1, "s", 1),
                transaction("t"),
                operation(Op::Send, "DBOS.send"),
            ];
            for span in &spans {
                let meta = span.metadata().expect("enabled");
                assert!(super::ours(meta), "{} is the library's", meta.name());
                assert!(
                    super::context_of_library_span(span).is_some(),
                    "{} is recorded by the layer",
                    meta.name()
                );
            }
            let app = tracing::info_span!("app");
            assert!(!super::ours(app.metadata().expect("enabled")));
            assert!(super::context_of_library_span(&app).is_none());
        });
    }

    #[test]
    fn a_library_span_s_fields_and_events_are_typed_attributes() {
        let spans = exported(|| {
            let span = tracing::info_span!(
                target: "dbos_core::observe",
                "step",
                "dbos.operation.type" = "step",
                n = 3u32,
                big = u64::MAX,
                s = "x",
                b = true,
                f = 1.5f64,
                late = tracing::field::Empty,
            );
            span.record("late", 5i64);
            let calm = tracing::info_span!(target: "dbos_core::observe", "transaction");
            calm.in_scope(|| tracing::warn!("only a warning"));
            span.in_scope(|| {
                let err = std::io::Error::other("disk full");
                tracing::info!(
                    order = 7u32,
                    neg = -2i64,
                    text = "t",
                    dbg = ?(1, 2),
                    flag = true,
                    ratio = 0.5f64,
                    cause = &err as &(dyn std::error::Error + 'static),
                    "logged"
                );
                tracing::error!("it failed");
            });
        });
        assert_eq!(spans.len(), 2, "{spans:#?}");
        // A span with no ERROR event keeps its status unset.
        let calm = spans
            .iter()
            .find(|s| s.name == "transaction")
            .expect("the calm span");
        assert_eq!(calm.status, Status::Unset);
        let span = spans
            .iter()
            .find(|s| s.name == "step")
            .expect("the step span");
        assert_eq!(span.name, "step");
        assert_eq!(span.parent_span_id, SpanId::INVALID);
        assert_eq!(
            attr(&span.attributes, "dbos.operation.type"),
            Some(Value::from("step"))
        );
        // Kept as the static string, not copied per span.
        let kind = attr(&span.attributes, "dbos.operation.type").expect("the type");
        assert!(format!("{kind:?}").contains("Static"), "{kind:?}");
        assert_eq!(attr(&span.attributes, "n"), Some(Value::I64(3)));
        assert_eq!(
            attr(&span.attributes, "big"),
            Some(Value::from(u64::MAX.to_string()))
        );
        assert_eq!(attr(&span.attributes, "s"), Some(Value::from("x")));
        assert_eq!(attr(&span.attributes, "b"), Some(Value::Bool(true)));
        assert_eq!(attr(&span.attributes, "f"), Some(Value::F64(1.5)));
        assert_eq!(attr(&span.attributes, "late"), Some(Value::I64(5)));
        let logged = &span.events.events[0];
        assert_eq!(logged.name, "logged");
        assert_eq!(attr(&logged.attributes, "level"), Some(Value::from("INFO")));
        assert_eq!(attr(&logged.attributes, "order"), Some(Value::I64(7)));
        assert_eq!(attr(&logged.attributes, "neg"), Some(Value::I64(-2)));
        assert_eq!(attr(&logged.attributes, "text"), Some(Value::from("t")));
        assert_eq!(attr(&logged.attributes, "flag"), Some(Value::Bool(true)));
        assert_eq!(attr(&logged.attributes, "ratio"), Some(Value::F64(0.5)));
        assert_eq!(
            attr(&logged.attributes, "cause"),
            Some(Value::from("disk full"))
        );
        assert_eq!(attr(&logged.attributes, "dbg"), Some(Value::from("(1, 2)")));
        assert_eq!(span.events.events[1].name, "it failed");
        // An ERROR event marks the span failed, as `tracing-opentelemetry` does.
        assert_eq!(span.status, Status::error(""));
        assert!(span.end_time >= span.start_time);
    }

    #[test]
    fn a_span_keeps_at_most_128_events_and_counts_the_rest() {
        let spans = exported(|| {
            let span = tracing::info_span!(target: "dbos_core::observe", "step");
            span.in_scope(|| {
                for i in 0..130 {
                    tracing::info!(i, "event");
                }
            });
        });
        assert_eq!(spans[0].events.events.len(), 128);
        assert_eq!(spans[0].events.dropped_count, 2);
    }

    #[test]
    fn a_library_span_nests_in_an_application_span_and_the_other_way() {
        let spans = exported(|| {
            let app = tracing::info_span!("app");
            app.in_scope(|| {
                let lib = tracing::info_span!(target: "dbos_core::observe", "step");
                lib.in_scope(|| {
                    let inner = tracing::info_span!("inner");
                    let _ = inner.enter();
                    // Explicit roots stay roots, and an event outside any span is nobody's.
                    let _ = tracing::info_span!(parent: None, "app_root").enter();
                    tracing::info!(parent: None, "orphan");
                });
                let _ = tracing::info_span!(target: "dbos_core::observe", parent: None, "workflow")
                    .enter();
                // An application span that follows from another links to it.
                let earlier = tracing::info_span!("earlier");
                let later = tracing::info_span!("later");
                later.follows_from(&earlier);
            });
        });
        let by_name = |n: &str| spans.iter().find(|s| s.name == n).expect(n);
        let (app, lib, inner) = (by_name("app"), by_name("step"), by_name("inner"));
        assert_eq!(lib.parent_span_id, app.span_context.span_id());
        assert_eq!(inner.parent_span_id, lib.span_context.span_id());
        assert_eq!(lib.span_context.trace_id(), app.span_context.trace_id());
        assert_eq!(inner.span_context.trace_id(), app.span_context.trace_id());
        assert!(!lib.parent_span_is_remote && !inner.parent_span_is_remote);
        for root in ["app_root", "workflow"] {
            let root = by_name(root);
            assert_eq!(root.parent_span_id, SpanId::INVALID, "{root:#?}");
            assert_ne!(root.span_context.trace_id(), app.span_context.trace_id());
        }
        assert!(lib.events.is_empty(), "{:#?}", lib.events);
        let later = by_name("later");
        assert_eq!(
            later.links.links[0].span_context.span_id(),
            by_name("earlier").span_context.span_id()
        );
    }

    #[test]
    fn an_application_span_still_ends_at_its_last_exit() {
        // `tracing-opentelemetry` takes a span's last exit as its end: the layer passes
        // exits of the application's spans on.
        let spans = exported(|| {
            let app = tracing::info_span!("app");
            drop(app.enter());
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(app);
        });
        let app = &spans[0];
        let lasted = app
            .end_time
            .duration_since(app.start_time)
            .expect("ends after it starts");
        assert!(
            lasted < std::time::Duration::from_millis(250),
            "ended {lasted:?} after its start: at its close, not its last exit"
        );
    }

    #[test]
    fn an_unsampled_root_exports_nothing_and_its_children_follow_it() {
        let exporter = InMemorySpanExporter::default();
        let telemetry = Telemetry::with_sampler(
            exporter.clone(),
            Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        );
        let spans = exported_by(telemetry, &exporter, || {
            let root = tracing::info_span!(target: "dbos_core::observe", "workflow");
            let cx = super::context_of_library_span(&root).expect("recorded");
            assert!(cx.is_valid() && !cx.is_sampled());
            root.in_scope(|| {
                let child = tracing::info_span!(target: "dbos_core::observe", "step");
                let child_cx = crate::otel::context_of(&child);
                assert!(!child_cx.span().span_context().is_sampled());
                assert_eq!(child_cx.span().span_context().trace_id(), cx.trace_id());
                let app = tracing::info_span!("app");
                let _ = app.enter();
            });
        });
        assert!(spans.is_empty(), "{spans:#?}");
    }

    #[test]
    fn a_joined_library_span_continues_the_remote_trace_and_other_spans_are_not_joined() {
        use opentelemetry::trace::{SpanContext, TraceFlags, TraceId, TraceState};
        let remote = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex"),
            SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
            TraceFlags::SAMPLED,
            true,
            "k=v".parse::<TraceState>().expect("a trace state"),
        );
        let spans = exported(|| {
            let lib = tracing::info_span!(target: "dbos_core::observe", "workflow");
            assert!(super::join_library_span(&lib, &remote));
            let cx = super::context_of_library_span(&lib).expect("recorded");
            assert_eq!(cx.trace_id(), remote.trace_id());
            assert_eq!(cx.trace_state().header(), "k=v");
            assert!(!cx.is_remote(), "the span itself is local");
            lib.in_scope(|| {
                let _ = tracing::info_span!(target: "dbos_core::observe", "step").enter();
            });
            let app = tracing::info_span!("app");
            assert!(!super::join_library_span(&app, &remote));
            assert!(!super::join_library_span(&tracing::Span::none(), &remote));
        });
        let by_name = |n: &str| spans.iter().find(|s| s.name == n).expect(n);
        let (wf, step) = (by_name("workflow"), by_name("step"));
        assert_eq!(wf.span_context.trace_id(), remote.trace_id());
        assert_eq!(wf.parent_span_id, remote.span_id());
        assert!(wf.parent_span_is_remote);
        assert_eq!(step.span_context.trace_id(), remote.trace_id());
        assert_eq!(step.parent_span_id, wf.span_context.span_id());
        assert!(!step.parent_span_is_remote);
        assert_ne!(by_name("app").span_context.trace_id(), remote.trace_id());
    }

    #[test]
    fn the_sampler_variables_mean_what_the_sdk_reads_them_as() {
        use super::super::otel::sampler_named as named;
        let pb = |s: Sampler| Sampler::ParentBased(Box::new(s));
        let cases = [
            (None, None, pb(Sampler::AlwaysOn)),
            (Some("always_on"), None, Sampler::AlwaysOn),
            (Some("always_off"), None, Sampler::AlwaysOff),
            (
                Some("traceidratio"),
                Some("0.25"),
                Sampler::TraceIdRatioBased(0.25),
            ),
            (
                Some("traceidratio"),
                Some("2"),
                Sampler::TraceIdRatioBased(1.0),
            ),
            (Some("parentbased_always_on"), None, pb(Sampler::AlwaysOn)),
            (Some("parentbased_always_off"), None, pb(Sampler::AlwaysOff)),
            (
                Some("parentbased_traceidratio"),
                Some(" 0.5 "),
                pb(Sampler::TraceIdRatioBased(0.5)),
            ),
            (Some("xray"), None, pb(Sampler::AlwaysOn)),
        ];
        for (name, arg, expected) in cases {
            assert_eq!(
                format!("{:?}", named(name, arg)),
                format!("{expected:?}"),
                "{name:?} with {arg:?}"
            );
        }
    }
}
