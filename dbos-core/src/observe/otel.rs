//! OpenTelemetry trace export (the `opentelemetry` feature): a tracer provider exporting
//! the library's spans over OTLP/HTTP (protobuf), and the `tracing` layer that feeds it.
//!
//! ```no_run
//! # fn main() -> dbos_core::Result<()> {
//! // Exports when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set.
//! let telemetry = dbos_core::otel::Telemetry::from_env("my-app")?;
//! if let Some(t) = &telemetry {
//!     t.init()?; // a console logger plus the exporter, as the global subscriber
//! }
//! // ... launch, run workflows ...
//! drop(telemetry); // flushes what is still buffered
//! # Ok(()) }
//! ```
//!
//! A program with its own subscriber adds [`Telemetry::layer`] to it instead of calling
//! [`Telemetry::init`].

use std::sync::Arc;

use opentelemetry::trace::{SpanContext, TraceContextExt as _, TracerProvider as _};
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracerProvider, SimpleSpanProcessor, SpanExporter,
    SpanProcessor,
};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use super::layer::{Recorder, Shared};
use super::otlp::{OtlpHttpExporter, Target};
use crate::error::{Error, Result};

pub use super::layer::TelemetryLayer;
pub use tracing_opentelemetry::OpenTelemetryLayer;

/// The standard variables [`Telemetry::from_env`] reads (the exporter reads the others it
/// supports itself: headers, timeout, compression; the SDK's batch processor its `OTEL_BSP_*`).
const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
const TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
const SAMPLER: &str = "OTEL_TRACES_SAMPLER";
const SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";

/// The name of the tracer (the instrumentation scope) the spans are recorded under.
const SCOPE: &str = "dbos-core";

/// An OpenTelemetry tracer provider with its exporter: build one, add its
/// [`layer`](Self::layer) to your subscriber (or [`init`](Self::init) one), and keep it
/// until the program ends. Dropping it flushes the spans still buffered.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    recorder: Arc<Recorder>,
}

