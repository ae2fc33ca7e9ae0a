//! The fault matrix: real daemons under faults, both dialects. Every case ends with the worker
//! holding exactly the master's files, no `.<name>.tmp` partial file on either node, no stray file
//! in either node's `queue/cluster/`, and the surviving daemon's memory and open descriptors back
//! near their level before the fault.
//!
//! Cases: the master killed with SIGKILL in the middle of a sync; the master restarted while
//! agents register and report through the worker; the worker's disk full during a sync and the
//! master's during a sync (small tmpfs mounts made here, then grown); the master's wazuh-db disk
//! full during an agent-info apply; a corrupted package; a slow
//! and a dead wazuh-db under the master (the stand-in of `clusterd::harness::wdb_standin`); a
//! thousand reconnects in a minute from scripted peers while a real worker stays in sync; a
//! configuration error on restart. The worker killed mid-apply is `tests/crash_during_apply.rs`;
//! the partition is `tests/partition.rs`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clusterd::harness::wdb_standin::{Behaviour, WdbStandIn};
use clusterd::harness::{free_port, wait_until, Daemon, NodeSpec, ScriptedPeer, DEMO_KEY};
use clusterd::proto::command::Command as Wire;
use clusterd::store::WazuhDb;

use common::faults::{
    assert_clean_convergence, assert_near, footprint, noise, populate, stray_scratch, T,
};
use common::load::Load;
use common::{intervals, logs, tree, DAEMON};

const DIALECTS: [&str; 2] = ["4.3.11", "4.14.7"];

fn start_master(root: &Path, version: &str) -> (Daemon, u16) {
    start_master_with(root, version, "")
}

/// The test intervals with agent-info rounds every 2 s.
fn agent_intervals() -> serde_json::Value {
    let mut json = intervals();
    json["intervals"]["worker"]["sync_agent_info"] = 2.into();
    json
}

/// A master whose wazuh-db is the stand-in, its database at `db_file` (started first, so the
/// daemon finds wazuh-db's sockets and uses them).
fn start_master_on_standin(
    root: &Path,
    version: &str,
    db_file: &Path,
) -> (Daemon, WdbStandIn, u16) {
    let port = free_port().unwrap();
    let home = root.join("master");
    NodeSpec::master(port)
        .with_cluster_json(agent_intervals())
        .write(&home)
        .unwrap();
    let wdb = WdbStandIn::start(&home, db_file).unwrap();
    let master = common::start_written_master(&home, version);
    (master, wdb, port)
}

fn start_agent_worker(root: &Path, port: u16, version: &str) -> Daemon {
    let home = root.join("worker1");
    NodeSpec::worker("worker1", port)
        .with_cluster_json(agent_intervals())
        .write(&home)
        .unwrap();
    let worker = Daemon::start(Path::new(DAEMON), &home, &["--wazuh-version", version]).unwrap();
    assert!(
        worker.wait_for_log("Successfully connected to master.", T),
        "{}",
        worker.log()
    );
    worker
}

