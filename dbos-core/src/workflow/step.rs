//! Steps: run at least once, recorded exactly once, replayed from their record.

use std::future::Future;
use std::time::Duration;

use tracing::Instrument;

use crate::codec::PortableError;
use crate::error::{Error, ErrorKind};
use crate::observe;
use crate::runtime::RuntimeInner;
use crate::sysdb::workflows::now_ms;
use crate::sysdb::workflows::Checkpoint;
use crate::workflow::context::{current, in_step, Operation, Slot, StepScope, WorkflowContext};
use crate::workflow::registry::StepOptions;
use crate::workflow::types::{error_from_portable, error_to_portable, Portable, WorkflowError};

/// Runs `attempt` as the step `name`.
///
/// Inside a workflow: replays the recorded output or error when this step id has a
/// checkpoint, else runs up to `options.max_attempts` times (waiting `delay_after(n)` between
/// attempts, stopping early when `retry_if` says an error is not worth retrying) and records
/// the final output or error in one statement. The last attempt's own error is what is
/// recorded and returned; an attempt dropped at `options.timeout` fails with DBOS's step
/// timeout error, recorded as DBOS records it. A workflow cancelled meanwhile stops waiting
/// between attempts; an attempt that completes after the cancel is not recorded, and a
/// preemptible step's attempt is dropped at the cancel. Outside a workflow: one plain call
/// (bounded by the timeout).
///
/// A zero timeout is refused with [`ErrorKind::InvalidArgument`] before anything runs.
pub(crate) async fn run<T, E, F, Fut>(
    name: &str,
    options: &StepOptions,
    retry_if: Option<fn(&E) -> bool>,
    mut attempt: F,
) -> Result<T, E>
where
    T: Portable,
    E: WorkflowError,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    check_timeout(name, options.timeout).map_err(E::from)?;
    let Some(ctx) = current() else {
        return match bounded(attempt(), None, options.timeout).await {
            Attempt::Done(result) => result,
            Attempt::TimedOut | Attempt::Stopped(_) => Err(error_from_portable(timeout_error(
                name,
                options.timeout.unwrap_or_default(),
            ))),
        };
    };
    let function_id = match ctx.begin(name).map_err(E::from)? {
        Slot::Recorded { checkpoint, .. } => return replay_checkpoint(&ctx, &checkpoint, name),
        Slot::Fresh { function_id } => function_id,
    };
    let started = now_ms();
    let began = std::time::Instant::now();
    let workflow_id: std::sync::Arc<str> = ctx.workflow_id.as_str().into();
    let retries = OwnRetries {
        kind: "step",
        name,
        policy: options,
        runtime: &ctx.runtime,
        ctx: Some(&ctx),
        function_id,
    };
    let preempted_by = options.preemptible.then_some(&*ctx);
    let mut n = 1;
    // The last attempt's result, and DBOS's form of its error when it timed out.
    let (result, timed_out) = loop {
        let scope = StepScope {
            runtime: ctx.runtime.clone(),
            workflow_id: workflow_id.clone(),
            step_id: function_id,
            attempt: n,
            control: ctx.control.clone(),
        };
        let span = observe::step(function_id, name, n);
        observe::metrics::step_attempt(name);
        let attempted = bounded(in_step(scope, attempt()), preempted_by, options.timeout)
            .instrument(span.clone())
            .await;
        let (e, timed_out) = match attempted {
            Attempt::Done(Err(e)) => (e, None),
            Attempt::Done(ok) => break (ok, None),
            // Dropped at the stop: nothing is recorded, the workflow stops with the reason.
            Attempt::Stopped(reason) => return Err(E::from(reason)),
            Attempt::TimedOut => {
                let timeout = options.timeout.unwrap_or_default();
                let p = timeout_error(name, timeout);
                tracing::warn!(
                    workflow_id = %ctx.workflow_id, step = name, function_id, attempt = n,
                    "step `{name}` ran past its timeout of {timeout:?}; the attempt is dropped"
                );
                (error_from_portable(p.clone()), Some(p))
            }
        };
        // The retry event belongs to the attempt that failed.
        let next = span.in_scope(|| retries.next(n, || retry_if.is_none_or(|f| f(&e)), &e));
        let Some(delay) = next else {
            break (Err(e), timed_out);
        };
        retries.wait(delay).await.map_err(E::from)?;
        n += 1;
    };
    let (result, output, error) = match result {
        Ok(v) => match crate::codec::to_text(&v) {
            Ok(text) => (Ok(v), Some(text), None),
            // A value that cannot be encoded never will be: a deterministic failure of the
            // step, recorded as its error (a replay returns the same error).
            Err(e) => {
                let e = Error::new(
                    ErrorKind::Serialization,
                    format!(
                        "the output of step `{name}` (type `{}`) cannot be stored: {}",
                        std::any::type_name::<T>(),
                        e.message()
                    ),
                )
                .with_workflow_id(&ctx.workflow_id)
                .with_step(name, function_id);
                let text = crate::codec::to_text(&e).map_err(E::from)?;
                (Err(E::from(e)), None, Some(text))
            }
        },
        Err(e) => {
            let text = timed_out
                .unwrap_or_else(|| error_to_portable(&e))
                .to_text()
                .map_err(|err| E::from(ctx.fail(err)))?;
            (Err(e), None, Some(text))
        }
    };
    let theirs = ctx
        .record(Operation {
            output: output.as_deref(),
            error: error.as_deref(),
            ..Operation::new(function_id, name, started)
        })
        .await
        .map_err(E::from)?;
    observe::metrics::step_recorded(name, result.is_ok(), began.elapsed());
    match theirs {
        None => result,
        Some(checkpoint) => replay_checkpoint(&ctx, &checkpoint, name),
    }
}