impl Telemetry {
    /// Telemetry configured by the standard `OTEL_*` variables, or `None` when they ask for
    /// no export: neither `OTEL_EXPORTER_OTLP_ENDPOINT` nor
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, `OTEL_SDK_DISABLED=true`, or
    /// `OTEL_TRACES_EXPORTER=none`. Spans go over OTLP/HTTP with protobuf bodies (the
    /// specification's default; `http/protobuf` is the only `OTEL_EXPORTER_OTLP_PROTOCOL`
    /// accepted) to `$OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces`, or to the traces endpoint as
    /// given. The service is `OTEL_SERVICE_NAME`, else `default_service_name`;
    /// `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS` and `..._TIMEOUT` apply.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) for a protocol other than
    /// `http/protobuf`, an endpoint that is not an `http://` URL (TLS is not built in), a
    /// compression other than `none`, or a header that is not a name and a value.
    pub fn from_env(default_service_name: &str) -> Result<Option<Telemetry>> {
        let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if set(SDK_DISABLED).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            || set(TRACES_EXPORTER).is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))
            || (set(ENDPOINT).is_none() && set(TRACES_ENDPOINT).is_none())
        {
            return Ok(None);
        }
        for name in [TRACES_PROTOCOL, PROTOCOL] {
            if let Some(p) = set(name) {
                if p.trim() != "http/protobuf" {
                    return Err(Error::config(format!(
                        "{name}={p}: this build exports over OTLP/HTTP with protobuf bodies only; set it to \
                         `http/protobuf` or unset it (a collector's gRPC port 4317 takes no HTTP: use its \
                         HTTP port, 4318)"
                    )));
                }
                break;
            }
        }
        let service = set(SERVICE_NAME).unwrap_or_else(|| default_service_name.to_owned());
        let url = match set(TRACES_ENDPOINT) {
            Some(url) => url.trim().to_owned(),
            None => traces_url(&set(ENDPOINT).unwrap_or_default()),
        };
        let exporter = OtlpHttpExporter::new(Target::from_url(&url)?);
        Ok(Some(Self::batched(exporter, &service)))
    }

    /// Telemetry exporting over OTLP/HTTP (protobuf) to the collector at `endpoint`, a base
    /// URL as `OTEL_EXPORTER_OTLP_ENDPOINT` takes (`http://localhost:4318`: spans are posted
    /// to `/v1/traces` under it), as service `service_name`.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when `endpoint` is not an `http://`
    /// URL, or the `OTEL_*` variables the exporter reads ask for what it cannot do (as
    /// [`from_env`](Self::from_env)).
    pub fn otlp(endpoint: &str, service_name: &str) -> Result<Telemetry> {
        let exporter = OtlpHttpExporter::new(Target::from_url(&traces_url(endpoint))?);
        Ok(Self::batched(exporter, service_name))
    }

    /// Telemetry handing each span to `exporter` as it ends (no batching): for tests, with
    /// the SDK's `InMemorySpanExporter`, or for an exporter of your own.
    pub fn with_exporter(
        mut exporter: impl SpanExporter + 'static,
        service_name: &str,
    ) -> Telemetry {
        let resource = resource(service_name);
        exporter.set_resource(&resource);
        Self::build(
            SimpleSpanProcessor::new(exporter),
            resource,
            sampler_from_env(),
        )
    }

    /// Batched export to `exporter` with the given sampler (tests): the batch processor, as
    /// in production, takes whatever span data it is handed (the simple one drops an
    /// unsampled span's data itself).
    #[cfg(test)]
    pub(crate) fn with_sampler(
        exporter: impl SpanExporter + 'static,
        sampler: Sampler,
    ) -> Telemetry {
        Self::build(
            BatchSpanProcessor::builder(exporter).build(),
            resource("tests"),
            sampler,
        )
    }

    fn batched(mut exporter: impl SpanExporter + 'static, service_name: &str) -> Telemetry {
        let resource = resource(service_name);
        exporter.set_resource(&resource);
        Self::build(
            BatchSpanProcessor::builder(exporter).build(),
            resource,
            sampler_from_env(),
        )
    }

    /// One span processor for both halves of [`layer`](Self::layer): the provider's (the
    /// spans `tracing-opentelemetry` records) and the library's own spans. The exporter
    /// was given the resource already: the processor, shared, is out of the provider's reach
    /// for it.
    fn build(
        processor: impl SpanProcessor + 'static,
        resource: Resource,
        sampler: Sampler,
    ) -> Telemetry {
        let shared = Shared(Arc::new(processor));
        let provider = SdkTracerProvider::builder()
            .with_span_processor(shared.clone())
            .with_sampler(sampler.clone())
            .with_resource(resource)
            .build();
        let recorder = Arc::new(Recorder::new(
            shared,
            sampler,
            InstrumentationScope::builder(SCOPE).build(),
        ));
        Telemetry { provider, recorder }
    }

    /// The `tracing` layer that records spans into this provider: add it to your
    /// subscriber (`tracing_subscriber::registry().with(telemetry.layer())`).
    ///
    /// The library's own spans (`workflow`, `step`, `transaction`, `operation`) are recorded
    /// by the layer itself, each straight into the span data the exporter takes; every other
    /// span goes through `tracing-opentelemetry`'s layer, inside it. Both kinds parent each
    /// other in one trace tree. `OpenTelemetrySpanExt::context()` on a library span itself
    /// finds nothing (`tracing-opentelemetry` does not record it): use [`current_context`]
    /// or [`context_of`] instead, which know both kinds.
    ///
    /// For other spans it records each span's fields and events, not the code location, thread, `tracing`
    /// target, or busy and idle times that `tracing-opentelemetry` adds by default: the
    /// span's name and fields say where it comes from (every span of this library opens in
    /// one file), and the timings cost a clock read at every enter and exit of a workflow's
    /// span (each poll of its future); without them an export is about half the bytes.
    ///
    /// It does not make a span's OpenTelemetry context the current one
    /// (`opentelemetry::Context::current()`) while the span is entered: that costs a context
    /// clone and a thread-local push and pop at every poll of a workflow's future. Parents
    /// come from the `tracing` span tree, and code that needs the context of the span it runs
    /// in asks for it with [`current_context`] (or `Span::current().context()` in an
    /// application span), as this library's trace propagation does. For instrumentation that
    /// reads the OpenTelemetry API's current context instead, build your own layer from
    /// [`provider`](Self::provider) with its defaults (the library's spans then go through
    /// `tracing-opentelemetry` too, at its cost).
    pub fn layer<S>(&self) -> TelemetryLayer<S>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        let otel = tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer(SCOPE))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false);
        TelemetryLayer::new(otel, self.recorder.clone())
    }

    /// Installs the global subscriber: log lines on stderr at the levels `RUST_LOG` asks
    /// for (else INFO and above), and every span and event at INFO and above exported
    /// through this provider, whatever `RUST_LOG` says (it filters the console only).
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when a global subscriber is installed
    /// already: add [`layer`](Self::layer) to it instead.
    pub fn init(&self) -> Result<()> {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        tracing_subscriber::registry()
            .with(self.layer().with_filter(LevelFilter::INFO))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_filter(filter),
            )
            .try_init()
            .map_err(|e| {
                Error::config(format!(
                    "a global tracing subscriber is installed already ({e}): add `Telemetry::layer()` to it \
                     instead of calling `init`"
                ))
            })
    }

    /// Whether a workflow's start (or enqueue, or child start) stores its trace context in
    /// the workflow's `attributes`, under `dbos.otelContext`: on unless turned off here. It
    /// applies to every start from then on, through every layer of this `Telemetry`.
    ///
    /// The stored carrier is what keeps a workflow in one trace when it runs again: recovered
    /// on another executor, dequeued, resumed. Turned off, a workflow's first execution is
    /// still in its caller's trace (its spans are exported as usual) but a later execution
    /// starts a trace of its own; a carrier given in the attributes, or written by DBOS
    /// Python, is still joined. The price of storing it is Postgres's: the system schema
    /// indexes `attributes` (GIN), so each workflow's row is written with a `jsonb` value and
    /// its index entries, at its insert and at every update of its status (the
    /// Observability chapter, "Cost", has the measurements).
    ///
    /// ```
    /// # fn main() -> dbos_core::Result<()> {
    /// let telemetry = dbos_core::otel::Telemetry::otlp("http://localhost:4318", "shop")?;
    /// // Traces of recovered workflows are not needed here; one index entry less per row.
    /// telemetry.store_trace_context(false);
    /// # Ok(()) }
    /// ```
    pub fn store_trace_context(&self, store: bool) {
        self.recorder
            .store_carrier
            .store(store, std::sync::atomic::Ordering::Relaxed);
    }

    /// The tracer provider, e.g. to make it the global one (`opentelemetry::global`) for
    /// other instrumentation.
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Exports the spans still buffered, waiting for the exporter.
    ///
    /// # Errors
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the export fails.
    pub fn flush(&self) -> Result<()> {
        self.provider.force_flush().map_err(|e| {
            Error::new(
                crate::ErrorKind::Io,
                format!("exporting the buffered spans: {e}"),
            )
        })
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(e) = self.provider.force_flush() {
            eprintln!("dbos: could not export the last spans: {e}");
        }
    }
}

