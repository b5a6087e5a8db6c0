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
pub(crate) mod worker;

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

/// A queue's definition and flow-control limits.
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

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
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
