//! Durable built-in operations: `sleep`, `now`, `random`, `uuid`.
//!
//! Inside a workflow each is recorded, so a replay sees the same value (and a recovered
//! sleep waits only the remainder). Outside a workflow they are plain calls.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::Instrument;

use crate::error::{Error, ErrorKind, Result};
use crate::observe::{self, Op};
use crate::sysdb::workflows::Checkpoint;
use crate::workflow::context::{current, Operation, Slot};
use crate::workflow::registry::StepOptions;
use crate::workflow::step;

/// The operation name DBOS records for durable sleeps.
pub(crate) const SLEEP: &str = "DBOS.sleep";

/// Sleeps durably: the wake-up time is recorded before sleeping, so a workflow recovered
/// mid-sleep waits only for what remains. Outside a workflow, a plain `tokio::time::sleep`.
///
/// # Errors
/// When the checkpoint cannot be recorded (lost ownership, cancellation, database failure).
///
/// # Cancel safety
/// Dropping the future before the checkpoint is recorded records nothing; after, a later
/// replay waits only the remainder.
pub async fn sleep(duration: Duration) -> Result<()> {
    sleep_in(duration)
        .instrument(observe::operation(Op::Sleep, SLEEP))
        .await
}

async fn sleep_in(duration: Duration) -> Result<()> {
    let Some(ctx) = current() else {
        tokio::time::sleep(duration).await;
        return Ok(());
    };
    let wake_at = recorded_wake_up(&ctx, duration, true).await?;
    if ctx.replay_mode().is_some() {
        // A replay returns what was recorded, without waiting.
        return Ok(());
    }
    let clock = &ctx.runtime.config.clock;
    if let Ok(remaining) = wake_at.duration_since(clock.now()) {
        let deadline_first = ctx.deadline_ms.is_some_and(|d| d < to_ms(wake_at));
        if remaining >= ctx.runtime.config.park_after && !deadline_first {
            // A long sleep: the executor ends this execution here and re-executes the
            // workflow at wake-up time, so nothing stays in memory meanwhile.
            ctx.request_park(to_ms(wake_at));
            // The executor drops this body now; an execution told to stop meanwhile (and so
            // not parked) ends here.
            return Err(ctx.stopped().await);
        }
        tokio::select! {
            _ = clock.sleep_until(wake_at) => {}
            reason = ctx.stopped() => return Err(reason),
            _ = ctx.runtime.shutdown.cancelled() => {
                return Err(ctx.fail(Error::new(
                    ErrorKind::NotLaunched,
                    "the runtime is shutting down during a durable sleep; the workflow resumes the sleep after recovery",
                )));
            }
        }
    }
    Ok(())
}

/// The longest wait honoured: about a century (longer ones, up to `Duration::MAX`, wait
/// that long).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The wake-up time `duration` from now (at most [`MAX_WAIT`]), recorded as a `DBOS.sleep`
/// at the workflow's next step id; a replay returns the recorded one. The one recording of
/// every durable sleep and of every timed wait's deadline.
///
/// As DBOS 3.4 records them: a sleep (`completes_at_wake_up`) is recorded as completing at
/// its wake-up time, so its duration is the sleep; a timed wait's deadline, which the wait
/// may never reach, as completing when it is recorded.
pub(crate) async fn recorded_wake_up(
    ctx: &crate::workflow::context::WorkflowContext,
    duration: Duration,
    completes_at_wake_up: bool,
) -> Result<SystemTime> {
    match ctx.begin(SLEEP)? {
        Slot::Recorded { checkpoint, .. } => recorded_wake_at(&checkpoint),
        Slot::Fresh { function_id } => {
            let started = crate::sysdb::workflows::now_ms();
            let wake_at = ctx.runtime.config.clock.now() + duration.min(MAX_WAIT);
            let secs = wake_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            let output = crate::codec::to_text(&secs)?;
            let theirs = ctx
                .record(Operation {
                    output: Some(&output),
                    completed_ms: completes_at_wake_up.then(|| to_ms(wake_at)),
                    ..Operation::new(function_id, SLEEP, started)
                })
                .await?;
            match theirs {
                None => Ok(wake_at),
                Some(checkpoint) => recorded_wake_at(&checkpoint),
            }
        }
    }
}

/// The wake-up time a sleep's checkpoint holds (seconds since the epoch, as DBOS records it).
pub(crate) fn recorded_wake_at(checkpoint: &Checkpoint) -> Result<SystemTime> {
    let text = checkpoint.output.as_deref().unwrap_or_default();
    let secs: f64 = crate::codec::from_text(
        text,
        checkpoint.serialization.as_deref(),
        "a recorded sleep",
    )?;
    Ok(UNIX_EPOCH + Duration::from_secs_f64(secs.max(0.0)))
}

