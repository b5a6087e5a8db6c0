//! The one error type of the library.
//!
//! Every fallible function returns [`Result<T>`](crate::Result), whose error is [`Error`].
//! Match on [`Error::kind`] to react to a class of failure; read the `Display` text for what
//! went wrong and what to do about it.

use std::fmt;

/// A boxed error usable as a [`std::error::Error::source`].
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What class of failure an [`Error`] is.
///
/// The workflow-related kinds mirror the error codes of the other DBOS SDKs so that an error
/// means the same thing in every language sharing a system database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is invalid (a bad URL, application name, option value...).
    Config,
    /// The system database could not be reached or a connection broke. Usually transient.
    Connection,
    /// The TLS handshake with the system database failed: the server's certificate is not
    /// signed by a trusted root (`sslrootcert`), does not name the host (`sslmode=verify-full`),
    /// has expired, or the two sides share no protocol. Not transient: retrying cannot fix it.
    Tls,
    /// A statement failed in the system database.
    Database,
    /// The system database schema is missing, foreign, too old or otherwise unusable.
    Schema,
    /// The embedded local Postgres could not be found, initialised or started.
    LocalPostgres,
    /// A value could not be encoded or decoded (JSON, portable error, unknown codec).
    Serialization,
    /// A workflow with this id exists already and was started by a different function.
    ConflictingWorkflow,
    /// This execution lost ownership of the workflow to another execution.
    ConflictingWorkflowId,
    /// No workflow with the given id exists.
    NonExistentWorkflow,
    /// No registered workflow has the given name.
    WorkflowFunctionNotFound,
    /// Two workflows were registered under one name.
    ConflictingRegistration,
    /// The workflow was cancelled.
    WorkflowCancelled,
    /// The recorded history does not match the code (a different operation at a step id).
    UnexpectedStep,
    /// The awaited workflow was cancelled.
    AwaitedWorkflowCancelled,
    /// The workflow was recovered more times than it allows and was moved to the dead-letter state.
    MaxRecoveryAttemptsExceeded,
    /// The workflow failed with an error of its own (see [`Error::portable`]).
    WorkflowFailed,
    /// The awaited workflow did not finish before its deadline and was cancelled.
    Timeout,
    /// The queue already holds an active workflow with this deduplication id.
    QueueDeduplicated,
    /// The runtime is not launched, or is shutting down.
    NotLaunched,
    /// A file system or process error.
    Io,
    /// An argument or option is invalid (a blank workflow id, a queue option that no
    /// executor could honour...). Nothing was written.
    InvalidArgument,
    /// The workflow's execution panicked in this process. Its row stays `PENDING` and is
    /// recovered like a crashed execution.
    ExecutionPanicked,
    /// A fork or rewind named a step beyond the workflow's recorded history; the error's
    /// [`step_id`](Error::step_id) and [`step_name`](Error::step_name) are the last recorded
    /// step.
    NoSuchStep,
    /// No schedule has the given name.
    ScheduleNotFound,
    /// A schedule with this name exists already (or belongs to another application).
    /// Nothing was written.
    ConflictingSchedule,
    /// A step attempt ran past its `timeout` and was abandoned; recorded as DBOS's
    /// `DBOSStepTimeoutError` (code 18) when it was the step's last attempt.
    StepTimeout,
    /// A start with [`IdReusePolicy::Reject`](crate::IdReusePolicy::Reject) found its
    /// workflow id in use (DBOS's `DBOSWorkflowIDInUseError`, code 27). Nothing was written.
    WorkflowIdInUse,
    /// A workflow with `required_roles` was started without an authenticated role among
    /// them (DBOS's `DBOSNotAuthorizedError`, code 8). Nothing was written.
    NotAuthorized,
}

