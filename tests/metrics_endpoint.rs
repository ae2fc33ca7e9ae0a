//! The metrics endpoint over a real socket on 127.0.0.1: status codes, both exposition formats,
//! recorded values as a scraper sees them, the keepalive age computed at scrape time, the bounds
//! on slow clients, and the exposition checked by `promtool check metrics` when it is installed.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clusterd::metrics::{
    serve, serve_metrics, FailureReason, Format, InfoLabels, Metrics, Pool, Queue, RefuseReason,
    ServerHandle, Task,
};

use clusterd::harness::scrape::{self, promtool, sample, Reply};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";
/// What Prometheus sends.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
     application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A private metric set and a server for it.
fn start() -> (&'static Metrics, ServerHandle) {
    let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
    let server = serve_metrics(loopback(), metrics).expect("bind 127.0.0.1:0");
    (metrics, server)
}

/// Sends `raw` as is and reads the reply; the body's length must be the announced one.
fn exchange(addr: SocketAddr, raw: &[u8]) -> Reply {
    let reply = scrape::exchange(addr, raw).unwrap();
    let length: usize = reply.header("content-length").unwrap().parse().unwrap();
    assert_eq!(length, reply.body.len(), "{reply:?}");
    reply
}

fn request(addr: SocketAddr, method: &str, path: &str, accept: Option<&str>) -> Reply {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    if let Some(accept) = accept {
        raw.push_str(&format!("Accept: {accept}\r\n"));
    }
    raw.push_str("\r\n");
    exchange(addr, raw.as_bytes())
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, None)
}

fn scrape(addr: SocketAddr, format: Format) -> String {
    let accept = match format {
        Format::OpenMetrics => Some(PROMETHEUS_ACCEPT),
        Format::PrometheusText => None,
    };
    let reply = request(addr, "GET", "/metrics", accept);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some(format.content_type()));
    reply.body
}

#[test]
fn healthz_is_ok() {
    let (_, server) = start();
    let reply = get(server.local_addr(), "/healthz");
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
    assert_eq!(reply.header("connection"), Some("close"));
}

#[test]
fn readyz_says_why_until_ready() {
    let (metrics, server) = start();
    let addr = server.local_addr();
    let reply = get(addr, "/readyz");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (503, "not ready: starting")
    );
    metrics.set_ready(false, "not connected to the master");
    let reply = get(addr, "/readyz");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (503, "not ready: not connected to the master")
    );
    metrics.set_ready(true, "");
    let reply = get(addr, "/readyz");
    assert_eq!((reply.status, reply.body.as_str()), (200, "ready"));
}

#[test]
fn unknown_paths_and_other_methods() {
    let (_, server) = start();
    let addr = server.local_addr();
    assert_eq!(get(addr, "/").status, 404);
    assert_eq!(get(addr, "/metrics/extra").status, 404);
    assert_eq!(get(addr, "/metrics?x=1").status, 200);
    let reply = exchange(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello=world",
    );
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET"));
    assert_eq!(request(addr, "DELETE", "/readyz", None).status, 405);
    assert_eq!(request(addr, "HEAD", "/healthz", None).status, 405);
    assert_eq!(exchange(addr, b"not http at all\r\n\r\n").status, 400);
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert_eq!(exchange(addr, huge.as_bytes()).status, 431);
    // The server is still there after all of that.
    assert_eq!(get(addr, "/healthz").status, 200);
}

#[test]
fn format_follows_the_accept_header() {
    let (_, server) = start();
    let addr = server.local_addr();
    let om = request(addr, "GET", "/metrics", Some(PROMETHEUS_ACCEPT));
    assert_eq!(om.header("content-type"), Some(OPENMETRICS));
    assert!(om.body.ends_with("# EOF\n"));
    assert!(om.body.contains("# TYPE clusterd_dapi_requests counter\n"));
    let plain = get(addr, "/metrics");
    assert_eq!(plain.header("content-type"), Some(TEXT_004));
    assert!(!plain.body.contains("# EOF"));
    assert!(plain
        .body
        .contains("# TYPE clusterd_dapi_requests_total counter\n"));
}

