//! Steps: run at least once, recorded exactly once, replayed from their record.

use std::future::Future;
use std::time::Duration;

use crate::codec::PortableError;
use crate::error::{Error, ErrorKind};
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
/// recorded and returned. A workflow cancelled meanwhile stops waiting between attempts, and
/// an attempt that completes after the cancel is not recorded. Outside a workflow: one
/// plain call.
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
    let Some(ctx) = current() else {
        return attempt().await;
    };
    let function_id = match ctx.begin(name).map_err(E::from)? {
        Slot::Recorded { checkpoint, .. } => return replay_checkpoint(&ctx, &checkpoint, name),
        Slot::Fresh { function_id } => function_id,
    };
    let started = now_ms();
    let workflow_id: std::sync::Arc<str> = ctx.workflow_id.as_str().into();
    let retries = OwnRetries {
        kind: "step",
        name,
        policy: options,
        runtime: &ctx.runtime,
        ctx: Some(&ctx),
        function_id,
    };
    let mut n = 1;
    let result = loop {
        let scope = StepScope {
            runtime: ctx.runtime.clone(),
            workflow_id: workflow_id.clone(),
            step_id: function_id,
            attempt: n,
            control: ctx.control.clone(),
        };
        match in_step(scope, attempt()).await {
            Err(e) => {
                let Some(delay) = retries.next(n, || retry_if.is_none_or(|f| f(&e)), &e) else {
                    break Err(e);
                };
                retries.wait(delay).await.map_err(E::from)?;
                n += 1;
            }
            ok => break ok,
        }
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
            let text = error_to_portable(&e)
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
    match theirs {
        None => result,
        Some(checkpoint) => replay_checkpoint(&ctx, &checkpoint, name),
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
        tracing::warn!(
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
