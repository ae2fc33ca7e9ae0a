//! Label values of the exposed series, all bounded.
//!
//! Every label either comes from a fixed enum here (its value a short static string) or is a node
//! name, which goes through [`NodeLabels`]: cut to [`MAX_NODE_NAME_CHARS`] characters, and once
//! [`MAX_TRACKED_NODES`] distinct names have been seen, every further name is recorded as
//! [`OTHER_NODE`]. A peer that invents names therefore cannot grow the exposition without bound.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};

/// Node names longer than this many characters are cut to it.
pub const MAX_NODE_NAME_CHARS: usize = 128;

/// Distinct node label values tracked before new names are folded into [`OTHER_NODE`].
pub const MAX_TRACKED_NODES: usize = 4096;

/// The node label value of every node seen after [`MAX_TRACKED_NODES`] distinct names.
pub const OTHER_NODE: &str = "other";

/// Declares a fieldless enum whose variants map to fixed label values.
macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $value:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value exposed for this variant.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $value,)+
                }
            }

            /// The variant's position in [`Self::ALL`], to index per-variant arrays.
            #[allow(dead_code)] // `Task` series live in a family, not an array.
            pub(crate) const fn index(self) -> usize {
                self as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// A periodic cluster task whose rounds are timed (`task` label of
    /// `clusterd_round_duration_seconds`).
    Task {
        /// Integrity check: the worker's metadata compared with the master's snapshot.
        IntegrityCheck => "integrity_check",
        /// Integrity sync: the files that differ sent and applied.
        IntegritySync => "integrity_sync",
        /// Agent-info sync: a worker's changed agents applied by the master.
        AgentInfo => "agent_info",
        /// Agent-groups sync: the master's group assignments sent to a worker.
        AgentGroups => "agent_groups",
    }
}

label_enum! {
    /// Why a relayed request (DAPI or sendsync) failed (`reason` label of
    /// `clusterd_dapi_failures_total` and `clusterd_sendsync_failures_total`).
    FailureReason {
        /// No answer within the request's deadline.
        Timeout => "timeout",
        /// The peer refused the request (for example, the master is not connected, or a callable
        /// is not on the allow-list).
        Refused => "refused",
        /// The receiving queue was full and the request was answered with an error at once.
        QueueFull => "queue_full",
        /// The connection to the peer that was serving the request was lost.
        PeerLost => "peer_lost",
        /// Any other failure (the request ran and answered an error).
        Error => "error",
    }
}

label_enum! {
    /// Why the master refused a connection (`reason` label of
    /// `clusterd_refused_connections_total`).
    RefuseReason {
        /// The source address already holds `connections_per_ip_max` connections.
        PerIpLimit => "per_ip_limit",
        /// The peer's frames did not decrypt with the cluster key.
        BadKey => "bad_key",
        /// The worker's name is invalid or the master's own (3060, 3029).
        BadName => "bad_name",
        /// A connected worker already holds that name (3028).
        NameInUse => "name_in_use",
        /// The worker belongs to another cluster (3030).
        OtherCluster => "other_cluster",
        /// The worker runs another Wazuh version (3031).
        OtherVersion => "other_version",
        /// The peer broke the wire protocol (bad frame, bad `hello`).
        Protocol => "protocol",
    }
}

label_enum! {
    /// A bounded queue whose depth is exposed (`queue` label of `clusterd_queue_depth`).
    Queue {
        /// The worker pool's file and integrity jobs.
        Pool => "pool",
        /// The agent-database jobs.
        Agents => "agents",
        /// Distributed API requests waiting for an executor slot.
        Dapi => "dapi",
        /// sendsync requests waiting for the next batch.
        Sendsync => "sendsync",
    }
}

label_enum! {
    /// A group of threads whose busy time is counted (`pool` label of
    /// `clusterd_pool_busy_seconds_total`).
    Pool {
        /// The worker pool's file and integrity threads.
        Files => "files",
        /// The agent-database threads.
        Agents => "agents",
        /// The distributed API executors.
        Dapi => "dapi",
    }
}

/// Encodes one `(key, value)` label.
fn encode_one(
    encoder: &mut LabelSetEncoder,
    key: &'static str,
    value: &str,
) -> Result<(), fmt::Error> {
    (key, value).encode(encoder.encode_label())
}

/// `{node}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct NodeLabel {
    pub node: Arc<str>,
}

impl EncodeLabelSet for NodeLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        encode_one(encoder, "node", &self.node)
    }
}

/// `{task, node}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RoundLabel {
    pub task: Task,
    pub node: Arc<str>,
}

impl EncodeLabelSet for RoundLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        encode_one(encoder, "task", self.task.as_str())?;
        encode_one(encoder, "node", &self.node)
    }
}

