//! The OTLP/HTTP span exporter behind [`Telemetry::otlp`](super::otel::Telemetry::otlp) and
//! [`Telemetry::from_env`](super::otel::Telemetry::from_env): each batch the SDK's batch
//! processor hands over is written straight from its `SpanData` into the protobuf bytes of an
//! `ExportTraceServiceRequest` (one pass, into one reused buffer, no intermediate messages)
//! and posted over a kept-alive HTTP/1.1 connection.
//!
//! It replaces `opentelemetry-otlp`'s exporter, which converted every span into
//! `opentelemetry-proto`'s messages (a `String` per attribute key and value) and had `prost`
//! size every nested message again at each level: that was half of what exporting cost a
//! workflow (the Observability chapter, "Cost").

use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use crate::error::{Error, Result};

// ---------------------------------------------------------------------------------------
// The protobuf writer.

/// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn key(buf: &mut Vec<u8>, field: u32, wire: u32) {
    varint(buf, u64::from(field << 3 | wire));
}

fn bytes_field(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(buf, field, LEN);
    varint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// A string or bytes field, left out when empty (proto3's default).
fn opt_bytes(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
    if !b.is_empty() {
        bytes_field(buf, field, b);
    }
}

/// A varint field, left out when zero.
fn opt_varint(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(buf, field, VARINT);
        varint(buf, v);
    }
}

fn fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(buf, field, FIXED64);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

fn fixed32(buf: &mut Vec<u8>, field: u32, v: u32) {
    if v != 0 {
        key(buf, field, FIXED32);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

/// A nested message (always written, even empty: a present message is not an absent one),
/// its body written by `body` in place. Its length goes before it once known: one byte is
/// set aside, and the body moved up in the rare case the length needs more.
fn message(buf: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    key(buf, field, LEN);
    let at = buf.len();
    buf.push(0);
    body(buf);
    let len = buf.len() - at - 1;
    if len < 0x80 {
        buf[at] = len as u8;
        return;
    }
    let mut prefix = Vec::with_capacity(10);
    varint(&mut prefix, len as u64);
    let extra = prefix.len() - 1;
    buf.resize(buf.len() + extra, 0);
    buf.copy_within(at + 1..at + 1 + len, at + 1 + extra);
    buf[at..at + prefix.len()].copy_from_slice(&prefix);
}

// ---------------------------------------------------------------------------------------
// OTLP messages (opentelemetry/proto/{collector/trace,trace,common,resource}/v1, field
// numbers as published there).

/// `AnyValue`: its one value, written even when it is the default.
fn any_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => bytes_field(buf, 1, s.as_str().as_bytes()),
        Value::Bool(b) => {
            key(buf, 2, VARINT);
            buf.push(u8::from(*b));
        }
        Value::I64(i) => {
            key(buf, 3, VARINT);
            varint(buf, *i as u64);
        }
        Value::F64(f) => {
            key(buf, 4, FIXED64);
            buf.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Array(a) => message(buf, 5, |buf| array(buf, a)),
        // `Value` is non-exhaustive: a kind added later goes as its text.
        other => bytes_field(buf, 1, other.as_str().as_bytes()),
    }
}

/// `ArrayValue`: `values` = 1.
fn array(buf: &mut Vec<u8>, a: &Array) {
    fn each<T>(buf: &mut Vec<u8>, items: &[T], one: impl Fn(&mut Vec<u8>, &T)) {
        for item in items {
            message(buf, 1, |buf| one(buf, item));
        }
    }
    match a {
        Array::Bool(v) => each(buf, v, |buf, b| any_value(buf, &Value::Bool(*b))),
        Array::I64(v) => each(buf, v, |buf, i| any_value(buf, &Value::I64(*i))),
        Array::F64(v) => each(buf, v, |buf, f| any_value(buf, &Value::F64(*f))),
        Array::String(v) => each(buf, v, |buf, s| bytes_field(buf, 1, s.as_str().as_bytes())),
        other => message(buf, 1, |buf| {
            bytes_field(buf, 1, other.to_string().as_bytes())
        }),
    }
}

/// How many bytes `v` takes as a varint.
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// `KeyValue`: `key` = 1, `value` = 2. A string, integer or bool value (every attribute this
/// library writes) has its lengths computed first and written in front, without the
/// placeholder and the fix-up `message` needs for a body of unknown length.
fn key_value(buf: &mut Vec<u8>, field: u32, k: &str, v: &Value) {
    // The `AnyValue`'s length: its one field's key (one byte) and body.
    let any_len = match v {
        Value::String(s) => {
            let len = s.as_str().len();
            1 + varint_len(len as u64) + len
        }
        Value::I64(i) => 1 + varint_len(*i as u64),
        Value::Bool(_) => 2,
        _ => {
            return message(buf, field, |buf| {
                opt_bytes(buf, 1, k.as_bytes());
                message(buf, 2, |buf| any_value(buf, v));
            })
        }
    };
    let key_len = if k.is_empty() {
        0
    } else {
        1 + varint_len(k.len() as u64) + k.len()
    };
    key(buf, field, LEN);
    varint(
        buf,
        (key_len + 1 + varint_len(any_len as u64) + any_len) as u64,
    );
    opt_bytes(buf, 1, k.as_bytes());
    key(buf, 2, LEN);
    varint(buf, any_len as u64);
    any_value(buf, v);
}

fn attributes<'a>(buf: &mut Vec<u8>, field: u32, kvs: impl IntoIterator<Item = &'a KeyValue>) {
    for kv in kvs {
        key_value(buf, field, kv.key.as_str(), &kv.value);
    }
}

