//! Local `send_file <path> <node>` between a real master and worker, both dialects: a multi-chunk
//! file under `queue/cluster/` lands on the other node byte for byte, in both directions; paths
//! outside `queue/cluster/`, symbolic links, relative paths and unknown nodes are refused with a
//! reason, and nothing is sent.

use std::fs;
use std::path::Path;
use std::time::Duration;

use clusterd::control::client::LocalClient;
use clusterd::harness::{free_port, wait_until, Daemon, NodeSpec};
use clusterd::proto::frame::REQUEST_CHUNK_BYTES;
use serde_json::json;

const DAEMON: &str = env!("CARGO_BIN_EXE_wazuh-clusterd");

fn send(home: &Path, path: &Path, node: &str) -> Result<u64, String> {
    LocalClient::connect(home, Duration::from_secs(30))
        .and_then(|mut c| c.send_file(path, node))
        .map_err(|e| e.to_string())
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn scenario(version: &str) {
    let root = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let intervals = json!({"intervals": {"worker": {"keep_alive": 2, "connection_retry": 1}}});
    let (master_home, worker_home) = (root.path().join("master"), root.path().join("worker1"));
    NodeSpec::master(port)
        .with_cluster_json(intervals.clone())
        .write(&master_home)
        .unwrap();
    NodeSpec::worker("worker1", port)
        .with_cluster_json(intervals)
        .write(&worker_home)
        .unwrap();
    let args = ["--wazuh-version", version];
    let master = Daemon::start(Path::new(DAEMON), &master_home, &args).unwrap();
    let worker = Daemon::start(Path::new(DAEMON), &worker_home, &args).unwrap();
    assert!(
        worker.wait_for_log("Successfully connected to master.", Duration::from_secs(20)),
        "{}",
        worker.log()
    );

    // Worker → master: the node name is ignored on a worker, as stock.
    let up = content(3 * REQUEST_CHUNK_BYTES + 17, 1);
    let path = worker_home.join("queue/cluster/worker1/probe.bin");
    fs::write(&path, &up).unwrap();
    assert_eq!(send(&worker_home, &path, "whatever"), Ok(up.len() as u64));
    let landed = master_home.join("queue/cluster/worker1/probe.bin");
    assert!(wait_until(Duration::from_secs(5), || fs::read(&landed)
        .is_ok_and(|d| d == up)));

    // Master → worker1.
    let down = content(REQUEST_CHUNK_BYTES + 5, 7);
    fs::create_dir_all(master_home.join("queue/cluster/worker1")).unwrap();
    let path = master_home.join("queue/cluster/worker1/down.bin");
    fs::write(&path, &down).unwrap();
    assert_eq!(send(&master_home, &path, "worker1"), Ok(down.len() as u64));
    let landed = worker_home.join("queue/cluster/worker1/down.bin");
    assert!(wait_until(Duration::from_secs(5), || fs::read(&landed)
        .is_ok_and(|d| d == down)));

    // Refusals, each with its reason.
    let outside = master_home.join("etc/ossec.conf");
    let error = send(&master_home, &outside, "worker1").unwrap_err();
    assert!(
        error.contains("only files there can be received"),
        "{error}"
    );
    let link = master_home.join("queue/cluster/worker1/link.bin");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let error = send(&master_home, &link, "worker1").unwrap_err();
    assert!(error.contains("symbolic link"), "{error}");
    let error = send(
        &master_home,
        Path::new("queue/cluster/worker1/down.bin"),
        "worker1",
    )
    .unwrap_err();
    assert!(error.contains("not an absolute path"), "{error}");
    let error = send(&master_home, &path, "worker9").unwrap_err();
    assert!(error.contains("3022"), "{error}");
    assert!(!worker_home.join("queue/cluster/worker1/link.bin").exists());
    assert!(master.log().contains("Could not send a file to worker1"));
}

#[test]
fn send_file_4_14() {
    scenario("4.14.7");
}

#[test]
fn send_file_4_3() {
    scenario("4.3.11");
}
