//! W6: a message round trip between two workflows (A sends, B receives and replies, A
//! receives), against a floor that writes the same rows with raw tokio-postgres and wakes on
//! raw LISTEN/NOTIFY.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use dbos_core::prelude::*;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

use crate::stats::percentile_ms;
use crate::workloads::{config, floor_db, scaled};
use crate::{Report, Server};

/// When each of A's round trips started and ended (the bench's clock, not part of the
/// workflow's state).
static MARKS: Mutex<Vec<(Instant, Option<Instant>)>> = Mutex::new(Vec::new());

fn round_trip_started() {
    MARKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((Instant::now(), None));
}

fn round_trip_ended() {
    if let Some(last) = MARKS.lock().unwrap_or_else(|p| p.into_inner()).last_mut() {
        last.1 = Some(Instant::now());
    }
}

fn take_marks() -> Vec<Duration> {
    std::mem::take(&mut *MARKS.lock().unwrap_or_else(|p| p.into_inner()))
        .into_iter()
        .filter_map(|(s, e)| e.map(|e| e - s))
        .collect()
}

/// A: sends `i` on "ping" and waits for it back on "pong", `n` times.
#[workflow]
async fn w6_ping(peer: String, n: i64) -> Result<i64, Error> {
    for i in 0..n {
        round_trip_started();
        dbos_core::send(peer.as_str(), &i, "ping").await?;
        let back = dbos_core::recv::<i64>("pong", Duration::from_secs(60)).await?;
        if back != Some(i) {
            return Err(Error::new(
                ErrorKind::WorkflowFailed,
                format!("expected {i}, got {back:?}"),
            ));
        }
        round_trip_ended();
    }
    Ok(n)
}

/// B: replies to `n` pings.
#[workflow]
async fn w6_pong(peer: String, n: i64) -> Result<i64, Error> {
    for _ in 0..n {
        let i = dbos_core::recv::<i64>("ping", Duration::from_secs(60))
            .await?
            .unwrap_or(-1);
        dbos_core::send(peer.as_str(), &i, "pong").await?;
    }
    Ok(n)
}

/// One round of `n` round trips on `dbos`: A's latencies.
pub(crate) async fn lib_round(dbos: &Dbos, n: usize) -> Vec<Duration> {
    let a = uuid::Uuid::new_v4().to_string();
    let b = uuid::Uuid::new_v4().to_string();
    let pong = w6_pong(a.clone(), n as i64)
        .id(b.clone())
        .on(dbos)
        .start()
        .await
        .expect("start B");
    let ping = w6_ping(b, n as i64)
        .id(a)
        .on(dbos)
        .start()
        .await
        .expect("start A");
    ping.result().await.expect("A");
    pong.result().await.expect("B");
    take_marks()
}

/// One side of the floor: a data connection with the statements prepared, and a listener
/// connection of its own, as each executor has.
struct Peer {
    id: String,
    client: Client,
    _listener: Client,
    send: Statement,
    sleep: Statement,
    consume: Statement,
    heard: mpsc::UnboundedReceiver<String>,
    next_fid: i32,
}

