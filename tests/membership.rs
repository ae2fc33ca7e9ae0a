//! Membership with real `wazuh-clusterd` processes on loopback, in temporary install roots, under both
//! IO drivers: joining, refusals with their reasons, master restart, keepalive loss, clean shutdown.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clusterd::harness::{free_port, run_with_home, wait_until, Daemon, NodeSpec};
use serde_json::{json, Value};
use tempfile::TempDir;

const DAEMON: &str = env!("CARGO_BIN_EXE_wazuh-clusterd");
const CONTROL: &str = env!("CARGO_BIN_EXE_cluster_control");
const RETRY_S: u64 = 2;

fn fast() -> Value {
    json!({"intervals": {
        "worker": {"keep_alive": 1, "connection_retry": RETRY_S},
        "master": {"check_worker_lastkeepalive": 1, "max_allowed_time_without_keepalive": 4},
        "communication": {"timeout_cluster_request": 3}
    }})
}

struct Cluster {
    root: TempDir,
    port: u16,
    driver: &'static str,
}

impl Cluster {
    fn new(driver: &'static str) -> Cluster {
        Cluster {
            root: tempfile::tempdir().unwrap(),
            port: free_port().unwrap(),
            driver,
        }
    }

    fn home(&self, name: &str) -> std::path::PathBuf {
        self.root.path().join(name)
    }

    fn start(&self, spec: NodeSpec, extra: &[&str]) -> Daemon {
        static HOMES: AtomicUsize = AtomicUsize::new(0);
        let home = self.home(&format!(
            "{}-{}",
            spec.node_name,
            HOMES.fetch_add(1, Ordering::Relaxed)
        ));
        spec.write(&home).unwrap();
        let mut args = vec!["--io-driver", self.driver];
        args.extend_from_slice(extra);
        Daemon::start(Path::new(DAEMON), &home, &args).unwrap()
    }

    fn master(&self) -> Daemon {
        let d = self.start(NodeSpec::master(self.port).with_cluster_json(fast()), &[]);
        assert!(
            wait_until(Duration::from_secs(15), || d
                .log()
                .contains("Serving on ('127.0.0.1'")),
            "master did not start: {}",
            d.log()
        );
        d
    }

    fn worker(&self, name: &str) -> Daemon {
        self.start(
            NodeSpec::worker(name, self.port).with_cluster_json(fast()),
            &[],
        )
    }
}

/// Runs `cluster_control --home HOME ARGS`; returns (exit code, stdout, stderr).
fn control(home: &Path, args: &[&str]) -> (i32, String, String) {
    run_with_home(Path::new(CONTROL), home, args)
}

