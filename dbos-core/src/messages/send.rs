//! Sending messages to workflows.

use std::collections::{HashMap, HashSet};
use std::future::IntoFuture;

use serde::Serialize;
use tracing::Instrument;

use super::durable::{fenced, Effect};
use super::{encode, runtime_here, SEND, SEND_BULK};
use crate::error::{Error, ErrorKind, Result};
use crate::observe::{self, Op};
use crate::runtime::Dbos;
use crate::sysdb::messages::{Fence, MessageRow, Written, NULL_TOPIC};
use crate::sysdb::workflows::{now_ms, Checkpoint};
use crate::sysdb::SystemDatabase;
use crate::workflow::context::{current, current_step, Operation, Slot};
use crate::workflow::registry::BoxFuture;
use crate::workflow::step;

/// A message to send with [`send_batch`] (or [`Dbos::send_batch`]).
///
/// ```
/// use dbos_core::Message;
///
/// let m = Message::new("order-42", &serde_json::json!({"paid": 1999}))
///     .topic("payment")
///     .idempotency_key("webhook-981");
/// assert_eq!(m.destination_id(), "order-42");
/// ```
#[derive(Debug)]
pub struct Message {
    destination_id: String,
    topic: Option<String>,
    idempotency_key: Option<String>,
    to_forks: bool,
    text: Result<String>,
}

impl Message {
    /// A message carrying `value` (stored as `portable_json`) to workflow `destination_id`,
    /// with no topic. A value that cannot be encoded is reported when it is sent.
    pub fn new<T: Serialize + ?Sized>(destination_id: impl Into<String>, value: &T) -> Message {
        Message {
            destination_id: destination_id.into(),
            topic: None,
            idempotency_key: None,
            to_forks: false,
            text: encode(value, "the message"),
        }
    }

    /// The topic: the receiver's `recv` names it. Messages are FIFO per destination and topic.
    pub fn topic(mut self, topic: impl Into<String>) -> Message {
        self.topic = Some(topic.into());
        self
    }

    /// An idempotency key: sending again with the same key to the same destination does
    /// nothing (the message id is `<key>::<destination>`, as DBOS makes it).
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Message {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Also delivers the message to every workflow forked from the destination, recursively
    /// (forks of forks), as DBOS's `send_to_forks`: a fork waiting where its original waited
    /// gets the message too. Each fork gets its own copy (with a key, the message id is
    /// `<key>::<fork id>`); forks made after the send do not.
    pub fn to_forks(mut self) -> Message {
        self.to_forks = true;
        self
    }

    /// The destination workflow's id.
    pub fn destination_id(&self) -> &str {
        &self.destination_id
    }
}

/// A [`send`] not yet sent: `.await` it, after chaining options.
#[must_use = "a send does nothing until it is awaited"]
#[derive(Debug)]
pub struct SendCall {
    message: Message,
    /// Sent through this database from outside any workflow (`Dbos::send`, `Client::send`).
    via: Option<SystemDatabase>,
}

impl SendCall {
    /// Sets the idempotency key: a second send with it (to the same destination) does
    /// nothing. See [`Message::idempotency_key`].
    pub fn idempotency_key(mut self, key: impl Into<String>) -> SendCall {
        self.message.idempotency_key = Some(key.into());
        self
    }

    /// Also delivers to every workflow forked from the destination, recursively. See
    /// [`Message::to_forks`].
    pub fn to_forks(mut self) -> SendCall {
        self.message.to_forks = true;
        self
    }

    /// Sends through `dbos`, from outside any workflow: nothing is recorded.
    pub fn on(mut self, dbos: &Dbos) -> SendCall {
        self.via = Some(dbos.system_database().clone());
        self
    }

    pub(crate) fn via(mut self, sysdb: &SystemDatabase) -> SendCall {
        self.via = Some(sysdb.clone());
        self
    }
}

impl IntoFuture for SendCall {
    type Output = Result<()>;
    type IntoFuture = BoxFuture<'static, Result<()>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(deliver(vec![self.message], SEND, self.via))
    }
}

