//! The daemon as an operator runs it on a Wazuh server, with real processes: started as root it
//! drops to its user (here `nobody`, named in `etc/clusterd.toml`) with its files and socket owned
//! as stated and reachable by a process of that user; `-r` keeps root; a second daemon on the same
//! install root is refused and touches nothing of the first; a dead daemon's pid file is taken
//! over; the internal options' debug level, the framework's `cluster.json` and `process_pool_size`
//! take effect; an unsupported option is warned about; `-t`, `-c` and `-V` report what a start
//! would use.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clusterd::config::{ClusterJson, Dialect};
use clusterd::harness::{free_port, run_with_home, wait_until, Daemon, NodeSpec};
use nix::unistd::{Group, Uid, User};

const DAEMON: &str = env!("CARGO_BIN_EXE_wazuh-clusterd");
const CONTROL: &str = env!("CARGO_BIN_EXE_cluster_control");

fn is_root() -> bool {
    Uid::effective().is_root()
}

/// `nobody`'s uid and the gid of its group (`nogroup` on Debian).
fn nobody() -> (u32, u32, String) {
    let user = User::from_name("nobody").unwrap().expect("a nobody user");
    let group = Group::from_gid(user.gid).unwrap().expect("nobody's group");
    (user.uid.as_raw(), user.gid.as_raw(), group.name)
}

/// A master's install root owned by `nobody`, as a Wazuh install root is owned by `wazuh`.
fn nobody_home(root: &Path, name: &str) -> PathBuf {
    let home = root.join(name);
    NodeSpec::master(free_port().unwrap()).write(&home).unwrap();
    let (_, _, group) = nobody();
    fs::write(
        home.join("etc/clusterd.toml"),
        format!("user = \"nobody\"\ngroup = \"{group}\"\n"),
    )
    .unwrap();
    give_to_nobody(root);
    home
}

fn give_to_nobody(path: &Path) {
    let (uid, gid, _) = nobody();
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o770)).unwrap();
        for entry in fs::read_dir(path).unwrap() {
            give_to_nobody(&entry.unwrap().path());
        }
    }
}

fn status_ids(pid: u32, field: &str) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap()
        .to_string();
    line.split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect()
}

fn socket(home: &Path) -> PathBuf {
    home.join("queue/cluster/c-internal.sock")
}

fn serving(daemon: &Daemon) -> bool {
    daemon.wait_for_log("[Local Server] [Main] Serving on", Duration::from_secs(20))
}

/// `cluster_control -l` as `nobody`, the way the API (running as `wazuh`) reaches the socket.
fn list_as_nobody(home: &Path) -> (i32, String) {
    let (uid, gid, _) = nobody();
    let out = Command::new(CONTROL)
        .arg("--home")
        .arg(home)
        .arg("-l")
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn root_drops_to_the_configured_user_and_r_keeps_root() {
    if !is_root() {
        eprintln!("skipped: dropping privileges needs the tests to run as root");
        return;
    }
    let (uid, gid, _) = nobody();
    let root = tempfile::tempdir().unwrap();
    let home = nobody_home(root.path(), "dropping");
    let mut daemon = Daemon::start_plain(Path::new(DAEMON), &home, &[]).unwrap();
    assert!(serving(&daemon), "{}", daemon.log());
    let pid = daemon.pid().unwrap();
    assert_eq!(status_ids(pid, "Uid"), vec![uid; 4]);
    assert_eq!(status_ids(pid, "Gid"), vec![gid; 4]);
    assert_eq!(status_ids(pid, "Groups"), vec![gid]);
    assert!(daemon.log().contains("[Cluster] [Main] Running as nobody:"));

    // Owners and modes as a stock node gives them.
    let meta = fs::metadata(socket(&home)).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (uid, gid, 0o660)
    );
    let pid_file = home.join(format!("var/run/wazuh-clusterd-{pid}.pid"));
    let meta = fs::metadata(&pid_file).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (uid, gid, 0o640)
    );
    let meta = fs::metadata(home.join("logs/cluster.log")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (uid, gid, 0o660)
    );
    for dir in ["queue/cluster", "var/run", "logs"] {
        let meta = fs::metadata(home.join(dir)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{dir}");
        assert_eq!(meta.mode() & 0o007, 0, "{dir} is closed to other users");
    }
    let meta = fs::metadata(home.join("queue/db/clusterd-global.db")).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o007), (uid, 0));

    // A process of that user talks to the local socket.
    let (code, out) = list_as_nobody(&home);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("master"), "{out}");
    daemon.stop();

    // -r keeps root.
    let home = nobody_home(root.path(), "root");
    let mut daemon = Daemon::start_plain(Path::new(DAEMON), &home, &["-r"]).unwrap();
    assert!(serving(&daemon), "{}", daemon.log());
    assert_eq!(status_ids(daemon.pid().unwrap(), "Uid"), vec![0; 4]);
    assert!(daemon.log().contains("Running as root (-r)."));
    daemon.stop();

    // A missing user is a start-up error that names it.
    let home = nobody_home(root.path(), "no-user");
    fs::write(
        home.join("etc/clusterd.toml"),
        "user = \"no-such-clusterd-user\"\n",
    )
    .unwrap();
    let (code, _, err) = run_with_home(Path::new(DAEMON), &home, &["-f"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("user 'no-such-clusterd-user' does not exist"),
        "{err}"
    );
    assert!(!socket(&home).exists(), "nothing was started");
}