/// How one attempt ended.
enum Attempt<R> {
    /// It completed with this result.
    Done(R),
    /// It ran past the step's timeout and was dropped.
    TimedOut,
    /// The workflow was told to stop while a preemptible attempt ran; it was dropped.
    Stopped(Error),
}

/// Runs one attempt, dropping it when it runs past `timeout` or, for a preemptible step
/// (`preempted_by` set), when the workflow is told to stop. An attempt that completes keeps
/// its result whatever else happened at the same moment, and a stop outranks a timeout
/// (not recording a stopped workflow's step is the safer answer), as in DBOS.
async fn bounded<R>(
    attempt: impl Future<Output = R>,
    preempted_by: Option<&WorkflowContext>,
    timeout: Option<Duration>,
) -> Attempt<R> {
    let stop = async {
        match preempted_by {
            Some(ctx) => ctx.stopped().await,
            None => std::future::pending().await,
        }
    };
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        result = attempt => Attempt::Done(result),
        reason = stop => Attempt::Stopped(reason),
        () = deadline => Attempt::TimedOut,
    }
}

/// Refuses a zero timeout, which would drop every attempt before it could run.
fn check_timeout(name: &str, timeout: Option<Duration>) -> Result<(), Error> {
    match timeout {
        Some(t) if t.is_zero() => Err(Error::invalid(format!(
            "step `{name}` has a timeout of 0, which would drop every attempt before it runs; give a \
             positive timeout (it bounds each attempt), or none"
        ))),
        _ => Ok(()),
    }
}

/// DBOS's step timeout error (`DBOSStepTimeoutError`), in the form DBOS Python records it:
/// the name of its class, and its text (code 18, seconds as a float).
pub(crate) fn timeout_error(name: &str, timeout: Duration) -> PortableError {
    PortableError {
        name: "DBOSStepTimeoutError".to_owned(),
        message: format!(
            "DBOS Error 18: Step {name} was cancelled after exceeding its timeout of {:?} seconds",
            timeout.as_secs_f64()
        ),
        code: None,
        data: None,
    }
}

/// The retry policy for a function's own errors, one implementation for steps and
/// transactions (a transaction's serialization failures and deadlocks are not its own errors:
/// they run it again without counting, see `transaction::run`).
pub(crate) struct OwnRetries<'a> {
    /// What runs, for messages: `step` or `transaction`.
    pub(crate) kind: &'static str,
    /// Its name.
    pub(crate) name: &'a str,
    /// Its policy: attempts and the waits between them.
    pub(crate) policy: &'a StepOptions,
    /// The runtime (its shutdown ends a wait).
    pub(crate) runtime: &'a RuntimeInner,
    /// The workflow, when called from one (a cancel ends a wait).
    pub(crate) ctx: Option<&'a WorkflowContext>,
    /// Its step id.
    pub(crate) function_id: i32,
}

