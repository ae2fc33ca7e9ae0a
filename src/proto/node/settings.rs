//! What the engine needs to know about its node, decoupled from the configuration files.

use std::time::Duration;

use serde_json::Value;

use crate::config::Dialect;
use crate::proto::connection::ConnLimits;

/// Timers of the membership protocol (the `intervals` of cluster.json that concern it).
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub keep_alive: Duration,
    pub connection_retry: Duration,
    pub max_failed_keepalive_attempts: u32,
    pub check_worker_lastkeepalive: Duration,
    pub max_allowed_time_without_keepalive: Duration,
    pub timeout_cluster_request: Duration,
    /// How long a distributed-API request may take (`timeout_dapi_request`), unless it asks
    /// `wait_for_complete`.
    pub timeout_dapi_request: Duration,
}

impl Default for Timers {
    /// The shipped cluster.json values (the same in 4.3 and 4.14).
    fn default() -> Self {
        Timers {
            keep_alive: Duration::from_secs(60),
            connection_retry: Duration::from_secs(10),
            max_failed_keepalive_attempts: 2,
            check_worker_lastkeepalive: Duration::from_secs(60),
            max_allowed_time_without_keepalive: Duration::from_secs(120),
            timeout_cluster_request: Duration::from_secs(20),
            timeout_dapi_request: Duration::from_secs(200),
        }
    }
}

/// Integrity-sync timers and package limits (cluster.json `intervals`) and the dialect.
#[derive(Debug, Clone, Copy)]
pub struct SyncSettings {
    pub dialect: Dialect,
    pub sync_integrity: Duration,
    pub recalculate_integrity: Duration,
    pub max_locked_integrity_time: Duration,
    pub timeout_receiving_file: Duration,
    pub timeout_extra_valid: Duration,
    pub max_zip_size: u64,
    pub min_zip_size: u64,
    pub zip_limit_tolerance: f64,
}

impl SyncSettings {
    /// The shipped cluster.json values for a dialect.
    pub fn defaults(dialect: Dialect) -> SyncSettings {
        SyncSettings {
            dialect,
            sync_integrity: Duration::from_secs(9),
            recalculate_integrity: Duration::from_secs(8),
            max_locked_integrity_time: Duration::from_secs(1000),
            timeout_receiving_file: Duration::from_secs(120),
            timeout_extra_valid: Duration::from_secs(40),
            max_zip_size: 1 << 30,
            min_zip_size: 31_457_280,
            zip_limit_tolerance: 0.2,
        }
    }
}

/// Agent-info and agent-groups timers (cluster.json `intervals`).
#[derive(Debug, Clone, Copy)]
pub struct AgentSettings {
    /// Worker: period of the agent-info sync.
    pub sync_agent_info: Duration,
    /// Master: longest time to store a worker's agent-info.
    pub timeout_agent_info: Duration,
    /// Master (4.14): period of the agent-groups query and broadcast.
    pub sync_agent_groups: Duration,
    /// Master (4.14): delay before the first agent-groups round.
    pub agent_group_start_delay: Duration,
    /// Worker (4.14): longest time to store a received agent-groups update.
    pub timeout_agent_groups: Duration,
    /// Worker (4.14): consecutive checksum mismatches before asking for a full send.
    pub agent_groups_mismatch_limit: u32,
}

impl Default for AgentSettings {
    /// The shipped cluster.json values.
    fn default() -> Self {
        AgentSettings {
            sync_agent_info: Duration::from_secs(10),
            timeout_agent_info: Duration::from_secs(40),
            sync_agent_groups: Duration::from_secs(10),
            agent_group_start_delay: Duration::from_secs(30),
            timeout_agent_groups: Duration::from_secs(40),
            agent_groups_mismatch_limit: 5,
        }
    }
}

/// Identity, peers and limits of the node.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub is_master: bool,
    pub cluster_name: String,
    pub node_name: String,
    /// The Wazuh version announced in `hello` and required of workers.
    pub version: String,
    /// The master's address (`nodes[0]`): where a worker connects, and the master's listed ip.
    pub master_host: String,
    pub port: u16,
    pub cluster_key: String,
    /// Answer to the local `get_config` command.
    pub get_config: Value,
    /// Answer to the local `get_runtime` command (io driver, dialect, ...).
    pub runtime_info: Value,
    pub timers: Timers,
    pub sync: SyncSettings,
    pub agents: AgentSettings,
    /// Simultaneous cluster connections accepted from one source address.
    pub connections_per_ip_max: usize,
    /// `distributed_api.enabled` of `cluster.json`: when false, every API request runs on the node
    /// that received it, as stock nodes do.
    pub distributed_api: bool,
    pub limits: ConnLimits,
}
