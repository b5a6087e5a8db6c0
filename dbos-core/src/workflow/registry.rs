//! Workflow and step definitions, registered at compile time through `inventory`.
//!
//! `#[workflow]` emits a static [`WorkflowDef`] and submits a [`WorkflowRegistration`];
//! `#[step]` emits a [`StepDef`] and submits a [`StepRegistration`]. At launch the runtime
//! collects them into a registry: recovery and queue workers find workflows by name, and
//! the application version is a hash of every definition's source.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;

use crate::codec::PortableError;
use crate::error::{Error, ErrorKind, Result};
use crate::workflow::types::{Portable, WorkflowError};

/// The registration mechanism (`inventory::submit!`), for workflows written by hand.
pub use inventory;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The type-erased outcome of running a workflow body.
pub type ErasedOutcome = std::result::Result<Value, ErasedError>;

/// A workflow or step failure, type-erased.
#[derive(Debug)]
pub enum ErasedError {
    /// The function returned its own error, in portable form (the typed value is in `data`).
    Application(PortableError),
    /// The inputs could not be decoded, or a durable operation failed.
    Runtime(Error),
}

/// Type-erases a workflow body's result for the executor: the output encoded as JSON, or
/// the workflow's own error in portable form. What a hand-written `invoke` returns.
///
/// An output that cannot be encoded (a map with non-string keys, a failing `Serialize`)
/// becomes an [`ErrorKind::Serialization`] failure naming the type, which is recorded as the
/// workflow's error.
pub fn erase<T: Portable, E: WorkflowError>(result: std::result::Result<T, E>) -> ErasedOutcome {
    match result {
        Ok(v) => crate::codec::to_value(&v).map_err(|e| {
            ErasedError::Runtime(Error::new(
                ErrorKind::Serialization,
                format!(
                    "the workflow's output (type `{}`) cannot be stored: {}",
                    std::any::type_name::<T>(),
                    e.message()
                ),
            ))
        }),
        Err(e) => Err(ErasedError::Application(
            crate::workflow::types::error_to_portable(&e),
        )),
    }
}

/// Decoded workflow arguments, handed to a workflow's `invoke` function.
#[derive(Debug)]
pub struct Args {
    pub(crate) workflow: &'static str,
    pub(crate) values: Vec<Value>,
}

impl Args {
    /// Creates arguments from positional JSON values.
    pub fn new(workflow: &'static str, values: Vec<Value>) -> Self {
        Args { workflow, values }
    }

    /// Decodes argument `index` (named `name` in the signature) as `T`.
    ///
    /// # Errors
    /// [`ErrorKind::Serialization`] naming the workflow and the argument.
    pub fn decode<T: serde::de::DeserializeOwned>(
        &self,
        index: usize,
        name: &str,
    ) -> std::result::Result<T, ErasedError> {
        let value = self.values.get(index).cloned().ok_or_else(|| {
            ErasedError::Runtime(Error::new(
                ErrorKind::Serialization,
                format!(
                    "workflow `{}` takes argument {} (`{name}`) but the stored input has only {} positional argument(s)",
                    self.workflow,
                    index + 1,
                    self.values.len()
                ),
            ))
        })?;
        crate::codec::from_value(
            value,
            &format!(
                "argument {} (`{name}`) of workflow `{}`",
                index + 1,
                self.workflow
            ),
        )
        .map_err(ErasedError::Runtime)
    }
}

/// A registered workflow: what `#[workflow]` generates.
#[derive(Debug)]
pub struct WorkflowDef {
    /// The durable name recorded in `workflow_status.name`.
    pub name: &'static str,
    /// Source file of the definition (for duplicate-name errors).
    pub file: &'static str,
    /// Source line of the definition.
    pub line: u32,
    /// A hash of the definition's source tokens (feeds the application version).
    pub source_hash: &'static str,
    /// Recoveries allowed before the workflow is moved to `MAX_RECOVERY_ATTEMPTS_EXCEEDED`.
    pub max_recovery_attempts: i32,
    /// Roles one of which a start must be authenticated with (`#[workflow(required_roles =
    /// [..])]`; empty: no check). The first one the user has becomes the assumed role.
    pub required_roles: &'static [&'static str],
    /// Runs the body with decoded arguments.
    pub invoke: fn(Args) -> BoxFuture<'static, ErasedOutcome>,
}

