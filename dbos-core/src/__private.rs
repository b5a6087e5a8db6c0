//! Not public API: the items the `#[workflow]`, `#[step]` and `#[transaction]` macros expand
//! to.
//! Anything here may change without notice.

use std::future::Future;

use serde_json::Value;

pub use crate::schedule::ScheduleRegistration;
pub use crate::transaction::{
    Isolation, Transaction, TransactionDef, TransactionOptions, TransactionRegistration,
    TransactionRun,
};
pub use crate::workflow::registry::{
    Args, BoxFuture, ErasedError, ErasedOutcome, StepDef, StepOptions, StepRegistration,
    WorkflowDef, WorkflowRegistration,
};
pub use crate::workflow::types::{Portable, WorkflowError};
pub use inventory;

use crate::workflow::call::WorkflowCall;

/// Fails to compile, spanned at the type, unless `T` is storable.
pub fn assert_portable<T: Portable>() {}

/// Fails to compile, spanned at the type, unless `E` can be a workflow or step error.
pub fn assert_workflow_error<E: WorkflowError>() {}

/// Boxes a workflow body. The `Send + 'static` bound is what makes a non-`Send` workflow
/// body fail to compile with "required by a bound in `workflow_future_must_be_send`":
/// workflows run on the multi-threaded runtime and may resume on any thread.
pub fn workflow_future_must_be_send<F>(future: F) -> BoxFuture<'static, ErasedOutcome>
where
    F: Future<Output = ErasedOutcome> + Send + 'static,
{
    Box::pin(future)
}

/// Encodes one workflow argument.
pub fn encode_arg<T: Portable>(value: &T) -> crate::Result<Value> {
    crate::codec::to_value(value)
}

/// The call a `#[workflow]` function returns.
pub fn workflow_call<T: Portable, E: WorkflowError>(
    def: &'static WorkflowDef,
    args: Vec<crate::Result<Value>>,
) -> WorkflowCall<T, E> {
    WorkflowCall::new(def, args)
}

/// Type-erases a workflow body's result for the executor.
pub fn erase_outcome<T: Portable, E: WorkflowError>(result: Result<T, E>) -> ErasedOutcome {
    crate::workflow::registry::erase(result)
}

/// Runs a step: checkpointed inside a workflow (replayed from its record on re-execution),
/// a plain call outside one. `attempt` is called once per attempt.
pub async fn run_step<T, E, F, Fut>(
    def: &'static StepDef,
    retry_if: Option<fn(&E) -> bool>,
    attempt: F,
) -> Result<T, E>
where
    T: Portable,
    E: WorkflowError,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    crate::workflow::step::run(def.name, &def.options, retry_if, attempt).await
}

/// The state machine a `#[transaction]` drives, for transaction `def`.
pub fn transaction_run<T: Portable, E: WorkflowError>(
    def: &'static TransactionDef,
    retry_if: Option<fn(&E) -> bool>,
) -> TransactionRun<'static, T, E> {
    TransactionRun::new(def.name, &def.options, retry_if)
}
