//! Distributed-API work the engine hands to the pool, and what comes back. Plain data, like every
//! job: the request travels as its bytes and is parsed again where it runs.

use bytes::Bytes;

use super::allow::Execution;

/// Requests of the distributed API that run at once on one node; more wait in the queue.
pub const RUNNING_MAX: usize = 16;

/// Requests waiting to run on one node; a full queue refuses new ones at once.
pub const QUEUE_MAX: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DapiJob {
    /// Run a checked request on this node.
    Run {
        request: Bytes,
        execution: Execution,
    },
    /// Master: the node each of `agents` reports to (`None`: every node that has agents).
    Solve { agents: Option<Vec<String>> },
    /// Master: one answer from several nodes' encoded answers; `kwargs` is the request's
    /// `f_kwargs` JSON (paging of the merged result).
    Merge { parts: Vec<Bytes>, kwargs: Bytes },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DapiOutcome {
    /// The encoded answer (a result, or a Wazuh exception the function raised), or why the
    /// request could not run at all (sent as `dapi_err`).
    Ran(Result<Bytes, String>),
    /// `(node name, agent ids)`; ids of unknown agents come under the empty name.
    Solved(Result<Vec<(String, Vec<String>)>, String>),
    Merged(Bytes),
}