/// `Resource`: `attributes` = 1.
fn resource(buf: &mut Vec<u8>, r: &Resource) {
    for (k, v) in r.iter() {
        key_value(buf, 1, k.as_str(), v);
    }
}

/// `InstrumentationScope`: `name` = 1, `version` = 2, `attributes` = 3.
fn scope(buf: &mut Vec<u8>, s: &InstrumentationScope) {
    opt_bytes(buf, 1, s.name().as_bytes());
    opt_bytes(buf, 2, s.version().unwrap_or_default().as_bytes());
    attributes(buf, 3, s.attributes());
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `Span.flags` (and `Link.flags`): the W3C trace flags in the low byte, and whether the
/// parent (the linked span) is remote, saying that this is known.
fn flags(context_flags: u8, remote: bool) -> u32 {
    const HAS_IS_REMOTE: u32 = 0x100;
    const IS_REMOTE: u32 = 0x200;
    u32::from(context_flags) | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 }
}

fn trace_state(buf: &mut Vec<u8>, field: u32, cx: &SpanContext) {
    // Most spans have none: no `String` built (and dropped) for them.
    if *cx.trace_state() == TraceState::NONE {
        return;
    }
    let state = cx.trace_state().header();
    opt_bytes(buf, field, state.as_bytes());
}

/// `Span`.
fn span(buf: &mut Vec<u8>, s: &SpanData) {
    let cx = &s.span_context;
    bytes_field(buf, 1, &cx.trace_id().to_bytes());
    bytes_field(buf, 2, &cx.span_id().to_bytes());
    trace_state(buf, 3, cx);
    if s.parent_span_id != SpanId::INVALID {
        bytes_field(buf, 4, &s.parent_span_id.to_bytes());
    }
    opt_bytes(buf, 5, s.name.as_bytes());
    let kind = match s.span_kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    opt_varint(buf, 6, kind);
    fixed64(buf, 7, nanos(s.start_time));
    fixed64(buf, 8, nanos(s.end_time));
    attributes(buf, 9, &s.attributes);
    opt_varint(buf, 10, u64::from(s.dropped_attributes_count));
    for e in s.events.iter() {
        // `Span.Event`: `time_unix_nano` = 1, `name` = 2, `attributes` = 3,
        // `dropped_attributes_count` = 4.
        message(buf, 11, |buf| {
            fixed64(buf, 1, nanos(e.timestamp));
            opt_bytes(buf, 2, e.name.as_bytes());
            attributes(buf, 3, &e.attributes);
            opt_varint(buf, 4, u64::from(e.dropped_attributes_count));
        });
    }
    opt_varint(buf, 12, u64::from(s.events.dropped_count));
    for l in s.links.iter() {
        // `Span.Link`: `trace_id` = 1, `span_id` = 2, `trace_state` = 3, `attributes` = 4,
        // `dropped_attributes_count` = 5, `flags` = 6.
        message(buf, 13, |buf| {
            let lc = &l.span_context;
            bytes_field(buf, 1, &lc.trace_id().to_bytes());
            bytes_field(buf, 2, &lc.span_id().to_bytes());
            trace_state(buf, 3, lc);
            attributes(buf, 4, &l.attributes);
            opt_varint(buf, 5, u64::from(l.dropped_attributes_count));
            fixed32(buf, 6, flags(lc.trace_flags().to_u8(), lc.is_remote()));
        });
    }
    opt_varint(buf, 14, u64::from(s.links.dropped_count));
    // `Status`: `message` = 2, `code` = 3 (UNSET 0, OK 1, ERROR 2); always present.
    message(buf, 15, |buf| match &s.status {
        Status::Unset => {}
        Status::Ok => opt_varint(buf, 3, 1),
        Status::Error { description } => {
            opt_bytes(buf, 2, description.as_bytes());
            opt_varint(buf, 3, 2);
        }
    });
    fixed32(
        buf,
        16,
        flags(cx.trace_flags().to_u8(), s.parent_span_is_remote),
    );
}

