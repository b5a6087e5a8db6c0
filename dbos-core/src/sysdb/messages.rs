//! Messages, events and streams: the `notifications`, `workflow_events`,
//! `workflow_events_history` and `streams` tables, written as DBOS writes them.
//!
//! Every write made from a workflow is one statement that applies its effect and inserts the
//! operation's checkpoint together, each part guarded by the execution's ownership token: the
//! effect happens exactly when the checkpoint is recorded. Such a statement reports whether
//! it inserted the checkpoint; when it did not (the fence failed, another execution recorded
//! the step first, or an earlier attempt committed unseen), [`SystemDatabase::recorded_at`]
//! tells which.

use super::Sql;
use std::collections::{HashMap, HashSet};

use tokio_postgres::types::ToSql;

use super::workflows::Checkpoint;
use super::SystemDatabase;
use crate::codec::PORTABLE_JSON;
use crate::error::{Error, ErrorKind, Result};

/// The topic DBOS stores for a message sent without one.
pub(crate) const NULL_TOPIC: &str = "__null__topic__";
/// The JSON text of the marker that closes a stream.
pub(crate) const STREAM_CLOSED: &str = "\"__DBOS_STREAM_CLOSED__\"";

const FOREIGN_KEY_VIOLATION: &str = "23503";
const CHECKPOINT_KEY: &str = "operation_outputs_pkey";
const STREAM_KEY: &str = "streams_pkey";

/// One message row to insert.
#[derive(Debug, Clone)]
pub(crate) struct MessageRow {
    pub(crate) message_uuid: String,
    pub(crate) destination: String,
    /// The stored topic (`__null__topic__` for none).
    pub(crate) topic: String,
    pub(crate) text: String,
    /// How many milliseconds before the database's clock at the write it is stamped
    /// (`created_at_epoch_ms`): 0 for a lone message, so senders on every host share one
    /// clock; a batch's messages to one destination and topic count down to 1, each a
    /// millisecond apart in the batch's order (see `messages::send::write`).
    pub(crate) ms_before: i64,
    /// The sender's idempotency key, if any.
    pub(crate) key: Option<String>,
    /// Also deliver to every workflow forked from the destination, recursively.
    pub(crate) to_forks: bool,
}

/// The operation a write records, and under which ownership.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fence<'a> {
    pub(crate) workflow_id: &'a str,
    pub(crate) owner_xid: &'a str,
    /// The operation's function id (also the `function_id` of event history and stream rows).
    pub(crate) function_id: i32,
    /// The operation's name; `None` writes from a step: fenced, no checkpoint of its own.
    pub(crate) name: Option<&'a str>,
    pub(crate) started_ms: i64,
    pub(crate) completed_ms: i64,
    pub(crate) app_name: &'a str,
}

/// What a fenced write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// The effect and its checkpoint (if any) committed.
    Done,
    /// Nothing was written: the fence failed, or the checkpoint's step id was taken (by
    /// another execution, or by this write's own earlier attempt); see
    /// [`SystemDatabase::recorded_at`].
    Missed,
}

/// What a workflow's history holds at one step id, and whether `owner_xid` still owns it.
#[derive(Debug, Clone)]
pub(crate) struct RecordedAt {
    pub(crate) owned: bool,
    /// The checkpoint there, with its start and completion times.
    pub(crate) checkpoint: Option<(Checkpoint, Option<i64>, Option<i64>)>,
}

/// A peeked message: the oldest unconsumed one for a destination and topic.
#[derive(Debug, Clone)]
pub(crate) struct PeekedMessage {
    pub(crate) message_uuid: String,
    pub(crate) text: String,
    pub(crate) serialization: Option<String>,
}

/// A stored value with its encoding (event values, stream values).
#[derive(Debug, Clone)]
pub(crate) struct StoredValue {
    pub(crate) text: String,
    pub(crate) serialization: Option<String>,
}

/// What one read of a stream found.
#[derive(Debug, Clone)]
pub(crate) struct StreamRead {
    /// The writing workflow's status; `None` when it does not exist.
    pub(crate) status: Option<String>,
    /// The consecutive values from the offset read.
    pub(crate) values: Vec<StoredValue>,
}

fn constraint(e: &tokio_postgres::Error) -> Option<&str> {
    e.as_db_error().and_then(|d| d.constraint())
}

fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(|c| c.code())
}

