//! The metric set: one [`Metrics`] holds every series the daemon exposes and encodes them.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::labels::{
    cut_chars, FailureReason, InfoLabels, NodeLabel, NodeLabels, Pool, Queue, RefuseReason,
    RoundLabel, StaticLabel, Task, MAX_NODE_NAME_CHARS, MAX_TRACKED_NODES,
};
use super::nodes::{Connections, NodesCollector};

/// Upper bounds (seconds) of `clusterd_round_duration_seconds`: 1 ms to 10 min, about 2.5 per
/// step, so both a sub-millisecond agent-groups round on an idle cluster and a ten-minute
/// integrity sync of a large tree land in a finite bucket.
pub const ROUND_BUCKETS: [f64; 18] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0,
    120.0, 300.0, 600.0,
];

/// Readiness reasons are cut to this many characters.
const MAX_REASON_CHARS: usize = 256;

/// The exposition formats the server can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (with `# UNIT` lines, `info` type and the closing `# EOF`).
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (counters' families named with `_total`, info as a gauge,
    /// no `# EOF`), for clients that do not ask for OpenMetrics.
    PrometheusText,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The format for a request's `Accept` header: OpenMetrics when the client lists
    /// `application/openmetrics-text` with a non-zero quality, else the Prometheus text format.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::PrometheusText;
        };
        let wants = accept.split(',').any(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            if !media.eq_ignore_ascii_case("application/openmetrics-text") {
                return false;
            }
            !parts.any(|param| {
                let mut kv = param.splitn(2, '=');
                let key = kv.next().unwrap_or("").trim();
                let value = kv.next().unwrap_or("").trim();
                key.eq_ignore_ascii_case("q") && value.parse::<f64>().is_ok_and(|q| q <= 0.0)
            })
        });
        if wants {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }
}

#[derive(Debug)]
struct Readiness {
    ready: bool,
    reason: String,
}

/// Writes `clusterd_info` once the daemon has said who it is.
struct InfoCollector {
    labels: Arc<RwLock<Option<InfoLabels>>>,
}

impl fmt::Debug for InfoCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfoCollector").finish_non_exhaustive()
    }
}

impl Collector for InfoCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let labels = self
            .labels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(labels) = labels {
            let info = Info::new(labels);
            let metric = encoder.encode_descriptor(
                "clusterd",
                "What this node runs: daemon and Wazuh versions, dialect, node name and type, \
                 IO driver; always 1.",
                None,
                MetricType::Info,
            )?;
            info.encode(metric)?;
        }
        Ok(())
    }
}

/// Every series of the daemon, recorded from any thread and encoded on scrape.
///
/// Recording never does IO: fixed-label series are plain atomics; a node-labelled series takes a
/// read lock on the node label set and on its family (a write lock only the first time a node is
/// seen); connection and keepalive updates take one short mutex.
pub struct Metrics {
    registry: Registry,
    node_labels: NodeLabels,
    connections: Arc<Connections>,
    info: Arc<RwLock<Option<InfoLabels>>>,
    rounds: Family<RoundLabel, Histogram, fn() -> Histogram>,
    files_sent: Family<NodeLabel, Counter>,
    bytes_sent: Family<NodeLabel, Counter>,
    files_applied: Counter,
    bytes_applied: Counter,
    dapi_requests: Counter,
    dapi_failures: Vec<Counter>,
    sendsync_requests: Counter,
    sendsync_failures: Vec<Counter>,
    queue_depth: Vec<Gauge>,
    pool_busy: Vec<Counter<f64, AtomicU64>>,
    refused: Vec<Counter>,
    readiness: RwLock<Readiness>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn round_histogram() -> Histogram {
    Histogram::new(ROUND_BUCKETS)
}

/// Creates one series per label value up front, so every value is exposed at 0 from the start
/// (a rate over a series that appears late misses its first increments).
fn per_value<M, E>(family: &Family<StaticLabel, M>, key: &'static str, values: &[E]) -> Vec<M>
where
    M: Default + Clone,
    E: Copy + Into<&'static str>,
{
    values
        .iter()
        .map(|v| {
            family.get_or_create_owned(&StaticLabel {
                key,
                value: (*v).into(),
            })
        })
        .collect()
}

macro_rules! into_str {
    ($($t:ty),+) => {
        $(impl From<$t> for &'static str {
            fn from(v: $t) -> &'static str {
                v.as_str()
            }
        })+
    };
}
into_str!(FailureReason, RefuseReason, Queue, Pool);