/// Writes the `ExportTraceServiceRequest` for `spans` of `res` into `buf` (cleared first):
/// one `ResourceSpans` holding a `ScopeSpans` per instrumentation scope, in order of first
/// appearance.
pub(crate) fn encode_request(buf: &mut Vec<u8>, res: &Resource, spans: &[SpanData]) {
    buf.clear();
    // `ExportTraceServiceRequest.resource_spans` = 1.
    message(buf, 1, |buf| {
        // `ResourceSpans`: `resource` = 1, `scope_spans` = 2, `schema_url` = 3.
        message(buf, 1, |buf| resource(buf, res));
        for (i, first) in spans.iter().enumerate() {
            let s = &first.instrumentation_scope;
            // A scope seen before was written with its first span.
            if spans[..i].iter().any(|p| p.instrumentation_scope == *s) {
                continue;
            }
            // `ScopeSpans`: `scope` = 1, `spans` = 2, `schema_url` = 3.
            message(buf, 2, |buf| {
                message(buf, 1, |buf| scope(buf, s));
                for one in spans[i..].iter().filter(|p| p.instrumentation_scope == *s) {
                    message(buf, 2, |buf| span(buf, one));
                }
                opt_bytes(buf, 3, s.schema_url().unwrap_or_default().as_bytes());
            });
        }
        opt_bytes(buf, 3, res.schema_url().unwrap_or_default().as_bytes());
    });
}

// ---------------------------------------------------------------------------------------
// The exporter.

/// Where and how to post: resolved once, from the caller and the `OTEL_*` variables.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `host:port`, to connect to and for the `Host` header.
    authority: String,
    /// The request target: the URL's path and query.
    path: String,
    /// Extra header lines, each ending in CRLF.
    headers: String,
    timeout: Duration,
}