pub(crate) fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

const ONCE: StepOptions = StepOptions::DEFAULT;

/// The current durable time, recorded as a step inside a workflow (so a replay sees the
/// same instant), as an RFC 3339 UTC string in the database. Use it instead of
/// `SystemTime::now()` in workflow bodies. It reads the runtime's
/// [`Clock`](crate::clock::Clock) (the system clock unless configured otherwise).
///
/// # Errors
/// When the checkpoint cannot be recorded.
pub async fn now() -> Result<SystemTime> {
    let clock = crate::Dbos::current()
        .map(|dbos| dbos.config().clock.clone())
        .unwrap_or_default();
    let text: String = step::run("dbos_core::now", &ONCE, None, || async {
        Ok::<_, Error>(crate::codec::format_rfc3339(clock.now()))
    })
    .await?;
    crate::codec::parse_rfc3339(&text).ok_or_else(|| {
        Error::new(
            ErrorKind::Serialization,
            format!("a recorded time `{text}` is not an RFC 3339 UTC timestamp"),
        )
    })
}

/// A random number in `[0, 1)`, recorded as a step inside a workflow.
///
/// # Errors
/// When the checkpoint cannot be recorded.
pub async fn random() -> Result<f64> {
    step::run("dbos_core::random", &ONCE, None, || async {
        let bits = u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8]
                .try_into()
                .unwrap_or([0; 8]),
        );
        Ok::<_, Error>((bits >> 11) as f64 / (1u64 << 53) as f64)
    })
    .await
}

/// A random (v4) UUID string, recorded as a step inside a workflow.
///
/// # Errors
/// When the checkpoint cannot be recorded.
pub async fn uuid() -> Result<String> {
    step::run("dbos_core::uuid", &ONCE, None, || async {
        Ok::<_, Error>(uuid::Uuid::new_v4().to_string())
    })
    .await
}

/// Runs a closure as a step named `name`: the expansion of `#[step]`, by hand.
///
/// ```no_run
/// use dbos_core::StepOptions;
///
/// #[tokio::main]
/// async fn main() -> dbos_core::Result<()> {
///     let body: String = dbos_core::run_step("fetch", StepOptions::DEFAULT, || async {
///         Ok::<_, dbos_core::Error>("response".to_owned())
///     })
///     .await?;
///     println!("{body}");
///     Ok(())
/// }
/// ```
///
/// # Errors
/// The step's own error (recorded and replayed), or a durability failure converted with
/// `E::from`.
pub async fn run_step<T, E, F, Fut>(
    name: &str,
    options: StepOptions,
    attempt: F,
) -> std::result::Result<T, E>
where
    T: crate::workflow::types::Portable,
    E: crate::workflow::types::WorkflowError,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    step::run(name, &options, None, attempt).await
}

/// [`run_step`] with a retry predicate: an attempt's error is retried only when
/// `retry_if(&error)` is true (what `#[step(retry_if = path)]` expands to). An error it
/// rejects is recorded and returned at once.
///
/// ```no_run
/// use dbos_core::StepOptions;
///
/// #[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
/// enum FetchError {
///     #[error("busy, try later")]
///     Busy,
///     #[error("not found")]
///     NotFound,
///     #[error("{0}")]
///     Dbos(String),
/// }
/// impl From<dbos_core::Error> for FetchError {
///     fn from(e: dbos_core::Error) -> Self {
///         FetchError::Dbos(e.to_string())
///     }
/// }
///
/// fn transient(e: &FetchError) -> bool {
///     matches!(e, FetchError::Busy)
/// }
///
/// # async fn demo() -> Result<(), FetchError> {
/// let options = StepOptions { max_attempts: 4, ..StepOptions::DEFAULT };
/// let page: String = dbos_core::run_step_retry_if("fetch", options, transient, || async {
///     Err::<String, _>(FetchError::NotFound) // not retried: recorded and returned at once
/// })
/// .await?;
/// # let _ = page;
/// # Ok(())
/// # }
/// # let _ = demo;
/// ```
///
/// # Errors
/// As [`run_step`].
pub async fn run_step_retry_if<T, E, F, Fut>(
    name: &str,
    options: StepOptions,
    retry_if: fn(&E) -> bool,
    attempt: F,
) -> std::result::Result<T, E>
where
    T: crate::workflow::types::Portable,
    E: crate::workflow::types::WorkflowError,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    step::run(name, &options, Some(retry_if), attempt).await
}
