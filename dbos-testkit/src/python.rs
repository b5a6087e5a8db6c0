//! DBOS Transact Python as an independent peer for interoperability tests.
//!
//! The venv is created by the repository's `scripts/dbos-python-venv.sh` (pinned
//! `dbos==3.4.0`), once per cluster folder, under a lock so parallel tests share it.

use std::path::PathBuf;
use std::process::{Command, Output};

use tokio::sync::OnceCell;

use crate::cluster::cluster_dir;

/// Environment variable choosing the venv folder (CI prepares it before the tests).
pub const ENV_VENV: &str = "DBOS_TESTKIT_VENV";

static VENV_BIN: OnceCell<PathBuf> = OnceCell::const_new();

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/dbos-python-venv.sh")
}

/// The venv's `bin` folder (holding `dbos` and `python`), created on first use.
///
/// # Panics
/// When the venv cannot be created (no python3, no network to PyPI). The panic says how to
/// fix it; these tests never skip silently.
pub async fn venv_bin() -> PathBuf {
    VENV_BIN
        .get_or_init(|| async {
            tokio::task::spawn_blocking(|| {
                let dir = cluster_dir();
                std::fs::create_dir_all(&dir).expect("dbos-testkit: cannot create the testkit folder");
                let venv = std::env::var_os(ENV_VENV).map(PathBuf::from).unwrap_or_else(|| dir.join("venv-dbos"));
                let lock = std::fs::File::create(dir.join("venv.lock")).expect("dbos-testkit: cannot create venv.lock");
                lock.lock().expect("dbos-testkit: cannot lock venv.lock");
                let out = Command::new("bash")
                    .arg(script())
                    .arg(&venv)
                    .output()
                    .expect("dbos-testkit: cannot run scripts/dbos-python-venv.sh");
                assert!(
                    out.status.success(),
                    "dbos-testkit: creating the DBOS Python venv failed (needs python3 with venv and access to PyPI):\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            })
            .await
            .expect("dbos-testkit: venv task panicked")
        })
        .await
        .clone()
}

/// Runs the DBOS CLI (`dbos <args>`) and returns its output.
pub async fn dbos_cli(args: &[&str]) -> Output {
    let bin = venv_bin().await;
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(bin.join("dbos"))
            .args(&args)
            .output()
            .expect("dbos-testkit: cannot run the dbos CLI")
    })
    .await
    .expect("dbos-testkit: CLI task panicked")
}

/// Runs a Python script with the venv's interpreter; `args` are passed as `sys.argv[1:]`.
pub async fn run_python(script: &str, args: &[&str]) -> Output {
    let bin = venv_bin().await;
    let script = script.to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(bin.join("python"))
            .arg("-c")
            .arg(script)
            .args(&args)
            .output()
            .expect("dbos-testkit: cannot run python")
    })
    .await
    .expect("dbos-testkit: python task panicked")
}