impl Target {
    /// The target for the full traces URL `url` (`http://host:port/v1/traces`), with the
    /// headers, timeout and compression the `OTEL_*` variables give.
    pub(crate) fn from_url(url: &str) -> Result<Target> {
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            return Err(Error::config(format!(
                "the OTLP endpoint `{url}`: this build exports over plain HTTP only (no TLS); \
                 export to a local collector's `http://` port and let it forward over TLS"
            )));
        } else {
            return Err(Error::config(format!(
                "the OTLP endpoint `{url}` is not an `http://` URL"
            )));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        if authority.is_empty() || authority.contains(char::is_whitespace) {
            return Err(Error::config(format!(
                "the OTLP endpoint `{url}` names no host"
            )));
        }
        // A port, unless the authority ends in one (after an IPv6 literal's `]`).
        let has_port = authority.rsplit_once(':').is_some_and(|(host, port)| {
            !port.is_empty() && !port.contains(']') && !host.is_empty()
        });
        let authority = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let var = |names: [&str; 2]| {
            names
                .into_iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
        };
        if let Some(c) = var([
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ]) {
            if !c.trim().eq_ignore_ascii_case("none") {
                return Err(Error::config(format!(
                    "OTLP compression `{c}`: this build sends uncompressed bodies only; unset it \
                     or set it to `none`"
                )));
            }
        }
        let timeout = var([
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ])
        .and_then(|t| t.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis);
        let mut headers = String::new();
        if let Some(list) = var([
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ]) {
            for pair in list.split(',') {
                let Some((name, value)) = pair.split_once('=') else {
                    continue;
                };
                let (name, value) = (name.trim(), percent_decode(value.trim()));
                let bad = |c: char| c.is_control() || c == ':';
                if name.is_empty() || name.contains(bad) || value.contains(char::is_control) {
                    return Err(Error::config(format!(
                        "OTEL_EXPORTER_OTLP_HEADERS: `{name}` is not a header name and value"
                    )));
                }
                headers.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        Ok(Target {
            authority,
            path,
            headers,
            timeout,
        })
    }
}

/// `%XX` escapes decoded (the headers variable's values are URL-encoded); text that does not
/// decode to UTF-8 is kept as given.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

/// The span exporter: encodes each batch and posts it.
pub(crate) struct OtlpHttpExporter {
    target: Target,
    /// The resource's attributes, as the SDK sets them before the first export.
    resource: Resource,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    body: Vec<u8>,
    response: Vec<u8>,
    connection: Option<TcpStream>,
}

impl fmt::Debug for OtlpHttpExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpHttpExporter")
            .field("authority", &self.target.authority)
            .field("path", &self.target.path)
            .finish_non_exhaustive()
    }
}

impl OtlpHttpExporter {
    pub(crate) fn new(target: Target) -> OtlpHttpExporter {
        OtlpHttpExporter {
            target,
            resource: Resource::builder_empty().build(),
            state: Mutex::new(State::default()),
        }
    }

    fn post(&self, batch: &[SpanData]) -> io::Result<()> {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        encode_request(&mut state.body, &self.resource, batch);
        // A kept-alive connection the collector closed meanwhile fails at once: then once more
        // on a new one. A failure on a new connection is the export's.
        let reused = state.connection.is_some();
        match self.exchange(state) {
            Err(e) if reused && e.kind() != io::ErrorKind::InvalidData => {
                state.connection = None;
                self.exchange(state)
            }
            other => other,
        }
    }

    fn exchange(&self, state: &mut State) -> io::Result<()> {
        let t = &self.target;
        let stream = match &mut state.connection {
            Some(s) => s,
            None => state.connection.insert(connect(&t.authority, t.timeout)?),
        };
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n{}\r\n",
            t.path,
            t.authority,
            state.body.len(),
            t.headers
        );
        let sent = stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(&state.body));
        let answer = sent.and_then(|()| read_response(stream, &mut state.response));
        match answer {
            Ok((status, keep)) => {
                if !keep {
                    state.connection = None;
                }
                if (200..300).contains(&status) {
                    Ok(())
                } else {
                    let text = String::from_utf8_lossy(&state.response);
                    Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "the collector answered {status}: {}",
                            text.chars().take(300).collect::<String>()
                        ),
                    ))
                }
            }
            Err(e) => {
                state.connection = None;
                Err(e)
            }
        }
    }
}

fn connect(authority: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{authority} resolves to no address"),
    );
    for addr in authority.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Reads one HTTP/1.1 response into `buf` (its body, once read, replaces the whole): its
/// status, and whether the connection stays open for the next request.
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<(u16, bool)> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let mut more = |buf: &mut Vec<u8>| -> io::Result<usize> {
        let n = stream.read(&mut chunk)?;
        buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    };
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n", 0) {
            break i + 4;
        }
        if more(buf)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    };
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let head =
        std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("a response head not in text"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("a response without a status"))?;
    let mut keep = version == "HTTP/1.1";
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| bad("a bad Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            keep = !value.eq_ignore_ascii_case("close");
        }
    }
    let mut body = Vec::new();
    if chunked {
        let mut at = head_end;
        loop {
            let line_end = loop {
                if let Some(i) = find(buf, b"\r\n", at) {
                    break i;
                }
                if more(buf)? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            };
            let size_text = std::str::from_utf8(&buf[at..line_end]).unwrap_or_default();
            let size_text = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("a bad chunk size"))?;
            at = line_end + 2;
            if size == 0 {
                // Trailers, if any, up to the empty line.
                while find(buf, b"\r\n", at) != Some(at) {
                    match find(buf, b"\r\n", at) {
                        Some(i) => at = i + 2,
                        None if more(buf)? == 0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                        None => {}
                    }
                }
                break;
            }
            while buf.len() < at + size + 2 {
                if more(buf)? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            body.extend_from_slice(&buf[at..at + size]);
            at += size + 2;
        }
    } else if let Some(len) = length {
        while buf.len() < head_end + len {
            if more(buf)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        body.extend_from_slice(&buf[head_end..head_end + len]);
    } else {
        // No length: the body runs to the end of the connection.
        while more(buf)? != 0 {}
        body.extend_from_slice(&buf[head_end..]);
        keep = false;
    }
    *buf = body;
    Ok((status, keep))
}

