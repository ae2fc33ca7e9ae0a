//! A worker killed with SIGKILL while it applies its master's package: no synced file is ever partial
//! or wrong (each one is absent or byte-identical to the master's, with the item permissions), and
//! after a restart the next round creates exactly the files still missing, removes the temporary files
//! the kill left behind, and the worker converges. Both dialects.
//!
//! The master holds 3,000 files of 32 to 64 KiB, each with its own content, so that applying them
//! takes long enough to be interrupted. The worker is killed once a third of them are in place, while
//! it writes more; when the kill lands before or after the apply (a slow or fast machine), the cycle
//! is tried again with a fresh worker root.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use clusterd::harness::{free_port, wait_until, Daemon, NodeSpec};

use common::{
    converged, count_files, differences, item_mode, logs, start, tail, tree, write, CLIENT_KEYS,
};

/// Groups under `etc/shared/` and files per group.
const GROUPS: usize = 20;
const PER_GROUP: usize = 100;
/// Directories under `etc/lists/` and files per directory.
const LIST_DIRS: usize = 10;
const PER_LIST_DIR: usize = 100;
const AGENTS: u32 = 200;
/// Fresh worker roots tried before giving up on killing a worker in the middle of its apply.
const ATTEMPTS: usize = 4;
const WORKER: &str = "worker1";

