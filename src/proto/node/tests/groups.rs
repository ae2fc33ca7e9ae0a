//! Agent groups in the simulation (4.14 dialect): the master's assignments reach every worker,
//! a worker that drifts asks for everything and is restored, and a worker is told about an agent
//! only once it holds the agent's key.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::proto::jobs::AgentKeys;
use crate::store::WdbStatus;

const GROUPS: [&str; 3] = ["default", "web", "db"];

/// 4.14 settings with a fast agent-groups loop.
fn fast(name: &str, master: bool) -> NodeSettings {
    let mut s = settings(name, master, "wazuh", "4.14.7", KEY);
    s.agents.agent_group_start_delay = Duration::from_secs(1);
    s.agents.sync_agent_groups = Duration::from_secs(1);
    s.agents.timeout_agent_groups = Duration::from_secs(5);
    s.agents.agent_groups_mismatch_limit = 3;
    s
}

fn sim(workers: usize) -> Sim {
    let names: Vec<String> = (1..=workers).map(|i| format!("w{i}")).collect();
    let mut sim = Sim::new(
        fast("master", true),
        names.iter().map(|n| fast(n, false)).collect(),
    );
    for node in std::iter::once(None).chain((0..workers).map(Some)) {
        for group in GROUPS {
            sim.query(node, &format!("global insert-agent-group {group}"));
        }
    }
    sim
}

/// Asserts `log` has a line containing each of `texts`, in this order.
fn assert_lines(log: &str, texts: &[&str]) {
    let mut rest = log;
    for text in texts {
        let Some(at) = rest.find(text) else {
            panic!("no line with {text:?} (in order) in:\n{log}");
        };
        rest = &rest[at + text.len()..];
    }
}

impl Sim {
    fn query(&mut self, node: Option<usize>, command: &str) -> String {
        let reply = self.agent_env(node).db.query(command).unwrap();
        assert_eq!(reply.status, WdbStatus::Ok, "{command}: {reply:?}");
        reply.payload
    }

    /// Registers an agent on the master with its groups, pending for the workers.
    fn add_agent(&mut self, id: u32, groups: &[&str]) {
        self.query(
            None,
            &format!(
                r#"global insert-agent {{"id":{id},"name":"agent{id}","ip":"any","date_add":1000}}"#
            ),
        );
        self.set_groups(None, id, groups, "syncreq");
    }

    fn set_groups(&mut self, node: Option<usize>, id: u32, groups: &[&str], status: &str) {
        let groups = serde_json::to_string(groups).unwrap();
        self.query(
            node,
            &format!(r#"global set-agent-groups {{"mode":"override","sync_status":"{status}","data":[{{"id":{id},"name":"agent{id}","groups":{groups}}}]}}"#),
        );
    }

    /// `(id, groups)` of every agent a node's database holds.
    fn groups_of(&mut self, node: Option<usize>) -> Vec<(u64, Option<String>)> {
        let rows: Value = serde_json::from_str(&self.query(
            node,
            "global sql SELECT id, `group` FROM agent WHERE id > 0 ORDER BY id",
        ))
        .unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_u64().unwrap(),
                    r["group"].as_str().map(str::to_string),
                )
            })
            .collect()
    }

    fn global_hash(&mut self, node: Option<usize>) -> Value {
        let page: Value = serde_json::from_str(&self.query(
            node,
            r#"global sync-agent-groups-get {"get_global_hash":true}"#,
        ))
        .unwrap();
        page[0]["hash"].clone()
    }

    /// Gives a node's `etc/client.keys` these agents, as its next integrity metadata will show.
    fn hold_keys(&mut self, node: &str, digest: &str, ids: &[u32]) {
        self.client_keys.insert(
            node.to_string(),
            AgentKeys {
                digest: Some(digest.to_string()),
                ids: Arc::new(ids.iter().copied().collect()),
            },
        );
    }
}

/// One worker; it and the master hold the keys of agents 1 and 2.
fn one_worker_holding_keys_1_and_2() -> Sim {
    let mut sim = sim(1);
    for node in ["master", "w1"] {
        sim.hold_keys(node, "k1", &[1, 2]);
    }
    sim
}

/// Agent 1 synced to the worker; then the worker's database stalls while agent 2's groups are on
/// their way.
fn agent_2_on_its_way_to_a_stalled_worker() -> Sim {
    let mut sim = one_worker_holding_keys_1_and_2();
    sim.add_agent(1, &["default"]);
    sim.run_for(Duration::from_secs(5));
    sim.hold_agent_jobs.push(Some(0));
    sim.add_agent(2, &["web"]);
    sim
}

