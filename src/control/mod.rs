//! The client side of the local socket: what `cluster_control` and the load tool use.

pub mod client;
pub mod format;
