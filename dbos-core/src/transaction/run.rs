//! Running one `#[transaction]`: replay or run, retry, commit with its record, settle a lost
//! commit acknowledgement.
//!
//! [`TransactionRun`] is a small state machine that the caller drives (the code `#[transaction]`
//! generates, and [`run_transaction`](super::run_transaction)):
//!
//! ```text
//! loop {
//!     let Some(mut conn) = run.connect().await else { break };     // replayed, or done
//!     let Some(tx) = run.begin(&mut conn).await else { continue }; // BEGIN failed: again
//!     let result = run.scope(body(&tx)).await;                      // the user's statements
//!     if run.finish(tx, result).await { break }                     // record + COMMIT, or again
//! }
//! run.into_result()
//! ```
//!
//! The caller owns the pooled connection and the open transaction, so the body borrows them
//! (and the caller's arguments) with ordinary lifetimes; the state machine owns everything
//! else and decides what happens after each attempt.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Object;
use futures_util::future::Either;
use futures_util::FutureExt;
use tracing::Instrument;

use super::source::DataSource;
use super::wrapper::{retryable, Retryable, Transaction};
use super::TransactionOptions;
use crate::error::{Error, ErrorKind};
use crate::observe;
use crate::runtime::{Dbos, RuntimeInner};
use crate::sysdb::datasource::Completion;
use crate::sysdb::records::{is_unique_violation, CheckpointRow, RecordError};
use crate::sysdb::transactions::{
    assigned_xact, still_managed, terminate_xact, xact_status, XactStatus, MARK_MANAGED,
};
use crate::sysdb::workflows::{now_ms, Checkpoint};
use crate::sysdb::{backoff, while_holding, Resilience, RetryState};
use crate::workflow::context::{
    current, current_step, in_step, Operation, Slot, StepScope, WorkflowContext,
};
use crate::workflow::step::{pause, replay, replay_checkpoint, OwnRetries};
use crate::workflow::types::{error_to_portable, Portable, WorkflowError};

/// The first wait after a serialization failure or a deadlock, as DBOS waits.
const CONFLICT_FIRST_DELAY: Duration = Duration::from_millis(1);
/// Each further wait is this much longer, as in DBOS.
const CONFLICT_BACKOFF: f64 = 1.5;
/// The longest wait between two runs of a conflicting transaction, as in DBOS.
const CONFLICT_MAX_DELAY: Duration = Duration::from_secs(2);
/// How long a commit whose acknowledgement was lost may stay in progress before its backend
/// (a connection the server has not noticed is gone) is terminated.
const SETTLE_TERMINATE_AFTER: Duration = Duration::from_secs(5);
/// SQLSTATE: a statement ran in a transaction an earlier failed statement aborted.
const IN_FAILED_TRANSACTION: &str = "25P02";

/// Drives one call of a transaction. Not public API: see the module documentation.
///
/// Only [`new`](TransactionRun::new) bounds `T` and `E` (it captures what the run needs of
/// them in a `Codec`), so a type that is not storable is reported once, at the call that
/// creates the run, rather than at every step of the loop.
pub struct TransactionRun<'a, T, E> {
    name: &'a str,
    options: &'a TransactionOptions,
    retry_if: Option<fn(&E) -> bool>,
    codec: Codec<T, E>,
    state: State<T, E>,
    /// Its `transaction` span, entered by each call that drives it.
    span: tracing::Span,
}

/// What a run needs of its output and error types, captured where their bounds are checked.
struct Codec<T, E> {
    from_error: fn(Error) -> E,
    encode: fn(&T) -> crate::Result<String>,
    encode_error: fn(&E) -> crate::Result<String>,
    describe: fn(&E) -> String,
    replay_checkpoint: fn(&WorkflowContext, &Checkpoint, &str) -> Result<T, E>,
    replay: ReplayFn<T, E>,
}

/// Rebuilds a recorded result from its output, error and serialization columns.
type ReplayFn<T, E> =
    fn(&Option<String>, &Option<String>, &Option<String>, &str) -> Result<T, Option<E>>;

impl<T, E> Clone for Codec<T, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, E> Copy for Codec<T, E> {}

impl<T: Portable, E: WorkflowError> Codec<T, E> {
    fn new() -> Self {
        Codec {
            from_error: E::from,
            encode: |v| crate::codec::to_text(v),
            encode_error: |e| error_to_portable(e).to_text(),
            describe: |e| e.to_string(),
            replay_checkpoint: |ctx, cp, name| replay_checkpoint(ctx, cp, name),
            replay: |o, e, s, what| replay(o, e, s, what),
        }
    }
}

impl<T, E> std::fmt::Debug for TransactionRun<'_, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Init => "init",
            State::Running(_) => "running",
            State::Done(_) => "done",
            State::Taken => "taken",
        };
        f.debug_struct("TransactionRun")
            .field("name", &self.name)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

