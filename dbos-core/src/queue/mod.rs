//! Queues: flow-controlled, database-backed work shared by every executor.
//!
//! A [`Queue`] is declared in code (usually a `static`), registered at launch with
//! [`Config::queue`](crate::Config::queue), and persisted in `dbos.queues`. Workflows are
//! enqueued with [`WorkflowCall::enqueue`](crate::WorkflowCall::enqueue); every executor that
//! registered the queue dequeues from it, within its limits:
//!
//! ```
//! use std::time::Duration;
//! use dbos_core::Queue;
//!
//! static LLM_CALLS: Queue = Queue::new("llm-calls")
//!     .worker_concurrency(4)                               // per process
//!     .concurrency(16)                                     // across every process
//!     .rate_limit(60, Duration::from_secs(60));            // at most 60 starts a minute
//!
//! let config = dbos_core::Config::new("summarizer").queue(&LLM_CALLS);
//! # let _ = config;
//! ```

pub mod enqueue;
pub mod unrunnable;
pub(crate) mod worker;

pub use unrunnable::{Unrunnable, UnrunnableWorkflow};

use std::borrow::Cow;
use std::time::Duration;

/// A start-rate limit: at most `max` workflows started per `period`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Starts allowed per period.
    pub max: u32,
    /// The sliding window.
    pub period: Duration,
}

/// What [`Dbos::launch`](crate::Dbos::launch) does when `dbos.queues` already has a row for
/// a queue this executor declares (DBOS's `on_conflict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueueConflict {
    /// Overwrite the row only when this executor runs the latest registered application
    /// version, so an older version still running in a rolling deploy does not put back
    /// the old limits (the default).
    #[default]
    UpdateIfLatestVersion,
    /// Always overwrite the row with this definition.
    AlwaysUpdate,
    /// Never overwrite: the row (set by DBOS tooling, SQL or an earlier deploy) wins.
    NeverUpdate,
}

/// A queue's definition and flow-control limits.
///
/// The definition in code is recorded in `dbos.queues` at launch (see [`QueueConflict`]),
/// and every executor polls with the limits of that row, re-read once per polling interval:
/// all executors, whatever code they run, and DBOS's tools agree on one set of limits, and a
/// change to the row takes effect within a polling interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Queue {
    pub(crate) name: Cow<'static, str>,
    pub(crate) concurrency: Option<u32>,
    pub(crate) worker_concurrency: Option<u32>,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) priority_enabled: bool,
    pub(crate) partitioned: bool,
    pub(crate) partition_concurrency: Option<u32>,
    pub(crate) partition_worker_concurrency: Option<u32>,
    pub(crate) partition_rate_limit: Option<RateLimit>,
    pub(crate) polling_interval: Duration,
    pub(crate) on_conflict: QueueConflict,
}

impl Queue {
    /// A queue with no limits, polled every second.
    pub const fn new(name: &'static str) -> Queue {
        Queue {
            name: Cow::Borrowed(name),
            concurrency: None,
            worker_concurrency: None,
            rate_limit: None,
            priority_enabled: false,
            partitioned: false,
            partition_concurrency: None,
            partition_worker_concurrency: None,
            partition_rate_limit: None,
            polling_interval: Duration::from_secs(1),
            on_conflict: QueueConflict::UpdateIfLatestVersion,
        }
    }

    /// A queue whose name is known only at run time.
    pub fn named(name: impl Into<String>) -> Queue {
        Queue {
            name: Cow::Owned(name.into()),
            ..Queue::new("")
        }
    }

    /// At most `n` workflows of this queue run at once across every executor.
    pub const fn concurrency(mut self, n: u32) -> Queue {
        self.concurrency = Some(n);
        self
    }

    /// At most `n` workflows of this queue run at once in each executor.
    pub const fn worker_concurrency(mut self, n: u32) -> Queue {
        self.worker_concurrency = Some(n);
        self
    }

    /// At most `max` workflows start per `period` (a sliding window), across every executor.
    pub const fn rate_limit(mut self, max: u32, period: Duration) -> Queue {
        self.rate_limit = Some(RateLimit { max, period });
        self
    }

    /// Marks the queue as using priorities (recorded in `dbos.queues`). Priorities are
    /// 0..=2^31 - 1 and lower numbers always run first; 0 is the default.
    pub const fn priority_enabled(mut self) -> Queue {
        self.priority_enabled = true;
        self
    }

    /// Makes the queue partitioned: workflows carry a partition key
    /// ([`QueuedCall::partition_key`](crate::queue::enqueue::QueuedCall::partition_key)), and the
    /// partition limits apply per key.
    pub const fn partitioned(mut self) -> Queue {
        self.partitioned = true;
        self
    }