#[test]
fn recording_moves_the_scraped_values() {
    let (m, server) = start();
    let addr = server.local_addr();
    let before = scrape(addr, Format::OpenMetrics);
    assert_eq!(sample(&before, "clusterd_dapi_requests_total"), Some(0.0));
    assert_eq!(
        sample(&before, "clusterd_files_sent_total{node=\"worker1\"}"),
        None
    );

    m.dapi_request();
    m.dapi_request();
    m.dapi_failure(FailureReason::QueueFull);
    m.sendsync_request();
    m.sendsync_failure(FailureReason::Timeout);
    m.files_sent("worker1", 10, 4096);
    m.files_applied(3, 300);
    m.queue_depth(Queue::Sendsync, 42);
    m.pool_busy(Pool::Agents, Duration::from_millis(250));
    m.connection_refused(RefuseReason::PerIpLimit);
    m.round(Task::AgentGroups, "worker1", Duration::from_millis(2));

    for format in [Format::OpenMetrics, Format::PrometheusText] {
        let after = scrape(addr, format);
        let s = |series: &str| sample(&after, series);
        assert_eq!(s("clusterd_dapi_requests_total"), Some(2.0));
        assert_eq!(
            s("clusterd_dapi_failures_total{reason=\"queue_full\"}"),
            Some(1.0)
        );
        assert_eq!(s("clusterd_sendsync_requests_total"), Some(1.0));
        assert_eq!(
            s("clusterd_sendsync_failures_total{reason=\"timeout\"}"),
            Some(1.0)
        );
        assert_eq!(s("clusterd_files_sent_total{node=\"worker1\"}"), Some(10.0));
        assert_eq!(
            s("clusterd_bytes_sent_total{node=\"worker1\"}"),
            Some(4096.0)
        );
        assert_eq!(s("clusterd_files_applied_total"), Some(3.0));
        assert_eq!(s("clusterd_bytes_applied_total"), Some(300.0));
        assert_eq!(s("clusterd_queue_depth{queue=\"sendsync\"}"), Some(42.0));
        assert_eq!(
            s("clusterd_pool_busy_seconds_total{pool=\"agents\"}"),
            Some(0.25)
        );
        assert_eq!(
            s("clusterd_refused_connections_total{reason=\"per_ip_limit\"}"),
            Some(1.0)
        );
        assert_eq!(
            s("clusterd_round_duration_seconds_count{task=\"agent_groups\",node=\"worker1\"}"),
            Some(1.0)
        );
    }
}

#[test]
fn keepalive_age_grows_and_goes_with_the_node() {
    let (m, server) = start();
    let addr = server.local_addr();
    let series = "clusterd_node_last_keepalive_age_seconds{node=\"worker7\"}";
    m.node_connected("worker7");
    m.keepalive("worker7");
    let first = sample(&scrape(addr, Format::OpenMetrics), series).expect("age exposed");
    std::thread::sleep(Duration::from_millis(120));
    let text = scrape(addr, Format::PrometheusText);
    let second = sample(&text, series).expect("age exposed");
    assert!(second >= first + 0.1, "{first} then {second}");
    assert_eq!(sample(&text, "clusterd_connected_nodes"), Some(1.0));

    m.keepalive("worker7");
    let third = sample(&scrape(addr, Format::OpenMetrics), series).unwrap();
    assert!(
        third < second,
        "a keepalive resets the age: {second} then {third}"
    );

    m.node_disconnected("worker7");
    let text = scrape(addr, Format::OpenMetrics);
    assert_eq!(sample(&text, series), None, "{text}");
    assert_eq!(sample(&text, "clusterd_connected_nodes"), Some(0.0));
    // A late keepalive does not bring the series back.
    m.keepalive("worker7");
    assert_eq!(sample(&scrape(addr, Format::OpenMetrics), series), None);
}

#[test]
fn a_silent_client_holds_the_server_only_until_its_deadline() {
    let (_, server) = start();
    let addr = server.local_addr();
    let mut silent = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let reply = get(addr, "/healthz");
    let waited = started.elapsed();
    assert_eq!(reply.status, 200);
    assert!(waited < Duration::from_secs(8), "waited {waited:?}");
    // The silent connection was answered 408 and closed.
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = String::new();
    silent.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
}