enum State<T, E> {
    Init,
    Running(Box<Running<T, E>>),
    Done(Result<T, E>),
    Taken,
}

/// How a `COMMIT` that committed ended.
enum Commit {
    /// The server acknowledged it.
    Acknowledged,
    /// Its acknowledgement was lost, and the database said it committed.
    Settled,
}

/// What comes after an attempt.
enum Next<T, E> {
    /// Run the transaction again (a retryable failure, a retried error, a new claim).
    Again,
    /// The call's result.
    Done(Result<T, E>),
}

/// The state of a transaction that is being run (not replayed).
struct Running<T, E> {
    c: Codec<T, E>,
    rt: Arc<RuntimeInner>,
    /// The workflow, when called from one.
    ctx: Option<Arc<WorkflowContext>>,
    /// The ownership token the workflow's execution held when this attempt began (empty
    /// outside a workflow): a token handed to it since (a resume or a recovery of the
    /// workflow claimed while it runs here) is a new claim, not a lost ownership.
    began_under: Arc<str>,
    workflow_id: Arc<str>,
    function_id: i32,
    started_ms: i64,
    /// The data source, or `None` for the system database.
    source: Option<Arc<DataSource>>,
    /// The attempt of the function's own retry policy (1-based).
    attempt: u32,
    /// Serialization failures and deadlocks so far (not attempts).
    conflicts: u32,
    connection: RetryState,
}

impl<'a, T: Portable, E: WorkflowError> TransactionRun<'a, T, E> {
    /// A call of transaction `name` with `options`; `retry_if` filters which of the
    /// function's own errors its retry policy retries.
    pub fn new(
        name: &'a str,
        options: &'a TransactionOptions,
        retry_if: Option<fn(&E) -> bool>,
    ) -> Self {
        TransactionRun {
            name,
            options,
            retry_if,
            codec: Codec::new(),
            state: State::Init,
            span: observe::transaction(name),
        }
    }
}

impl<T, E> TransactionRun<'_, T, E> {
    /// A pooled connection for the next attempt; `None` when the call has its result
    /// (replayed from a record, or failed before running).
    pub async fn connect(&mut self) -> Option<Object> {
        let span = self.span.clone();
        self.connect_in().instrument(span).await
    }

    async fn connect_in(&mut self) -> Option<Object> {
        loop {
            let run = match &mut self.state {
                State::Init => {
                    self.state = match Running::start(self.name, self.options, self.codec).await {
                        Ok(run) => State::Running(Box::new(run)),
                        Err(done) => State::Done(done),
                    };
                    continue;
                }
                State::Running(run) => run,
                State::Done(_) | State::Taken => return None,
            };
            if let Some(ctx) = &run.ctx {
                if let Err(reason) = ctx.check_stop() {
                    self.state = State::Done(Err((self.codec.from_error)(reason)));
                    return None;
                }
            }
            let checkout = match &run.source {
                Some(ds) => ds.checkout().await,
                None => run.rt.sysdb.checkout().await,
            };
            match checkout {
                Ok(conn) => {
                    run.connection = RetryState::default();
                    return Some(conn);
                }
                Err(e) => {
                    if let Err(e) = run.transient(self.name, e).await {
                        self.state = State::Done(Err((self.codec.from_error)(e)));
                        return None;
                    }
                }
            }
        }
    }

    /// Begins the transaction on `conn` at the configured isolation level; `None` when that
    /// failed (call [`connect`](Self::connect) again: it retries or ends the call).
    pub async fn begin<'c>(&mut self, conn: &'c mut Object) -> Option<Transaction<'c>> {
        let span = self.span.clone();
        self.begin_in(conn).instrument(span).await
    }

    async fn begin_in<'c>(&mut self, conn: &'c mut Object) -> Option<Transaction<'c>> {
        let State::Running(run) = &mut self.state else {
            return None;
        };
        if let Some(ctx) = &run.ctx {
            run.began_under = ctx.owner();
        }
        let started = conn
            .build_transaction()
            .isolation_level(self.options.isolation.level())
            .start()
            .await;
        let marked = started.and_then(|tx| {
            // Sent without waiting for its answer: it is pipelined ahead of the body's first
            // statement (no round trip of its own), and a failure shows there.
            match tx.batch_execute(MARK_MANAGED).now_or_never() {
                Some(Err(e)) => Err(e),
                _ => Ok(tx),
            }
        });
        match marked {
            Ok(tx) => Some(Transaction::new(tx)),
            Err(e) => {
                let e = Error::db(format!("could not begin transaction `{}`", self.name), e);
                if let Err(e) = run.transient(self.name, e).await {
                    self.state = State::Done(Err((self.codec.from_error)(e)));
                }
                None
            }
        }
    }

    /// Runs the body's future as a step of the workflow: operations inside it are plain calls,
    /// and [`workflow_id`](crate::workflow_id), [`step_id`](crate::step_id) and
    /// [`step_attempt`](crate::step_attempt) describe this transaction.
    pub fn scope<F: Future>(&self, body: F) -> impl Future<Output = F::Output> {
        let held = match &self.state {
            State::Running(run) => Some(run.pool_id()),
            _ => None,
        };
        let body = self.step_scope(body);
        async move {
            match held {
                // The body holds the transaction's connection: what it asks of the same
                // database meanwhile (a send, an event) takes a side connection.
                Some(id) => while_holding(id, body).await,
                None => body.await,
            }
        }
        .instrument(self.span.clone())
    }

    fn step_scope<F: Future>(&self, body: F) -> impl Future<Output = F::Output> {
        match &self.state {
            State::Running(run) => match &run.ctx {
                Some(ctx) => Either::Left(in_step(
                    StepScope {
                        runtime: run.rt.clone(),
                        workflow_id: run.workflow_id.clone(),
                        step_id: run.function_id,
                        attempt: run.attempt,
                        control: ctx.control.clone(),
                    },
                    body,
                )),
                None => Either::Right(body),
            },
            _ => Either::Right(body),
        }
    }

    /// Ends an attempt with the body's result: records and commits (`true`: the call has its
    /// result), or rolls back and decides to run again (`false`).
    pub async fn finish(&mut self, tx: Transaction<'_>, result: Result<T, E>) -> bool {
        let span = self.span.clone();
        self.finish_in(tx, result).instrument(span).await
    }

    async fn finish_in(&mut self, tx: Transaction<'_>, result: Result<T, E>) -> bool {
        let State::Running(run) = &mut self.state else {
            return true;
        };
        // The caller holds the transaction's connection until this returns (a broken one,
        // after a lost commit acknowledgement): what this asks of the database meanwhile
        // takes a side connection, never the pool's last one.
        let id = run.pool_id();
        let finished = run.finish(self.name, self.options, self.retry_if, tx, result);
        match while_holding(id, finished).await {
            Next::Again => false,
            Next::Done(result) => {
                self.state = State::Done(result);
                true
            }
        }
    }

    /// The call's result.
    pub fn into_result(mut self) -> Result<T, E> {
        match std::mem::replace(&mut self.state, State::Taken) {
            State::Done(result) => result,
            _ => Err((self.codec.from_error)(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "transaction `{}` was asked for its result before it finished (drive it until `connect` returns None or `finish` returns true)",
                    self.name
                ),
            ))),
        }
    }
}

