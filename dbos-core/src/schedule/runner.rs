//! The scheduler of one executor: it polls the schedules of its application (and unclaimed
//! ones) and keeps one tick loop per active schedule. Each loop sleeps until the next tick
//! plus a jitter, then enqueues the tick's run under its deterministic id: every executor
//! does the same, and the id makes it one run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;

use super::cron::{iso, parse_iso, tick_id, CronSpec};
use super::ops::enqueue_tick;
use crate::runtime::RuntimeInner;
use crate::sysdb::schedules::{ScheduleFilter, ScheduleRow};
use crate::sysdb::workflows::INTERNAL_QUEUE;

/// How long the scheduler polls fast after launch, so schedules created around launch start
/// promptly (DBOS: the first minute).
const STARTUP_FAST_POLL: Duration = Duration::from_secs(60);
/// The fast poll's interval (DBOS: 1 s).
const FAST_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The most jitter a tick waits (DBOS: 10 s, and at most a tenth of the wait).
const MAX_JITTER: Duration = Duration::from_secs(10);

type Signature<'a> = (
    &'a String,
    &'a Option<String>,
    &'a String,
    &'a String,
    &'a Option<String>,
    &'a Option<String>,
);

/// What makes a tick loop stale: the definition, not the status or `last_fired_at`.
fn signature(r: &ScheduleRow) -> Signature<'_> {
    (
        &r.workflow_name,
        &r.workflow_class_name,
        &r.schedule,
        &r.context,
        &r.cron_timezone,
        &r.queue_name,
    )
}

struct Running {
    row: ScheduleRow,
    stop: CancellationToken,
}

/// The scheduler loop, until shutdown or deactivation (the admin API's `/deactivate`).
pub(crate) async fn serve(rt: Arc<RuntimeInner>) {
    let launched = Instant::now();
    let mut running: HashMap<String, Running> = HashMap::new();
    loop {
        let filter = ScheduleFilter {
            app_name: Some(&rt.app_name),
            ..Default::default()
        };
        match rt.sysdb.list_schedule_rows(&filter).await {
            Ok(rows) => reconcile(&rt, &mut running, rows),
            Err(e) => tracing::warn!(error = %e, "could not poll the schedules; retrying"),
        }
        let interval = rt.config.scheduler_polling_interval;
        let wait = if launched.elapsed() < STARTUP_FAST_POLL {
            interval.min(FAST_POLL_INTERVAL)
        } else {
            interval
        };
        tokio::select! {
            _ = rt.schedules_stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    for r in running.into_values() {
        r.stop.cancel();
    }
}

/// Starts, restarts and stops tick loops to match the rows.
fn reconcile(
    rt: &Arc<RuntimeInner>,
    running: &mut HashMap<String, Running>,
    rows: Vec<ScheduleRow>,
) {
    running.retain(|id, r| {
        let keep = rows.iter().any(|row| {
            &row.schedule_id == id && row.status == "ACTIVE" && signature(row) == signature(&r.row)
        });
        if !keep {
            r.stop.cancel();
        }
        keep
    });
    for row in rows {
        if row.status != "ACTIVE" || running.contains_key(&row.schedule_id) {
            continue;
        }
        // A loop restarted for a changed definition does not backfill (as in DBOS): it was
        // firing until now.
        let backfill = row.automatic_backfill && !rt.schedules_stop.is_cancelled();
        let stop = rt.schedules_stop.child_token();
        rt.spawn_task(tick_loop(rt.clone(), row.clone(), stop.clone(), backfill));
        running.insert(row.schedule_id.clone(), Running { row, stop });
    }
}

/// A random fraction in [0, 1) (jitter needs no durable randomness).
fn unit_random() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

/// Fires one schedule's ticks until stopped.
async fn tick_loop(
    rt: Arc<RuntimeInner>,
    row: ScheduleRow,
    stop: CancellationToken,
    backfill: bool,
) {
    let spec = match CronSpec::parse(&row.schedule, row.cron_timezone.as_deref()) {
        Ok(spec) => spec,
        Err(e) => {
            tracing::error!(schedule = %row.schedule_name, error = %e, "cannot run this schedule");
            return;
        }
    };
    // Ticks are durable time: read from, and waited for on, the runtime's clock.
    let clock = &rt.config.clock;
    let mut last = DateTime::<Utc>::from(clock.now());
    if backfill {
        if let Some(fired) = row.last_fired_at.as_deref().and_then(parse_iso) {
            for tick in spec.ticks_between(fired, last) {
                if stop.is_cancelled() {
                    return;
                }
                fire(&rt, &row, &tick, false).await;
            }
        }
    }
    while let Some(next) = spec.next_after(last) {
        let at = std::time::SystemTime::from(next.to_utc());
        let wait = at.duration_since(clock.now()).unwrap_or_default();
        let jitter = (wait / 10).min(MAX_JITTER).mul_f64(unit_random());
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clock.sleep_until(at + jitter) => {}
        }
        fire(&rt, &row, &next, true).await;
        last = next.to_utc();
    }
}

/// Enqueues a tick's run (unless it exists) and, for a live tick, records it as the
/// schedule's `last_fired_at`. A failure is logged and the schedule goes on.
async fn fire(rt: &RuntimeInner, row: &ScheduleRow, tick: &DateTime<Tz>, live: bool) {
    let id = tick_id(&row.schedule_name, tick);
    match enqueue_tick(&rt.sysdb, row, tick.to_utc(), &id, Some(&rt.app_name)).await {
        Ok(true) => rt.wake_queue(row.queue_name.as_deref().unwrap_or(INTERNAL_QUEUE)),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(schedule = %row.schedule_name, workflow_id = %id, error = %e, "could not fire a tick");
            return;
        }
    }
    if live {
        if let Err(e) = rt
            .sysdb
            .set_last_fired_at(&row.schedule_name, &iso(tick))
            .await
        {
            tracing::warn!(schedule = %row.schedule_name, error = %e, "could not record the last tick fired");
        }
    }
}
