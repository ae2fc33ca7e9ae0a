//! The framework executor with a stand-in Wazuh framework (`tests/data/standin_framework/`, a small
//! Python package written for this test): a master whose install root holds it runs allow-listed
//! framework functions in its helper processes. Results, the request's RBAC context, the timeout,
//! a helper that kills itself (an error, then a fresh helper) and the limit of requests running
//! at once.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clusterd::control::client::{ControlError, LocalClient};
use clusterd::harness::{free_port, Daemon, NodeSpec};
use serde_json::{json, Value};

const DAEMON: &str = env!("CARGO_BIN_EXE_wazuh-clusterd");
/// `timeout_dapi_request` of the test master.
const TIMEOUT_SECS: u64 = 6;
const HELPERS: usize = 2;

/// The real interpreter behind `python3` (not a launcher script), which the daemon runs directly.
fn python() -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is installed (.ci/run installs it)");
    assert!(out.status.success());
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn master(root: &Path) -> (PathBuf, Daemon) {
    let home = root.join("master");
    NodeSpec::master(free_port().unwrap())
        .with_cluster_json(
            json!({"intervals": {"communication": {"timeout_dapi_request": TIMEOUT_SECS}}}),
        )
        .write(&home)
        .unwrap();
    let standin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/standin_framework");
    copy_tree(&standin.join("wazuh"), &home.join("framework/wazuh"));
    fs::write(
        home.join("etc/clusterd.toml"),
        format!(
            "framework_python = {:?}\nframework_helpers = {HELPERS}\n",
            python().display().to_string()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(Path::new(DAEMON), &home, &[]).unwrap();
    assert!(
        daemon.wait_for_log(
            &format!("Distributed API: framework functions run in {HELPERS} helpers"),
            Duration::from_secs(20)
        ),
        "{}",
        daemon.log()
    );
    assert!(daemon.wait_for_log("Serving on (", Duration::from_secs(20)));
    (home, daemon)
}

fn request(function: &str, kwargs: Value) -> Value {
    json!({"f": {"__callable__": {"__name__": function, "__module__": "wazuh.manager",
            "__qualname__": function, "__type__": "function"}},
        "f_kwargs": kwargs, "request_type": "local_master", "from_cluster": false,
        "wait_for_complete": false, "current_user": "wazuh-wui",
        "rbac_permissions": {"rbac_mode": "white", "manager:read": {"*:*:*": "allow"}}})
}

fn dapi(home: &Path, request: &Value) -> Result<Value, ControlError> {
    let raw = LocalClient::connect(home, Duration::from_secs(60))?
        .dapi(request.to_string().as_bytes())?;
    Ok(serde_json::from_slice(&raw).expect("the answer is JSON"))
}

fn result(answer: &Value) -> &Value {
    &answer["__wazuh_result__"]["__object__"]["result"]
}

fn pid_of(answer: &Value) -> u64 {
    result(answer)["data"]["pid"]
        .as_u64()
        .or_else(|| result(answer)["pid"].as_u64())
        .unwrap_or_else(|| panic!("no pid in {answer}"))
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn framework_functions_run_in_bounded_restartable_helpers() {
    let root = tempfile::tempdir().unwrap();
    let (home, master) = master(root.path());

    // A result, computed in a helper with the request's RBAC context and user.
    let status = dapi(&home, &request("get_status", json!({}))).expect("answered");
    assert_eq!(
        result(&status)["data"]["rbac"]["rbac_mode"],
        "white",
        "{status}"
    );
    assert_eq!(result(&status)["data"]["user"], "wazuh-wui");
    let first_pid = pid_of(&status);
    assert_ne!(u64::from(master.pid().unwrap()), first_pid);

    // At most HELPERS requests run at once: of three one-second requests sent together, the
    // third starts only after one of the first two ended, in one of the same helpers.
    let runs: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| dapi(&home, &request("slow", json!({"seconds": 1.0})))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().expect("answered"))
            .collect()
    });
    let spans: Vec<(f64, f64)> = runs
        .iter()
        .map(|r| {
            let o = result(r);
            (o["started"].as_f64().unwrap(), o["ended"].as_f64().unwrap())
        })
        .collect();
    let most_at_once = spans
        .iter()
        .map(|(start, _)| {
            spans
                .iter()
                .filter(|(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap();
    assert_eq!(most_at_once, HELPERS, "{spans:?}");
    let mut pids: Vec<u64> = runs.iter().map(pid_of).collect();
    pids.sort_unstable();
    pids.dedup();
    assert!(pids.len() <= HELPERS, "{pids:?}");

    // A function that overruns timeout_dapi_request: error 3021 at the timeout, its helper is
    // killed, and the next request is answered by a live helper.
    let stuck_pid = root.path().join("stuck.pid");
    let asked = Instant::now();
    let timed_out = dapi(
        &home,
        &request(
            "slow",
            json!({"seconds": 120, "pid_file": stuck_pid.display().to_string()}),
        ),
    )
    .expect("an answer");
    let waited = asked.elapsed();
    assert_eq!(
        timed_out["__wazuh_exception__"]["__object__"]["code"], 3021,
        "{timed_out}"
    );
    assert!(
        waited >= Duration::from_secs(TIMEOUT_SECS - 1) && waited < Duration::from_secs(60),
        "{waited:?}"
    );
    let stuck: u64 = fs::read_to_string(&stuck_pid).unwrap().parse().unwrap();
    let gone = Instant::now();
    while alive(stuck) && gone.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(stuck), "the stuck helper {stuck} was not killed");
    let after = dapi(&home, &request("get_status", json!({}))).expect("answered after a timeout");
    assert_ne!(pid_of(&after), stuck);

    // A function that kills its helper: a clear error at once (no hang), then a fresh helper.
    let crash_pid = root.path().join("crash.pid");
    let asked = Instant::now();
    let crashed = dapi(
        &home,
        &request(
            "crash",
            json!({"pid_file": crash_pid.display().to_string()}),
        ),
    )
    .expect_err("a dead helper is an error");
    assert!(asked.elapsed() < Duration::from_secs(TIMEOUT_SECS));
    assert!(crashed.to_string().contains("helper died"), "{crashed}");
    let dead: u64 = fs::read_to_string(&crash_pid).unwrap().parse().unwrap();
    let again = dapi(&home, &request("get_status", json!({}))).expect("answered after a crash");
    assert_ne!(pid_of(&again), dead);
    assert!(alive(pid_of(&again)));

    // Functions the framework does not expose are still refused before any helper sees them.
    let private = dapi(&home, &request("_private", json!({})));
    assert!(
        private.is_err_and(|e| e.to_string().contains("allow-list")),
        "{}",
        master.log()
    );
}