impl<T, E> Running<T, E> {
    /// Finds the runtime and the workflow, replays a recorded transaction, or prepares to run.
    async fn start(
        name: &str,
        options: &TransactionOptions,
        c: Codec<T, E>,
    ) -> Result<Self, Result<T, E>> {
        let ctx = current();
        let rt = match &ctx {
            Some(c) => c.runtime.clone(),
            None => match current_step() {
                Some(step) => step.runtime,
                None => Dbos::current()
                    .map_err(|e| Err((c.from_error)(e)))?
                    .inner()
                    .clone(),
            },
        };
        let (function_id, first_run) = match &ctx {
            None => (0, true),
            Some(ctx) => match ctx.begin(name) {
                Err(e) => return Err(Err((c.from_error)(e))),
                Ok(Slot::Recorded { checkpoint, .. }) => {
                    return Err((c.replay_checkpoint)(ctx, &checkpoint, name))
                }
                Ok(Slot::Fresh { function_id }) => (function_id, ctx.first_run),
            },
        };
        let source = match options.data_source {
            None => None,
            Some(ds) => match rt.data_sources.get(ds) {
                Some(s) => Some(s.clone()),
                None => {
                    let e = Error::config(format!(
                        "transaction `{name}` runs in data source `{ds}`, which this runtime does not have: \
                         add it with Config::data_source(\"{ds}\", url) before launch"
                    ));
                    return Err(Err((c.from_error)(match &ctx {
                        Some(c) => e
                            .with_workflow_id(&c.workflow_id)
                            .with_step(name, function_id),
                        None => e,
                    })));
                }
            },
        };
        let mut run = Running {
            c,
            workflow_id: ctx
                .as_ref()
                .map_or_else(|| Arc::from(""), |c| Arc::from(c.workflow_id.as_str())),
            rt,
            began_under: ctx.as_ref().map_or_else(|| Arc::from(""), |c| c.owner()),
            ctx,
            function_id,
            started_ms: now_ms(),
            source,
            attempt: 1,
            conflicts: 0,
            connection: RetryState::default(),
        };
        // A workflow that may have run before (recovered, resumed): this transaction may have
        // committed in its data source and crashed before its checkpoint. Look there first.
        // (Outside a workflow `first_run` is true: there is nothing to look for.)
        if !first_run && run.source.is_some() {
            match run.read_completion(name).await {
                Ok(Some(recorded)) => {
                    tracing::info!(
                        workflow_id = %run.workflow_id, transaction = name, function_id,
                        "the transaction committed in its data source before a crash; recording and replaying its result"
                    );
                    if let Next::Done(result) = run.adopt(name, recorded).await {
                        return Err(result);
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(Err((c.from_error)(e))),
            }
        }
        Ok(run)
    }

    /// The outage state of the database the transaction runs in.
    fn resilience(&self) -> Arc<Resilience> {
        match &self.source {
            Some(ds) => ds.resilience.clone(),
            None => self.rt.sysdb.resilience_arc(),
        }
    }

    /// The identity of the pool the transaction's connection comes from.
    fn pool_id(&self) -> u64 {
        match &self.source {
            Some(ds) => ds.pool_id,
            None => self.rt.sysdb.pool_id(),
        }
    }

    /// A failure that is no fault of the body: inside a workflow it stops the execution (the
    /// workflow stays pending and is recovered), with the workflow and step attached.
    fn fatal(&self, name: &str, e: Error) -> Error {
        match &self.ctx {
            Some(ctx) => ctx.fail(
                e.with_workflow_id(&*self.workflow_id)
                    .with_step(name, self.function_id),
            ),
            None => e,
        }
    }

    /// After a connection-class failure before anything could commit: waits (backoff, for as
    /// long as the database is unreachable once launched) and returns `Ok` to run again.
    async fn transient(&mut self, name: &str, e: Error) -> Result<(), Error> {
        if !e.is_transient() {
            return Err(self.fatal(name, e));
        }
        let what = format!("run transaction `{name}`");
        let resilience = self.resilience();
        let paused = match &self.ctx {
            Some(ctx) => tokio::select! {
                r = resilience.pause(&mut self.connection, &what, e) => r,
                reason = ctx.stopped() => return Err(reason),
            },
            None => resilience.pause(&mut self.connection, &what, e).await,
        };
        paused.map_err(|e| self.fatal(name, e))
    }

    /// Waits `delay` before running again, unless the workflow is told to stop or the
    /// runtime shuts down meanwhile.
    async fn wait(&self, name: &str, delay: Duration) -> Result<(), Error> {
        let what = format!("transaction `{name}`");
        pause(&self.rt, self.ctx.as_deref(), delay, &what).await
    }

    /// Runs again after a retryable failure: a serialization failure or deadlock waits a
    /// capped, jittered backoff (not one of the function's attempts); a broken connection
    /// waits as the database's statements do.
    async fn again(&mut self, name: &str, class: Retryable) -> Next<T, E> {
        let waited = match class {
            Retryable::Serialization(code) => {
                self.conflicts += 1;
                let delay = conflict_delay(self.conflicts);
                tracing::debug!(
                    workflow_id = %self.workflow_id, transaction = name, sqlstate = code,
                    conflicts = self.conflicts, "the database asked to run the transaction again; retrying in {delay:?}"
                );
                self.wait(name, delay).await
            }
            Retryable::Connection => {
                let e = Error::new(
                    ErrorKind::Connection,
                    format!("the connection broke while transaction `{name}` ran"),
                );
                self.transient(name, e).await
            }
        };
        match waited {
            Ok(()) => Next::Again,
            Err(e) => Next::Done(Err((self.c.from_error)(e))),
        }
    }

    async fn finish(
        &mut self,
        name: &str,
        options: &TransactionOptions,
        retry_if: Option<fn(&E) -> bool>,
        tx: Transaction<'_>,
        result: Result<T, E>,
    ) -> Next<T, E> {
        let seen = tx.retryable_failure();
        let value = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = tx.into_pooled().rollback().await;
                if let Some(class) = seen {
                    return self.again(name, class).await;
                }
                let retries = OwnRetries {
                    kind: "transaction",
                    name,
                    policy: &options.retries,
                    runtime: &self.rt,
                    ctx: self.ctx.as_deref(),
                    function_id: self.function_id,
                };
                let worth_it = || retry_if.is_none_or(|f| f(&e));
                let described = (self.c.describe)(&e);
                let Some(delay) = retries.next(self.attempt, worth_it, &described) else {
                    return self.record_error(name, e).await;
                };
                if let Err(stop) = retries.wait(delay).await {
                    return Next::Done(Err((self.c.from_error)(stop)));
                }
                self.attempt += 1;
                return Next::Again;
            }
        };
        let text = match (self.c.encode)(&value) {
            Ok(text) => text,
            Err(e) => {
                let _ = tx.into_pooled().rollback().await;
                // A value that cannot be encoded never will be: the transaction's error.
                let e = Error::new(
                    ErrorKind::Serialization,
                    format!(
                        "the output of transaction `{name}` (type `{}`) cannot be stored: {}",
                        std::any::type_name::<T>(),
                        e.message()
                    ),
                );
                return self.record_error(name, (self.c.from_error)(e)).await;
            }
        };
        if self.ctx.is_none() {
            return self.commit_plain(name, tx, seen, value).await;
        }
        if let Some(ctx) = &self.ctx {
            if let Err(reason) = ctx.check_stop() {
                let _ = tx.into_pooled().rollback().await;
                return Next::Done(Err((self.c.from_error)(reason)));
            }
        }
        match self.source.clone() {
            None => {
                self.commit_with_checkpoint(name, tx, seen, value, &text)
                    .await
            }
            Some(ds) => {
                self.commit_with_completion(name, &ds, tx, seen, value, &text)
                    .await
            }
        }
    }