impl Peer {
    async fn connect(url: &str, id: &str) -> Peer {
        let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
        tokio::spawn(conn);
        let (listener, mut lconn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
        let (tx, heard) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match futures_util::future::poll_fn(|cx| lconn.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if tx.send(n.payload().to_owned()).is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
        });
        listener
            .batch_execute("LISTEN dbos_notifications_channel")
            .await
            .expect("LISTEN");
        let send = client
            .prepare(
                "WITH n AS (
                     INSERT INTO dbos.notifications (message_uuid, destination_uuid, topic, message, serialization,
                                                     created_at_epoch_ms)
                     VALUES ($1, $2, $3, $4, 'portable_json', $5))
                 INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, started_at_epoch_ms,
                                                    completed_at_epoch_ms, application_name)
                 VALUES ($6, $7, 'DBOS.send', $5, $5, 'bench')",
            )
            .await
            .expect("prepare send");
        let sleep = client
            .prepare(
                "INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output, serialization,
                                                    started_at_epoch_ms, completed_at_epoch_ms, application_name)
                 VALUES ($1, $2, 'DBOS.sleep', $3, 'portable_json', $4, $4, 'bench')",
            )
            .await
            .expect("prepare sleep");
        let consume = client
            .prepare(
                "WITH c AS (
                     UPDATE dbos.notifications SET consumed = true, consumed_by_function_id = $2
                      WHERE message_uuid = (SELECT message_uuid FROM dbos.notifications
                                             WHERE destination_uuid = $1 AND topic = $3 AND consumed = false
                                             ORDER BY created_at_epoch_ms LIMIT 1)
                        AND consumed = false
                     RETURNING message)
                 INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output, serialization,
                                                    started_at_epoch_ms, completed_at_epoch_ms, application_name)
                 SELECT $1, $2, 'DBOS.recv', message, 'portable_json', $4, $4, 'bench' FROM c
                 RETURNING output",
            )
            .await
            .expect("prepare consume");
        Peer {
            id: id.to_owned(),
            client,
            _listener: listener,
            send,
            sleep,
            consume,
            heard,
            next_fid: 0,
        }
    }

    fn fid(&mut self) -> i32 {
        self.next_fid += 1;
        self.next_fid
    }

    async fn send(&mut self, to: &str, topic: &str, value: i64) {
        let fid = self.fid();
        let uuid = uuid::Uuid::new_v4().to_string();
        self.client
            .execute(
                &self.send,
                &[
                    &uuid,
                    &to,
                    &topic,
                    &value.to_string(),
                    &now_ms(),
                    &self.id,
                    &fid,
                ],
            )
            .await
            .expect("send");
    }

    /// The deadline's row, then consume (waiting for a notification when nothing is there).
    async fn recv(&mut self, topic: &str) -> i64 {
        let fid = self.fid();
        let sleep_fid = self.fid();
        let deadline = (now_ms() as f64 / 1000.0 + 60.0).to_string();
        self.client
            .execute(&self.sleep, &[&self.id, &sleep_fid, &deadline, &now_ms()])
            .await
            .expect("deadline");
        let payload = format!("{}::{topic}", self.id);
        loop {
            while self.heard.try_recv().is_ok() {}
            let row = self
                .client
                .query_opt(&self.consume, &[&self.id, &fid, &topic, &now_ms()])
                .await
                .expect("consume");
            if let Some(row) = row {
                return row.get::<_, String>(0).parse().expect("a number");
            }
            loop {
                match tokio::time::timeout(Duration::from_secs(1), self.heard.recv()).await {
                    Ok(Some(p)) if p == payload => break,
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn floor_round(url: &str, admin: &Client, n: usize) -> Vec<Duration> {
    let a = uuid::Uuid::new_v4().to_string();
    let b = uuid::Uuid::new_v4().to_string();
    for id in [&a, &b] {
        admin
            .execute(
                "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, executor_id, application_version,
                     application_name, created_at, updated_at, recovery_attempts, owner_xid, creator_xid, serialization)
                 VALUES ($1, 'PENDING', 'w6', 'bench-exec', 'bench-v1', 'bench', $2, $2, 1, $1, $1, 'portable_json')",
                &[id, &now_ms()],
            )
            .await
            .expect("status row");
    }
    let mut pa = Peer::connect(url, &a).await;
    let mut pb = Peer::connect(url, &b).await;
    let b_task = tokio::spawn(async move {
        for _ in 0..n {
            let i = pb.recv("ping").await;
            pb.send(&a, "pong", i).await;
        }
    });
    let mut out = Vec::with_capacity(n);
    for i in 0..n as i64 {
        let t = Instant::now();
        pa.send(&b, "ping", i).await;
        let back = pa.recv("pong").await;
        assert_eq!(back, i, "floor round trip");
        out.push(t.elapsed());
    }
    b_task.await.expect("B");
    out
}

/// W6: 500 round trips (A sends, B receives and replies, A receives), the library and the
/// floor in alternating rounds of 125.
pub(crate) async fn w6_messages(server: &Server) -> Report {
    const ROUNDS: usize = 4;
    let per_round = scaled(125);
    let url = server.fresh_database("w6").await;
    let dbos = Dbos::launch(config(&url, 8)).await.expect("launch");
    let floor_url = floor_db(server, "w6_floor").await;
    let (admin, conn) = tokio_postgres::connect(&floor_url, NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    // Warm-up: connections, prepared statements, the listener.
    lib_round(&dbos, 20).await;
    floor_round(&floor_url, &admin, 20).await;
    let (mut lib, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        lib.extend(lib_round(&dbos, per_round).await);
        raw.extend(floor_round(&floor_url, &admin, per_round).await);
    }
    dbos.shutdown().await.expect("shutdown");
    let n = lib.len();
    let (l50, l99) = (percentile_ms(&mut lib, 50.0), percentile_ms(&mut lib, 99.0));
    let (f50, f99) = (percentile_ms(&mut raw, 50.0), percentile_ms(&mut raw, 99.0));
    let ratio = l50 / f50;
    println!("W6 messages: {n} round trips, dbos p50 {l50:.2} ms p99 {l99:.2}; floor (raw LISTEN/NOTIFY) p50 {f50:.2} p99 {f99:.2}; p50 ratio {ratio:.3}");
    Report {
        workload: "W6 message round trip (500, A→B→A)",
        summary: format!(
            "p50 {l50:.2} / p99 {l99:.2} ms; floor (raw LISTEN/NOTIFY) {f50:.2} / {f99:.2} ms; p50 ratio **{ratio:.3}**"
        ),
        json: json!({"workload": "W6", "round_trips": n, "p50_ms": l50, "p99_ms": l99,
                     "floor_p50_ms": f50, "floor_p99_ms": f99, "p50_ratio": ratio}),
    }
}
