//! Finding the installed Postgres server binaries (`initdb`, `pg_ctl`, `postgres`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, ErrorKind, Result};

/// Environment variable naming the folder holding `initdb` and `pg_ctl`.
pub const ENV_POSTGRES_BIN_DIR: &str = "DBOS_POSTGRES_BIN_DIR";

const REQUIRED: &[&str] = &["initdb", "pg_ctl", "postgres"];

/// Finds a folder holding `initdb`, `pg_ctl` and `postgres`, looking in order at
/// `DBOS_POSTGRES_BIN_DIR`, `PATH`, `pg_config --bindir`, and the usual distribution folders
/// (newest version first).
pub(crate) fn find() -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os(ENV_POSTGRES_BIN_DIR) {
        candidates.push(PathBuf::from(dir));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            // A symlinked `initdb` (e.g. /usr/local/bin) points to the real bin folder.
            match std::fs::canonicalize(dir.join("initdb")) {
                Ok(real) => candidates.extend(real.parent().map(Path::to_path_buf)),
                Err(_) => candidates.push(dir),
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    candidates.extend(versioned_dirs("/usr/lib/postgresql", |v| v.join("bin")));
    candidates.extend(
        versioned_dirs("/usr", |v| v.join("bin"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("pgsql-")),
    );
    for brew in ["/opt/homebrew/opt", "/usr/local/opt"] {
        candidates.extend(
            versioned_dirs(brew, |v| v.join("bin"))
                .into_iter()
                .filter(|p| p.to_string_lossy().contains("postgresql")),
        );
    }
    find_in(&candidates)
}

/// Sub-folders of `root`, newest version first (by the number in their name).
fn versioned_dirs(root: &str, to_bin: impl Fn(&Path) -> PathBuf) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut dirs: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let digits: String = name
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(|c| c.is_ascii_digit())
                .collect();
            (digits.parse().unwrap_or(0), to_bin(&p))
        })
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs.into_iter().map(|(_, p)| p).collect()
}

/// The first candidate holding every required binary, or an error that says what to install.
pub(crate) fn find_in(candidates: &[PathBuf]) -> Result<PathBuf> {
    for dir in candidates {
        if REQUIRED.iter().all(|b| dir.join(b).is_file()) {
            return Ok(dir.clone());
        }
    }
    Err(Error::new(
        ErrorKind::LocalPostgres,
        format!(
            "no Postgres server binaries (initdb, pg_ctl, postgres) were found in {ENV_POSTGRES_BIN_DIR}, PATH, \
             `pg_config --bindir`, /usr/lib/postgresql/<version>/bin or Homebrew's opt/postgresql@<version>/bin. \
             Install the Postgres server package (Debian/Ubuntu: `apt-get install postgresql`; Fedora: \
             `dnf install postgresql-server`; macOS: `brew install postgresql@16`), set {ENV_POSTGRES_BIN_DIR} to \
             its bin folder, or set DBOS_SYSTEM_DATABASE_URL to use a Postgres you already run"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_name_the_package_and_the_variable() {
        let empty = std::env::temp_dir().join(format!("dbos-no-pg-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let e = find_in(std::slice::from_ref(&empty)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LocalPostgres);
        let msg = e.to_string();
        assert!(msg.contains("apt-get install postgresql"), "{msg}");
        assert!(msg.contains("DBOS_SYSTEM_DATABASE_URL"), "{msg}");
        std::fs::remove_dir_all(empty).unwrap();
    }

    #[test]
    fn finds_a_folder_with_all_three() {
        let dir = std::env::temp_dir().join(format!("dbos-fake-pg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for b in REQUIRED {
            std::fs::write(dir.join(b), "").unwrap();
        }
        assert_eq!(
            find_in(&[PathBuf::from("/nonexistent"), dir.clone()]).unwrap(),
            dir
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
