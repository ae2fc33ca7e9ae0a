//! Helpers shared by the integration tests that run a real master and workers and compare their synced
//! files: writing install roots, reading a node's synced tree with permissions, comparing two trees,
//! and log tails for failure messages.
//!
//! Each test binary uses only part of this module.
#![allow(dead_code)]

pub mod faults;
pub mod load;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use clusterd::harness::{Daemon, NodeSpec};
use serde_json::{json, Value};

pub const DAEMON: &str = env!("CARGO_BIN_EXE_wazuh-clusterd");

/// Seconds between a worker's integrity checks in these tests.
pub const SYNC_S: u64 = 1;

/// Synced directories (relative to the install root) and the permissions a worker gives their files.
pub const ITEMS: [(&str, u32); 5] = [
    ("etc/shared", 0o660),
    ("etc/rules", 0o660),
    ("etc/decoders", 0o660),
    ("etc/lists", 0o660),
    ("var/multigroups", 0o660),
];

pub const CLIENT_KEYS: &str = "etc/client.keys";

/// The permissions a worker must give the synced file `rel`.
pub fn item_mode(rel: &str) -> u32 {
    if rel == CLIENT_KEYS {
        0o640
    } else {
        0o660
    }
}

/// Short intervals so that a round of integrity sync takes about a second.
pub fn intervals() -> Value {
    json!({"intervals": {
        "worker": {"sync_integrity": SYNC_S, "connection_retry": 1, "keep_alive": 2},
        "master": {"recalculate_integrity": 1}
    }})
}

pub fn write(home: &Path, rel: &str, content: &[u8]) {
    let path = home.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

/// Starts the master written at `home` and waits until it computed its local integrity.
pub fn start_written_master(home: &Path, version: &str) -> Daemon {
    let master = Daemon::start(Path::new(DAEMON), home, &["--wazuh-version", version]).unwrap();
    assert!(
        master.wait_for_log(
            "[Local integrity] Finished",
            std::time::Duration::from_secs(60)
        ),
        "{}",
        master.log()
    );
    master
}

/// Writes the install root of a node with the short intervals and starts it.
pub fn start(spec: NodeSpec, home: &Path, version: &str) -> Daemon {
    spec.with_cluster_json(intervals()).write(home).unwrap();
    Daemon::start(Path::new(DAEMON), home, &["--wazuh-version", version]).unwrap()
}

/// A temporary file an interrupted write leaves beside its destination: `.<name>.tmp`.
pub fn is_temporary(name: &str) -> bool {
    name.len() > ".tmp".len() + 1 && name.starts_with('.') && name.ends_with(".tmp")
}

/// Names no node ever syncs (`excluded_files`, `excluded_extensions` of `cluster.json`).
fn is_excluded(name: &str) -> bool {
    matches!(name, "ar.conf" | "ossec.conf")
        || [".tmp", "~", ".lock", ".swp"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// What lies under a node's synced directories.
#[derive(Debug, Default)]
pub struct Tree {
    /// Synced files (relative path) with their content and permission bits.
    pub files: BTreeMap<String, (Vec<u8>, u32)>,
    /// `.<name>.tmp` files (relative path) with their size.
    pub temporaries: BTreeMap<String, u64>,
}

/// Reads every file under the synced directories of `home`, plus `etc/client.keys`.
pub fn tree(home: &Path) -> Tree {
    fn walk(home: &Path, dir: &Path, out: &mut Tree) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = p.strip_prefix(home).unwrap().to_string_lossy().into_owned();
            let Ok(meta) = fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                walk(home, &p, out);
            } else if is_temporary(&name) {
                out.temporaries.insert(rel, meta.len());
            } else if is_excluded(&name) {
                continue;
            } else if let Ok(content) = fs::read(&p) {
                // A file may vanish between listing and reading (a sync in progress): skip it.
                out.files
                    .insert(rel, (content, meta.permissions().mode() & 0o777));
            }
        }
    }
    let mut out = Tree::default();
    for (item, _) in ITEMS {
        walk(home, &home.join(item), &mut out);
    }
    let keys = home.join(CLIENT_KEYS);
    if let (Ok(content), Ok(meta)) = (fs::read(&keys), fs::metadata(&keys)) {
        out.files.insert(
            CLIENT_KEYS.into(),
            (content, meta.permissions().mode() & 0o777),
        );
    }
    out
}

/// Counts the synced files and the temporary files under `home` without reading them (cheap enough
/// to poll every few milliseconds).
pub fn count_files(home: &Path) -> (usize, usize) {
    fn walk(dir: &Path, counts: &mut (usize, usize)) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path(), counts),
                Ok(_) if is_temporary(&name) => counts.1 += 1,
                Ok(_) if !is_excluded(&name) => counts.0 += 1,
                _ => {}
            }
        }
    }
    let mut counts = (usize::from(home.join(CLIENT_KEYS).exists()), 0);
    for (item, _) in ITEMS {
        walk(&home.join(item), &mut counts);
    }
    counts
}

/// True when the worker holds exactly the master's synced files, with the item permissions.
pub fn converged(master: &Path, worker: &Path) -> bool {
    let (m, w) = (tree(master).files, tree(worker).files);
    m.len() == w.len()
        && m.iter().all(|(rel, (content, _))| {
            w.get(rel)
                .is_some_and(|(c, mode)| c == content && *mode == item_mode(rel))
        })
}

/// What keeps a worker from having converged, in a few words.
pub fn differences(master: &Path, worker: &Path) -> String {
    let (m, w) = (tree(master).files, tree(worker).files);
    let missing: Vec<_> = m.keys().filter(|k| !w.contains_key(*k)).take(5).collect();
    let extra: Vec<_> = w.keys().filter(|k| !m.contains_key(*k)).take(5).collect();
    let differ: Vec<_> = m
        .iter()
        .filter(|(k, v)| w.get(*k).is_some_and(|x| x.0 != v.0))
        .map(|(k, _)| k)
        .take(5)
        .collect();
    let modes: Vec<_> = w
        .iter()
        .filter(|(k, (_, mode))| m.contains_key(*k) && *mode != item_mode(k))
        .map(|(k, (_, mode))| format!("{k} {mode:o}"))
        .take(5)
        .collect();
    format!(
        "master {} files, worker {}; missing {missing:?}; extra {extra:?}; differ {differ:?}; \
         wrong permissions {modes:?}",
        m.len(),
        w.len()
    )
}

/// The last `n` lines of a log.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last lines of each node's log, for failure messages.
pub fn logs(nodes: &[(&str, &Daemon)]) -> String {
    nodes
        .iter()
        .map(|(name, d)| format!("\n--- {name} log (last 40 lines)\n{}", tail(&d.log(), 40)))
        .collect()
}
