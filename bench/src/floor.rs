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
            self.client
                .execute(&self.step, &[&id, &fid, &output, &now_ms()])
                .await
                .expect("step");
        }
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
