//! The trace context a workflow carries in its `attributes`, under DBOS's reserved key
//! `dbos.otelContext`: a W3C trace-context carrier, `{"traceparent": "00-…-…-01"}` (and
//! `"tracestate"` when there is one), the shape DBOS Python's `PropagateOtelContext` writes.
//!
//! A workflow started from outside any workflow stores the context of its first `workflow`
//! span (opened before the row is written); a child, its `child` operation span's; an
//! enqueued one, its `enqueue` span's (a child of the caller's span). Every later execution
//! (a dequeue, a recovery on any executor, a wake-up from a park) opens its `workflow` span
//! with that context as its remote parent, so all of a workflow's spans share one trace id.
//! A carrier already in the attributes (given by the caller, or written by DBOS Python) is
//! kept and joined.
//!
//! Without the `opentelemetry` feature every function here is a no-op that stores nothing.

use serde_json::Value;
use tracing::Span;

/// DBOS's reserved attribute key for the trace carrier.
pub(crate) const KEY: &str = "dbos.otelContext";

/// The carrier stored in `attributes`, if they hold one (any value under [`KEY`]; one that
/// is not a usable carrier is ignored when joined).
pub(crate) fn stored(attributes: Option<&Value>) -> Option<&Value> {
    attributes.and_then(|a| a.get(KEY))
}

/// The attributes to store for a new workflow whose trace starts at `span`: `attributes`
/// with `span`'s trace context under [`KEY`]. `None` when there is nothing to add: the
/// attributes hold a carrier already (it wins, and `span` should have joined it), `span`
/// has no OpenTelemetry context (no exporter, or the feature is off), or the layer
/// recording it was told to store none (`Telemetry::store_trace_context(false)`).
pub(crate) fn stamp(attributes: Option<&Value>, span: &Span) -> Option<Value> {
    if stored(attributes).is_some() {
        return None;
    }
    #[cfg(feature = "opentelemetry")]
    if !crate::observe::layer::stores_carrier(span) {
        return None;
    }
    let carrier = of_span(span)?;
    let mut merged = match attributes {
        Some(Value::Object(map)) => map.clone(),
        _ => serde_json::Map::new(),
    };
    merged.insert(KEY.to_owned(), carrier);
    Some(Value::Object(merged))
}

#[cfg(feature = "opentelemetry")]
mod imp {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{TraceContextExt, TraceFlags};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use serde_json::Value;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// `span`'s trace context as a W3C carrier, if it has a valid one: what
    /// `TraceContextPropagator::inject_context` writes (an empty `tracestate` left out),
    /// written directly. Every start and enqueue runs this on the caller's thread; the
    /// propagator's way (a `HashMap` of two `String`s, each id formatted through `fmt`, then
    /// copied into the JSON map) cost about 7,000 instructions a start, this about 1,000.
    pub(crate) fn of_span(span: &Span) -> Option<Value> {
        if span.is_disabled() {
            return None;
        }
        let sc = crate::observe::otel::span_context_of(span)?;
        let mut map = serde_json::Map::new();
        map.insert(
            "traceparent".to_owned(),
            Value::String(traceparent(
                sc.trace_id().to_bytes(),
                sc.span_id().to_bytes(),
                (sc.trace_flags() & TraceFlags::SAMPLED).to_u8(),
            )),
        );
        let state = sc.trace_state().header();
        if !state.is_empty() {
            map.insert("tracestate".to_owned(), Value::String(state));
        }
        Some(Value::Object(map))
    }

    /// `00-<trace id>-<span id>-<flags>`, in lowercase hex (W3C trace context, version 00).
    pub(super) fn traceparent(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        push_hex(&mut out, &trace_id);
        out.push('-');
        push_hex(&mut out, &span_id);
        out.push('-');
        push_hex(&mut out, &[flags]);
        out
    }

    fn push_hex(out: &mut String, bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in bytes {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }

    /// Makes the stored `carrier` the remote parent of `span` (not yet entered). A carrier
    /// that is not an object of strings holding a valid `traceparent` is ignored with a
    /// warning: attributes are user-writable, and a bad value must not stop a workflow.
    pub(crate) fn join(span: &Span, carrier: Option<&Value>) {
        let Some(carrier) = carrier else { return };
        if span.is_disabled() {
            return;
        }
        let fields: HashMap<String, String> = match carrier {
            Value::Object(map) => map
                .iter()
                .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_owned())))
                .collect(),
            _ => HashMap::new(),
        };
        let cx = TraceContextPropagator::new().extract(&fields);
        if !cx.span().span_context().is_valid() {
            tracing::warn!(
                carrier = %carrier,
                "ignoring the workflow's `{}` attribute: it holds no valid W3C traceparent",
                super::KEY
            );
            return;
        }
        // A library span (recorded by our layer) or any other (by `tracing-opentelemetry`'s);
        // fails only when no OpenTelemetry layer records the span: nothing to join then.
        if !crate::observe::layer::join_library_span(span, &cx.span().span_context().clone()) {
            let _ = span.set_parent(cx);
        }
    }
}

#[cfg(not(feature = "opentelemetry"))]
mod imp {
    use serde_json::Value;
    use tracing::Span;

    /// Without the `opentelemetry` feature there is no trace context to store.
    pub(crate) fn of_span(_span: &Span) -> Option<Value> {
        None
    }

    /// Without the `opentelemetry` feature there is no trace to join.
    pub(crate) fn join(_span: &Span, _carrier: Option<&Value>) {}
}

pub(crate) use imp::{join, of_span};