/// A single label whose value is a fixed static string (`{reason}`, `{queue}`, `{pool}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct StaticLabel {
    pub key: &'static str,
    pub value: &'static str,
}

impl EncodeLabelSet for StaticLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        encode_one(encoder, self.key, self.value)
    }
}

/// The six labels of `clusterd_info`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InfoLabels {
    /// This daemon's version.
    pub version: String,
    /// The Wazuh version the node announces to its peers.
    pub wazuh_version: String,
    /// The protocol dialect spoken (`4.3`, `4.14`).
    pub dialect: String,
    /// The node's name (`<node_name>`), cut like every node label.
    pub node_name: String,
    /// `master` or `worker`.
    pub node_type: String,
    /// The IO driver in use (`io_uring`, `epoll`).
    pub io_driver: String,
}

impl EncodeLabelSet for InfoLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        encode_one(encoder, "version", &self.version)?;
        encode_one(encoder, "wazuh_version", &self.wazuh_version)?;
        encode_one(encoder, "dialect", &self.dialect)?;
        encode_one(encoder, "node_name", &self.node_name)?;
        encode_one(encoder, "node_type", &self.node_type)?;
        encode_one(encoder, "io_driver", &self.io_driver)
    }
}

/// Cuts `s` to at most `max` characters (never inside a character).
pub(crate) fn cut_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// The bounded set of node label values: interns names so each distinct node holds one shared
/// string, and folds names past the limit into [`OTHER_NODE`].
#[derive(Debug)]
pub(crate) struct NodeLabels {
    known: RwLock<HashSet<Arc<str>>>,
    other: Arc<str>,
    limit: usize,
}

impl NodeLabels {
    pub fn new(limit: usize) -> Self {
        NodeLabels {
            known: RwLock::new(HashSet::new()),
            other: Arc::from(OTHER_NODE),
            limit,
        }
    }

    /// The label value recorded for `name`.
    pub fn get(&self, name: &str) -> Arc<str> {
        let name = cut_chars(name, MAX_NODE_NAME_CHARS);
        {
            let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(label) = known.get(name) {
                return Arc::clone(label);
            }
            if known.len() >= self.limit {
                return Arc::clone(&self.other);
            }
        }
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(label) = known.get(name) {
            return Arc::clone(label);
        }
        if known.len() >= self.limit {
            return Arc::clone(&self.other);
        }
        let label: Arc<str> = Arc::from(name);
        known.insert(Arc::clone(&label));
        label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_are_the_documented_strings() {
        let tasks: Vec<_> = Task::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            tasks,
            [
                "integrity_check",
                "integrity_sync",
                "agent_info",
                "agent_groups"
            ]
        );
        let reasons: Vec<_> = FailureReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            reasons,
            ["timeout", "refused", "queue_full", "peer_lost", "error"]
        );
        let refused: Vec<_> = RefuseReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            refused,
            [
                "per_ip_limit",
                "bad_key",
                "bad_name",
                "name_in_use",
                "other_cluster",
                "other_version",
                "protocol"
            ]
        );
        let queues: Vec<_> = Queue::ALL.iter().map(|q| q.as_str()).collect();
        assert_eq!(queues, ["pool", "agents", "dapi", "sendsync"]);
        let pools: Vec<_> = Pool::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(pools, ["files", "agents", "dapi"]);
        for (i, t) in Task::ALL.iter().enumerate() {
            assert_eq!(t.index(), i);
        }
    }

    #[test]
    fn cut_respects_characters() {
        assert_eq!(cut_chars("worker1", 128), "worker1");
        assert_eq!(cut_chars("abcdef", 3), "abc");
        assert_eq!(cut_chars("ééé", 2), "éé");
        let long = "é".repeat(300);
        assert_eq!(cut_chars(&long, MAX_NODE_NAME_CHARS).chars().count(), 128);
    }

    #[test]
    fn names_are_interned_cut_and_bounded() {
        let labels = NodeLabels::new(3);
        let a = labels.get("a");
        assert!(Arc::ptr_eq(&a, &labels.get("a")));
        let long = "x".repeat(200);
        assert_eq!(labels.get(&long).len(), MAX_NODE_NAME_CHARS);
        // A name differing only past the cut is the same node label.
        let longer = format!("{long}y");
        assert_eq!(&*labels.get(&longer), &*labels.get(&long));
        assert_eq!(&*labels.get("c"), "c");
        assert_eq!(&*labels.get("d"), OTHER_NODE);
        assert_eq!(&*labels.get("e"), OTHER_NODE);
        // Names seen before the limit keep their own label.
        assert_eq!(&*labels.get("a"), "a");
        assert_eq!(&*labels.get("c"), "c");
    }
}