impl ErrorKind {
    const ALL: &'static [ErrorKind] = &[
        ErrorKind::Config,
        ErrorKind::Connection,
        ErrorKind::Tls,
        ErrorKind::Database,
        ErrorKind::Schema,
        ErrorKind::LocalPostgres,
        ErrorKind::Serialization,
        ErrorKind::ConflictingWorkflow,
        ErrorKind::ConflictingWorkflowId,
        ErrorKind::NonExistentWorkflow,
        ErrorKind::WorkflowFunctionNotFound,
        ErrorKind::ConflictingRegistration,
        ErrorKind::WorkflowCancelled,
        ErrorKind::UnexpectedStep,
        ErrorKind::AwaitedWorkflowCancelled,
        ErrorKind::MaxRecoveryAttemptsExceeded,
        ErrorKind::WorkflowFailed,
        ErrorKind::Timeout,
        ErrorKind::QueueDeduplicated,
        ErrorKind::NotLaunched,
        ErrorKind::Io,
        ErrorKind::InvalidArgument,
        ErrorKind::ExecutionPanicked,
        ErrorKind::NoSuchStep,
        ErrorKind::ScheduleNotFound,
        ErrorKind::ConflictingSchedule,
        ErrorKind::StepTimeout,
        ErrorKind::WorkflowIdInUse,
        ErrorKind::NotAuthorized,
    ];

    /// DBOS's names of its errors that have a kind here, as DBOS Python records them in a
    /// portable error's `name`.
    const DBOS_NAMES: &'static [(&'static str, ErrorKind)] = &[
        ("DBOSStepTimeoutError", ErrorKind::StepTimeout),
        ("DBOSWorkflowIDInUseError", ErrorKind::WorkflowIdInUse),
        ("DBOSNotAuthorizedError", ErrorKind::NotAuthorized),
    ];

    /// The kind whose `Debug` name is `name` (the inverse of `format!("{kind:?}")`).
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        Self::ALL.iter().copied().find(|k| format!("{k:?}") == name)
    }

    /// The kind of a recorded portable error's `name`: ours (`dbos_core::Error::<Kind>`) or
    /// one of DBOS's own (`DBOSStepTimeoutError`, ...), so an error recorded by either
    /// decodes to the same kind.
    pub(crate) fn from_recorded_name(name: &str) -> Option<ErrorKind> {
        if let Some(kind) = name.strip_prefix("dbos_core::Error::") {
            return Self::from_name(kind);
        }
        Self::DBOS_NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
    }

    /// The numeric code DBOS Python uses for this kind, where one exists.
    pub fn dbos_code(self) -> Option<i64> {
        Some(match self {
            ErrorKind::ConflictingWorkflowId => 1,
            ErrorKind::Config | ErrorKind::Schema | ErrorKind::LocalPostgres => 3,
            ErrorKind::WorkflowFunctionNotFound => 4,
            ErrorKind::NonExistentWorkflow => 5,
            ErrorKind::MaxRecoveryAttemptsExceeded => 6,
            ErrorKind::NotAuthorized => 8,
            ErrorKind::ConflictingWorkflow => 9,
            ErrorKind::WorkflowCancelled => 10,
            ErrorKind::UnexpectedStep => 11,
            ErrorKind::QueueDeduplicated => 12,
            ErrorKind::AwaitedWorkflowCancelled => 13,
            ErrorKind::StepTimeout => 18,
            ErrorKind::ConflictingRegistration => 25,
            ErrorKind::WorkflowIdInUse => 27,
            _ => return None,
        })
    }
}

/// The library's error: a [`kind`](Error::kind), a message that says what was wrong and what
/// to do, optional workflow context, and the underlying cause as [`source`](std::error::Error::source).
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    workflow_id: Option<String>,
    step_name: Option<String>,
    step_id: Option<i32>,
    portable: Option<crate::codec::PortableError>,
    source: Option<BoxError>,
}