/// The checkpoint insert shared by every fenced write: `$1` workflow, `$3` function id, `$4`
/// name, `$5` started, `$6` completed, `$7` application name, guarded by the CTE `owner`.
fn checkpoint_cte(s: &str) -> String {
    format!(
        "rec AS (
             INSERT INTO {s}.operation_outputs (workflow_uuid, function_id, function_name, started_at_epoch_ms,
                                                completed_at_epoch_ms, application_name)
             SELECT $1, $3, $4, $5, $6, $7 FROM owner WHERE $4::text IS NOT NULL
             RETURNING 1
         )"
    )
}

/// The ownership guard every fenced write starts with (`$1` workflow, `$2` token).
fn owner_cte(s: &str) -> String {
    format!("owner AS (SELECT 1 AS one FROM {s}.workflow_status WHERE workflow_uuid = $1 AND owner_xid = $2)")
}

impl SystemDatabase {
    /// Runs one fenced write: `sql` returns one row with the number of effect rows written,
    /// the number of checkpoints inserted, and whether the fence held. A violation of the
    /// checkpoint's key is a miss (nothing written); of a stream's key (a concurrent writer
    /// took the offset) a retry; of a foreign key, [`Fenced::MissingParent`].
    /// `$1`..`$7` are the fence's parameters (all NULL without a fence); `rest` follows from
    /// `$8`.
    async fn fenced_write(
        &self,
        what: &str,
        sql: &str,
        fence: Option<&Fence<'_>>,
        rest: &[&(dyn ToSql + Sync)],
    ) -> Result<Fenced> {
        let f = FenceParams::of(fence);
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![
            &f.wf,
            &f.owner,
            &f.fid,
            &f.name,
            &f.started,
            &f.completed,
            &f.app,
        ];
        all.extend_from_slice(rest);
        let params = all.as_slice();
        loop {
            let result = self
                .run(what, |client, _| async move {
                    let stmt = client
                        .prepare_cached(sql)
                        .await
                        .map_err(|e| Error::db(format!("could not {what}"), e))?;
                    match client.query_one(&stmt, params).await {
                        Ok(row) => Ok(Some(Fenced::Counts {
                            recorded: row.get::<_, i64>(1),
                            owned: row.get::<_, Option<bool>>(2) == Some(true),
                        })),
                        // A primary key is named only by its own unique violation.
                        Err(e) if constraint(&e) == Some(STREAM_KEY) => Ok(None),
                        Err(e) if constraint(&e) == Some(CHECKPOINT_KEY) => {
                            Ok(Some(Fenced::Counts {
                                recorded: 0,
                                owned: true,
                            }))
                        }
                        Err(e) if sqlstate(&e) == Some(FOREIGN_KEY_VIOLATION) => {
                            Ok(Some(Fenced::MissingParent))
                        }
                        Err(e) => Err(Error::db(format!("could not {what}"), e)),
                    }
                })
                .await?;
            match result {
                Some(outcome) => return Ok(outcome),
                // Another writer of the same stream took the offset: compute the next one.
                None => {
                    tracing::debug!(
                        "{what}: the stream offset was taken by a concurrent writer; retrying"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        }
    }

    /// Inserts messages (idempotently by `message_uuid`). With a fence, only while its
    /// execution owns the workflow, and (with a name) with the operation's checkpoint.
    ///
    /// # Errors
    /// [`ErrorKind::NonExistentWorkflow`] naming the destinations that do not exist
    /// (nothing is written).
    pub(crate) async fn send_messages(
        &self,
        rows: &[MessageRow],
        fence: Option<Fence<'_>>,
    ) -> Result<Written> {
        let sql = self.sql("send_messages", |s| {
            format!(
                "WITH {owner},
                 sent AS (
                     INSERT INTO {s}.notifications (message_uuid, destination_uuid, topic, message, serialization,
                                                    created_at_epoch_ms)
                     SELECT m.id, m.dest, m.topic, m.msg, '{PORTABLE_JSON}',
                            (EXTRACT(epoch FROM now()) * 1000.0)::bigint - m.before
                       FROM unnest($8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[])
                            AS m(id, dest, topic, msg, before)
                      WHERE $1::text IS NULL OR EXISTS (SELECT 1 FROM owner)
                     ON CONFLICT (message_uuid) DO NOTHING
                     RETURNING 1
                 ),
                 {rec}
                 SELECT (SELECT count(*) FROM sent), (SELECT count(*) FROM rec),
                        $1::text IS NULL OR EXISTS (SELECT 1 FROM owner)",
                owner = owner_cte(s),
                rec = checkpoint_cte(s),
            )
        });
        let ids: Vec<&str> = rows.iter().map(|r| r.message_uuid.as_str()).collect();
        let dests: Vec<&str> = rows.iter().map(|r| r.destination.as_str()).collect();
        let topics: Vec<&str> = rows.iter().map(|r| r.topic.as_str()).collect();
        let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
        let before: Vec<i64> = rows.iter().map(|r| r.ms_before).collect();
        let what = match &fence {
            Some(f) => format!("send from workflow `{}`", f.workflow_id),
            None => "send a message".to_owned(),
        };
        let outcome = self
            .fenced_write(
                &what,
                &sql,
                fence.as_ref(),
                &[&ids, &dests, &topics, &texts, &before],
            )
            .await?;
        match outcome {
            Fenced::MissingParent => Err(self.missing_destinations(&dests).await),
            Fenced::Counts { recorded, owned } => Ok(written(fence.as_ref(), recorded, owned)),
        }
    }

    /// The workflows forked from each of `ids`, recursively (forks of forks), oldest first.
    pub(crate) async fn fork_descendants(
        &self,
        ids: &[&str],
    ) -> Result<HashMap<String, Vec<String>>> {
        let s = self.quoted_schema();
        let sql = format!(
            "WITH RECURSIVE forks(root, id) AS (
                 SELECT ws.forked_from, ws.workflow_uuid FROM {s}.workflow_status ws
                  WHERE ws.forked_from = ANY($1)
                 UNION
                 SELECT f.root, ws.workflow_uuid FROM {s}.workflow_status ws JOIN forks f ON ws.forked_from = f.id)
             SELECT f.root, f.id FROM forks f JOIN {s}.workflow_status ws ON ws.workflow_uuid = f.id
              ORDER BY f.root, ws.created_at, f.id"
        );
        let rows = self
            .query("find the forks of a send's destinations", &sql, &[&ids])
            .await?;
        let mut forks: HashMap<String, Vec<String>> = HashMap::new();
        for r in rows {
            forks.entry(r.get(0)).or_default().push(r.get(1));
        }
        Ok(forks)
    }

    /// The error for a send whose foreign key failed: which destinations do not exist.
    async fn missing_destinations(&self, dests: &[&str]) -> Error {
        let unique: Vec<&str> = {
            let mut seen = HashSet::new();
            dests.iter().copied().filter(|d| seen.insert(*d)).collect()
        };
        let s = self.quoted_schema();
        let found = self
            .query(
                "check the destinations of a send",
                &format!(
                    "SELECT workflow_uuid FROM {s}.workflow_status WHERE workflow_uuid = ANY($1)"
                ),
                &[&unique],
            )
            .await;
        let missing: Vec<String> = match found {
            Ok(rows) => {
                let present: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
                unique
                    .iter()
                    .filter(|d| !present.contains(**d))
                    .map(|d| format!("`{d}`"))
                    .collect()
            }
            Err(_) => unique.iter().map(|d| format!("`{d}`")).collect(),
        };
        let mut e = Error::new(
            ErrorKind::NonExistentWorkflow,
            format!(
                "cannot send: no workflow has the id {} (messages are delivered to existing workflows only); nothing was sent",
                missing.join(", ")
            ),
        );
        if let [one] = unique.as_slice() {
            e = e.with_workflow_id(*one);
        }
        e
    }

    /// The oldest unconsumed message for `destination` on `topic` (FIFO: by creation time,
    /// then by the order the sending transactions began).
    pub(crate) async fn peek_message(
        &self,
        destination: &str,
        topic: &str,
    ) -> Result<Option<PeekedMessage>> {
        let sql = self.sql("peek_message", |s| {
            format!(
                "SELECT message_uuid, message, serialization FROM {s}.notifications
                  WHERE destination_uuid = $1 AND topic = $2 AND consumed = false
                  ORDER BY created_at_epoch_ms, age(xmin) DESC
                  LIMIT 1"
            )
        });
        let what = format!("look for a message to `{destination}`");
        let row = self
            .prepared_opt(&what, &sql, &[&destination, &topic])
            .await?;
        Ok(row.map(|r| PeekedMessage {
            message_uuid: r.get(0),
            text: r.get(1),
            serialization: r.get(2),
        }))
    }

    /// Consumes one message and records the `DBOS.recv` checkpoint holding it, in one
    /// statement fenced by ownership. The message must still be unconsumed.
    pub(crate) async fn consume_message(
        &self,
        message_uuid: &str,
        fence: Fence<'_>,
    ) -> Result<Written> {
        let sql = self.sql("consume_message", |s| {
            format!(
                "WITH {owner},
                 consumed AS (
                     UPDATE {s}.notifications SET consumed = true, consumed_by_function_id = $3
                      WHERE message_uuid = $8 AND destination_uuid = $1 AND consumed = false
                        AND EXISTS (SELECT 1 FROM owner)
                     RETURNING message
                 ),
                 rec AS (
                     INSERT INTO {s}.operation_outputs (workflow_uuid, function_id, function_name, output, serialization,
                                                        started_at_epoch_ms, completed_at_epoch_ms, application_name)
                     SELECT $1, $3, $4, message, '{PORTABLE_JSON}', $5, $6, $7 FROM consumed
                     RETURNING 1
                 )
                 SELECT (SELECT count(*) FROM consumed), (SELECT count(*) FROM rec), EXISTS (SELECT 1 FROM owner)",
                owner = owner_cte(s),
            )
        });
        let what = format!("receive a message in workflow `{}`", fence.workflow_id);
        let outcome = self
            .fenced_write(&what, &sql, Some(&fence), &[&message_uuid])
            .await?;
        Ok(match outcome {
            Fenced::Counts { recorded: 1, .. } => Written::Done,
            _ => Written::Missed,
        })
    }

    /// Sets an event (latest value wins) and adds it to the event history at the fence's
    /// function id; with a name, records the `DBOS.setEvent` checkpoint in the same statement.
    pub(crate) async fn set_event(
        &self,
        key: &str,
        text: &str,
        fence: Fence<'_>,
    ) -> Result<Written> {
        let sql = self.sql("set_event", |s| {
            format!(
                "WITH {owner},
                 ev AS (
                     INSERT INTO {s}.workflow_events (workflow_uuid, key, value, serialization)
                     SELECT $1, $8, $9, '{PORTABLE_JSON}' FROM owner
                     ON CONFLICT (workflow_uuid, key) DO UPDATE SET value = EXCLUDED.value, serialization = EXCLUDED.serialization
                     RETURNING 1
                 ),
                 hist AS (
                     INSERT INTO {s}.workflow_events_history (workflow_uuid, function_id, key, value, serialization)
                     SELECT $1, $3, $8, $9, '{PORTABLE_JSON}' FROM owner
                     ON CONFLICT (workflow_uuid, function_id, key) DO UPDATE SET value = EXCLUDED.value,
                                                                              serialization = EXCLUDED.serialization
                 ),
                 {rec}
                 SELECT (SELECT count(*) FROM ev), (SELECT count(*) FROM rec), EXISTS (SELECT 1 FROM owner)",
                owner = owner_cte(s),
                rec = checkpoint_cte(s),
            )
        });
        let what = format!("set event `{key}` of workflow `{}`", fence.workflow_id);
        self.keyed_write(&what, &sql, fence, key, text).await
    }

    /// The current value of one event.
    pub(crate) async fn get_event(
        &self,
        workflow_id: &str,
        key: &str,
    ) -> Result<Option<StoredValue>> {
        let sql = self.sql("get_event", |s| {
            format!("SELECT value, serialization FROM {s}.workflow_events WHERE workflow_uuid = $1 AND key = $2")
        });
        let what = format!("read event `{key}` of workflow `{workflow_id}`");
        let row = self
            .prepared_opt(&what, &sql, &[&workflow_id, &key])
            .await?;
        Ok(row.map(|r| StoredValue {
            text: r.get(0),
            serialization: r.get(1),
        }))
    }

    /// Every current event of a workflow, by key.
    pub(crate) async fn get_all_events(
        &self,
        workflow_id: &str,
    ) -> Result<Vec<(String, StoredValue)>> {
        let s = self.quoted_schema();
        let rows = self
            .query(
                &format!("read the events of workflow `{workflow_id}`"),
                &format!(
                    "SELECT key, value, serialization FROM {s}.workflow_events WHERE workflow_uuid = $1 ORDER BY key"
                ),
                &[&workflow_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    StoredValue {
                        text: r.get(1),
                        serialization: r.get(2),
                    },
                )
            })
            .collect())
    }