#[test]
fn a_second_daemon_on_the_same_root_is_refused_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("master");
    NodeSpec::master(free_port().unwrap()).write(&home).unwrap();
    let mut first = Daemon::start(Path::new(DAEMON), &home, &[]).unwrap();
    assert!(serving(&first), "{}", first.log());
    let inode = fs::metadata(socket(&home)).unwrap().ino();
    // What a transfer in progress leaves in queue/cluster/.
    let transfer = home.join("queue/cluster/worker1/package.zip");
    fs::create_dir_all(transfer.parent().unwrap()).unwrap();
    fs::write(&transfer, b"in progress").unwrap();

    let pid = first.pid().unwrap();
    let (code, _, err) = run_with_home(Path::new(DAEMON), &home, &["-f", "-r"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "another wazuh-clusterd (pid {pid}) runs on this install root"
        )),
        "{err}"
    );
    assert_eq!(fs::metadata(socket(&home)).unwrap().ino(), inode);
    assert_eq!(fs::read(&transfer).unwrap(), b"in progress");
    let (code, out, _) = run_with_home(Path::new(CONTROL), &home, &["-l"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("master"), "{out}");

    // Killed without a chance to clean up: the next start takes its pid file over.
    first.kill9();
    let stale = home.join(format!("var/run/wazuh-clusterd-{pid}.pid"));
    assert!(stale.exists());
    fs::remove_file(home.join("logs/cluster.log")).unwrap();
    let mut next = Daemon::start(Path::new(DAEMON), &home, &[]).unwrap();
    assert!(
        serving(&next),
        "{}\n{}",
        next.log(),
        fs::read_to_string(home.join("stderr.log")).unwrap_or_default()
    );
    assert!(
        next.log().contains(&format!(
            "Removed {}: its daemon (pid {pid}) no longer runs.",
            stale.display()
        )),
        "{}",
        next.log()
    );
    assert!(!stale.exists());
    next.stop();
}

/// The built-in table of `version` in `cluster.json` layout with `edit` applied, as the framework
/// ships it (every key present).
fn framework_cluster_json(dialect: Dialect, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut table = ClusterJson::defaults(dialect).to_json();
    edit(&mut table);
    serde_json::to_string_pretty(&table).unwrap()
}

