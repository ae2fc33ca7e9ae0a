//! A network partition between a master and its worker, both dialects, on a real network path:
//! the test makes a network namespace and a veth pair per case, runs the master in the root
//! namespace bound to its end of the pair and the worker inside the namespace (`ip netns exec`),
//! and cuts the link by setting the master's end down (the worker's end loses its carrier, so its
//! packets vanish silently), then heals it by setting it up again.
//!
//! Cases:
//! - a partition longer than the master's keepalive timeout: the master drops the silent worker
//!   (`No keep alives have been received from worker1 ...`), the worker gives up its keepalives
//!   and tries to reconnect into the partition, files change on the master meanwhile; once healed
//!   the worker connects again and converges;
//! - partitions of 5 s, three times, each while a 40 MiB package of incompressible files under
//!   the master's `etc/shared/` is on its way to the worker (with the shipped keepalive
//!   timeouts, which such a partition does not reach): the session rides them out.
//!
//! Every case ends with the worker holding exactly the master's files, no `.<name>.tmp` partial
//! file on either node, no stray file in either node's `queue/cluster/`, and both daemons' memory
//! and open descriptors back near their level before the partition.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use clusterd::harness::{free_port, wait_until, Daemon, NodeSpec};
use serde_json::{json, Value};

use common::faults::{assert_clean_convergence, assert_near, footprint, populate};
use common::{converged, intervals, logs, write, DAEMON, SYNC_S};

const T: Duration = Duration::from_secs(60);
/// The master's keepalive timeout in the long-partition case
/// (`intervals.master.max_allowed_time_without_keepalive`; the shipped value is 120 s).
const MASTER_KEEPALIVE_TIMEOUT_S: u64 = 6;
/// How long the long partition lasts: well past the master's keepalive timeout, and past the
/// worker's own detection (two failed keepalives of `timeout_cluster_request`), so that the worker
/// also tries to connect into the partition.
const LONG_PARTITION: Duration = Duration::from_secs(16);
const SHORT_PARTITION: Duration = Duration::from_secs(5);
const SHORT_PARTITIONS: u64 = 3;
/// Bytes of the master's package the worker holds when a short partition starts.
const MIN_IN_FLIGHT: u64 = 256 * 1024;
const CONNECTED: &str = "Successfully connected to master.";
const MASTER_DROPS: &str = "No keep alives have been received from worker1";
const WORKER_GIVES_UP: &str = "Maximum number of failed keep alives reached. Disconnecting.";

// ---------------------------------------------------------------------------------------------
// The topology.

/// Runs `ip ARGS`; panics with its standard error if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("`ip` runs (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Runs `ip ARGS`, ignoring the outcome (clean-up).
fn ip_quiet(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Network namespaces of earlier runs of this binary that died before their clean-up
/// (`cdpart-<pid>-<n>` whose process is gone): deleted with their veth pairs.
fn reap_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix("cdpart-") else {
            continue;
        };
        let mut parts = rest.split('-');
        let (Some(Ok(pid)), Some(Ok(n))) = (
            parts.next().map(str::parse::<u32>),
            parts.next().map(str::parse::<u8>),
        ) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            ip_quiet(&["netns", "del", name]);
            ip_quiet(&["link", "del", &format!("cdpart{n}h")]);
        }
    }
}

/// A network namespace with one end of a veth pair in it (`10.213.<n>.2/24`, the worker's side)
/// and the other in the root namespace (`10.213.<n>.1/24`, the master's side). `<n>` is claimed by
/// creating the pair `cdpart<n>h`/`cdpart<n>w`, which fails if another run holds it. Everything is
/// deleted on drop, also when the test panics.
struct Partition {
    netns: String,
    host_veth: String,
    n: u8,
}

