//! Connected nodes and their keepalives, exposed at scrape time.
//!
//! The ages of `clusterd_node_last_keepalive_age_seconds` are computed when the exposition is
//! written, not when a keepalive arrives, so a node that went silent shows an age that keeps
//! growing between scrapes; a node that disconnects leaves the exposition at once.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::labels::NodeLabel;

#[derive(Debug, Clone, Copy)]
struct Conn {
    /// Sessions open under this label: more than one while a reconnecting worker's old session is
    /// being probed, or when several nodes past the label limit share `other`.
    sessions: u32,
    last_keepalive: Instant,
}

/// The connected nodes, keyed by their (bounded) label.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    inner: Mutex<HashMap<Arc<str>, Conn>>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Conn>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A session opened: the node's keepalive clock starts now.
    pub fn connected(&self, node: Arc<str>, now: Instant) {
        let mut conns = self.lock();
        let conn = conns.entry(node).or_insert(Conn {
            sessions: 0,
            last_keepalive: now,
        });
        conn.sessions = conn.sessions.saturating_add(1);
        conn.last_keepalive = now;
    }

    /// A session closed; the node's series goes when its last session does. Closing a node that
    /// is not connected does nothing.
    pub fn disconnected(&self, node: &str) {
        let mut conns = self.lock();
        if let Some(conn) = conns.get_mut(node) {
            conn.sessions = conn.sessions.saturating_sub(1);
            if conn.sessions == 0 {
                conns.remove(node);
            }
        }
    }

    /// A keepalive arrived from a connected node; one from a node not connected is ignored, so a
    /// late keepalive never brings back the series of a node that left.
    pub fn keepalive(&self, node: &str, now: Instant) {
        if let Some(conn) = self.lock().get_mut(node) {
            conn.last_keepalive = now;
        }
    }

    /// Open sessions in all, and each node's keepalive age in seconds at `now`, sorted by node.
    pub fn snapshot(&self, now: Instant) -> (u64, Vec<(Arc<str>, f64)>) {
        let conns = self.lock();
        let sessions = conns.values().map(|c| u64::from(c.sessions)).sum();
        let mut ages: Vec<_> = conns
            .iter()
            .map(|(node, c)| {
                let age = now.saturating_duration_since(c.last_keepalive);
                (Arc::clone(node), age.as_secs_f64())
            })
            .collect();
        drop(conns);
        ages.sort_by(|a, b| a.0.cmp(&b.0));
        (sessions, ages)
    }
}

/// Writes `clusterd_connected_nodes` and `clusterd_node_last_keepalive_age_seconds` on each
/// scrape.
pub(crate) struct NodesCollector {
    pub connections: Arc<Connections>,
}

impl fmt::Debug for NodesCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodesCollector").finish_non_exhaustive()
    }
}

pub(crate) const CONNECTED_NODES_HELP: &str = "Cluster connections up: on a master the accepted \
     workers, on a worker 1 while it is connected to its master.";

pub(crate) const KEEPALIVE_AGE_HELP: &str = "Seconds since the last keepalive of each connected \
     node (since its connection until the first one), computed at scrape time.";

impl Collector for NodesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let (sessions, ages) = self.connections.snapshot(Instant::now());

        let gauge = ConstGauge::new(i64::try_from(sessions).unwrap_or(i64::MAX));
        let metric = encoder.encode_descriptor(
            "clusterd_connected_nodes",
            CONNECTED_NODES_HELP,
            None,
            MetricType::Gauge,
        )?;
        gauge.encode(metric)?;

        let mut family = encoder.encode_descriptor(
            "clusterd_node_last_keepalive_age",
            KEEPALIVE_AGE_HELP,
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (node, age) in ages {
            let label = NodeLabel { node };
            ConstGauge::new(age).encode(family.encode_family(&label)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn age_counts_from_connection_then_from_last_keepalive() {
        let conns = Connections::default();
        let t0 = Instant::now();
        conns.connected(Arc::from("w1"), t0);
        let (sessions, ages) = conns.snapshot(t0 + Duration::from_secs(3));
        assert_eq!(sessions, 1);
        assert_eq!(ages.len(), 1);
        assert!((ages[0].1 - 3.0).abs() < 1e-9);

        conns.keepalive("w1", t0 + Duration::from_secs(2));
        let (_, ages) = conns.snapshot(t0 + Duration::from_secs(7));
        assert!((ages[0].1 - 5.0).abs() < 1e-9);
    }

    #[test]
    fn disconnect_removes_the_series_and_late_keepalives_are_ignored() {
        let conns = Connections::default();
        let t0 = Instant::now();
        conns.connected(Arc::from("w1"), t0);
        conns.connected(Arc::from("w2"), t0);
        conns.disconnected("w1");
        conns.keepalive("w1", t0);
        conns.disconnected("never-connected");
        let (sessions, ages) = conns.snapshot(t0);
        assert_eq!(sessions, 1);
        let nodes: Vec<_> = ages.iter().map(|(n, _)| &**n).collect();
        assert_eq!(nodes, ["w2"]);
        conns.disconnected("w2");
        conns.disconnected("w2");
        assert_eq!(conns.snapshot(t0), (0, vec![]));
    }

    #[test]
    fn a_second_session_keeps_the_node_until_both_close() {
        let conns = Connections::default();
        let t0 = Instant::now();
        conns.connected(Arc::from("w1"), t0);
        conns.connected(Arc::from("w1"), t0);
        assert_eq!(conns.snapshot(t0).0, 2);
        conns.disconnected("w1");
        let (sessions, ages) = conns.snapshot(t0);
        assert_eq!((sessions, ages.len()), (1, 1));
        conns.disconnected("w1");
        assert_eq!(conns.snapshot(t0).0, 0);
    }

    #[test]
    fn a_future_keepalive_never_gives_a_negative_age() {
        let conns = Connections::default();
        let t0 = Instant::now();
        conns.connected(Arc::from("w1"), t0 + Duration::from_secs(5));
        let (_, ages) = conns.snapshot(t0);
        assert_eq!(ages[0].1, 0.0);
    }
}