#[test]
fn stock_configuration_places_take_effect() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("master");
    NodeSpec::master(free_port().unwrap()).write(&home).unwrap();
    // The framework's cluster.json, where operators tune a Wazuh install: integrity every second,
    // a pool of one.
    let framework =
        home.join("framework/python/lib/python3.10/site-packages/wazuh/core/cluster/cluster.json");
    fs::create_dir_all(framework.parent().unwrap()).unwrap();
    fs::write(
        &framework,
        framework_cluster_json(Dialect::V4_3, |t| {
            t["intervals"]["master"]["recalculate_integrity"] = 1.into();
            t["intervals"]["master"]["process_pool_size"] = 1.into();
        }),
    )
    .unwrap();
    fs::write(
        home.join("etc/internal_options.conf"),
        "# shipped\nwazuh_clusterd.debug=0\n",
    )
    .unwrap();
    fs::write(
        home.join("etc/local_internal_options.conf"),
        "wazuh_clusterd.debug=1\n",
    )
    .unwrap();
    let conf = fs::read_to_string(home.join("etc/ossec.conf"))
        .unwrap()
        .replace(
            "</cluster>",
            "<haproxy_helper><haproxy_disabled>no</haproxy_disabled></haproxy_helper></cluster>",
        );
    fs::write(home.join("etc/ossec.conf"), conf).unwrap();

    // -t says what a start would use.
    // On standard error: standard output stays empty, as `wazuh-control -j` needs it.
    let (code, stdout, out) = run_with_home(Path::new(DAEMON), &home, &["-t", "-r"]);
    assert_eq!((code, stdout.as_str()), (0, ""), "{out}");
    assert!(
        out.contains(&format!("cluster.json: {}", framework.display())),
        "{out}"
    );
    assert!(
        out.contains("Log level: 1 (wazuh_clusterd.debug 1 of"),
        "{out}"
    );
    assert!(out.contains("local_internal_options.conf"), "{out}");
    assert!(
        out.contains("Worker pool: 1 threads (process_pool_size 1 of"),
        "{out}"
    );
    assert!(
        out.contains("WARNING: <haproxy_helper> is enabled but not supported"),
        "{out}"
    );

    let mut daemon = Daemon::start(Path::new(DAEMON), &home, &[]).unwrap();
    assert!(serving(&daemon), "{}", daemon.log());
    let log = daemon.log();
    assert!(
        log.contains(&format!("Using {}.", framework.display())),
        "{log}"
    );
    assert!(
        log.contains("Worker pool of 1 threads (process_pool_size 1 of"),
        "{log}"
    );
    assert!(
        log.contains("WARNING: [Cluster] [Main] <haproxy_helper> is enabled"),
        "{log}"
    );
    // Debug level 1: DEBUG lines (a local client's disconnection is one), no DEBUG2 lines.
    let (code, out, _) = run_with_home(Path::new(CONTROL), &home, &["-l"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        wait_until(Duration::from_secs(10), || daemon
            .log()
            .contains(" DEBUG: ")),
        "{}",
        daemon.log()
    );
    // recalculate_integrity 1 s (built-in: 8 s): several rounds within a few seconds.
    assert!(
        wait_until(Duration::from_secs(6), || {
            daemon
                .log()
                .matches("[Local integrity] Finished in")
                .count()
                >= 3
        }),
        "{}",
        daemon.log()
    );
    assert!(!daemon.log().contains(" DEBUG2: "));
    daemon.stop();

    // -d adds to the file's level; etc/cluster.json is merged over the framework's file.
    fs::write(
        home.join("etc/cluster.json"),
        r#"{"intervals": {"master": {"process_pool_size": 2}}}"#,
    )
    .unwrap();
    let (code, _, out) = run_with_home(Path::new(DAEMON), &home, &["-t", "-r", "-d"]);
    assert_eq!(code, 0);
    assert!(out.contains("Log level: 2"), "{out}");
    let operator = home.join("etc/cluster.json");
    assert!(
        out.contains(&format!("cluster.json: {}", operator.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("process_pool_size 2 of {}", operator.display())),
        "{out}"
    );

    // -c reads another ossec.conf.
    let other = root.path().join("other.conf");
    fs::write(&other, NodeSpec::worker("worker7", 1516).ossec_conf()).unwrap();
    let (code, _, out) = run_with_home(
        Path::new(DAEMON),
        &home,
        &["-t", "-r", "-c", other.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "Configuration OK: {} (node worker7, worker",
            other.display()
        )),
        "{out}"
    );

    // -V: the Wazuh release of etc/clusterd.toml, then ours.
    fs::write(
        home.join("etc/clusterd.toml"),
        "wazuh_version = \"4.14.7\"\n",
    )
    .unwrap();
    let (code, out, _) = run_with_home(Path::new(DAEMON), &home, &["-V"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("\nWazuh 4.14.7 - Wazuh Inc\n"), "{out}");
    assert!(out.contains(&format!("clusterd {}", env!("CARGO_PKG_VERSION"))));
}
