//! Log lines written by the code under test, captured so a test can assert on them.
//!
//! ```
//! use tracing::instrument::WithSubscriber;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let logs = dbos_testkit::logs::CapturedLogs::default();
//! async { tracing::warn!("queue `q` is not registered") }
//!     .with_subscriber(logs.subscriber("warn"))
//!     .await;
//! assert_eq!(logs.lines_with("WARN", "not registered").len(), 1);
//! # }
//! ```

use std::sync::{Arc, Mutex, PoisonError};

/// A shared buffer that `tracing` subscribers made by [`CapturedLogs::subscriber`] or
/// [`CapturedLogs::runtime`] write their lines into (plain text, no colour codes).
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl std::fmt::Debug for CapturedLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapturedLogs")
            .field("bytes", &self.bytes().len())
            .finish()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A subscriber that writes here what `filter` wants (an `EnvFilter` directive:
    /// `"warn"`, `"info,dbos_core::recovery=debug"`). Use it with `with_subscriber` on a
    /// future, or `tracing::subscriber::with_default`.
    pub fn subscriber(&self, filter: &str) -> impl tracing::Subscriber + Send + Sync {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish()
    }

    /// A two-thread runtime whose threads log here what `filter` wants: for code whose
    /// background tasks (an executor's recovery loop, its queue workers) do not run in the
    /// test's subscriber scope; launch the executor on this runtime.
    pub fn runtime(&self, filter: &str) -> tokio::runtime::Runtime {
        let logs = self.clone();
        let filter = filter.to_owned();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                // For the thread's life.
                std::mem::forget(tracing::subscriber::set_default(logs.subscriber(&filter)));
            })
            .build()
            .expect("a runtime for captured logs")
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// Everything captured so far, taken out (the next read starts empty).
    pub fn take(&self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut *self.bytes())).into_owned()
    }

    /// The lines captured so far that contain both `level` (`"WARN"`, `"INFO"`...) and
    /// `text`.
    pub fn lines_with(&self, level: &str, text: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(level) && l.contains(text))
            .map(str::to_owned)
            .collect()
    }
}