/// The OpenTelemetry context of `span`: its own when it is one of this library's spans
/// (recorded by [`TelemetryLayer`]), else what `tracing-opentelemetry` records for it
/// (`OpenTelemetrySpanExt::context`). Empty when no OpenTelemetry layer records the span.
///
/// ```
/// let cx = dbos_core::otel::context_of(&tracing::Span::current());
/// # let _ = cx;
/// ```
pub fn context_of(span: &tracing::Span) -> opentelemetry::Context {
    match super::layer::context_of_library_span(span) {
        Some(sc) => opentelemetry::Context::current().with_remote_span_context(sc),
        None => {
            use tracing_opentelemetry::OpenTelemetrySpanExt as _;
            span.context()
        }
    }
}

/// The OpenTelemetry context of the current `tracing` span, whichever layer records it: what
/// to inject into an outgoing request from inside a step so the callee joins the step's
/// trace.
///
/// ```
/// use opentelemetry::trace::TraceContextExt as _;
/// // Outside any span: no valid span context.
/// assert!(!dbos_core::otel::current_context().span().span_context().is_valid());
/// ```
pub fn current_context() -> opentelemetry::Context {
    context_of(&tracing::Span::current())
}

/// The span context `span` carries, if valid: for the carrier (see `carrier.rs`).
pub(crate) fn span_context_of(span: &tracing::Span) -> Option<SpanContext> {
    let sc = match super::layer::context_of_library_span(span) {
        Some(sc) => sc,
        None => {
            use tracing_opentelemetry::OpenTelemetrySpanExt as _;
            span.context().span().span_context().clone()
        }
    };
    sc.is_valid().then_some(sc)
}

/// The sampler `OTEL_TRACES_SAMPLER` (and `OTEL_TRACES_SAMPLER_ARG`) names, as the SDK
/// reads them: `always_on`, `always_off`, `traceidratio`, `parentbased_always_on` (the
/// default), `parentbased_always_off`, `parentbased_traceidratio`; anything else is the
/// default, with a warning. Both halves of the layer sample with it.
fn sampler_from_env() -> Sampler {
    sampler_named(
        std::env::var(SAMPLER).ok().as_deref(),
        std::env::var(SAMPLER_ARG).ok().as_deref(),
    )
}

/// The sampler `name` (`OTEL_TRACES_SAMPLER`) with argument `arg` stands for.
pub(super) fn sampler_named(name: Option<&str>, arg: Option<&str>) -> Sampler {
    let parent_based = |s| Sampler::ParentBased(Box::new(s));
    let Some(name) = name else {
        return parent_based(Sampler::AlwaysOn);
    };
    let ratio = || {
        arg.and_then(|r| r.trim().parse::<f64>().ok())
            .filter(|r| (0.0..=1.0).contains(r))
            .unwrap_or_else(|| {
                tracing::warn!(
                    "{SAMPLER}={name} needs {SAMPLER_ARG}, a ratio from 0 to 1: sampling every trace"
                );
                1.0
            })
    };
    match name.trim() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()),
        "parentbased_always_on" | "" => parent_based(Sampler::AlwaysOn),
        "parentbased_always_off" => parent_based(Sampler::AlwaysOff),
        "parentbased_traceidratio" => parent_based(Sampler::TraceIdRatioBased(ratio())),
        other => {
            tracing::warn!(
                "{SAMPLER}={other} is not a sampler this build knows (always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off, parentbased_traceidratio): using \
                 parentbased_always_on"
            );
            parent_based(Sampler::AlwaysOn)
        }
    }
}

/// The traces URL under a base endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`'s form).
fn traces_url(endpoint: &str) -> String {
    format!("{}/v1/traces", endpoint.trim().trim_end_matches('/'))
}

fn resource(service_name: &str) -> Resource {
    Resource::builder()
        .with_service_name(service_name.to_owned())
        .build()
}
