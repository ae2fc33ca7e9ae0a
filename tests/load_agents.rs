//! `cluster-load agents` against real processes: a master and one worker on loopback. The agents
//! register through the worker (`sendsync` relayed to the master, whose registration service writes
//! `client.keys`) and are reported into the worker's agent database; a node that is not running is
//! refused with one clear line.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clusterd::control::client::LocalClient;
use clusterd::harness::{free_port, wait_until, Daemon, NodeSpec};
use clusterd::store::{WazuhDb, WdbSocket, WdbStatus};
use serde_json::{json, Value};

const DAEMON: &str = env!("CARGO_BIN_EXE_wazuh-clusterd");
const LOAD: &str = env!("CARGO_BIN_EXE_cluster-load");
const AGENTS: usize = 300;

fn fast() -> Value {
    json!({"intervals": {
        "worker": {"keep_alive": 1, "connection_retry": 1},
        "communication": {"timeout_cluster_request": 10}
    }})
}

fn start(spec: NodeSpec, home: &Path, driver: &str) -> Daemon {
    spec.with_cluster_json(fast()).write(home).unwrap();
    Daemon::start(Path::new(DAEMON), home, &["--io-driver", driver]).unwrap()
}

/// Runs `cluster-load ARGS` to completion (killed after `limit`); (exit code, stdout, stderr).
fn load(args: &[&str], limit: Duration) -> (i32, String, String) {
    let mut child = Command::new(LOAD)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cluster-load runs");
    let started = Instant::now();
    while matches!(child.try_wait(), Ok(None)) && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(100));
    }
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn listed_nodes(home: &Path) -> u64 {
    LocalClient::connect(home, Duration::from_secs(5))
        .and_then(|mut c| c.call_json("get_nodes", b"{}"))
        .map(|v| v["totalItems"].as_u64().unwrap_or(0))
        .unwrap_or(0)
}

/// Agents in `home/etc/client.keys` (removed ones, `!`-marked, not counted).
fn keys(home: &Path) -> usize {
    std::fs::read_to_string(home.join("etc/client.keys"))
        .unwrap_or_default()
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() == 4 && !fields[1].starts_with(['!', '#'])
        })
        .count()
}

/// One number from the worker's database.
fn count(db: &WdbSocket, sql: &str) -> Option<u64> {
    let reply = db.query(&format!("global sql {sql}")).ok()?;
    if reply.status != WdbStatus::Ok {
        return None;
    }
    let rows: Value = serde_json::from_str(&reply.payload).ok()?;
    rows[0]["n"].as_u64()
}

#[test]
fn agents_register_through_a_worker_and_report_to_its_database_io_uring() {
    agents_register_through_a_worker_and_report_to_its_database("io_uring");
}

#[test]
fn agents_register_through_a_worker_and_report_to_its_database_epoll() {
    agents_register_through_a_worker_and_report_to_its_database("epoll");
}

