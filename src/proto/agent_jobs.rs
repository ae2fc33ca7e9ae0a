//! Agent-database work the engine hands to the pool, and what comes back (PROTOCOL.md §4.2–§4.4, §6).
//! Plain data like every job: the engine never touches the database, so a slow wazuh-db or a
//! 50,000-agent payload never stalls the event loop.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;

/// Records held back for one worker (agents whose key it does not hold yet) before they are
/// dropped in favour of a full send once its keys catch up.
pub const GROUPS_HELD_MAX: usize = 200_000;

/// Most sendsync requests one [`AgentJob::SendSync`] carries: registrations arriving while a batch
/// runs share the next one (one `client.keys` write each), without one job holding the pool long.
pub const SENDSYNC_BATCH_MAX: usize = 512;

/// Largest sendsync request accepted (the limit of Wazuh's C helper that sends them).
pub const SENDSYNC_REQUEST_BYTES_MAX: usize = 1_000_000;

/// The connection statuses an agent can have (wazuh-db's `connection_status`), which the agent
/// listing filters on.
pub const AGENT_STATUSES: [&str; 4] = ["active", "disconnected", "never_connected", "pending"];

/// Database and daemon work; each runs on the pool's agent threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentJob {
    /// Worker: read the agents whose status changed since the last read (the database marks them
    /// synced) and build the string `syn_a_w_m` carries, in this node's dialect. `carry` is the
    /// string of an earlier round the master never confirmed: its records go first, less those a
    /// newer record of the same agent supersedes, so a failed round loses nothing. The string is
    /// kept on disk until the master confirms it; `recover` (the first read of this daemon) takes
    /// the one a previous daemon kept as `carry`, so a restart loses nothing either.
    InfoRead { carry: Option<Bytes>, recover: bool },
    /// Master: apply the agent-info string `worker` sent. Records older than what the master holds
    /// for an agent now served by another node are skipped (the stale-report rule).
    InfoApply { worker: String, payload: Bytes },
    /// Master: collect agent-group changes (`full`: every agent) for the `Agent-groups send` tasks.
    GroupsCollect { full: bool },
    /// Master: one worker's `Agent-groups send` string. `pending` (records held back earlier) then
    /// `rounds` (oldest first) are merged, the latest record of an agent winning; records of agents
    /// in `keys` (the agents whose key the worker holds) are sent, the others held back again.
    /// `hash` ends the last chunk (`None`: no `hash` key, as in full sends).
    GroupsEnvelope {
        pending: Arc<Vec<GroupRecord>>,
        rounds: Vec<Arc<Vec<GroupRecord>>>,
        keys: Arc<BTreeSet<u32>>,
        hash: Option<GroupsHash>,
    },
    /// Worker: apply an agent-groups string from the master (`full`: the `_c` variant).
    GroupsApply { payload: Bytes, full: bool },
    /// Master: forward sendsync requests (`{"daemon_name", "message"}` JSON) to their daemons, in
    /// order, as one batch (registrations share one `client.keys` write).
    SendSync { requests: Vec<Bytes> },
    /// Master: one page of the agent listing for `cluster_control -a` (`get_agents`), rows in id
    /// order; `None` filters select every node or status.
    ListAgents {
        offset: u64,
        limit: u64,
        nodes: Option<Vec<String>>,
        statuses: Option<Vec<String>>,
    },
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
    /// The records of one agent-groups round, in id order, and the global hash it ended with
    /// (`None` when not asked for or not obtained). `error`: the database failed part-way; the
    /// records read before are still there (the periodic read already marked them synced).
    GroupsCollected {
        records: Arc<Vec<GroupRecord>>,
        hash: Option<GroupsHash>,
        warnings: Vec<String>,
        error: Option<String>,
    },
    /// One worker's string (`None`: nothing to send), its chunk count, the records it carries
    /// (`sent`, given back to the pending ones if the send fails) and those held back. `overflow`:
    /// more records were held back than allowed, and they were dropped.
    GroupsEnvelope {
        payload: Option<Bytes>,
        chunks: usize,
        sent: Arc<Vec<GroupRecord>>,
        held: Arc<Vec<GroupRecord>>,
        overflow: bool,
    },
    /// The agent-info string is not JSON: the worker hears of it with `syn_m_a_err`.
    InfoUnreadable { reason: String },
    /// The result `syn_w_g_e`/`syn_wgc_e` carries, and the checksum comparison (`None`: not made).
    GroupsApplied {
        updated_chunks: usize,
        error_messages: Vec<String>,
        checksum_matches: Option<bool>,
        /// Failures that do not fail the update (recalculating the hashes after a full send).
        warnings: Vec<String>,
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

/// One agent's group assignment as wazuh-db's `sync-agent-groups-get` returns it: the compact JSON
/// object `{"id","name","groups"}` and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub id: u32,
    pub json: Bytes,
}

/// The global agent-groups hash as a round ends it: 40 hex characters, or `None` for `null` (no
/// agent has groups).
pub type GroupsHash = Option<String>;