#[test]
fn bind_errors_are_reported_at_once_and_drop_stops_the_server() {
    let (_, server) = start();
    let addr = server.local_addr();
    let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
    assert!(serve_metrics(addr, metrics).is_err(), "the port is taken");
    drop(server);
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens any more"
    );
    // The port is free again.
    let again = serve_metrics(addr, metrics).expect("rebind after stop");
    assert_eq!(get(again.local_addr(), "/healthz").status, 200);
    again.stop();
}

#[test]
fn the_global_metrics_are_served() {
    let server = serve(loopback()).unwrap();
    // Only a series this test owns: other tests of this binary may record into the global set.
    Metrics::global().files_sent("global-endpoint-test-node", 1, 7);
    let text = scrape(server.local_addr(), Format::OpenMetrics);
    assert_eq!(
        sample(
            &text,
            "clusterd_bytes_sent_total{node=\"global-endpoint-test-node\"}"
        ),
        Some(7.0)
    );
    assert!(std::ptr::eq(Metrics::global(), Metrics::global()));
}

/// A metric set with every kind of series present, including awkward label values.
fn populated() -> (&'static Metrics, ServerHandle) {
    let (m, server) = start();
    m.set_info(InfoLabels {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        wazuh_version: "4.14.7".to_owned(),
        dialect: "4.14".to_owned(),
        node_name: "master-node".to_owned(),
        node_type: "master".to_owned(),
        io_driver: "io_uring".to_owned(),
    });
    for i in 0..5 {
        let node = format!("worker{i}");
        m.node_connected(&node);
        m.keepalive(&node);
        m.files_sent(&node, i, i * 100);
        for task in Task::ALL {
            m.round(*task, &node, Duration::from_millis(3 + 400 * i));
        }
    }
    m.node_connected("odd \"name\" with \\ and\nnewline");
    m.files_applied(1, 10);
    m.dapi_request();
    m.dapi_failure(FailureReason::Error);
    m.sendsync_request();
    m.sendsync_failure(FailureReason::Refused);
    m.queue_depth(Queue::Pool, 3);
    m.pool_busy(Pool::Dapi, Duration::from_secs(2));
    m.connection_refused(RefuseReason::BadKey);
    (m, server)
}

#[test]
fn plain_exposition_passes_promtool() {
    let (_, server) = populated();
    let text = scrape(server.local_addr(), Format::PrometheusText);
    let Some((ok, said)) = promtool(&text) else {
        println!("skipped: promtool is not installed (Debian package `prometheus`)");
        return;
    };
    assert!(
        ok,
        "promtool check metrics failed:\n{said}\n--- exposition:\n{text}"
    );
    assert!(said.trim().is_empty(), "promtool lint findings:\n{said}");
}

#[test]
fn openmetrics_exposition_is_well_formed() {
    let (_, server) = populated();
    let text = scrape(server.local_addr(), Format::OpenMetrics);
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(text.matches("# EOF").count(), 1);
    // Every counter family is declared without `_total`, and its samples carry it.
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap();
            assert!(family.starts_with("clusterd"), "{line}");
            if kind == "counter" {
                assert!(!family.ends_with("_total"), "{line}");
                let samples = format!("\n{family}_total");
                assert!(text.contains(&samples), "no samples for {family}");
            }
        }
    }
    assert!(text.contains("# TYPE clusterd info\n"));
    assert!(text.contains("# UNIT clusterd_round_duration_seconds seconds\n"));
    assert!(text.contains(r#"node="odd \"name\" with \\ and\nnewline""#));
    // promtool parses the Prometheus text format only: say what it makes of OpenMetrics, without
    // depending on it (the plain format is the one it must accept, see above).
    match promtool(&text) {
        None => println!("skipped: promtool is not installed (Debian package `prometheus`)"),
        Some((ok, said)) => println!(
            "promtool check metrics on OpenMetrics: {}\n{said}",
            if ok { "accepted" } else { "rejected" }
        ),
    }
}
