//! Agent groups with real processes (4.14 dialect): assignments made on the master reach the
//! worker's database; when a worker's groups drift (edited directly in its database), its checksum
//! no longer matches the master's, and after `agent_groups_mismatch_limit` mismatches the master's
//! full send brings them back.

use std::path::Path;
use std::time::Duration;

use clusterd::control::client::LocalClient;
use clusterd::harness::{free_port, wait_until, Daemon, NodeSpec};
use clusterd::store::{WazuhDb, WdbSocket};
use serde_json::{json, Value};

const DAEMON: &str = env!("CARGO_BIN_EXE_wazuh-clusterd");
const VERSION: &str = "4.14.7";
const MISMATCH_LIMIT: u32 = 2;
const AGENTS: usize = 20;

fn intervals() -> Value {
    json!({"intervals": {
        "worker": {"sync_integrity": 1, "keep_alive": 2, "connection_retry": 1,
                   "agent_groups_mismatch_limit": MISMATCH_LIMIT},
        "master": {"recalculate_integrity": 1, "sync_agent_groups": 1, "agent_group_start_delay": 1}
    }})
}

fn db_of(home: &Path) -> WdbSocket {
    WdbSocket::new(
        home.join("queue/db/wdb"),
        home.join("queue/sockets/wdb-http.sock"),
    )
}

/// `(agent id, group)` pairs of a node's database, in id and priority order.
fn assignments(db: &WdbSocket) -> Value {
    let reply = db
        .query(
            "global sql SELECT b.id_agent AS id, g.name AS name FROM belongs b \
             JOIN `group` g ON g.id = b.id_group WHERE b.id_agent > 0 ORDER BY b.id_agent, b.priority",
        )
        .expect("query");
    serde_json::from_str(&reply.payload).unwrap_or(Value::Null)
}

#[test]
fn drifted_groups_on_a_worker_are_restored_by_the_full_send() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let master_home = root.path().join("master");
    let worker_home = root.path().join("worker1");
    NodeSpec::master(port)
        .with_cluster_json(intervals())
        .write(&master_home)
        .unwrap();
    NodeSpec::worker("worker1", port)
        .with_cluster_json(intervals())
        .write(&worker_home)
        .unwrap();
    let args = ["--wazuh-version", VERSION];
    let mut master = Daemon::start(Path::new(DAEMON), &master_home, &args).unwrap();
    let mut worker = Daemon::start(Path::new(DAEMON), &worker_home, &args).unwrap();
    assert!(
        worker.wait_for_log("Successfully connected to master.", Duration::from_secs(20)),
        "{}",
        worker.log()
    );

    // Agents registered on the master, each in `default`.
    let mut client = LocalClient::connect(&master_home, Duration::from_secs(20)).unwrap();
    for i in 0..AGENTS {
        let request = json!({"daemon_name": "authd", "message": {"function": "add",
            "arguments": {"name": format!("agent{i:02}"), "ip": "any", "groups": "default"}}});
        let answer = client.sendsync(request.to_string().as_bytes()).unwrap();
        assert!(answer.contains("\"error\":0"), "{answer}");
    }
    let expected: Value = (1..=AGENTS)
        .map(|id| json!({"id": id, "name": "default"}))
        .collect();
    let master_db = db_of(&master_home);
    let worker_db = db_of(&worker_home);
    assert_eq!(assignments(&master_db), expected);
    assert!(
        wait_until(Duration::from_secs(30), || assignments(&worker_db)
            == expected),
        "the worker's groups: {}\n{}",
        assignments(&worker_db),
        worker.log()
    );

    // Drift: agent 3 is moved to another group in the worker's own database.
    let drift = r#"global set-agent-groups {"mode":"override","sync_status":"synced","data":[{"id":3,"name":"agent02","groups":["drifted"]}]}"#;
    let reply = worker_db.query(drift).unwrap();
    assert_eq!(reply.to_text(), "ok");
    assert_ne!(assignments(&worker_db), expected);

    // The checksum fails MISMATCH_LIMIT times, the worker asks for everything, and gets it.
    assert!(
        worker.wait_for_log(
            "Sent request to obtain all agent-groups information from the master node.",
            Duration::from_secs(30)
        ),
        "{}",
        worker.log()
    );
    assert!(
        wait_until(Duration::from_secs(30), || assignments(&worker_db)
            == expected),
        "the worker's groups after the full send: {}\n{}",
        assignments(&worker_db),
        worker.log()
    );
    assert!(
        worker.wait_for_log(
            "[Agent-groups recv full] Finished in",
            Duration::from_secs(10)
        ),
        "{}",
        worker.log()
    );
    worker.stop();
    master.stop();
}
