//! The trace context a workflow carries in its `attributes`, under DBOS's reserved key
//! `dbos.otelContext`: a W3C trace-context carrier, `{"traceparent": "00-…-…-01"}` (and
//! `"tracestate"` when there is one), the shape DBOS Python's `PropagateOtelContext` writes.
//!
//! A workflow started here stores the context of its first `workflow` span; an enqueued one,
//! the context of its `enqueue` span (a child of the caller's span). Every later execution
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
/// attributes hold a carrier already (it wins, and `span` should have joined it), or `span`
/// has no OpenTelemetry context (no exporter, or the feature is off).
pub(crate) fn stamp(attributes: Option<&Value>, span: &Span) -> Option<Value> {
    if stored(attributes).is_some() {
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
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use serde_json::Value;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// `span`'s trace context as a W3C carrier, if it has a valid one.
    pub(crate) fn of_span(span: &Span) -> Option<Value> {
        if span.is_disabled() {
            return None;
        }
        let cx = span.context();
        if !cx.span().span_context().is_valid() {
            return None;
        }
        let mut carrier: HashMap<String, String> = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        let map: serde_json::Map<String, Value> = carrier
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        (!map.is_empty()).then_some(Value::Object(map))
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
        // Fails only when no OpenTelemetry layer records this span: nothing to join then.
        let _ = span.set_parent(cx);
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
