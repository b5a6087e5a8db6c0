//! SER: large step outputs under today's `portable_json` against Rust-only candidate codecs
//! (issue 21 item 8: is a `serialization = "..."` option worth it?).
//!
//! W2's shape (workflows of 3 steps, 16 in flight) with each step returning a large value,
//! at three sizes (about 1 KB, 64 KB and 1 MB of `portable_json`, what a step stores today)
//! and two shapes: `records` (a list of small structs: strings, numbers, a bool, a list of
//! tags; what an API call or a query returns) and `bytes` (a `Vec<u8>`, JSON's worst case:
//! each byte a decimal number). The candidates are MessagePack (`rmp-serde`, compact
//! struct-as-array form) and `postcard`; both are binary and the `output` column is `text`, so
//! a candidate stores base64 (as a native codec in this library would have to). The
//! candidate's step returns that base64 text, which the library stores as a JSON string: the
//! bytes a candidate would store (plus two quotes), with its encoding cost inside the step.
//! Codecs alternate within each round, each round starting with the next codec, so drift and
//! order affect all alike. Also measured in the same
//! run, without the database: encode and decode time per value, and the bytes Postgres keeps
//! (`pg_column_size`, after its TOAST compression) next to the text's length.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use dbos_core::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::stats::{percentile_ms, CpuTime};
use crate::workloads::{config, scaled, spread};
use crate::{Report, Server};

/// One row of a typical result set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Record {
    id: u64,
    sku: String,
    name: String,
    price: f64,
    quantity: u32,
    tags: Vec<String>,
    active: bool,
}

/// The sizes measured: the `portable_json` length each value is built to reach.
const SIZES: [usize; 3] = [1 << 10, 64 << 10, 1 << 20];
const CODECS: [&str; 3] = ["portable_json", "msgpack", "postcard"];
const SHAPES: [&str; 2] = ["records", "bytes"];

struct Values {
    records: Vec<Vec<Record>>,
    bytes: Vec<Vec<u8>>,
}

/// The values, one per size and shape, built once (deterministic contents).
fn values() -> &'static Values {
    static VALUES: OnceLock<Values> = OnceLock::new();
    VALUES.get_or_init(|| Values {
        records: SIZES.iter().map(|&s| records(s)).collect(),
        bytes: SIZES.iter().map(|&s| bytes(s)).collect(),
    })
}

fn records(json_len: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let mut len = 2;
    let mut i: u64 = 0;
    while len < json_len {
        let r = Record {
            id: 100_000 + i,
            sku: format!("SKU-{:08X}", i.wrapping_mul(2_654_435_761) & 0xFFFF_FFFF),
            name: format!("Item number {i} of the catalogue"),
            price: (i % 9_973) as f64 / 7.0,
            quantity: (i % 97) as u32,
            tags: vec![format!("group-{}", i % 13), "in-stock".to_owned()],
            active: !i.is_multiple_of(3),
        };
        len += serde_json::to_string(&r).map_or(0, |s| s.len()) + 1;
        out.push(r);
        i += 1;
    }
    out
}

fn bytes(json_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut len = 2;
    let mut x: u32 = 0x9E37_79B9;
    while len < json_len {
        // xorshift: incompressible-looking contents, as a file or an image would be.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let b = (x >> 24) as u8;
        len += b.to_string().len() + 1;
        out.push(b);
    }
    out
}

fn b64(v: Vec<u8>) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}

fn fail(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Serialization, e.to_string())
}

#[step]
async fn records_portable_json(size: usize) -> Result<Vec<Record>, Error> {
    Ok(values().records[size].clone())
}

#[step]
async fn records_msgpack(size: usize) -> Result<String, Error> {
    let v = values().records[size].clone();
    Ok(b64(rmp_serde::to_vec(&v).map_err(fail)?))
}

#[step]
async fn records_postcard(size: usize) -> Result<String, Error> {
    let v = values().records[size].clone();
    Ok(b64(postcard::to_allocvec(&v).map_err(fail)?))
}

#[step]
async fn bytes_portable_json(size: usize) -> Result<Vec<u8>, Error> {
    Ok(values().bytes[size].clone())
}

#[step]
async fn bytes_msgpack(size: usize) -> Result<String, Error> {
    let v = values().bytes[size].clone();
    Ok(b64(rmp_serde::to_vec(&v).map_err(fail)?))
}

#[step]
async fn bytes_postcard(size: usize) -> Result<String, Error> {
    let v = values().bytes[size].clone();
    Ok(b64(postcard::to_allocvec(&v).map_err(fail)?))
}

/// Three steps of codec `codec` and shape `shape` returning the value of size index `size`.
#[workflow]
async fn large_outputs(codec: usize, shape: usize, size: usize) -> Result<usize, Error> {
    let mut n = 0;
    for _ in 0..3 {
        n += match (shape, codec) {
            (0, 0) => records_portable_json(size).await?.len(),
            (0, 1) => records_msgpack(size).await?.len(),
            (0, 2) => records_postcard(size).await?.len(),
            (1, 0) => bytes_portable_json(size).await?.len(),
            (1, 1) => bytes_msgpack(size).await?.len(),
            _ => bytes_postcard(size).await?.len(),
        };
    }
    Ok(n)
}