    /// Per partition: at most `n` running at once across every executor.
    pub const fn partition_concurrency(mut self, n: u32) -> Queue {
        self.partitioned = true;
        self.partition_concurrency = Some(n);
        self
    }

    /// Per partition: at most `n` running at once in each executor.
    pub const fn partition_worker_concurrency(mut self, n: u32) -> Queue {
        self.partitioned = true;
        self.partition_worker_concurrency = Some(n);
        self
    }

    /// Per partition: at most `max` starts per `period`.
    pub const fn partition_rate_limit(mut self, max: u32, period: Duration) -> Queue {
        self.partitioned = true;
        self.partition_rate_limit = Some(RateLimit { max, period });
        self
    }

    /// How often executors poll this queue (default 1 s; each poll is jittered by ±5 %).
    pub const fn polling_interval(mut self, interval: Duration) -> Queue {
        self.polling_interval = interval;
        self
    }

    /// What launch does when `dbos.queues` already has a row for this queue (default
    /// [`QueueConflict::UpdateIfLatestVersion`]).
    pub const fn on_conflict(mut self, policy: QueueConflict) -> Queue {
        self.on_conflict = policy;
        self
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks that an executor can honour the definition: limits of at least 1, a rate
    /// limit with a period, a per-executor limit no larger than the shared one, a name of its
    /// own. [`Dbos::launch`](crate::Dbos::launch) refuses a definition that fails this.
    ///
    /// ```
    /// use dbos_core::{ErrorKind, Queue};
    ///
    /// assert!(Queue::new("emails").concurrency(10).worker_concurrency(2).validate().is_ok());
    /// let e = Queue::new("emails").concurrency(2).worker_concurrency(10).validate().unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) naming the queue, the
    /// option and what to do.
    pub fn validate(&self) -> crate::Result<()> {
        let name = self.name();
        let bad = |what: String| {
            Err(crate::Error::new(
                crate::ErrorKind::InvalidArgument,
                format!("queue `{name}`: {what}"),
            ))
        };
        if name.trim().is_empty() {
            return bad("the name is blank; give the queue a name".to_owned());
        }
        if name == crate::sysdb::workflows::INTERNAL_QUEUE {
            return bad(
                "this is DBOS's internal queue (recovery, resume, fork), which every executor already serves; \
                 give your queue another name"
                    .to_owned(),
            );
        }
        let limits = [
            ("concurrency", self.concurrency),
            ("worker_concurrency", self.worker_concurrency),
            ("partition_concurrency", self.partition_concurrency),
            (
                "partition_worker_concurrency",
                self.partition_worker_concurrency,
            ),
        ];
        for (option, value) in limits {
            if value == Some(0) {
                return bad(format!(
                    "{option}(0) would never run anything; use at least 1, or leave the limit out"
                ));
            }
        }
        for (option, rate) in [
            ("rate_limit", self.rate_limit),
            ("partition_rate_limit", self.partition_rate_limit),
        ] {
            match rate {
                Some(r) if r.max == 0 => {
                    return bad(format!(
                        "{option} allows 0 starts per period, so nothing would ever start; allow at least 1"
                    ))
                }
                Some(r) if r.period.is_zero() => {
                    return bad(format!(
                        "{option} has a period of 0, which limits nothing; give a period of at least 1 ms"
                    ))
                }
                _ => {}
            }
        }
        if let (Some(worker), Some(global)) = (self.worker_concurrency, self.concurrency) {
            if worker > global {
                return bad(format!(
                    "worker_concurrency({worker}) is above concurrency({global}), the limit across every executor; \
                     lower it to at most {global}"
                ));
            }
        }
        if let (Some(worker), Some(global)) = (
            self.partition_worker_concurrency,
            self.partition_concurrency,
        ) {
            if worker > global {
                return bad(format!(
                    "partition_worker_concurrency({worker}) is above partition_concurrency({global}); lower it to \
                     at most {global}"
                ));
            }
        }
        if self.polling_interval.is_zero() {
            return bad(
                "a polling interval of 0 would poll the database without pause; use at least 1 ms"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// Whether a shared budget (global or partition concurrency, or a rate limit) applies, so
    /// a dequeue must see and lock a consistent set of rows.
    pub(crate) fn has_shared_budget(&self) -> bool {
        self.concurrency.is_some()
            || self.rate_limit.is_some()
            || self.partition_concurrency.is_some()
            || self.partition_rate_limit.is_some()
    }
}
