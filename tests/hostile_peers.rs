//! Hostile peers against real daemons. A scripted master sends a worker packages with path traversal,
//! absolute paths, a symlink escape, names outside every item, a decompression bomb and a truncated
//! stream: each is refused, the worker stays up, and nothing is written outside the item directories.
//! A scripted worker sends a master files it must never accept: all refused, the master's files intact.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clusterd::harness::{free_port, wait_until, Daemon, NodeSpec, ScriptedPeer, DEMO_KEY};
use clusterd::proto::command::Command;
use clusterd::sync::package::zip::ZipPackageWriter;
use clusterd::sync::package::zlib::{FILE_SEP, PATH_SEP};
use flate2::write::ZlibEncoder;
use serde_json::json;

const DAEMON: &str = env!("CARGO_BIN_EXE_wazuh-clusterd");
const T: Duration = Duration::from_secs(20);

fn zlib(content: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(content).unwrap();
    e.finish().unwrap()
}

/// A 4.14 package written by hand, so names and streams can be anything.
fn zlib_package(members: &[(&str, Vec<u8>)], classification: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, compressed) in members {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(PATH_SEP);
        out.extend_from_slice(compressed);
        out.extend_from_slice(FILE_SEP);
    }
    out.extend_from_slice(b"files_metadata.json");
    out.extend_from_slice(PATH_SEP);
    out.extend_from_slice(&zlib(classification.to_string().as_bytes()));
    out
}

fn missing(paths: &[(&str, &str)]) -> serde_json::Value {
    let entries: serde_json::Map<String, serde_json::Value> = paths
        .iter()
        .map(|(p, key)| (p.to_string(), json!({"mod_time": 1.0, "cluster_item_key": key, "merged": false, "hash": "0".repeat(128)})))
        .collect();
    json!({"missing": entries, "extra": {}, "shared": {}})
}

/// Every regular file under `root` whose name contains `evil`.
fn evil_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                walk(&p, out);
            } else if p.file_name().unwrap().to_string_lossy().contains("evil") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

/// Plays the master for one integrity round with `worker`, sending it `package`.
fn push_package(master: &mut ScriptedPeer, round: usize, package: &[u8]) {
    let permission = master.expect(|c| *c == Command::SynIWMP, T).unwrap();
    master.reply(permission.counter, "ok", b"True").unwrap();
    let open = master.expect(|c| *c == Command::SynIWM, T).unwrap();
    master
        .reply(open.counter, "ok", format!("task-{round}").as_bytes())
        .unwrap();
    let end = master.expect(|c| *c == Command::SynIWME, T).unwrap();
    master
        .reply(end.counter, "ok", b"File correctly received")
        .unwrap();
    let (command, task) = master.request("syn_m_c", b"", T).unwrap();
    assert_eq!(command, Command::Ok);
    let task = String::from_utf8(task).unwrap();
    let rel = format!("queue/cluster/worker1/evil-package-{round}.zip");
    master.send_file(&rel, package, T).unwrap();
    let (command, _) = master
        .request("syn_m_c_e", format!("{task} {rel}").as_bytes(), T)
        .unwrap();
    assert_eq!(command, Command::Ok);
}

#[test]
fn a_hostile_master_cannot_write_outside_the_item_directories() {
    let root = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let home = root.path().join("worker1");
    let intervals = json!({"intervals": {"worker": {"sync_integrity": 1, "keep_alive": 30, "connection_retry": 1},
                                         "communication": {"max_zip_size": 1_048_576, "min_zip_size": 1_048_576}}});
    NodeSpec::worker("worker1", port)
        .with_cluster_json(intervals)
        .write(&home)
        .unwrap();
    // A directory outside the install root, reachable through a symlink inside an item.
    let outside = root.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::create_dir_all(home.join("etc/shared")).unwrap();
    std::os::unix::fs::symlink(&outside, home.join("etc/shared/link")).unwrap();
    let worker = Daemon::start(Path::new(DAEMON), &home, &["--wazuh-version", "4.14.7"]).unwrap();

    let mut master = ScriptedPeer::accept(&listener, DEMO_KEY, T).unwrap();
    let hello = master.expect(|c| *c == Command::Hello, T).unwrap();
    master
        .reply(hello.counter, "ok", b"Client worker1 added")
        .unwrap();

    let bomb = zlib(&vec![0u8; 8 << 20]);
    let mut truncated = zlib(b"<agent_config/>\n".repeat(1000).as_slice());
    truncated.truncate(truncated.len() / 2);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "path traversal",
            zlib_package(
                &[("../../../evil-traversal", zlib(b"x"))],
                &missing(&[("../../../evil-traversal", "etc/shared/")]),
            ),
            "evil-traversal",
        ),
        (
            "absolute path",
            zlib_package(
                &[("/tmp/evil-absolute", zlib(b"x"))],
                &missing(&[("/tmp/evil-absolute", "etc/shared/")]),
            ),
            "evil-absolute",
        ),
        (
            "symlink escape",
            zlib_package(
                &[("etc/shared/link/evil-link", zlib(b"x"))],
                &missing(&[("etc/shared/link/evil-link", "etc/shared/")]),
            ),
            "etc/shared/link/evil-link",
        ),
        (
            "outside every item",
            zlib_package(
                &[("etc/evil-ossec.conf", zlib(b"x"))],
                &missing(&[("etc/evil-ossec.conf", "etc/")]),
            ),
            "etc/evil-ossec.conf",
        ),
        (
            "decompression bomb",
            zlib_package(
                &[("etc/shared/default/evil-bomb", bomb)],
                &missing(&[("etc/shared/default/evil-bomb", "etc/shared/")]),
            ),
            "exceeds the maximum allowed size",
        ),
        (
            "truncated stream",
            zlib_package(
                &[("etc/shared/default/evil-truncated", truncated)],
                &missing(&[("etc/shared/default/evil-truncated", "etc/shared/")]),
            ),
            "Error synchronizing files",
        ),
    ];
    for (round, (name, package, expected)) in cases.iter().enumerate() {
        let errors_before = worker
            .log()
            .matches("ERROR: [Worker worker1] [Integrity sync]")
            .count();
        push_package(&mut master, round, package);
        let logged = wait_until(T, || {
            let log = worker.log();
            log.matches("ERROR: [Worker worker1] [Integrity sync]")
                .count()
                > errors_before
                && log.contains(expected)
        });
        assert!(
            logged,
            "{name}: no refusal naming '{expected}' in the worker's log:\n{}",
            worker.log()
        );
    }
    // The worker survived every package and wrote nothing anywhere.
    let evil = evil_files(root.path());
    assert!(
        evil.is_empty(),
        "files written from hostile packages: {evil:?}"
    );
    assert!(fs::read_dir(&outside).unwrap().next().is_none());
    let (command, _) = master.request("echo", b"still there?", T).unwrap();
    assert_eq!(command, Command::Ok);
}

