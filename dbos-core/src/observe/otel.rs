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

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanExporter};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use super::otlp::{OtlpHttpExporter, Target};
use crate::error::{Error, Result};

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

/// The name of the tracer (the instrumentation scope) the spans are recorded under.
const SCOPE: &str = "dbos-core";

/// An OpenTelemetry tracer provider with its exporter: build one, add its
/// [`layer`](Self::layer) to your subscriber (or [`init`](Self::init) one), and keep it
/// until the program ends. Dropping it flushes the spans still buffered.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
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
    pub fn with_exporter(exporter: impl SpanExporter + 'static, service_name: &str) -> Telemetry {
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .with_resource(resource(service_name))
            .build();
        Telemetry { provider }
    }

    fn batched(exporter: impl SpanExporter + 'static, service_name: &str) -> Telemetry {
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(service_name))
            .build();
        Telemetry { provider }
    }

    /// The `tracing` layer that records spans into this provider: add it to your
    /// subscriber (`tracing_subscriber::registry().with(telemetry.layer())`).
    ///
    /// It records each span's fields and events, not the code location, thread, `tracing`
    /// target, or busy and idle times that `tracing-opentelemetry` adds by default: the
    /// span's name and fields say where it comes from (every span of this library opens in
    /// one file), and the timings cost a clock read at every enter and exit of a workflow's
    /// span (each poll of its future); without them an export is about half the bytes.
    ///
    /// It does not make a span's OpenTelemetry context the current one
    /// (`opentelemetry::Context::current()`) while the span is entered: that costs a context
    /// clone and a thread-local push and pop at every poll of a workflow's future. Parents
    /// come from the `tracing` span tree, and code that needs the context of the span it runs
    /// in asks `tracing` for it (`Span::current().context()`, from
    /// `tracing_opentelemetry::OpenTelemetrySpanExt`), as this library's trace propagation
    /// does. For instrumentation that reads the OpenTelemetry API's current context instead,
    /// build your own layer from [`provider`](Self::provider) with its defaults.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer(SCOPE))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
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

/// The traces URL under a base endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`'s form).
fn traces_url(endpoint: &str) -> String {
    format!("{}/v1/traces", endpoint.trim().trim_end_matches('/'))
}

fn resource(service_name: &str) -> Resource {
    Resource::builder()
        .with_service_name(service_name.to_owned())
        .build()
}