/// Between 32 and 64 KiB, different for every file: a header naming the file, then pseudo-random
/// hexadecimal lines seeded by `index`. A truncated file, or one holding another file's content,
/// differs from the master's.
fn content(index: usize, rel: &str) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let len = 32 * 1024 + (index * 7_919) % (32 * 1024 + 1);
    let mut out = Vec::with_capacity(len + 17);
    out.extend_from_slice(format!("# {rel} ({index})\n").as_bytes());
    let mut x = (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend((0..16).map(|i| HEX[((x >> (4 * i)) & 15) as usize]));
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

/// 2,000 files under `etc/shared/`, 1,000 under `etc/lists/`, and `etc/client.keys`.
fn populate_master(home: &Path) {
    let mut index = 0;
    let mut put = |rel: String| {
        write(home, &rel, &content(index, &rel));
        index += 1;
    };
    for g in 0..GROUPS {
        for f in 0..PER_GROUP {
            put(format!("etc/shared/group{g:02}/file{f:03}.conf"));
        }
    }
    for d in 0..LIST_DIRS {
        for f in 0..PER_LIST_DIR {
            put(format!("etc/lists/set{d}/list{f:03}"));
        }
    }
    let keys: String = (1..=AGENTS)
        .map(|id| {
            format!(
                "{id:03} agent{id:04} any {:064x}\n",
                u128::from(id) * 0x1234_5678_9abc_def1
            )
        })
        .collect();
    write(home, CLIENT_KEYS, keys.as_bytes());
}

/// What a killed worker left.
struct Leftovers {
    /// Synced files in place, all checked whole and with the item permissions.
    applied: usize,
    /// `.<name>.tmp` files and their sizes.
    temporaries: BTreeMap<String, u64>,
    /// Entries of the worker's transfer directory `queue/cluster/<worker>/`.
    transfers: Vec<String>,
}

/// Checks, with the worker dead, that every synced file is byte-identical to the master's and has the
/// item permissions.
fn inspect_killed(master: &BTreeMap<String, (Vec<u8>, u32)>, worker: &Daemon) -> Leftovers {
    let home = &worker.home;
    let found = tree(home);
    for (rel, (content, mode)) in &found.files {
        let Some((expected, _)) = master.get(rel) else {
            panic!("{rel} is on the killed worker but not on the master");
        };
        assert!(
            content == expected,
            "{rel} is partial or wrong after the kill: {} bytes, the master's has {}\n{}",
            content.len(),
            expected.len(),
            tail(&worker.log(), 20)
        );
        assert_eq!(
            *mode,
            item_mode(rel),
            "{rel} has permissions {mode:o} after the kill\n{}",
            tail(&worker.log(), 20)
        );
    }
    let transfers = fs::read_dir(home.join("queue/cluster").join(WORKER))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    Leftovers {
        applied: found.files.len(),
        temporaries: found.temporaries,
        transfers,
    }
}

/// Starts an empty worker and kills it with SIGKILL once a third of the master's files are in place
/// on it and it is writing more (or once two thirds are there, or its apply has ended, or a bound
/// passed).
fn start_and_kill(root: &Path, port: u16, version: &str, attempt: usize, total: usize) -> Daemon {
    let home = root.join(format!("{WORKER}-{attempt}"));
    let mut worker = start(NodeSpec::worker(WORKER, port), &home, version);
    let began = Instant::now();
    assert!(
        worker.wait_for_log("[Integrity sync] Starting.", Duration::from_secs(40)),
        "the worker never started applying a package:{}",
        logs(&[("worker", &worker)])
    );
    let starting = began.elapsed();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut first_file = None;
    loop {
        let (in_place, temporaries) = count_files(&home);
        if in_place > 0 && first_file.is_none() {
            first_file = Some(began.elapsed());
        }
        // Preferably while new copies are being written beside their destinations.
        if (in_place >= total / 3 && temporaries > 0)
            || in_place >= total * 2 / 3
            || worker.log().contains("[Integrity sync] Files to create")
            || Instant::now() > deadline
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    worker.kill9();
    let ms = |d: Duration| (d.as_secs_f64() * 1000.0).round();
    eprintln!(
        "{version}: attempt {attempt}: apply started {:.1}s after the worker; first file in place \
         {:?} ms later; killed {} ms after the start",
        starting.as_secs_f64(),
        first_file.map(|t| ms(t - starting)),
        ms(began.elapsed() - starting)
    );
    worker
}

fn crash_and_recover(version: &str) {
    let clock = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let master_home = root.path().join("master");
    populate_master(&master_home);
    let master_files = tree(&master_home).files;
    let total = master_files.len();
    assert_eq!(total, GROUPS * PER_GROUP + LIST_DIRS * PER_LIST_DIR + 1);
    let master = start(NodeSpec::master(port), &master_home, version);

    let mut killed = None;
    for attempt in 1..=ATTEMPTS {
        let worker = start_and_kill(root.path(), port, version, attempt, total);
        let left = inspect_killed(&master_files, &worker);
        eprintln!(
            "{version}: attempt {attempt}: {} of {total} files applied when killed, none partial; \
             {} temporary file(s) left {:?}; transfer directory: {:?}",
            left.applied,
            left.temporaries.len(),
            left.temporaries.iter().take(3).collect::<Vec<_>>(),
            left.transfers
        );
        if left.applied > 0 && left.applied < total {
            killed = Some((worker, left));
            break;
        }
        if attempt == ATTEMPTS {
            panic!(
                "in {ATTEMPTS} attempts the kill never landed while the worker was applying \
                 (last: {} of {total} files applied):{}",
                left.applied,
                logs(&[("worker", &worker), ("master", &master)])
            );
        }
        fs::remove_dir_all(&worker.home).unwrap();
    }
    let (mut worker, left) = killed.unwrap();

    // The next life of the same worker: the round after the restart creates exactly what is missing.
    let before = worker.log().len();
    let restarted = Instant::now();
    worker.restart().unwrap();
    let since = || worker.log().get(before..).unwrap_or_default().to_string();
    assert!(
        wait_until(Duration::from_secs(40), || since()
            .contains("[Integrity sync] Finished in")),
        "the restarted worker did not apply a package: {}{}",
        differences(&master_home, &worker.home),
        logs(&[("worker", &worker), ("master", &master)])
    );
    let created = format!(
        "[Integrity sync] Files to create: {} | Files to update: 0 | Files to delete: 0",
        total - left.applied
    );
    assert!(
        since().contains(&created),
        "the round after the restart did not report `{created}`:\n{}",
        tail(&since(), 30)
    );
    assert!(
        wait_until(Duration::from_secs(5), || converged(
            &master_home,
            &worker.home
        )),
        "the restarted worker did not converge: {}{}",
        differences(&master_home, &worker.home),
        logs(&[("worker", &worker), ("master", &master)])
    );
    let recovered = restarted.elapsed();
    let since = since();

    let after = tree(&worker.home);
    assert!(
        after.temporaries.is_empty(),
        "temporary files are still there after the round: {:?}",
        after.temporaries
    );
    for rel in left.temporaries.keys() {
        let dir = Path::new(rel)
            .parent()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let removed = format!("temporary file(s) left in {dir} by an interrupted update.");
        assert!(
            since.contains(&removed),
            "no warning about the removal of {rel}:\n{}",
            tail(&since, 30)
        );
    }
    // The received package and its unpack directory do not outlive the process that received them.
    let transfer_dir = worker.home.join("queue/cluster").join(WORKER);
    for name in &left.transfers {
        assert!(
            !transfer_dir.join(name).exists(),
            "queue/cluster/{WORKER}/{name} is still there after the restart"
        );
    }
    eprintln!(
        "{version}: restarted worker converged in {:.1}s; whole test {:.1}s",
        recovered.as_secs_f64(),
        clock.elapsed().as_secs_f64()
    );
}

#[test]
fn a_worker_killed_while_applying_keeps_whole_files_and_converges_in_the_4_14_dialect() {
    crash_and_recover("4.14.7");
}

#[test]
fn a_worker_killed_while_applying_keeps_whole_files_and_converges_in_the_4_3_dialect() {
    crash_and_recover("4.3.11");
}