impl Metrics {
    /// A fresh, private metric set (the daemon uses [`Metrics::global`]; tests make their own).
    pub fn new() -> Metrics {
        Metrics::with_node_limit(MAX_TRACKED_NODES)
    }

    fn with_node_limit(limit: usize) -> Metrics {
        let mut registry = Registry::default();

        let connections = Arc::new(Connections::default());
        registry.register_collector(Box::new(NodesCollector {
            connections: Arc::clone(&connections),
        }));
        let info = Arc::new(RwLock::new(None));
        registry.register_collector(Box::new(InfoCollector {
            labels: Arc::clone(&info),
        }));

        let rounds = Family::<RoundLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            round_histogram,
        );
        registry.register_with_unit(
            "clusterd_round_duration",
            "Duration of each task round with each node (integrity_check, integrity_sync, \
             agent_info, agent_groups): the quantiles show a node or task slowing down",
            Unit::Seconds,
            rounds.clone(),
        );

        let files_sent = Family::<NodeLabel, Counter>::default();
        registry.register(
            "clusterd_files_sent",
            "Files sent to each node by integrity sync: a node that keeps receiving files keeps \
             drifting from the master",
            files_sent.clone(),
        );
        let bytes_sent = Family::<NodeLabel, Counter>::default();
        registry.register(
            "clusterd_bytes_sent",
            "Bytes of file packages sent to each node by integrity sync",
            bytes_sent.clone(),
        );
        let files_applied = Counter::default();
        registry.register(
            "clusterd_files_applied",
            "Files received and written by this node",
            files_applied.clone(),
        );
        let bytes_applied = Counter::default();
        registry.register(
            "clusterd_bytes_applied",
            "Bytes of the files received and written by this node",
            bytes_applied.clone(),
        );

        let dapi_requests = Counter::default();
        registry.register(
            "clusterd_dapi_requests",
            "Distributed API requests handled (run here or relayed)",
            dapi_requests.clone(),
        );
        let dapi_failures_family = Family::<StaticLabel, Counter>::default();
        let dapi_failures = per_value(&dapi_failures_family, "reason", FailureReason::ALL);
        registry.register(
            "clusterd_dapi_failures",
            "Distributed API requests that failed, by reason: timeouts point at a slow node, \
             queue_full at an overloaded master",
            dapi_failures_family,
        );
        let sendsync_requests = Counter::default();
        registry.register(
            "clusterd_sendsync_requests",
            "sendsync requests handled (registrations, removals and other local requests \
             relayed to the master)",
            sendsync_requests.clone(),
        );
        let sendsync_failures_family = Family::<StaticLabel, Counter>::default();
        let sendsync_failures = per_value(&sendsync_failures_family, "reason", FailureReason::ALL);
        registry.register(
            "clusterd_sendsync_failures",
            "sendsync requests that failed, by reason",
            sendsync_failures_family,
        );

        let queue_family = Family::<StaticLabel, Gauge>::default();
        let queue_depth = per_value(&queue_family, "queue", Queue::ALL);
        registry.register(
            "clusterd_queue_depth",
            "Jobs waiting in each bounded queue: a queue that stays near its bound means work \
             arrives faster than it is done",
            queue_family,
        );
        let pool_family = Family::<StaticLabel, Counter<f64, AtomicU64>>::default();
        let pool_busy = per_value(&pool_family, "pool", Pool::ALL);
        registry.register_with_unit(
            "clusterd_pool_busy",
            "Thread time spent on jobs in each pool, summed over its threads: its rate is the \
             average number of busy threads",
            Unit::Seconds,
            pool_family,
        );