/// Each agent's connection status in a node's agent database, by id.
fn statuses(home: &Path) -> Vec<(u64, String)> {
    let db = clusterd::store::WdbSocket::new(
        home.join("queue/db/wdb"),
        home.join("queue/sockets/wdb-http.sock"),
    );
    let sql = "global sql SELECT id, connection_status FROM agent WHERE id > 0 ORDER BY id";
    db.query(sql)
        .ok()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.payload).ok())
        .and_then(|v| {
            v.as_array()?
                .iter()
                .map(|a| {
                    Some((
                        a["id"].as_u64()?,
                        a["connection_status"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The master's database holds every agent of the worker with the worker's latest status.
fn agents_agree(master: &Path, worker: &Path) -> bool {
    let on_worker = statuses(worker);
    !on_worker.is_empty() && statuses(master) == on_worker
}

/// Registers `count` agents through `worker` and waits until the master holds them all.
fn agents_reporting(master: &Daemon, worker: &Daemon, count: u32, version: &str) -> Load {
    let load = Load::start(&worker.home, count, 120, 2);
    assert!(
        wait_until(T, || load
            .output()
            .contains(&format!("registered {count}/{count}"))),
        "{version}: {}",
        load.output()
    );
    assert!(
        wait_until(T, || agents_on(&master.home, "worker1") == count as usize),
        "{version}: the master knows {} agents of worker1{}",
        agents_on(&master.home, "worker1"),
        logs(&[("master", master), ("worker", worker)])
    );
    load
}

/// A master with `toml` as its `etc/clusterd.toml`.
fn start_master_with(root: &Path, version: &str, toml: &str) -> (Daemon, u16) {
    let port = free_port().unwrap();
    let home = root.join("master");
    NodeSpec::master(port)
        .with_cluster_json(intervals())
        .write(&home)
        .unwrap();
    fs::write(home.join("etc/clusterd.toml"), toml).unwrap();
    let master = common::start_written_master(&home, version);
    (master, port)
}

fn start_worker(home: &Path, port: u16, version: &str) -> Daemon {
    let worker = common::start(NodeSpec::worker("worker1", port), home, version);
    assert!(
        worker.wait_for_log("Successfully connected to master.", T),
        "{}",
        worker.log()
    );
    worker
}

/// Mounts a tmpfs of `size` (e.g. `"4m"`) at `dir` (made if missing); unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0770"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mount tmpfs at {} (the tests run as root)",
            dir.display()
        );
        Tmpfs(dir.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("mount runs");
        assert!(status.success(), "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Agents the master's database holds for `node`.
fn agents_on(master: &Path, node: &str) -> usize {
    let db = clusterd::store::WdbSocket::new(
        master.join("queue/db/wdb"),
        master.join("queue/sockets/wdb-http.sock"),
    );
    let sql =
        format!("global sql SELECT COUNT(*) AS n FROM agent WHERE id > 0 AND node_name = '{node}'");
    db.query(&sql)
        .ok()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.payload).ok())
        .and_then(|v| v[0]["n"].as_u64())
        .unwrap_or(0) as usize
}

#[test]
fn the_master_killed_mid_sync() {
    for version in DIALECTS {
        let root = tempfile::tempdir().unwrap();
        let (mut master, port) = start_master(root.path(), version);
        populate(&master.home, 40, 1 << 20, 1);
        let worker = start_worker(&root.path().join("worker1"), port, version);
        let before = footprint(&worker);
        // The package is on its way (part of it on the worker's disk): kill the master.
        let transfer = root.path().join("worker1/queue/cluster/worker1");
        let caught = wait_until(T, || {
            fs::read_dir(&transfer)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.metadata().is_ok_and(|m| m.len() > 0))
        });
        assert!(
            caught,
            "{version}: no package arrived{}",
            logs(&[("master", &master), ("worker", &worker)])
        );
        master.kill9();
        // The worker drops what it received, keeps whole files only, and waits for the master.
        assert!(
            wait_until(T, || stray_scratch(&worker.home).is_empty()),
            "{version}: {:?}",
            stray_scratch(&worker.home)
        );
        assert!(tree(&worker.home).temporaries.is_empty());
        master.restart().unwrap();
        assert_clean_convergence(&master, &worker, version);
        assert_near(before, &worker, &format!("{version} worker"));
    }
}

#[test]
fn the_master_restarted_under_load() {
    for version in DIALECTS {
        let root = tempfile::tempdir().unwrap();
        let (mut master, port) = start_master(root.path(), version);
        populate(&master.home, 20, 64 * 1024, 1);
        let worker = start_worker(&root.path().join("worker1"), port, version);
        let load = Load::start(&worker.home, 300, 60, 2);
        assert!(
            wait_until(T, || load.output().contains("registered 300/300")),
            "{version}: {}",
            load.output()
        );
        assert_clean_convergence(&master, &worker, version);
        let before = footprint(&worker);
        // Restart while the agents keep reporting and a file changes.
        master.stop();
        populate(&master.home, 20, 64 * 1024, 2);
        master.restart().unwrap();
        assert_clean_convergence(&master, &worker, version);
        assert!(
            wait_until(T, || agents_on(&master.home, "worker1") == 300),
            "{version}: the master knows {} agents of worker1",
            agents_on(&master.home, "worker1")
        );
        assert_near(before, &worker, &format!("{version} worker"));
    }
}

#[test]
fn the_workers_disk_full_during_a_sync() {
    for version in DIALECTS {
        let root = tempfile::tempdir().unwrap();
        let (master, port) = start_master(root.path(), version);
        populate(&master.home, 4, 256 * 1024, 1);
        let home = root.path().join("worker1");
        // The worker's whole install root on a small filesystem.
        let disk = Tmpfs::mount(&home, "6m");
        let worker = start_worker(&home, port, version);
        assert_clean_convergence(&master, &worker, version);
        let before = footprint(&worker);
        // A sync larger than the space left: refused with an error, the old files kept whole.
        let old = tree(&worker.home).files;
        populate(&master.home, 4, 256 * 1024, 2);
        populate(&master.home, 40, 256 * 1024, 3);
        assert!(
            wait_until(T, || master
                .log()
                .contains("The worker could not take the package")
                && worker.log().contains("No space left on device")),
            "{version}: no error{}",
            logs(&[("master", &master), ("worker", &worker)])
        );
        let now = tree(&worker.home);
        assert!(
            now.temporaries.is_empty(),
            "{version}: {:?}",
            now.temporaries
        );
        for (rel, (content, _)) in &now.files {
            let whole = old.get(rel).is_some_and(|(c, _)| c == content)
                || tree(&master.home)
                    .files
                    .get(rel)
                    .is_some_and(|(c, _)| c == content);
            assert!(
                whole,
                "{version}: {rel} is neither the old nor the new file"
            );
        }
        // Space comes back: the next rounds converge.
        disk.resize("64m");
        assert_clean_convergence(&master, &worker, version);
        assert_near(before, &worker, &format!("{version} worker"));
        drop(worker);
    }
}

#[test]
fn the_masters_disk_full_during_a_sync() {
    for version in DIALECTS {
        let root = tempfile::tempdir().unwrap();
        let port = free_port().unwrap();
        let home = root.path().join("master");
        NodeSpec::master(port)
            .with_cluster_json(intervals())
            .write(&home)
            .unwrap();
        // The master's transfer directory on a filesystem too small for the package.
        let disk = Tmpfs::mount(&home.join("queue/cluster"), "1m");
        let master = common::start_written_master(&home, version);
        populate(&master.home, 8, 256 * 1024, 1);
        let worker = start_worker(&root.path().join("worker1"), port, version);
        let before = footprint(&master);
        // The master cannot build the package: the worker hears an error and keeps its files.
        assert!(
            wait_until(T, || worker.log().contains("Error synchronizing files")),
            "{version}: the worker was not told{}",
            logs(&[("master", &master), ("worker", &worker)])
        );
        assert!(tree(&worker.home).temporaries.is_empty());
        disk.resize("64m");
        assert_clean_convergence(&master, &worker, version);
        assert_near(before, &master, &format!("{version} master"));
    }
}

#[test]
fn a_thousand_reconnects_in_a_minute_while_a_worker_stays_in_sync() {
    for version in DIALECTS {
        let root = tempfile::tempdir().unwrap();
        let (master, port) =
            start_master_with(root.path(), version, "connections_per_ip_max = 200\n");
        populate(&master.home, 10, 16 * 1024, 1);
        let worker = start_worker(&root.path().join("worker1"), port, version);
        assert_clean_convergence(&master, &worker, version);
        let before = footprint(&master);
        let started = Instant::now();
        let churn = std::thread::spawn(move || {
            let mut refused = 0;
            for i in 0..1000 {
                let Ok(mut peer) = ScriptedPeer::connect(&format!("127.0.0.1:{port}"), DEMO_KEY)
                else {
                    refused += 1;
                    continue;
                };
                let hello = format!("churn{i} wazuh worker {version}");
                match peer.request("hello", hello.as_bytes(), Duration::from_secs(10)) {
                    Ok((Wire::Ok, _)) => {}
                    _ => refused += 1,
                }
            }
            refused
        });
        // Meanwhile files change on the master, and the real worker follows.
        for generation in 2..6 {
            populate(&master.home, 10, 16 * 1024, generation);
            assert_clean_convergence(&master, &worker, version);
        }
        let refused = churn.join().unwrap();
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(60),
            "{version}: 1,000 reconnects took {took:?}"
        );
        assert_eq!(
            refused, 0,
            "{version}: {refused} of 1,000 reconnects refused"
        );
        assert_clean_convergence(&master, &worker, version);
        assert_near(before, &master, &format!("{version} master"));
    }
}

#[test]
fn a_configuration_error_on_restart_touches_nothing() {
    for version in DIALECTS {
        let root = tempfile::tempdir().unwrap();
        let (master, port) = start_master(root.path(), version);
        populate(&master.home, 5, 4096, 1);
        let mut worker = start_worker(&root.path().join("worker1"), port, version);
        assert_clean_convergence(&master, &worker, version);
        worker.stop();
        let synced = tree(&worker.home).files;
        // A broken cluster.json: refused with the file and position, nothing changed.
        let json = worker.home.join("etc/cluster.json");
        let good = fs::read_to_string(&json).unwrap();
        fs::write(
            &json,
            "{\"intervals\": {\"worker\": {\"sync_integrity\": }}}",
        )
        .unwrap();
        let (code, _, stderr) = clusterd::harness::run_with_home(
            Path::new(DAEMON),
            &worker.home,
            &["-f", "-r", "--wazuh-version", version],
        );
        assert_eq!(code, 1, "{version}: {stderr}");
        assert!(stderr.contains("cluster.json"), "{version}: {stderr}");
        assert_eq!(tree(&worker.home).files, synced, "{version}: files changed");
        assert!(!worker.home.join("var/run/wazuh-clusterd.lock").exists());
        // Fixed, the worker starts and follows the master again.
        fs::write(&json, good).unwrap();
        populate(&master.home, 5, 4096, 2);
        worker.restart().unwrap();
        assert_clean_convergence(&master, &worker, version);
    }
}

#[test]
fn the_masters_disk_full_during_an_agent_info_apply() {
    for version in DIALECTS {
        let root = tempfile::tempdir().unwrap();
        // wazuh-db's database on a small filesystem of its own.
        let dbdir = root.path().join("wdb");
        let disk = Tmpfs::mount(&dbdir, "16m");
        let db_file = dbdir.join("global.db");
        let (master, _wdb, port) = start_master_on_standin(root.path(), version, &db_file);
        let worker = start_agent_worker(root.path(), port, version);
        let load = agents_reporting(&master, &worker, 200, version);
        // The write-ahead log emptied, then the filesystem filled: the next stores need space.
        let sqlite = rusqlite::Connection::open(&db_file).unwrap();
        sqlite
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        drop(sqlite);
        let filler = dbdir.join("filler");
        let _ = fs::write(&filler, vec![0u8; 16 << 20]);
        // The master answers the rounds with an error; the worker keeps its records.
        assert!(
            wait_until(T, || {
                master.log().contains("disk is full")
                    && worker
                        .log()
                        .lines()
                        .any(|l| l.contains("ERROR") && l.contains("[Agent-info sync]"))
            }),
            "{version}: no store failed, or the worker was not told{}",
            logs(&[("master", &master), ("worker", &worker)])
        );
        drop(load);
        assert!(
            !worker.log().contains("Skipped"),
            "{version}: {}",
            worker.log()
        );
        // Space comes back: the agents' latest statuses reach the master.
        fs::remove_file(&filler).unwrap();
        assert!(
            wait_until(T, || agents_agree(&master.home, &worker.home)),
            "{version}: master {:?}\nworker {:?}{}",
            statuses(&master.home).len(),
            statuses(&worker.home).len(),
            logs(&[("master", &master), ("worker", &worker)])
        );
        assert_clean_convergence(&master, &worker, version);
        drop(disk);
    }
}

#[test]
fn a_slow_and_a_dead_wazuh_db_under_the_master() {
    for version in DIALECTS {
        let root = tempfile::tempdir().unwrap();
        let db_file = root.path().join("global.db");
        let (master, wdb, port) = start_master_on_standin(root.path(), version, &db_file);
        let worker = start_agent_worker(root.path(), port, version);
        let load = agents_reporting(&master, &worker, 100, version);
        let before = footprint(&master);
        // Every answer late: files keep flowing.
        wdb.set(Behaviour::Slow(Duration::from_secs(3)));
        populate(&master.home, 5, 4096, 2);
        assert_clean_convergence(&master, &worker, version);
        // wazuh-db hangs: the agent rounds fail, the file sync goes on, the worker stays.
        wdb.set(Behaviour::Dead);
        populate(&master.home, 5, 4096, 3);
        assert_clean_convergence(&master, &worker, version);
        assert!(
            wait_until(T, || master.log().contains("[Agent-info sync]")
                && master
                    .log()
                    .lines()
                    .any(|l| l.contains("ERROR") && l.contains("Agent-info"))),
            "{version}: no agent-info failure{}",
            logs(&[("master", &master), ("worker", &worker)])
        );
        assert!(master.log().contains("worker1"));
        // wazuh-db is back: what the worker kept arrives.
        wdb.set(Behaviour::Normal);
        drop(load);
        assert!(
            wait_until(T, || agents_agree(&master.home, &worker.home)),
            "{version}: master and worker disagree{}",
            logs(&[("master", &master), ("worker", &worker)])
        );
        assert_clean_convergence(&master, &worker, version);
        assert_near(before, &master, &format!("{version} master"));
    }
}

#[test]
fn a_corrupted_package_is_refused_and_leaves_nothing() {
    for version in DIALECTS {
        let root = tempfile::tempdir().unwrap();
        let (master, port) = start_master(root.path(), version);
        populate(&master.home, 5, 4096, 1);
        let worker = start_worker(&root.path().join("worker1"), port, version);
        assert_clean_convergence(&master, &worker, version);
        let before = footprint(&master);
        // A worker whose metadata package arrives whole (its digest matches) but is garbage.
        let mut evil = ScriptedPeer::connect(&format!("127.0.0.1:{port}"), DEMO_KEY).unwrap();
        let hello = format!("evil wazuh worker {version}");
        let (command, _) = evil.request("hello", hello.as_bytes(), T).unwrap();
        assert_eq!(command, Wire::Ok, "{version}");
        assert!(wait_until(T, || evil
            .request("syn_i_w_m_p", b"", T)
            .is_ok_and(|(_, a)| a == b"True")));
        let (_, task) = evil.request("syn_i_w_m", b"", T).unwrap();
        let task = String::from_utf8(task).unwrap();
        let rel = "queue/cluster/evil/evil-1700000000.zip";
        let mut garbage = b"PK\x03\x04".to_vec();
        garbage.extend(noise(9, 64 * 1024));
        evil.send_file(rel, &garbage, T).unwrap();
        let _ = evil.request("syn_i_w_m_e", format!("{task} {rel}").as_bytes(), T);
        assert!(
            wait_until(T, || master
                .log()
                .lines()
                .any(|l| l.contains("evil") && l.contains("ERROR"))),
            "{version}: the master took the package{}",
            master.log()
        );
        // Nothing of it is kept, and the real worker goes on following the master.
        assert!(
            wait_until(Duration::from_secs(20), || !master
                .home
                .join("queue/cluster/evil")
                .read_dir()
                .is_ok_and(|mut d| d.next().is_some())),
            "{version}: {:?}",
            stray_scratch(&master.home)
        );
        drop(evil);
        populate(&master.home, 5, 4096, 2);
        assert_clean_convergence(&master, &worker, version);
        assert_near(before, &master, &format!("{version} master"));
    }
}
