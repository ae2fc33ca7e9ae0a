//! Mixed clusters: clusterd nodes next to stock Wazuh ones. Stand-ins for the stock nodes and tools
//! (a scripted stock worker, a scripted stock master, a stock-like local server) send and answer
//! exactly what Wazuh 4.3.11 and 4.14.7 send and answer (payloads in `tests/data/stock/`, derived
//! from the stock source as its README says), against real clusterd processes in each role.

mod common;

use std::fs;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::Duration;

use clusterd::harness::DEMO_KEY;
use clusterd::harness::{free_port, wait_until, Daemon, NodeSpec, PeerRequest, ScriptedPeer};
use clusterd::proto::command::Command;
use clusterd::store::{WazuhDb, WdbSocket};
use clusterd::sync::package::zip::ZipPackageWriter;
use serde_json::{json, Value};

const CONTROL: &str = env!("CARGO_BIN_EXE_cluster_control");
const T: Duration = Duration::from_secs(20);

/// A stock vector of `tests/data/stock/`.
fn vector(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/stock")
        .join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn db_of(home: &Path) -> WdbSocket {
    WdbSocket::new(
        home.join("queue/db/wdb"),
        home.join("queue/sockets/wdb-http.sock"),
    )
    .with_timeout(T)
}

fn sql(db: &WdbSocket, statement: &str) -> Value {
    let reply = db.query(&format!("global sql {statement}")).expect("query");
    serde_json::from_str(&reply.payload).unwrap_or_else(|_| panic!("{reply:?}"))
}

/// Registers agents on a node's agent database as authd does, with no connection yet.
fn insert_agents(home: &Path, ids: &[u32]) {
    let db = db_of(home);
    for id in ids {
        let reply = db
            .query(&format!(
                r#"global insert-agent {{"id":{id},"name":"agent{id}","ip":"any","date_add":1700000000}}"#
            ))
            .expect("insert-agent");
        assert_eq!(reply.to_text(), "ok", "agent {id}");
    }
}

/// Starts a clusterd master on the embedded database and waits for its first local integrity.
fn start_master(root: &Path, version: &str) -> (Daemon, PathBuf, u16) {
    let port = free_port().unwrap();
    let home = root.join("master");
    let master = common::start(NodeSpec::master(port), &home, version);
    assert!(
        master.wait_for_log("[Local integrity] Finished", T),
        "{}",
        master.log()
    );
    assert!(
        wait_until(T, || home.join("queue/db/wdb").exists()),
        "{}",
        master.log()
    );
    (master, home, port)
}

/// A scripted stock worker joined to the master at `port`.
fn stock_worker(port: u16, version: &str) -> ScriptedPeer {
    let mut worker = ScriptedPeer::connect(&format!("127.0.0.1:{port}"), DEMO_KEY).unwrap();
    let (command, answer) = worker
        .request(
            "hello",
            format!("worker1 wazuh worker {version}").as_bytes(),
            T,
        )
        .unwrap();
    assert_eq!(
        (command, answer.as_slice()),
        (Command::Ok, &b"Client worker1 added"[..])
    );
    worker
}

// ---------------------------------------------------------------------------------------------
// A stock worker against a clusterd master
// ---------------------------------------------------------------------------------------------

/// Plays one agent-info round of a stock worker with `string` and returns the master's result.
fn agent_info_round(worker: &mut ScriptedPeer, string: &str) -> Value {
    assert!(wait_until(T, || worker
        .request("syn_a_w_m_p", b"", T)
        .is_ok_and(|(_, a)| a == b"True")));
    let sid = worker.send_string(string.as_bytes(), T).unwrap();
    let (command, answer) = worker.request("syn_a_w_m", sid.as_bytes(), T).unwrap();
    assert_eq!(command, Command::Ok, "{}", String::from_utf8_lossy(&answer));
    let done = worker
        .expect(|c| matches!(c, Command::SynMAE | Command::SynMAErr), T)
        .unwrap();
    worker.reply(done.counter, "ok", b"Thanks").unwrap();
    assert_eq!(
        done.command,
        Command::SynMAE,
        "{}",
        String::from_utf8_lossy(&done.payload)
    );
    serde_json::from_slice(&done.payload).unwrap()
}

/// The master's rows of the vector's agents, as `expected_rows` names their columns.
fn rows_match(home: &Path, expected: &Value, now_at_least: i64) {
    let db = db_of(home);
    for (id, columns) in expected.as_object().unwrap() {
        let names: Vec<&str> = columns
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let row = sql(
            &db,
            &format!("SELECT {} FROM agent WHERE id = {id}", names.join(", ")),
        );
        let row = &row[0];
        for (column, want) in columns.as_object().unwrap() {
            let got = row.get(column).cloned().unwrap_or(Value::Null);
            if want == "NOW" {
                assert!(
                    got.as_i64().is_some_and(|t| t >= now_at_least),
                    "agent {id} {column}: {got}"
                );
            } else {
                assert_eq!(&got, want, "agent {id} column {column}");
            }
        }
    }
}

fn stock_agent_info_applies(version: &str, file: &str) {
    let root = tempfile::tempdir().unwrap();
    let (master, home, port) = start_master(root.path(), version);
    let vector = vector(file);
    let ids: Vec<u32> = vector["expected_rows"]
        .as_object()
        .unwrap()
        .keys()
        .map(|id| id.parse().unwrap())
        .collect();
    insert_agents(&home, &ids);
    let mut worker = stock_worker(port, version);
    let before = chrono::Utc::now().timestamp();
    let result = agent_info_round(&mut worker, vector["string"].as_str().unwrap());
    assert_eq!(result["error_messages"], json!([]), "{result}");
    assert!(
        result["updated_chunks"].as_u64().unwrap() >= 1,
        "{result}\n{}",
        master.log()
    );
    rows_match(&home, &vector["expected_rows"], before);
    let db = db_of(&home);
    for (id, labels) in vector["expected_labels"].as_object().unwrap() {
        let stored = sql(
            &db,
            &format!("SELECT key, value FROM labels WHERE id = {id} ORDER BY key"),
        );
        assert_eq!(&stored, labels, "labels of agent {id}");
    }
    let log = master.log();
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn a_stock_4_3_workers_agent_info_is_stored_as_wazuh_db_would() {
    stock_agent_info_applies("4.3.11", "agent_info_4_3_worker.json");
}

#[test]
fn a_stock_4_14_workers_agent_info_is_stored_as_wazuh_db_would() {
    stock_agent_info_applies("4.14.7", "agent_info_4_14_worker.json");
}

fn zip_metadata(metadata: &Value) -> Vec<u8> {
    ZipPackageWriter::new(std::io::Cursor::new(Vec::new()))
        .finish(metadata.to_string().as_bytes())
        .unwrap()
        .into_inner()
}

#[test]
fn a_4_3_master_refuses_extra_valid_files_of_agents_it_does_not_know() {
    let root = tempfile::tempdir().unwrap();
    let (master, home, port) = start_master(root.path(), "4.3.11");
    insert_agents(&home, &[1, 2, 3]);
    let mut worker = stock_worker(port, "4.3.11");
    // A stock 4.3.11 worker's metadata of its agent-groups files: three of known agents, three not.
    let entries: serde_json::Map<String, Value> = ["001", "002", "003", "901", "902", "903"]
        .iter()
        .map(|id| {
            (
                format!("queue/agent-groups/{id}"),
                json!({"mod_time": 1700000000.25, "cluster_item_key": "queue/agent-groups/",
                       "merged": false, "md5": format!("{:032x}", id.parse::<u32>().unwrap())}),
            )
        })
        .collect();
    assert!(wait_until(T, || worker
        .request("syn_i_w_m_p", b"", T)
        .is_ok_and(|(_, a)| a == b"True")));
    let (_, task) = worker.request("syn_i_w_m", b"", T).unwrap();
    let task = String::from_utf8(task).unwrap();
    let rel = "queue/cluster/worker1/worker1-1700000000.zip";
    worker
        .send_file(rel, &zip_metadata(&Value::Object(entries)), T)
        .unwrap();
    let (command, _) = worker
        .request("syn_i_w_m_e", format!("{task} {rel}").as_bytes(), T)
        .unwrap();
    assert_eq!(command, Command::Ok);
    worker.expect(|c| *c == Command::SynMC, T).unwrap();
    assert!(
        master.wait_for_log("Files to receive: 3", T),
        "{}",
        master.log()
    );
    let log = master.log();
    let line = log
        .lines()
        .find(|l| l.contains("Extra-valid files of agents this master does not know"))
        .unwrap_or_else(|| panic!("{log}"));
    for id in ["901", "902", "903"] {
        assert!(line.contains(&format!("queue/agent-groups/{id}")), "{line}");
    }
    assert!(!line.contains("/001"), "{line}");
    // Information, not a warning: a stock worker may keep such files, and says so each round.
    assert!(line.contains(" INFO: "), "{line}");
    assert!(!log.contains("WARNING") && !log.contains("ERROR"), "{log}");
}

#[test]
fn an_unknown_local_command_is_answered_with_wazuhs_json_error() {
    let root = tempfile::tempdir().unwrap();
    let (_master, home, _) = start_master(root.path(), "4.14.7");
    let mut client =
        ScriptedPeer::connect_local(&home.join("queue/cluster/c-internal.sock")).unwrap();
    let (command, payload) = client.request("frobnicate", b"", T).unwrap();
    assert_eq!(command, Command::Err);
    let error: Value = serde_json::from_slice(&payload).expect("a JSON error");
    let object = &error["__wazuh_exception__"]["__object__"];
    assert_eq!(
        error["__wazuh_exception__"]["__class__"],
        "WazuhClusterError"
    );
    assert_eq!(object["code"], 3000);
    assert_eq!(object["extra_message"], "unknown command 'b'frobnicate''");
}

// ---------------------------------------------------------------------------------------------
// Our tools and our worker under a stock master
// ---------------------------------------------------------------------------------------------

/// Wazuh's JSON error, as a stock node's exception encoder writes it.
fn stock_error(class: &str, title: &str, code: u32, extra: &str) -> Vec<u8> {
    json!({"__wazuh_exception__": {"__class__": class, "__object__": {"type": "about:blank",
        "title": title, "code": code, "extra_message": extra, "extra_remediation": null,
        "cmd_error": false, "dapi_errors": {}}}})
    .to_string()
    .into_bytes()
}

/// The `get_nodes` arguments a stock master's `get_connected_nodes` takes, per release.
fn get_nodes_parameters(version: &str) -> Vec<&'static str> {
    let mut names = vec![
        "filter_node",
        "offset",
        "limit",
        "sort",
        "search",
        "select",
        "filter_type",
    ];
    if !version.starts_with("4.3.") {
        names.push("distinct");
    }
    names
}

/// How a stock master answers one control request (`get_nodes`, `get_health`, `get_config`) of a
/// local client or a worker: refusing arguments its release does not take, and commands it does
/// not know in plain text, as Wazuh does. Unknown commands are recorded in `unknown`.
fn stock_answer(
    version: &str,
    request: &PeerRequest,
    unknown: &mut Vec<String>,
) -> (&'static str, Vec<u8>) {
    let release = if version.starts_with("4.3.") {
        "4_3"
    } else {
        "4_14"
    };
    match request.command {
        Command::GetNodes => {
            let args: Value = serde_json::from_slice(&request.payload).unwrap_or(json!({}));
            let allowed = get_nodes_parameters(version);
            if let Some(bad) = args
                .as_object()
                .into_iter()
                .flat_map(|o| o.keys())
                .find(|k| !allowed.contains(&k.as_str()))
            {
                let extra =
                    format!("get_connected_nodes() got an unexpected keyword argument '{bad}'");
                return (
                    "err",
                    stock_error("WazuhInternalError", "Wazuh Internal Error", 1000, &extra),
                );
            }
            let case = if args["filter_node"].is_null() {
                "-l"
            } else {
                "-l -fn worker1"
            };
            let answer = &vector(&format!("get_nodes_{release}_master.json"))["cases"][case];
            (
                "ok",
                answer["reply_payload"]
                    .as_str()
                    .unwrap()
                    .as_bytes()
                    .to_vec(),
            )
        }
        Command::GetHealth => {
            let answer = vector(&format!("get_health_{release}_master.json"));
            (
                "ok",
                answer["reply_payload"]
                    .as_str()
                    .unwrap()
                    .as_bytes()
                    .to_vec(),
            )
        }
        Command::GetConfig => (
            "ok",
            json!({"name": "wazuh", "node_name": "master", "node_type": "master", "key": DEMO_KEY,
                   "port": 1516, "bind_addr": "0.0.0.0", "nodes": ["10.0.0.1"], "hidden": "no",
                   "disabled": false})
            .to_string()
            .into_bytes(),
        ),
        ref other => {
            unknown.push(other.as_str().to_owned());
            (
                "err",
                format!("unknown command 'b'{}''", other.as_str()).into_bytes(),
            )
        }
    }
}

fn cluster_control(home: &Path, args: &[&str]) -> Child {
    Process::new(CONTROL)
        .arg("--home")
        .arg(home)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` and returns its exit code, standard output and standard error.
fn finish(child: Child) -> (i32, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `-i` text stock `cluster_control` prints for the `get_health` vector of its release.
fn stock_health_text(version: &str) -> &'static str {
    if version.starts_with("4.3.") {
        "Cluster name: wazuh\n\nLast completed synchronization for connected nodes (1):\n    \
         worker1 (10.0.0.2): Integrity check: 2024-05-31T16:08:25.163807Z | Integrity sync: \
         2024-05-31T16:03:14.781233Z | Agents-info: 2024-05-31T16:08:31.042871Z | Last keep alive: \
         2024-05-31T16:08:02.511634Z.\n\n"
    } else {
        "Cluster name: wazuh\n\nLast completed synchronization for connected nodes (1):\n    \
         worker1 (10.0.0.2): Integrity check: 2024-05-31T16:08:25.163807Z | Integrity sync: \
         2024-05-31T16:03:14.781233Z | Agents-info: 2024-05-31T16:08:31.042871Z | Agent-groups: \
         n/a | Agent-groups full: 2024-05-31T15:41:12.352146Z | Last keep alive: \
         2024-05-31T16:08:02.511634Z.\n\n"
    }
}

/// Our `cluster_control -l` and `-i` on the socket of a stock-like local server (a master of
/// `version`): only commands and arguments that release takes are sent.
fn control_on_a_stock_socket(version: &str) {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("stock");
    fs::create_dir_all(home.join("queue/cluster")).unwrap();
    fs::create_dir_all(home.join("var/run")).unwrap();
    // The stock daemon's pid file names a live process that is not clusterd: this test.
    fs::write(
        home.join(format!("var/run/wazuh-clusterd-{}.pid", std::process::id())),
        format!("{}\n", std::process::id()),
    )
    .unwrap();
    let listener = UnixListener::bind(home.join("queue/cluster/c-internal.sock")).unwrap();
    let mut unknown = Vec::new();

    let child = cluster_control(&home, &["-l"]);
    let mut server = ScriptedPeer::accept_local(&listener, T).unwrap();
    let request = server.expect(|_| true, T).unwrap();
    let (command, payload) = stock_answer(version, &request, &mut unknown);
    server.reply(request.counter, command, &payload).unwrap();
    let (code, out, err) = finish(child);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("NAME"), "{out}");
    assert!(out.contains("worker1"), "{out}");

    let child = cluster_control(&home, &["-i", "--timeout", "10"]);
    let mut server = ScriptedPeer::accept_local(&listener, T).unwrap();
    // Serve until the tool closes the connection.
    while let Ok(request) = server.expect(|_| true, T) {
        let (command, payload) = stock_answer(version, &request, &mut unknown);
        server.reply(request.counter, command, &payload).unwrap();
    }
    let (code, out, err) = finish(child);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, stock_health_text(version));

    // -a: the agents overview through the distributed API, as the stock tool asks it.
    let child = cluster_control(&home, &["-a", "-fs", "active"]);
    let mut server = ScriptedPeer::accept_local(&listener, T).unwrap();
    let request = server.expect(|_| true, T).unwrap();
    assert_eq!(request.command, Command::Dapi);
    let asked: Value = serde_json::from_slice(&request.payload).unwrap();
    let stock: Value = serde_json::from_str(
        vector("cluster_control_requests.json")[format!("v{version}")]["-a -fn worker1 -fs active"]
            [0]["payload"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(asked["f"], stock["f"]);
    assert_eq!(
        asked["f_kwargs"]["filters"],
        json!({"status": "active", "node_name": "all"})
    );
    let mut fields: Vec<&str> = asked["f_kwargs"]["select"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut stock_fields: Vec<&str> = stock["f_kwargs"]["select"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    fields.sort_unstable();
    stock_fields.sort_unstable();
    assert_eq!(fields, stock_fields);
    server
        .reply(
            request.counter,
            "ok",
            b"Added request to API requests queue",
        )
        .unwrap();
    let sid = server
        .send_string(stock_overview_answer().to_string().as_bytes(), T)
        .unwrap();
    let (command, _) = server.request("dapi_res", sid.as_bytes(), T).unwrap();
    assert_eq!(command, Command::Ok);
    let (code, out, err) = finish(child);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, STOCK_OVERVIEW_TABLE);
    assert!(
        unknown.is_empty(),
        "commands a stock daemon does not know: {unknown:?}"
    );
}

/// A stock master's answer to the agents overview: a `WazuhResult` in the stock encoding (agent
/// 001 never sent its version).
fn stock_overview_answer() -> Value {
    json!({"__wazuh_result__": {"__class__": "WazuhResult", "__object__": {"str_priority": null,
        "result": {"items": [
            {"id": "000", "name": "master", "ip": "127.0.0.1", "status": "active", "version": "Wazuh v4.14.7", "node_name": "master"},
            {"id": "001", "name": "web-01", "ip": "10.0.1.22", "status": "active", "node_name": "worker1"}],
        "totalItems": 2}}}})
}

/// How `cluster_control -a` prints [`stock_overview_answer`].
const STOCK_OVERVIEW_TABLE: &str = concat!(
    "ID   NAME    IP         STATUS  VERSION        NODE NAME  \n",
    "000  master  127.0.0.1  active  Wazuh v4.14.7  master     \n",
    "001  web-01  10.0.1.22  active  unknown        worker1    \n",
);

#[test]
fn our_cluster_control_on_a_stock_4_3_masters_socket() {
    control_on_a_stock_socket("4.3.11");
}

#[test]
fn our_cluster_control_on_a_stock_4_14_masters_socket() {
    control_on_a_stock_socket("4.14.7");
}

/// Our worker `worker1` of `version` (with `cluster_json`) joined to a scripted stock master.
fn under_a_stock_master(
    root: &Path,
    version: &str,
    cluster_json: Value,
) -> (Daemon, PathBuf, ScriptedPeer) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let home = root.join("worker1");
    NodeSpec::worker("worker1", port)
        .with_cluster_json(cluster_json)
        .write(&home)
        .unwrap();
    let worker = Daemon::start(
        Path::new(common::DAEMON),
        &home,
        &["--wazuh-version", version],
    )
    .unwrap();
    let mut master = ScriptedPeer::accept(&listener, DEMO_KEY, T).unwrap();
    let hello = master.expect(|c| *c == Command::Hello, T).unwrap();
    master
        .reply(hello.counter, "ok", b"Client worker1 added")
        .unwrap();
    (worker, home, master)
}

/// Our worker joined to a stock-like master: `cluster_control -l` and `-i` on the worker are relayed
/// and answered as that master answers them.
fn control_through_our_worker(version: &str) {
    let root = tempfile::tempdir().unwrap();
    let (worker, home, mut master) =
        under_a_stock_master(root.path(), version, common::intervals());
    assert!(
        worker.wait_for_log("Successfully connected to master", T),
        "{}",
        worker.log()
    );
    let mut unknown = Vec::new();
    const CONTROL_COMMANDS: [Command; 3] =
        [Command::GetNodes, Command::GetHealth, Command::GetConfig];
    for args in [&["-l"][..], &["-i"][..]] {
        let mut child = cluster_control(&home, args);
        loop {
            let request = match master.expect(
                |c| CONTROL_COMMANDS.contains(c) || matches!(c, Command::Other(_)),
                Duration::from_millis(500),
            ) {
                Ok(request) => request,
                Err(_) if child.try_wait().unwrap().is_some() => break,
                Err(_) => continue,
            };
            let (command, payload) = stock_answer(version, &request, &mut unknown);
            master.reply(request.counter, command, &payload).unwrap();
        }
        let (code, out, err) = finish(child);
        assert_eq!(code, 0, "{args:?}: {out}{err}\n{}", worker.log());
        if args == ["-i"] {
            let (text, driver) = out
                .rsplit_once("IO driver: ")
                .unwrap_or_else(|| panic!("{out}"));
            assert_eq!(text, stock_health_text(version));
            assert!(["io_uring\n", "epoll\n"].contains(&driver), "{driver}");
        } else {
            assert!(out.contains("worker1"), "{out}");
        }
    }
    assert!(
        unknown.is_empty(),
        "commands a stock master does not know: {unknown:?}"
    );

    // -a: the stock master does not know `get_agents`, so the tool asks the distributed API,
    // which the worker relays as `dapi <client> <request>`; the master's answer comes back as a
    // long string and `dapi_res <client> <sid>`.
    let child = cluster_control(&home, &["-a", "-fn", "worker1", "--timeout", "10"]);
    let relayed = loop {
        let request = master
            .expect(|c| matches!(c, Command::GetAgents | Command::Dapi), T)
            .unwrap();
        if request.command == Command::Dapi {
            break request;
        }
        let (command, payload) = stock_answer(version, &request, &mut unknown);
        master.reply(request.counter, command, &payload).unwrap();
    };
    let text = String::from_utf8(relayed.payload.clone()).unwrap();
    let (client, asked) = text.split_once(' ').unwrap();
    let asked: Value = serde_json::from_str(asked).unwrap();
    assert_eq!(
        asked["f"]["__callable__"]["__qualname__"],
        "Agent.get_agents_overview"
    );
    assert_eq!(
        asked["f_kwargs"]["filters"],
        json!({"status": "all", "node_name": "worker1"})
    );
    master
        .reply(
            relayed.counter,
            "ok",
            b"Added request to API requests queue",
        )
        .unwrap();
    let sid = master
        .send_string(stock_overview_answer().to_string().as_bytes(), T)
        .unwrap();
    let (command, _) = master
        .request("dapi_res", format!("{client} {sid}").as_bytes(), T)
        .unwrap();
    assert_eq!(command, Command::Ok);
    let (code, out, err) = finish(child);
    assert_eq!(code, 0, "{out}{err}\n{}", worker.log());
    assert_eq!(out, STOCK_OVERVIEW_TABLE);
    assert_eq!(unknown, ["get_agents"], "only our own fast path is unknown");
}

#[test]
fn our_worker_under_a_stock_4_3_master_answers_cluster_control() {
    control_through_our_worker("4.3.11");
}

#[test]
fn our_worker_under_a_stock_4_14_master_answers_cluster_control() {
    control_through_our_worker("4.14.7");
}

/// Our worker waiting for a stock master's package that never comes: it gives up after
/// `timeout_receiving_file` and tells the master as that master's own workers do (4.3:
/// `syn_i_w_m_r None <3039>`, since 4.3 knows no `cancel_task`; 4.14: `cancel_task`).
fn worker_gives_up_as_stock_does(version: &str) {
    let root = tempfile::tempdir().unwrap();
    let mut intervals = common::intervals();
    intervals["intervals"]["communication"] = json!({"timeout_receiving_file": 2});
    let (worker, _home, mut master) = under_a_stock_master(root.path(), version, intervals);
    let permission = master.expect(|c| *c == Command::SynIWMP, T).unwrap();
    master.reply(permission.counter, "ok", b"True").unwrap();
    let open = master.expect(|c| *c == Command::SynIWM, T).unwrap();
    master.reply(open.counter, "ok", b"task-1").unwrap();
    let end = master.expect(|c| *c == Command::SynIWME, T).unwrap();
    master
        .reply(end.counter, "ok", b"File correctly received")
        .unwrap();
    let (command, _) = master.request("syn_m_c", b"", T).unwrap();
    assert_eq!(command, Command::Ok);
    let wanted = |c: &Command| matches!(c, Command::SynIWMR | Command::CancelTask);
    let gave_up = master
        .expect(wanted, T)
        .unwrap_or_else(|e| panic!("{e}\n{}", worker.log()));
    let text = String::from_utf8_lossy(&gave_up.payload).into_owned();
    if version.starts_with("4.3.") {
        assert_eq!(gave_up.command, Command::SynIWMR, "{text}");
        let (task, error) = text.split_once(' ').unwrap();
        assert_eq!(task, "None");
        let error: Value = serde_json::from_str(error).unwrap();
        let object = &error["__wazuh_exception__"]["__object__"];
        assert_eq!(object["code"], 3039);
        assert_eq!(object["extra_message"], "Integrity sync at worker1");
    } else {
        assert_eq!(gave_up.command, Command::CancelTask, "{text}");
    }
    assert!(
        worker.wait_for_log("Timeout while waiting to receive a file", T),
        "{}",
        worker.log()
    );
}

#[test]
fn our_4_3_worker_reports_a_missing_package_as_a_4_3_worker_does() {
    worker_gives_up_as_stock_does("4.3.11");
}

#[test]
fn our_4_14_worker_cancels_a_missing_package_as_a_4_14_worker_does() {
    worker_gives_up_as_stock_does("4.14.7");
}

// ---------------------------------------------------------------------------------------------
// Stock requests replayed against clusterd nodes
// ---------------------------------------------------------------------------------------------

/// A stock 4.14.7 master's agent-groups sends, full then periodic, applied by our worker: every
/// agent with its groups, the worker's global groups hash equal to the stock master's.
#[test]
fn a_stock_4_14_masters_agent_groups_reach_our_workers_database() {
    let root = tempfile::tempdir().unwrap();
    let (worker, home, mut master) =
        under_a_stock_master(root.path(), "4.14.7", common::intervals());
    let vector = vector("agent_groups_4_14_master.json");
    for (send, command, done) in [
        ("full", "syn_g_m_w_c", Command::SynWGCE),
        ("periodic", "syn_g_m_w", Command::SynWGE),
    ] {
        let string = vector[send]["long_string"].as_str().unwrap();
        let sid = master.send_string(string.as_bytes(), T).unwrap();
        let (reply, _) = master.request(command, sid.as_bytes(), T).unwrap();
        assert_eq!(reply, Command::Ok, "{send}");
        let result = master
            .expect(|c| *c == done, T)
            .unwrap_or_else(|e| panic!("{send}: {e}\n{}", worker.log()));
        master.reply(result.counter, "ok", b"Thanks").unwrap();
        let result: Value = serde_json::from_slice(&result.payload).unwrap();
        assert_eq!(result["updated_chunks"], 1, "{send}: {result}");
        assert_eq!(result["error_messages"], json!([]), "{send}: {result}");
    }
    let db = db_of(&home);
    for agent in vector["master_database_agents"].as_array().unwrap() {
        let id = &agent["id"];
        let groups = sql(
            &db,
            &format!(
                "SELECT g.name AS name FROM belongs b JOIN `group` g ON g.id = b.id_group \
                 WHERE b.id_agent = {id} ORDER BY b.priority"
            ),
        );
        let names: Vec<Value> = groups
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].clone())
            .collect();
        assert_eq!(Value::from(names), agent["groups"], "groups of agent {id}");
        // As wazuh-db, a worker creates an agent it does not know while assigning it a group:
        // one with no group is not created.
        let row = sql(&db, &format!("SELECT name FROM agent WHERE id = {id}"));
        match agent["groups"].as_array().unwrap().is_empty() {
            true => assert_eq!(row, json!([]), "agent {id}"),
            false => assert_eq!(row[0]["name"], agent["name"], "agent {id}"),
        }
    }
    let reply = db
        .query(r#"global sync-agent-groups-get {"get_global_hash": true}"#)
        .unwrap();
    let hash: Value = serde_json::from_str(&reply.payload).unwrap();
    assert_eq!(hash[0]["hash"], vector["global_hash"], "{}", reply.payload);
    assert!(!worker.log().contains("ERROR"), "{}", worker.log());
}

/// A stock worker's authd requests (`sendsync`), relayed to our master with its registration
/// service: each is acknowledged as stock does and answered with authd's reply.
fn stock_sendsync_is_answered(version: &str) {
    let root = tempfile::tempdir().unwrap();
    let (master, _home, port) = start_master(root.path(), version);
    let mut worker = stock_worker(port, version);
    let cases = &vector("sendsync_authd_requests.json")[format!("v{version}")];
    let send = |worker: &mut ScriptedPeer, case: &str, payload: &str| -> Value {
        let (command, ack) = worker.request("sendsync", payload.as_bytes(), T).unwrap();
        assert_eq!(command, Command::Ok, "{case}");
        assert_eq!(
            ack,
            cases[case]["master_ack"]["payload"]
                .as_str()
                .unwrap()
                .as_bytes(),
            "{case}"
        );
        let result = worker
            .expect(
                |c| matches!(c, Command::SendSynRes | Command::SendSynErr),
                T,
            )
            .unwrap_or_else(|e| panic!("{case}: {e}\n{}", master.log()));
        worker
            .reply(result.counter, "ok", b"Response received")
            .unwrap();
        let text = String::from_utf8(result.payload).unwrap();
        assert_eq!(result.command, Command::SendSynRes, "{case}: {text}");
        let (client, sid) = text.split_once(' ').unwrap();
        assert_eq!(client, "734211", "{case}");
        let answer = worker.take_string(sid).unwrap();
        serde_json::from_slice(&answer).unwrap()
    };
    let stock = |case: &str| {
        cases[case]["worker_to_master"]["payload"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let success = |case: &str| -> Value {
        serde_json::from_str(cases[case]["authd_answer_success"].as_str().unwrap()).unwrap()
    };

    // A key request with its own id and key (wazuh-modulesd / authd on the worker).
    let keyed = send(
        &mut worker,
        "add_key_request_with_force",
        &stock("add_key_request_with_force"),
    );
    assert_eq!(keyed, success("add_key_request_with_force"));
    // An enrollment without a key: a new id and key; the same name again is a duplicate.
    let added = send(&mut worker, "add_without_key", &stock("add_without_key"));
    assert_eq!(added["error"], 0, "{added}");
    assert_eq!(added["data"]["name"], "agent5", "{added}");
    assert_eq!(
        added["data"]["key"].as_str().map(str::len),
        Some(64),
        "{added}"
    );
    let again = send(&mut worker, "add_without_key", &stock("add_without_key"));
    assert_eq!(again, json!({"error": 9008, "message": "Duplicate name"}));
    // A re-enrollment naming an existing agent is answered as authd answers it.
    let replaced = send(
        &mut worker,
        "add_reenrollment_forced_replacement",
        &stock("add_reenrollment_forced_replacement"),
    );
    assert!(
        replaced["error"] == 0 || replaced["message"].is_string(),
        "{replaced}"
    );
    // The removal authd sends when it could not answer the agent, for the agent just added.
    let id = added["data"]["id"].as_str().unwrap();
    let remove = stock("remove").replace("\"005\"", &format!("\"{id}\""));
    let removed = send(&mut worker, "remove", &remove);
    assert_eq!(removed, success("remove"));
}

#[test]
fn a_stock_4_3_workers_registrations_are_answered_by_our_master() {
    stock_sendsync_is_answered("4.3.11");
}

#[test]
fn a_stock_4_14_workers_registrations_are_answered_by_our_master() {
    stock_sendsync_is_answered("4.14.7");
}

/// What stock `cluster_control` sends for `-l`, `-i` (every form but `-a`, the distributed API),
/// replayed on our master's and our worker's local sockets: all answered, none refused.
fn stock_control_requests_are_answered(version: &str) {
    let root = tempfile::tempdir().unwrap();
    let (_master, master_home, port) = start_master(root.path(), version);
    let worker_home = root.path().join("worker1");
    let worker = common::start(NodeSpec::worker("worker1", port), &worker_home, version);
    assert!(
        worker.wait_for_log("Successfully connected to master", T),
        "{}",
        worker.log()
    );
    let requests = &vector("cluster_control_requests.json")[format!("v{version}")];
    for home in [&master_home, &worker_home] {
        for (case, steps) in requests.as_object().unwrap() {
            for step in steps.as_array().unwrap() {
                let command = step["command"].as_str().unwrap();
                if command == "dapi" {
                    continue;
                }
                let mut client = clusterd::control::client::LocalClient::connect(home, T).unwrap();
                let answer = client
                    .call_json(command, step["payload"].as_str().unwrap().as_bytes())
                    .unwrap_or_else(|e| panic!("{case} on {}: {e}", home.display()));
                let wanted = if command == "get_nodes" {
                    "items"
                } else {
                    "nodes"
                };
                assert!(answer.get(wanted).is_some(), "{case}: {answer}");
            }
        }
    }
}

#[test]
fn stock_4_3_cluster_control_requests_are_answered() {
    stock_control_requests_are_answered("4.3.11");
}

#[test]
fn stock_4_14_cluster_control_requests_are_answered() {
    stock_control_requests_are_answered("4.14.7");
}

/// A 4.14 worker's metadata-only package: `files_metadata.json`, zlib-compressed, in the
/// concatenation format.
fn zlib_metadata(metadata: &Value) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(1));
    encoder.write_all(metadata.to_string().as_bytes()).unwrap();
    let mut out = b"files_metadata.json".to_vec();
    out.extend_from_slice(clusterd::sync::package::zlib::PATH_SEP);
    out.extend_from_slice(&encoder.finish().unwrap());
    out
}

/// Our 4.14 master's agent-groups send to a stock worker takes the stock master's shape (the
/// envelope of `tests/data/stock/agent_groups_4_14_master.json`), once the worker holds the keys.
#[test]
fn our_4_14_masters_agent_groups_reach_a_stock_worker_in_the_stock_shape() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let home = root.path().join("master");
    let mut intervals = common::intervals();
    intervals["intervals"]["master"] =
        json!({"recalculate_integrity": 1, "sync_agent_groups": 1, "agent_group_start_delay": 1});
    NodeSpec::master(port)
        .with_cluster_json(intervals)
        .write(&home)
        .unwrap();
    let keys = "001 web-01 any 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\
                002 db-01 any 1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";
    common::write(&home, "etc/client.keys", keys.as_bytes());
    let master = Daemon::start(
        Path::new(common::DAEMON),
        &home,
        &["--wazuh-version", "4.14.7"],
    )
    .unwrap();
    assert!(
        master.wait_for_log("[Local integrity] Finished", T),
        "{}",
        master.log()
    );
    assert!(wait_until(T, || home.join("queue/db/wdb").exists()));
    let db = db_of(&home);
    db.query("global insert-agent-group default").unwrap();
    for (id, name, group) in [(1, "web-01", "webservers"), (2, "db-01", "databases")] {
        for command in [
            format!(
                r#"global insert-agent {{"id":{id},"name":"{name}","ip":"any","date_add":1700000000}}"#
            ),
            format!("global insert-agent-group {group}"),
            format!(
                r#"global set-agent-groups {{"mode":"override","sync_status":"syncreq","data":[{{"id":{id},"groups":["default","{group}"]}}]}}"#
            ),
        ] {
            let reply = db.query(&command).unwrap();
            assert_ne!(
                reply.status,
                clusterd::store::WdbStatus::Err,
                "{command}: {reply:?}"
            );
        }
    }

    // The stock worker's integrity check tells the master which keys it holds: all of them.
    let mut worker = stock_worker(port, "4.14.7");
    let digest = clusterd::pool::hash::hash_file(
        &home.join("etc/client.keys"),
        clusterd::sync::HashKind::Blake2b512,
    )
    .unwrap();
    let metadata = json!({"etc/client.keys": {"mod_time": 1700000000.5, "cluster_item_key": "etc/",
                                               "merged": false, "hash": digest}});
    assert!(wait_until(T, || worker
        .request("syn_i_w_m_p", b"", T)
        .is_ok_and(|(_, a)| a == b"True")));
    let (_, task) = worker.request("syn_i_w_m", b"", T).unwrap();
    let task = String::from_utf8(task).unwrap();
    let rel = "queue/cluster/worker1/worker1-1700000000.zip";
    worker.send_file(rel, &zlib_metadata(&metadata), T).unwrap();
    worker
        .request("syn_i_w_m_e", format!("{task} {rel}").as_bytes(), T)
        .unwrap();

    let stock_shape: Value = serde_json::from_str(
        vector("agent_groups_4_14_master.json")["periodic"]["long_string"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let mut seen = Vec::new();
    let found = wait_until(T, || {
        let Ok(send) = worker.expect(|c| matches!(c, Command::SynGMW | Command::SynGMWC), T) else {
            return false;
        };
        worker.reply(send.counter, "ok", &send.payload).unwrap();
        let sid = String::from_utf8(send.payload).unwrap();
        let envelope: Value = serde_json::from_slice(&worker.take_string(&sid).unwrap()).unwrap();
        let keys: Vec<&String> = envelope.as_object().unwrap().keys().collect();
        let stock_keys: Vec<&String> = stock_shape.as_object().unwrap().keys().collect();
        assert_eq!(keys, stock_keys, "{envelope}");
        assert_eq!(
            envelope["set_data_command"],
            stock_shape["set_data_command"]
        );
        assert_eq!(envelope["payload"], stock_shape["payload"]);
        let done = if send.command == Command::SynGMW {
            "syn_w_g_e"
        } else {
            "syn_wgc_e"
        };
        worker
            .request(
                done,
                br#"{"updated_chunks": 1, "error_messages": [], "time_spent": 0.01}"#,
                T,
            )
            .unwrap();
        for chunk in envelope["chunks"].as_array().unwrap() {
            let pages: Value = serde_json::from_str(chunk.as_str().unwrap()).unwrap();
            for agent in pages[0]["data"].as_array().unwrap() {
                let fields: Vec<&String> = agent.as_object().unwrap().keys().collect();
                assert_eq!(fields, ["id", "name", "groups"], "{agent}");
                seen.push(agent.clone());
            }
        }
        seen.len() >= 2
    });
    assert!(found, "{seen:?}\n{}", master.log());
    assert!(
        seen.contains(&json!({"id": 1, "name": "web-01", "groups": ["default", "webservers"]})),
        "{seen:?}"
    );
    assert!(
        seen.contains(&json!({"id": 2, "name": "db-01", "groups": ["default", "databases"]})),
        "{seen:?}"
    );
    assert!(!master.log().contains("ERROR"), "{}", master.log());
}