    /// Appends a value to a stream at its next offset, with the fence's function id; with a
    /// name, records the operation's checkpoint in the same statement.
    pub(crate) async fn write_stream(
        &self,
        key: &str,
        text: &str,
        fence: Fence<'_>,
    ) -> Result<Written> {
        let sql = self.sql("write_stream", |s| {
            format!(
                "WITH {owner},
                 w AS (
                     INSERT INTO {s}.streams (workflow_uuid, key, value, \"offset\", function_id, serialization)
                     SELECT $1, $8, $9,
                            COALESCE((SELECT max(\"offset\") FROM {s}.streams WHERE workflow_uuid = $1 AND key = $8), -1) + 1,
                            $3, '{PORTABLE_JSON}'
                       FROM owner
                     RETURNING 1
                 ),
                 {rec}
                 SELECT (SELECT count(*) FROM w), (SELECT count(*) FROM rec), EXISTS (SELECT 1 FROM owner)",
                owner = owner_cte(s),
                rec = checkpoint_cte(s),
            )
        });
        let what = format!("write stream `{key}` of workflow `{}`", fence.workflow_id);
        self.keyed_write(&what, &sql, fence, key, text).await
    }

    /// Appends a value to a stream from a step (fenced by the workflow's ownership, no
    /// checkpoint of its own), idempotently: the offset is read first and the row inserted
    /// exactly there, so a statement retried after a lost acknowledgement finds its own row
    /// at that offset (the step's function id, the same value) instead of appending a second
    /// one. An offset taken by another writer is read again.
    pub(crate) async fn append_stream_from_step(
        &self,
        key: &str,
        text: &str,
        fence: Fence<'_>,
    ) -> Result<Written> {
        let next = self.sql("stream_next_offset", |s| {
            format!(
                "SELECT COALESCE(max(\"offset\"), -1) + 1 FROM {s}.streams WHERE workflow_uuid = $1 AND key = $2"
            )
        });
        let put = self.sql("append_stream_at", |s| {
            format!(
                "WITH {owner},
                 w AS (
                     INSERT INTO {s}.streams (workflow_uuid, key, value, \"offset\", function_id, serialization)
                     SELECT $1, $4::text, $5::text, $6::int4, $3::int4, '{PORTABLE_JSON}' FROM owner
                     ON CONFLICT DO NOTHING
                     RETURNING 1
                 )
                 SELECT (SELECT count(*) FROM w), EXISTS (SELECT 1 FROM owner),
                        (SELECT function_id = $3 AND value = $5 AND serialization = '{PORTABLE_JSON}'
                           FROM {s}.streams WHERE workflow_uuid = $1 AND key = $4 AND \"offset\" = $6)",
                owner = owner_cte(s),
            )
        });
        let (wf, fid) = (fence.workflow_id, fence.function_id);
        let what = format!("write stream `{key}` of workflow `{wf}` from step {fid}");
        loop {
            let offset: i32 = self
                .prepared_opt(&what, &next, &[&wf, &key])
                .await?
                .map_or(0, |r| r.get(0));
            // Set once the insert may have reached the server: from then on, a row of this
            // step with this value at `offset` may be this write's own.
            let sent = std::sync::atomic::AtomicBool::new(false);
            let outcome = self
                .run(&what, |client, _| {
                    let (put, what, sent) = (put.clone(), &what, &sent);
                    async move {
                        let stmt = client
                            .prepare_cached(&put)
                            .await
                            .map_err(|e| Error::db(format!("could not {what}"), e))?;
                        let retried = sent.swap(true, std::sync::atomic::Ordering::SeqCst);
                        match client
                            .query_one(&stmt, &[&wf, &fence.owner_xid, &fid, &key, &text, &offset])
                            .await
                        {
                            Ok(row) => Ok(Some((
                                row.get::<_, i64>(0) == 1,
                                row.get::<_, bool>(1),
                                retried && row.get::<_, Option<bool>>(2) == Some(true),
                            ))),
                            Err(e) if sqlstate(&e) == Some(FOREIGN_KEY_VIOLATION) => Ok(None),
                            Err(e) => Err(Error::db(format!("could not {what}"), e)),
                        }
                    }
                })
                .await?;
            match outcome {
                None => return Err(non_existent(wf)),
                Some((true, _, _)) => return Ok(Written::Done),
                Some((false, false, _)) => return Ok(Written::Missed),
                // This write's own row, committed by an attempt whose acknowledgement was lost.
                Some((false, true, true)) => return Ok(Written::Done),
                Some((false, true, false)) => {
                    tracing::debug!(
                        "{what}: offset {offset} was taken by another writer; retrying"
                    );
                }
            }
        }
    }

    /// Runs a fenced write of one value under a key (`$8`, `$9` after the fence's
    /// parameters): an event or a stream entry of the fence's workflow.
    async fn keyed_write(
        &self,
        what: &str,
        sql: &str,
        fence: Fence<'_>,
        key: &str,
        text: &str,
    ) -> Result<Written> {
        let outcome = self
            .fenced_write(what, sql, Some(&fence), &[&key, &text])
            .await?;
        match outcome {
            Fenced::MissingParent => Err(non_existent(fence.workflow_id)),
            Fenced::Counts { recorded, owned } => Ok(written(Some(&fence), recorded, owned)),
        }
    }

    /// Up to `limit` consecutive values of a stream from `offset`, and the writer's status,
    /// in one statement (one snapshot).
    pub(crate) async fn read_stream(
        &self,
        workflow_id: &str,
        key: &str,
        offset: i32,
        limit: i32,
    ) -> Result<StreamRead> {
        let sql = self.sql("read_stream", |s| {
            format!(
                "SELECT ws.status, st.value, st.serialization, st.\"offset\"
                   FROM {s}.workflow_status ws
                   LEFT JOIN {s}.streams st ON st.workflow_uuid = ws.workflow_uuid AND st.key = $2
                        AND st.\"offset\" >= $3 AND st.\"offset\" < $3 + $4
                  WHERE ws.workflow_uuid = $1
                  ORDER BY st.\"offset\""
            )
        });
        let what = format!("read stream `{key}` of workflow `{workflow_id}`");
        let rows = self
            .run(&what, |client, _| {
                let sql = sql.clone();
                let what = what.clone();
                async move {
                    let stmt = client
                        .prepare_cached(&sql)
                        .await
                        .map_err(|e| Error::db(format!("could not {what}"), e))?;
                    client
                        .query(&stmt, &[&workflow_id, &key, &offset, &limit])
                        .await
                        .map_err(|e| Error::db(format!("could not {what}"), e))
                }
            })
            .await?;
        let Some(first) = rows.first() else {
            return Ok(StreamRead {
                status: None,
                values: Vec::new(),
            });
        };
        let status: Option<String> = first.get(0);
        let mut values = Vec::new();
        for r in &rows {
            match r.get::<_, Option<i32>>(3) {
                // Only the values at consecutive offsets from the start.
                Some(o) if o == offset + values.len() as i32 => values.push(StoredValue {
                    text: r.get(1),
                    serialization: r.get(2),
                }),
                _ => break,
            }
        }
        Ok(StreamRead {
            status: Some(status.unwrap_or_default()),
            values,
        })
    }

    /// The status of each of `ids` that exists.
    pub(crate) async fn statuses(&self, ids: &[&str]) -> Result<Vec<(String, String)>> {
        let sql = self.sql("statuses", |s| {
            format!("SELECT workflow_uuid, status FROM {s}.workflow_status WHERE workflow_uuid = ANY($1)")
        });
        let rows = self.query("read workflow statuses", &sql, &[&ids]).await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, Option<String>>(1).unwrap_or_default()))
            .collect())
    }

    /// Of the `(destination, topic)` pairs, those with an unconsumed message.
    pub(crate) async fn pending_messages(
        &self,
        keys: &[(&str, &str)],
    ) -> Result<Vec<(String, String)>> {
        let s = self.quoted_schema();
        let dests: Vec<&str> = keys.iter().map(|k| k.0).collect();
        let topics: Vec<&str> = keys.iter().map(|k| k.1).collect();
        let rows = self
            .query(
                "look for messages to waiting workflows",
                &format!(
                    "SELECT DISTINCT n.destination_uuid, n.topic
                       FROM unnest($1::text[], $2::text[]) AS k(dest, topic)
                       JOIN {s}.notifications n ON n.destination_uuid = k.dest AND n.topic = k.topic AND n.consumed = false"
                ),
                &[&dests, &topics],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Of the `(workflow, key)` pairs, those whose event is set.
    pub(crate) async fn present_events(
        &self,
        keys: &[(&str, &str)],
    ) -> Result<Vec<(String, String)>> {
        let s = self.quoted_schema();
        let wfs: Vec<&str> = keys.iter().map(|k| k.0).collect();
        let names: Vec<&str> = keys.iter().map(|k| k.1).collect();
        let rows = self
            .query(
                "look for events awaited here",
                &format!(
                    "SELECT e.workflow_uuid, e.key
                       FROM unnest($1::text[], $2::text[]) AS k(wf, key)
                       JOIN {s}.workflow_events e ON e.workflow_uuid = k.wf AND e.key = k.key"
                ),
                &[&wfs, &names],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Sends `pg_notify(channel, payload)` for each pair, in one statement.
    pub(crate) async fn notify_all(&self, notifications: &[(&str, &str)]) -> Result<()> {
        let channels: Vec<&str> = notifications.iter().map(|n| n.0).collect();
        let payloads: Vec<&str> = notifications.iter().map(|n| n.1).collect();
        self.query(
            "notify waiting readers",
            "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)",
            &[&channels, &payloads],
        )
        .await?;
        Ok(())
    }

    /// What the history of `workflow_id` holds at `function_id`, and whether `owner_xid` still
    /// owns the workflow: after a fenced write wrote nothing, this tells a lost fence from a
    /// step recorded first by another execution, or by this write's own earlier attempt.
    pub(crate) async fn recorded_at(
        &self,
        workflow_id: &str,
        owner_xid: &str,
        function_id: i32,
    ) -> Result<RecordedAt> {
        let sql = self.sql("recorded_at", |s| {
            format!(
                "SELECT (SELECT owner_xid = $2 FROM {s}.workflow_status WHERE workflow_uuid = $1),
                        o.function_name, o.output, o.error, o.child_workflow_id, o.serialization,
                        o.started_at_epoch_ms, o.completed_at_epoch_ms
                   FROM (SELECT 1) AS one
                   LEFT JOIN {s}.operation_outputs o ON o.workflow_uuid = $1 AND o.function_id = $3"
            )
        });
        let what = format!("check step {function_id} of workflow `{workflow_id}`");
        let row = self
            .prepared_opt(&what, &sql, &[&workflow_id, &owner_xid, &function_id])
            .await?;
        let Some(r) = row else {
            return Ok(RecordedAt {
                owned: false,
                checkpoint: None,
            });
        };
        let owned = r.get::<_, Option<bool>>(0) == Some(true);
        let checkpoint = r.get::<_, Option<String>>(1).map(|name| {
            (
                Checkpoint {
                    function_name: name,
                    output: r.get(2),
                    error: r.get(3),
                    child_workflow_id: r.get(4),
                    serialization: r.get(5),
                },
                r.get::<_, Option<i64>>(6),
                r.get::<_, Option<i64>>(7),
            )
        });
        Ok(RecordedAt { owned, checkpoint })
    }

    /// One prepared statement expecting at most one row, with retries.
    async fn prepared_opt(
        &self,
        what: &str,
        sql: &std::sync::Arc<str>,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>> {
        self.run(what, |client, _| {
            let sql = sql.clone();
            async move {
                let stmt = client
                    .prepare_cached(&sql)
                    .await
                    .map_err(|e| Error::db(format!("could not {what}"), e))?;
                client
                    .query_opt(&stmt, params)
                    .await
                    .map_err(|e| Error::db(format!("could not {what}"), e))
            }
        })
        .await
    }
}

/// The fence's parameters `$1`..`$7` (all NULL without a fence).
struct FenceParams<'a> {
    wf: Option<&'a str>,
    owner: Option<&'a str>,
    fid: Option<i32>,
    name: Option<&'a str>,
    started: Option<i64>,
    completed: Option<i64>,
    app: Option<&'a str>,
}

impl<'a> FenceParams<'a> {
    fn of(fence: Option<&Fence<'a>>) -> Self {
        FenceParams {
            wf: fence.map(|f| f.workflow_id),
            owner: fence.map(|f| f.owner_xid),
            fid: fence.map(|f| f.function_id),
            name: fence.and_then(|f| f.name),
            started: fence.map(|f| f.started_ms),
            completed: fence.map(|f| f.completed_ms),
            app: fence.map(|f| f.app_name),
        }
    }
}

/// A write with a checkpoint is done when the checkpoint was inserted; one without (from a
/// step, or from outside any workflow) when the fence let its effect through.
fn written(fence: Option<&Fence<'_>>, recorded: i64, owned: bool) -> Written {
    let done = match fence.and_then(|f| f.name) {
        Some(_) => recorded == 1,
        None => owned,
    };
    if done {
        Written::Done
    } else {
        Written::Missed
    }
}

/// What one fenced statement did.
#[derive(Debug, Clone, Copy)]
enum Fenced {
    Counts {
        recorded: i64,
        owned: bool,
    },
    /// A foreign key failed: the workflow written to does not exist.
    MissingParent,
}

fn non_existent(id: &str) -> Error {
    Error::new(
        ErrorKind::NonExistentWorkflow,
        format!("workflow `{id}` no longer exists"),
    )
    .with_workflow_id(id)
}

/// One row of what a workflow exchanged, as stored, for inspection (the admin dashboard):
/// an event's history entry, a message sent to it, or a stream entry.
#[cfg(feature = "admin")]
#[derive(Debug, Clone)]
pub(crate) struct ExchangeRow {
    /// The event key, the message topic (`None`: sent without one) or the stream key.
    pub(crate) key: Option<String>,
    /// The step that wrote it (events, streams), or the step that consumed it (messages).
    pub(crate) function_id: Option<i32>,
    /// The stream offset, or the message's send time (epoch ms).
    pub(crate) position: Option<i64>,
    /// Messages: whether a `recv` consumed it.
    pub(crate) consumed: bool,
    pub(crate) value: StoredValue,
}

/// What a workflow exchanged, newest writes last, each list capped.
#[cfg(feature = "admin")]
#[derive(Debug, Clone, Default)]
pub(crate) struct Exchanges {
    pub(crate) events_history: Vec<ExchangeRow>,
    pub(crate) messages: Vec<ExchangeRow>,
    pub(crate) streams: Vec<ExchangeRow>,
}

#[cfg(feature = "admin")]
impl SystemDatabase {
    /// The events history, the messages sent to, and the stream entries of a workflow, up to
    /// `limit` of each (read for inspection; nothing is consumed).
    pub(crate) async fn workflow_exchanges(
        &self,
        workflow_id: &str,
        limit: i64,
    ) -> Result<Exchanges> {
        let s = self.quoted_schema();
        let row = |r: &tokio_postgres::Row, consumed: bool| ExchangeRow {
            key: r.get(0),
            function_id: r.get(1),
            position: r.get(2),
            consumed,
            value: StoredValue {
                text: r.get(3),
                serialization: r.get(4),
            },
        };
        let events = self
            .query(
                &format!("read the events history of workflow `{workflow_id}`"),
                &format!(
                    "SELECT key, function_id, NULL::bigint, value, serialization FROM {s}.workflow_events_history
                      WHERE workflow_uuid = $1 ORDER BY function_id, key LIMIT $2"
                ),
                &[&workflow_id, &limit],
            )
            .await?;
        let messages = self
            .query(
                &format!("read the messages of workflow `{workflow_id}`"),
                &format!(
                    "SELECT NULLIF(topic, '{NULL_TOPIC}'), consumed_by_function_id, created_at_epoch_ms, message,
                            serialization, consumed
                       FROM {s}.notifications WHERE destination_uuid = $1
                      ORDER BY created_at_epoch_ms, message_uuid LIMIT $2"
                ),
                &[&workflow_id, &limit],
            )
            .await?;
        let streams = self
            .query(
                &format!("read the streams of workflow `{workflow_id}`"),
                &format!(
                    "SELECT key, function_id, \"offset\"::bigint, value, serialization FROM {s}.streams
                      WHERE workflow_uuid = $1 ORDER BY key, \"offset\" LIMIT $2"
                ),
                &[&workflow_id, &limit],
            )
            .await?;
        Ok(Exchanges {
            events_history: events.iter().map(|r| row(r, false)).collect(),
            messages: messages.iter().map(|r| row(r, r.get(5))).collect(),
            streams: streams.iter().map(|r| row(r, false)).collect(),
        })
    }
}
