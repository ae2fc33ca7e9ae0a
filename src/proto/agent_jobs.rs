//! Agent-database work the engine hands to the pool, and what comes back (PROTOCOL.md §4.2–§4.4, §6).
//! Plain data like every job: the engine never touches the database, so a slow wazuh-db or a
//! 50,000-agent payload never stalls the event loop.

use bytes::Bytes;

/// Database and daemon work; each runs on the pool's agent threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentJob {
    /// Worker: read the agents whose status changed since the last read (the database marks them
    /// synced) and build the string `syn_a_w_m` carries, in this node's dialect. `carry` is the
    /// string of an earlier round the master never confirmed: its records go first, less those a
    /// newer record of the same agent supersedes, so a failed round loses nothing.
    InfoRead { carry: Option<Bytes> },
    /// Master: apply the agent-info string `worker` sent. Records older than what the master holds
    /// for an agent now served by another node are skipped (the stale-report rule).
    InfoApply { worker: String, payload: Bytes },
    /// Master: collect agent-group changes (`full`: every agent) for the `Agent-groups send` tasks.
    GroupsCollect { full: bool },
    /// Worker: apply an agent-groups string from the master (`full`: the `_c` variant).
    GroupsApply { payload: Bytes, full: bool },
    /// Master: forward sendsync requests (`{"daemon_name", "message"}` JSON) to their daemons, in
    /// order, as one batch (registrations share one `client.keys` write).
    SendSync { requests: Vec<Bytes> },
    /// Master: one page of the agent listing for `cluster_control -a`; `query` is the request JSON.
    ListAgents { query: Bytes },
    /// Master: active agents per node, for `get_health`.
    CountActive,
}

/// What a finished agent job reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentOutcome {
    /// `payload` is `None` when nothing needs syncing; `agents` counts its records. `error`: the
    /// read failed part-way (4.3 paging); what was read is in `payload` all the same.
    InfoRead {
        payload: Option<Bytes>,
        agents: usize,
        error: Option<String>,
    },
    /// The result `syn_m_a_e` carries; `failure` is logged on the master only (as stock masters do),
    /// and so are `warnings` (e.g. the stale-report check could not run).
    InfoApplied {
        updated_chunks: usize,
        error_messages: Vec<String>,
        stale_skipped: usize,
        failure: Option<String>,
        warnings: Vec<String>,
    },
    /// The agent-info string is not JSON: the worker hears of it with `syn_m_a_err`.
    InfoUnreadable { reason: String },
    /// The chunks of one agent-groups round (each a JSON array string as wazuh-db returns it).
    GroupsCollected { chunks: Vec<String> },
    /// The result `syn_w_g_e`/`syn_wgc_e` carries, and the checksum comparison (`None`: not made).
    GroupsApplied {
        updated_chunks: usize,
        error_messages: Vec<String>,
        checksum_matches: Option<bool>,
    },
    /// One answer per request, in order: the daemon's answer text, or the error text for `sendsyn_err`.
    SendSync {
        answers: Vec<Result<String, String>>,
    },
    /// One page of the agent listing, as the JSON text sent to the client.
    Agents { page: String },
    /// `(node name, active agents)` pairs.
    ActiveAgents { per_node: Vec<(String, u64)> },
}
