//! Patching: changing a workflow's code while executions of the old code are in flight.
//!
//! `if patch("name").await? { new } else { old }` records a marker operation
//! `DBOS.patch-<name>` at the workflow's next step id, as DBOS does. An execution that reaches
//! the patch with nothing recorded there is new: it records the marker and takes the new
//! branch. A recovered execution that finds the marker took the new branch before and takes
//! it again. One that finds another operation there had passed this point under the old code
//! (which had no patch): it takes the old branch and the id is left to that operation.

use crate::error::{Error, Result};
use crate::sysdb::workflows::now_ms;
use crate::workflow::context::{current, Operation, Slot};

/// The operation name DBOS records for the patch `name`.
pub(crate) fn marker(name: &str) -> String {
    format!("DBOS.patch-{name}")
}

/// Whether this execution runs the new code of the patch `name` (`true`) or the old code
/// (`false`: it had already passed this point, without the patch, before the code changed).
///
/// ```no_run
/// # #[dbos_core::step] async fn charge_v1() -> Result<(), dbos_core::Error> { Ok(()) }
/// # #[dbos_core::step] async fn charge_v2() -> Result<(), dbos_core::Error> { Ok(()) }
/// #[dbos_core::workflow]
/// async fn checkout() -> Result<(), dbos_core::Error> {
///     if dbos_core::patch("charge-v2").await? {
///         charge_v2().await // what executions started from now on do
///     } else {
///         charge_v1().await // what executions already past this point keep doing
///     }
/// }
/// ```
///
/// Once no execution that can take the old branch is left, replace the `patch` with
/// [`deprecate_patch`] (executions that recorded the marker still find it), and later remove
/// that too.
///
/// # Errors
/// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) outside a workflow or
/// for an empty name; otherwise what recording an operation fails with (lost ownership,
/// cancellation, database).
pub async fn patch(name: &str) -> Result<bool> {
    let ctx = in_workflow("patch", name)?;
    let marker = marker(name);
    match ctx.peek_next() {
        // Another operation there: the execution passed this point under the old code.
        Some(recorded) if recorded != marker => return Ok(false),
        // Replaying a finished execution that ended here: it ran the old code (had it run
        // the new one, the marker would be recorded).
        None if ctx.replay_mode().is_some_and(|r| r.complete()) => return Ok(false),
        _ => {}
    }
    match ctx.begin(&marker)? {
        Slot::Recorded { .. } => Ok(true),
        Slot::Fresh { function_id } => {
            let op = Operation::new(function_id, &marker, now_ms());
            // `Some`: another execution recorded the marker first (same name, so the same
            // decision).
            ctx.record(op).await?;
            Ok(true)
        }
    }
}

/// The step after [`patch`], once every execution that could take the old branch is gone:
/// consumes the marker where an execution recorded one (so its later step ids still line up)
/// and records nothing otherwise. Always `true`, so `if patch(..)` can become
/// `if deprecate_patch(..)` before the branch is removed.
///
/// # Errors
/// As [`patch`].
pub async fn deprecate_patch(name: &str) -> Result<bool> {
    let ctx = in_workflow("deprecate_patch", name)?;
    let marker = marker(name);
    if ctx.peek_next().as_deref() == Some(marker.as_str()) {
        ctx.begin(&marker)?;
    }
    Ok(true)
}

fn in_workflow(
    what: &str,
    name: &str,
) -> Result<std::sync::Arc<crate::workflow::context::WorkflowContext>> {
    if name.is_empty() {
        return Err(Error::invalid(format!(
            "`{what}` was given an empty patch name: name each patch (e.g. \"charge-v2\"), the name is recorded \
             as `DBOS.patch-<name>`"
        )));
    }
    current().ok_or_else(|| {
        Error::invalid(format!(
            "`{what}(\"{name}\")` was called outside a workflow: a patch decides between a workflow's old and new \
             code from its recorded history, so call it in a #[workflow] body (not in a step)"
        ))
    })
}
