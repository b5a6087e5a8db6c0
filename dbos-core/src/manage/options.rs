//! Options of fork, rewind and garbage collection.

use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::manage::query::epoch_ms;

fn check_name(what: &str, value: &Option<String>) -> Result<()> {
    match value {
        Some(v) if v.trim().is_empty() => Err(Error::invalid(format!(
            "the {what} is blank: give one, or leave it out for the default"
        ))),
        _ => Ok(()),
    }
}

/// Options of a fork ([`Dbos::fork_workflow`](crate::Dbos::fork_workflow)): the new
/// workflow's id, application version, queue and timeout.
///
/// ```
/// use std::time::Duration;
/// use dbos_core::manage::ForkOptions;
///
/// let options = ForkOptions::new()
///     .workflow_id("order-42-retry")
///     .app_version("v2")
///     .timeout(Duration::from_secs(600));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct ForkOptions {
    pub(crate) workflow_id: Option<String>,
    pub(crate) app_version: Option<String>,
    pub(crate) queue: Option<String>,
    pub(crate) partition_key: Option<String>,
    pub(crate) timeout: Option<Duration>,
    /// (old child id, new child id): copied child starts that name the old child name
    /// the new one in the fork.
    pub(crate) replacement_children: Vec<(String, String)>,
}

impl ForkOptions {
    /// A fork with a generated id, on the internal queue, runnable by any executor of the
    /// latest application version, without a timeout.
    pub fn new() -> Self {
        ForkOptions::default()
    }

    /// The fork's id (default: a random UUID).
    pub fn workflow_id(mut self, id: impl Into<String>) -> Self {
        self.workflow_id = Some(id.into());
        self
    }

    /// Only executors of this application version may run the fork (default: any executor
    /// of the latest version): fork onto a fixed version to re-run with new code.
    pub fn app_version(mut self, version: impl Into<String>) -> Self {
        self.app_version = Some(version.into());
        self
    }

    /// The queue the fork waits on (default: the internal queue, which every executor
    /// serves without limits).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// The fork's partition, when its queue is partitioned.
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Cancels the fork if it has not finished `timeout` after it starts running.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// In the steps the fork copies, a child workflow `old_child` started before the fork's
    /// step becomes `new_child` (DBOS's `replacement_children`): the fork then awaits
    /// `new_child` (say, a fork of the failed child) instead of reusing the old one. Call
    /// once per child to replace.
    ///
    /// ```
    /// use dbos_core::manage::ForkOptions;
    ///
    /// let options = ForkOptions::new().replace_child("order-42-3", "order-42-3-retry");
    /// # let _ = options;
    /// ```
    pub fn replace_child(
        mut self,
        old_child: impl Into<String>,
        new_child: impl Into<String>,
    ) -> Self {
        let old_child = old_child.into();
        self.replacement_children
            .retain(|(old, _)| *old != old_child);
        self.replacement_children
            .push((old_child, new_child.into()));
        self
    }

    pub(crate) fn check(&self) -> Result<()> {
        check_name("fork's workflow id", &self.workflow_id)?;
        check_name("application version", &self.app_version)?;
        check_name("queue name", &self.queue)?;
        check_name("partition key", &self.partition_key)?;
        crate::sysdb::workflows::timeout_ms(self.timeout, "fork")?;
        for (old, new) in &self.replacement_children {
            if old.trim().is_empty() || new.trim().is_empty() {
                return Err(Error::invalid(format!(
                    "a child replacement names a blank workflow id (`{old}` → `{new}`): give both ids"
                )));
            }
        }
        Ok(())
    }
}

/// Options of a rewind ([`Dbos::rewind_workflow`](crate::Dbos::rewind_workflow)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct RewindOptions {
    pub(crate) app_version: Option<String>,
    pub(crate) queue: Option<String>,
    pub(crate) partition_key: Option<String>,
}

impl RewindOptions {
    /// The defaults: same application version, the internal queue.
    pub fn new() -> Self {
        RewindOptions::default()
    }

    /// Runs it on executors of this application version from now on.
    pub fn app_version(mut self, version: impl Into<String>) -> Self {
        self.app_version = Some(version.into());
        self
    }

    /// The queue it waits on (default: the internal queue).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Its partition, when its queue is partitioned.
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    pub(crate) fn check(&self) -> Result<()> {
        check_name("application version", &self.app_version)?;
        check_name("queue name", &self.queue)?;
        check_name("partition key", &self.partition_key)
    }
}