/// Sends `message` to workflow `destination_id` on `topic` (`None` for no topic; DBOS
/// stores it as `__null__topic__`). The receiver gets it with [`recv`](crate::recv) on the
/// same topic, in the order sent; a message sent before the receiver waits is kept until
/// it receives.
///
/// Inside a workflow the send is a durable operation (`DBOS.send`): the message and the
/// checkpoint commit in one transaction, so a recovered workflow never sends it twice.
/// Inside a step it lands only while the step's workflow is still owned by its execution.
/// Elsewhere it goes through the current runtime (or `.on(&dbos)`).
///
/// ```no_run
/// # async fn demo() -> dbos_core::Result<()> {
/// dbos_core::send("order-42", &1999_u64, "payment").await?;
/// dbos_core::send("order-42", &"hello", None).idempotency_key("greeting-1").await?;
/// # Ok(())
/// # }
/// # let _ = demo;
/// ```
///
/// # Errors
/// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow) when no workflow
/// has the id (nothing is written); [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)
/// for a blank id or key; [`ErrorKind::Serialization`](crate::ErrorKind::Serialization) for a
/// value that cannot be encoded; durability failures inside a workflow.
///
/// # Cancel safety
/// Dropping the future may leave the message sent or not; inside a workflow a replay then
/// finds whether it was recorded.
pub fn send<'a, T: Serialize + ?Sized>(
    destination_id: impl Into<String>,
    message: &T,
    topic: impl Into<Option<&'a str>>,
) -> SendCall {
    let mut m = Message::new(destination_id, message);
    m.topic = topic.into().map(str::to_owned);
    SendCall {
        message: m,
        via: None,
    }
}

/// Sends several messages in one transaction: all or none. Inside a workflow it is one
/// durable operation (`DBOS.send_bulk`).
///
/// ```no_run
/// use dbos_core::Message;
///
/// # async fn demo() -> dbos_core::Result<()> {
/// dbos_core::send_batch(vec![
///     Message::new("worker-1", &"job a").topic("jobs"),
///     Message::new("worker-2", &"job b").topic("jobs").idempotency_key("b-1"),
/// ])
/// .await?;
/// # Ok(())
/// # }
/// # let _ = demo;
/// ```
///
/// # Errors
/// As [`send`]; also [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) when
/// two messages share an idempotency key and destination.
pub async fn send_batch(messages: Vec<Message>) -> Result<()> {
    deliver(messages, SEND_BULK, None).await
}

/// Validates, encodes and sends; `via` sends through that database, outside any workflow.
pub(crate) async fn deliver(
    messages: Vec<Message>,
    name: &'static str,
    via: Option<SystemDatabase>,
) -> Result<()> {
    deliver_in(messages, name, via)
        .instrument(observe::operation(Op::Send, name))
        .await
}

