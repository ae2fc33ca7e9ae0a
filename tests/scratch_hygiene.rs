//! Nothing a peer sends outlives its transfer: against real daemons in both dialects, a file whose
//! digest does not match, the transfers a worker leaves open or unreferenced when it disconnects,
//! and the package a master abandons with `syn_m_c_r` are deleted, and so are the packages a worker
//! built for the master once sent. A peer over its scratch limits is refused by name, one that
//! opens transfers and drops a thousand times leaves the master's disk as it found it, and a log
//! line quotes only the start of a 5,000-character path.

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clusterd::harness::{free_port, wait_until, Daemon, NodeSpec, ScriptedPeer, DEMO_KEY};
use clusterd::proto::command::Command;
use serde_json::json;
use sha2::{Digest, Sha256};

use common::DAEMON;
const T: Duration = Duration::from_secs(20);
const DIALECTS: [&str; 2] = ["4.3.11", "4.14.7"];

/// Regular files below `dir` (none if it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => stack.push(path),
                Ok(m) if m.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out
}

/// Bytes of the regular files below `dir`.
fn bytes_under(dir: &Path) -> u64 {
    files_under(dir)
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn with_path(path: &str, data: &[u8]) -> Vec<u8> {
    let mut v = format!("{path} ").into_bytes();
    v.extend_from_slice(data);
    v
}

fn start_master(root: &Path, version: &str, toml: &str) -> (Daemon, u16) {
    let port = free_port().unwrap();
    let home = root.join("master");
    NodeSpec::master(port).write(&home).unwrap();
    fs::write(home.join("etc/clusterd.toml"), toml).unwrap();
    let master = common::start_written_master(&home, version);
    (master, port)
}

fn hello(port: u16, name: &str, version: &str) -> ScriptedPeer {
    let mut worker = ScriptedPeer::connect(&format!("127.0.0.1:{port}"), DEMO_KEY).unwrap();
    let payload = format!("{name} wazuh worker {version}");
    let (command, answer) = worker.request("hello", payload.as_bytes(), T).unwrap();
    assert_eq!(command, Command::Ok, "{}", String::from_utf8_lossy(&answer));
    worker
}

/// `new_file` and one `file_upd` of `data` (no `file_end`).
fn open_transfer(worker: &mut ScriptedPeer, path: &str, data: &[u8]) -> (Command, Vec<u8>) {
    let opened = worker.request("new_file", path.as_bytes(), T).unwrap();
    if opened.0 != Command::Ok {
        return opened;
    }
    worker
        .request("file_upd", &with_path(path, data), T)
        .unwrap()
}

/// A whole transfer of `data`; the reply to `file_end` (or the first refusal).
fn full_transfer(worker: &mut ScriptedPeer, path: &str, data: &[u8]) -> (Command, Vec<u8>) {
    let updated = open_transfer(worker, path, data);
    if updated.0 != Command::Ok {
        return updated;
    }
    worker
        .request("file_end", &with_path(path, &Sha256::digest(data)), T)
        .unwrap()
}

#[test]
fn the_master_deletes_bad_open_and_unreferenced_transfers_of_a_worker() {
    for version in DIALECTS {
        let root = tempfile::tempdir().unwrap();
        let (master, port) = start_master(root.path(), version, "");
        let own = master.home.join("queue/cluster/w1");
        let mut worker = hello(port, "w1", version);
        assert!(own.is_dir());

        // (1) A digest that does not match: refused, and the bytes are gone at once.
        let path = "/queue/cluster/w1/bad.zip";
        open_transfer(&mut worker, path, &[7u8; 100_000]);
        let (command, answer) = worker
            .request("file_end", &with_path(path, &[0u8; 32]), T)
            .unwrap();
        assert_eq!(command, Command::Err);
        assert_eq!(
            answer,
            b"File wasn't correctly received. Checksums aren't equal."
        );
        assert!(
            wait_until(T, || files_under(&own).is_empty()),
            "{version}: {:?}",
            files_under(&own)
        );

        // (2) Open and finished-but-unreferenced transfers, then the worker disconnects.
        for i in 0..3 {
            open_transfer(
                &mut worker,
                &format!("/queue/cluster/w1/open-{i}.zip"),
                b"x",
            );
        }
        for i in 0..2 {
            let (command, _) = full_transfer(
                &mut worker,
                &format!("/queue/cluster/w1/done-{i}.zip"),
                &[1u8; 4096],
            );
            assert_eq!(command, Command::Ok);
        }
        assert_eq!(files_under(&own).len(), 5, "{version}");
        drop(worker);
        assert!(
            wait_until(T, || !own.exists()),
            "{version}: {:?}\n{}",
            files_under(&own),
            master.log()
        );
        assert!(files_under(&master.home.join("queue/cluster")).is_empty());
    }
}

#[test]
fn a_worker_deletes_an_abandoned_package_and_its_own_sent_metadata() {
    for version in DIALECTS {
        let root = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let home = root.path().join("worker1");
        let intervals = json!({"intervals": {"worker": {"sync_integrity": 1, "keep_alive": 30, "connection_retry": 1}}});
        NodeSpec::worker("worker1", port)
            .with_cluster_json(intervals)
            .write(&home)
            .unwrap();
        let worker =
            Daemon::start(Path::new(DAEMON), &home, &["--wazuh-version", version]).unwrap();
        let own = home.join("queue/cluster/worker1");

        let mut master = ScriptedPeer::accept(&listener, DEMO_KEY, T).unwrap();
        let hello = master.expect(|c| *c == Command::Hello, T).unwrap();
        master
            .reply(hello.counter, "ok", b"Client worker1 added")
            .unwrap();

        // (3a) The worker's metadata package is gone once sent.
        let permission = master.expect(|c| *c == Command::SynIWMP, T).unwrap();
        master.reply(permission.counter, "ok", b"True").unwrap();
        let open = master.expect(|c| *c == Command::SynIWM, T).unwrap();
        master.reply(open.counter, "ok", b"task-1").unwrap();
        let end = master.expect(|c| *c == Command::SynIWME, T).unwrap();
        let sent = String::from_utf8(end.payload.clone()).unwrap();
        let sent_rel = sent.split_once(' ').unwrap().1.to_string();
        master
            .reply(end.counter, "ok", b"File correctly received")
            .unwrap();
        assert!(
            wait_until(T, || !home.join(&sent_rel).exists()),
            "{version}: {sent_rel} left behind"
        );

        // (3b) The master sends a package, then fails (`syn_m_c_r`): the worker deletes it.
        let (command, task) = master.request("syn_m_c", b"", T).unwrap();
        assert_eq!(command, Command::Ok);
        let task = String::from_utf8(task).unwrap();
        let rel = "queue/cluster/worker1/master-package.zip";
        master.send_file(rel, &[3u8; 200_000], T).unwrap();
        assert!(home.join(rel).exists());
        let error = json!({"__wazuh_exception__": {"__class__": "WazuhClusterError",
            "__object__": {"code": 3016, "extra_message": "the master gave up"}}});
        let (command, _) = master
            .request("syn_m_c_r", format!("{task} {error}").as_bytes(), T)
            .unwrap();
        assert_eq!(command, Command::Ok);
        assert!(
            wait_until(T, || files_under(&own).is_empty()),
            "{version}: {:?}\n{}",
            files_under(&own),
            worker.log()
        );

        // (3c) A transfer half done when the link drops is deleted too.
        let path = "/queue/cluster/worker1/half.zip";
        master.request("new_file", path.as_bytes(), T).unwrap();
        master
            .request("file_upd", &with_path(path, &[9u8; 50_000]), T)
            .unwrap();
        assert!(home.join("queue/cluster/worker1/half.zip").exists());
        drop(master);
        assert!(
            wait_until(T, || files_under(&own).is_empty()),
            "{version}: {:?}",
            files_under(&own)
        );
        assert!(
            worker.log().contains("the master gave up"),
            "{}",
            worker.log()
        );
    }
}

#[test]
fn a_worker_over_its_scratch_limits_is_refused_by_name() {
    let root = tempfile::tempdir().unwrap();
    let toml = "peer_scratch_bytes_max = 4194304\npeer_transfers_max = 16\n";
    let (master, port) = start_master(root.path(), "4.14.7", toml);
    let mut worker = hello(port, "w1", "4.14.7");
    let mib = vec![5u8; 1 << 20];
    for i in 0..4 {
        let (command, _) =
            full_transfer(&mut worker, &format!("/queue/cluster/w1/u-{i}.zip"), &mib);
        assert_eq!(command, Command::Ok, "transfer {i}");
    }
    // A fifth unreferenced MiB would pass the 4 MiB this peer may hold.
    let (command, answer) = full_transfer(&mut worker, "/queue/cluster/w1/u-4.zip", &mib);
    assert_eq!(command, Command::Err);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("would exceed 4194304 bytes"), "{answer}");
    assert!(!master.home.join("queue/cluster/w1/u-4.zip").exists());
    // Sixteen transfers at once at most.
    for i in 5..16 {
        let (command, _) = worker
            .request(
                "new_file",
                format!("/queue/cluster/w1/u-{i}.zip").as_bytes(),
                T,
            )
            .unwrap();
        assert_eq!(command, Command::Ok, "transfer {i}");
    }
    let (command, answer) = worker
        .request("new_file", b"/queue/cluster/w1/u-16.zip", T)
        .unwrap();
    assert_eq!(command, Command::Err);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("already holds 16 transfers"), "{answer}");
    assert!(bytes_under(&master.home.join("queue/cluster")) <= 4 << 20);
}

