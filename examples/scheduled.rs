//! A heartbeat: the schedule `heartbeat` runs a workflow every second (`* * * * * *`), and
//! each run records the time it was scheduled for, until Ctrl-C.
//!
//! ```sh
//! cargo run -p examples --bin scheduled
//! DBOS_SYSTEM_DATABASE_URL=postgres://postgres:pw@localhost/sched_sys cargo run -p examples --bin scheduled
//! ```
//!
//! Start it in three terminals against one database (`DBOS_SYSTEM_DATABASE_URL`): there is
//! still exactly one run per second. Every copy fires every tick, as the workflow id
//! `sched-heartbeat-<tick time>`, so the second and third insert of a tick's run are no-ops;
//! whichever copy dequeues the run executes it. Stop one copy and the others keep the beat.
//! The runs are listed by `dbos-rs workflow list --schedule-name heartbeat`.

use dbos_core::prelude::*;
use dbos_core::schedule::chrono::{DateTime, SecondsFormat, Utc};

/// Records a tick: prints it, and returns it as the step's (checkpointed) output.
#[step]
async fn record_beat(scheduled_at: String) -> Result<String, Error> {
    println!("heartbeat {scheduled_at}");
    Ok(scheduled_at)
}

/// The scheduled workflow: its arguments are the tick's time and the schedule's context. The
/// `schedule` attribute writes the schedule row `heartbeat` at every launch (an upsert, so
/// copies launching together do not conflict, and a paused schedule stays paused).
#[workflow(schedule = "* * * * * *")]
async fn heartbeat(
    scheduled_at: DateTime<Utc>,
    _context: serde_json::Value,
) -> Result<String, Error> {
    record_beat(scheduled_at.to_rfc3339_opts(SecondsFormat::Secs, true)).await
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let _telemetry = examples::init_logs();
    let dbos = Dbos::launch(Config::from_env("scheduled")?).await?;
    println!("scheduled `heartbeat` every second; Ctrl-C to stop");
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot wait for Ctrl-C: {e}")))?;
    dbos.shutdown().await
}