    /// A statement of ours failed inside the transaction (already rolled back): retry, blame
    /// the body (it went on after a failed statement), or stop.
    async fn failed_inside(
        &mut self,
        name: &str,
        seen: Option<Retryable>,
        e: tokio_postgres::Error,
    ) -> Next<T, E> {
        if let Some(class) = retryable(&e) {
            return self.again(name, class).await;
        }
        if e.code().map(|c| c.code()) == Some(IN_FAILED_TRANSACTION) {
            if let Some(class) = seen {
                return self.again(name, class).await;
            }
            let e = Error::db(
                format!(
                    "the body of transaction `{name}` returned Ok after one of its statements failed, which \
                     aborted the transaction: return that statement's error (with `?`) instead of ignoring it"
                ),
                e,
            );
            return self.record_error(name, (self.c.from_error)(e)).await;
        }
        let e = Error::db(format!("could not record transaction `{name}`"), e);
        Next::Done(Err((self.c.from_error)(self.fatal(name, e))))
    }

    /// Outside a workflow: a plain transaction (retried on conflicts, a lost commit
    /// acknowledgement settled by the transaction id).
    async fn commit_plain(
        &mut self,
        name: &str,
        tx: Transaction<'_>,
        seen: Option<Retryable>,
        value: T,
    ) -> Next<T, E> {
        let tx = tx.into_pooled();
        let xid = match assigned_xact(&tx).await {
            Ok(xid) => xid,
            Err(e) => {
                drop(tx);
                return self.failed_inside(name, seen, e).await;
            }
        };
        match self.commit(name, tx, xid).await {
            Ok(_) => Next::Done(Ok(value)),
            Err(next) => next,
        }
    }