#[test]
fn groups_assigned_on_the_master_reach_every_worker() {
    let mut sim = sim(2);
    for node in ["master", "w1", "w2"] {
        sim.hold_keys(node, "k1", &[1, 2, 3]);
    }
    sim.add_agent(1, &["default"]);
    sim.add_agent(2, &["web", "default"]);
    sim.add_agent(3, &["db"]);
    let log = logged(|| sim.run_for(Duration::from_secs(8)));
    assert_lines(
        &log,
        &[
            "INFO: [Master] [Local agent-groups] Sleeping 1s before starting the agent-groups task, waiting for the workers connection.",
            "INFO: [Master] [Local agent-groups] Starting.",
            "INFO: [Master] [Local agent-groups] Finished in 0.000s.",
            "INFO: [Worker w1] [Agent-groups send] Starting.",
            "INFO: [Worker w1] [Agent-groups recv] Starting.",
            "INFO: [Worker w1] [Agent-groups recv] Finished in 0.000s. Updated 1 chunks.",
            "INFO: [Worker w1] [Agent-groups send] Finished in 0.000s. Updated 1 chunks.",
        ],
    );
    assert!(!log.contains("ERROR"), "{log}");
    let expected = sim.groups_of(None);
    assert_eq!(expected.len(), 3);
    for w in 0..2 {
        assert_eq!(sim.groups_of(Some(w)), expected, "worker {w}");
        assert_eq!(sim.global_hash(Some(w)), sim.global_hash(None));
    }
    // A change on the master follows in the next rounds.
    sim.set_groups(None, 3, &["web", "db"], "syncreq");
    sim.run_for(Duration::from_secs(3));
    let expected = sim.groups_of(None);
    for w in 0..2 {
        assert_eq!(sim.groups_of(Some(w)), expected, "worker {w}");
    }
    let health = sim.local_call(None, "get_health", b"null");
    let status = &health["nodes"]["w1"]["status"]["last_sync_agentgroup"];
    assert_ne!(status["date_end"], "n/a");
    assert_eq!(status["n_synced_chunks"], 1);
    assert_eq!(
        health["nodes"]["w1"]["status"]["last_sync_full_agentgroup"]["date_end"],
        "n/a"
    );
}

#[test]
fn a_drifting_worker_asks_for_everything_and_is_restored() {
    let mut sim = one_worker_holding_keys_1_and_2();
    sim.add_agent(1, &["default"]);
    sim.add_agent(2, &["web"]);
    sim.run_for(Duration::from_secs(8));
    let expected = sim.groups_of(None);
    assert_eq!(sim.groups_of(Some(0)), expected);
    // Someone changes the worker's database behind the cluster's back.
    sim.set_groups(Some(0), 1, &["db"], "synced");
    sim.set_groups(Some(0), 2, &["db"], "synced");
    assert_ne!(sim.groups_of(Some(0)), expected);
    // Three mismatching rounds (the limit), then the full send.
    let log = logged(|| sim.run_for(Duration::from_secs(6)));
    assert_lines(
        &log,
        &[
            "DEBUG: [Worker w1] [Agent-groups recv] Checksum comparison failed (1/3).",
            "DEBUG: [Worker w1] [Agent-groups recv] Checksum comparison failed (3/3).",
            "INFO: [Worker w1] [Agent-groups recv] Sent request to obtain all agent-groups information from the master node.",
            "INFO: [Worker w1] [Agent-groups send full] Starting.",
            "INFO: [Worker w1] [Agent-groups recv full] Starting.",
            "INFO: [Worker w1] [Agent-groups recv full] Finished in 0.000s. Updated 1 chunks.",
            "INFO: [Worker w1] [Agent-groups send full] Finished in 0.000s. Updated 1 chunks.",
            "DEBUG: [Worker w1] [Agent-groups recv] The checksum of both databases match.",
        ],
    );
    assert_eq!(sim.groups_of(Some(0)), expected);
    assert_eq!(sim.global_hash(Some(0)), sim.global_hash(None));
    let health = sim.local_call(None, "get_health", b"null");
    let full = &health["nodes"]["w1"]["status"]["last_sync_full_agentgroup"];
    assert_ne!(full["date_end"], "n/a");
    assert_eq!(full["n_synced_chunks"], 1);
}

