//! The statements behind queues: persisting queue definitions, dequeuing within the queue's
//! limits (the DBOS dequeue rules), and the background sweeps (delayed → enqueued, expired →
//! cancelled) that one process per application runs at a time.

use super::Sql;
use tokio_postgres::IsolationLevel;

use super::workflows::{now_ms, ClaimedWorkflow};
use super::SystemDatabase;
use crate::codec::PORTABLE_JSON;
use crate::error::{Error, Result};
use crate::queue::{Queue, RateLimit};

/// SQLSTATEs that mean "someone else is dequeuing these rows right now": skip this poll.
fn is_contention(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code().map(|c| c.code()),
        Some("55P03" | "40001" | "40P01")
    )
}

/// A shared budget of a queue: a concurrency limit (`window: None`, counts running
/// workflows) or a rate limit (counts starts within the window), queue-wide or for one
/// partition (`scope`).
struct Budget<'a> {
    limit: i64,
    window: Option<std::time::Duration>,
    scope: Option<&'a str>,
}

/// The shared budgets a dequeue of `queue` (and `partition`) must respect.
fn budgets<'a>(queue: &Queue, partition: Option<&'a str>) -> Vec<Budget<'a>> {
    let rate = |r: RateLimit, scope| Budget {
        limit: i64::from(r.max),
        window: Some(r.period),
        scope,
    };
    let running = |n: u32, scope| Budget {
        limit: i64::from(n),
        window: None,
        scope,
    };
    let mut out = Vec::new();
    out.extend(queue.rate_limit.map(|r| rate(r, None)));
    out.extend(queue.concurrency.map(|n| running(n, None)));
    if partition.is_some() {
        out.extend(queue.partition_rate_limit.map(|r| rate(r, partition)));
        out.extend(queue.partition_concurrency.map(|n| running(n, partition)));
    }
    out
}

/// Who is dequeuing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dequeuer<'a> {
    pub(crate) executor_id: &'a str,
    pub(crate) app_version: &'a str,
    pub(crate) app_name: &'a str,
    /// The workflows this executor can run: it claims nothing else, so work meant for
    /// executors of other languages (or builds) stays queued for them.
    pub(crate) names: &'a [String],
}

/// The result of one dequeue attempt.
#[derive(Debug)]
pub(crate) enum Dequeued {
    /// Claimed rows (possibly none).
    Claimed(Vec<ClaimedWorkflow>),
    /// Another executor held the rows or the snapshot conflicted: try again next poll.
    Contended,
}

