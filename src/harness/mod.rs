//! Running real nodes on loopback: install roots in temporary directories, `wazuh-clusterd`
//! processes, waiting for conditions. Shared by `cluster-load demo`, the integration tests and the
//! load scenarios, so they all start clusters the same way.

mod daemon;
mod home;
pub mod scrape;
mod scripted_peer;
pub mod wdb_standin;

pub use daemon::{sibling_binary, Daemon};
pub use home::{free_port, NodeSpec, DEMO_KEY};
pub use scripted_peer::{PeerRequest, ScriptedPeer};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `binary --home HOME ARGS...` to completion; returns (exit code, stdout, stderr).
pub fn run_with_home(binary: &Path, home: &Path, args: &[&str]) -> (i32, String, String) {
    match Command::new(binary)
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
    {
        Ok(out) => (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Err(e) => (
            -1,
            String::new(),
            format!("could not run {}: {e}", binary.display()),
        ),
    }
}

/// Polls `check` every 100 ms until it is true or `timeout` passes; returns the last result.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
