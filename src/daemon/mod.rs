//! placeholder
pub mod pidfile;
