//! The event loop never waits for file work: while one worker receives a large package (built,
//! encrypted, sent and applied), the master keeps answering another worker's keepalives and the local
//! socket.

use std::fs;
use std::path::Path;
use std::time::Duration;

use clusterd::harness::{free_port, run_with_home, wait_until, Daemon, NodeSpec};
use serde_json::json;

const DAEMON: &str = env!("CARGO_BIN_EXE_wazuh-clusterd");
const CONTROL: &str = env!("CARGO_BIN_EXE_cluster_control");

/// Incompressible bytes, so the package is as large as the file.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Seconds of the day of a `cluster.log` line (`YYYY/MM/DD HH:MM:SS ...`).
fn second_of(line: &str) -> Option<u32> {
    let time = line.get(11..19)?;
    let mut parts = time.split(':').map(|p| p.parse::<u32>().ok());
    Some(parts.next()?? * 3600 + parts.next()?? * 60 + parts.next()??)
}

#[test]
fn keepalives_and_local_requests_are_answered_during_a_large_sync() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let fast = json!({"intervals": {"worker": {"sync_integrity": 1, "keep_alive": 1, "connection_retry": 1},
                                    "master": {"recalculate_integrity": 1}}});
    let master_home = root.path().join("master");
    NodeSpec::master(port)
        .with_cluster_json(fast.clone())
        .write(&master_home)
        .unwrap();
    fs::create_dir_all(master_home.join("etc/lists")).unwrap();
    fs::write(master_home.join("etc/lists/big-list"), noise(96 << 20)).unwrap();
    let args = ["--wazuh-version", "4.14.7"];
    let master = Daemon::start(Path::new(DAEMON), &master_home, &args).unwrap();

    // The quiet worker is in sync first (it holds the same big list), then the second one arrives empty.
    let quiet_home = root.path().join("quiet");
    NodeSpec::worker("quiet", port)
        .with_cluster_json(fast.clone())
        .write(&quiet_home)
        .unwrap();
    fs::create_dir_all(quiet_home.join("etc/lists")).unwrap();
    fs::copy(
        master_home.join("etc/lists/big-list"),
        quiet_home.join("etc/lists/big-list"),
    )
    .unwrap();
    let quiet = Daemon::start(Path::new(DAEMON), &quiet_home, &args).unwrap();
    assert!(
        quiet.wait_for_log("Sync not required.", Duration::from_secs(30)),
        "{}",
        quiet.log()
    );

    let busy_home = root.path().join("busy");
    NodeSpec::worker("busy", port)
        .with_cluster_json(fast)
        .write(&busy_home)
        .unwrap();
    let busy = Daemon::start(Path::new(DAEMON), &busy_home, &args).unwrap();
    let mut answered = 0;
    let synced = wait_until(Duration::from_secs(90), || {
        // The local socket answers while the package is on its way.
        if run_with_home(Path::new(CONTROL), &master_home, &["-l"]).0 == 0 {
            answered += 1;
        }
        fs::metadata(busy_home.join("etc/lists/big-list")).is_ok_and(|m| m.len() == 96 << 20)
            && busy.log().contains("[Integrity sync] Finished in")
    });
    assert!(synced, "the big list did not arrive:\n{}", busy.log());
    assert_eq!(
        fs::read(busy_home.join("etc/lists/big-list")).unwrap(),
        fs::read(master_home.join("etc/lists/big-list")).unwrap()
    );

    // The window of the busy worker's sync, as the master logged it.
    let log = master.log();
    let start = log
        .lines()
        .find(|l| l.contains("[Worker busy] [Integrity check] Starting."))
        .and_then(second_of)
        .unwrap();
    let end = log
        .lines()
        .find(|l| l.contains("[Worker busy] [Integrity sync] Finished in"))
        .and_then(second_of)
        .unwrap();
    let keepalives = quiet
        .log()
        .lines()
        .filter(|l| l.contains("Successful response from master: keepalive"))
        .filter_map(second_of)
        .filter(|s| (start..=end).contains(s))
        .count();
    eprintln!("sync window {}s: {keepalives} keepalives of the other worker answered, {answered} local requests answered", end - start);
    assert!(answered > 0);
    if end > start + 1 {
        assert!(
            keepalives >= 1,
            "no keepalive of the other worker was answered during {}s of sync:\n{}",
            end - start,
            quiet.log()
        );
    }
}
