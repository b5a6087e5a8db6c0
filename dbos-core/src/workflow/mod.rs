//! Durable workflows and steps: definitions, the execution context, calls and handles.

pub mod call;
pub(crate) mod context;
pub(crate) mod control;
pub(crate) mod execution;
pub(crate) mod identity;
pub mod ops;
pub(crate) mod parking;
pub mod patch;
pub(crate) mod placement;
pub mod registry;
pub(crate) mod step;
pub mod types;
pub(crate) mod watchdog;