impl Partition {
    fn new() -> Partition {
        static CASES: AtomicU32 = AtomicU32::new(0);
        reap_stale();
        let used = Command::new("ip")
            .args(["-o", "-4", "addr"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let first = std::process::id() * 7 + CASES.fetch_add(1, Ordering::Relaxed) * 31;
        for k in 0..254 {
            let n = ((first + k) % 254 + 1) as u8;
            if used.contains(&format!("10.213.{n}.")) {
                continue;
            }
            let (host_veth, netns_veth) = (format!("cdpart{n}h"), format!("cdpart{n}w"));
            let claimed = ip_quiet(&[
                "link",
                "add",
                &host_veth,
                "type",
                "veth",
                "peer",
                "name",
                &netns_veth,
            ]);
            if !claimed {
                continue;
            }
            let p = Partition {
                netns: format!("cdpart-{}-{n}", std::process::id()),
                host_veth,
                n,
            };
            ip(&["netns", "add", &p.netns]);
            ip(&["link", "set", &netns_veth, "netns", &p.netns]);
            ip(&[
                "addr",
                "add",
                &format!("{}/24", p.master_ip()),
                "dev",
                &p.host_veth,
            ]);
            ip(&["link", "set", &p.host_veth, "up"]);
            let worker_ip = format!("10.213.{n}.2/24");
            ip(&[
                "-n",
                &p.netns,
                "addr",
                "add",
                &worker_ip,
                "dev",
                &netns_veth,
            ]);
            ip(&["-n", &p.netns, "link", "set", &netns_veth, "up"]);
            ip(&["-n", &p.netns, "link", "set", "lo", "up"]);
            return p;
        }
        panic!("no free 10.213.<n>.0/24 subnet for a veth pair");
    }

    /// The master's address, on the root namespace's end.
    fn master_ip(&self) -> String {
        format!("10.213.{}.1", self.n)
    }

    fn cut(&self) {
        ip(&["link", "set", &self.host_veth, "down"]);
    }

    fn heal(&self) {
        ip(&["link", "set", &self.host_veth, "up"]);
    }

    /// A script that runs `wazuh-clusterd` with its arguments inside the namespace. `ip netns
    /// exec` and the shell `exec` it, so the script's process is the daemon's own (its pid, its
    /// `/proc` footprint, its signals).
    fn daemon_wrapper(&self, dir: &Path) -> PathBuf {
        let path = dir.join("wazuh-clusterd-in-netns");
        fs::write(
            &path,
            format!(
                "#!/bin/sh\nexec ip netns exec {} {} \"$@\"\n",
                self.netns, DAEMON
            ),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        // Deleting the root namespace's end deletes the pair; then the namespace.
        ip_quiet(&["link", "del", &self.host_veth]);
        ip_quiet(&["netns", "del", &self.netns]);
    }
}

// ---------------------------------------------------------------------------------------------
// Checks (the end-state checks are `common::faults`').

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

// ---------------------------------------------------------------------------------------------
// The nodes.

/// The intervals of `common::intervals()` plus a master keepalive timeout of
/// `MASTER_KEEPALIVE_TIMEOUT_S` checked every second, and requests (the worker's keepalives
/// included) answered within 4 s.
fn short_keepalive_intervals() -> Value {
    let mut v = intervals();
    v["intervals"]["master"]["check_worker_lastkeepalive"] = json!(1);
    v["intervals"]["master"]["max_allowed_time_without_keepalive"] =
        json!(MASTER_KEEPALIVE_TIMEOUT_S);
    v["intervals"]["communication"] = json!({"timeout_cluster_request": 4});
    v
}

/// A master in the root namespace bound to the pair's address.
fn start_master(root: &Path, net: &Partition, version: &str, json: Value) -> (Daemon, u16) {
    let port = free_port().unwrap();
    let home = root.join("master");
    let mut spec = NodeSpec::master(port).with_cluster_json(json);
    spec.master_host = net.master_ip();
    spec.write(&home).unwrap();
    // NodeSpec always binds to loopback.
    let conf = home.join("etc/ossec.conf");
    let text = fs::read_to_string(&conf).unwrap();
    let bound = text.replace(
        "<bind_addr>127.0.0.1</bind_addr>",
        &format!("<bind_addr>{}</bind_addr>", net.master_ip()),
    );
    assert_ne!(text, bound, "the generated ossec.conf has no bind_addr");
    fs::write(&conf, bound).unwrap();
    let master = common::start_written_master(&home, version);
    (master, port)
}

/// `worker1` inside the namespace, connected to the master across the pair.
fn start_worker(root: &Path, net: &Partition, port: u16, version: &str, json: Value) -> Daemon {
    let home = root.join("worker1");
    let mut spec = NodeSpec::worker("worker1", port).with_cluster_json(json);
    spec.master_host = net.master_ip();
    spec.write(&home).unwrap();
    let wrapper = net.daemon_wrapper(root);
    let worker = Daemon::start(&wrapper, &home, &["--wazuh-version", version]).unwrap();
    assert!(
        worker.wait_for_log(CONNECTED, T),
        "{}{}",
        worker.log(),
        fs::read_to_string(home.join("stderr.log")).unwrap_or_default()
    );
    worker
}

// ---------------------------------------------------------------------------------------------
// The cases.

fn a_partition_longer_than_the_keepalive_timeout(version: &str) {
    let net = Partition::new();
    let root = tempfile::tempdir().unwrap();
    let (master, port) = start_master(root.path(), &net, version, short_keepalive_intervals());
    populate(&master.home, 10, 16 * 1024, 1);
    let worker = start_worker(
        root.path(),
        &net,
        port,
        version,
        short_keepalive_intervals(),
    );
    assert_clean_convergence(&master, &worker, version);
    // A few keepalive rounds in the steady state before measuring.
    std::thread::sleep(Duration::from_secs(3));
    let (master_before, worker_before) = (footprint(&master), footprint(&worker));
    let (connects, drops) = (
        count(&worker.log(), CONNECTED),
        count(&master.log(), MASTER_DROPS),
    );
    let (master_skip, worker_skip) = (master.log().len(), worker.log().len());

    let cut = Instant::now();
    net.cut();
    // Meanwhile the master's files change: one rewritten set, one new file, one removed.
    populate(&master.home, 10, 16 * 1024, 2);
    write(
        &master.home,
        "etc/shared/fault/new.conf",
        b"written during the partition\n",
    );
    fs::remove_file(master.home.join("etc/shared/fault/file009.conf")).unwrap();
    let both = || logs(&[("master", &master), ("worker", &worker)]);
    assert!(
        wait_until(Duration::from_secs(30), || count(
            &master.log(),
            MASTER_DROPS
        ) > drops),
        "{version}: the master kept the silent worker {:?} into the partition{}",
        cut.elapsed(),
        both()
    );
    let dropped_after = cut.elapsed();
    assert!(
        dropped_after >= Duration::from_secs(MASTER_KEEPALIVE_TIMEOUT_S - 2),
        "{version}: the master dropped the worker {dropped_after:?} into the partition, before \
         its keepalive timeout{}",
        both()
    );
    assert!(
        wait_until(Duration::from_secs(30), || worker
            .log()
            .contains(WORKER_GIVES_UP)),
        "{version}: the worker never gave up its keepalives{}",
        both()
    );
    if let Some(rest) = LONG_PARTITION.checked_sub(cut.elapsed()) {
        std::thread::sleep(rest);
    }
    assert!(
        !converged(&master.home, &worker.home),
        "{version}: the worker has the changes made during the partition"
    );
    assert_eq!(
        count(&worker.log(), CONNECTED),
        connects,
        "{version}: the worker connected across the partition{}",
        both()
    );
    net.heal();
    let healed = Instant::now();

    assert!(
        wait_until(T, || count(&worker.log(), CONNECTED) > connects),
        "{version}: the worker did not connect again after the partition{}",
        both()
    );
    let reconnected_after = healed.elapsed();
    assert_clean_convergence(&master, &worker, version);
    eprintln!(
        "{version}: partition of {:?}; the master dropped the worker after {dropped_after:?}; \
         the worker connected again {reconnected_after:?} after the heal and converged \
         {:?} after it; complaints: master {:#?}, worker {:#?}",
        healed - cut,
        healed.elapsed(),
        complaints(&master.log(), master_skip),
        complaints(&worker.log(), worker_skip)
    );
    assert_near(master_before, &master, &format!("{version} master"));
    assert_near(worker_before, &worker, &format!("{version} worker"));
}

/// Waits (polling every few milliseconds, up to `T`) until at least `MIN_IN_FLIGHT` bytes of a
/// package not in `seen` are on the worker's disk, in its `queue/cluster/worker1/`; returns its
/// name and size then. (The worker's own integrity package for the master lies there too, a few
/// KiB: the size tells the master's 40 MiB apart.)
fn package_in_flight(worker: &Path, seen: &[String]) -> Option<(String, u64)> {
    let transfer = worker.join("queue/cluster/worker1");
    let start = Instant::now();
    while start.elapsed() < T {
        let arrived = fs::read_dir(&transfer)
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let len = e.metadata().ok().filter(|m| m.is_file())?.len();
                (len >= MIN_IN_FLIGHT && !seen.contains(&name)).then_some((name, len))
            });
        if arrived.is_some() {
            return arrived;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// The size of the worker's received file `name`, if it is still there.
fn received_len(worker: &Path, name: &str) -> Option<u64> {
    fs::metadata(worker.join("queue/cluster/worker1").join(name))
        .ok()
        .map(|m| m.len())
}

/// The `ERROR` and `WARNING` lines of a log after its first `skip` bytes.
fn complaints(log: &str, skip: usize) -> Vec<String> {
    log.get(skip..)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARNING"))
        .map(str::to_string)
        .collect()
}

fn short_partitions_with_a_large_package_in_flight(version: &str) {
    const FILES: usize = 40;
    const SIZE: usize = 1 << 20;
    let net = Partition::new();
    let root = tempfile::tempdir().unwrap();
    let (master, port) = start_master(root.path(), &net, version, intervals());
    populate(&master.home, FILES, SIZE, 1);
    let worker = start_worker(root.path(), &net, port, version, intervals());
    // The steady state: a first 40 MiB package synced without a fault.
    assert_clean_convergence(&master, &worker, version);
    std::thread::sleep(Duration::from_secs(2 * SYNC_S));
    let (master_before, worker_before) = (footprint(&master), footprint(&worker));
    let connects = count(&worker.log(), CONNECTED);
    let both = || logs(&[("master", &master), ("worker", &worker)]);

    let (master_skip, worker_skip) = (master.log().len(), worker.log().len());
    let started = Instant::now();
    let mut seen = Vec::new();
    for generation in 2..2 + SHORT_PARTITIONS {
        populate(&master.home, FILES, SIZE, generation);
        let Some((package, at_cut)) = package_in_flight(&worker.home, &seen) else {
            panic!(
                "{version}: no package of generation {generation} arrived{}",
                both()
            );
        };
        net.cut();
        std::thread::sleep(SHORT_PARTITION);
        let at_heal = received_len(&worker.home, &package);
        net.heal();
        eprintln!(
            "{version}: generation {generation}: cut with {at_cut} bytes of {package} received, \
             {at_heal:?} at the heal"
        );
        seen.push(package);
    }
    assert_clean_convergence(&master, &worker, version);
    let reconnects = count(&worker.log(), CONNECTED) - connects;
    eprintln!(
        "{version}: {SHORT_PARTITIONS} partitions of {SHORT_PARTITION:?} with 40 MiB in flight, \
         converged {:?} after the first; {reconnects} reconnections; complaints: master \
         {:#?}, worker {:#?}",
        started.elapsed(),
        complaints(&master.log(), master_skip),
        complaints(&worker.log(), worker_skip)
    );
    // A partition shorter than every timeout is nothing the session notices.
    assert_eq!(
        reconnects,
        0,
        "{version}: the worker lost its session over partitions of {SHORT_PARTITION:?}{}",
        both()
    );
    assert_near(master_before, &master, &format!("{version} master"));
    assert_near(worker_before, &worker, &format!("{version} worker"));
}

#[test]
fn a_partition_longer_than_the_keepalive_timeout_heals_4_3() {
    a_partition_longer_than_the_keepalive_timeout("4.3.11");
}

#[test]
fn a_partition_longer_than_the_keepalive_timeout_heals_4_14() {
    a_partition_longer_than_the_keepalive_timeout("4.14.7");
}

#[test]
fn short_partitions_with_a_large_package_in_flight_4_3() {
    short_partitions_with_a_large_package_in_flight("4.3.11");
}

#[test]
fn short_partitions_with_a_large_package_in_flight_4_14() {
    short_partitions_with_a_large_package_in_flight("4.14.7");
}
