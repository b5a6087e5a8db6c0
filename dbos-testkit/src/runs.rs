//! Counting how often code ran, outside the database: the evidence durability tests assert
//! on ("step 3 ran twice, every other step once").
//!
//! One map per test process, keyed by a string the test makes unique (usually the workflow
//! id and the step's name).
//!
//! ```
//! use dbos_testkit::runs::{bump, runs};
//!
//! assert_eq!(bump("order-1/charge"), 1);
//! assert_eq!(bump("order-1/charge"), 2);
//! assert_eq!(runs("order-1/charge"), 2);
//! assert_eq!(runs("order-1/ship"), 0);
//! ```

use std::collections::HashMap;
use std::sync::Mutex;

static RUNS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut HashMap<String, u32>) -> T) -> T {
    // A test that panicked while holding the lock must not hide the next one's counts.
    let mut guard = RUNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// Counts one run of `key`; returns how many there have been, this one included.
pub fn bump(key: &str) -> u32 {
    with(|m| {
        let n = m.entry(key.to_owned()).or_default();
        *n += 1;
        *n
    })
}

/// How many times `key` ran.
pub fn runs(key: &str) -> u32 {
    with(|m| m.get(key).copied().unwrap_or(0))
}

/// Counts one run of `<key>/dropped` when dropped before [`finish`](Self::finish): the
/// evidence that a future was dropped part-way (a step attempt abandoned at its timeout, or
/// preempted by a cancel) rather than left running.
///
/// ```
/// use dbos_testkit::runs::{runs, Unfinished};
///
/// drop(Unfinished::new("doc/abandoned"));
/// Unfinished::new("doc/completed").finish();
/// assert_eq!(runs("doc/abandoned/dropped"), 1);
/// assert_eq!(runs("doc/completed/dropped"), 0);
/// ```
#[derive(Debug)]
pub struct Unfinished {
    key: Option<String>,
}

impl Unfinished {
    /// A guard for `key`.
    pub fn new(key: impl Into<String>) -> Self {
        Unfinished {
            key: Some(key.into()),
        }
    }

    /// The guarded work reached its end: dropping counts nothing.
    pub fn finish(mut self) {
        self.key = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            bump(&format!("{key}/dropped"));
        }
    }
}