#[test]
fn a_thousand_dropped_transfers_leave_the_masters_disk_flat() {
    let root = tempfile::tempdir().unwrap();
    // Closing connections may overlap the next ones from the same address.
    let (master, port) = start_master(root.path(), "4.14.7", "connections_per_ip_max = 100\n");
    let scratch = master.home.join("queue/cluster");
    let chunk = vec![8u8; 64 * 1024];
    let mut peak = 0;
    for i in 0..1000 {
        let name = format!("churn{i}");
        let mut worker = hello(port, &name, "4.14.7");
        open_transfer(&mut worker, &format!("/queue/cluster/{name}/a.zip"), &chunk);
        full_transfer(&mut worker, &format!("/queue/cluster/{name}/b.zip"), &chunk);
        drop(worker);
        if i % 100 == 99 {
            peak = peak.max(bytes_under(&scratch));
        }
    }
    assert!(
        wait_until(T, || files_under(&scratch).is_empty()),
        "{:?}",
        files_under(&scratch).len()
    );
    // At most the transfers of the connections still closing when sampled.
    assert!(peak <= 64 * 2 * chunk.len() as u64, "peak {peak} bytes");
    let dirs = fs::read_dir(&scratch)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .count();
    assert_eq!(dirs, 0, "every worker directory removed");
}

#[test]
fn a_log_line_quotes_only_the_start_of_a_long_peer_path() {
    let root = tempfile::tempdir().unwrap();
    let (master, port) = start_master(root.path(), "4.14.7", "");
    let mut worker = hello(port, "w1", "4.14.7");
    let long = format!("/queue/cluster/w1/{}", "n".repeat(5000));
    let (command, answer) = full_transfer(&mut worker, &long, b"data");
    assert_eq!(
        command,
        Command::Err,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(answer.len() < 1000, "{} bytes", answer.len());
    assert!(
        master.wait_for_log("Could not write queue/cluster/w1/nnn", T),
        "{}",
        master.log()
    );
    let longest = master.log().lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 1000, "a log line of {longest} bytes");
    assert!(files_under(&master.home.join("queue/cluster/w1")).is_empty());
}
