//! DBOS Transact Python as an independent peer for interoperability tests.
//!
//! The venv is created by the repository's `scripts/dbos-python-venv.sh` (pinned
//! `dbos==3.4.0`), once per cluster folder, under a lock so parallel tests share it.
//! [`dbos_cli`] and [`run_python`] run to completion; [`spawn_python`] keeps a script running
//! and talks to it line by line (to hold a lock with DBOS's own code while a test checks us).

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

/// A Python script running in the venv, talked to line by line while it runs: its stdin and
/// stdout are pipes, its stderr goes to the test's output. Killed when dropped.
#[derive(Debug)]
pub struct PythonProcess {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

/// Starts a Python script with the venv's interpreter; `args` are passed as `sys.argv[1:]`.
///
/// # Panics
/// When the interpreter cannot be started.
pub async fn spawn_python(script: &str, args: &[&str]) -> PythonProcess {
    use tokio::io::AsyncBufReadExt;
    let bin = venv_bin().await;
    let mut child = tokio::process::Command::new(bin.join("python"))
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("dbos-testkit: cannot run python");
    let stdin = child.stdin.take();
    let stdout = child
        .stdout
        .take()
        .expect("dbos-testkit: python's stdout is piped");
    PythonProcess {
        child,
        stdin,
        stdout: tokio::io::BufReader::new(stdout).lines(),
    }
}

impl PythonProcess {
    /// The next line the script prints, waiting up to `timeout`.
    ///
    /// # Panics
    /// On timeout, or when the script exits first (its stderr is in the test output).
    pub async fn read_line(&mut self, timeout: std::time::Duration) -> String {
        match tokio::time::timeout(timeout, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => {
                panic!("dbos-testkit: the python script exited without printing a line")
            }
            Ok(Err(e)) => panic!("dbos-testkit: cannot read python's output: {e}"),
            Err(_) => panic!("dbos-testkit: python printed nothing within {timeout:?}"),
        }
    }

    /// Writes one line to the script's stdin.
    ///
    /// # Panics
    /// When the script has closed its stdin (it exited).
    pub async fn write_line(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        let stdin = self
            .stdin
            .as_mut()
            .expect("dbos-testkit: python's stdin is open until wait()");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("dbos-testkit: cannot write to python");
        stdin
            .flush()
            .await
            .expect("dbos-testkit: cannot write to python");
    }

    /// Closes stdin and waits up to `timeout` for the script to exit; returns whether it
    /// exited successfully.
    ///
    /// # Panics
    /// On timeout (the script is killed first).
    pub async fn wait(mut self, timeout: std::time::Duration) -> bool {
        drop(self.stdin.take());
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.is_ok_and(|s| s.success()),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!("dbos-testkit: the python script did not exit within {timeout:?}");
            }
        }
    }
}