async fn deliver_in(
    messages: Vec<Message>,
    name: &'static str,
    via: Option<SystemDatabase>,
) -> Result<()> {
    let rows = rows(messages)?;
    if via.is_none() {
        if let Some(ctx) = current() {
            let function_id = match ctx.begin(name)? {
                Slot::Recorded { checkpoint, .. } => return replayed(&checkpoint, name),
                Slot::Fresh { function_id } => function_id,
            };
            let started = now_ms();
            let rt = ctx.runtime.clone();
            loop {
                let effect = Box::pin(fenced(&ctx, function_id, name, started, started, |owner| {
                    let (rt, rows, wf) = (&rt, &rows, ctx.workflow_id.as_str());
                    async move {
                        let fence = Fence {
                            workflow_id: wf,
                            owner_xid: &owner,
                            function_id,
                            name: Some(name),
                            started_ms: started,
                            completed_ms: started,
                            app_name: &rt.app_name,
                        };
                        write(&rt.sysdb, rows, Some(fence)).await
                    }
                }))
                .await;
                match effect {
                    Ok(Effect::Ours) => return Ok(()),
                    Ok(Effect::Theirs(checkpoint)) => return replayed(&checkpoint, name),
                    Ok(Effect::Nothing) => {}
                    // A destination that does not exist is the send's answer: recorded (the
                    // send wrote nothing), so a replay returns it, as DBOS does, even if a
                    // workflow with that id exists by then.
                    Err(e) if e.kind() == ErrorKind::NonExistentWorkflow => {
                        let text = crate::codec::to_text(&e).map_err(|f| ctx.fail(f))?;
                        let theirs = ctx
                            .record(Operation {
                                error: Some(&text),
                                ..Operation::new(function_id, name, started)
                            })
                            .await?;
                        return match theirs {
                            None => Err(e),
                            Some(checkpoint) => replayed(&checkpoint, name),
                        };
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if let Some(step) = current_step() {
            let owner = step.control.owner();
            let fence = Fence {
                workflow_id: &step.workflow_id,
                owner_xid: &owner,
                function_id: step.step_id,
                name: None,
                started_ms: 0,
                completed_ms: 0,
                app_name: &step.runtime.app_name,
            };
            return match write(&step.runtime.sysdb, &rows, Some(fence)).await? {
                Written::Done => Ok(()),
                Written::Missed => Err(step.runtime.sysdb.ownership_error(&step.workflow_id).await),
            };
        }
    }
    let sysdb = match via {
        Some(sysdb) => sysdb,
        None => runtime_here()?.sysdb.clone(),
    };
    write(&sysdb, &rows, None).await.map(drop)
}

/// What a recorded send answers on replay: nothing, or the error it was recorded with (a
/// destination that did not exist).
fn replayed(checkpoint: &Checkpoint, name: &str) -> Result<()> {
    if checkpoint.error.is_none() {
        return Ok(());
    }
    match step::replay::<(), Error>(
        &None,
        &checkpoint.error,
        &checkpoint.serialization,
        &format!("the recorded error of `{name}`"),
    ) {
        Err(Some(e)) => Err(e),
        Ok(()) | Err(None) => Ok(()),
    }
}

/// Writes `rows` (with their copies for forks) in one statement, stamped so that readers
/// ordering by `created_at_epoch_ms` alone, as DBOS's do, see them in the order sent.
///
/// Every message is stamped with the database's clock, so senders on different hosts
/// agree. A lone message to a destination and topic takes the clock as it is (messages
/// sent in one millisecond are ordered by their transactions, see
/// [`SystemDatabase::peek_message`]). The `n` messages of a batch to one destination and
/// topic need `n` distinct milliseconds that are neither in the future (a message sent
/// right after the batch would be read before its end) nor shared with a message sent
/// before it: they are stamped `n`, `n - 1`, ..., 1 ms before the clock, after waiting
/// `n + 1` ms, so every earlier message carries an older stamp and every later one a
/// newer stamp.
async fn write(
    sysdb: &SystemDatabase,
    rows: &[MessageRow],
    fence: Option<Fence<'_>>,
) -> Result<Written> {
    let mut rows = with_forks(sysdb, rows).await?;
    if let Some(wait) = wait_before(stamp(&mut rows)) {
        tokio::time::sleep(wait).await;
    }
    sysdb.send_messages(&rows, fence).await
}

/// How long a write whose longest run to one destination and topic is `longest` messages
/// waits before its statement: `n + 1` ms for a batch's `n > 1`, so that its oldest stamp
/// (`n` ms before the clock) is newer than any message sent before it; nothing for lone
/// messages.
fn wait_before(longest: i64) -> Option<std::time::Duration> {
    (longest > 1).then(|| std::time::Duration::from_millis(longest.unsigned_abs() + 1))
}

/// Stamps each row with how many milliseconds before the clock it is written: a message
/// alone in its destination and topic 0, the `n` of a batch `n`, `n - 1`, ..., 1, in
/// order. Returns the largest count `n` of one destination and topic.
fn stamp(rows: &mut [MessageRow]) -> i64 {
    let mut total: HashMap<(String, String), i64> = HashMap::new();
    for r in rows.iter() {
        *total
            .entry((r.destination.clone(), r.topic.clone()))
            .or_default() += 1;
    }
    let mut left = total.clone();
    for r in rows.iter_mut() {
        let key = (r.destination.clone(), r.topic.clone());
        let (Some(&n), Some(k)) = (total.get(&key), left.get_mut(&key)) else {
            continue;
        };
        r.ms_before = if n > 1 { *k } else { 0 };
        *k -= 1;
    }
    total.into_values().max().unwrap_or(0)
}

/// `rows`, each followed by a copy for every workflow forked from its destination
/// (recursively) when it is marked `to_forks`. Message ids of the copies are
/// `<key>::<fork>` with a key, `<original id>::<fork>` without: fixed before the write, so
/// a retried write stays idempotent.
async fn with_forks(sysdb: &SystemDatabase, rows: &[MessageRow]) -> Result<Vec<MessageRow>> {
    let roots: Vec<&str> = rows
        .iter()
        .filter(|r| r.to_forks)
        .map(|r| r.destination.as_str())
        .collect();
    if roots.is_empty() {
        return Ok(rows.to_vec());
    }
    let forks = sysdb.fork_descendants(&roots).await?;
    let mut all = Vec::with_capacity(rows.len());
    for r in rows {
        all.push(r.clone());
        if !r.to_forks {
            continue;
        }
        for fork in forks.get(&r.destination).into_iter().flatten() {
            let base = r.key.as_deref().unwrap_or(&r.message_uuid);
            all.push(MessageRow {
                message_uuid: format!("{base}::{fork}"),
                destination: fork.clone(),
                to_forks: false,
                ..r.clone()
            });
        }
    }
    Ok(all)
}

/// The rows of the messages, or what is wrong with them (nothing is written then).
fn rows(messages: Vec<Message>) -> Result<Vec<MessageRow>> {
    let mut keys = HashSet::new();
    let mut rows = Vec::with_capacity(messages.len());
    for m in messages {
        crate::workflow::placement::check_id(&m.destination_id)?;
        let text = m.text.map_err(|e| e.with_workflow_id(&m.destination_id))?;
        let topic = m.topic.unwrap_or_else(|| NULL_TOPIC.to_owned());
        let message_uuid = match &m.idempotency_key {
            Some(key) if key.trim().is_empty() => {
                return Err(Error::invalid(format!(
                "the idempotency key of a message to `{}` is blank: give a non-empty key, or none",
                m.destination_id
            )))
            }
            Some(key) => {
                let id = format!("{key}::{}", m.destination_id);
                if !keys.insert(id.clone()) {
                    return Err(Error::invalid(format!(
                        "two messages of one batch to `{}` share the idempotency key `{key}`: only the first would be \
                         delivered; give each its own key",
                        m.destination_id
                    )));
                }
                id
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        rows.push(MessageRow {
            message_uuid,
            destination: m.destination_id,
            topic,
            text,
            ms_before: 0,
            key: m.idempotency_key,
            to_forks: m.to_forks,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(destination: &str, topic: &str) -> MessageRow {
        MessageRow {
            message_uuid: uuid::Uuid::new_v4().to_string(),
            destination: destination.to_owned(),
            topic: topic.to_owned(),
            text: "1".to_owned(),
            ms_before: -1,
            key: None,
            to_forks: false,
        }
    }

    /// The rule of `write`: a batch of `n` messages to one destination and topic is stamped
    /// `n`, ..., 1 ms before the clock, after a wait of `n + 1` ms (one less and its oldest
    /// stamp can equal, or precede, the stamp of a message sent just before it: readers
    /// ordering by the stamp alone, as DBOS's do, would read them out of order); a lone
    /// message is stamped with the clock, without waiting.
    #[test]
    fn a_batch_counts_down_to_the_clock_after_waiting_one_millisecond_more_than_its_length() {
        let mut rows = vec![
            row("a", "t"),
            row("a", "t"),
            row("b", "t"),
            row("a", "u"),
            row("a", "t"),
        ];
        assert_eq!(stamp(&mut rows), 3);
        let before: Vec<i64> = rows.iter().map(|r| r.ms_before).collect();
        assert_eq!(before, vec![3, 2, 0, 0, 1]);
        assert_eq!(wait_before(3), Some(std::time::Duration::from_millis(4)));
        assert_eq!(wait_before(50), Some(std::time::Duration::from_millis(51)));
        assert_eq!(wait_before(1), None);
        assert_eq!(wait_before(0), None);
        let mut lone = vec![row("a", "t")];
        assert_eq!(stamp(&mut lone), 1);
        assert_eq!(lone[0].ms_before, 0);
    }

    /// What a message becomes before it is written: its destination (the one
    /// `destination_id` names), its topic (`__null__topic__` for none, as DBOS stores it),
    /// the id `<key>::<destination>` with a key (a fresh UUID without), its value as
    /// `portable_json` text and its fork mark.
    #[test]
    fn a_message_s_row_carries_its_destination_topic_key_value_and_fork_mark() {
        let keyed = Message::new("order-42", &1999)
            .topic("payment")
            .idempotency_key("webhook-981")
            .to_forks();
        assert_eq!(keyed.destination_id(), "order-42");
        let plain = Message::new("order-43", &"hi");
        assert_eq!(plain.destination_id(), "order-43");
        let rows = rows(vec![keyed, plain]).unwrap();
        let seen: Vec<(&str, &str, &str, Option<&str>, bool)> = rows
            .iter()
            .map(|r| {
                let (d, t, x) = (r.destination.as_str(), r.topic.as_str(), r.text.as_str());
                (d, t, x, r.key.as_deref(), r.to_forks)
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("order-42", "payment", "1999", Some("webhook-981"), true),
                ("order-43", NULL_TOPIC, "\"hi\"", None, false),
            ]
        );
        assert_eq!(rows[0].message_uuid, "webhook-981::order-42");
        assert!(uuid::Uuid::parse_str(&rows[1].message_uuid).is_ok());
    }
}
