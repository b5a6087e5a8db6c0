//! Re-owning an application's rows under a new name (DBOS's `rename-application`): the
//! `application_name` column of queues, schedules, versions, workflows and steps.

use super::Sql;
use super::SystemDatabase;
use crate::error::{Error, Result};
use crate::manage::RenameReport;

/// What a rename moves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rename<'a> {
    /// The old name (`None`: only unclaimed rows move).
    pub(crate) from: Option<&'a str>,
    pub(crate) to: &'a str,
    /// Also rows no application owns (`application_name IS NULL`).
    pub(crate) adopt_unclaimed: bool,
    pub(crate) batch_size: i64,
}

/// The rows a rename moves: `$1` is the old name (NULL for none), `$2` whether unclaimed
/// rows move too.
const SOURCE: &str = "(application_name = $1 OR ($2 AND application_name IS NULL))";

impl SystemDatabase {
    /// Moves the rows in three parts: in one transaction the definitions (queues,
    /// schedules, versions) and the workflows still active, so executors never see an
    /// active workflow owned by a name whose queues moved; then the finished workflows and
    /// the steps in key-ordered batches of `batch_size`, each its own short transaction (a
    /// re-run finishes what an interrupted one left).
    pub(crate) async fn rename_application(&self, r: Rename<'_>) -> Result<RenameReport> {
        let s = self.quoted_schema();
        let (from, adopt, to) = (r.from, r.adopt_unclaimed, r.to);
        let mut moved = self
            .run("re-own the application's definitions and active workflows", |mut client, _| async move {
                let failed = |e| Error::db("could not re-own the application's definitions", e);
                let tx = client.transaction().await.map_err(failed)?;
                let mut counts = [0u64; 4];
                let statements = [
                    format!("UPDATE {s}.queues SET application_name = $3 WHERE {SOURCE}"),
                    format!("UPDATE {s}.workflow_schedules SET application_name = $3 WHERE {SOURCE}"),
                    format!("UPDATE {s}.application_versions SET application_name = $3 WHERE {SOURCE}"),
                    format!(
                        "UPDATE {s}.workflow_status SET application_name = $3
                          WHERE {SOURCE} AND status IN ('PENDING', 'ENQUEUED', 'DELAYED')"
                    ),
                ];
                for (count, sql) in counts.iter_mut().zip(&statements) {
                    *count = tx.execute(sql.as_str(), &[&from, &adopt, &to]).await.map_err(failed)?;
                }
                tx.commit().await.map_err(failed)?;
                Ok(RenameReport {
                    queues: counts[0],
                    schedules: counts[1],
                    versions: counts[2],
                    workflows: counts[3],
                    steps: 0,
                })
            })
            .await?;

        let workflows = format!(
            "WITH batch AS (
                 SELECT workflow_uuid FROM {s}.workflow_status
                  WHERE {SOURCE} AND workflow_uuid > $4 ORDER BY workflow_uuid LIMIT $5),
             moved AS (
                 UPDATE {s}.workflow_status ws SET application_name = $3
                   FROM batch WHERE ws.workflow_uuid = batch.workflow_uuid RETURNING ws.workflow_uuid)
             SELECT count(*), max(workflow_uuid), $6::int FROM moved"
        );
        moved.workflows += self
            .in_batches("re-own finished workflows", &workflows, r)
            .await?;
        let steps = format!(
            "WITH batch AS (
                 SELECT workflow_uuid, function_id FROM {s}.operation_outputs
                  WHERE {SOURCE} AND (workflow_uuid, function_id) > ($4, $6::int)
                  ORDER BY workflow_uuid, function_id LIMIT $5),
             moved AS (
                 UPDATE {s}.operation_outputs o SET application_name = $3
                   FROM batch WHERE o.workflow_uuid = batch.workflow_uuid AND o.function_id = batch.function_id
                 RETURNING o.workflow_uuid, o.function_id)
             SELECT count(*), max(workflow_uuid), (SELECT max(function_id) FROM moved m
                                                    WHERE m.workflow_uuid = (SELECT max(workflow_uuid) FROM moved))
               FROM moved"
        );
        moved.steps = self.in_batches("re-own steps", &steps, r).await?;
        Ok(moved)
    }

    /// Runs a batch statement until it moves nothing; each returns (count, last key, last
    /// function id) and the next batch starts after that key (`$4`, `$6`).
    async fn in_batches(&self, what: &str, sql: &str, r: Rename<'_>) -> Result<u64> {
        let (from, adopt, to, size) = (r.from, r.adopt_unclaimed, r.to, r.batch_size);
        let mut total = 0;
        let (mut key, mut sub) = (String::new(), -1i32);
        loop {
            let row = self
                .run(what, |client, _| {
                    let key = key.clone();
                    async move {
                        client
                            .query_one(sql, &[&from, &adopt, &to, &key, &size, &sub])
                            .await
                            .map_err(|e| Error::db(format!("could not {what}"), e))
                    }
                })
                .await?;
            let n: i64 = row.get(0);
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
            key = row.get::<_, Option<String>>(1).unwrap_or_default();
            sub = row.get::<_, Option<i32>>(2).unwrap_or(-1);
        }
    }
}
