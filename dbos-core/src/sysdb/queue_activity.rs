//! What the dashboard shows of each queue's activity, from `workflow_status`: how many of
//! its workflows completed in each minute of a recent window (through the `completed_at`
//! index), and its oldest waiting workflow (through the in-flight index).

use super::SystemDatabase;
use crate::error::Result;

/// How many workflows of one queue completed in one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueMinute {
    pub(crate) queue: String,
    /// The minute's start, in epoch milliseconds (a multiple of 60,000).
    pub(crate) minute_ms: i64,
    pub(crate) completed: i64,
}

/// A queue's longest-waiting `ENQUEUED` workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OldestWaiting {
    pub(crate) queue: String,
    pub(crate) workflow_id: String,
    pub(crate) created_at: i64,
}

/// The application scope of the dashboard's reads (`$2`): its own and unclaimed rows.
const SCOPE: &str = "($2::text IS NULL OR application_name = $2 OR application_name IS NULL)";

fn throughput_sql(schema: &str) -> String {
    format!(
        "SELECT queue_name, completed_at / 60000 * 60000 AS minute, count(*)
           FROM {schema}.workflow_status
          WHERE completed_at >= $1 AND queue_name IS NOT NULL AND {SCOPE}
          GROUP BY 1, 2
          ORDER BY 1, 2"
    )
}

impl SystemDatabase {
    /// Completed workflows per queue and minute, for the minutes from `since_ms` on.
    pub(crate) async fn queue_throughput(
        &self,
        since_ms: i64,
        app: Option<&str>,
    ) -> Result<Vec<QueueMinute>> {
        let rows = self
            .query(
                "count each queue's completed workflows per minute",
                &throughput_sql(self.quoted_schema()),
                &[&since_ms, &app],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| QueueMinute {
                queue: r.get(0),
                minute_ms: r.get(1),
                completed: r.get(2),
            })
            .collect())
    }

    /// `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` of [`queue_throughput`](Self::queue_throughput)'s
    /// statement, for the query-plan test.
    pub(crate) async fn explain_queue_throughput(
        &self,
        since_ms: i64,
        app: Option<&str>,
    ) -> Result<serde_json::Value> {
        let mut params = super::manage::Params::default();
        params.push(since_ms);
        params.push(app.map(str::to_owned));
        self.explain(&throughput_sql(self.quoted_schema()), params)
            .await
    }

    /// Each queue's oldest `ENQUEUED` workflow (by creation time, then id).
    pub(crate) async fn oldest_waiting(&self, app: Option<&str>) -> Result<Vec<OldestWaiting>> {
        let s = self.quoted_schema();
        let rows = self
            .query(
                "find each queue's oldest waiting workflow",
                &format!(
                    "SELECT DISTINCT ON (queue_name) queue_name, workflow_uuid, created_at
                       FROM {s}.workflow_status
                      WHERE status = 'ENQUEUED' AND queue_name IS NOT NULL
                        AND ($1::text IS NULL OR application_name = $1 OR application_name IS NULL)
                      ORDER BY queue_name, created_at, workflow_uuid"
                ),
                &[&app],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| OldestWaiting {
                queue: r.get(0),
                workflow_id: r.get(1),
                created_at: r.get(2),
            })
            .collect())
    }
}
