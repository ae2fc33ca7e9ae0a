//! The distributed API end to end with real processes: a clusterd master and two clusterd workers,
//! agents reporting to each; requests sent to a worker's local socket as the Wazuh API sends them.
//! Both dialects, both IO drivers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clusterd::control::client::{ControlError, LocalClient};
use clusterd::harness::{free_port, Daemon, NodeSpec};
use clusterd::store::socket::WdbSocket;
use clusterd::store::{WazuhDb, WdbStatus};
use serde_json::{json, Value};

const DAEMON: &str = env!("CARGO_BIN_EXE_wazuh-clusterd");

/// Agents 1–2 report to worker1, 3–4 to worker2.
const AGENTS: [(u32, &str); 4] = [
    (1, "worker1"),
    (2, "worker1"),
    (3, "worker2"),
    (4, "worker2"),
];

fn db_of(home: &Path) -> WdbSocket {
    WdbSocket::new(
        home.join("queue/db/wdb"),
        home.join("queue/sockets/wdb-http.sock"),
    )
}

fn wdb(home: &Path, command: &str) {
    let reply = db_of(home).query(command).expect("wazuh-db answers");
    assert_eq!(reply.status, WdbStatus::Ok, "{command}: {reply:?}");
}

/// An agent row as the node that holds it sees it; `version` tells which database answered.
fn add_agent(home: &Path, id: u32, name: &str, node: &str, version: &str) {
    wdb(
        home,
        &format!(
            r#"global insert-agent {{"id":{id},"name":"{name}","ip":"10.0.0.{id}","register_ip":"any","date_add":1000}}"#
        ),
    );
    wdb(
        home,
        &format!(
            r#"global sync-agent-info-set [{{"id":{id},"name":"{name}","node_name":"{node}","connection_status":"active","version":"{version}","last_keepalive":2000}}]"#
        ),
    );
}

fn callable(module: &str, qualname: &str) -> Value {
    let name = qualname.rsplit('.').next().unwrap();
    json!({"__callable__": {"__name__": name, "__module__": module, "__qualname__": qualname, "__type__": "function"}})
}

fn dapi(home: &Path, request: &Value) -> Result<Value, ControlError> {
    let mut client = LocalClient::connect(home, Duration::from_secs(60))?;
    let raw = client.dapi(request.to_string().as_bytes())?;
    Ok(serde_json::from_slice(&raw).expect("the result is JSON"))
}

fn object(result: &Value) -> &Value {
    &result["__wazuh_result__"]["__object__"]
}

struct Cluster {
    _root: tempfile::TempDir,
    master_home: PathBuf,
    homes: Vec<PathBuf>,
    master: Daemon,
    workers: Vec<Daemon>,
}

fn cluster(version: &str, driver: &str) -> Cluster {
    let root = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let args = ["--wazuh-version", version, "--io-driver", driver];
    let intervals = json!({"intervals": {"worker": {"keep_alive": 2, "connection_retry": 1}}});
    let master_home = root.path().join("master");
    NodeSpec::master(port)
        .with_cluster_json(intervals.clone())
        .write(&master_home)
        .unwrap();
    let master = Daemon::start(Path::new(DAEMON), &master_home, &args).unwrap();
    let names = ["worker1", "worker2"];
    let homes: Vec<PathBuf> = names.iter().map(|n| root.path().join(n)).collect();
    let workers: Vec<Daemon> = names
        .iter()
        .zip(&homes)
        .map(|(name, home)| {
            NodeSpec::worker(name, port)
                .with_cluster_json(intervals.clone())
                .write(home)
                .unwrap();
            Daemon::start(Path::new(DAEMON), home, &args).unwrap()
        })
        .collect();
    for w in &workers {
        assert!(
            w.wait_for_log("Successfully connected to master.", Duration::from_secs(20)),
            "{}",
            w.log()
        );
    }
    for (id, node) in AGENTS {
        let name = format!("agent-{id}");
        add_agent(&master_home, id, &name, node, "Wazuh v4.14.7");
        let worker = if node == "worker1" {
            &homes[0]
        } else {
            &homes[1]
        };
        add_agent(
            worker,
            id,
            &name,
            node,
            &format!("Wazuh v4.14.7 seen by {node}"),
        );
    }
    Cluster {
        _root: root,
        master_home,
        homes,
        master,
        workers,
    }
}

