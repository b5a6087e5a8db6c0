//! Durable workflows and steps: definitions, the execution context, calls and handles.

pub mod call;
pub(crate) mod context;
pub(crate) mod control;
pub(crate) mod execution;
pub mod ops;
pub mod patch;
pub(crate) mod parking;
pub(crate) mod placement;
pub mod registry;
pub(crate) mod step;
pub mod types;
pub(crate) mod watchdog;
