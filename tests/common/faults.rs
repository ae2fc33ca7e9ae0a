//! What the fault tests (`fault_matrix.rs`, `partition.rs`) check after each fault: the worker
//! converged with no partial or stray scratch file, and the daemons' memory and descriptors back
//! near their level; and the incompressible files they sync.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clusterd::harness::{wait_until, Daemon};

use super::{converged, differences, logs, tree, write};

/// How long a fault test waits for convergence.
pub const T: Duration = Duration::from_secs(60);

/// A daemon's resident memory (KiB) and open descriptors, from `/proc`.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    pub rss_kib: u64,
    pub fds: usize,
}

pub fn footprint(daemon: &Daemon) -> Footprint {
    let pid = daemon.pid().expect("the daemon runs");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    Footprint { rss_kib, fds }
}

/// The fault left no lasting cost: descriptors back within a few of the level before, memory
/// within what allocator caching explains.
pub fn assert_near(before: Footprint, daemon: &Daemon, what: &str) {
    let settle = Instant::now();
    let mut after = footprint(daemon);
    while after.fds > before.fds + 4 && settle.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        after = footprint(daemon);
    }
    assert!(
        after.fds <= before.fds + 4,
        "{what}: {} descriptors open after the fault, {} before",
        after.fds,
        before.fds
    );
    let allowed = before.rss_kib * 3 / 2 + 32 * 1024;
    assert!(
        after.rss_kib <= allowed,
        "{what}: {} KiB resident after the fault, {} KiB before",
        after.rss_kib,
        before.rss_kib
    );
    eprintln!("{what}: {before:?} before the fault, {after:?} after");
}

/// Files in a node's `queue/cluster/` other than its local socket: scratch left behind.
pub fn stray_scratch(home: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![home.join("queue/cluster")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out
}

/// The end state every case asserts: converged, no partial file, no stray scratch (waiting for
/// the scratch of tasks that are still ending).
pub fn assert_clean_convergence(master: &Daemon, worker: &Daemon, what: &str) {
    assert!(
        wait_until(T, || converged(&master.home, &worker.home)),
        "{what}: {}{}",
        differences(&master.home, &worker.home),
        logs(&[("master", master), ("worker", worker)])
    );
    for (name, node) in [("master", master), ("worker", worker)] {
        let partial = tree(&node.home).temporaries;
        assert!(
            partial.is_empty(),
            "{what}: partial files on the {name}: {partial:?}"
        );
        assert!(
            wait_until(Duration::from_secs(20), || stray_scratch(&node.home)
                .is_empty()),
            "{what}: stray scratch on the {name}: {:?}",
            stray_scratch(&node.home)
        );
    }
}

/// Pseudo-random bytes (incompressible, so a package is as large as its files).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `count` files of `size` bytes under `etc/shared/fault/`, with contents of `generation`.
pub fn populate(home: &Path, count: usize, size: usize, generation: u64) {
    for i in 0..count {
        let rel = format!("etc/shared/fault/file{i:03}.conf");
        write(home, &rel, &noise(generation * 1000 + i as u64, size));
    }
}
