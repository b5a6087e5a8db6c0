//! Running the server under an unprivileged account when we are root.
//!
//! Postgres refuses to run as root. When this process is root, the server's files are
//! owned by, and its programs run as, the `postgres` account (or `nobody` when there is none).

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::error::{Error, ErrorKind, Result};

/// An account the server runs as.
#[derive(Debug, Clone)]
pub(crate) struct ServerAccount {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// `None` when this process is not root (the server runs as us), else the account to use.
pub(crate) fn server_account() -> Result<Option<ServerAccount>> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Some(account) = lookup(name) {
            return Ok(Some(account));
        }
    }
    Err(Error::new(
        ErrorKind::LocalPostgres,
        "running as root, and Postgres refuses to run as root, but neither a `postgres` nor a `nobody` \
         account exists to run it as. Create one (`useradd --system postgres`), run as another user, \
         or set DBOS_SYSTEM_DATABASE_URL",
    ))
}

fn lookup(name: &str) -> Option<ServerAccount> {
    let c_name = CString::new(name).ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to live, correctly sized storage for the duration of the call.
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some(ServerAccount {
        name: name.to_owned(),
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}

impl ServerAccount {
    /// Gives `path` to the account.
    pub(crate) fn own(&self, path: &Path) -> Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).map_err(|e| {
            Error::io(
                format!(
                    "could not give {} to the `{}` account",
                    path.display(),
                    self.name
                ),
                e,
            )
        })
    }

    /// Makes `command` run as this account.
    pub(crate) fn apply(&self, command: &mut Command) {
        use std::os::unix::process::CommandExt;
        command.uid(self.uid).gid(self.gid);
    }

    /// Whether the account can reach `path` (execute permission on every ancestor folder).
    pub(crate) fn can_reach(&self, path: &Path) -> bool {
        path.ancestors()
            .skip(1)
            .all(|dir| match std::fs::metadata(dir) {
                Ok(meta) => {
                    let mode = meta.mode();
                    if meta.uid() == self.uid {
                        mode & 0o100 != 0
                    } else if meta.gid() == self.gid {
                        mode & 0o010 != 0
                    } else {
                        mode & 0o001 != 0
                    }
                }
                // A folder that does not exist yet is made by us, traversable; any
                // other error (unreadable) counts as unreachable.
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            })
    }
}

/// Runs `account`-aware commands, applying the account when there is one.
pub(crate) fn command(program: &Path, account: Option<&ServerAccount>) -> Command {
    let mut cmd = Command::new(program);
    if let Some(a) = account {
        a.apply(&mut cmd);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_whose_parents_do_not_exist_yet_is_reachable() {
        let Some(account) = lookup("nobody").or_else(|| lookup("postgres")) else {
            return;
        };
        let missing = std::env::temp_dir()
            .join(format!("dbos-reach-{}", std::process::id()))
            .join("not-yet")
            .join("pg");
        assert!(!missing.parent().unwrap().exists());
        assert!(account.can_reach(&missing));
        // A folder only its owner may enter is not reachable by another account.
        let closed = std::env::temp_dir().join(format!("dbos-closed-{}", std::process::id()));
        std::fs::create_dir_all(&closed).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let owner = std::fs::metadata(&closed).unwrap().uid();
        if owner != account.uid {
            assert!(!account.can_reach(&closed.join("pg")));
        }
        std::fs::remove_dir_all(&closed).unwrap();
    }
}
