//! What the engine needs to know about its node, decoupled from the configuration files.

use std::time::Duration;

use serde_json::Value;

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
    /// Simultaneous cluster connections accepted from one source address.
    pub connections_per_ip_max: usize,
    pub limits: ConnLimits,
}
