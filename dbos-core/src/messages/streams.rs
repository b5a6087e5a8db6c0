//! Streams: a workflow appends values under a key; readers get them live, in order.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{BoxStream, Stream, StreamExt};
use serde::Serialize;

use super::durable::write_keyed;
use super::waiters::{Channel, WaitGuard, WakeKey};
use super::{decode, encode, runtime_here, CLOSE_STREAM, READ_STREAM, WRITE_STREAM};
use crate::codec::PORTABLE_JSON;
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::RuntimeInner;
use crate::sysdb::messages::{StoredValue, STREAM_CLOSED};
use crate::sysdb::workflows::now_ms;
use crate::sysdb::SystemDatabase;
use crate::workflow::context::{current, Operation, Slot, WorkflowContext};
use crate::workflow::types::Portable;

/// Values read ahead in one round trip.
const BATCH: i32 = 100;
/// How often, by default, a reader waiting for the next value reads again: to see whether
/// the writer is still active (its completion sends no notification), and for a `Client`'s
/// reader (which has no listener) to find new values.
const STATUS_POLL: Duration = Duration::from_millis(500);

/// Appends `value` to the running workflow's stream `key`, at the next offset. Readers
/// ([`read_stream`]) get it live.
///
/// Inside a workflow it is a durable operation (`DBOS.writeStream`): the row and the
/// checkpoint commit in one transaction, so a recovered workflow does not write it twice.
/// Inside a step it writes to the step's workflow's stream (with the step's id), while that
/// workflow is owned by its execution. A statement retried after a lost acknowledgement
/// does not append twice; a step retried after an error may write again.
///
/// ```no_run
/// #[dbos_core::workflow]
/// async fn agent(prompt: String) -> Result<(), dbos_core::Error> {
///     for token in prompt.split(' ') {
///         dbos_core::write_stream("tokens", token).await?;
///     }
///     dbos_core::close_stream("tokens").await
/// }
/// ```
///
/// # Errors
/// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) outside a workflow or
/// step; [`ErrorKind::Serialization`](crate::ErrorKind::Serialization) for a value that
/// cannot be encoded; durability failures.
pub async fn write_stream<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<()> {
    let text = encode(value, &format!("a value of stream `{key}`"))?;
    append(key, &text, WRITE_STREAM).await
}

/// Closes the running workflow's stream `key`: readers end after the values written before
/// (the stream ends with DBOS's marker `"__DBOS_STREAM_CLOSED__"`). Durable inside a
/// workflow (`DBOS.closeStream`). A stream also ends for readers when its workflow is no
/// longer active.
///
/// # Errors
/// As [`write_stream`].
pub async fn close_stream(key: &str) -> Result<()> {
    append(key, STREAM_CLOSED, CLOSE_STREAM).await
}

async fn append(key: &str, text: &str, name: &'static str) -> Result<()> {
    if write_keyed(Channel::Streams, name, key, text).await? {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "`{}(\"{key}\", ..)` was called outside a workflow: a stream belongs to the workflow that writes it. Call \
         it in a #[workflow] body or one of its steps",
        if name == CLOSE_STREAM { "close_stream" } else { "write_stream" }
    )))
}

/// Reads stream `key` of workflow `workflow_id`: a [`Stream`] of its values in order, live
/// as they are written, from offset 0 (or [`from_offset`](ReadStream::from_offset)). It ends
/// at the close marker, or once the writer is no longer active and every value written is
/// read.
///
/// Inside a workflow each value read is recorded (`DBOS.readStream`, one step per value,
/// and one for the end), so a replay reads the same values without reading the stream
/// again. Elsewhere it reads through the current runtime (or
/// [`Dbos::read_stream`](crate::Dbos::read_stream)), recording nothing.
///
/// ```no_run
/// use futures_util::StreamExt;
///
/// # async fn demo() -> dbos_core::Result<()> {
/// let mut tokens = dbos_core::read_stream::<String>("agent-7", "tokens");
/// while let Some(token) = tokens.next().await {
///     print!("{} ", token?);
/// }
/// # Ok(())
/// # }
/// # let _ = demo;
/// ```
///
/// Items are `Err` when the writer does not exist
/// ([`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow)), when a value
/// does not decode as `T` ([`ErrorKind::Serialization`](crate::ErrorKind::Serialization),
/// naming the workflow, the key and the stored text), or on a durability failure; the stream
/// ends after an error.
pub fn read_stream<T: Portable>(workflow_id: &str, key: &str) -> ReadStream<T> {
    match current() {
        Some(ctx) => ReadStream::new(Reader::Workflow(ctx), workflow_id, key),
        None => match runtime_here() {
            Ok(rt) => ReadStream::outside(rt, workflow_id, key),
            Err(e) => ReadStream::new(Reader::Failed(Some(e)), workflow_id, key),
        },
    }
}

