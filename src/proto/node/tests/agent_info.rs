//! Agent-info sync in the simulation: workers' pending agents reach the master's database, in both
//! dialects, through a busy master and a lost link.

use std::sync::Arc;

use super::*;
use crate::store::{WazuhDb, WdbStatus};

const INTERVAL: Duration = Duration::from_secs(2);
const VERSIONS: [&str; 2] = ["4.14.7", "4.3.11"];

fn cluster(version: &str, adjust: impl Fn(&mut NodeSettings)) -> Sim {
    let mut master = settings("master", true, "wazuh", version, KEY);
    let mut worker = settings("w1", false, "wazuh", version, KEY);
    for s in [&mut master, &mut worker] {
        s.agents.sync_agent_info = INTERVAL;
        adjust(s);
    }
    let mut sim = Sim::new(master, vec![worker]);
    for on in [None, Some(0)] {
        let db = db(&mut sim, on);
        for id in 1..=4 {
            wdb(
                &*db,
                &format!(r#"global insert-agent {{"id":{id},"name":"a{id}","date_add":1}}"#),
            );
        }
    }
    sim
}

fn db(sim: &mut Sim, on: Option<usize>) -> Arc<dyn WazuhDb> {
    sim.agent_env(on).db.clone()
}

fn wdb(db: &dyn WazuhDb, command: &str) -> String {
    let reply = db.query(command).unwrap();
    assert_eq!(reply.status, WdbStatus::Ok, "{command}: {reply:?}");
    reply.payload
}

fn agent(sim: &mut Sim, on: Option<usize>, id: i64) -> Value {
    let db = db(sim, on);
    let info: Value =
        serde_json::from_str(&wdb(&*db, &format!("global get-agent-info {id}"))).unwrap();
    info[0].clone()
}

/// On the worker: agent 1 sends a keepalive, agent 2 disconnects, agent 3 reports new OS data.
fn change_agents(sim: &mut Sim) {
    let db = db(sim, Some(0));
    wdb(
        &*db,
        r#"global update-keepalive {"id":1,"connection_status":"active","sync_status":"syncreq_keepalive"}"#,
    );
    wdb(
        &*db,
        r#"global update-connection-status {"id":2,"connection_status":"disconnected","sync_status":"syncreq_status","status_code":3}"#,
    );
    wdb(
        &*db,
        r#"global sync-agent-info-set [{"id":3,"name":"a3","os_name":"Ubuntu","node_name":"w1","connection_status":"active","group_config_status":"synced"}]"#,
    );
    wdb(
        &*db,
        r#"global update-keepalive {"id":3,"connection_status":"active","sync_status":"syncreq"}"#,
    );
}

/// Whether the master's database shows the changes of [`change_agents`].
fn changes_arrived(sim: &mut Sim) -> bool {
    let (a1, a2, a3) = (
        agent(sim, None, 1),
        agent(sim, None, 2),
        agent(sim, None, 3),
    );
    a1["connection_status"] == "active"
        && a2["connection_status"] == "disconnected"
        && a2["status_code"] == 3
        && a3["os_name"] == "Ubuntu"
        && a3["node_name"] == "w1"
}

fn agent_info_health(sim: &mut Sim) -> Value {
    let health = sim.local_call(None, "get_health", b"null");
    health["nodes"]["w1"]["status"].clone()
}

/// Runs `f` and returns the `cluster.log` lines it wrote (debug included), without their dates.
fn logged(f: impl FnOnce()) -> Vec<String> {
    super::logged(f)
        .lines()
        .filter_map(|l| l.splitn(3, ' ').nth(2))
        .map(str::to_owned)
        .collect()
}

fn has(lines: &[String], wanted: &str) -> bool {
    lines.iter().any(|l| l.starts_with(wanted))
}

/// Both ends see the link break (a crash or a network cut).
fn cut_links(sim: &mut Sim) {
    sim.cut(None);
    sim.settle();
}

#[test]
fn pending_agents_reach_the_master_within_two_intervals() {
    for version in VERSIONS {
        let mut sim = cluster(version, |_| {});
        sim.run_for(Duration::from_secs(1));
        change_agents(&mut sim);
        assert!(!changes_arrived(&mut sim));
        let lines = logged(|| sim.run_for(2 * INTERVAL));
        assert!(changes_arrived(&mut sim), "{version}");
        // 4.14 counts the members of the object (three kinds), 4.3 the chunks (one page).
        let (master_start, chunks, worker_end, idle) = if version.starts_with("4.3") {
            ("Starting", 1, "(1 chunks updated).", "(0 chunks sent).")
        } else {
            (
                "Starting.",
                3,
                "Updated 3 chunks.",
                "No synchronization required, skipping.",
            )
        };
        let tagged = |m: &str| format!("INFO: [Worker w1] [Agent-info sync] {m}");
        for wanted in [
            tagged("Starting."),
            tagged(master_start),
            tagged(&format!("Finished in 0.000s. Updated {chunks} chunks.")),
        ] {
            assert!(lines.contains(&wanted), "{version}: {wanted} in {lines:#?}");
        }
        assert!(
            lines.contains(&tagged(&format!("Finished in 0.000s {worker_end}")))
                || lines.contains(&tagged(&format!("Finished in 0.000s. {worker_end}"))),
            "{version}: {lines:#?}"
        );
        // The next round finds nothing to send.
        let lines = logged(|| sim.run_for(INTERVAL));
        assert!(
            lines.iter().any(|l| l.ends_with(idle)),
            "{version}: {lines:#?}"
        );
        let status = agent_info_health(&mut sim);
        assert_eq!(status["sync_agent_info_free"], true, "{version}");
        assert_ne!(status["last_sync_agentinfo"]["date_end_master"], "n/a");
        assert!(status["last_sync_agentinfo"]["n_synced_chunks"].as_u64() >= Some(1));
        // Nothing left pending on the worker: later rounds have nothing to send.
        let pending = wdb(
            &*db(&mut sim, Some(0)),
            "global sql SELECT COUNT(*) AS n FROM agent WHERE sync_status != 'synced'",
        );
        assert_eq!(pending, r#"[{"n":0}]"#);
    }
}

#[test]
fn a_busy_master_refuses_the_next_round_which_retries_later() {
    for version in VERSIONS {
        // The worker gives a round up after 1 + 5 s; the master's task lasts until released.
        let mut sim = cluster(version, |s| {
            if !s.is_master {
                s.agents.timeout_agent_info = Duration::from_secs(1);
            }
        });
        sim.hold_agent_jobs.push(None);
        sim.run_for(Duration::from_secs(1));
        change_agents(&mut sim);
        sim.run_for(INTERVAL + Duration::from_millis(500));
        assert_eq!(
            sim.held_info(),
            1,
            "{version}: the master is applying the string"
        );
        assert_eq!(agent_info_health(&mut sim)["sync_agent_info_free"], false);
        // Rounds keep coming every period, and the busy master answers `False` to each.
        let lines = logged(|| sim.run_for(Duration::from_secs(12)));
        assert_eq!(sim.held_info(), 1, "{version}: no second string was taken");
        assert!(has(&lines, "ERROR: [Worker w1] [Agent-info sync] Error synchronizing agent info: no result from the master in 6s"));
        let refusals = lines
            .iter()
            .filter(|l| {
                l.ends_with(
                    "Master didn't grant permission to start a new synchronization: b'False'",
                )
            })
            .count();
        assert!(refusals >= 2, "{version}: {lines:#?}");
        // A change made meanwhile travels with the next granted round.
        wdb(
            &*db(&mut sim, Some(0)),
            r#"global update-connection-status {"id":4,"connection_status":"disconnected","sync_status":"syncreq_status","status_code":7}"#,
        );
        sim.hold_agent_jobs.clear();
        sim.release_jobs(None);
        sim.run_for(2 * INTERVAL);
        assert!(changes_arrived(&mut sim), "{version}");
        assert_eq!(agent(&mut sim, None, 4)["status_code"], 7, "{version}");
        assert_eq!(agent_info_health(&mut sim)["sync_agent_info_free"], true);
    }
}

#[test]
fn a_link_lost_mid_round_loses_nothing() {
    for version in VERSIONS {
        // The master took the string but dies before applying it.
        let mut sim = cluster(version, |_| {});
        sim.hold_agent_jobs.push(None);
        sim.run_for(Duration::from_secs(1));
        change_agents(&mut sim);
        sim.run_for(INTERVAL + Duration::from_millis(500));
        assert_eq!(sim.held_info(), 1, "{version}");
        cut_links(&mut sim);
        sim.held_jobs.clear();
        sim.hold_agent_jobs.clear();
        sim.run_for(Duration::from_secs(3) + 2 * INTERVAL);
        assert!(
            changes_arrived(&mut sim),
            "{version}: resent after reconnecting"
        );

        // The worker's read was under way when the link broke: its result is kept for later.
        let mut sim = cluster(version, |_| {});
        sim.hold_agent_jobs.push(Some(0));
        sim.run_for(Duration::from_secs(1));
        change_agents(&mut sim);
        sim.run_for(INTERVAL + Duration::from_millis(500));
        assert_eq!(sim.held_info(), 1, "{version}: the worker is reading");
        cut_links(&mut sim);
        sim.hold_agent_jobs.clear();
        sim.release_jobs(None);
        sim.run_for(Duration::from_secs(3) + 2 * INTERVAL);
        assert!(
            changes_arrived(&mut sim),
            "{version}: the orphaned read was sent"
        );
    }
}

#[test]
fn an_apply_job_that_overruns_its_timeout_ends_the_task_with_no_chunks() {
    let mut sim = cluster("4.14.7", |s| {
        s.agents.timeout_agent_info = Duration::from_secs(3);
    });
    sim.hold_agent_jobs.push(None);
    sim.run_for(Duration::from_secs(1));
    change_agents(&mut sim);
    let lines = logged(|| sim.run_for(INTERVAL + Duration::from_secs(4)));
    assert_eq!(sim.held_info(), 1);
    let tagged = |level: &str, m: &str| format!("{level}: [Worker w1] [Agent-info sync] {m}");
    assert!(lines.contains(&tagged(
        "ERROR",
        "Timeout while processing agent-info chunks."
    )));
    assert!(has(&lines, &tagged("INFO", "Finished in 3.")), "{lines:#?}");
    assert!(lines
        .iter()
        .any(|l| l.ends_with("Updated 0 chunks.") && l.starts_with("INFO: [Worker w1]")));
    assert_eq!(agent_info_health(&mut sim)["sync_agent_info_free"], true);
    // The job's late result is dropped; the next round starts cleanly.
    sim.hold_agent_jobs.clear();
    let lines = logged(|| {
        sim.release_jobs(None);
        sim.run_for(2 * INTERVAL);
    });
    let dropped = "DEBUG: [Master] [Agent-info sync] Dropped the result of an agent-info job whose task already ended.";
    assert!(lines.iter().any(|l| l == dropped), "{lines:#?}");
    assert_eq!(agent_info_health(&mut sim)["sync_agent_info_free"], true);
}
