//! The metrics endpoint of real nodes while they work: a master with two workers (each with
//! `metrics_listen` in `etc/clusterd.toml`) syncing a few files. A worker started before its master
//! is not ready until it is connected and its first integrity sync is applied; the master counts
//! its workers, their rounds and the files sent, the worker the files applied; a killed worker
//! leaves the connected count and its keepalive series; the exposition passes
//! `promtool check metrics` (when Prometheus' tools are installed).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clusterd::harness::scrape::{promtool, request, sample, PROMETHEUS_ACCEPT};
use clusterd::harness::{free_port, wait_until, Daemon, NodeSpec};
use serde_json::json;

const DAEMON: &str = env!("CARGO_BIN_EXE_wazuh-clusterd");

fn fast() -> serde_json::Value {
    json!({"intervals": {
        "worker": {"sync_integrity": 1, "sync_agent_info": 2, "connection_retry": 1, "keep_alive": 1},
        "master": {"recalculate_integrity": 1}
    }})
}

fn home_with_metrics(root: &Path, spec: &NodeSpec) -> (std::path::PathBuf, SocketAddr) {
    let home = root.join(&spec.node_name);
    spec.write(&home).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    std::fs::write(
        home.join("etc/clusterd.toml"),
        format!("metrics_listen = \"{addr}\"\n"),
    )
    .unwrap();
    (home, addr)
}

fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    request(addr, "GET", path, None)
        .ok()
        .map(|r| (r.status, r.body))
}

fn scrape(addr: SocketAddr) -> String {
    get(addr, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default()
}

/// `series` in `addr`'s exposition, 0 when absent.
fn value(addr: SocketAddr, series: &str) -> f64 {
    sample(&scrape(addr), series).unwrap_or(0.0)
}

#[test]
fn metrics_move_as_the_cluster_works() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let (master_home, master) = home_with_metrics(
        root.path(),
        &NodeSpec::master(port).with_cluster_json(fast()),
    );
    let shared = master_home.join("etc/shared/default");
    std::fs::create_dir_all(&shared).unwrap();
    for i in 0..5 {
        std::fs::write(shared.join(format!("file{i}.conf")), vec![b'x'; 1000 + i]).unwrap();
    }
    let (w1_home, w1) = home_with_metrics(
        root.path(),
        &NodeSpec::worker("worker1", port).with_cluster_json(fast()),
    );
    let (w2_home, _) = home_with_metrics(
        root.path(),
        &NodeSpec::worker("worker2", port).with_cluster_json(fast()),
    );

    // A worker without its master: alive, not ready, and it says why.
    let _worker1 = Daemon::start(Path::new(DAEMON), &w1_home, &[]).unwrap();
    assert!(wait_until(Duration::from_secs(20), || get(w1, "/healthz")
        .is_some_and(|(s, b)| s == 200 && b.trim() == "ok")));
    let (status, body) = get(w1, "/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not connected to the master"), "{body}");

    let _master = Daemon::start(Path::new(DAEMON), &master_home, &[]).unwrap();
    let mut worker2 = Daemon::start(Path::new(DAEMON), &w2_home, &[]).unwrap();

    // Ready once connected and synced: the files are there by then.
    assert!(
        wait_until(Duration::from_secs(30), || get(w1, "/readyz")
            .is_some_and(|(s, _)| s == 200)),
        "{:?}",
        get(w1, "/readyz")
    );
    assert!(w1_home.join("etc/shared/default/file4.conf").exists());
    assert_eq!(get(master, "/readyz").map(|r| r.0), Some(200));

    assert!(
        wait_until(Duration::from_secs(30), || value(
            master,
            "clusterd_connected_nodes"
        ) == 2.0),
        "{}",
        scrape(master)
    );
    let checks = r#"clusterd_round_duration_seconds_count{task="integrity_check",node="worker1"}"#;
    let first = value(master, checks);
    assert!(first >= 1.0, "{}", scrape(master));
    assert!(
        wait_until(Duration::from_secs(20), || value(master, checks) > first),
        "the count of integrity checks grows with the rounds"
    );
    assert!(
        value(master, r#"clusterd_files_sent_total{node="worker1"}"#) >= 5.0,
        "{}",
        scrape(master)
    );
    assert!(value(master, r#"clusterd_bytes_sent_total{node="worker1"}"#) > 0.0);
    assert!(
        value(w1, "clusterd_files_applied_total") >= 5.0,
        "{}",
        scrape(w1)
    );
    assert!(value(w1, "clusterd_bytes_applied_total") >= 5000.0);
    assert_eq!(value(w1, "clusterd_connected_nodes"), 1.0);
    let age = r#"clusterd_node_last_keepalive_age_seconds{node="worker2"}"#;
    assert!(sample(&scrape(master), age).is_some(), "{}", scrape(master));
    let info = scrape(master);
    assert!(
        info.contains(r#"node_name="master""#) && info.contains(r#"node_type="master""#),
        "{info}"
    );

    // A killed worker is gone from the connected count and from the keepalive ages.
    worker2.kill9();
    assert!(
        wait_until(Duration::from_secs(20), || value(
            master,
            "clusterd_connected_nodes"
        ) == 1.0),
        "{}",
        scrape(master)
    );
    assert!(sample(&scrape(master), age).is_none());

    // Both expositions as Prometheus parses them.
    let open_metrics = request(master, "GET", "/metrics", Some(PROMETHEUS_ACCEPT)).unwrap();
    assert_eq!(open_metrics.status, 200);
    assert!(open_metrics.body.trim_end().ends_with("# EOF"));
    match promtool(&scrape(master)) {
        Some((passed, said)) => assert!(passed, "promtool check metrics: {said}"),
        None => eprintln!("promtool is not installed: the exposition was not linted"),
    }
}
