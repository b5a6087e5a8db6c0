//! What one running execution is told from outside: which ownership token it records
//! under now, and whether it must stop.
//!
//! A stop (the workflow was cancelled, its deadline passed, another execution took it over,
//! its row was deleted) is signalled here by whoever learns of it first: the process that
//! cancelled it, the execution's own deadline timer, or the executor's periodic check of the
//! workflows it runs. The execution then starts no further durable operation; a sleep or a
//! wait in progress wakes and fails; a step already running completes but is not recorded
//! (a preemptible step's attempt is dropped at once instead).

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::workflow::context::lock;

/// The control block of one execution.
#[derive(Debug)]
pub(crate) struct ExecutionControl {
    owner: Mutex<Arc<str>>,
    stop: CancellationToken,
    reason: Mutex<Option<Error>>,
}

impl ExecutionControl {
    pub(crate) fn new(owner: impl Into<Arc<str>>) -> Arc<Self> {
        Arc::new(ExecutionControl {
            owner: Mutex::new(owner.into()),
            stop: CancellationToken::new(),
            reason: Mutex::new(None),
        })
    }

    /// The ownership token the execution records under.
    pub(crate) fn owner(&self) -> Arc<str> {
        lock(&self.owner).clone()
    }

    /// A new claim of the same workflow (a recovery or a resume that found it still running
    /// here) hands its token to this execution instead of starting a second one.
    pub(crate) fn hand_over(&self, owner: &str) {
        *lock(&self.owner) = owner.into();
    }

    /// Tells the execution to stop; the first reason given is the one it reports.
    pub(crate) fn stop(&self, reason: Error) {
        {
            let mut r = lock(&self.reason);
            if r.is_none() {
                *r = Some(reason);
            }
        }
        self.stop.cancel();
    }

    /// Why the execution must stop, if it must.
    pub(crate) fn stopped(&self) -> Option<Error> {
        if !self.stop.is_cancelled() {
            return None;
        }
        lock(&self.reason).as_ref().map(Error::duplicate)
    }

    /// Resolves when the execution is told to stop, with the reason.
    pub(crate) async fn wait_stop(&self) -> Error {
        self.stop.cancelled().await;
        lock(&self.reason)
            .as_ref()
            .map(Error::duplicate)
            .unwrap_or_else(|| {
                Error::new(
                    crate::ErrorKind::WorkflowCancelled,
                    "the execution was stopped",
                )
            })
    }
}
