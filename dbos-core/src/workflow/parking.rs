//! The parking lot: workflows in a long durable sleep hold no task and no future.
//!
//! When a workflow sleeps for longer than [`Config::park_after`](crate::Config::park_after),
//! its execution ends right after the wake-up time is recorded (the row stays `PENDING`,
//! owned by this execution) and one small entry is kept here. At the wake-up time the
//! workflow is re-executed from its history: completed operations replay from their records,
//! the sleep finds its recorded wake-up time passed, and the body continues. A parked
//! workflow costs one map entry instead of a task, a timer and a suspended state machine.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::codec::PortableInputs;
use crate::runtime::RuntimeInner;
use crate::workflow::context::lock;
use crate::workflow::registry::WorkflowDef;

/// One parked workflow.
#[derive(Debug)]
pub(crate) struct Parked {
    pub(crate) owner_xid: Box<str>,
    pub(crate) def: &'static WorkflowDef,
    pub(crate) deadline_ms: Option<i64>,
}

/// Parked workflows by (wake-up time in epoch ms, workflow id).
#[derive(Debug, Default)]
pub(crate) struct ParkingLot {
    entries: Mutex<BTreeMap<(i64, Box<str>), Parked>>,
    changed: Notify,
}

impl ParkingLot {
    pub(crate) fn park(&self, wake_ms: i64, id: &str, parked: Parked) {
        lock(&self.entries).insert((wake_ms, id.into()), parked);
        self.changed.notify_one();
    }

    /// How many workflows are parked.
    pub(crate) fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    fn take_due(&self, now_ms: i64) -> (Vec<(Box<str>, Parked)>, Option<i64>) {
        let mut entries = lock(&self.entries);
        let mut due = Vec::new();
        while let Some(entry) = entries.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let ((_, id), parked) = entry.remove_entry();
            due.push((id, parked));
        }
        (due, entries.keys().next().map(|k| k.0))
    }
}

/// Wakes parked workflows when their time comes, until shutdown.
pub(crate) async fn serve(rt: Arc<RuntimeInner>) {
    loop {
        let (due, next) = rt.parking.take_due(crate::sysdb::workflows::now_ms());
        for (id, parked) in due {
            let rt2 = rt.clone();
            rt.spawn_task(async move { resume(rt2, id, parked).await });
        }
        let wait = match next {
            Some(at) => {
                Duration::from_millis((at - crate::sysdb::workflows::now_ms()).max(0) as u64)
            }
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = rt.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = rt.parking.changed.notified() => {}
        }
    }
}

/// Re-executes a parked workflow from its history, under the same ownership.
async fn resume(rt: Arc<RuntimeInner>, id: Box<str>, parked: Parked) {
    let inputs = match Box::pin(rt.sysdb.workflow_inputs(&id)).await {
        Ok(Some((text, serialization))) => {
            PortableInputs::from_text(&text, serialization.as_deref())
        }
        Ok(None) => {
            tracing::warn!(workflow_id = %id, "a parked workflow's inputs are gone; it is not resumed");
            return;
        }
        Err(e) => Err(e),
    };
    match inputs {
        Ok(inputs) => {
            rt.spawn_execution(
                parked.def,
                inputs.positional_args,
                id.into(),
                parked.owner_xid.into(),
                false,
                parked.deadline_ms,
                None,
            );
        }
        Err(e) => {
            tracing::error!(workflow_id = %id, error = %e, "could not resume a parked workflow; it will be recovered at the next launch");
        }
    }
}