impl Error {
    /// Creates an error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                workflow_id: None,
                step_name: None,
                step_id: None,
                portable: None,
                source: None,
            }),
        }
    }

    /// Attaches the underlying cause.
    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// Attaches the workflow the error happened in.
    pub fn with_workflow_id(mut self, id: impl Into<String>) -> Self {
        self.inner.workflow_id = Some(id.into());
        self
    }

    /// Attaches the step (name and id) the error happened in.
    pub fn with_step(mut self, name: impl Into<String>, id: i32) -> Self {
        self.inner.step_name = Some(name.into());
        self.inner.step_id = Some(id);
        self
    }

    /// Attaches the portable form of an application error.
    pub fn with_portable(mut self, portable: crate::codec::PortableError) -> Self {
        self.inner.portable = Some(portable);
        self
    }

    /// What class of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The message, without the source chain.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The workflow the error happened in, if known.
    pub fn workflow_id(&self) -> Option<&str> {
        self.inner.workflow_id.as_deref()
    }

    /// The step name the error happened in, if known.
    pub fn step_name(&self) -> Option<&str> {
        self.inner.step_name.as_deref()
    }

    /// The step id (function id) the error happened in, if known.
    pub fn step_id(&self) -> Option<i32> {
        self.inner.step_id
    }

    /// The portable error (`{"name","message","code","data"}`) behind a
    /// [`WorkflowFailed`](ErrorKind::WorkflowFailed) error, including errors recorded by
    /// workflows written in other languages.
    pub fn portable(&self) -> Option<&crate::codec::PortableError> {
        self.inner.portable.as_ref()
    }

    /// The same error (kind, message, workflow and step) without its source, for handing
    /// one failure to several waiters.
    pub(crate) fn duplicate(&self) -> Error {
        let mut c = Error::new(self.kind(), self.message());
        if let Some(id) = self.workflow_id() {
            c = c.with_workflow_id(id);
        }
        if let (Some(name), Some(id)) = (self.step_name(), self.step_id()) {
            c = c.with_step(name, id);
        }
        c
    }

    /// Whether retrying the same operation later may succeed (connection problems).
    pub fn is_transient(&self) -> bool {
        self.inner.kind == ErrorKind::Connection
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        let context = context.into();
        Error::new(ErrorKind::Io, format!("{context}: {source}")).with_source(source)
    }

    /// Classifies a tokio-postgres error: a failed TLS handshake is [`ErrorKind::Tls`],
    /// connection failures are [`ErrorKind::Connection`], everything else
    /// [`ErrorKind::Database`]. The message includes the server's message, detail and
    /// SQLSTATE, or for TLS what was wrong and which URL parameter fixes it.
    pub(crate) fn db(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        let context = context.into();
        if let Some(tls) = tls_failure(&source) {
            let message = format!(
                "{context}: the TLS handshake failed: {tls}. {}",
                tls_advice(tls)
            );
            return Error::new(ErrorKind::Tls, message).with_source(source);
        }
        let kind = classify(&source);
        let detail = match source.as_db_error() {
            Some(db) => {
                let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
                if let Some(d) = db.detail() {
                    s.push_str(": ");
                    s.push_str(d);
                }
                s
            }
            None => chain_text(&source),
        };
        Error::new(kind, format!("{context}: {detail}")).with_source(source)
    }

    /// The causes in this error's [`source`](std::error::Error::source) chain that its
    /// message does not already say, outermost first: what `{:?}` lists under "Caused by"
    /// (a driver's bare labels, such as tokio-postgres' "db error", are left out). A
    /// one-line report is the message followed by these.
    pub fn causes(&self) -> Vec<String> {
        let mut said = self.inner.message.clone();
        let mut causes = Vec::new();
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            if let Some(text) = cause_text(cause) {
                if !text.trim().is_empty() && !already_said(&said, &text) {
                    said.push_str(&text);
                    causes.push(text);
                }
            }
            next = cause.source();
        }
        causes
    }

    /// The SQLSTATE of the underlying database error, if there is one.
    pub fn sqlstate(&self) -> Option<&str> {
        let source = self.inner.source.as_ref()?;
        let pg = source.downcast_ref::<tokio_postgres::Error>()?;
        Some(pg.code()?.code())
    }
}

/// The rustls error behind a failed TLS handshake, if that is what `e` is: found in the error's
/// source chain, as itself or inside the `io::Error` the TLS stream wraps it in (whose
/// `source()` skips the wrapped error, hence the `get_ref`).
pub(crate) fn tls_failure(e: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return Some(tls);
            }
        }
        next = err.source();
    }
    None
}

/// What to do about a failed TLS handshake.
fn tls_advice(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "The server's certificate does not name the host in the URL (sslmode=verify-full checks it): \
             connect through a host name the certificate names, or use sslmode=verify-ca to check the \
             certificate's chain but not its name"
        }
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => {
            "The server's certificate is outside its validity period: renew it on the server, or check \
             this machine's clock"
        }
        rustls::Error::InvalidCertificate(_) => {
            "The server's certificate is not signed by a root this client trusts: set \
             sslrootcert=/path/to/ca.pem in the URL to the certificate authority that signed it (managed \
             Postgres providers publish theirs), or use sslmode=require to encrypt without checking the \
             certificate"
        }
        _ => {
            "Check the URL's sslmode and sslrootcert against what the server offers; sslmode=disable \
             connects without TLS where the network is trusted"
        }
    }
}

