//! The raw floor: the same row writes as a durable workflow, with tokio-postgres and
//! prepared statements, no library.

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
                         application_name, created_at, updated_at, recovery_attempts, owner_xid, creator_xid, serialization)
                     VALUES ($1, 'PENDING', 'floor', 'local', 'v', 'bench', $3, $3, 1, $1, $1, 'portable_json')
                     RETURNING workflow_uuid)
                 INSERT INTO dbos.workflow_input (workflow_uuid, inputs) SELECT workflow_uuid, $2 FROM s",
            )
            .await
            .expect("prepare start");
        let step = client
            .prepare(
                "INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output, serialization,
                     started_at_epoch_ms, completed_at_epoch_ms)
                 VALUES ($1, $2, 'step', 'null', 'portable_json', $3, $3)",
            )
            .await
            .expect("prepare step");
        let finish = client
            .prepare(
                "WITH u AS (UPDATE dbos.workflow_status SET status = 'SUCCESS', owner_xid = NULL, updated_at = $3, completed_at = $3
                             WHERE workflow_uuid = $1 RETURNING workflow_uuid)
                 INSERT INTO dbos.workflow_output (workflow_uuid, output) SELECT workflow_uuid, $2 FROM u",
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

    /// One workflow's writes: start, `steps` steps, finish.
    pub(crate) async fn workflow(&self, id: &str, steps: i32) {
        let now = now_ms();
        self.client
            .execute(
                &self.start,
                &[&id, &r#"{"positionalArgs":[1],"namedArgs":{}}"#, &now],
            )
            .await
            .expect("start");
        for fid in 1..=steps {
            self.client
                .execute(&self.step, &[&id, &fid, &now_ms()])
                .await
                .expect("step");
        }
        self.client
            .execute(&self.finish, &[&id, &"1", &now_ms()])
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