/// Submitted to `inventory` for every workflow.
#[derive(Debug)]
pub struct WorkflowRegistration(pub &'static WorkflowDef);
inventory::collect!(WorkflowRegistration);

/// Retry policy of a step. Durations are const-constructible so definitions can be statics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOptions {
    /// Total attempts, including the first (default 1: no retries).
    pub max_attempts: u32,
    /// Wait before the second attempt (default 1 s).
    pub interval: Duration,
    /// Multiplier applied to the wait after each attempt (default 2.0).
    pub backoff: f64,
    /// Upper bound of the wait (default 1 h).
    pub max_interval: Duration,
    /// Bound of each attempt (default none): an attempt still running after it is dropped
    /// and counts as a failed attempt with an [`ErrorKind::StepTimeout`] error, retried if
    /// attempts remain; when it was the last, DBOS's `DBOSStepTimeoutError` is recorded as
    /// the step's error. Zero is refused with [`ErrorKind::InvalidArgument`]. Steps only: a
    /// transaction's retry policy ignores it.
    pub timeout: Option<Duration>,
    /// Preemptible (default false): when the workflow is told to stop (cancelled, past its
    /// deadline) while an attempt runs, the attempt is dropped at once and nothing is
    /// recorded, so a resumed workflow runs the step again. Otherwise the attempt runs to
    /// completion and its result is not recorded. Steps only.
    pub preemptible: bool,
}

impl StepOptions {
    /// The defaults: one attempt.
    pub const DEFAULT: StepOptions = StepOptions {
        max_attempts: 1,
        interval: Duration::from_secs(1),
        backoff: 2.0,
        max_interval: Duration::from_secs(3600),
        timeout: None,
        preemptible: false,
    };

    /// The wait after failed attempt `attempt` (1-based): `interval * backoff^(attempt-1)`,
    /// capped at `max_interval`.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        crate::sysdb::backoff(
            self.interval,
            self.backoff.max(1.0),
            self.max_interval,
            attempt,
        )
    }
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions::DEFAULT
    }
}

/// A registered step: what `#[step]` generates.
#[derive(Debug)]
pub struct StepDef {
    /// The name recorded in `operation_outputs.function_name`.
    pub name: &'static str,
    /// A hash of the definition's source tokens (feeds the application version).
    pub source_hash: &'static str,
    /// The retry policy.
    pub options: StepOptions,
}

/// Submitted to `inventory` for every step.
#[derive(Debug)]
pub struct StepRegistration(pub &'static StepDef);
inventory::collect!(StepRegistration);

/// Every workflow of the binary, by name.
#[derive(Debug)]
pub(crate) struct Registry {
    workflows: HashMap<&'static str, &'static WorkflowDef>,
    /// Every workflow name, sorted: what this executor may claim from a queue.
    names: Vec<String>,
    version_hash: String,
}

impl Registry {
    /// Collects every registration, failing when two workflows share a name.
    pub(crate) fn collect() -> Result<Registry> {
        let mut workflows: HashMap<&'static str, &'static WorkflowDef> = HashMap::new();
        let mut duplicates = Vec::new();
        for WorkflowRegistration(def) in inventory::iter::<WorkflowRegistration> {
            if let Some(previous) = workflows.insert(def.name, def) {
                if !std::ptr::eq(previous, *def) {
                    duplicates.push(format!(
                        "`{}` is defined at {}:{} and at {}:{}",
                        def.name, previous.file, previous.line, def.file, def.line
                    ));
                }
            }
        }
        if !duplicates.is_empty() {
            duplicates.sort();
            return Err(Error::new(
                ErrorKind::ConflictingRegistration,
                format!(
                    "two workflows share one name, so recovery could not tell them apart: {}. \
                     Give one of them #[workflow(name = \"...\")]",
                    duplicates.join("; ")
                ),
            ));
        }
        let mut parts: Vec<String> = workflows
            .values()
            .map(|d| format!("wf:{}:{}", d.name, d.source_hash))
            .collect();
        parts.extend(
            inventory::iter::<StepRegistration>
                .into_iter()
                .map(|StepRegistration(s)| format!("step:{}:{}", s.name, s.source_hash)),
        );
        parts.extend(
            inventory::iter::<crate::transaction::TransactionRegistration>
                .into_iter()
                .map(|crate::transaction::TransactionRegistration(t)| {
                    format!("tx:{}:{}", t.name, t.source_hash)
                }),
        );
        parts.sort();
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(concat!("dbos-core ", env!("CARGO_PKG_VERSION")).as_bytes());
        for p in &parts {
            hasher.update(p.as_bytes());
            hasher.update(b"\n");
        }
        let version_hash = format!("{:x}", hasher.finalize())[..32].to_owned();
        let mut names: Vec<String> = workflows.keys().map(|n| (*n).to_owned()).collect();
        names.sort();
        Ok(Registry {
            workflows,
            names,
            version_hash,
        })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'static WorkflowDef> {
        self.workflows.get(name).copied()
    }

    /// Every registered workflow name.
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// The application version computed from every definition's source.
    pub(crate) fn computed_version(&self) -> &str {
        &self.version_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped() {
        let o = StepOptions {
            max_attempts: 5,
            interval: Duration::from_millis(100),
            backoff: 2.0,
            max_interval: Duration::from_millis(350),
            ..StepOptions::DEFAULT
        };
        assert_eq!(o.delay_after(1), Duration::from_millis(100));
        assert_eq!(o.delay_after(2), Duration::from_millis(200));
        assert_eq!(o.delay_after(3), Duration::from_millis(350));
    }
}
