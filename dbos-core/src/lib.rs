#![doc = include_str!("../README.md")]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

pub mod codec;
pub mod config;
pub mod error;
pub mod local_postgres;
pub mod queue;
pub mod runtime;
pub mod sysdb;
pub mod transaction;
pub mod workflow;

#[doc(hidden)]
#[path = "__private.rs"]
pub mod __private;

pub use config::Config;
pub use error::{Error, ErrorKind, Result};
pub use queue::enqueue::QueuedCall;
pub use queue::Queue;
pub use runtime::Dbos;
pub use transaction::{
    run_transaction, DataSource, DataSourceConfig, Isolation, Transaction, TransactionOptions,
};
pub use workflow::call::{Status, WorkflowCall, WorkflowHandle};
pub use workflow::context::{step_attempt, step_id, workflow_id};
pub use workflow::ops::{now, random, run_step, run_step_retry_if, sleep, uuid};
pub use workflow::registry::StepOptions;
pub use workflow::types::{Portable, WorkflowError};

#[doc = include_str!("../docs/workflow-macro.md")]
pub use dbos_macros::workflow;

#[doc = include_str!("../docs/step-macro.md")]
pub use dbos_macros::step;

#[doc = include_str!("../docs/transaction-macro.md")]
pub use dbos_macros::transaction;

/// Everything an application usually needs: `use dbos_core::prelude::*;`.
pub mod prelude {
    pub use crate::{
        step, transaction, workflow, Config, Dbos, Error, ErrorKind, Queue, Status, Transaction,
        WorkflowCall, WorkflowHandle,
    };
}