#[cfg(all(test, feature = "opentelemetry"))]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
    };
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use serde_json::{json, Value};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::imp::traceparent;

    /// What the SDK's propagator writes for `span`, as the JSON map `of_span` returns
    /// (empty values left out, as the carrier has always stored them).
    fn propagated(span: &tracing::Span) -> Value {
        let mut carrier: HashMap<String, String> = HashMap::new();
        TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
        Value::Object(
            carrier
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )
    }

    /// Runs `f` with a subscriber whose spans have OpenTelemetry contexts.
    fn with_otel(f: impl FnOnce()) {
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(InMemorySpanExporter::default())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("carrier-test")));
        tracing::subscriber::with_default(subscriber, f);
    }

    /// A new workflow's attributes keep what the caller gave beside the carrier stamped from
    /// its span; a carrier already given is kept as given (nothing to stamp) and is what
    /// `stored` finds; a span without an OpenTelemetry context stamps nothing.
    #[test]
    fn a_stamp_keeps_the_given_attributes_and_a_given_carrier_wins() {
        with_otel(|| {
            let span = tracing::info_span!("workflow");
            let carrier = super::of_span(&span).expect("a carrier");
            let mut only = serde_json::Map::new();
            only.insert(super::KEY.to_owned(), carrier.clone());
            assert_eq!(super::stamp(None, &span), Some(Value::Object(only.clone())));
            // Attributes that are not an object have nothing to keep.
            assert_eq!(
                super::stamp(Some(&Value::Null), &span),
                Some(Value::Object(only))
            );
            let given = json!({"tier": "gold", "n": 1});
            let mut stamped = given.clone();
            stamped[super::KEY] = carrier;
            assert_eq!(super::stamp(Some(&given), &span), Some(stamped));
            assert_eq!(super::stored(Some(&given)), None);
            assert_eq!(super::stored(None), None);
            let theirs =
                json!({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"});
            let with_carrier = json!({"tier": "gold", (super::KEY): theirs.clone()});
            assert_eq!(super::stored(Some(&with_carrier)), Some(&theirs));
            assert_eq!(super::stamp(Some(&with_carrier), &span), None);
            assert_eq!(super::stamp(Some(&given), &tracing::Span::none()), None);
        });
    }

    /// A stored carrier becomes the remote parent of a span that `tracing-opentelemetry`
    /// records (any span but the library's own, which its layer joins): the span continues
    /// the carrier's trace. Keys are matched in any case. No carrier, one that is not an
    /// object of strings, or one without a valid `traceparent` leaves the span a root of a
    /// trace of its own.
    #[test]
    fn a_valid_carrier_is_joined_by_any_span_and_others_are_ignored() {
        const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
        let parent = format!("00-{TRACE}-00f067aa0ba902b7-01");
        let trace_of =
            |span: &tracing::Span| span.context().span().span_context().trace_id().to_string();
        with_otel(|| {
            for carrier in [
                json!({ "traceparent": parent }),
                json!({ "TraceParent": parent, "tracestate": "congo=t61rcWkgMzE" }),
            ] {
                let span = tracing::info_span!(parent: None, "joined");
                super::join(&span, Some(&carrier));
                assert_eq!(trace_of(&span), TRACE, "{carrier}");
            }
            for carrier in [
                None,
                Some(json!(parent)),
                Some(json!({ "traceparent": 7 })),
                Some(json!({ "traceparent": "00-not-a-traceparent-01" })),
                Some(json!({ "tracestate": "congo=t61rcWkgMzE" })),
            ] {
                let span = tracing::info_span!(parent: None, "not_joined");
                super::join(&span, carrier.as_ref());
                let own = trace_of(&span);
                assert_ne!(own, TRACE, "{carrier:?}");
                assert_ne!(own, opentelemetry::trace::TraceId::INVALID.to_string());
            }
        });
    }

    #[test]
    fn the_carrier_is_what_the_w3c_propagator_writes() {
        with_otel(|| {
            let remote = |flags: TraceFlags, state: &str| {
                let state: TraceState = state.parse().expect("a trace state");
                opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
                    TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("hex"),
                    SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
                    flags,
                    true,
                    state,
                ))
            };
            // A root (sampled), children of a remote sampled parent with a trace state and of
            // an unsampled one (flags 00), and a child of a local span.
            let root = tracing::info_span!("root");
            let with_state = tracing::info_span!(parent: None, "with_state");
            let _ = with_state.set_parent(remote(
                TraceFlags::SAMPLED,
                "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
            ));
            let unsampled = tracing::info_span!(parent: None, "unsampled");
            let _ = unsampled.set_parent(remote(TraceFlags::default(), ""));
            let child = tracing::info_span!(parent: &root, "child");
            for span in [&root, &with_state, &unsampled, &child] {
                let ours = super::of_span(span).expect("a carrier");
                assert_eq!(ours, propagated(span));
            }
            assert_eq!(
                super::of_span(&with_state).expect("a carrier")["tracestate"],
                "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
            );
            assert!(
                super::of_span(&unsampled).expect("a carrier")["traceparent"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("-00"))
            );
            assert_eq!(super::of_span(&tracing::Span::none()), None);
        });
        // Every nibble value in every position of both ids.
        for n in 0u8..16 {
            let t = [n << 4 | (15 - n); 16];
            let s = [(15 - n) << 4 | n; 8];
            assert_eq!(
                traceparent(t, s, n),
                format!(
                    "00-{}-{}-{:02x}",
                    TraceId::from_bytes(t),
                    SpanId::from_bytes(s),
                    n
                )
            );
        }
    }
}
