//! Integrity sync with real processes: two empty workers converge byte for byte (with the item
//! permissions) to a master holding 50,000 agent keys, 100 groups, and 50 files each of rules,
//! decoders and lists; then edits on the master converge within two `sync_integrity` intervals, and a
//! file changed on a worker is restored. Both dialects.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use clusterd::harness::{free_port, wait_until, Daemon, NodeSpec};
use clusterd::store::{WazuhDb, WdbSocket};
use common::{converged, differences, write, DAEMON};
use serde_json::json;

const SYNC_S: u64 = 2;
const RECALCULATE_S: u64 = 1;

/// The master's tree: 50,000 keys, 100 groups of 3 files, 50 rules, decoders and lists.
fn populate_master(home: &Path) {
    let mut keys = String::with_capacity(50_000 * 90);
    for id in 1..=50_000u32 {
        keys.push_str(&format!(
            "{id:03} agent{id:05} any {:064x}\n",
            u128::from(id) * 0x9e37_79b9_7f4a_7c15
        ));
    }
    write(home, "etc/client.keys", keys.as_bytes());
    for g in 0..100 {
        write(
            home,
            &format!("etc/shared/group{g:03}/agent.conf"),
            format!("<agent_config><!-- group {g} --></agent_config>\n").as_bytes(),
        );
        write(
            home,
            &format!("etc/shared/group{g:03}/merged.mg"),
            format!("#group{g}\n{}", "x".repeat(g * 37)).as_bytes(),
        );
        write(
            home,
            &format!("etc/shared/group{g:03}/ar.conf"),
            b"restart-ossec0 - restart-ossec.sh - 0\n",
        );
    }
    for i in 0..50 {
        write(
            home,
            &format!("etc/rules/rules_{i:02}.xml"),
            format!(
                "<group name=\"r{i}\"><rule id=\"{}\" level=\"3\"/></group>\n",
                100_000 + i
            )
            .as_bytes(),
        );
        write(
            home,
            &format!("etc/decoders/decoder_{i:02}.xml"),
            format!("<decoder name=\"d{i}\"><prematch>^d{i}</prematch></decoder>\n").as_bytes(),
        );
        write(
            home,
            &format!("etc/lists/list_{i:02}"),
            format!("key{i}:value{i}\n").repeat(i + 1).as_bytes(),
        );
    }
}

fn intervals() -> serde_json::Value {
    json!({"intervals": {
        "worker": {"sync_integrity": SYNC_S, "keep_alive": 2, "connection_retry": 1},
        "master": {"recalculate_integrity": RECALCULATE_S}
    }})
}

fn converge(version: &str) {
    let root = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let args = ["--wazuh-version", version];
    let master_home = root.path().join("master");
    NodeSpec::master(port)
        .with_cluster_json(intervals())
        .write(&master_home)
        .unwrap();
    populate_master(&master_home);
    let master = Daemon::start(Path::new(DAEMON), &master_home, &args).unwrap();
    // The agent of the worker's extra-valid file is one the master's database knows: a 4.3 master
    // takes agent-group files of its own agents only.
    let wdb = master_home.join("queue/db/wdb");
    assert!(
        wait_until(Duration::from_secs(20), || wdb.exists()),
        "{}",
        master.log()
    );
    let reply = WdbSocket::new(wdb, master_home.join("queue/sockets/wdb-http.sock"))
        .query(r#"global insert-agent {"id":42,"name":"agent42","ip":"any","date_add":1700000000}"#)
        .unwrap();
    assert_eq!(reply.to_text(), "ok");
    let workers: Vec<Daemon> = ["worker1", "worker2"]
        .iter()
        .map(|name| {
            let home = root.path().join(name);
            NodeSpec::worker(name, port)
                .with_cluster_json(intervals())
                .write(&home)
                .unwrap();
            if *name == "worker1" {
                // An agent registered on this worker only: its group file is extra-valid in 4.3.
                write(&home, "queue/agent-groups/042", b"default,linux\n");
            }
            Daemon::start(Path::new(DAEMON), &home, &args).unwrap()
        })
        .collect();

    let started = Instant::now();
    for w in &workers {
        assert!(
            wait_until(Duration::from_secs(90), || converged(&master_home, &w.home)),
            "{} did not converge: {}\n--- master log\n{}\n--- worker log\n{}",
            w.home.display(),
            differences(&master_home, &w.home),
            master.log(),
            w.log()
        );
    }
    eprintln!(
        "{version}: two empty workers converged in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    if version.starts_with("4.3") {
        // The worker's agent-group file went to the master (extra-valid) and stayed on the worker.
        let group = master_home.join("queue/agent-groups/042");
        assert!(
            wait_until(Duration::from_secs(10), || fs::read(&group)
                .is_ok_and(|c| c == b"default,linux\n")),
            "{}",
            master.log()
        );
        assert_eq!(
            fs::metadata(&group).unwrap().permissions().mode() & 0o777,
            0o660
        );
        assert!(workers[0].home.join("queue/agent-groups/042").exists());
        assert!(
            workers[0].wait_for_log("| Files to send: 1", Duration::from_secs(5)),
            "{}",
            workers[0].log()
        );
    }
    // The files are in place before the apply job's report reaches the log.
    assert!(
        workers[0].wait_for_log("[Integrity sync] Files to create: ", Duration::from_secs(5)),
        "{}",
        workers[0].log()
    );
    assert!(
        master
            .log()
            .contains("[Master] [Local integrity] Finished in"),
        "{}",
        master.log()
    );

    // One modified rule, one new group, one deleted decoder: converge within two sync intervals
    // (plus the master's recalculation).
    write(
        &master_home,
        "etc/rules/rules_07.xml",
        b"<group name=\"changed\"><rule id=\"100007\" level=\"5\"/></group>\n",
    );
    write(
        &master_home,
        "etc/shared/newgroup/agent.conf",
        b"<agent_config/>\n",
    );
    fs::remove_file(master_home.join("etc/decoders/decoder_13.xml")).unwrap();
    // Two worker intervals, plus the master's recalculation that must see the edit first.
    let limit = Duration::from_secs(2 * SYNC_S + RECALCULATE_S);
    let edited = Instant::now();
    for w in &workers {
        assert!(
            wait_until(limit, || converged(&master_home, &w.home)),
            "edits did not converge: {}",
            differences(&master_home, &w.home)
        );
    }
    eprintln!(
        "{version}: edits converged in {:.1}s",
        edited.elapsed().as_secs_f64()
    );

    // A file changed on a worker is restored.
    write(&workers[1].home, "etc/lists/list_03", b"tampered\n");
    assert!(
        wait_until(limit, || converged(&master_home, &workers[1].home)),
        "not restored: {}",
        differences(&master_home, &workers[1].home)
    );
}

#[test]
fn empty_workers_converge_in_the_4_3_dialect() {
    converge("4.3.11");
}

#[test]
fn empty_workers_converge_in_the_4_14_dialect() {
    converge("4.14.7");
}