/// Who reads, and how.
enum Reader {
    /// A workflow: each value is recorded.
    Workflow(Arc<WorkflowContext>),
    /// Anyone else, through a runtime.
    Outside(Arc<RuntimeInner>),
    /// A client: through its database, polling.
    Database(SystemDatabase),
    /// No runtime: the error, yielded once.
    Failed(Option<Error>),
}

/// Where and how a stream is read, until it is first polled.
struct Start {
    reader: Reader,
    workflow_id: String,
    key: String,
    offset: i32,
    poll: Duration,
}

/// The values of a stream; see [`read_stream`].
#[must_use = "a stream reads nothing until polled"]
pub struct ReadStream<T> {
    start: Option<Start>,
    inner: Option<BoxStream<'static, Result<T>>>,
    _type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ReadStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ReadStream");
        if let Some(start) = &self.start {
            d.field("workflow_id", &start.workflow_id)
                .field("key", &start.key)
                .field("offset", &start.offset)
                .field("poll_interval", &start.poll);
        }
        d.finish_non_exhaustive()
    }
}

impl<T: Portable> ReadStream<T> {
    fn new(reader: Reader, workflow_id: &str, key: &str) -> Self {
        ReadStream {
            start: Some(Start {
                reader,
                workflow_id: workflow_id.to_owned(),
                key: key.to_owned(),
                offset: 0,
                poll: STATUS_POLL,
            }),
            inner: None,
            _type: PhantomData,
        }
    }

    pub(crate) fn outside(rt: Arc<RuntimeInner>, workflow_id: &str, key: &str) -> Self {
        Self::new(Reader::Outside(rt), workflow_id, key)
    }

    pub(crate) fn client(sysdb: SystemDatabase, workflow_id: &str, key: &str) -> Self {
        Self::new(Reader::Database(sysdb), workflow_id, key)
    }

    /// Starts at `offset` (0 is the first value written) instead of the beginning. Has no
    /// effect once the stream was polled.
    pub fn from_offset(mut self, offset: u32) -> Self {
        if let Some(start) = &mut self.start {
            start.offset = i32::try_from(offset).unwrap_or(i32::MAX);
        }
        self
    }

    /// How often a reader waiting for the next value reads again (500 ms by default; DBOS's
    /// `polling_interval_sec`). A reader in a process with a runtime is woken by each write
    /// at once, so this only bounds how late it notices a writer that ended without closing
    /// the stream; a `Client`'s reader, which has no listener, also finds new values this
    /// often. Has no effect once the stream was polled; zero is taken as 1 ms.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        if let Some(start) = &mut self.start {
            start.poll = interval.max(Duration::from_millis(1));
        }
        self
    }
}

impl<T: Portable> Stream for ReadStream<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.inner.is_none() {
            let Some(Start {
                reader,
                workflow_id: wf,
                key,
                offset,
                poll,
            }) = self.start.take()
            else {
                return Poll::Ready(None);
            };
            let state = State {
                reader,
                key: WakeKey::new(Channel::Streams, &wf, &key),
                what: format!("stream `{key}` of workflow `{wf}`"),
                workflow_id: wf,
                stream_key: key,
                offset,
                poll,
                pending: VecDeque::new(),
                guard: None,
                done: false,
            };
            self.inner = Some(
                futures_util::stream::unfold(state, |mut s| async move {
                    let item = s.next::<T>().await?;
                    Some((item, s))
                })
                .boxed(),
            );
        }
        match &mut self.inner {
            Some(inner) => inner.poll_next_unpin(cx),
            None => Poll::Ready(None),
        }
    }
}

struct State {
    reader: Reader,
    workflow_id: String,
    stream_key: String,
    key: WakeKey,
    what: String,
    offset: i32,
    /// How often a waiting reader reads again.
    poll: Duration,
    /// Values read ahead; the first is the one at `offset`.
    pending: VecDeque<StoredValue>,
    guard: Option<WaitGuard>,
    done: bool,
}

fn is_close_marker(v: &StoredValue) -> bool {
    v.text == STREAM_CLOSED && v.serialization.as_deref() == Some(PORTABLE_JSON)
}

impl State {
    /// The next item, or `None` at the end.
    async fn next<T: Portable>(&mut self) -> Option<Result<T>> {
        if self.done {
            return None;
        }
        let item = self.step::<T>().await;
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }

