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
    let intervals = json!({"intervals": {
        "worker": {"keep_alive": 2, "connection_retry": 1, "sync_integrity": 2},
        "master": {"recalculate_integrity": 1}}});
    let master_home = root.path().join("master");
    // A custom rule the workers receive through the integrity sync.
    std::fs::create_dir_all(master_home.join("etc/rules")).unwrap();
    std::fs::write(
        master_home.join("etc/rules/local_rules.xml"),
        "<group name=\"local,\">\n  <rule id=\"100001\" level=\"5\"><match>clusterd</match></rule>\n</group>\n",
    )
    .unwrap();
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

    ruleset(&c, version);

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

fn call(home: &Path, command: &str) -> Result<Vec<u8>, ControlError> {
    LocalClient::connect(home, Duration::from_secs(30))?.call(command, b"")
}

fn get_hash(home: &Path) -> Value {
    serde_json::from_slice(&call(home, "get_hash").expect("get_hash is answered")).unwrap()
}

/// `GET /cluster/ruleset/synchronization` as the API asks it, from worker1: local `get_hash`,
/// the master's digests (`local_master`), every node against them (broadcast); then the worker's
/// `sendrreload` (4.14) and the analysisd reload after the next integrity result.
fn ruleset(c: &Cluster, version: &str) {
    let worker1 = &c.homes[0];
    let master = get_hash(&c.master_home);
    let digest = master["etc/rules/local_rules.xml"]
        .as_str()
        .unwrap_or_else(|| panic!("{master}"));
    let digest_len = if version.starts_with("4.3.") { 32 } else { 128 };
    assert_eq!(digest.len(), digest_len, "{master}");
    let synced = Instant::now();
    while get_hash(worker1) != master || get_hash(&c.homes[1]) != master {
        assert!(
            synced.elapsed() < Duration::from_secs(40),
            "{}",
            c.workers[0].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let integrity = json!({"f": callable("wazuh.core.cluster.control", "get_node_ruleset_integrity"),
        "f_kwargs": {}, "request_type": "local_master", "from_cluster": false,
        "wait_for_complete": false, "local_client_arg": "lc"});
    let master_md5 = object(&dapi(worker1, &integrity).expect("answered"))["result"].clone();
    assert_eq!(master_md5, master);
    let status = |md5: &Value| {
        let request = json!({"f": callable("wazuh.cluster", "get_ruleset_sync_status"),
            "f_kwargs": {"node_list": "*", "master_md5": md5}, "request_type": "distributed_master",
            "broadcasting": true, "from_cluster": false, "wait_for_complete": false});
        let answer = dapi(worker1, &request).expect("answered");
        let mut items: Vec<(String, bool)> = object(&answer)["affected_items"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"))
            .iter()
            .map(|i| {
                (
                    i["name"].as_str().unwrap().to_string(),
                    i["synced"].as_bool().unwrap(),
                )
            })
            .collect();
        items.sort();
        items
    };
    let all = |synced| {
        vec![
            ("master".to_string(), synced),
            ("worker1".to_string(), synced),
            ("worker2".to_string(), synced),
        ]
    };
    assert_eq!(status(&master_md5), all(true));
    assert_eq!(status(&json!({})), all(false));

    // sendrreload: 4.14 workers only; the reload goes to analysisd after the next integrity result.
    let unknown = call(&c.master_home, "sendrreload").expect_err("unknown on a master");
    assert!(unknown.to_string().contains("unknown command"), "{unknown}");
    if version.starts_with("4.3.") {
        let unknown = call(worker1, "sendrreload").expect_err("unknown in 4.3");
        assert!(unknown.to_string().contains("unknown command"), "{unknown}");
        return;
    }
    // A stand-in for analysisd: its socket, one request, a successful answer.
    std::fs::create_dir_all(worker1.join("queue/sockets")).unwrap();
    let listener =
        std::os::unix::net::UnixListener::bind(worker1.join("queue/sockets/analysis")).unwrap();
    listener.set_nonblocking(true).unwrap();
    let analysisd = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let waiting = Instant::now();
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if waiting.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("the worker never asked analysisd for a reload: {e}"),
            }
        };
        s.set_nonblocking(false).unwrap();
        let mut header = [0u8; 4];
        s.read_exact(&mut header).unwrap();
        let mut body = vec![0u8; u32::from_le_bytes(header) as usize];
        s.read_exact(&mut body).unwrap();
        let answer = br#"{"error": 0, "message": "ok", "data": []}"#;
        s.write_all(&(answer.len() as u32).to_le_bytes()).unwrap();
        s.write_all(answer).unwrap();
        serde_json::from_slice::<Value>(&body).unwrap()
    });
    let asked = call(worker1, "sendrreload").expect("sendrreload is answered");
    assert_eq!(asked, br#"{"success": true}"#);
    assert_eq!(
        analysisd.join().unwrap(),
        json!({"version": 1, "origin": {"module": "cluster"}, "command": "reload-ruleset"})
    );
    assert!(
        c.workers[0].wait_for_log(
            "Ruleset reload triggered by cluster integrity check",
            Duration::from_secs(10)
        ),
        "{}",
        c.workers[0].log()
    );
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