impl SpanExporter for OtlpHttpExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.post(&batch).map_err(|e| {
            OTelSdkError::InternalFailure(format!(
                "exporting {} spans to http://{}{}: {e}",
                batch.len(),
                self.target.authority,
                self.target.path
            ))
        })
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.clone();
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use opentelemetry::trace::{
        Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    use opentelemetry_sdk::Resource;
    use prost::Message as _;

    use super::{encode_request, message, percent_decode, read_response, OtlpHttpExporter, Target};

    fn context(trace: u128, span: u64, flags: u8, state: &str, remote: bool) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            TraceFlags::new(flags),
            remote,
            state.parse::<TraceState>().expect("a trace state"),
        )
    }

    fn span(i: u64, scope: &InstrumentationScope) -> SpanData {
        let at = std::time::UNIX_EPOCH + Duration::from_nanos(1_765_000_000_123_456_789 + i);
        let long = "x".repeat(200);
        SpanData {
            span_context: context(
                0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736 + u128::from(i),
                0x00f0_67aa_0ba9_02b7 + i,
                1,
                if i.is_multiple_of(2) {
                    ""
                } else {
                    "vendor=v1,other=2"
                },
                false,
            ),
            parent_span_id: if i.is_multiple_of(3) {
                SpanId::INVALID
            } else {
                SpanId::from(0x1111 + i)
            },
            parent_span_is_remote: i % 3 == 1,
            span_kind: [
                SpanKind::Internal,
                SpanKind::Server,
                SpanKind::Client,
                SpanKind::Producer,
                SpanKind::Consumer,
            ][(i % 5) as usize]
                .clone(),
            name: Cow::Owned(format!("span-{i}")),
            start_time: at,
            end_time: at + Duration::from_millis(3),
            attributes: vec![
                KeyValue::new("dbos.operation.workflow_id", format!("wf-{i}")),
                KeyValue::new("empty", ""),
                KeyValue::new("long", long.clone()),
                KeyValue::new("attempt", i as i64 - 2),
                KeyValue::new("zero", 0i64),
                KeyValue::new("flag", i.is_multiple_of(2)),
                KeyValue::new("no", false),
                KeyValue::new("ratio", -0.25),
                KeyValue::new("nil", 0.0),
                KeyValue::new("min", i64::MIN),
                KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
                KeyValue::new("ints", Value::Array(Array::I64(vec![0, -1, 300]))),
                KeyValue::new("floats", Value::Array(Array::F64(vec![1.5]))),
                KeyValue::new(
                    "strings",
                    Value::Array(Array::String(vec![
                        StringValue::from("a"),
                        StringValue::from(""),
                    ])),
                ),
                KeyValue::new("none", Value::Array(Array::I64(vec![]))),
            ],
            dropped_attributes_count: (i % 2) as u32 * 3,
            events: {
                let mut e = SpanEvents::default();
                e.events.push(Event::new(
                    "retry",
                    at,
                    vec![
                        KeyValue::new("dbos.event", "retry"),
                        KeyValue::new("n", 2i64),
                    ],
                    1,
                ));
                e.events.push(Event::new("", at, vec![], 0));
                e.dropped_count = i as u32;
                e
            },
            links: {
                let mut l = SpanLinks::default();
                l.links.push(Link::new(
                    context(7, 8, 0, "k=v", true),
                    vec![KeyValue::new("link", long)],
                    2,
                ));
                l.dropped_count = 1;
                l
            },
            status: match i % 3 {
                0 => Status::Unset,
                1 => Status::Ok,
                _ => Status::error(format!("failed {i}")),
            },
            instrumentation_scope: scope.clone(),
        }
    }

    /// What `opentelemetry-proto`'s own conversion makes of the same spans, the message
    /// `opentelemetry-otlp` sent: our bytes decode to exactly it.
    fn check(resource: &Resource, spans: Vec<SpanData>) {
        let mut buf = vec![9, 9, 9];
        encode_request(&mut buf, resource, &spans);
        let ours = ExportTraceServiceRequest::decode(buf.as_slice()).expect("our bytes decode");
        let expected = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans,
                &ResourceAttributesWithSchema::from(resource),
            ),
        };
        assert_eq!(ours, expected);
        // Nothing more than prost writes for it (no field it leaves out as default).
        assert_eq!(buf.len(), expected.encoded_len());
    }

    #[test]
    fn encoded_spans_decode_to_what_the_reference_conversion_builds() {
        let ours = InstrumentationScope::builder("dbos-core").build();
        let other = InstrumentationScope::builder("other")
            .with_version("1.2.3")
            .with_schema_url("https://opentelemetry.io/schemas/1.21.0")
            .with_attributes([KeyValue::new("scope.attr", 5i64)])
            .build();
        let resource = Resource::builder()
            .with_service_name("shop")
            .with_attribute(KeyValue::new("deployment.environment", "test"))
            .build();
        // Scopes interleaved: grouped in order of first appearance.
        let spans: Vec<SpanData> = (0..40)
            .map(|i| span(i, if i % 4 == 3 { &other } else { &ours }))
            .collect();
        check(&resource, spans.clone());
        // One span; none; an empty resource; a resource with a schema.
        check(&resource, spans[..1].to_vec());
        check(&resource, vec![]);
        check(&Resource::builder_empty().build(), spans[3..5].to_vec());
        let with_schema = Resource::builder_empty()
            .with_schema_url([KeyValue::new("a", "b")], "https://example.com/schema")
            .build();
        check(&with_schema, spans[..2].to_vec());
        // A span whose encoding is over 16 KiB (a length of three varint bytes).
        let mut big = span(1, &ours);
        big.attributes
            .push(KeyValue::new("big", "y".repeat(20_000)));
        check(&resource, vec![big]);
    }

    /// A nested message's length, written before it once its body is written, is the
    /// canonical varint at every size: one byte up to 127, two from 128 (the first size that
    /// moves the body), three from 16,384.
    #[test]
    fn a_nested_messages_length_is_the_varint_prost_writes_at_every_size() {
        for n in (0..=300).chain([16_383, 16_384, 20_000]) {
            let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let mut ours = vec![0xAA];
            message(&mut ours, 2, |buf| buf.extend_from_slice(&body));
            let mut expected = vec![0xAA];
            prost::encoding::encode_key(
                2,
                prost::encoding::WireType::LengthDelimited,
                &mut expected,
            );
            prost::encoding::encode_varint(n as u64, &mut expected);
            expected.extend_from_slice(&body);
            assert_eq!(ours, expected, "a body of {n} bytes");
        }
    }

    /// What `read_response` makes of a response a server writes in `pieces`, a pause between
    /// each, then holding the connection open for a while (`close`: closing it at once): a
    /// reader that waits for a byte the response does not have times out.
    fn response_in_pieces(pieces: &[&[u8]], close: bool) -> std::io::Result<(u16, bool, Vec<u8>)> {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("its address").port();
        let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("the reader connects");
            for piece in pieces {
                conn.write_all(&piece).expect("a piece written");
                conn.flush().expect("flushed");
                std::thread::sleep(std::time::Duration::from_millis(30));
            }
            if !close {
                std::thread::sleep(std::time::Duration::from_millis(1_500));
            }
        });
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connected");
        stream
            .set_read_timeout(Some(std::time::Duration::from_millis(700)))
            .expect("a read timeout");
        let mut buf = Vec::new();
        let read = read_response(&mut stream, &mut buf);
        drop(stream);
        server.join().expect("the server thread");
        read.map(|(status, keep)| (status, keep, buf))
    }

    #[test]
    fn a_response_is_read_whatever_its_framing_and_however_it_arrives() {
        // Chunked, every part in a read of its own: a chunk line, a chunk's data split, a
        // chunk extension, the last chunk, a trailer, the final empty line.
        let chunked: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5\r",
            b"\nhel",
            b"lo\r\n",
            b"6;ext=1\r\n world\r\n",
            b"20\r\n0123456789abcdefghijklmnopqrstuv\r\n",
            b"0\r\n",
            b"X-Trailer: a\r\n",
            b"\r\n",
        ];
        assert_eq!(
            response_in_pieces(chunked, false).expect("a chunked response"),
            (
                200,
                true,
                b"hello world0123456789abcdefghijklmnopqrstuv".to_vec()
            )
        );
        // The same with every byte in a read of its own.
        let whole: Vec<u8> = chunked.concat();
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(
            response_in_pieces(&bytes, false).expect("a chunked response byte by byte"),
            (
                200,
                true,
                b"hello world0123456789abcdefghijklmnopqrstuv".to_vec()
            )
        );
        // A length, the body split.
        let sized: &[&[u8]] = &[
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\nab",
            b"cde",
        ];
        assert_eq!(
            response_in_pieces(sized, false).expect("a sized response"),
            (400, true, b"abcde".to_vec())
        );
        // No length: the body runs to the end of the connection, which is not kept.
        let to_the_end: &[&[u8]] = &[b"HTTP/1.1 200 OK\r\n\r\nto ", b"the ", b"end"];
        assert_eq!(
            response_in_pieces(to_the_end, true).expect("a response to the end"),
            (200, false, b"to the end".to_vec())
        );
        // `Connection: close` is not kept; HTTP/1.0 is not either.
        let closing: &[&[u8]] =
            &[b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"];
        assert_eq!(
            response_in_pieces(closing, false).expect("a closing response"),
            (200, false, Vec::new())
        );
        // Cut short, in each framing: an error, not a short body taken for the whole.
        for cut in [
            &[&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"[..]][..],
            &[&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"[..]][..],
            &[&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\r\n"[..]][..],
            &[&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc"[..]][..],
            &[&b"HTTP/1.1 200 OK\r\nContent-Len"[..]][..],
        ] {
            let e = response_in_pieces(cut, true).expect_err("a response cut short");
            assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
        }
    }

    #[test]
    fn header_values_are_percent_decoded() {
        assert_eq!(percent_decode("Basic%20abc%3D%3D"), "Basic abc==");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41"), "A");
    }

    #[test]
    fn endpoints_and_the_otel_variables_resolve_to_a_target() {
        let t = Target::from_url("http://127.0.0.1:4318/v1/traces").expect("a target");
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:4318", "/v1/traces")
        );
        assert_eq!(t.timeout, Duration::from_secs(10));
        let t = Target::from_url("http://collector/v1/traces").expect("a target");
        assert_eq!(t.authority, "collector:80");
        let t = Target::from_url("http://[::1]/x").expect("a target");
        assert_eq!(t.authority, "[::1]:80");
        let t = Target::from_url("http://[::1]:9/x?a=b").expect("a target");
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("[::1]:9", "/x?a=b")
        );
        let t = Target::from_url("http://h:1?a=b").expect("a target");
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("h:1", "/?a=b"));
        let t = Target::from_url("http://h:1").expect("a target");
        assert_eq!(t.path, "/");
        for bad in [
            "https://h:4318/v1/traces",
            "h:4318/v1/traces",
            "http:///v1/traces",
        ] {
            assert!(Target::from_url(bad).is_err(), "{bad}");
        }
        // The variables: every one this test sets is read by this module only.
        std::env::set_var("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b , x=1,broken");
        std::env::set_var("OTEL_EXPORTER_OTLP_TIMEOUT", "2500");
        let t = Target::from_url("http://h:1/v1/traces").expect("a target");
        assert_eq!(t.headers, "api-key: a b\r\nx: 1\r\n");
        assert_eq!(t.timeout, Duration::from_millis(2500));
        // The traces-specific variable wins.
        std::env::set_var("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "only=this");
        std::env::set_var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700");
        let t = Target::from_url("http://h:1/v1/traces").expect("a target");
        assert_eq!(t.headers, "only: this\r\n");
        assert_eq!(t.timeout, Duration::from_millis(700));
        // A value that would end the header line, a name with a colon, an empty name, a name
        // with a control character: each refused.
        for bad in ["bad=line%0d%0ainjected: 1", "a:b=1", "=v", "a\tb=1"] {
            std::env::set_var("OTEL_EXPORTER_OTLP_TRACES_HEADERS", bad);
            assert!(Target::from_url("http://h:1/v1/traces").is_err(), "{bad}");
        }
        std::env::remove_var("OTEL_EXPORTER_OTLP_TRACES_HEADERS");
        std::env::set_var("OTEL_EXPORTER_OTLP_COMPRESSION", "none");
        assert!(Target::from_url("http://h:1/v1/traces").is_ok());
        std::env::set_var("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip");
        assert!(Target::from_url("http://h:1/v1/traces").is_err());
        for v in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ] {
            std::env::remove_var(v);
        }
    }

    /// Reads one request off `stream`: its head and its body.
    fn request(stream: &mut std::net::TcpStream) -> Option<(String, Vec<u8>)> {
        use std::io::Read as _;
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).ok()? == 0 {
                return None;
            }
            got.push(byte[0]);
        }
        let head = String::from_utf8(got).expect("a text head");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|l| l.trim().parse().ok())
            .expect("a Content-Length");
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).ok()?;
        Some((head, body))
    }

    #[test]
    fn batches_are_posted_on_a_kept_connection_and_a_closed_one_is_replaced() {
        use std::io::Write as _;
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("its address").port();
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut accepts = 0;
            // Connection 1: two requests kept alive (the second answered in chunks), then
            // closed by the server without a word.
            let (mut c, _) = listener.accept().expect("a connection");
            accepts += 1;
            seen.push(request(&mut c).expect("request 1"));
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .expect("answer");
            seen.push(request(&mut c).expect("request 2"));
            c.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            )
            .expect("answer");
            drop(c);
            // Connection 2: the third request, sent again on a new connection; then a fourth
            // the collector refuses.
            let (mut c, _) = listener.accept().expect("a connection");
            accepts += 1;
            seen.push(request(&mut c).expect("request 3"));
            c.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                .expect("answer");
            seen.push(request(&mut c).expect("request 4"));
            c.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 9\r\nConnection: close\r\n\r\nbad spans")
                .expect("answer");
            (seen, accepts)
        });
        let mut target =
            Target::from_url(&format!("http://127.0.0.1:{port}/v1/traces")).expect("a target");
        target.headers = "api-key: k\r\n".to_owned();
        let mut exporter = OtlpHttpExporter::new(target);
        let resource = Resource::builder_empty()
            .with_service_name("posted")
            .build();
        opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource);
        let scope = InstrumentationScope::builder("dbos-core").build();
        let batches: Vec<Vec<SpanData>> = (0..4)
            .map(|b| (0..=b).map(|i| span(i, &scope)).collect())
            .collect();
        for b in &batches[..3] {
            exporter.post(b).expect("exported");
        }
        let refused = exporter.post(&batches[3]).expect_err("refused");
        assert!(refused.to_string().contains("400: bad spans"), "{refused}");
        let (seen, accepts) = server.join().expect("the server");
        assert_eq!(accepts, 2);
        assert_eq!(seen.len(), 4);
        for ((head, body), batch) in seen.iter().zip(batches) {
            assert!(head.starts_with("POST /v1/traces HTTP/1.1\r\n"), "{head}");
            assert!(
                head.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
                "{head}"
            );
            assert!(
                head.contains("\r\nContent-Type: application/x-protobuf\r\n"),
                "{head}"
            );
            assert!(head.contains("\r\napi-key: k\r\n"), "{head}");
            let got = ExportTraceServiceRequest::decode(body.as_slice()).expect("a request");
            let expected = group_spans_by_resource_and_scope(
                batch,
                &ResourceAttributesWithSchema::from(&resource),
            );
            assert_eq!(got.resource_spans, expected);
        }
        // The refused answer closed the connection: nothing is kept.
        assert!(exporter.state.lock().expect("state").connection.is_none());
    }
}
