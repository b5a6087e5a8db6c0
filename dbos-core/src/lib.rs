#![doc = include_str!("../README.md")]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

pub mod codec;
pub mod config;
pub mod error;
pub mod local_postgres;
pub mod runtime;
pub mod sysdb;

pub use config::Config;
pub use error::{Error, ErrorKind, Result};
pub use runtime::Dbos;
