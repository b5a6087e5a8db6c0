//! The body of `POST /workflows` and `POST /queues`: DBOS's filter keys, and a few of ours
//! (`queue_name`, `executor_id`, `page_after` for keyset pagination), read into a
//! [`ListWorkflows`]. An unknown key, a value of the wrong type, an unknown status or a
//! time that does not parse is a 400 naming it, never an unfiltered listing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::error::ApiError;
use crate::manage::ListWorkflows;
use crate::workflow::call::Status;

/// A value given as one string or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A time given as epoch milliseconds or as an ISO 8601 / RFC 3339 text (DBOS's admin
/// server takes `datetime.isoformat()` text; one without an offset is UTC).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimeArg {
    Ms(i64),
    Text(String),
}

impl TimeArg {
    fn to_time(&self, key: &str) -> Result<SystemTime, ApiError> {
        let ms = match self {
            TimeArg::Ms(ms) => *ms,
            TimeArg::Text(t) => chrono::DateTime::parse_from_rfc3339(t)
                .map(|d| d.timestamp_millis())
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
                        .map(|d| d.and_utc().timestamp_millis())
                })
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "{key} `{t}` is not a time: give epoch milliseconds or ISO 8601 text such as \
                         2026-01-31T12:00:00Z"
                    ))
                })?,
        };
        let offset = Duration::from_millis(ms.unsigned_abs());
        Ok(if ms >= 0 {
            UNIX_EPOCH + offset
        } else {
            UNIX_EPOCH - offset
        })
    }
}

/// Where a page starts: after this row of the previous page (its `CreatedAt` and
/// `WorkflowUUID`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageAfter {
    created_at: i64,
    workflow_id: String,
}

/// The filter keys of a workflow listing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkflowFilter {
    workflow_uuids: Option<Vec<String>>,
    authenticated_user: Option<String>,
    start_time: Option<TimeArg>,
    end_time: Option<TimeArg>,
    status: Option<OneOrMany>,
    application_version: Option<String>,
    forked_from: Option<String>,
    parent_workflow_id: Option<String>,
    workflow_name: Option<OneOrMany>,
    limit: Option<u32>,
    offset: Option<u32>,
    sort_desc: Option<bool>,
    workflow_id_prefix: Option<String>,
    load_input: Option<bool>,
    load_output: Option<bool>,
    queue_name: Option<OneOrMany>,
    executor_id: Option<String>,
    page_after: Option<PageAfter>,
}

/// Reads a JSON body; an empty one is `T::default()`.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the {what} is not valid: {e}")))
}

fn status_of(name: &str) -> Result<Status, ApiError> {
    match Status::parse(name) {
        Status::Other(_) => Err(ApiError::bad_request(format!(
            "unknown status `{name}`: use PENDING, ENQUEUED, DELAYED, SUCCESS, ERROR, CANCELLED or \
             MAX_RECOVERY_ATTEMPTS_EXCEEDED"
        ))),
        known => Ok(known),
    }
}

impl WorkflowFilter {
    /// The listing this filter asks for; `queued` lists only workflows on a queue (DBOS's
    /// `list_queued_workflows`, `POST /queues`). As in DBOS's admin server, inputs and
    /// outputs are left out unless `load_input` / `load_output` ask for them.
    pub(crate) fn into_query(self, queued: bool) -> Result<ListWorkflows, ApiError> {
        let mut q = if queued {
            ListWorkflows::queued()
        } else {
            ListWorkflows::new()
        };
        for id in self.workflow_uuids.unwrap_or_default() {
            q = q.id(id);
        }
        if let Some(user) = self.authenticated_user {
            q = q.user(user);
        }
        if let Some(t) = &self.start_time {
            q = q.created_after(t.to_time("start_time")?);
        }
        if let Some(t) = &self.end_time {
            q = q.created_before(t.to_time("end_time")?);
        }
        for s in self.status.map(OneOrMany::into_vec).unwrap_or_default() {
            q = q.status(status_of(&s)?);
        }
        if let Some(v) = self.application_version {
            q = q.app_version(v);
        }
        if let Some(f) = self.forked_from {
            q = q.forked_from(f);
        }
        if let Some(p) = self.parent_workflow_id {
            q = q.parent(p);
        }
        for n in self
            .workflow_name
            .map(OneOrMany::into_vec)
            .unwrap_or_default()
        {
            q = q.name(n);
        }
        for n in self.queue_name.map(OneOrMany::into_vec).unwrap_or_default() {
            q = q.queue(n);
        }
        if let Some(e) = self.executor_id {
            q = q.executor_id(e);
        }
        if let Some(prefix) = self.workflow_id_prefix {
            q = q.id_prefix(prefix);
        }
        if let Some(n) = self.limit {
            q = q.limit(n);
        }
        if let Some(n) = self.offset {
            q = q.offset(n);
        }
        if self.sort_desc == Some(true) {
            q = q.newest_first();
        }
        if let Some(p) = self.page_after {
            q = q.page_after(p.created_at, p.workflow_id);
        }
        if self.load_input != Some(true) {
            q = q.without_input();
        }
        if self.load_output != Some(true) {
            q = q.without_output();
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(body: &str) -> Result<ListWorkflows, ApiError> {
        parse_body::<WorkflowFilter>(body.as_bytes(), "filter")?.into_query(false)
    }

    #[test]
    fn dbos_keys_become_the_query() {
        let q = query(
            r#"{"status": "ERROR", "workflow_name": ["a", "b"], "limit": 5, "sort_desc": true,
                "workflow_id_prefix": "ord-", "start_time": "2026-01-01T00:00:00Z", "end_time": 1800000000000}"#,
        )
        .unwrap();
        let want = ListWorkflows::new()
            .status(Status::Error)
            .name("a")
            .name("b")
            .id_prefix("ord-")
            .created_after(UNIX_EPOCH + Duration::from_millis(1_767_225_600_000))
            .created_before(UNIX_EPOCH + Duration::from_millis(1_800_000_000_000))
            .limit(5)
            .newest_first()
            .without_input()
            .without_output();
        assert_eq!(q, want);
        assert_eq!(
            query("").unwrap(),
            ListWorkflows::new().without_input().without_output()
        );
        let naive = query(r#"{"start_time": "2026-01-01T00:00:00"}"#).unwrap();
        assert_eq!(
            naive,
            ListWorkflows::new()
                .created_after(UNIX_EPOCH + Duration::from_millis(1_767_225_600_000))
                .without_input()
                .without_output()
        );
    }

    #[test]
    fn malformed_filters_are_refused() {
        for body in [
            "{",
            "[1]",
            r#"{"status": "DONE"}"#,
            r#"{"limit": -1}"#,
            r#"{"limit": "ten"}"#,
            r#"{"start_time": "yesterday"}"#,
            r#"{"workflow_nme": "x"}"#,
            r#"{"page_after": {"created_at": 1}}"#,
        ] {
            assert!(query(body).is_err(), "{body} was accepted");
        }
    }
}