#[test]
fn an_agent_reaches_a_worker_only_once_it_holds_the_agents_key() {
    let mut sim = one_worker_holding_keys_1_and_2();
    sim.add_agent(1, &["default"]);
    sim.add_agent(2, &["web"]);
    sim.run_for(Duration::from_secs(8));
    assert_eq!(sim.groups_of(Some(0)).len(), 2);
    // Agent 3 registers on the master; the worker's keys lag behind.
    sim.hold_keys("master", "k2", &[1, 2, 3]);
    sim.add_agent(3, &["db"]);
    sim.set_groups(None, 1, &["web"], "syncreq");
    // Long enough for the mismatch limit and a full send: that one is filtered too.
    let log = logged(|| sim.run_for(Duration::from_secs(8)));
    assert_lines(
        &log,
        &[
            "DEBUG: [Worker w1] [Agent-groups send] 1 agent-group records wait for this worker to hold their agents' keys.",
            "INFO: [Worker w1] [Agent-groups send full] Starting.",
            "DEBUG: [Worker w1] [Agent-groups send full] 1 agent-group records wait for this worker to hold their agents' keys.",
            "INFO: [Worker w1] [Agent-groups send full] Finished in",
        ],
    );
    let on_worker = sim.groups_of(Some(0));
    assert_eq!(
        on_worker,
        [(1, Some("web".to_string())), (2, Some("web".to_string()))],
        "agent 1's change arrives, agent 3 is held back"
    );
    // The worker's next integrity check shows the new keys; the next round delivers agent 3.
    sim.hold_keys("w1", "k2", &[1, 2, 3]);
    sim.run_for(Duration::from_secs(4));
    assert_eq!(sim.groups_of(Some(0)), sim.groups_of(None));
}

#[test]
fn an_update_that_takes_too_long_is_reported_and_the_next_waits_for_it() {
    let mut sim = agent_2_on_its_way_to_a_stalled_worker();
    let log = logged(|| sim.run_for(Duration::from_secs(8)));
    assert_lines(
        &log,
        &[
            "INFO: [Worker w1] [Agent-groups recv] Starting.",
            "ERROR: [Worker w1] [Agent-groups recv] Timeout while processing agent-groups chunks.",
            "ERROR: [Worker w1] [Agent-groups send] There was an error while processing agent-groups on the peer: Timeout while processing agent-groups chunks.",
        ],
    );
    assert_eq!(
        sim.held_groups(),
        1,
        "the next update waits for the late one"
    );
    assert_eq!(sim.groups_of(Some(0)).len(), 1);
    // The database recovers: the late result is dropped, the waiting update runs and reports.
    sim.hold_agent_jobs.clear();
    let log = logged(|| {
        sim.release_jobs(None);
        sim.run_for(Duration::from_secs(3));
    });
    assert_lines(
        &log,
        &[
            "INFO: [Worker w1] [Agent-groups recv] Starting.",
            "INFO: [Worker w1] [Agent-groups recv] Finished in",
            "INFO: [Worker w1] [Agent-groups send] Finished in",
        ],
    );
    assert_eq!(sim.groups_of(Some(0)), sim.groups_of(None));
}

#[test]
fn what_a_worker_failed_to_store_is_sent_again() {
    let mut sim = agent_2_on_its_way_to_a_stalled_worker();
    sim.run_for(Duration::from_millis(1500));
    assert_eq!(sim.held_groups(), 1);
    // The worker's database fails the update: the master already marked agent 2 synced.
    sim.hold_agent_jobs.clear();
    let log = logged(|| {
        sim.release_jobs(Some("Could not connect to wazuh-db"));
        sim.run_for(Duration::from_secs(3));
    });
    assert_lines(
        &log,
        &[
            "ERROR: [Worker w1] [Agent-groups recv] Could not connect to wazuh-db",
            "ERROR: [Worker w1] [Agent-groups send] There was an error while processing agent-groups on the peer: Could not connect to wazuh-db",
            "INFO: [Worker w1] [Agent-groups send] Starting.",
            "INFO: [Worker w1] [Agent-groups send] Finished in",
        ],
    );
    assert!(
        !log.contains("send full"),
        "sent again, not restored by a full send"
    );
    assert_eq!(sim.groups_of(Some(0)), sim.groups_of(None));
}
