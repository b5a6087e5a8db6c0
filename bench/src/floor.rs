//! The raw floor: the same row writes as a durable workflow, with tokio-postgres and
//! prepared statements, no library.
//!
//! The rows carry the same values the library writes for a workflow of the bench's
//! application (UUID ids and ownership tokens, names, versions, timestamps), so the floor and
//! the library differ only in how they write them: the floor with plain `INSERT`s and an
//! unconditional `UPDATE`, the library with its idempotent start, its ownership fence on each
//! checkpoint and its fenced finish.

use tokio_postgres::{Client, NoTls, Statement};

/// One connection with the floor's statements prepared.
pub(crate) struct Floor {
    client: Client,
    start: Statement,
    step: Statement,
    finish: Statement,
}

impl Floor {
    pub(crate) async fn connect(url: &str) -> Floor {
        let (client, conn) = tokio_postgres::connect(url, NoTls)
            .await
            .expect("floor connect");
        tokio::spawn(conn);
        let start = client
            .prepare(
                "WITH s AS (
                     INSERT INTO dbos.workflow_status (workflow_uuid, status, name, executor_id, application_version,
                         application_name, created_at, updated_at, recovery_attempts, owner_xid, creator_xid,
                         serialization, started_at_epoch_ms, priority)
                     VALUES ($1, 'PENDING', $2, 'bench-exec', 'bench-v1', 'bench', $4, $4, 1, $5, $6,
                             'portable_json', $4, 0)
                     RETURNING workflow_uuid)
                 INSERT INTO dbos.workflow_input (workflow_uuid, inputs, retention_timestamp)
                 SELECT workflow_uuid, $3, $4 FROM s",
            )
            .await
            .expect("prepare start");
        let step = client
            .prepare(
                "INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output, serialization,
                     started_at_epoch_ms, completed_at_epoch_ms, application_name)
                 VALUES ($1, $2, 'noop', $3, 'portable_json', $4, $4, 'bench')",
            )
            .await
            .expect("prepare step");
        let finish = client
            .prepare(
                "WITH u AS (UPDATE dbos.workflow_status SET status = 'SUCCESS', deduplication_id = NULL, owner_xid = NULL,
                                   updated_at = $3, completed_at = $3
                             WHERE workflow_uuid = $1 RETURNING workflow_uuid)
                 INSERT INTO dbos.workflow_output (workflow_uuid, output, retention_timestamp)
                 SELECT workflow_uuid, $2, $3 FROM u",
            )
            .await
            .expect("prepare finish");
        Floor {
            client,
            start,
            step,
            finish,
        }
    }

    /// One workflow's writes: start, `steps` steps, finish. `name` is the workflow's name
    /// and `x` its one argument (also each step's output and the result).
    pub(crate) async fn workflow(&self, name: &str, x: i64, steps: i32) {
        let id = uuid::Uuid::new_v4().to_string();
        let owner = uuid::Uuid::new_v4().to_string();
        let creator = uuid::Uuid::new_v4().to_string();
        let inputs = format!(r#"{{"positionalArgs":[{x}],"namedArgs":{{}}}}"#);
        let output = x.to_string();
        self.client
            .execute(
                &self.start,
                &[&id, &name, &inputs, &now_ms(), &owner, &creator],
            )
            .await
            .expect("start");
        for fid in 1..=steps {
            self.step(&id, fid, &output).await;
        }
        self.finish(&id, &output).await;
    }

    /// Step `fid`'s checkpoint.
    async fn step(&self, id: &str, fid: i32, output: &str) {
        self.client
            .execute(&self.step, &[&id, &fid, &output, &now_ms()])
            .await
            .expect("step");
    }

    /// The outcome: status and output row.
    async fn finish(&self, id: &str, output: &str) {
        self.client
            .execute(&self.finish, &[&id, &output, &now_ms()])
            .await
            .expect("finish");
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The queue floor: the same rows as W3's queued workflows, written by plain SQL. Producers
/// insert `ENQUEUED` rows (status and input); workers each claim one row at a time with
/// `FOR UPDATE SKIP LOCKED` (status to `PENDING`), write its one step and finish it.
pub(crate) struct QueueFloor {
    floor: Floor,
    enqueue: Statement,
    claim: Statement,
}

impl QueueFloor {
    pub(crate) async fn connect(url: &str) -> QueueFloor {
        let floor = Floor::connect(url).await;
        let enqueue = floor
            .client
            .prepare(
                "WITH s AS (
                     INSERT INTO dbos.workflow_status (workflow_uuid, status, name, application_version,
                         application_name, created_at, updated_at, recovery_attempts, creator_xid,
                         serialization, queue_name, priority)
                     VALUES ($1, 'ENQUEUED', 'one_step', 'bench-v1', 'bench', $3, $3, 0, $4,
                             'portable_json', 'bench', 0)
                     RETURNING workflow_uuid)
                 INSERT INTO dbos.workflow_input (workflow_uuid, inputs, retention_timestamp)
                 SELECT workflow_uuid, $2, $3 FROM s",
            )
            .await
            .expect("prepare enqueue");
        let claim = floor
            .client
            .prepare(
                "UPDATE dbos.workflow_status ws
                    SET status = 'PENDING', owner_xid = $1, executor_id = 'bench-exec', started_at_epoch_ms = $2,
                        rate_limited = false, recovery_attempts = ws.recovery_attempts + 1, updated_at = $2
                  WHERE ws.workflow_uuid = (
                        SELECT workflow_uuid FROM dbos.workflow_status
                         WHERE queue_name = 'bench' AND status = 'ENQUEUED' AND queue_partition_key IS NULL
                         ORDER BY priority, created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING ws.workflow_uuid,
                           (SELECT inputs FROM dbos.workflow_input wi WHERE wi.workflow_uuid = ws.workflow_uuid)",
            )
            .await
            .expect("prepare claim");
        QueueFloor {
            floor,
            enqueue,
            claim,
        }
    }

    /// Enqueues one workflow with argument `x`.
    pub(crate) async fn enqueue(&self, x: i64) {
        let id = uuid::Uuid::new_v4().to_string();
        let creator = uuid::Uuid::new_v4().to_string();
        let inputs = format!(r#"{{"positionalArgs":[{x}],"namedArgs":{{}}}}"#);
        self.floor
            .client
            .execute(&self.enqueue, &[&id, &inputs, &now_ms(), &creator])
            .await
            .expect("enqueue");
    }

    /// Claims and runs one queued workflow; `false` when none was waiting.
    pub(crate) async fn run_one(&self) -> bool {
        let owner = uuid::Uuid::new_v4().to_string();
        let Some(row) = self
            .floor
            .client
            .query_opt(&self.claim, &[&owner, &now_ms()])
            .await
            .expect("claim")
        else {
            return false;
        };
        let id: String = row.get(0);
        let inputs: Option<String> = row.get(1);
        let x = inputs
            .as_deref()
            .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
            .and_then(|v| v["positionalArgs"][0].as_i64())
            .unwrap_or_default();
        let output = x.to_string();
        self.floor.step(&id, 1, &output).await;
        self.floor.finish(&id, &output).await;
        true
    }
}

/// The transactions floor (W7): the same rows as a workflow of three `#[transaction]`s in
/// the system database, written by plain SQL. Each transaction is `BEGIN ISOLATION LEVEL
/// SERIALIZABLE`, the counter's `UPDATE`, the checkpoint's `INSERT`, `COMMIT`: the same
/// statements and round trips as the library's, without its ownership fence.
pub(crate) struct TxFloor {
    floor: Floor,
    update: Statement,
    checkpoint: Statement,
}

impl TxFloor {
    pub(crate) async fn connect(url: &str) -> TxFloor {
        let floor = Floor::connect(url).await;
        let update = floor
            .client
            .prepare("UPDATE bench_counters SET n = n + 1 WHERE id = $1")
            .await
            .expect("prepare update");
        let checkpoint = floor
            .client
            .prepare(
                "INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output, serialization,
                     started_at_epoch_ms, completed_at_epoch_ms, application_name)
                 VALUES ($1, $2, 'add_to_counter', $3, 'portable_json', $4, $4, 'bench')",
            )
            .await
            .expect("prepare checkpoint");
        TxFloor {
            floor,
            update,
            checkpoint,
        }
    }

    /// One workflow's writes: start, three transactions on counter `counter`, finish.
    pub(crate) async fn workflow(&self, x: i64, counter: i64) {
        let id = uuid::Uuid::new_v4().to_string();
        let owner = uuid::Uuid::new_v4().to_string();
        let creator = uuid::Uuid::new_v4().to_string();
        let inputs = format!(r#"{{"positionalArgs":[{x}],"namedArgs":{{}}}}"#);
        let output = counter.to_string();
        let client = &self.floor.client;
        client
            .execute(
                &self.floor.start,
                &[
                    &id,
                    &"three_transactions",
                    &inputs,
                    &now_ms(),
                    &owner,
                    &creator,
                ],
            )
            .await
            .expect("start");
        for fid in 1..=3 {
            // Retried on a serialization failure, as the library retries (rare: every
            // workflow has its own counter row, far from the others in flight).
            loop {
                client
                    .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
                    .await
                    .expect("begin");
                let done = async {
                    client.execute(&self.update, &[&counter]).await?;
                    client
                        .execute(&self.checkpoint, &[&id, &fid, &output, &now_ms()])
                        .await?;
                    client.batch_execute("COMMIT").await
                }
                .await;
                match done {
                    Ok(()) => break,
                    Err(e) if e.code().map(|c| c.code()) == Some("40001") => {
                        let _ = client.batch_execute("ROLLBACK").await;
                    }
                    Err(e) => panic!("floor transaction: {e}"),
                }
            }
        }
        self.floor.finish(&id, &output).await;
    }
}
