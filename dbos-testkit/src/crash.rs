//! Crash harnesses: kill an executor abruptly and bring it back.
//!
//! - [`IsolatedRuntime`]: a tokio runtime on its own thread. [`IsolatedRuntime::abort`] drops
//!   it with everything on it — no graceful shutdown, no destructors awaited, connections
//!   cut — which is what a crash looks like to the database.
//! - [`ChildProcess`]: a real OS process, killed with `SIGKILL`.
//! - [`run_then_kill`]: an executor launched on an isolated runtime, given work, and killed
//!   once the test says the work reached the point to crash at.

use std::future::Future;
use std::process::Stdio;
use std::time::Duration;

/// A tokio runtime on a dedicated thread, abortable at any instant.
#[derive(Debug)]
pub struct IsolatedRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl IsolatedRuntime {
    /// A new two-worker runtime.
    ///
    /// # Panics
    /// When the runtime cannot be built.
    pub fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("dbos-testkit: cannot build an isolated runtime");
        IsolatedRuntime {
            runtime: Some(runtime),
        }
    }

    /// Spawns `future` on the isolated runtime.
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .as_ref()
            .expect("runtime present until abort")
            .spawn(future)
    }

    /// Runs `future` on the isolated runtime and waits for it from the calling (async) test.
    ///
    /// # Panics
    /// When the future panics.
    pub async fn run<F>(&self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn(future)
            .await
            .expect("dbos-testkit: task on the isolated runtime panicked")
    }

    /// Kills the runtime abruptly: every task is dropped at its current await point, and
    /// its connections close. Nothing graceful happens.
    pub fn abort(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Default for IsolatedRuntime {
    fn default() -> Self {
        IsolatedRuntime::new()
    }
}

impl Drop for IsolatedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A child OS process under test.
#[derive(Debug)]
pub struct ChildProcess {
    child: tokio::process::Child,
}

impl ChildProcess {
    /// Spawns `program` with `args` and extra environment, output inherited (shown on failure).
    ///
    /// # Panics
    /// When the program cannot be started.
    pub fn spawn(program: &str, args: &[&str], env: &[(&str, &str)]) -> ChildProcess {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("dbos-testkit: cannot start {program}: {e}"));
        ChildProcess { child }
    }

    /// Runs this test binary again as a child process that runs only the test named `test`
    /// (its exact name, ignored or not), one thread, output shown, with extra environment.
    ///
    /// This is how a test starts other executor processes: the child's test is usually
    /// `#[ignore]`d (so an ordinary run skips it) and does its part only when the environment
    /// given here is set.
    ///
    /// ```no_run
    /// # use dbos_testkit::crash::ChildProcess;
    /// # async fn demo(url: &str) {
    /// // Runs `fn executor_process()` of this binary with `EXECUTOR_URL` set.
    /// let child = ChildProcess::spawn_test("executor_process", &[("EXECUTOR_URL", url)]);
    /// // ... let it work, then kill it mid-work:
    /// child.kill9().await;
    /// # }
    /// ```
    ///
    /// # Panics
    /// When this binary's path is not known or not UTF-8, or it cannot be started.
    pub fn spawn_test(test: &str, env: &[(&str, &str)]) -> ChildProcess {
        let exe = std::env::current_exe().expect("dbos-testkit: the path of this test binary");
        let exe = exe
            .to_str()
            .expect("dbos-testkit: the test binary's path is not UTF-8");
        ChildProcess::spawn(
            exe,
            &[
                "--exact",
                test,
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ],
            env,
        )
    }

    /// The process id.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends `SIGKILL` and reaps the process.
    pub async fn kill9(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        let _ = self.child.wait().await;
    }

    /// Waits for the process to exit by itself, up to `timeout`, returning its exit code.
    ///
    /// # Panics
    /// On timeout (the process is killed first).
    pub async fn wait(mut self, timeout: Duration) -> Option<i32> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.ok().and_then(|s| s.code()),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!("dbos-testkit: the child process did not exit within {timeout:?}");
            }
        }
    }
}

/// Polls `check` every 20 ms until it returns `Some`, up to `timeout`.
///
/// # Panics
/// On timeout, with `what` in the message.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dbos-testkit: timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An executor killed mid-work: launches `config` on a fresh [`IsolatedRuntime`], runs
/// `work` with the launched runtime (start the workflows there), waits (up to 10 s) until
/// `reached()` holds (typically a counter bumped by the step that hangs), then kills the
/// runtime as [`IsolatedRuntime::abort`] does. Relaunch with the same `config` (its
/// executor id pinned) to recover the work.
///
/// ```no_run
/// # use std::sync::atomic::{AtomicU32, Ordering};
/// # use dbos_core::{workflow, Config, Dbos, Error};
/// # static REACHED: AtomicU32 = AtomicU32::new(0);
/// # #[workflow] async fn job() -> Result<(), Error> { Ok(()) }
/// # async fn demo(config: Config) {
/// dbos_testkit::crash::run_then_kill(
///     config.clone(),
///     |dbos| async move {
///         job().id("job-1").on(&dbos).start().await.unwrap();
///     },
///     "the job to reach its hanging step",
///     || REACHED.load(Ordering::SeqCst) == 1,
/// )
/// .await;
/// let dbos = Dbos::launch(config).await.unwrap(); // recovers job-1
/// # let _ = dbos; }
/// # let _ = demo;
/// ```
///
/// # Panics
/// When the launch fails, `work` panics, or `reached` does not hold within 10 s.
pub async fn run_then_kill<W, WF>(
    config: dbos_core::Config,
    work: W,
    what: &str,
    reached: impl Fn() -> bool,
) where
    W: FnOnce(dbos_core::Dbos) -> WF + Send + 'static,
    WF: Future<Output = ()> + Send + 'static,
{
    let doomed = IsolatedRuntime::new();
    doomed
        .run(async move {
            let dbos = dbos_core::Dbos::launch(config).await.unwrap_or_else(|e| {
                panic!("dbos-testkit: the doomed executor did not launch: {e}")
            });
            work(dbos).await;
        })
        .await;
    eventually(what, Duration::from_secs(10), || async {
        reached().then_some(())
    })
    .await;
    doomed.abort();
}

/// Gives the process `cmd` starts the default SIGINT disposition, as a terminal would, so a
/// test's Ctrl-C (`kill -INT`) reaches it: a test run started in the background by a
/// non-interactive shell inherits SIGINT ignored, and so would the child.
pub fn interruptible(cmd: &mut tokio::process::Command) -> &mut tokio::process::Command {
    // SAFETY: only async-signal-safe `signal` runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd
}
