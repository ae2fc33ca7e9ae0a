//! File work on core-pinned threads: walking and hashing the synced files, applying received ones.
//!
//! The event loop hands jobs to a [`Pool`] and gets plain results back (paths, counts, digests): no
//! descriptor or handle crosses between the loop and the threads. The functions here are the jobs;
//! they block on the filesystem and are meant to run on the pool, never on the event loop.

pub mod apply;
mod client_keys;
mod confine;
pub mod framework;
mod fsat;
pub mod hash;
pub mod integrity;
pub mod threads;
mod walk;

pub use apply::{apply, ApplyPlan, ApplyPolicy, ApplyReport};
pub use hash::{hash_file, MMAP_THRESHOLD_BYTES};
pub use integrity::{local_integrity, IntegrityCache, IntegrityReport, RACY_MARGIN};
pub use jobs::agents::{AgentEnv, DaemonForwarder};
pub use jobs::dapi::DapiEnv;
pub use runner::{PoolRunner, SyncEnv};
pub use threads::{JobError, JobId, Pool, PoolError};
pub mod jobs;
pub mod runner;
