//! Typed, validated configuration.

mod dialect;
mod error;
mod ossec;

pub use dialect::Dialect;
pub use error::ConfigError;
pub use ossec::{ClusterConfig, NodeType};
