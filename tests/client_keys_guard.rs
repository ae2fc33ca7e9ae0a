//! A worker does not let its master wipe its agents: when the master's `etc/client.keys` suddenly
//! lists fewer than half the agents the worker holds, the worker keeps its file, says why in a
//! WARNING naming the setting that allows it, and still applies the other files of the same round. A
//! worker with `allow_client_keys_shrink = true` in `etc/clusterd.toml` takes the smaller file, and a
//! gradual removal reaches every worker. 4.14 dialect.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use clusterd::harness::{free_port, wait_until, Daemon, NodeSpec};

use common::{converged, differences, item_mode, logs, start, tail, tree, write, CLIENT_KEYS};

const VERSION: &str = "4.14.7";
const RULE: &str = "etc/rules/local_rules_3.xml";

/// A `client.keys` with agents 1 to `agents`; a smaller file is a prefix of a larger one, as when
/// the newest agents are removed.
fn keys(agents: u32) -> Vec<u8> {
    (1..=agents)
        .map(|id| {
            format!(
                "{id:03} agent{id:04} any {:064x}\n",
                u128::from(id) * 0x9e37_79b9_7f4a_7c15
            )
        })
        .collect::<String>()
        .into_bytes()
}

/// Agents listed in a node's `etc/client.keys` (one per line in these tests).
fn agents(home: &Path) -> usize {
    fs::read(home.join(CLIENT_KEYS)).map_or(0, |keys| {
        keys.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
    })
}

fn rule(level: u32) -> Vec<u8> {
    format!("<group name=\"local\"><rule id=\"100003\" level=\"{level}\"/></group>\n").into_bytes()
}

fn populate_master(home: &Path) {
    write(home, CLIENT_KEYS, &keys(1_000));
    for i in 0..5 {
        write(
            home,
            &format!("etc/rules/local_rules_{i}.xml"),
            &if i == 3 {
                rule(3)
            } else {
                format!("<group name=\"r{i}\"/>\n").into_bytes()
            },
        );
    }
    write(
        home,
        "etc/decoders/local_decoder.xml",
        b"<decoder name=\"d\"/>\n",
    );
    write(home, "etc/lists/audit-keys", b"audit-wazuh-w:write\n");
    write(home, "etc/shared/default/agent.conf", b"<agent_config/>\n");
}

/// How many local-integrity calculations of the master have finished / started.
fn calculations(master: &Daemon) -> (usize, usize) {
    let log = master.log();
    (
        log.matches("[Master] [Local integrity] Finished in")
            .count(),
        log.matches("[Master] [Local integrity] Starting.").count(),
    )
}

/// Waits until the master has computed its metadata entirely after this call, so a change made
/// before the call is in every package it builds from then on.
fn wait_for_a_fresh_calculation(master: &Daemon) {
    let (_, started) = calculations(master);
    assert!(
        wait_until(Duration::from_secs(15), || calculations(master).0 > started),
        "the master did not recalculate its metadata:{}",
        logs(&[("master", master)])
    );
}

/// The worker's log from byte `from` on.
fn log_since(worker: &Daemon, from: usize) -> String {
    worker.log().get(from..).unwrap_or_default().to_string()
}

/// What the worker logged after the first line containing `needle` (looking from byte `from` of its
/// log on) up to the end of that round of integrity sync, `[Integrity sync] Finished in ...`
/// included; waits a little for the round to end.
fn rest_of_round(worker: &Daemon, from: usize, needle: &str) -> Option<Vec<String>> {
    let mut rest = None;
    wait_until(Duration::from_secs(5), || {
        let log = log_since(worker, from);
        let mut lines = log.lines().skip_while(|l| !l.contains(needle)).skip(1);
        let mut out = Vec::new();
        for line in lines.by_ref() {
            out.push(line.to_string());
            if line.contains("[Integrity sync] Finished in") {
                rest = Some(out);
                return true;
            }
        }
        false
    });
    rest
}

/// True when the worker holds every synced file of the master but `etc/client.keys`, which is
/// `expected_keys`.
fn converged_but_keys(master: &Path, worker: &Path, expected_keys: &[u8]) -> bool {
    let (mut m, mut w) = (tree(master).files, tree(worker).files);
    let keys = w.remove(CLIENT_KEYS);
    m.remove(CLIENT_KEYS);
    keys.is_some_and(|(content, mode)| content == expected_keys && mode == item_mode(CLIENT_KEYS))
        && m.len() == w.len()
        && m.iter().all(|(rel, (c, _))| {
            w.get(rel)
                .is_some_and(|(wc, mode)| wc == c && *mode == 0o660)
        })
}

