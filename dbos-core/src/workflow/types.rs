//! The bounds workflow and step values must meet, and the conversion of errors to and from
//! their portable form.

use std::fmt::Display;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::PortableError;
use crate::error::{Error, ErrorKind};

/// A value that can be stored durably: workflow arguments and outputs, step outputs.
///
/// Implemented for every `Serialize + DeserializeOwned + Send + 'static` type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored durably: workflow arguments and outputs, and step outputs, must implement `serde::Serialize` and `serde::de::DeserializeOwned`",
    label = "not storable in the system database",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to the type; the value is recorded as JSON so a recovered run can replay it"
)]
pub trait Portable: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Portable for T {}

/// The error type of a workflow or step.
///
/// It must be storable (its value is recorded, and a replay returns the same value), have a
/// message (`Display`, recorded as the portable error's `message`), and be constructible from
/// [`dbos_core::Error`](crate::Error), so a durability failure inside the workflow (the
/// database went away, the workflow was cancelled) can travel through the user's `?`.
///
/// `dbos_core::Error` itself qualifies. A typical application error:
///
/// ```
/// #[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
/// enum ShopError {
///     #[error("card declined: {0}")]
///     Declined(String),
///     #[error("durability: {0}")]
///     Dbos(String),
/// }
///
/// impl From<dbos_core::Error> for ShopError {
///     fn from(e: dbos_core::Error) -> Self {
///         ShopError::Dbos(e.to_string())
///     }
/// }
///
/// fn assert_workflow_error<E: dbos_core::WorkflowError>() {}
/// assert_workflow_error::<ShopError>();
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a workflow or step error",
    label = "needs `From<dbos_core::Error>`, `Display`, `Serialize` and `DeserializeOwned`",
    note = "the error is recorded (so replays return the same value) and durability failures are converted into it with `From<dbos_core::Error>`"
)]
pub trait WorkflowError: From<Error> + Portable + Display {}

impl<E: From<Error> + Portable + Display> WorkflowError for E {}

/// The portable form of a typed error: `name` is the type's name, `message` its `Display`,
/// `data` the serialized value (so a replay restores the same value).
pub(crate) fn error_to_portable<E: WorkflowError>(e: &E) -> PortableError {
    let type_name = std::any::type_name::<E>();
    let name = type_name
        .rsplit("::")
        .next()
        .unwrap_or(type_name)
        .to_owned();
    let data = match serde_json::to_value(e) {
        Ok(v) => Some(v),
        Err(err) => {
            tracing::warn!(error = %err, "could not serialize a {name} error value; recording its message only");
            None
        }
    };
    PortableError {
        name,
        message: e.to_string(),
        code: None,
        data,
    }
}

/// Rebuilds a typed error from its portable form: from `data` when it decodes as `E`, else
/// (an error recorded by another language, or by an older shape of `E`) as
/// `E::from(dbos_core::Error)` of kind [`ErrorKind::WorkflowFailed`] carrying the portable error.
pub(crate) fn error_from_portable<E: WorkflowError>(p: PortableError) -> E {
    if let Some(data) = &p.data {
        if let Ok(e) = serde_json::from_value::<E>(data.clone()) {
            return e;
        }
    }
    // An error of this library (a step output that could not be stored, an awaited child
    // that was cancelled) or one of DBOS's that has a kind here (a step timeout): the same
    // kind and message as when it was first returned.
    if let Some(kind) = ErrorKind::from_recorded_name(&p.name) {
        return E::from(Error::new(kind, p.message.clone()).with_portable(p));
    }
    E::from(
        Error::new(
            ErrorKind::WorkflowFailed,
            format!("{}: {}", p.name, p.message),
        )
        .with_portable(p),
    )
}

impl Serialize for Error {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let portable = match self.portable() {
            Some(p) => p.clone(),
            None => PortableError {
                name: format!("dbos_core::Error::{:?}", self.kind()),
                message: self.message().to_owned(),
                code: self.kind().dbos_code().map(serde_json::Value::from),
                data: None,
            },
        };
        portable.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Error {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let p = PortableError::deserialize(deserializer)?;
        if let Some(kind) = ErrorKind::from_recorded_name(&p.name) {
            // DBOS's own errors keep their recorded form, so they are stored again as DBOS
            // wrote them.
            return Ok(match p.name.starts_with("dbos_core::Error::") {
                true => Error::new(kind, p.message),
                false => Error::new(kind, p.message.clone()).with_portable(p),
            });
        }
        Ok(Error::new(
            ErrorKind::WorkflowFailed,
            format!("{}: {}", p.name, p.message),
        )
        .with_portable(p))
    }
}
