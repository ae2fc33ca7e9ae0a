//! Metrics and health of the daemon, for Prometheus and for load balancers and supervisors.
//!
//! [`Metrics::global`] is the process-wide metric set: every layer records into it from any thread
//! (recording is atomics or one short lock, never IO). [`serve`] exposes it over HTTP on a thread
//! of its own, never on the event loop:
//!
//! - `GET /metrics`: the exposition. OpenMetrics 1.0 text when the client's `Accept` asks for
//!   `application/openmetrics-text` (as Prometheus does), else the Prometheus text format 0.0.4,
//!   which older scrapers and linters parse (OpenMetrics' `info` type, `# UNIT` lines and
//!   counter families named without `_total` are not part of that format);
//! - `GET /healthz`: `200 ok` while the process serves at all (liveness);
//! - `GET /readyz`: `200 ready`, or `503 not ready: <reason>` as last set by
//!   [`Metrics::set_ready`] (readiness: a worker not connected to its master, a node still
//!   starting).
//!
//! Series, all prefixed `clusterd_` (what an operator reads each for is in the doc of the method
//! that records it):
//!
//! | series | type | labels |
//! | --- | --- | --- |
//! | `clusterd_info` | info (gauge in 0.0.4) = 1 | `version`, `wazuh_version`, `dialect`, `node_name`, `node_type`, `io_driver` |
//! | `clusterd_connected_nodes` | gauge | |
//! | `clusterd_node_last_keepalive_age_seconds` | gauge, computed at scrape | `node` |
//! | `clusterd_round_duration_seconds` | histogram, 1 ms .. 10 min | `task`, `node` |
//! | `clusterd_files_sent_total`, `clusterd_bytes_sent_total` | counter | `node` |
//! | `clusterd_files_applied_total`, `clusterd_bytes_applied_total` | counter | |
//! | `clusterd_dapi_requests_total`, `clusterd_sendsync_requests_total` | counter | |
//! | `clusterd_dapi_failures_total`, `clusterd_sendsync_failures_total` | counter | `reason` |
//! | `clusterd_queue_depth` | gauge | `queue` |
//! | `clusterd_pool_busy_seconds_total` | counter | `pool` |
//! | `clusterd_refused_connections_total` | counter | `reason` |
//!
//! Label values are bounded: `task`, `reason`, `queue` and `pool` come from the enums [`Task`],
//! [`FailureReason`], [`RefuseReason`], [`Queue`] and [`Pool`]; node names are cut to 128 characters, and past 4,096 distinct names
//! further nodes are recorded as `node="other"`.

mod labels;
mod nodes;
mod registry;
mod server;

use std::sync::OnceLock;

pub use labels::{
    FailureReason, InfoLabels, Pool, Queue, RefuseReason, Task, MAX_NODE_NAME_CHARS,
    MAX_TRACKED_NODES, OTHER_NODE,
};
pub use registry::{Format, Metrics, ROUND_BUCKETS};
pub use server::{serve, serve_metrics, ServerHandle};

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

impl Metrics {
    /// The process-wide metric set, created on first use; after that a single atomic load.
    pub fn global() -> &'static Metrics {
        GLOBAL.get_or_init(Metrics::new)
    }
}
