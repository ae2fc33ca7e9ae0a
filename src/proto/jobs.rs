//! Work the engine hands to the worker pool, and what comes back: plain data only (paths relative to
//! the install root, counts, messages), so the engine stays IO-free and a result can be replayed.

use std::collections::BTreeSet;
use std::sync::Arc;

pub use super::agent_jobs::{AgentJob, AgentOutcome};
pub use super::dapi::{DapiJob, DapiOutcome};

/// Identifies a job; unique per node.
pub type JobId = u64;

/// CPU and file work the engine needs done. A job that opens a received package (`Compare`, `Apply`,
/// `ExtraValid`) consumes it: the package and its unpack directory are gone when the job ends, whatever
/// its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Master: recompute the local-integrity snapshot every worker is compared against.
    LocalIntegrity,
    /// Worker: compute this node's metadata and write it as a metadata-only package at `rel`.
    WorkerPackage { rel: String },
    /// Master: open the worker's package at `rel` and compare it with the snapshot; when they differ,
    /// build the package for `worker` at `out_rel`, compressed size within `zip_limit_bytes`.
    Compare {
        worker: String,
        rel: String,
        out_rel: String,
        zip_limit_bytes: u64,
    },
    /// Worker: open the master's package at `rel` and apply it. In the 4.3 dialect, extra-valid files
    /// the master asked for are merged into a package at `extra_valid_rel`.
    Apply {
        rel: String,
        extra_valid_rel: String,
    },
    /// Master (4.3): open a worker's extra-valid package at `rel` and unmerge its files.
    ExtraValid { worker: String, rel: String },
    /// Agent-database and daemon work.
    Agents(AgentJob),
    /// Distributed-API work (PROTOCOL.md §4.5).
    Dapi(DapiJob),
    /// The digests of this node's custom ruleset (local `get_hash`).
    RulesetHashes,
    /// Check a file a local client asked to send (`send_file`): an absolute path inside this
    /// install's `queue/cluster/`, a regular file (not a symbolic link); gives its size.
    LocalFile { path: String },
    /// Worker (4.14): ask analysisd to reload the ruleset (`sendrreload`, after a synchronization).
    ReloadRuleset,
}

/// What analysisd said to a ruleset reload request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesetReload {
    /// Reloaded; the warnings it gave, if any.
    Done { warnings: Vec<String> },
    /// analysisd refused or failed, with its errors.
    Failed { errors: Vec<String> },
    /// No analysisd socket on this install (a node without analysisd, a test install).
    NoAnalysisd,
}

/// File counts of a comparison, as the logs and `get_health` report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncCounts {
    pub missing: usize,
    pub shared: usize,
    pub extra: usize,
    pub extra_valid: usize,
}

impl SyncCounts {
    pub fn in_sync(&self) -> bool {
        self.missing + self.shared + self.extra + self.extra_valid == 0
    }
}

/// A package built for a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub rel: String,
    pub bytes: u64,
}

/// What a finished job reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    LocalIntegrity {
        files: usize,
        hashed: usize,
        /// Digest of `etc/client.keys` in the snapshot (`None`: the master has no such file).
        client_keys: Option<String>,
        /// Set when that digest changed since the previous snapshot (and on the first one).
        agent_keys: Option<AgentKeys>,
    },
    WorkerPackage {
        files: usize,
        package: Package,
    },
    Compare {
        received_files: usize,
        counts: SyncCounts,
        package: Option<Package>,
        warnings: Vec<String>,
        /// What the comparison left out on purpose (logged as information, e.g. agent-group files
        /// of agents the master does not know).
        notes: Vec<String>,
        /// Digest of the worker's `etc/client.keys` in its metadata (`None`: it has none).
        worker_client_keys: Option<String>,
    },
    Apply {
        created: usize,
        updated: usize,
        deleted: usize,
        /// 4.3: extra-valid files merged for the master, and their package.
        extra_valid_files: usize,
        extra_valid: Option<Package>,
        errors: Vec<String>,
        warnings: Vec<String>,
    },
    ExtraValid {
        updated: usize,
        errors: Vec<String>,
    },
    Agents(AgentOutcome),
    Dapi(DapiOutcome),
    /// Relative path → digest of each custom ruleset file.
    RulesetHashes(std::collections::BTreeMap<String, String>),
    RulesetReload(RulesetReload),
    /// The file a `send_file` names: path relative to the install root, and size.
    LocalFile {
        rel: String,
        bytes: u64,
    },
}

/// The agents holding a key in one `etc/client.keys` content: what a worker holding that file can
/// authenticate, and so the agents whose groups it may be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentKeys {
    /// Digest of the exact bytes the ids were read from (`None`: no file, no agents).
    pub digest: Option<String>,
    pub ids: Arc<BTreeSet<u32>>,
}

/// A job's result; the error is a sentence for the logs.
pub type JobResult = Result<JobOutcome, String>;

/// Runs the engine's jobs off the event-loop thread. Results travel back to the loop on their own
/// channel; an error here (queue full, pool gone) is reported as the job's failure.
pub trait JobRunner {
    fn submit(&self, id: JobId, job: Job) -> Result<(), String>;
}