fn zip_package(members: &[(&str, &[u8])], metadata: &serde_json::Value) -> Vec<u8> {
    let mut writer = ZipPackageWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, content) in members {
        writer
            .add_file(name, content.len() as u64, &mut &content[..])
            .unwrap();
    }
    writer
        .finish(metadata.to_string().as_bytes())
        .unwrap()
        .into_inner()
}

#[test]
fn a_hostile_worker_cannot_change_the_masters_files() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let home = root.path().join("master");
    let intervals = json!({"intervals": {"master": {"recalculate_integrity": 1}}});
    NodeSpec::master(port)
        .with_cluster_json(intervals)
        .write(&home)
        .unwrap();
    let keys = b"001 agent1 any 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";
    fs::write(home.join("etc/client.keys"), keys).unwrap();
    let master = Daemon::start(Path::new(DAEMON), &home, &[]).unwrap();
    assert!(
        master.wait_for_log("[Local integrity] Finished", T),
        "{}",
        master.log()
    );

    let mut worker = ScriptedPeer::connect(&format!("127.0.0.1:{port}"), DEMO_KEY).unwrap();
    let (command, _) = worker
        .request("hello", b"evil wazuh worker 4.3.11", T)
        .unwrap();
    assert_eq!(command, Command::Ok);

    // Files only go into the worker's own directory.
    for path in [
        "/etc/client.keys",
        "/queue/cluster/other/x.zip",
        "/queue/cluster/evil/../../../etc/client.keys",
    ] {
        let (command, answer) = worker.request("new_file", path.as_bytes(), T).unwrap();
        assert_eq!(
            (command, answer.as_slice()),
            (Command::Err, &b"Write path not allowed"[..]),
            "{path}"
        );
    }

    // An integrity package must carry only metadata.
    assert!(wait_until(T, || worker
        .request("syn_i_w_m_p", b"", T)
        .is_ok_and(|(_, a)| a == b"True")));
    let (_, task) = worker.request("syn_i_w_m", b"", T).unwrap();
    let task = String::from_utf8(task).unwrap();
    let package = zip_package(&[("etc/client.keys", b"666 evil any 00\n")], &json!({}));
    worker
        .send_file("queue/cluster/evil/evil-1.zip", &package, T)
        .unwrap();
    let (command, _) = worker
        .request(
            "syn_i_w_m_e",
            format!("{task} queue/cluster/evil/evil-1.zip").as_bytes(),
            T,
        )
        .unwrap();
    assert_eq!(command, Command::Ok);
    let failure = worker.expect(|c| *c == Command::SynMCR, T).unwrap();
    assert!(
        String::from_utf8_lossy(&failure.payload).contains("must not carry files"),
        "{}",
        String::from_utf8_lossy(&failure.payload)
    );

    // Extra-valid files may only be agent groups: client.keys is refused (3007).
    let (_, task) = worker.request("syn_e_w_m", b"", T).unwrap();
    let task = String::from_utf8(task).unwrap();
    let metadata = json!({"etc/client.keys": {"mod_time": 1.0, "cluster_item_key": "etc/", "merged": false, "md5": "0".repeat(32)}});
    let package = zip_package(&[("etc/client.keys", b"666 evil any 00\n")], &metadata);
    worker
        .send_file("queue/cluster/evil/evil-2.zip", &package, T)
        .unwrap();
    worker
        .request(
            "syn_e_w_m_e",
            format!("{task} queue/cluster/evil/evil-2.zip").as_bytes(),
            T,
        )
        .unwrap();
    assert!(master.wait_for_log("Error 3007", T), "{}", master.log());

    assert_eq!(fs::read(home.join("etc/client.keys")).unwrap(), keys);
    assert!(evil_files(&home).is_empty(), "{:?}", evil_files(&home));
}