    /// Commits, and settles a `COMMIT` whose acknowledgement was lost by asking the database
    /// what became of transaction `xid` (`None`: the transaction wrote nothing, so there is
    /// nothing to lose). `Ok` when it committed; otherwise what comes next: run again (a
    /// serialization failure, or a lost `COMMIT` that did not commit), or the commit's error,
    /// recorded as the operation's outcome.
    async fn commit(
        &mut self,
        name: &str,
        tx: deadpool_postgres::Transaction<'_>,
        xid: Option<i64>,
    ) -> Result<Commit, Next<T, E>> {
        let e = match tx.commit().await {
            Ok(()) => {
                self.resilience().recovered();
                return Ok(Commit::Acknowledged);
            }
            Err(e) => e,
        };
        match retryable(&e) {
            Some(class @ Retryable::Serialization(_)) => Err(self.again(name, class).await),
            Some(Retryable::Connection) => {
                let Some(xid) = xid else {
                    // Read-only: nothing to commit, and the reads stand.
                    return Ok(Commit::Settled);
                };
                match self.settle(name, xid).await {
                    Ok(true) => Ok(Commit::Settled),
                    Ok(false) => Err(Next::Again),
                    Err(e) => Err(Next::Done(Err((self.c.from_error)(e)))),
                }
            }
            None => {
                let e = Error::db(format!("transaction `{name}` could not commit"), e);
                Err(self.record_error(name, (self.c.from_error)(e)).await)
            }
        }
    }

