#![doc = include_str!("../README.md")]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "admin")]
pub mod admin;
pub mod cli;
pub mod client;
pub mod clock;
pub mod codec;
pub mod config;
pub mod debounce;
pub mod error;
pub mod export;
pub mod local_postgres;
pub mod manage;
pub mod messages;
mod observe;
pub mod queue;
mod recovery;
pub mod replay;
pub mod runtime;
pub mod schedule;
pub mod sysdb;
pub mod transaction;
pub mod workflow;

#[doc(hidden)]
#[path = "__private.rs"]
pub mod __private;

pub use client::Client;
pub use config::{Config, PoolerMode};
pub use debounce::Debouncer;
pub use error::{Error, ErrorKind, Result};
pub use messages::{
    close_stream, get_all_events, get_event, read_stream, recv, send, send_batch, set_event,
    wait_first, write_stream, Message, ReadStream, SendCall,
};
/// The metrics this library records (see the Observability chapter).
pub use observe::metrics;
#[cfg(feature = "opentelemetry")]
pub use observe::otel;
pub use queue::enqueue::QueuedCall;
pub use queue::{Queue, QueueConflict};
pub use runtime::Dbos;
pub use transaction::{
    run_transaction, DataSource, DataSourceConfig, Isolation, Transaction, TransactionOptions,
};
pub use workflow::call::{Status, WorkflowCall, WorkflowHandle};
pub use workflow::context::{step_attempt, step_id, workflow_id};
pub use workflow::identity::{identity, Identity};
pub use workflow::ops::{now, random, run_step, run_step_retry_if, sleep, uuid};
pub use workflow::patch::{deprecate_patch, patch};
pub use workflow::placement::IdReusePolicy;
pub use workflow::registry::StepOptions;
pub use workflow::types::{Portable, WorkflowError};

#[doc = include_str!("../docs/workflow-macro.md")]
pub use dbos_macros::workflow;

#[doc = include_str!("../docs/step-macro.md")]
pub use dbos_macros::step;

#[doc = include_str!("../docs/transaction-macro.md")]
pub use dbos_macros::transaction;

/// The book under `docs/src/`, compiled as doctests so every Rust example in it keeps
/// compiling (examples that need a running database are `no_run`: compiled, not run).
#[cfg(doctest)]
mod book {
    #[doc = include_str!("../../docs/src/introduction.md")]
    struct Introduction;
    #[doc = include_str!("../../docs/src/getting-started.md")]
    struct GettingStarted;
    #[doc = include_str!("../../docs/src/system-database.md")]
    struct SystemDatabase;
    #[doc = include_str!("../../docs/src/workflows.md")]
    struct Workflows;
    #[doc = include_str!("../../docs/src/queues.md")]
    struct Queues;
    #[doc = include_str!("../../docs/src/debouncing.md")]
    struct Debouncing;
    #[doc = include_str!("../../docs/src/messages.md")]
    struct Messages;
    #[doc = include_str!("../../docs/src/schedules.md")]
    struct Schedules;
    #[doc = include_str!("../../docs/src/testing.md")]
    struct Testing;
    #[doc = include_str!("../../docs/src/performance.md")]
    struct Performance;
    #[doc = include_str!("../../docs/src/reliability.md")]
    struct Reliability;
    #[doc = include_str!("../../docs/src/production.md")]
    struct Production;
    #[doc = include_str!("../../docs/src/architecture.md")]
    struct Architecture;
    #[doc = include_str!("../../docs/src/managing.md")]
    struct Managing;
    #[doc = include_str!("../../docs/src/export.md")]
    struct Export;
    #[doc = include_str!("../../docs/src/cli.md")]
    struct Cli;
    #[doc = include_str!("../../docs/src/transactions.md")]
    struct Transactions;
    #[doc = include_str!("../../docs/src/changing-code.md")]
    struct ChangingCode;
    #[doc = include_str!("../../docs/src/observability.md")]
    struct Observability;
    #[cfg(feature = "admin")]
    #[doc = include_str!("../../docs/src/dashboard.md")]
    struct Dashboard;
}

/// Everything an application usually needs: `use dbos_core::prelude::*;`.
pub mod prelude {
    pub use crate::{
        step, transaction, workflow, Config, Dbos, Error, ErrorKind, Queue, Status, Transaction,
        WorkflowCall, WorkflowHandle,
    };
}
