//! The JSON shapes of DBOS's admin server, built from the management types.
//!
//! A workflow is DBOS's `WorkflowsOutput` (Conductor protocol): PascalCase keys, numbers and
//! times as decimal strings, the input, output and error as text. Where DBOS puts Python's
//! `str()` of a value, this puts JSON text (a string output as itself), which any client can
//! parse. `RecoveryAttempts` is ours (DBOS leaves it out; the dashboard shows it).
//! A step is DBOS's `WorkflowSteps`: snake_case keys, times as strings.

use serde_json::{json, Value};

use crate::manage::{StepInfo, WorkflowInfo};

/// A number as DBOS's admin server sends it: a decimal string, or null.
fn text_of<N: ToString>(n: Option<N>) -> Value {
    n.map_or(Value::Null, |n| Value::String(n.to_string()))
}

/// A decoded value as text: a string as itself, anything else as JSON.
fn as_text(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(s) => Value::String(s.clone()),
        other => Value::String(other.to_string()),
    }
}

/// DBOS's `WorkflowsOutput` for a workflow.
pub(crate) fn workflow(w: &WorkflowInfo) -> Value {
    let dbos = w.to_dbos_json();
    let field = |k: &str| dbos.get(k).map_or(Value::Null, as_text);
    json!({
        "WorkflowUUID": w.workflow_id,
        "Status": w.status.as_str(),
        "WorkflowName": w.name,
        "WorkflowClassName": w.class_name,
        "WorkflowConfigName": w.config_name,
        "AuthenticatedUser": w.authenticated_user,
        "AssumedRole": w.assumed_role,
        "AuthenticatedRoles": w.authenticated_roles.as_ref().map(|r| json!(r).to_string()),
        "Input": field("input"),
        "Output": field("output"),
        "Error": field("error"),
        "CreatedAt": text_of(Some(w.created_at)),
        "UpdatedAt": text_of(Some(w.updated_at)),
        "QueueName": w.queue_name,
        "ApplicationVersion": w.app_version,
        "ExecutorID": w.executor_id,
        "WorkflowTimeoutMS": text_of(w.workflow_timeout_ms),
        "WorkflowDeadlineEpochMS": text_of(w.workflow_deadline_epoch_ms),
        "DeduplicationID": w.deduplication_id,
        "Priority": text_of(Some(w.priority)),
        "QueuePartitionKey": w.queue_partition_key,
        "ForkedFrom": w.forked_from,
        "WasForkedFrom": w.was_forked_from,
        "ParentWorkflowID": w.parent_workflow_id,
        "DequeuedAt": text_of(w.dequeued_at),
        "DelayUntilEpochMS": text_of(w.delay_until_epoch_ms),
        "CompletedAt": text_of(w.completed_at),
        "Attributes": w.attributes.as_ref().map(Value::to_string),
        "ScheduleName": w.schedule_name,
        "ApplicationName": w.application_name,
        "RecoveryAttempts": text_of(Some(w.recovery_attempts)),
    })
}

/// DBOS's `WorkflowSteps` for a recorded operation.
pub(crate) fn step(s: &StepInfo) -> Value {
    let dbos = s.to_dbos_json();
    let field = |k: &str| dbos.get(k).map_or(Value::Null, as_text);
    json!({
        "function_id": s.function_id,
        "function_name": s.function_name,
        "output": field("output"),
        "error": field("error"),
        "child_workflow_id": s.child_workflow_id,
        "started_at_epoch_ms": text_of(s.started_at_epoch_ms),
        "completed_at_epoch_ms": text_of(s.completed_at_epoch_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_text_as_dbos_sends_them() {
        assert_eq!(as_text(&json!("plain")), json!("plain"));
        assert_eq!(as_text(&json!({"a": 1})), json!("{\"a\":1}"));
        assert_eq!(as_text(&json!(7)), json!("7"));
        assert_eq!(as_text(&Value::Null), Value::Null);
        assert_eq!(text_of(Some(12_i64)), json!("12"));
        assert_eq!(text_of::<i64>(None), Value::Null);
    }
}