fn agents_register_through_a_worker_and_report_to_its_database(driver: &str) {
    let root = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let master_home = root.path().join("master");
    let worker_home = root.path().join("worker1");
    // A manager has the default group's directory; registration refuses groups without one.
    std::fs::create_dir_all(master_home.join("etc/shared/default")).unwrap();
    std::fs::write(
        master_home.join("etc/shared/default/agent.conf"),
        "<agent_config>\n</agent_config>\n",
    )
    .unwrap();
    let master = start(NodeSpec::master(port), &master_home, driver);
    let worker = start(NodeSpec::worker("worker1", port), &worker_home, driver);
    assert!(
        wait_until(Duration::from_secs(30), || listed_nodes(&master_home) == 2),
        "the worker did not connect\n{}\n{}",
        master.log(),
        worker.log()
    );
    let wdb = worker_home.join("queue/db/wdb");
    assert!(
        wait_until(Duration::from_secs(10), || wdb.exists()),
        "the worker serves no agent database: {}",
        worker.log()
    );

    let home = worker_home.to_str().unwrap();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let count_text = AGENTS.to_string();
    let args = [
        "agents",
        "--home",
        home,
        "--count",
        &count_text,
        "--duration",
        "3",
        "--keepalive-interval",
        "1",
    ];
    let (code, out, err) = load(&args, Duration::from_secs(180));
    let context = format!(
        "exit {code}\n--- stdout\n{out}\n--- stderr\n{err}\n--- worker log\n{}\n--- master log\n{}",
        worker.log(),
        master.log()
    );
    assert_eq!(code, 0, "{context}");
    assert!(
        out.contains(&format!("registered {AGENTS}/{AGENTS} agents (")),
        "{context}"
    );
    assert!(
        out.contains(&format!("connected {AGENTS}/{AGENTS} agents (")),
        "{context}"
    );
    assert!(
        out.contains(&format!(
            "summary: registered {AGENTS}/{AGENTS}, failed 0, connected {AGENTS},"
        )),
        "{context}"
    );

    // One line per keepalive round, with its start time: three rounds about a second apart.
    let rounds: Vec<(u64, f64, String)> = out
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("keepalive round ")?;
            let (round, rest) = rest.split_once(" at ")?;
            let (at, counts) = rest.split_once(": ")?;
            Some((round.parse().ok()?, at.parse().ok()?, counts.to_owned()))
        })
        .collect();
    assert_eq!(rounds.len(), 3, "{context}");
    for (i, (round, at, counts)) in rounds.iter().enumerate() {
        assert_eq!(*round, i as u64 + 1, "{context}");
        assert!(*at > started && *at < started + 120.0, "{context}");
        assert!(counts.contains(" disconnected, "), "{counts}");
        assert!(!counts.contains("failed"), "{counts}");
    }
    for pair in rounds.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(
            (0.5..5.0).contains(&gap),
            "rounds {gap:.3}s apart\n{context}"
        );
    }
    assert!(
        rounds[0]
            .2
            .starts_with("297 keepalives, 3 disconnected, 0 reconnected"),
        "{context}"
    );
    assert!(
        rounds[1]
            .2
            .starts_with("297 keepalives, 3 disconnected, 3 reconnected"),
        "{context}"
    );

    // The master registered every agent; the worker's database has them all on this node.
    assert!(
        wait_until(Duration::from_secs(10), || keys(&master_home) == AGENTS),
        "master client.keys has {} keys\n{context}",
        keys(&master_home)
    );
    let db = WdbSocket::new(wdb, worker_home.join("queue/sockets/wdb-http.sock"));
    let on_worker = count(
        &db,
        "SELECT COUNT(*) AS n FROM agent WHERE id > 0 AND node_name = 'worker1'",
    );
    assert_eq!(on_worker, Some(AGENTS as u64), "{context}");
    let active = count(
        &db,
        "SELECT COUNT(*) AS n FROM agent WHERE id > 0 AND connection_status = 'active'",
    );
    // The last round's disconnected agents are still away.
    assert_eq!(active, Some(AGENTS as u64 - 3), "{context}");
}

#[test]
fn a_node_that_is_not_running_is_refused_in_one_line() {
    let root = tempfile::tempdir().unwrap();
    let stopped = root.path().join("stopped");
    NodeSpec::worker("worker1", 1516).write(&stopped).unwrap();
    let (code, out, err) = load(
        &[
            "agents",
            "--home",
            stopped.to_str().unwrap(),
            "--count",
            "5",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, 1, "stdout {out}\nstderr {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cluster daemon"), "{err}");
    assert!(err.contains("is not running"), "{err}");
    assert!(err.contains("c-internal.sock"), "{err}");

    let empty = root.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, _, err) = load(
        &["agents", "--home", empty.to_str().unwrap(), "--count", "5"],
        Duration::from_secs(30),
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("etc/ossec.conf"), "{err}");
}
