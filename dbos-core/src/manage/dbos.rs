//! The management operations on a launched runtime: the methods shared with a
//! [`Client`](crate::Client) (see `facade`).

use super::Manager;
use crate::runtime::Dbos;

impl Dbos {
    fn manager(&self) -> Manager {
        Manager::of_runtime(self.inner())
    }

    super::facade::management_methods!();
    super::aggregates::aggregate_methods!();
    crate::export::export_methods!();
}