/// The kind of a tokio-postgres error: [`ErrorKind::Tls`] for a refused handshake,
/// [`ErrorKind::Config`] for a password the URL lacks, [`ErrorKind::Connection`] for a
/// connection failure, else [`ErrorKind::Database`].
pub(crate) fn classify(e: &tokio_postgres::Error) -> ErrorKind {
    if tls_failure(e).is_some() {
        ErrorKind::Tls
    } else if is_missing_password(e) {
        ErrorKind::Config
    } else if is_connection_error(e) {
        ErrorKind::Connection
    } else {
        ErrorKind::Database
    }
}

/// Whether the server asked for a password and the URL had none (tokio-postgres reports
/// it as "invalid configuration" caused by "password missing").
pub(crate) fn is_missing_password(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_none()
        && std::error::Error::source(e).is_some_and(|c| c.to_string() == "password missing")
}

/// A tokio-postgres error's text with its causes (its own text is only a label, such as
/// "error connecting to server", that leaves the cause to the chain).
pub(crate) fn chain_text(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Whether a tokio-postgres error means the connection (not the statement) failed.
pub(crate) fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Class 08 connection exception, 53 insufficient resources, 57P01-57P03 shutdown.
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || c.starts_with("53")
                || c == "57P01"
                || c == "57P02"
                || c == "57P03"
        }
        // No SQLSTATE: a connection problem only when the socket failed (an I/O error in the
        // cause chain, a connect or its timeout), unless the TLS handshake refused the server
        // (a certificate problem does not go away by retrying). A row-count, decoding or
        // encoding error is the statement's, and retrying it would repeat it forever.
        None => {
            e.as_db_error().is_none()
                && tls_failure(e).is_none()
                && (io_cause(e) || {
                    let text = e.to_string();
                    text.starts_with("error connecting to server")
                        || text.starts_with("timeout waiting for server")
                        || text.starts_with("error communicating with the server")
                })
        }
    }
}

