//! io_uring blocked for real (a seccomp filter answering EPERM to `io_uring_setup`, as Docker's default
//! profile does): `auto` falls back to epoll and says why; a forced `io_uring` refuses to start.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use clusterd::control::client::LocalClient;
use clusterd::harness::{free_port, wait_until, NodeSpec};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};

const DAEMON: &str = env!("CARGO_BIN_EXE_wazuh-clusterd");

fn io_uring_blocked() -> BpfProgram {
    let rules = [(libc::SYS_io_uring_setup, vec![])].into_iter().collect();
    let arch = std::env::consts::ARCH
        .try_into()
        .expect("supported architecture");
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .unwrap();
    filter.try_into().unwrap()
}

fn daemon(home: &Path, driver: &str) -> Command {
    let mut cmd = Command::new(DAEMON);
    cmd.arg("-f")
        .arg("-r")
        .arg("--home")
        .arg(home)
        .args(["--io-driver", driver])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let program = io_uring_blocked();
    // SAFETY: applying a prebuilt filter between fork and exec only issues prctl/seccomp system calls.
    unsafe {
        cmd.pre_exec(move || {
            seccompiler::apply_filter(&program).map_err(|e| io::Error::other(e.to_string()))
        });
    }
    cmd
}

#[test]
fn auto_falls_back_to_epoll_where_io_uring_is_blocked() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("master");
    NodeSpec::master(free_port().unwrap()).write(&home).unwrap();
    let mut child = daemon(&home, "auto").stderr(Stdio::null()).spawn().unwrap();
    let log = || std::fs::read_to_string(home.join("logs/cluster.log")).unwrap_or_default();
    let up = wait_until(Duration::from_secs(15), || {
        home.join("queue/cluster/c-internal.sock").exists()
    });
    let runtime = LocalClient::connect(&home, Duration::from_secs(5))
        .and_then(|mut c| c.call_json("get_runtime", b""));
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "{}", log());
    assert_eq!(runtime.unwrap()["io_driver"], "epoll");
    assert!(
        log().contains("io_uring is not usable here (Operation not permitted"),
        "{}",
        log()
    );
    assert!(log().contains("using the epoll IO driver."), "{}", log());
}

#[test]
fn forced_io_uring_refuses_to_start_where_it_is_blocked() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("master");
    NodeSpec::master(free_port().unwrap()).write(&home).unwrap();
    let out = daemon(&home, "io_uring")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("io_uring was requested but does not work here"),
        "{err}"
    );
    assert!(!home.join("queue/cluster/c-internal.sock").exists());
}
