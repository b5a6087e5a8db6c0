//! The admin server's errors: a status code and a JSON body `{"error": message, "kind": kind}`
//! (DBOS's admin server answers `{"error": message}`; `kind` is ours).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::{Error, ErrorKind};

/// An answer that is not a success.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: String,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind: kind.to_owned(),
            message: message.into(),
        }
    }

    /// A request body or filter that does not say something meaningful.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidArgument", message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "NotAuthorized", message)
    }
}

/// The status of each kind of library error: the caller's mistakes are 4xx, the rest 500.
fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NonExistentWorkflow | ErrorKind::ScheduleNotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidArgument | ErrorKind::NoSuchStep | ErrorKind::Config => {
            StatusCode::BAD_REQUEST
        }
        ErrorKind::ConflictingWorkflow
        | ErrorKind::ConflictingWorkflowId
        | ErrorKind::WorkflowIdInUse
        | ErrorKind::ConflictingSchedule => StatusCode::CONFLICT,
        ErrorKind::NotAuthorized => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = status_of(e.kind());
        if status.is_server_error() {
            tracing::warn!(error = %e, "admin request failed");
        }
        ApiError {
            status,
            kind: format!("{:?}", e.kind()),
            message: e.message().to_owned(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.message, "kind": self.kind})),
        )
            .into_response()
    }
}