/// Whether an I/O error is in `e`'s cause chain.
fn io_cause(e: &tokio_postgres::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Whether `said` already says `cause`: as it is, or in other case without the operating
/// system's error number (`Connection refused (os error 111)` after "connection refused").
fn already_said(said: &str, cause: &str) -> bool {
    if said.contains(cause) {
        return true;
    }
    let words = match cause.rfind(" (os error ") {
        Some(at) if cause.ends_with(')') => &cause[..at],
        _ => cause,
    };
    !words.trim().is_empty() && said.to_lowercase().contains(&words.trim().to_lowercase())
}

/// The text a cause adds to an error's report: `None` for tokio-postgres' own error, whose
/// text is only a label ("db error") for the cause that follows it.
fn cause_text(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    if cause.is::<tokio_postgres::Error>() {
        return None;
    }
    if let Some(db) = cause.downcast_ref::<tokio_postgres::error::DbError>() {
        return Some(db.message().to_owned());
    }
    Some(cause.to_string())
}

/// `{:?}` reads like a message, the way `fn main() -> Result<(), Error>` prints it: the
/// `Display` text, then each cause that adds something, as `anyhow` prints a chain:
///
/// ```text
/// could not read the config: permission denied
///
/// Caused by:
///     0: ...
/// ```
///
/// `{:#?}` is the structured form (kind, message, workflow, step, portable error, source).
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !f.alternate() {
            write!(f, "{self}")?;
            match self.causes().as_slice() {
                [] => {}
                [one] => write!(f, "\n\nCaused by:\n    {one}")?,
                many => {
                    f.write_str("\n\nCaused by:")?;
                    for (i, c) in many.iter().enumerate() {
                        write!(f, "\n    {i}: {c}")?;
                    }
                }
            }
            return Ok(());
        }
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        if let Some(id) = &self.inner.workflow_id {
            d.field("workflow_id", id);
        }
        if let Some(name) = &self.inner.step_name {
            d.field("step_name", name);
        }
        if let Some(id) = &self.inner.step_id {
            d.field("step_id", id);
        }
        if let Some(p) = &self.inner.portable {
            d.field("portable", p);
        }
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The source is reachable through `source()`; it is deliberately not repeated here.
        f.write_str(&self.inner.message)?;
        match (
            &self.inner.workflow_id,
            &self.inner.step_name,
            self.inner.step_id,
        ) {
            (Some(wf), Some(step), Some(id)) => write!(f, " (workflow `{wf}`, step {id} `{step}`)"),
            (Some(wf), _, _) => write!(f, " (workflow `{wf}`)"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_statement_s_own_failure_without_a_sqlstate_is_not_a_connection_error() {
        let client = dbos_testkit::cluster().await.connect("postgres").await;
        // A row-count error carries no SQLSTATE: retrying it would repeat it forever.
        let e = client
            .query_one("SELECT 1 WHERE false", &[])
            .await
            .unwrap_err();
        assert!(e.code().is_none());
        assert!(!is_connection_error(&e), "{e}");
        // A refused connection is one.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let refused = tokio_postgres::connect(
            &format!("postgres://u:p@127.0.0.1:{port}/x"),
            tokio_postgres::NoTls,
        )
        .await
        .err()
        .unwrap();
        assert!(is_connection_error(&refused), "{refused}");
    }

    use super::*;

    #[test]
    fn error_is_send_sync_static() {
        fn assert<T: Send + Sync + 'static>() {}
        assert::<Error>();
    }

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_name(&format!("{kind:?}")), Some(*kind));
        }
        assert_eq!(ErrorKind::from_name("Tls"), Some(ErrorKind::Tls));
        assert!(!Error::new(ErrorKind::Tls, "bad certificate").is_transient());
    }

    #[test]
    fn debug_reads_like_a_message_with_its_cause_chain() {
        // A cause the message does not already say is listed under "Caused by".
        let io = std::io::Error::other("disk full");
        let e = Error::new(ErrorKind::Io, "could not write the log").with_source(io);
        assert_eq!(
            format!("{e:?}"),
            "could not write the log\n\nCaused by:\n    disk full"
        );
        // One the message already says is not repeated.
        let e = Error::io(
            "could not read config.toml",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert_eq!(format!("{e:?}"), e.to_string());
        // Workflow context comes with the message; the structure stays reachable.
        let e = Error::new(ErrorKind::UnexpectedStep, "mismatch")
            .with_step("charge", 3)
            .with_workflow_id("wf-1");
        assert_eq!(
            format!("{e:?}"),
            "mismatch (workflow `wf-1`, step 3 `charge`)"
        );
        let structured = format!("{e:#?}");
        assert!(
            structured.contains("kind: UnexpectedStep") && structured.contains("step_id: 3"),
            "{structured}"
        );
        assert_eq!(
            (e.kind(), e.step_id()),
            (ErrorKind::UnexpectedStep, Some(3))
        );
        // Several causes are numbered.
        let inner = Error::new(ErrorKind::Io, "inner").with_source(std::io::Error::other("root"));
        let e = Error::new(ErrorKind::Config, "outer").with_source(inner);
        assert_eq!(
            format!("{e:?}"),
            "outer\n\nCaused by:\n    0: inner\n    1: root"
        );
        assert_eq!(e.causes(), vec!["inner".to_owned(), "root".to_owned()]);
        // The operating system's wording of what the message already says adds nothing.
        let refused = std::io::Error::from_raw_os_error(111);
        assert!(refused.to_string().contains("(os error 111)"), "{refused}");
        let e = Error::new(
            ErrorKind::Connection,
            "could not connect: connection refused: nothing listens on 127.0.0.1:1",
        )
        .with_source(refused);
        assert!(e.causes().is_empty(), "{:?}", e.causes());
        assert_eq!(format!("{e:?}"), e.to_string());
    }

    #[test]
    fn display_has_context_but_not_source() {
        let io = std::io::Error::other("disk full");
        let e = Error::new(ErrorKind::Io, "could not write").with_source(io);
        assert_eq!(e.to_string(), "could not write");
        assert_eq!(
            std::error::Error::source(&e).unwrap().to_string(),
            "disk full"
        );
        let e = Error::new(ErrorKind::UnexpectedStep, "mismatch")
            .with_step("charge", 3)
            .with_workflow_id("wf-1");
        assert_eq!(e.to_string(), "mismatch (workflow `wf-1`, step 3 `charge`)");
    }
}
