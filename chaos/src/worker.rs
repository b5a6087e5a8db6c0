//! One worker process: the workload (`chaos_job` of `chaos_step`s) and the executor serving
//! the `chaos` queue until it is killed.
//!
//! Spawned by the orchestrator as `dbos-chaos worker`, configured by environment:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `DBOS_SYSTEM_DATABASE_URL` | the run's database |
//! | `DBOS__VMID` | this slot's executor id (the same after every relaunch) |
//! | `DBOS_CHAOS_SLOT` | the slot number, for the effects file name |
//! | `DBOS_CHAOS_EFFECTS_DIR` | where the effects file goes |
//! | `DBOS_CHAOS_STEP_MS` | how long each step works |
//! | `DBOS_CHAOS_CONCURRENCY` | the queue's worker concurrency |
//! | `DBOS_CHAOS_LEASE_MS` | behind a pooler: the lease (0: the defaults) |
//!
//! Each step appends one line `workflow_id step pid micros` to this process's own effects file
//! (`effects-<slot>-<pid>.log`, opened with `O_APPEND`, one `write` per line) *before* it
//! works and returns: a file outside Postgres, so a Postgres crash cannot lose or undo it, and
//! a step interrupted by a SIGKILL leaves its line behind. The checker compares those lines
//! with the checkpoints.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dbos_core::{step, workflow, Config, Dbos, Error, ErrorKind, Queue};

/// The application name of every process of a run.
pub(crate) const APP_NAME: &str = "dbos-chaos";
/// The pinned application version: every worker recovers and dequeues the same version.
pub(crate) const APP_VERSION: &str = "dbos-chaos-v1";
/// The queue the orchestrator enqueues onto.
pub(crate) const QUEUE: &str = "chaos";
/// The workflow's durable name.
pub(crate) const WORKFLOW_NAME: &str = "chaos_job";

/// This process's effects file and its step duration.
struct Effects {
    file: File,
    pid: u32,
    step_ms: u64,
}

static EFFECTS: OnceLock<Effects> = OnceLock::new();

/// The output of step `step` of workflow `id`: small, so sums stay exact in any JSON reader.
pub(crate) fn step_value(id: u64, step: u32) -> u64 {
    (id.wrapping_mul(7919) + u64::from(step) * 104_729) % 1_000_003
}

/// The output `chaos_job(id, steps)` must return: the sum of its steps' outputs.
pub(crate) fn expected_output(id: u64, steps: u32) -> u64 {
    (1..=steps).map(|s| step_value(id, s)).sum()
}

/// The workflow id the orchestrator gives workflow `id`.
pub(crate) fn workflow_id_of(id: u64) -> String {
    format!("chaos-{id:06}")
}

/// One step: records its side effect outside Postgres, works `step_ms`, returns its value.
#[step]
async fn chaos_step(workflow: String, id: u64, step: u32) -> Result<u64, Error> {
    let effects = EFFECTS.get().ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            "chaos_step ran outside a dbos-chaos worker",
        )
    })?;
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let line = format!("{workflow} {step} {} {micros}\n", effects.pid);
    // One write(2) on an O_APPEND file: lines from concurrent steps never interleave.
    (&effects.file)
        .write_all(line.as_bytes())
        .map_err(|e| io_error("could not append to the effects file", &e))?;
    tokio::time::sleep(Duration::from_millis(effects.step_ms)).await;
    Ok(step_value(id, step))
}

/// The workload: `steps` steps in order; the output is the sum of their outputs.
#[workflow]
async fn chaos_job(id: u64, steps: u32) -> Result<u64, Error> {
    let workflow = dbos_core::workflow_id()
        .ok_or_else(|| config_error("chaos_job does not know its workflow id"))?;
    let mut total = 0u64;
    for step in 1..=steps {
        total += chaos_step(workflow.clone(), id, step).await?;
    }
    Ok(total)
}

fn io_error(what: &str, e: &std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{what}: {e}"))
}

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, message)
}

fn env(name: &str) -> Result<String, Error> {
    std::env::var(name)
        .map_err(|_| config_error(format!("{name} must be set (the orchestrator sets it)")))
}

fn env_number(name: &str) -> Result<u64, Error> {
    let value = env(name)?;
    value
        .parse()
        .map_err(|_| config_error(format!("{name} must be a number, not `{value}`")))
}

/// Runs the worker until it is killed.
///
/// # Errors
/// A missing variable, an effects file that cannot be created, or a failed launch.
pub(crate) async fn run() -> Result<(), Error> {
    // Die with the orchestrator: a worker must not outlive the run it belongs to.
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets a signal number for this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    let url = env("DBOS_SYSTEM_DATABASE_URL")?;
    let executor = env("DBOS__VMID")?;
    let slot = env_number("DBOS_CHAOS_SLOT")?;
    let dir = PathBuf::from(env("DBOS_CHAOS_EFFECTS_DIR")?);
    let step_ms = env_number("DBOS_CHAOS_STEP_MS")?;
    let concurrency = u32::try_from(env_number("DBOS_CHAOS_CONCURRENCY")?)
        .map_err(|_| config_error("DBOS_CHAOS_CONCURRENCY is too large"))?;
    let lease_ms = env_number("DBOS_CHAOS_LEASE_MS")?;
    let pid = std::process::id();
    let path = dir.join(format!("effects-{slot}-{pid}.log"));
    let file = File::options()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| io_error(&format!("could not create {}", path.display()), &e))?;
    let _ = EFFECTS.set(Effects { file, pid, step_ms });

    let queue = Queue::named(QUEUE)
        .worker_concurrency(concurrency)
        .polling_interval(Duration::from_millis(100));
    let config = Config::new(APP_NAME)
        .system_database_url(url)
        .executor_id(executor)
        .application_version(APP_VERSION)
        .pool_size(concurrency as usize + 4)
        .queue(&queue);
    // Behind a transaction-mode pooler (found at launch) liveness is a lease: a short one,
    // renewed six times per lease, so a relaunch gets its work back within seconds.
    let config = if lease_ms > 0 {
        let lease = Duration::from_millis(lease_ms);
        config
            .vanished_executor_timeout(lease)
            .recovery_interval(lease / 6)
            .recovery_grace(lease * 2 / 3)
    } else {
        config
    };
    let dbos = Dbos::launch(config).await?;
    // The orchestrator times relaunches from this line.
    println!("ready {pid} {}", dbos.executor_id());
    let _ = std::io::stdout().flush();
    std::future::pending::<()>().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_a_function_of_the_inputs() {
        assert_eq!(
            expected_output(3, 4),
            step_value(3, 1) + step_value(3, 2) + step_value(3, 3) + step_value(3, 4)
        );
        assert_ne!(expected_output(3, 4), expected_output(4, 4));
        assert_ne!(expected_output(3, 4), expected_output(3, 5));
        assert_eq!(workflow_id_of(42), "chaos-000042");
    }
}