fn scenario(version: &str, driver: &str) {
    let mut c = cluster(version, driver);
    let worker1 = c.homes[0].clone();

    // The request stock `cluster_control -a` sends (local_master): answered by the master's database.
    let overview = json!({"f": callable("wazuh.core.agent", "Agent.get_agents_overview"),
        "f_kwargs": {"filters": {"status": "all", "node_name": "all"}, "limit": null,
                     "select": ["status", "node_name", "name", "version", "id", "ip"]},
        "from_cluster": false, "wait_for_complete": false});
    let listed = dapi(&worker1, &overview).expect("the listing is answered");
    let result = &object(&listed)["result"];
    let names: Vec<(&str, &str)> = result["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["id"] != "000")
        .map(|i| {
            (
                i["name"].as_str().unwrap(),
                i["node_name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("agent-1", "worker1"),
            ("agent-2", "worker1"),
            ("agent-3", "worker2"),
            ("agent-4", "worker2")
        ],
        "{listed}"
    );

    // A distributed_master request for agent 003 is answered by worker2, from its own database.
    let one = json!({"f": callable("wazuh.agent", "get_agents"), "f_kwargs": {"agent_list": ["003"]},
        "request_type": "distributed_master", "from_cluster": false, "wait_for_complete": false});
    let answered = dapi(&worker1, &one).expect("the request for agent 003 is answered");
    let items = &object(&answered)["affected_items"];
    assert_eq!(items.as_array().map(Vec::len), Some(1), "{answered}");
    assert_eq!(items[0]["id"], "003");
    assert_eq!(
        items[0]["version"], "Wazuh v4.14.7 seen by worker2",
        "{answered}"
    );

    // Broadcasting: every node answers and the counts add up (master 4, each worker 2).
    let summary = json!({"f": callable("wazuh.agent", "get_agents_summary_status"), "f_kwargs": {},
        "request_type": "distributed_master", "broadcasting": true, "from_cluster": false});
    let merged = dapi(&worker1, &summary).expect("the broadcast is answered");
    assert_eq!(
        object(&merged)["result"]["data"]["connection"]["total"],
        8,
        "{merged}"
    );

    // A 20 MiB result arrives whole: 2,100 agents with 10 KB names on the master.
    let long = "n".repeat(10_000);
    for id in 100..2200 {
        wdb(
            &c.master_home,
            &format!(r#"global insert-agent {{"id":{id},"name":"{long}-{id}","date_add":1000}}"#),
        );
    }
    let started = Instant::now();
    let big = dapi(&worker1, &overview).expect("the large listing is answered");
    let total = object(&big)["result"]["items"].as_array().map(Vec::len);
    assert_eq!(total, Some(2105), "2,100 + 4 agents + the manager");
    assert!(big.to_string().len() > 20 << 20);
    eprintln!(
        "{version}/{driver}: 20 MiB result in {:?}",
        started.elapsed()
    );

    // A request for an agent of a worker that is gone fails at once, naming the worker.
    c.workers[1].stop();
    let asked = Instant::now();
    let failed = dapi(&worker1, &one).expect("an answer, not a timeout");
    assert!(asked.elapsed() < Duration::from_secs(10));
    let error = failed.to_string();
    assert!(error.contains("worker2"), "{error}");
    assert!(
        failed.get("__wazuh_exception__").is_some() || object(&failed)["total_failed_items"] == 1,
        "{error}"
    );

    assert!(
        c.master
            .log()
            .contains("[D API] Receiving request: get_agents_overview from worker1 ("),
        "{}",
        c.master.log()
    );
    assert!(c.workers[1]
        .log()
        .contains("[D API] Receiving request: get_agents from master ("));
}

#[test]
fn distributed_api_4_14_io_uring() {
    scenario("4.14.7", "auto");
}

#[test]
fn distributed_api_4_3_epoll() {
    scenario("4.3.11", "epoll");
}

#[test]
fn distributed_api_4_14_epoll() {
    scenario("4.14.7", "epoll");
}

#[test]
fn distributed_api_4_3_io_uring() {
    scenario("4.3.11", "auto");
}
