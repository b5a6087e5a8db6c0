//! An OTLP/HTTP trace receiver (feature `otlp`): a small HTTP/1.1 server on a local port
//! that takes `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`, as any
//! OpenTelemetry exporter sends it to a collector, decodes it and keeps the spans.
//!
//! ```no_run
//! let receiver = dbos_testkit::otlp::OtlpReceiver::start();
//! // OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint() for the process under test ...
//! let spans = receiver.spans();
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;

/// One span as a collector received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// The span's name (`workflow`, `step`, ...).
    pub name: String,
    /// The trace id, 32 hex digits.
    pub trace_id: String,
    /// The span id, 16 hex digits.
    pub span_id: String,
    /// The parent's span id, 16 hex digits, or empty for a root span.
    pub parent_span_id: String,
    /// Its attributes, each value rendered as text.
    pub attributes: BTreeMap<String, String>,
    /// The `service.name` of the resource that sent it.
    pub service: String,
}

impl ReceivedSpan {
    /// The attribute `key`, or "" when absent.
    pub fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

#[derive(Debug, Default)]
struct Received {
    /// Take the requests without decoding them (a collector with nothing behind it).
    discard: bool,
    spans: Vec<ReceivedSpan>,
    requests: usize,
    bytes: usize,
    rejected: Vec<String>,
}

/// An OTLP/HTTP receiver serving on a local port until the process ends.
#[derive(Debug, Clone)]
pub struct OtlpReceiver {
    port: u16,
    received: Arc<Mutex<Received>>,
}

impl OtlpReceiver {
    /// Starts serving on a free local port (a thread per connection).
    ///
    /// # Panics
    /// When no local port can be bound.
    pub fn start() -> OtlpReceiver {
        Self::serve(Received::default())
    }

    /// Starts a receiver that answers every export as a collector does but keeps and
    /// decodes nothing, only counting requests and bytes: the far end of an exporter whose
    /// cost is measured, spending next to no CPU of its own.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub fn start_discarding() -> OtlpReceiver {
        Self::serve(Received {
            discard: true,
            ..Received::default()
        })
    }

    fn serve(state: Received) -> OtlpReceiver {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("dbos-testkit: bind the OTLP receiver");
        let port = listener.local_addr().expect("its address").port();
        let received = Arc::new(Mutex::new(state));
        let shared = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        OtlpReceiver { port, received }
    }

    /// The base URL to export to, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The spans received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.received).spans.clone()
    }

    /// How many export requests were taken.
    pub fn requests(&self) -> usize {
        lock(&self.received).requests
    }

    /// How many bytes of request bodies were taken.
    pub fn bytes(&self) -> usize {
        lock(&self.received).bytes
    }

    /// Waits up to `timeout` until `check` finds what it wants in the spans received.
    ///
    /// # Panics
    /// On timeout, naming `what` and listing the spans received; or when a request was
    /// rejected (not a protobuf trace export).
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[ReceivedSpan]) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let r = lock(&self.received);
                assert!(
                    r.rejected.is_empty(),
                    "dbos-testkit: OTLP requests rejected: {:?}",
                    r.rejected
                );
                if let Some(v) = check(&r.spans) {
                    return v;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "dbos-testkit: timed out after {timeout:?} waiting for {what}; received: {:#?}",
                    r.spans
                        .iter()
                        .map(|s| (&s.name, &s.trace_id, s.attr("dbos.operation.name")))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn lock(m: &Mutex<Received>) -> std::sync::MutexGuard<'_, Received> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Serves the requests of one connection (HTTP/1.1 keep-alive) until it closes.
fn serve(stream: TcpStream, received: &Mutex<Received>) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut out = write_half;
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut length = 0usize;
        let mut content_type = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "content-type" => content_type = value.trim().to_owned(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let ok = request_line.starts_with("POST /v1/traces ")
            && content_type == "application/x-protobuf";
        let discard = lock(received).discard;
        let decoded = if ok && discard {
            Ok(ExportTraceServiceRequest::default())
        } else if ok {
            ExportTraceServiceRequest::decode(body.as_slice()).map_err(|e| e.to_string())
        } else {
            Err(format!(
                "{} with content type `{content_type}`",
                request_line.trim_end()
            ))
        };
        let status = match decoded {
            Ok(request) => {
                let mut r = lock(received);
                r.requests += 1;
                r.bytes += length;
                r.spans.extend(spans_of(request));
                "200 OK"
            }
            Err(e) => {
                lock(received).rejected.push(e);
                "400 Bad Request"
            }
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"
        );
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn spans_of(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(ReceivedSpan {
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    attributes: s
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                            )
                        })
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    out
}
