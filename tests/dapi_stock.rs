//! The distributed API on a master's local socket, as the stock API and tools use it: a request made
//! by the stock encoder is answered in the stock shape (`tests/data/stock/dapi_agents_overview.json`),
//! and requests that name a callable off the allow-list or carry an encoded exception (the
//! CVE-2025-24016 payload) are refused with nothing run.

use std::path::Path;
use std::time::Duration;

use clusterd::control::client::{ControlError, LocalClient};
use clusterd::harness::{free_port, Daemon, NodeSpec};
use clusterd::store::socket::WdbSocket;
use clusterd::store::{WazuhDb, WdbStatus};
use serde_json::{json, Value};

const DAEMON: &str = env!("CARGO_BIN_EXE_wazuh-clusterd");

fn vector() -> Value {
    let text = include_str!("data/stock/dapi_agents_overview.json");
    serde_json::from_str(text).unwrap()
}

fn master(home: &Path, version: &str) -> Daemon {
    NodeSpec::master(free_port().unwrap()).write(home).unwrap();
    let daemon = Daemon::start(Path::new(DAEMON), home, &["--wazuh-version", version]).unwrap();
    assert!(
        daemon.wait_for_log("Serving on (", Duration::from_secs(20)),
        "{}",
        daemon.log()
    );
    daemon
}

fn load_database(home: &Path) {
    let db = WdbSocket::new(
        home.join("queue/db/wdb"),
        home.join("queue/sockets/wdb-http.sock"),
    );
    for command in vector()["database"].as_array().unwrap() {
        let command = command.as_str().unwrap();
        let reply = db.query(command).expect("wazuh-db answers");
        assert_eq!(reply.status, WdbStatus::Ok, "{command}: {reply:?}");
    }
}

fn dapi(home: &Path, request: &[u8]) -> Result<Vec<u8>, ControlError> {
    LocalClient::connect(home, Duration::from_secs(30))?.dapi(request)
}

fn stock_shape(version: &str) {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("master");
    let _master = master(&home, version);
    load_database(&home);
    let v = vector();
    let raw = dapi(&home, v["request"].as_str().unwrap().as_bytes()).expect("answered");
    let answer: Value = serde_json::from_slice(&raw).unwrap();
    let expected: Value = serde_json::from_str(v["answer"].as_str().unwrap()).unwrap();
    assert_eq!(answer, expected, "{}", String::from_utf8_lossy(&raw));
}

#[test]
fn stock_overview_request_gets_the_stock_answer_4_14() {
    stock_shape("4.14.7");
}

#[test]
fn stock_overview_request_gets_the_stock_answer_4_3() {
    stock_shape("4.3.11");
}

fn callable(module: &str, qualname: &str) -> Value {
    let name = qualname.rsplit('.').next().unwrap();
    json!({"__callable__": {"__name__": name, "__module__": module, "__qualname__": qualname,
        "__type__": "builtin_function_or_method"}})
}

/// Each refused request is answered with an error naming why, nothing runs (the marker file a
/// successful run would create stays absent) and the log names the function.
#[test]
fn code_bearing_requests_are_refused_and_nothing_runs() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("master");
    let master = master(&home, "4.14.7");
    let marker = root.path().join("pwned");
    let touch = format!("touch {}", marker.display());

    let cases = [
        // A callable off the allow-list.
        (
            json!({"f": callable("os", "system"), "f_kwargs": {"command": touch},
                "request_type": "local_master", "from_cluster": false}),
            "os.system",
            "not on this node's allow-list",
        ),
        // An allowed function whose argument is the CVE-2025-24016 exception payload: stock
        // decoding evaluated `__class__` and called it with `__args__`.
        (
            json!({"f": callable("wazuh.core.agent", "Agent.get_agents_overview"),
                "f_kwargs": {"filters": {"__unhandled_exc__": {"__class__": "os.system", "__args__": [touch]}}},
                "request_type": "local_master", "from_cluster": false}),
            "wazuh.core.agent.Agent.get_agents_overview",
            "__unhandled_exc__",
        ),
        // A callable smuggled into an argument.
        (
            json!({"f": callable("wazuh.core.agent", "Agent.get_agents_overview"),
                "f_kwargs": {"select": callable("os", "system")},
                "request_type": "local_master", "from_cluster": false}),
            "wazuh.core.agent.Agent.get_agents_overview",
            "__callable__",
        ),
        // A bound method of a framework object.
        (
            json!({"f": {"__callable__": {"__name__": "system", "__module__": "os", "__qualname__": "system",
                "__wazuh__": {"__class__": "Wazuh"}, "__type__": "method"}}, "f_kwargs": {"command": touch}}),
            "os.system",
            "allow-list",
        ),
    ];
    for (request, function, why) in cases {
        let text = request.to_string();
        let error = dapi(&home, text.as_bytes()).expect_err("refused");
        let shown = error.to_string();
        assert!(shown.contains(why), "{text}: {shown}");
        assert!(
            master.wait_for_log(
                &format!("[D API] Refused request: {function} from "),
                Duration::from_secs(5)
            ),
            "{}",
            master.log()
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!marker.exists(), "a refused request ran");

    // The daemon still answers after the refusals.
    let ok = dapi(&home, vector()["request"].as_str().unwrap().as_bytes())
        .expect("answered after the refusals");
    assert!(String::from_utf8_lossy(&ok).contains("__wazuh_result__"));
}