    /// The system database: the checkpoint is inserted in the body's transaction, fenced by
    /// ownership, and both commit at once.
    async fn commit_with_checkpoint(
        &mut self,
        name: &str,
        tx: Transaction<'_>,
        seen: Option<Retryable>,
        value: T,
        text: &str,
    ) -> Next<T, E> {
        let Some(ctx) = self.ctx.clone() else {
            return Next::Done(Ok(value));
        };
        let owner = ctx.owner();
        let rt = self.rt.clone();
        let row = CheckpointRow {
            workflow_id: &ctx.workflow_id,
            owner_xid: &owner,
            function_id: self.function_id,
            function_name: name,
            output: Some(text),
            error: None,
            child_workflow_id: None,
            started_ms: self.started_ms,
            completed_ms: now_ms(),
            app_name: &rt.app_name,
        };
        let tx = tx.into_pooled();
        let xid = match rt.sysdb.record_in_transaction(&tx, &row).await {
            Ok(Some(xid)) => xid,
            Ok(None) => {
                if let Some(next) = self.ended_by_body(name, &tx).await {
                    drop(tx.rollback().await);
                    return next;
                }
                drop(tx.rollback().await);
                return self.missed(name, &ctx, &row, value).await;
            }
            Err(e) if is_unique_violation(&e) => {
                drop(tx.rollback().await);
                return self.missed(name, &ctx, &row, value).await;
            }
            Err(e) => {
                drop(tx.rollback().await);
                return self.failed_inside(name, seen, e).await;
            }
        };
        match self.commit(name, tx, Some(xid)).await {
            Ok(Commit::Acknowledged) => Next::Done(Ok(value)),
            Ok(Commit::Settled) => {
                // Committed: the checkpoint row is this transaction's.
                if let Err(RecordError::Conflict(cp)) = self.rt.sysdb.record_missed(&row).await {
                    tracing::error!(
                        workflow_id = %self.workflow_id, transaction = name, recorded = %cp.function_name,
                        "the transaction committed, but its checkpoint row reads differently"
                    );
                }
                Next::Done(Ok(value))
            }
            Err(next) => next,
        }
    }