        let refused_family = Family::<StaticLabel, Counter>::default();
        let refused = per_value(&refused_family, "reason", RefuseReason::ALL);
        registry.register(
            "clusterd_refused_connections",
            "Connections the master refused, by reason: name_in_use or other_version after an \
             upgrade, bad_key for a wrong cluster key, per_ip_limit for a reconnect storm",
            refused_family,
        );

        Metrics {
            registry,
            node_labels: NodeLabels::new(limit),
            connections,
            info,
            rounds,
            files_sent,
            bytes_sent,
            files_applied,
            bytes_applied,
            dapi_requests,
            dapi_failures,
            sendsync_requests,
            sendsync_failures,
            queue_depth,
            pool_busy,
            refused,
            readiness: RwLock::new(Readiness {
                ready: false,
                reason: "starting".to_owned(),
            }),
        }
    }

    /// Sets `clusterd_info` (once, at start; a later call replaces it): lets an operator tell
    /// which version, dialect and IO driver each node of a mixed cluster runs. Every value is cut
    /// to 128 characters.
    pub fn set_info(&self, info: InfoLabels) {
        let cut = |s: String| cut_chars(&s, MAX_NODE_NAME_CHARS).to_owned();
        let info = InfoLabels {
            version: cut(info.version),
            wazuh_version: cut(info.wazuh_version),
            dialect: cut(info.dialect),
            node_name: cut(info.node_name),
            node_type: cut(info.node_type),
            io_driver: cut(info.io_driver),
        };
        *self.info.write().unwrap_or_else(PoisonError::into_inner) = Some(info);
    }

    /// A node connected (on a master: a worker was accepted; on a worker: it is connected to its
    /// master). Adds one to `clusterd_connected_nodes` and starts the node's keepalive age.
    pub fn node_connected(&self, name: &str) {
        let label = self.node_labels.get(name);
        self.connections.connected(label, Instant::now());
    }

    /// A node's connection closed: `clusterd_connected_nodes` drops by one and the node's
    /// `clusterd_node_last_keepalive_age_seconds` series disappears once no session of that name
    /// is left. Each call must pair with one [`Metrics::node_connected`]; an unpaired call does
    /// nothing.
    pub fn node_disconnected(&self, name: &str) {
        let label = self.node_labels.get(name);
        self.connections.disconnected(&label);
    }

    /// A keepalive arrived from (on a worker: was answered by) a connected node; the age exposed
    /// for it restarts from 0. Ignored for a node not connected. An age that keeps growing past
    /// the keepalive interval is the first sign of a stuck or partitioned node, before the master
    /// drops it.
    pub fn keepalive(&self, name: &str) {
        let label = self.node_labels.get(name);
        self.connections.keepalive(&label, Instant::now());
    }

    /// One round of `task` with `node` took `duration` (`clusterd_round_duration_seconds`).
    pub fn round(&self, task: Task, node: &str, duration: Duration) {
        let node = self.node_labels.get(node);
        self.rounds
            .get_or_create(&RoundLabel { task, node })
            .observe(duration.as_secs_f64());
    }

    /// Integrity sync sent `files` files in `bytes` bytes of packages to `node`
    /// (`clusterd_files_sent_total`, `clusterd_bytes_sent_total`).
    pub fn files_sent(&self, node: &str, files: u64, bytes: u64) {
        let label = NodeLabel {
            node: self.node_labels.get(node),
        };
        self.files_sent.get_or_create(&label).inc_by(files);
        self.bytes_sent.get_or_create(&label).inc_by(bytes);
    }

    /// This node wrote `files` received files of `bytes` bytes in all
    /// (`clusterd_files_applied_total`, `clusterd_bytes_applied_total`).
    pub fn files_applied(&self, files: u64, bytes: u64) {
        self.files_applied.inc_by(files);
        self.bytes_applied.inc_by(bytes);
    }

    /// One distributed API request was handled (`clusterd_dapi_requests_total`).
    pub fn dapi_request(&self) {
        self.dapi_requests.inc();
    }

    /// One distributed API request failed (`clusterd_dapi_failures_total{reason}`).
    pub fn dapi_failure(&self, reason: FailureReason) {
        self.dapi_failures[reason.index()].inc();
    }

    /// One sendsync request was handled (`clusterd_sendsync_requests_total`).
    pub fn sendsync_request(&self) {
        self.sendsync_requests.inc();
    }

    /// One sendsync request failed (`clusterd_sendsync_failures_total{reason}`).
    pub fn sendsync_failure(&self, reason: FailureReason) {
        self.sendsync_failures[reason.index()].inc();
    }

    /// `depth` jobs now wait in `queue` (`clusterd_queue_depth{queue}`).
    pub fn queue_depth(&self, queue: Queue, depth: usize) {
        self.queue_depth[queue.index()].set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// A thread of `pool` spent `busy` on a job (`clusterd_pool_busy_seconds_total{pool}`).
    pub fn pool_busy(&self, pool: Pool, busy: Duration) {
        self.pool_busy[pool.index()].inc_by(busy.as_secs_f64());
    }

    /// The master refused a connection (`clusterd_refused_connections_total{reason}`).
    pub fn connection_refused(&self, reason: RefuseReason) {
        self.refused[reason.index()].inc();
    }

    /// Sets what `/readyz` answers: ready, or not ready with `reason` (cut to 256 characters,
    /// ignored when ready). A new metric set is not ready, with reason `starting`.
    pub fn set_ready(&self, ready: bool, reason: &str) {
        let reason = if ready {
            String::new()
        } else {
            cut_chars(reason, MAX_REASON_CHARS)
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect()
        };
        *self
            .readiness
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Readiness { ready, reason };
    }

    /// `Ok` when ready, else the reason given to [`Metrics::set_ready`].
    pub fn readiness(&self) -> Result<(), String> {
        let readiness = self
            .readiness
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if readiness.ready {
            Ok(())
        } else {
            Err(readiness.reason.clone())
        }
    }

    /// The whole exposition in `format`.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail, and every label set here encodes.
        let _ = match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `series` (name with labels, exactly as exposed), if present.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(series)?;
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
    }

    #[test]
    fn fixed_label_series_start_at_zero() {
        let m = Metrics::new();
        let text = m.encode(Format::OpenMetrics);
        for reason in FailureReason::ALL {
            let series = format!("clusterd_dapi_failures_total{{reason=\"{reason}\"}}");
            assert_eq!(sample(&text, &series), Some(0.0), "{series}");
            let series = format!("clusterd_sendsync_failures_total{{reason=\"{reason}\"}}");
            assert_eq!(sample(&text, &series), Some(0.0), "{series}");
        }
        for reason in RefuseReason::ALL {
            let series = format!("clusterd_refused_connections_total{{reason=\"{reason}\"}}");
            assert_eq!(sample(&text, &series), Some(0.0), "{series}");
        }
        for queue in Queue::ALL {
            let series = format!("clusterd_queue_depth{{queue=\"{queue}\"}}");
            assert_eq!(sample(&text, &series), Some(0.0), "{series}");
        }
        for pool in Pool::ALL {
            let series = format!("clusterd_pool_busy_seconds_total{{pool=\"{pool}\"}}");
            assert_eq!(sample(&text, &series), Some(0.0), "{series}");
        }
        assert_eq!(sample(&text, "clusterd_connected_nodes"), Some(0.0));
        assert!(text.ends_with("# EOF\n"));
        // No info before the daemon sets it.
        assert!(!text.contains("clusterd_info"));
    }

    #[test]
    fn recording_moves_the_exposed_values() {
        let m = Metrics::new();
        m.files_sent("w1", 3, 300);
        m.files_sent("w1", 2, 200);
        m.files_applied(4, 40);
        m.dapi_request();
        m.dapi_failure(FailureReason::Timeout);
        m.sendsync_request();
        m.sendsync_request();
        m.sendsync_failure(FailureReason::PeerLost);
        m.queue_depth(Queue::Dapi, 17);
        m.pool_busy(Pool::Files, Duration::from_millis(1500));
        m.connection_refused(RefuseReason::NameInUse);
        m.round(Task::IntegrityCheck, "w1", Duration::from_millis(30));
        m.round(Task::IntegrityCheck, "w1", Duration::from_secs(700));

        for format in [Format::OpenMetrics, Format::PrometheusText] {
            let text = m.encode(format);
            let s = |series: &str| sample(&text, series);
            assert_eq!(s("clusterd_files_sent_total{node=\"w1\"}"), Some(5.0));
            assert_eq!(s("clusterd_bytes_sent_total{node=\"w1\"}"), Some(500.0));
            assert_eq!(s("clusterd_files_applied_total"), Some(4.0));
            assert_eq!(s("clusterd_bytes_applied_total"), Some(40.0));
            assert_eq!(s("clusterd_dapi_requests_total"), Some(1.0));
            assert_eq!(
                s("clusterd_dapi_failures_total{reason=\"timeout\"}"),
                Some(1.0)
            );
            assert_eq!(s("clusterd_sendsync_requests_total"), Some(2.0));
            assert_eq!(
                s("clusterd_sendsync_failures_total{reason=\"peer_lost\"}"),
                Some(1.0)
            );
            assert_eq!(s("clusterd_queue_depth{queue=\"dapi\"}"), Some(17.0));
            assert_eq!(
                s("clusterd_pool_busy_seconds_total{pool=\"files\"}"),
                Some(1.5)
            );
            assert_eq!(
                s("clusterd_refused_connections_total{reason=\"name_in_use\"}"),
                Some(1.0)
            );
            // OpenMetrics writes `le` first and bounds as floats ("600.0"); 0.0.4 writes it last
            // and bounds as Go does ("600").
            let bucket = |le: &str| {
                let labels = r#"task="integrity_check",node="w1""#;
                let series = match format {
                    Format::OpenMetrics => format!("{{le=\"{le}\",{labels}}}"),
                    Format::PrometheusText => format!("{{{labels},le=\"{le}\"}}"),
                };
                s(&format!("clusterd_round_duration_seconds_bucket{series}"))
            };
            let top = match format {
                Format::OpenMetrics => "600.0",
                Format::PrometheusText => "600",
            };
            assert_eq!(bucket("0.025"), Some(0.0));
            assert_eq!(bucket("0.05"), Some(1.0));
            assert_eq!(bucket(top), Some(1.0));
            assert_eq!(bucket("+Inf"), Some(2.0));
            assert_eq!(
                s("clusterd_round_duration_seconds_count{task=\"integrity_check\",node=\"w1\"}"),
                Some(2.0)
            );
        }
    }

    #[test]
    fn connections_and_keepalive_ages() {
        let m = Metrics::new();
        m.node_connected("w1");
        m.node_connected("w2");
        m.keepalive("w1");
        let text = m.encode(Format::OpenMetrics);
        assert_eq!(sample(&text, "clusterd_connected_nodes"), Some(2.0));
        let age = sample(
            &text,
            "clusterd_node_last_keepalive_age_seconds{node=\"w1\"}",
        )
        .unwrap();
        assert!((0.0..60.0).contains(&age), "{age}");
        m.node_disconnected("w1");
        let text = m.encode(Format::PrometheusText);
        assert_eq!(sample(&text, "clusterd_connected_nodes"), Some(1.0));
        assert!(!text.contains("node=\"w1\""), "{text}");
        assert!(text.contains("clusterd_node_last_keepalive_age_seconds{node=\"w2\"}"));
    }

    #[test]
    fn node_labels_past_the_limit_are_other() {
        let m = Metrics::with_node_limit(2);
        m.files_sent("a", 1, 1);
        m.files_sent("b", 1, 1);
        m.files_sent("c", 1, 1);
        m.files_sent("d", 1, 1);
        m.node_connected("e");
        let text = m.encode(Format::OpenMetrics);
        assert_eq!(
            sample(&text, "clusterd_files_sent_total{node=\"a\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "clusterd_files_sent_total{node=\"other\"}"),
            Some(2.0)
        );
        assert!(text.contains("clusterd_node_last_keepalive_age_seconds{node=\"other\"}"));
        m.node_disconnected("e");
        let text = m.encode(Format::OpenMetrics);
        assert!(!text.contains("clusterd_node_last_keepalive_age_seconds{"));
    }

    #[test]
    fn long_and_odd_node_names_are_cut_and_escaped() {
        let m = Metrics::new();
        let long = "n".repeat(500);
        m.files_sent(&long, 1, 1);
        m.files_sent("quote\"back\\slash\nline", 1, 1);
        let text = m.encode(Format::PrometheusText);
        let cut = format!("clusterd_files_sent_total{{node=\"{}\"}}", "n".repeat(128));
        assert_eq!(sample(&text, &cut), Some(1.0));
        assert!(
            text.contains(r#"node="quote\"back\\slash\nline""#),
            "{text}"
        );
    }

    #[test]
    fn info_formats() {
        let m = Metrics::new();
        m.set_info(InfoLabels {
            version: "0.1.0".into(),
            wazuh_version: "4.14.7".into(),
            dialect: "4.14".into(),
            node_name: "master".into(),
            node_type: "master".into(),
            io_driver: "epoll".into(),
        });
        let series = "clusterd_info{version=\"0.1.0\",wazuh_version=\"4.14.7\",dialect=\"4.14\",\
                      node_name=\"master\",node_type=\"master\",io_driver=\"epoll\"}";
        let om = m.encode(Format::OpenMetrics);
        assert!(om.contains("# TYPE clusterd info\n"), "{om}");
        assert_eq!(sample(&om, series), Some(1.0));
        let text = m.encode(Format::PrometheusText);
        assert!(text.contains("# TYPE clusterd_info gauge\n"), "{text}");
        assert_eq!(sample(&text, series), Some(1.0));
    }

    #[test]
    fn prometheus_text_names_counter_families_with_total_and_has_no_eof() {
        let m = Metrics::new();
        let text = m.encode(Format::PrometheusText);
        assert!(text.contains("# TYPE clusterd_dapi_requests_total counter\n"));
        assert!(text.contains("# TYPE clusterd_queue_depth gauge\n"));
        assert!(!text.contains("# EOF"));
        assert!(!text.contains("# UNIT"));
        let om = m.encode(Format::OpenMetrics);
        assert!(om.contains("# TYPE clusterd_dapi_requests counter\n"));
        assert!(om.contains("# UNIT clusterd_pool_busy_seconds seconds\n"));
    }

    #[test]
    fn readiness_starts_not_ready() {
        let m = Metrics::new();
        assert_eq!(m.readiness(), Err("starting".to_owned()));
        m.set_ready(false, "no master\r\nyet");
        assert_eq!(m.readiness(), Err("no master  yet".to_owned()));
        m.set_ready(true, "ignored");
        assert_eq!(m.readiness(), Ok(()));
    }

    #[test]
    fn accept_header_negotiation() {
        use Format::*;
        assert_eq!(Format::from_accept(None), PrometheusText);
        assert_eq!(Format::from_accept(Some("*/*")), PrometheusText);
        assert_eq!(
            Format::from_accept(Some("text/plain;version=0.0.4")),
            PrometheusText
        );
        // What Prometheus sends.
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            OpenMetrics
        );
        assert_eq!(
            Format::from_accept(Some("Application/OpenMetrics-Text; version=1.0.0")),
            OpenMetrics
        );
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text;q=0, text/plain")),
            PrometheusText
        );
    }
}