impl SystemDatabase {
    /// Records a queue's definition in `dbos.queues`: inserted when the queue is new; an
    /// existing row is overwritten only when `update_existing` (DBOS's conflict policy
    /// decides). Returns the definition the row now holds, which is the one every executor
    /// uses.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when another application owns the
    /// queue name (its address), or a database error.
    pub(crate) async fn upsert_queue(
        &self,
        q: &Queue,
        app_name: &str,
        update_existing: bool,
    ) -> Result<Queue> {
        let s = self.quoted_schema();
        let int = |v: Option<u32>| v.map(|n| n as i32);
        let max = |r: Option<RateLimit>| r.map(|r| r.max as i32);
        let period = |r: Option<RateLimit>| r.map(|r| r.period.as_secs_f64());
        let on_conflict = if update_existing {
            format!(
                "ON CONFLICT (name) DO UPDATE SET
                     concurrency = EXCLUDED.concurrency, worker_concurrency = EXCLUDED.worker_concurrency,
                     rate_limit_max = EXCLUDED.rate_limit_max, rate_limit_period_sec = EXCLUDED.rate_limit_period_sec,
                     priority_enabled = EXCLUDED.priority_enabled, partition_queue = EXCLUDED.partition_queue,
                     polling_interval_sec = EXCLUDED.polling_interval_sec,
                     application_name = COALESCE({s}.queues.application_name, EXCLUDED.application_name),
                     partition_concurrency = EXCLUDED.partition_concurrency,
                     partition_worker_concurrency = EXCLUDED.partition_worker_concurrency,
                     partition_rate_limit_max = EXCLUDED.partition_rate_limit_max,
                     partition_rate_limit_period_sec = EXCLUDED.partition_rate_limit_period_sec,
                     updated_at = (EXTRACT(epoch FROM now()) * 1000.0)::bigint
                 WHERE {s}.queues.application_name = EXCLUDED.application_name
                    OR {s}.queues.application_name IS NULL"
            )
        } else {
            "ON CONFLICT (name) DO NOTHING".to_owned()
        };
        self.execute(
            &format!("register queue `{}`", q.name()),
            &format!(
                "INSERT INTO {s}.queues (name, concurrency, worker_concurrency, rate_limit_max, rate_limit_period_sec,
                     priority_enabled, partition_queue, polling_interval_sec, application_name,
                     partition_concurrency, partition_worker_concurrency, partition_rate_limit_max,
                     partition_rate_limit_period_sec)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 {on_conflict}"
            ),
            &[
                &q.name(),
                &int(q.concurrency),
                &int(q.worker_concurrency),
                &max(q.rate_limit),
                &period(q.rate_limit),
                &q.priority_enabled,
                &q.partitioned,
                &q.polling_interval.as_secs_f64(),
                &app_name,
                &int(q.partition_concurrency),
                &int(q.partition_worker_concurrency),
                &max(q.partition_rate_limit),
                &period(q.partition_rate_limit),
            ],
        )
        .await?;
        match self.queue_row(q.name()).await? {
            Some((owner, _)) if owner.as_deref().is_some_and(|o| o != app_name) => {
                Err(Error::config(format!(
                    "queue `{}` belongs to application `{}` in this system database: a queue's name is its address, \
                     so pick another name for this application's queue",
                    q.name(),
                    owner.unwrap_or_default()
                )))
            }
            Some((_, stored)) => Ok(stored.unwrap_or_else(|| q.clone())),
            None => Ok(q.clone()),
        }
    }

    /// A queue's row in `dbos.queues`: its owning application, and its definition (`None`
    /// when the row's limits make no sense, e.g. a negative concurrency).
    pub(crate) async fn queue_row(
        &self,
        name: &str,
    ) -> Result<Option<(Option<String>, Option<Queue>)>> {
        let s = self.quoted_schema();
        let row = self
            .query_opt(
                &format!("read queue `{name}`"),
                &format!(
                    "SELECT application_name, concurrency, worker_concurrency, rate_limit_max, rate_limit_period_sec,
                            priority_enabled, partition_queue, polling_interval_sec, partition_concurrency,
                            partition_worker_concurrency, partition_rate_limit_max, partition_rate_limit_period_sec
                       FROM {s}.queues WHERE name = $1"
                ),
                &[&name],
            )
            .await?;
        Ok(row.map(|r| (r.get(0), queue_from_row(name, &r))))
    }

    /// How many workflows of application `app_name` are on `queue`: waiting (`ENQUEUED`)
    /// and claimed (`PENDING`). An index-only count on the in-flight index.
    pub(crate) async fn queue_depth(&self, queue: &str, app_name: &str) -> Result<(i64, i64)> {
        let s = self.quoted_schema();
        let row = self
            .query_opt(
                &format!("count the workflows on queue `{queue}`"),
                &format!(
                    "SELECT count(*) FILTER (WHERE status = 'ENQUEUED'), count(*) FILTER (WHERE status = 'PENDING')
                       FROM {s}.workflow_status
                      WHERE queue_name = $1 AND status IN ('ENQUEUED', 'PENDING')
                        AND (application_name = $2 OR application_name IS NULL)"
                ),
                &[&queue, &app_name],
            )
            .await?;
        Ok(row.map_or((0, 0), |r| (r.get(0), r.get(1))))
    }

    /// Whether `version` is the latest registered version of the application (or none is).
    pub(crate) async fn is_latest_version(&self, version: &str, app_name: &str) -> Result<bool> {
        let latest = self.latest_version(Some(app_name)).await?;
        Ok(latest.is_none_or(|latest| latest == version))
    }

    /// Workflows waiting on `queue` for over `older_than_ms` that this executor could
    /// otherwise claim (its version, or none) but cannot run: a name it does not register, or
    /// inputs in another language's encoding. By (name, serialization), with their count.
    pub(crate) async fn unrunnable_queued(
        &self,
        queue: &str,
        who: Dequeuer<'_>,
        older_than_ms: i64,
    ) -> Result<Vec<(String, String, i64)>> {
        let rows = self
            .unrunnable(
                &format!("look for work on `{queue}` nobody here can run"),
                "name, COALESCE(serialization, 'NULL'), count(*)",
                "GROUP BY 1, 2",
                &[queue],
                who,
                older_than_ms,
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, Option<String>>(0).unwrap_or_default(),
                    r.get(1),
                    r.get(2),
                )
            })
            .collect())
    }

    /// The same workflows, one by one (id, name, serialization), oldest first, on any of
    /// `queues`; at most 1,000.
    pub(crate) async fn unrunnable_workflows(
        &self,
        queues: &[&str],
        who: Dequeuer<'_>,
        older_than_ms: i64,
    ) -> Result<Vec<(String, String, String)>> {
        let rows = self
            .unrunnable(
                "list the queued work nobody here can run",
                "workflow_uuid, name, COALESCE(serialization, 'NULL')",
                "ORDER BY created_at LIMIT 1000",
                queues,
                who,
                older_than_ms,
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get::<_, Option<String>>(1).unwrap_or_default(),
                    r.get(2),
                )
            })
            .collect())
    }

    /// Workflows waiting (for over `older_than_ms`) on a queue nobody registered: not one of
    /// `served` (this executor's queues and the internal queue) and without a row in
    /// `dbos.queues`, of `app_name` or unclaimed. Their ids, oldest first; at most 1,000.
    pub(crate) async fn on_unregistered_queues(
        &self,
        served: &[&str],
        app_name: &str,
        older_than_ms: i64,
    ) -> Result<Vec<String>> {
        let s = self.quoted_schema();
        let rows = self
            .query(
                "list the queued work on queues nobody registered",
                &format!(
                    "SELECT ws.workflow_uuid FROM {s}.workflow_status ws
                      WHERE ws.status = 'ENQUEUED' AND ws.created_at < $2
                        AND ws.queue_name IS NOT NULL AND NOT (ws.queue_name = ANY($1))
                        AND (ws.application_name = $3 OR ws.application_name IS NULL)
                        AND NOT EXISTS (SELECT 1 FROM {s}.queues q WHERE q.name = ws.queue_name)
                      ORDER BY ws.created_at LIMIT 1000"
                ),
                &[&served, &(now_ms() - older_than_ms), &app_name],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn unrunnable(
        &self,
        what: &str,
        columns: &str,
        tail: &str,
        queues: &[&str],
        who: Dequeuer<'_>,
        older_than_ms: i64,
    ) -> Result<Vec<tokio_postgres::Row>> {
        let s = self.quoted_schema();
        self.query(
            what,
            &format!(
                "SELECT {columns} FROM {s}.workflow_status
                  WHERE queue_name = ANY($1) AND status = 'ENQUEUED' AND created_at < $2
                    AND (application_name = $3 OR application_name IS NULL)
                    AND (application_version = $4 OR application_version IS NULL)
                    AND NOT (name = ANY($5) AND (serialization IS NULL OR serialization = '{PORTABLE_JSON}'))
                  {tail}"
            ),
            &[
                &queues,
                &(now_ms() - older_than_ms),
                &who.app_name,
                &who.app_version,
                &who.names,
            ],
        )
        .await
    }

    /// The partition keys with enqueued work, for a partitioned queue.
    pub(crate) async fn partition_keys(&self, queue: &str, app_name: &str) -> Result<Vec<String>> {
        let s = self.quoted_schema();
        let rows = self
            .query(
                &format!("list the partitions of `{queue}`"),
                &format!(
                    "SELECT DISTINCT queue_partition_key FROM {s}.workflow_status
                      WHERE queue_name = $1 AND status = 'ENQUEUED' AND queue_partition_key IS NOT NULL
                        AND (application_name = $2 OR application_name IS NULL)"
                ),
                &[&queue, &app_name],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Claims as many workflows from `queue` (one partition of it, for a partitioned queue)
    /// as its limits allow, `local_free` being what this executor may still start.
    ///
    /// Shared budgets (global/partition concurrency, rate limits) are counted in a
    /// `REPEATABLE READ` snapshot and the rows locked `NOWAIT`, so two executors can never
    /// both spend the same budget: the second fails to lock (or to serialise) and skips
    /// this poll. Without a shared budget, `SKIP LOCKED` lets executors claim side by side.
    pub(crate) async fn dequeue(
        &self,
        queue: &Queue,
        partition: Option<&str>,
        local_free: i64,
        who: Dequeuer<'_>,
    ) -> Result<Dequeued> {
        if local_free <= 0 {
            return Ok(Dequeued::Claimed(Vec::new()));
        }
        // One claim token for every attempt: a claim that committed on an attempt whose
        // acknowledgement was lost is found by it and adopted, never left PENDING unseen.
        let claim = uuid::Uuid::new_v4().to_string();
        let what = format!("dequeue from `{}`", queue.name());
        self.run(&what, |mut client, attempt| {
            let claim = claim.as_str();
            async move {
                if attempt > 1 {
                    let adopted = self
                        .adopt_claim(&client, claim)
                        .await
                        .map_err(|e| Error::db("could not look for an unacknowledged claim", e))?;
                    if !adopted.is_empty() {
                        return Ok(Dequeued::Claimed(adopted));
                    }
                }
                self.dequeue_on(&mut client, queue, partition, local_free, who, claim)
                    .await
            }
        })
        .await
    }

    async fn dequeue_on(
        &self,
        client: &mut super::Conn,
        queue: &Queue,
        partition: Option<&str>,
        local_free: i64,
        who: Dequeuer<'_>,
        claim: &str,
    ) -> Result<Dequeued> {
        let shared = queue.has_shared_budget();
        if !shared && partition.is_none() {
            // No shared budget: one autocommit statement claims with SKIP LOCKED.
            let conn: &tokio_postgres::Client = client.raw();
            return match self
                .claim(conn, queue, None, local_free, who, false, claim)
                .await
            {
                Ok(claimed) => Ok(Dequeued::Claimed(claimed)),
                Err(e) => Err(Error::db(
                    format!("could not dequeue from `{}`", queue.name()),
                    e,
                )),
            };
        }
        let tx = client
            .transaction_at(if shared {
                IsolationLevel::RepeatableRead
            } else {
                IsolationLevel::ReadCommitted
            })
            .await
            .map_err(|e| Error::db("could not begin a dequeue", e))?;
        let name = queue.name();
        let mut max_tasks = local_free;
        for budget in budgets(queue, partition) {
            let (sql, since) = match budget.window {
                Some(period) => (
                    self.sql("count_recent_starts", |s| {
                        format!(
                            "SELECT count(*) FROM {s}.workflow_status
                              WHERE queue_name = $1 AND (application_name = $2 OR application_name IS NULL)
                                AND ($3::text IS NULL OR queue_partition_key = $3)
                                AND rate_limited = TRUE AND status NOT IN ('ENQUEUED', 'DELAYED')
                                AND started_at_epoch_ms > $4"
                        )
                    }),
                    Some(now_ms() - period.as_millis() as i64),
                ),
                None => (
                    self.sql("count_running", |s| {
                        format!(
                            "SELECT count(*) FROM {s}.workflow_status
                              WHERE queue_name = $1 AND (application_name = $2 OR application_name IS NULL)
                                AND ($3::text IS NULL OR queue_partition_key = $3)
                                AND status = 'PENDING' AND $4::bigint IS NULL"
                        )
                    }),
                    None,
                ),
            };
            let used: i64 = match tx
                .query_one(&*sql, &[&name, &who.app_name, &budget.scope, &since])
                .await
            {
                Ok(r) => r.get(0),
                Err(e) if is_contention(&e) => return Ok(Dequeued::Contended),
                Err(e) => {
                    return Err(Error::db(
                        format!("could not count the budget of `{name}`"),
                        e,
                    ))
                }
            };
            max_tasks = max_tasks.min(budget.limit - used);
        }
        if max_tasks <= 0 {
            let _ = tx.commit().await;
            return Ok(Dequeued::Claimed(Vec::new()));
        }
        let txn: &tokio_postgres::Transaction<'_> = tx.pg();
        let claimed = match self
            .claim(txn, queue, partition, max_tasks, who, shared, claim)
            .await
        {
            Ok(claimed) => claimed,
            Err(e) if is_contention(&e) => return Ok(Dequeued::Contended),
            Err(e) => return Err(Error::db(format!("could not dequeue from `{name}`"), e)),
        };
        match tx.commit().await {
            Ok(()) => Ok(Dequeued::Claimed(claimed)),
            Err(e) if is_contention(&e) => Ok(Dequeued::Contended),
            Err(e) => Err(Error::db(
                format!("could not commit a dequeue from `{name}`"),
                e,
            )),
        }
    }

    /// The claim statement: up to `limit` ENQUEUED rows of the queue (and partition) this
    /// executor may run, in priority order, become PENDING under a new ownership token.
    /// `nowait` locks them `NOWAIT` (a shared budget is being spent), else `SKIP LOCKED`.
    #[allow(clippy::too_many_arguments)] // the claim statement's parameters, one each
    async fn claim(
        &self,
        db: &impl tokio_postgres::GenericClient,
        queue: &Queue,
        partition: Option<&str>,
        limit: i64,
        who: Dequeuer<'_>,
        nowait: bool,
        claim: &str,
    ) -> std::result::Result<Vec<ClaimedWorkflow>, tokio_postgres::Error> {
        // The update finds the picked rows by primary key: its status re-test sits in a `CASE`
        // because, written plainly, a plan made on stale statistics used it to bitmap-scan every
        // ENQUEUED row of every queue and join them against the few picked ones, on every claim
        // (hundreds of index entries per claim with a backlog; the bimodal W3 benchmark).
        // A partition's claim tests `queue_partition_key = $6`, spelled out (not `IS NOT
        // DISTINCT FROM $6`) so the planner sees which index serves it: with the combined form
        // it estimated one matching row, scanned the whole table and sorted it on every claim.
        // A queue without partitions ignores the key, as DBOS's dequeue does: a workflow that
        // kept one from a partitioned queue (cancelled there, then resumed onto the internal
        // queue, by us or by DBOS) still runs.
        let build = |lock: &'static str, partition_test: &'static str| {
            move |s: &str| {
                format!(
                    "WITH latest AS (
                         SELECT version_name FROM {s}.application_versions
                          WHERE application_name = $2 OR application_name IS NULL
                          ORDER BY version_timestamp DESC LIMIT 1
                     ),
                     picked AS (
                         SELECT workflow_uuid, updated_at FROM {s}.workflow_status
                          WHERE queue_name = $1 AND status = 'ENQUEUED'
                            AND (application_name = $2 OR application_name IS NULL)
                            AND {partition_test}
                            AND (application_version = $3
                                 OR (application_version IS NULL AND COALESCE((SELECT version_name FROM latest), $3) = $3))
                            AND name = ANY($10::text[])
                            AND (serialization IS NULL OR serialization = '{PORTABLE_JSON}')
                          ORDER BY priority ASC, created_at ASC
                          LIMIT $5
                          {lock}
                     )
                     UPDATE {s}.workflow_status ws
                        SET status = 'PENDING', owner_xid = $7, application_version = $3, executor_id = $4,
                            application_name = $2, started_at_epoch_ms = $8, rate_limited = $9,
                            recovery_attempts = ws.recovery_attempts + 1, updated_at = $8,
                            workflow_deadline_epoch_ms = CASE WHEN ws.workflow_timeout_ms IS NOT NULL AND ws.workflow_deadline_epoch_ms IS NULL
                                                              THEN $8 + ws.workflow_timeout_ms ELSE ws.workflow_deadline_epoch_ms END
                       FROM picked
                      WHERE ws.workflow_uuid = picked.workflow_uuid
                        AND CASE ws.status WHEN 'ENQUEUED' THEN TRUE ELSE FALSE END
                     RETURNING ws.workflow_uuid, ws.name, ws.serialization, ws.recovery_attempts, ws.workflow_deadline_epoch_ms,
                               (SELECT COALESCE(wi.inputs, ws.inputs) FROM {s}.workflow_input wi WHERE wi.workflow_uuid = ws.workflow_uuid),
                               EXISTS (SELECT 1 FROM {s}.operation_outputs o WHERE o.workflow_uuid = ws.workflow_uuid),
                               picked.updated_at,
                               ws.attributes -> 'dbos.otelContext'"
                )
            }
        };
        const NOWAIT: &str = "FOR UPDATE NOWAIT";
        const SKIP_LOCKED: &str = "FOR UPDATE SKIP LOCKED";
        const NO_PARTITION: &str = "$6::text IS NULL";
        const PARTITION: &str = "queue_partition_key = $6::text";
        let sql = match (nowait, partition.is_some()) {
            (true, false) => self.sql("claim_nowait", build(NOWAIT, NO_PARTITION)),
            (true, true) => self.sql("claim_partition_nowait", build(NOWAIT, PARTITION)),
            (false, false) => self.sql("claim_skip_locked", build(SKIP_LOCKED, NO_PARTITION)),
            (false, true) => self.sql("claim_partition_skip_locked", build(SKIP_LOCKED, PARTITION)),
        };
        let rate_limited = queue.rate_limit.is_some() || queue.partition_rate_limit.is_some();
        // Planned at each claim (an unnamed statement), not prepared once: a prepared
        // statement's generic plan is fixed when the connection first runs it, and a plan made
        // while the table was nearly empty (a seq scan and a sort) stayed on and cost each
        // claim milliseconds once the queue was long. Planning costs less than that.
        use tokio_postgres::types::Type;
        let rows = db
            .query_typed(
                &sql,
                &[
                    (&queue.name(), Type::TEXT),
                    (&who.app_name, Type::TEXT),
                    (&who.app_version, Type::TEXT),
                    (&who.executor_id, Type::TEXT),
                    (&limit, Type::INT8),
                    (&partition, Type::TEXT),
                    (&claim, Type::TEXT),
                    (&now_ms(), Type::INT8),
                    (&rate_limited, Type::BOOL),
                    (&who.names, Type::TEXT_ARRAY),
                ],
            )
            .await?;
        Ok(rows.iter().map(|r| claimed_row(r, claim)).collect())
    }

    /// The rows a claim with token `claim` took (after a lost acknowledgement).
    async fn adopt_claim(
        &self,
        client: &super::Conn,
        claim: &str,
    ) -> std::result::Result<Vec<ClaimedWorkflow>, tokio_postgres::Error> {
        let s = self.quoted_schema();
        let rows = client
            .query(
                &format!(
                    "SELECT ws.workflow_uuid, ws.name, ws.serialization, ws.recovery_attempts, ws.workflow_deadline_epoch_ms,
                            (SELECT COALESCE(wi.inputs, ws.inputs) FROM {s}.workflow_input wi WHERE wi.workflow_uuid = ws.workflow_uuid),
                            EXISTS (SELECT 1 FROM {s}.operation_outputs o WHERE o.workflow_uuid = ws.workflow_uuid),
                            NULL::bigint,
                            ws.attributes -> 'dbos.otelContext'
                       FROM {s}.workflow_status ws
                      WHERE ws.owner_xid = $1 AND ws.status = 'PENDING'"
                ),
                &[&claim],
            )
            .await?;
        Ok(rows.iter().map(|r| claimed_row(r, claim)).collect())
    }

    /// Runs the background sweeps if no other process of this application is running them:
    /// delayed workflows whose time has come (`delay_until_epoch_ms` at or before
    /// `durable_now_ms`, the runtime clock's time) are enqueued, and workflows past their
    /// deadline (real time) are cancelled. Returns (enqueued, cancelled), or `None` when
    /// another process holds the sweep lock.
    pub(crate) async fn sweep(
        &self,
        app_name: &str,
        durable_now_ms: i64,
    ) -> Result<Option<(u64, u64)>> {
        let s = self.quoted_schema();
        self.run("run the background sweeps", |mut client, _| async move {
                let tx = client
                    .transaction()
                    .await
                    .map_err(|e| Error::db("could not begin the sweeps", e))?;
                let got: bool = tx
                    .query_one(
                        "SELECT pg_try_advisory_xact_lock($1)",
                        &[&sweep_lock_key(self.schema(), app_name)],
                    )
                    .await
                    .map_err(|e| Error::db("could not take the sweep lock", e))?
                    .get(0);
                if !got {
                    let _ = tx.commit().await;
                    return Ok(None);
                }
                let now = now_ms();
                let app = "(application_name = $2 OR application_name IS NULL)";
                let enqueued = tx
                    .execute(
                        &format!(
                            "UPDATE {s}.workflow_status
                                SET status = 'ENQUEUED', updated_at = $1,
                                    deduplication_id = CASE WHEN is_debounced THEN NULL ELSE deduplication_id END
                              WHERE status = 'DELAYED' AND delay_until_epoch_ms <= $3 AND {app}"
                        ),
                        &[&now, &app_name, &durable_now_ms],
                    )
                    .await
                    .map_err(|e| Error::db("the delayed-workflow sweep failed", e))?;
                let cancelled = tx
                    .execute(
                        &format!(
                            "UPDATE {s}.workflow_status
                                SET status = 'CANCELLED', owner_xid = NULL, queue_name = NULL, deduplication_id = NULL,
                                    started_at_epoch_ms = NULL, updated_at = $1, completed_at = $1
                              WHERE workflow_uuid IN (
                                    SELECT workflow_uuid FROM {s}.workflow_status
                                     WHERE status IN ('ENQUEUED', 'PENDING', 'DELAYED') AND workflow_deadline_epoch_ms <= $1 AND {app}
                                     ORDER BY workflow_deadline_epoch_ms LIMIT 1000 FOR UPDATE SKIP LOCKED)"
                        ),
                        &[&now, &app_name],
                    )
                    .await
                    .map_err(|e| Error::db("the timeout sweep failed", e))?;
                tx.commit()
                    .await
                    .map_err(|e| Error::db("could not commit the sweeps", e))?;
                Ok(Some((enqueued, cancelled)))
        })
        .await
    }

    /// The id of the active workflow holding `deduplication_id` on `queue`.
    pub(crate) async fn deduplicated_holder(
        &self,
        queue: &str,
        deduplication_id: &str,
    ) -> Result<Option<String>> {
        let s = self.quoted_schema();
        let row = self
            .query_opt(
                "find the deduplicated workflow",
                &format!("SELECT workflow_uuid FROM {s}.workflow_status WHERE queue_name = $1 AND deduplication_id = $2"),
                &[&queue, &deduplication_id],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }
}

/// A queue definition from its `dbos.queues` row; `None` when a limit is out of range.
fn queue_from_row(name: &str, r: &tokio_postgres::Row) -> Option<Queue> {
    let count = |i: usize| -> Option<Option<u32>> {
        match r.get::<_, Option<i32>>(i) {
            None => Some(None),
            Some(n) => u32::try_from(n).ok().map(Some),
        }
    };
    let rate = |max: usize, period: usize| -> Option<Option<RateLimit>> {
        match (
            r.get::<_, Option<i32>>(max),
            r.get::<_, Option<f64>>(period),
        ) {
            (Some(m), Some(p)) => Some(Some(RateLimit {
                max: u32::try_from(m).ok()?,
                period: std::time::Duration::try_from_secs_f64(p).ok()?,
            })),
            _ => Some(None),
        }
    };
    let mut q = Queue::named(name);
    q.concurrency = count(1)?;
    q.worker_concurrency = count(2)?;
    q.rate_limit = rate(3, 4)?;
    q.priority_enabled = r.get(5);
    q.partition_concurrency = count(8)?;
    q.partition_worker_concurrency = count(9)?;
    q.partition_rate_limit = rate(10, 11)?;
    q.partitioned = r.get::<_, bool>(6)
        || q.partition_concurrency.is_some()
        || q.partition_worker_concurrency.is_some()
        || q.partition_rate_limit.is_some();
    q.polling_interval = std::time::Duration::try_from_secs_f64(r.get(7)).ok()?;
    Some(q)
}

/// A claimed row: the columns the claim and its adoption return, in their order.
fn claimed_row(r: &tokio_postgres::Row, claim: &str) -> ClaimedWorkflow {
    ClaimedWorkflow {
        id: r.get(0),
        name: r.get::<_, Option<String>>(1).unwrap_or_default(),
        serialization: r.get(2),
        recovery_attempts: r.get::<_, Option<i64>>(3).unwrap_or_default(),
        deadline_ms: r.get(4),
        inputs: r.get(5),
        has_history: r.get(6),
        enqueued_at: r.get(7),
        trace: r.get(8),
        owner_xid: claim.to_owned(),
    }
}

/// The sweep lock, shared with DBOS Python so only one process per application (of any
/// language) sweeps: the first 8 bytes of sha256("dbos.background_job.<schema>.<app>.background_jobs").
fn sweep_lock_key(schema: &str, app_name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(
        format!("dbos.background_job.{schema}.{app_name}.background_jobs").as_bytes(),
    );
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}