#[test]
fn a_worker_keeps_its_agent_keys_when_the_master_suddenly_loses_most_of_them() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let master_home = root.path().join("master");
    populate_master(&master_home);
    let master = start(NodeSpec::master(port), &master_home, VERSION);
    let guarded = start(
        NodeSpec::worker("worker1", port),
        &root.path().join("worker1"),
        VERSION,
    );
    let allowing_home = root.path().join("worker2");
    write(
        &allowing_home,
        "etc/clusterd.toml",
        b"allow_client_keys_shrink = true\n",
    );
    let allowing = start(NodeSpec::worker("worker2", port), &allowing_home, VERSION);
    let all = |m: &Daemon| logs(&[("master", m), ("worker1", &guarded), ("worker2", &allowing)]);
    for w in [&guarded, &allowing] {
        assert!(
            wait_until(Duration::from_secs(30), || converged(&master_home, &w.home)),
            "{} did not converge to 1,000 keys: {}{}",
            w.home.display(),
            differences(&master_home, &w.home),
            all(&master)
        );
    }

    // The master loses 900 of its 1,000 agents; a rule changes right after.
    let (from1, from2) = (guarded.log().len(), allowing.log().len());
    write(&master_home, CLIENT_KEYS, &keys(100));
    wait_for_a_fresh_calculation(&master);
    write(&master_home, RULE, &rule(7));
    assert!(
        wait_until(Duration::from_secs(20), || converged_but_keys(
            &master_home,
            &guarded.home,
            &keys(1_000)
        )),
        "worker1 did not get the new rule while keeping its 1,000 keys: it holds {} agents; {}{}",
        agents(&guarded.home),
        differences(&master_home, &guarded.home),
        all(&master)
    );
    let warning = "WARNING: [Worker worker1] [Integrity sync] etc/client.keys was not replaced: \
                   the master's copy lists 100 agents while this worker holds 1000. A file with \
                   fewer than half the agents is held back in case the master lost its keys; set \
                   allow_client_keys_shrink = true in etc/clusterd.toml to accept it.";
    // The round that brought the rule is one that held the keys back.
    let rule_round =
        "[Integrity sync] Files to create: 0 | Files to update: 1 | Files to delete: 0";
    let rest = rest_of_round(&guarded, from1, rule_round);
    assert!(
        matches!(rest.as_deref(), Some([w, _]) if w.ends_with(warning)),
        "the round that updated the rule did not explain why the keys were kept; expected \
         `{rule_round}`, then `{warning}`, then the end of the round:\n{}",
        tail(&log_since(&guarded, from1), 30)
    );
    assert!(
        wait_until(Duration::from_secs(20), || converged(
            &master_home,
            &allowing.home
        )),
        "worker2 (allow_client_keys_shrink = true) did not take the 100 keys: it holds {} agents; {}{}",
        agents(&allowing.home),
        differences(&master_home, &allowing.home),
        all(&master)
    );
    let since2 = log_since(&allowing, from2);
    assert!(
        !since2.contains("was not replaced"),
        "worker2 held its keys back:\n{}",
        tail(&since2, 30)
    );
    // The next round holds them back again.
    let warned = log_since(&guarded, from1).matches(warning).count();
    assert!(
        wait_until(Duration::from_secs(10), || log_since(&guarded, from1)
            .matches(warning)
            .count()
            > warned),
        "worker1 had no further round holding its keys back:\n{}",
        tail(&log_since(&guarded, from1), 30)
    );
    assert_eq!(
        fs::read(guarded.home.join(CLIENT_KEYS)).unwrap(),
        keys(1_000),
        "worker1 lost its keys"
    );

    // A gradual removal (worker1 goes from 1,000 agents to 900) is applied like any update.
    let from1 = guarded.log().len();
    write(&master_home, CLIENT_KEYS, &keys(900));
    for w in [&guarded, &allowing] {
        assert!(
            wait_until(Duration::from_secs(20), || converged(&master_home, &w.home)),
            "{} did not take the 900 keys: it holds {} agents; {}{}",
            w.home.display(),
            agents(&w.home),
            differences(&master_home, &w.home),
            all(&master)
        );
    }
    let keys_round =
        "[Integrity sync] Files to create: 0 | Files to update: 1 | Files to delete: 0";
    let rest = rest_of_round(&guarded, from1, keys_round);
    assert!(
        matches!(rest.as_deref(), Some([_])),
        "worker1 did not apply the 900 keys in a round of its own without warnings:\n{}",
        tail(&log_since(&guarded, from1), 30)
    );
}