/// Encode and decode time of one value (median of `reps`), the encoded length (the text a
/// step stores: JSON, or base64 of the binary form), and whether it decodes to the same value.
fn codec_cost<T>(value: &T, codec: usize, reps: usize) -> (f64, f64, usize, bool)
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let encode = |v: &T| -> String {
        match codec {
            0 => dbos_core::codec::to_text(v).expect("encode"),
            1 => b64(rmp_serde::to_vec(v).expect("encode")),
            _ => b64(postcard::to_allocvec(v).expect("encode")),
        }
    };
    let decode = |t: &str| -> T {
        match codec {
            0 => dbos_core::codec::from_text(t, Some("portable_json"), "bench").expect("decode"),
            1 => rmp_serde::from_slice(
                &base64::engine::general_purpose::STANDARD
                    .decode(t)
                    .expect("base64"),
            )
            .expect("decode"),
            _ => postcard::from_bytes(
                &base64::engine::general_purpose::STANDARD
                    .decode(t)
                    .expect("base64"),
            )
            .expect("decode"),
        }
    };
    let text = encode(value);
    let exact = decode(&text) == *value;
    let (mut enc, mut dec) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let t = Instant::now();
        let text = std::hint::black_box(encode(value));
        enc.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(decode(&text));
        dec.push(t.elapsed());
    }
    let us = |v: &mut Vec<Duration>| percentile_ms(v, 50.0) * 1000.0;
    (us(&mut enc), us(&mut dec), text.len(), exact)
}

/// Workflows per round at each size (scaled): fewer of the larger ones.
fn per_round(size: usize) -> usize {
    scaled([200, 60, 8][size])
}

pub(crate) async fn serialization(server: &Server) -> Report {
    const ROUNDS: usize = 3;
    const IN_FLIGHT: usize = 16;
    let url = server.fresh_database("ser").await;
    let dbos = Dbos::launch(config(&url, IN_FLIGHT + 4))
        .await
        .expect("launch");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    values();
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for (shape, shape_name) in SHAPES.iter().enumerate() {
        for (size, &target) in SIZES.iter().enumerate() {
            let n = per_round(size);
            // Warm-up: every codec once at this size, connections and caches ready.
            for codec in 0..CODECS.len() {
                large_outputs(codec, shape, size)
                    .id(format!("warm-{codec}-{shape}-{size}"))
                    .on(&dbos)
                    .await
                    .expect("warm-up");
            }
            let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); CODECS.len()];
            let mut time = [Duration::ZERO; 3];
            let mut cpu = [CpuTime::default(); 3];
            for round in 0..ROUNDS {
                // Each round starts with another codec: no codec always runs first.
                for k in 0..CODECS.len() {
                    let codec = (k + round) % CODECS.len();
                    let (started, c0) = (Instant::now(), CpuTime::now());
                    let prefix = format!("{}-{shape}-{size}-{round}", CODECS[codec]);
                    lat[codec].extend(
                        spread(vec![dbos.clone(); IN_FLIGHT], n, move |dbos, i| {
                            let id = format!("{prefix}-{i}");
                            async move {
                                let t = Instant::now();
                                large_outputs(codec, shape, size)
                                    .id(id)
                                    .on(&dbos)
                                    .await
                                    .expect("workflow");
                                t.elapsed()
                            }
                        })
                        .await,
                    );
                    time[codec] += started.elapsed();
                    cpu[codec] = cpu[codec].add(CpuTime::now().since(c0));
                }
            }
            let reps = [200, 40, 5][size];
            for codec in 0..CODECS.len() {
                let step = format!("{shape_name}_{}", CODECS[codec]);
                let stored = client
                    .query_one(
                        "SELECT avg(octet_length(output))::float8, avg(pg_column_size(output))::float8
                           FROM dbos.operation_outputs WHERE function_name = $1 AND workflow_uuid LIKE $2",
                        &[&step, &format!("{}-{shape}-{size}-%", CODECS[codec])],
                    )
                    .await
                    .expect("stored bytes");
                let (text_len, kept): (f64, f64) = (stored.get(0), stored.get(1));
                let (enc_us, dec_us, _, exact) = if shape == 0 {
                    codec_cost(&values().records[size], codec, reps)
                } else {
                    codec_cost(&values().bytes[size], codec, reps)
                };
                let wf = ROUNDS * n;
                let rate = wf as f64 / time[codec].as_secs_f64();
                let p50 = percentile_ms(&mut lat[codec], 50.0);
                let (prog_us, server_us) = cpu[codec].per(wf);
                let line = format!(
                    "SER {shape_name} ~{} KiB {:<13} {rate:>7.1} wf/s  p50 {p50:>8.2} ms  CPU/wf {prog_us:>7.0} + {server_us:>7.0} µs  stored/step {text_len:>9.0} B text, {kept:>9.0} B kept  encode {enc_us:>8.1} µs  decode {dec_us:>8.1} µs  exact {exact}",
                    target >> 10,
                    CODECS[codec]
                );
                println!("{line}");
                lines.push(line);
                rows.push(json!({
                    "shape": shape_name, "json_bytes": target, "codec": CODECS[codec],
                    "wf_per_s": rate, "p50_ms": p50,
                    "cpu_us_per_wf": {"program": prog_us, "server": server_us},
                    "stored_text_bytes_per_step": text_len, "stored_kept_bytes_per_step": kept,
                    "encode_us": enc_us, "decode_us": dec_us, "round_trips_exactly": exact,
                }));
            }
        }
    }
    dbos.shutdown().await.expect("shutdown");
    Report {
        workload:
            "SER large step outputs (3 steps, 16 in flight; portable_json vs msgpack vs postcard)",
        summary: format!("{} rows; see the SER lines above", lines.len()),
        json: json!({"workload": "SER", "rows": rows}),
    }
}
