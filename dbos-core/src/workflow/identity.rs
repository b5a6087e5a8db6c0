//! Who a workflow runs for: the authenticated user, their roles and the role assumed, stored
//! in DBOS's columns (`authenticated_user`, `authenticated_roles`, `assumed_role`), given as
//! start options, inherited by children, and readable inside the workflow (also after a
//! recovery, from its row); and the `required_roles` check of `#[workflow]`.

use crate::error::{Error, ErrorKind, Result};
use crate::workflow::context::{current, current_step};
use crate::workflow::registry::WorkflowDef;

/// The identity a workflow runs under (DBOS's authentication columns). Empty by default.
///
/// ```no_run
/// # #[dbos_core::workflow] async fn refund(_order: u64) -> Result<(), dbos_core::Error> { Ok(()) }
/// # async fn demo() -> Result<(), dbos_core::Error> {
/// refund(42)
///     .authenticated("alice", ["support", "admin"])
///     .await?;
/// // inside `refund`: dbos_core::identity().await?.user() == Some("alice")
/// # Ok(()) }
/// # let _ = demo;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub(crate) user: Option<String>,
    pub(crate) roles: Option<Vec<String>>,
    pub(crate) assumed_role: Option<String>,
}

impl Identity {
    /// The authenticated user (`authenticated_user`).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The user's roles (`authenticated_roles`, a JSON array in the row).
    pub fn roles(&self) -> &[String] {
        self.roles.as_deref().unwrap_or_default()
    }

    /// The role the workflow runs as (`assumed_role`): for a workflow with
    /// `required_roles`, the first of them the user has (as DBOS sets it); else the one
    /// given with [`WorkflowCall::assumed_role`](crate::WorkflowCall::assumed_role), if any.
    pub fn assumed_role(&self) -> Option<&str> {
        self.assumed_role.as_deref()
    }

    /// Whether nothing is set.
    pub(crate) fn is_empty(&self) -> bool {
        self.user.is_none() && self.roles.is_none() && self.assumed_role.is_none()
    }

    /// The roles as DBOS stores them: a JSON array of strings.
    pub(crate) fn roles_json(&self) -> Option<String> {
        self.roles
            .as_ref()
            .map(|r| serde_json::Value::from(r.clone()).to_string())
    }

    /// Refuses what could never authenticate anything: a blank user, an empty role list or
    /// a blank role. Nothing is written before this passes.
    pub(crate) fn check(&self) -> Result<()> {
        if self.user.as_deref().is_some_and(|u| u.trim().is_empty()) {
            return Err(Error::invalid(
                "the authenticated user is blank: give the user's name, or no identity",
            ));
        }
        match &self.roles {
            Some(roles) if roles.is_empty() => {
                return Err(Error::invalid(
                    "the authenticated roles are an empty list: give at least one role, or leave the roles out",
                ))
            }
            Some(roles) if roles.iter().any(|r| r.trim().is_empty()) => {
                return Err(Error::invalid(format!(
                    "the authenticated roles {roles:?} include a blank role: every role must be named"
                )))
            }
            _ => {}
        }
        if self
            .assumed_role
            .as_deref()
            .is_some_and(|r| r.trim().is_empty())
        {
            return Err(Error::invalid(
                "the assumed role is blank: name the role, or leave it out",
            ));
        }
        Ok(())
    }
}

/// The identity the calling workflow runs under (inside one of its steps, the step's
/// workflow's); empty outside a workflow. A workflow started here knows it; a recovered,
/// dequeued or resumed one reads it from its row once.
///
/// # Errors
/// When the row cannot be read.
pub async fn identity() -> Result<Identity> {
    if let Some(ctx) = current() {
        return ctx.identity().await;
    }
    match current_step() {
        Some(step) => Ok(step
            .runtime
            .sysdb
            .workflow_identity(&step.workflow_id)
            .await?
            .unwrap_or_default()),
        None => Ok(Identity::default()),
    }
}

/// The identity a start of `def` records: the one given (`given`), else the calling
/// workflow's (children inherit it); checked, and with `def`'s `required_roles` enforced:
/// the user must have one of them, which becomes the assumed role (unless one was given).
pub(crate) async fn for_start(def: &WorkflowDef, given: Option<Identity>) -> Result<Identity> {
    let identity = match given {
        Some(given) => {
            given.check()?;
            given
        }
        None => match current() {
            Some(ctx) => ctx.identity().await?,
            None => Identity::default(),
        },
    };
    authorize(def, identity)
}

/// The identity a [`Client`](crate::Client) enqueue records: the one given, checked, and,
/// when the workflow's definition is at hand (an enqueue of a typed call), with its
/// `required_roles` enforced as [`for_start`] does. A client is no workflow: nothing is
/// inherited.
pub(crate) fn for_client(def: Option<&WorkflowDef>, given: Option<Identity>) -> Result<Identity> {
    let identity = given.unwrap_or_default();
    identity.check()?;
    match def {
        Some(def) => authorize(def, identity),
        None => Ok(identity),
    }
}

/// Enforces `def`'s `required_roles` on `identity`: the user must have one of them, which
/// becomes the assumed role. Checked at a start here, and (as DBOS checks at every
/// invocation) by an execution that begins from the row: a dequeue, a recovery, or a
/// workflow a [`Client`](crate::Client) enqueued by name without knowing its roles.
pub(crate) fn authorize(def: &WorkflowDef, mut identity: Identity) -> Result<Identity> {
    if def.required_roles.is_empty() {
        return Ok(identity);
    }
    let Some(roles) = &identity.roles else {
        return Err(not_authorized(format!(
            "workflow `{}` requires one of the roles {:?}, but was started without authentication: start it with \
             `.authenticated(user, roles)` (or from a workflow that has them)",
            def.name, def.required_roles
        )));
    };
    let Some(role) = def
        .required_roles
        .iter()
        .find(|required| roles.iter().any(|r| r == *required))
    else {
        return Err(not_authorized(format!(
            "workflow `{}` requires one of the roles {:?}, but user {:?} has only {roles:?}",
            def.name,
            def.required_roles,
            identity.user.as_deref().unwrap_or("(none)")
        )));
    };
    identity.assumed_role = Some((*role).to_owned());
    Ok(identity)
}

fn not_authorized(message: String) -> Error {
    Error::new(ErrorKind::NotAuthorized, message)
}