/// Node names of the `cluster_control -l` table.
fn listed(home: &Path) -> Vec<String> {
    let (code, out, _) = control(home, &["-l"]);
    if code != 0 {
        return Vec::new();
    }
    out.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn names(list: &[&str]) -> Vec<String> {
    sorted(list.iter().map(|s| s.to_string()).collect())
}

fn three_workers_are_listed_everywhere(driver: &'static str) {
    let c = Cluster::new(driver);
    let mut master = c.master();
    let workers: Vec<Daemon> = ["worker1", "worker2", "worker3"]
        .iter()
        .map(|n| c.worker(n))
        .collect();
    let all = names(&["master", "worker1", "worker2", "worker3"]);
    assert!(
        wait_until(Duration::from_secs(20), || sorted(listed(&master.home))
            == all),
        "listed: {:?}\n{}",
        listed(&master.home),
        master.log()
    );
    // The table has Wazuh's header and the master first.
    let (_, table, _) = control(&master.home, &["-l"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.lines().nth(1).unwrap().starts_with("master "),
        "{table}"
    );
    // Stock spellings and forms: --list-nodes, -d, -u, no argument, -fs without -a.
    let (code, long, _) = control(&master.home, &["--list-nodes", "-d"]);
    assert_eq!((code, &long), (0, &table));
    let (_, _, debug) = control(&master.home, &["-d", "-l"]);
    assert!(debug.contains("DEBUG: Sending get_nodes"), "{debug}");
    let (code, usage, _) = control(&master.home, &["-u"]);
    assert_eq!(code, 0);
    assert!(usage.contains("-a -fn <node> -fs <status>"), "{usage}");
    let (code, help, _) = control(&master.home, &[]);
    assert_eq!(code, 0);
    assert!(help.contains("--filter-agent-status"), "{help}");
    let (code, _, wrong) = control(&master.home, &["-l", "-fs", "active"]);
    assert_eq!(code, 1);
    assert!(wrong.contains("ERROR: Wrong arguments."), "{wrong}");
    // A worker's socket relays to the master and lists the same nodes.
    for w in &workers {
        assert_eq!(sorted(listed(&w.home)), all, "{}", w.log());
    }
    // -i shows the cluster and the IO driver of the node asked.
    let (code, health, err) = control(&workers[0].home, &["-i"]);
    assert_eq!(code, 0, "{err}");
    assert!(health.contains("Cluster name: wazuh"), "{health}");
    assert!(health.contains(&format!("IO driver: {driver}")), "{health}");
    let (code, more, err) = control(&master.home, &["-i", "more"]);
    assert_eq!(code, 0, "{err}");
    assert!(more.contains("worker3"), "{more}");
    assert!(
        master
            .log()
            .contains(&format!("Using the {driver} IO driver.")),
        "{}",
        master.log()
    );
    assert!(workers[1]
        .log()
        .contains("Successfully connected to master."));
    // -a lists the manager itself as agent 000: this host, active on the master's node (the
    // embedded database holds the row a full manager's daemons would write), relayed from a worker.
    let host = clusterd::store::host::name().expect("host name");
    for home in [&master.home, &workers[0].home] {
        let (code, agents, err) = control(home, &["-a"]);
        assert_eq!(code, 0, "{err}");
        let manager: Vec<&str> = agents
            .lines()
            .find(|l| l.starts_with("000 "))
            .unwrap_or_else(|| panic!("no agent 000:\n{agents}"))
            .split_whitespace()
            .collect();
        assert_eq!(manager[1], host, "{agents}");
        assert!(manager.contains(&"active"), "{agents}");
        assert_eq!(manager.last(), Some(&"master"), "{agents}");
    }
    // SIGTERM: clean exit, pid file and socket gone, and cluster_control says so.
    let home = master.home.clone();
    assert_eq!(master.stop(), Some(0));
    assert!(!home.join("queue/cluster/c-internal.sock").exists());
    assert_eq!(std::fs::read_dir(home.join("var/run")).unwrap().count(), 0);
    let (code, _, err) = control(&home, &["-l"]);
    assert_eq!(code, 1);
    assert!(err.contains("Cluster is not running."), "{err}");
}

fn refused_workers_log_the_reason_on_both_sides(driver: &'static str) {
    let c = Cluster::new(driver);
    let master = c.master();
    let good = c.worker("worker1");
    assert!(
        good.wait_for_log("Successfully connected to master.", Duration::from_secs(15)),
        "{}",
        good.log()
    );

    let mut bad_key = NodeSpec::worker("badkey", c.port).with_cluster_json(fast());
    bad_key.key = "0123456789abcdef0123456789abcdef".into();
    let bad_key = c.start(bad_key, &[]);
    let mut bad_cluster = NodeSpec::worker("badcluster", c.port).with_cluster_json(fast());
    bad_cluster.cluster_name = "other".into();
    let bad_cluster = c.start(bad_cluster, &[]);
    let bad_version = c.start(
        NodeSpec::worker("badversion", c.port).with_cluster_json(fast()),
        &["--wazuh-version", "4.14.7"],
    );
    let duplicate = c.worker("worker1");

    let timeout = Duration::from_secs(20);
    assert!(
        bad_key.wait_for_log("cluster key does not match the master's", timeout),
        "{}",
        bad_key.log()
    );
    assert!(
        master.wait_for_log("Could not decrypt message", timeout),
        "{}",
        master.log()
    );
    assert!(master
        .log()
        .contains("cluster key does not match the master's"));

    assert!(
        bad_cluster.wait_for_log(
            "Error 3030 - Worker does not belong to the same cluster",
            timeout
        ),
        "{}",
        bad_cluster.log()
    );
    assert!(
        master.wait_for_log(
            "the worker belongs to cluster 'other' but the master to 'wazuh'",
            timeout
        ),
        "{}",
        master.log()
    );

    assert!(
        bad_version.wait_for_log(
            "Error 3031 - Worker and master versions are not the same",
            timeout
        ),
        "{}",
        bad_version.log()
    );
    assert!(
        master.wait_for_log(
            "the worker announced version 4.14.7 but the master runs 4.3.11",
            timeout
        ),
        "{}",
        master.log()
    );

    assert!(
        duplicate.wait_for_log("a node named worker1 is already connected", timeout),
        "{}",
        duplicate.log()
    );
    assert!(master.log().contains(
        "Error 3028 - Worker node ID already exists: a node named worker1 is already connected"
    ));
    // Refused workers retry on their own schedule and stay out.
    assert!(bad_cluster.wait_for_log(&format!("Reconnecting in {RETRY_S} seconds."), timeout));
    assert_eq!(sorted(listed(&master.home)), names(&["master", "worker1"]));
    // The first worker was never disturbed.
    assert!(
        !good.log().contains("Could not connect to master"),
        "{}",
        good.log()
    );
}

fn workers_rejoin_a_master_killed_and_restarted(driver: &'static str) {
    let c = Cluster::new(driver);
    let mut master = c.master();
    let _workers: Vec<Daemon> = ["worker1", "worker2", "worker3"]
        .iter()
        .map(|n| c.worker(n))
        .collect();
    let all = names(&["master", "worker1", "worker2", "worker3"]);
    assert!(wait_until(Duration::from_secs(20), || sorted(listed(
        &master.home
    )) == all));
    master.kill9();
    std::thread::sleep(Duration::from_secs(1));
    master.restart().unwrap();
    let restarted = Instant::now();
    let limit = Duration::from_secs(RETRY_S + 5);
    assert!(
        wait_until(limit, || sorted(listed(&master.home)) == all),
        "after {:?}: {:?}",
        restarted.elapsed(),
        listed(&master.home)
    );
}

fn a_worker_whose_keepalives_stop_is_dropped(driver: &'static str) {
    let c = Cluster::new(driver);
    let master = c.master();
    let quiet = NodeSpec::worker("quiet", c.port).with_cluster_json(
        json!({"intervals": {"worker": {"keep_alive": 1000, "connection_retry": RETRY_S}}}),
    );
    let quiet = c.start(quiet, &[]);
    assert!(
        quiet.wait_for_log("Successfully connected to master.", Duration::from_secs(15)),
        "{}",
        quiet.log()
    );
    assert!(
        master.wait_for_log(
            "No keep alives have been received from quiet in the last minute. Disconnecting",
            Duration::from_secs(15)
        ),
        "{}",
        master.log()
    );
    assert!(
        quiet.wait_for_log("The master closed the connection", Duration::from_secs(5)),
        "{}",
        quiet.log()
    );
    // ... and the worker comes back on its own.
    assert!(
        wait_until(Duration::from_secs(RETRY_S + 5), || quiet
            .log()
            .matches("Successfully connected to master.")
            .count()
            >= 2),
        "{}",
        quiet.log()
    );
}

macro_rules! both_drivers {
    ($($scenario:ident),+) => {
        mod io_uring { $(#[test] fn $scenario() { super::$scenario("io_uring") })+ }
        mod epoll { $(#[test] fn $scenario() { super::$scenario("epoll") })+ }
    };
}

both_drivers!(
    three_workers_are_listed_everywhere,
    refused_workers_log_the_reason_on_both_sides,
    workers_rejoin_a_master_killed_and_restarted,
    a_worker_whose_keepalives_stop_is_dropped
);