impl OwnRetries<'_> {
    /// After attempt `attempt` (1-based) failed with `error`: the wait before the next
    /// attempt (logged), or `None` when the error is final: that was the last attempt, or
    /// `worth_retrying` (the function's `retry_if`; asked only when an attempt is left) says
    /// no.
    pub(crate) fn next(
        &self,
        attempt: u32,
        worth_retrying: impl FnOnce() -> bool,
        error: &dyn std::fmt::Display,
    ) -> Option<Duration> {
        let max = self.policy.max_attempts.max(1);
        if attempt >= max || !worth_retrying() {
            return None;
        }
        let delay = self.policy.delay_after(attempt);
        let (kind, name) = (self.kind, self.name);
        observe::metrics::step_retry(kind, name);
        tracing::warn!(
            "dbos.event" = "retry",
            workflow_id = self.ctx.map(|c| c.workflow_id.as_str()), kind, name,
            function_id = self.function_id, attempt, max_attempts = max,
            error = %error, "{kind} `{name}` failed; retrying in {delay:?}"
        );
        Some(delay)
    }

    /// Waits `delay` (from [`next`](Self::next)); the reason to stop when the workflow is
    /// told to stop or the runtime shuts down meanwhile.
    pub(crate) async fn wait(&self, delay: Duration) -> Result<(), Error> {
        let what = format!("{} `{}`", self.kind, self.name);
        pause(self.runtime, self.ctx, delay, &what).await
    }
}

/// Waits `delay` before `what` runs again, unless the workflow is told to stop (its reason)
/// or the runtime shuts down meanwhile (an error that ends the execution: the workflow
/// resumes after recovery).
pub(crate) async fn pause(
    runtime: &RuntimeInner,
    ctx: Option<&WorkflowContext>,
    delay: Duration,
    what: &str,
) -> Result<(), Error> {
    let shutting_down = || {
        Error::new(
            ErrorKind::NotLaunched,
            format!(
                "the runtime is shutting down while {what} waits to run again; a workflow resumes after recovery"
            ),
        )
    };
    match ctx {
        Some(ctx) => tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            reason = ctx.stopped() => Err(reason),
            _ = runtime.shutdown.cancelled() => Err(ctx.fail(shutting_down())),
        },
        None => tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = runtime.shutdown.cancelled() => Err(shutting_down()),
        },
    }
}

/// Replays a step's checkpoint; a malformed one is a durability failure of the execution.
pub(crate) fn replay_checkpoint<T: Portable, E: WorkflowError>(
    ctx: &WorkflowContext,
    checkpoint: &Checkpoint,
    name: &str,
) -> Result<T, E> {
    replay(
        &checkpoint.output,
        &checkpoint.error,
        &checkpoint.serialization,
        &format!("the recorded output of step `{name}`"),
    )
    .map_err(|e| e.unwrap_or_else(|| E::from(ctx.fail(malformed(name)))))
}

fn malformed(name: &str) -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::Serialization,
        format!("step `{name}` has a checkpoint with neither an output nor an error"),
    )
}

/// Rebuilds a recorded result (`what` names it in errors). `Err(None)` means the record is
/// malformed.
pub(crate) fn replay<T: Portable, E: WorkflowError>(
    output: &Option<String>,
    error: &Option<String>,
    serialization: &Option<String>,
    what: &str,
) -> Result<T, Option<E>> {
    let ser = serialization.as_deref();
    if let Some(err) = error {
        return match PortableError::from_text(err, ser) {
            Ok(p) => Err(Some(error_from_portable(p))),
            Err(e) => Err(Some(E::from(e))),
        };
    }
    match output {
        Some(out) => crate::codec::from_text(out, ser, what).map_err(|e| Some(E::from(e))),
        // A unit-like output may be recorded as JSON null text; NULL means no value at all.
        None => serde_json::from_value(serde_json::Value::Null).map_err(|_| None),
    }
}