/// What a garbage collection deletes
/// ([`Dbos::garbage_collect`](crate::Dbos::garbage_collect)): finished workflows (`SUCCESS`,
/// `ERROR`, `CANCELLED`, `MAX_RECOVERY_ATTEMPTS_EXCEEDED`) created before a cutoff and/or
/// beyond the newest N, with everything recorded about them, in batches of bounded size,
/// each its own short transaction. Active workflows are never deleted.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use dbos_core::manage::GarbageCollect;
///
/// // Keep a week of history, and at most a million workflows.
/// let gc = GarbageCollect::new()
///     .created_before(SystemTime::now() - Duration::from_secs(7 * 24 * 3600))
///     .keep_newest(1_000_000);
/// # let _ = gc;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct GarbageCollect {
    pub(crate) created_before_ms: Option<i64>,
    pub(crate) keep_newest: Option<u64>,
    pub(crate) batch_size: u32,
}

impl Default for GarbageCollect {
    fn default() -> Self {
        GarbageCollect::new()
    }
}

impl GarbageCollect {
    /// Deletes nothing until given a cutoff or a number to keep; batches of 1,000.
    pub fn new() -> Self {
        GarbageCollect {
            created_before_ms: None,
            keep_newest: None,
            batch_size: 1000,
        }
    }

    /// Deletes finished workflows created before `t`.
    pub fn created_before(mut self, t: SystemTime) -> Self {
        self.created_before_ms = Some(epoch_ms(t));
        self
    }

    /// Deletes finished workflows older than the newest `n` workflows (counting every
    /// status).
    pub fn keep_newest(mut self, n: u64) -> Self {
        self.keep_newest = Some(n);
        self
    }

    /// Workflows deleted per transaction (default 1,000): each batch holds its row locks
    /// only for its own short transaction.
    pub fn batch_size(mut self, n: u32) -> Self {
        self.batch_size = n;
        self
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.created_before_ms.is_none() && self.keep_newest.is_none() {
            return Err(Error::invalid(
                "a garbage collection needs created_before(..) and/or keep_newest(..): without either it would \
                 delete nothing",
            ));
        }
        if self.keep_newest == Some(0) {
            return Err(Error::invalid(
                "keep_newest(0) would delete every finished workflow; to do that give created_before(now), or keep \
                 at least 1",
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid(
                "a batch size of 0 deletes nothing; use at least 1 (default 1000)",
            ));
        }
        Ok(())
    }
}

/// A rename of an application's rows ([`Client::rename_application`](crate::Client::rename_application),
/// `dbos-rs rename-application`): the rows `from` owns, and/or the rows no application
/// owns, become `to`'s.
///
/// ```
/// use dbos_core::manage::RenameApplication;
///
/// let rename = RenameApplication::to("storefront").from("shop").adopt_unclaimed_rows();
/// # let _ = rename;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct RenameApplication {
    pub(crate) from: Option<String>,
    pub(crate) to: String,
    pub(crate) adopt_unclaimed: bool,
    pub(crate) batch_size: u32,
}

impl RenameApplication {
    /// A rename to `new_name` (give [`from`](Self::from) and/or
    /// [`adopt_unclaimed_rows`](Self::adopt_unclaimed_rows)).
    pub fn to(new_name: impl Into<String>) -> Self {
        RenameApplication {
            from: None,
            to: new_name.into(),
            adopt_unclaimed: false,
            batch_size: 1000,
        }
    }

    /// The application's previous name: its rows move.
    pub fn from(mut self, old_name: impl Into<String>) -> Self {
        self.from = Some(old_name.into());
        self
    }

    /// Also move the rows no application owns (`application_name` NULL, as DBOS's SQL
    /// function and older clients write them).
    pub fn adopt_unclaimed_rows(mut self) -> Self {
        self.adopt_unclaimed = true;
        self
    }

    /// Finished workflows and steps re-owned per transaction (default 1,000).
    pub fn batch_size(mut self, n: u32) -> Self {
        self.batch_size = n;
        self
    }

    pub(crate) fn check(&self) -> Result<()> {
        crate::Config::new(self.to.clone())
            .validate()
            .map_err(|e| Error::invalid(e.message().to_owned()))?;
        match &self.from {
            Some(f) if f.trim().is_empty() => {
                return Err(Error::invalid(
                    "the application's previous name is blank: give it, or only adopt unclaimed rows",
                ))
            }
            Some(f) if *f == self.to => {
                return Err(Error::invalid(format!(
                    "application `{f}` already has that name: nothing to rename"
                )))
            }
            None if !self.adopt_unclaimed => {
                return Err(Error::invalid(
                    "nothing to re-own: name the application to rename (from), adopt unclaimed rows, or both",
                ))
            }
            _ => {}
        }
        if self.batch_size == 0 {
            return Err(Error::invalid(
                "a batch size of 0 would move nothing: give a positive batch size",
            ));
        }
        Ok(())
    }
}