    async fn step<T: Portable>(&mut self) -> Option<Result<T>> {
        let ctx = match &mut self.reader {
            Reader::Failed(e) => return e.take().map(Err),
            Reader::Workflow(ctx) => Some(ctx.clone()),
            Reader::Outside(_) | Reader::Database(_) => None,
        };
        // In a workflow, the step that records this value is taken before it is read.
        let function_id = match &ctx {
            None => None,
            Some(ctx) => match ctx.begin(READ_STREAM) {
                Err(e) => return Some(Err(e)),
                Ok(Slot::Recorded { checkpoint, .. }) => {
                    let text = checkpoint.output.unwrap_or_default();
                    if text == STREAM_CLOSED {
                        return None;
                    }
                    self.offset += 1;
                    let what = format!("the recorded read of {}", self.what);
                    return Some(decode(
                        &text,
                        checkpoint.serialization.as_deref(),
                        &what,
                        &ctx.workflow_id,
                    ));
                }
                Ok(Slot::Fresh { function_id }) => Some(function_id),
            },
        };
        let started = now_ms();
        let row = match self.read(ctx.as_deref()).await {
            Ok(row) => row,
            Err(e) => return Some(Err(e)),
        };
        let value = match &row {
            Some(v) if !is_close_marker(v) => {
                match decode::<T>(
                    &v.text,
                    v.serialization.as_deref(),
                    &self.what,
                    &self.workflow_id,
                ) {
                    Ok(value) => Some(value),
                    Err(e) => return Some(Err(e)),
                }
            }
            _ => None,
        };
        if let (Some(ctx), Some(function_id)) = (&ctx, function_id) {
            let text = match (&row, &value) {
                (Some(v), Some(_)) => v.text.as_str(),
                // The end is recorded too, so a replay stops where this read did.
                _ => STREAM_CLOSED,
            };
            let recorded = ctx
                .record(Operation {
                    output: Some(text),
                    ..Operation::new(function_id, READ_STREAM, started)
                })
                .await;
            match recorded {
                Err(e) => return Some(Err(e)),
                Ok(None) => {}
                Ok(Some(theirs)) => {
                    let text = theirs.output.unwrap_or_default();
                    if text == STREAM_CLOSED {
                        return None;
                    }
                    self.offset += 1;
                    return Some(decode(
                        &text,
                        theirs.serialization.as_deref(),
                        &self.what,
                        &ctx.workflow_id,
                    ));
                }
            }
        }
        let value = value?;
        self.offset += 1;
        Some(Ok(value))
    }

    /// The value at the current offset: `None` at the close marker's offset is returned as
    /// the marker; `None` when the writer is done and nothing more was written.
    async fn read(&mut self, ctx: Option<&WorkflowContext>) -> Result<Option<StoredValue>> {
        // A client's reader has no runtime: no wake-ups, it polls.
        let (sysdb, rt) = match (&self.reader, ctx) {
            (_, Some(ctx)) => (ctx.runtime.sysdb.clone(), Some(ctx.runtime.clone())),
            (Reader::Outside(rt), None) => (rt.sysdb.clone(), Some(rt.clone())),
            (Reader::Database(db), None) => (db.clone(), None),
            _ => {
                return Err(Error::new(
                    ErrorKind::NotLaunched,
                    "no runtime to read the stream with",
                ))
            }
        };
        if let (None, Some(rt)) = (&self.guard, &rt) {
            // Registered before the first read, so a write between a read and the wait
            // below is not missed.
            self.guard = Some(WaitGuard::register(rt, self.key.clone()));
        }
        let mut final_read = false;
        loop {
            if let Some(v) = self.pending.pop_front() {
                return Ok(Some(v));
            }
            let read = sysdb
                .read_stream(&self.workflow_id, &self.stream_key, self.offset, BATCH)
                .await
                .map_err(|e| match ctx {
                    Some(ctx) if super::durable::is_durability_failure(&e) => ctx.fail(e),
                    _ => e,
                })?;
            let Some(status) = read.status else {
                return Err(Error::new(
                    ErrorKind::NonExistentWorkflow,
                    format!(
                        "cannot read {}: no workflow has the id `{}`",
                        self.what, self.workflow_id
                    ),
                )
                .with_workflow_id(&self.workflow_id));
            };
            let mut values = read.values.into_iter();
            if let Some(first) = values.next() {
                // Values read ahead stop before a close marker: it is read at its own offset.
                for later in values {
                    if is_close_marker(&later) {
                        break;
                    }
                    self.pending.push_back(later);
                }
                return Ok(Some(first));
            }
            if final_read {
                return Ok(None);
            }
            if !matches!(status.as_str(), "PENDING" | "ENQUEUED" | "DELAYED") {
                // The writer is done (or cancelled while still writing): one last read, to
                // the first empty offset, then the stream ends.
                final_read = true;
                continue;
            }
            let poll = self.poll;
            let woken = async {
                match self.guard.as_mut() {
                    Some(guard) => drop(guard.wait(poll).await),
                    None => tokio::time::sleep(poll).await,
                }
            };
            let shutdown = async {
                match &rt {
                    Some(rt) => rt.shutdown.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            match ctx {
                Some(ctx) => tokio::select! {
                    _ = woken => {}
                    reason = ctx.stopped() => return Err(reason),
                    _ = shutdown => {
                        return Err(ctx.fail(Error::new(
                            ErrorKind::NotLaunched,
                            "the runtime is shutting down while the workflow reads a stream; it resumes after recovery",
                        )));
                    }
                },
                None => tokio::select! {
                    _ = woken => {}
                    _ = shutdown => {
                        return Err(Error::new(ErrorKind::NotLaunched, "the runtime is shutting down; the stream read was abandoned"));
                    }
                },
            }
        }
    }
}