    /// After a record's insert wrote nothing: `Some` when that is because the body ended
    /// the library's transaction itself (a `COMMIT`, a `ROLLBACK`, ...). That is refused, as
    /// DBOS refuses it, with an [`ErrorKind::InvalidArgument`] error recorded as the
    /// operation's outcome (a replay returns the same error): after a `COMMIT` the statements
    /// committed without their record, after a `ROLLBACK` they were discarded, and neither
    /// may be reported as the transaction's success.
    async fn ended_by_body(
        &mut self,
        name: &str,
        tx: &deadpool_postgres::Transaction<'_>,
    ) -> Option<Next<T, E>> {
        match still_managed(tx).await {
            Ok(true) => None,
            // A failed look-up is decided by the paths that follow (they ask again).
            Err(_) => None,
            Ok(false) => {
                let e = Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "the body of transaction `{name}` ended the transaction itself (COMMIT, ROLLBACK, \
                         PREPARE TRANSACTION or a new BEGIN): the library commits it with its record when the \
                         body returns Ok and rolls it back when it returns Err; use savepoints \
                         (SAVEPOINT, ROLLBACK TO SAVEPOINT) for partial rollbacks"
                    ),
                );
                Some(self.record_error(name, (self.c.from_error)(e)).await)
            }
        }
    }

    /// The checkpoint was not written (the fence refused it, or the step id was taken):
    /// another execution owns the workflow, a new claim was handed to this one, or another
    /// execution recorded this step first.
    ///
    /// A new claim handed over after the attempt began is not a lost ownership, even when the
    /// row carries the new token: at `REPEATABLE READ` and `SERIALIZABLE` the fence reads the
    /// workflow's row in the body's snapshot, taken before the claim, and refuses the new
    /// token too. The attempt runs again, on a snapshot that sees the claim.
    async fn missed(
        &mut self,
        name: &str,
        ctx: &WorkflowContext,
        row: &CheckpointRow<'_>,
        value: T,
    ) -> Next<T, E> {
        match self.rt.sysdb.record_missed(row).await {
            Ok(()) => Next::Done(Ok(value)),
            Err(RecordError::NotOwner) if *ctx.owner() != *self.began_under => Next::Again,
            Err(RecordError::NotOwner) => {
                let e = self.rt.sysdb.ownership_error(&ctx.workflow_id).await;
                Next::Done(Err((self.c.from_error)(
                    ctx.fail(e.with_step(name, self.function_id)),
                )))
            }
            Err(RecordError::Conflict(cp)) => self.conflict(name, cp),
            Err(RecordError::Db(e)) => Next::Done(Err((self.c.from_error)(self.fatal(name, e)))),
        }
    }

    /// Another execution recorded this step id first: its result is the one.
    fn conflict(&self, name: &str, cp: Checkpoint) -> Next<T, E> {
        let Some(ctx) = &self.ctx else {
            return Next::Done(Err((self.c.from_error)(Error::new(
                ErrorKind::Database,
                "no workflow",
            ))));
        };
        if cp.function_name == name {
            tracing::warn!(
                workflow_id = %self.workflow_id, transaction = name, function_id = self.function_id,
                "another execution of this workflow recorded this transaction first; this one rolled back and continues with its result"
            );
            return Next::Done((self.c.replay_checkpoint)(ctx, &cp, name));
        }
        let e = Error::new(
            ErrorKind::ConflictingWorkflowId,
            format!(
                "another execution of workflow `{}` recorded `{}` at step {} while this one ran `{name}`: \
                 the two executions run different code",
                self.workflow_id, cp.function_name, self.function_id
            ),
        );
        Next::Done(Err((self.c.from_error)(self.fatal(name, e))))
    }

    /// A data source: the completion row is inserted in the body's transaction and checked
    /// against the workflow's ownership before both commit; the checkpoint follows in the
    /// system database.
    async fn commit_with_completion(
        &mut self,
        name: &str,
        ds: &DataSource,
        tx: Transaction<'_>,
        seen: Option<Retryable>,
        value: T,
        text: &str,
    ) -> Next<T, E> {
        let Some(ctx) = self.ctx.clone() else {
            return Next::Done(Ok(value));
        };
        let tx = tx.into_pooled();
        let inserted = ds
            .completion
            .insert(&tx, &self.workflow_id, self.function_id, Some(text), None)
            .await;
        let xid = match inserted {
            Ok(Some(xid)) => xid,
            Ok(None) => {
                if let Some(next) = self.ended_by_body(name, &tx).await {
                    drop(tx.rollback().await);
                    return next;
                }
                // Another execution committed this step in the data source.
                drop(tx.rollback().await);
                return match self.read_completion(name).await {
                    Ok(Some(recorded)) => self.adopt(name, recorded).await,
                    Ok(None) => Next::Again,
                    Err(e) => Next::Done(Err((self.c.from_error)(e))),
                };
            }
            Err(e) => {
                drop(tx.rollback().await);
                return self.failed_inside(name, seen, e).await;
            }
        };
        // The fence, checked while this transaction holds the step's completion row: a later
        // owner's insert of that row waits for this commit, so it cannot slip in between.
        let owner = ctx.owner();
        match self.rt.sysdb.still_owns(&ctx.workflow_id, &owner).await {
            Ok(true) => {}
            Ok(false) => {
                drop(tx.rollback().await);
                if *ctx.owner() != *owner {
                    return Next::Again;
                }
                let e = self.rt.sysdb.ownership_error(&ctx.workflow_id).await;
                return Next::Done(Err((self.c.from_error)(
                    ctx.fail(e.with_step(name, self.function_id)),
                )));
            }
            Err(e) => {
                drop(tx.rollback().await);
                return Next::Done(Err((self.c.from_error)(self.fatal(name, e))));
            }
        }
        match self.commit(name, tx, Some(xid)).await {
            Ok(Commit::Acknowledged) => self.checkpoint(name, Ok(value), Some(text), None).await,
            // Committed: the completion row now holds the result; record it from there.
            Ok(Commit::Settled) => match self.read_completion(name).await {
                Ok(Some(recorded)) => self.adopt(name, recorded).await,
                Ok(None) => self.checkpoint(name, Ok(value), Some(text), None).await,
                Err(e) => Next::Done(Err((self.c.from_error)(e))),
            },
            Err(next) => next,
        }
    }

    /// Writes the operation's checkpoint in the system database (after a data-source commit,
    /// or for an error) and ends with `result`, or with the result another execution
    /// recorded first.
    async fn checkpoint(
        &mut self,
        name: &str,
        result: Result<T, E>,
        output: Option<&str>,
        error: Option<&str>,
    ) -> Next<T, E> {
        let Some(ctx) = &self.ctx else {
            return Next::Done(result);
        };
        let recorded = ctx
            .record(Operation {
                output,
                error,
                ..Operation::new(self.function_id, name, self.started_ms)
            })
            .await;
        match recorded {
            Ok(None) => Next::Done(result),
            Ok(Some(cp)) => Next::Done((self.c.replay_checkpoint)(ctx, &cp, name)),
            Err(e) => Next::Done(Err((self.c.from_error)(e))),
        }
    }

    /// Records the function's own error (after its last attempt) as the operation's error.
    /// The rolled-back transaction left nothing behind, so a crash before this record only
    /// means the transaction runs again.
    async fn record_error(&mut self, name: &str, e: E) -> Next<T, E> {
        let Some(ctx) = &self.ctx else {
            return Next::Done(Err(e));
        };
        let text = match (self.c.encode_error)(&e) {
            Ok(text) => text,
            Err(err) => return Next::Done(Err((self.c.from_error)(ctx.fail(err)))),
        };
        self.checkpoint(name, Err(e), None, Some(&text)).await
    }

    /// The completion row of this step in the data source, if it committed.
    async fn read_completion(&self, name: &str) -> Result<Option<Completion>, Error> {
        let Some(ds) = &self.source else {
            return Ok(None);
        };
        let what = format!("read the completion row of transaction `{name}`");
        let (wf, fid, what_ref) = (&*self.workflow_id, self.function_id, what.as_str());
        ds.run(&what, |client, _| async move {
            ds.completion
                .read(&client, wf, fid)
                .await
                .map_err(|e| Error::db(format!("could not {what_ref}"), e))
        })
        .await
        .map_err(|e| self.fatal(name, e))
    }

    /// Makes a completion row found in the data source this operation's result: records it
    /// in the system database and replays it.
    async fn adopt(&mut self, name: &str, recorded: Completion) -> Next<T, E> {
        let what = format!("the recorded result of transaction `{name}`");
        if let Err(e) = crate::codec::check_serialization(recorded.serialization.as_deref(), &what)
        {
            return Next::Done(Err((self.c.from_error)(self.fatal(name, e))));
        }
        let result = match (self.c.replay)(
            &recorded.output,
            &recorded.error,
            &recorded.serialization,
            &what,
        ) {
            Ok(v) => Ok(v),
            Err(Some(e)) => Err(e),
            Err(None) => {
                let e = Error::new(
                    ErrorKind::Serialization,
                    format!("transaction `{name}` has a completion row with neither an output nor an error"),
                );
                return Next::Done(Err((self.c.from_error)(self.fatal(name, e))));
            }
        };
        let (output, error) = (recorded.output.as_deref(), recorded.error.as_deref());
        self.checkpoint(name, result, output, error).await
    }

    /// Settles a `COMMIT` whose acknowledgement was lost: asks the database what became of
    /// transaction `xid` (on a new connection), waiting while it is still in progress.
    /// `Ok(true)`: it committed; `Ok(false)`: it did not, and running it again is safe.
    async fn settle(&mut self, name: &str, xid: i64) -> Result<bool, Error> {
        tracing::warn!(
            workflow_id = %self.workflow_id, transaction = name, xid,
            "the connection broke while committing; asking the database whether the transaction committed"
        );
        let started = Instant::now();
        let mut terminated = false;
        let mut pause = Duration::from_millis(10);
        loop {
            let what = format!("settle the commit of transaction `{name}`");
            let terminate = !terminated && started.elapsed() >= SETTLE_TERMINATE_AFTER;
            let status = match &self.source {
                Some(ds) => ds.run(&what, |c, _| settle_once(c, terminate, xid)).await,
                None => {
                    self.rt
                        .sysdb
                        .run(&what, |c, _| settle_once(c, terminate, xid))
                        .await
                }
            }
            .map_err(|e| self.fatal(name, e))?;
            terminated |= terminate;
            match status {
                XactStatus::Committed => {
                    tracing::info!(workflow_id = %self.workflow_id, transaction = name, xid, "the transaction had committed");
                    return Ok(true);
                }
                XactStatus::Aborted => {
                    tracing::info!(workflow_id = %self.workflow_id, transaction = name, xid, "the transaction had not committed; running it again");
                    return Ok(false);
                }
                XactStatus::InProgress => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// The wait before running a transaction again after its `n`th conflict: 1 ms growing by
/// 1.5 each time, capped at 2 s, with ±50 % jitter so two contenders do not meet again.
fn conflict_delay(n: u32) -> Duration {
    let capped = backoff(
        CONFLICT_FIRST_DELAY,
        CONFLICT_BACKOFF,
        CONFLICT_MAX_DELAY,
        n,
    );
    let jitter = 0.5 + f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 255.0;
    capped.mul_f64(jitter)
}

/// One look at what became of transaction `xid` (terminating its backend first when
/// `terminate`), on a connection of the system database or of a data source.
async fn settle_once<C: crate::sysdb::Sql>(
    client: C,
    terminate: bool,
    xid: i64,
) -> Result<XactStatus, Error> {
    if terminate {
        // Ends the transaction's backend one way or the other.
        terminate_xact(&client, xid)
            .await
            .map_err(|e| Error::db("could not end a lost connection's transaction", e))?;
    }
    xact_status(&client, xid)
        .await
        .map_err(|e| Error::db("could not read a transaction's status", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_backoff_grows_and_is_capped() {
        for _ in 0..20 {
            let first = conflict_delay(1);
            assert!(
                first >= Duration::from_micros(500) && first <= Duration::from_micros(1500),
                "{first:?}"
            );
            let tenth = conflict_delay(10);
            // 1 ms × 1.5^9 ≈ 38 ms, ±50 %.
            assert!(
                tenth >= Duration::from_millis(19) && tenth <= Duration::from_millis(58),
                "{tenth:?}"
            );
            let late = conflict_delay(100);
            assert!(
                late >= Duration::from_secs(1) && late <= Duration::from_secs(3),
                "{late:?}"
            );
        }
    }
}
