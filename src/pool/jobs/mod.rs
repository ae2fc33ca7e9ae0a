//! The work behind each engine job, one file per job kind.

pub mod agents;
pub(super) mod apply_package;
pub(super) mod compare;
pub mod dapi;
pub(super) mod extra_valid;
pub(super) mod files;
pub(super) mod integrity;
pub mod ruleset;
