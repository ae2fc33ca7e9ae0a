//! A `wazuh-clusterd` child process.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_until;

/// A running (or stopped) daemon and its install root.
pub struct Daemon {
    child: Option<Child>,
    pub home: PathBuf,
    binary: PathBuf,
    args: Vec<String>,
}

/// A binary built next to the running executable (`target/<profile>/`, also from `deps/`).
pub fn sibling_binary(name: &str) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir.join(name))
}

impl Daemon {
    /// Starts `binary -f -r --home HOME ARGS...`, with its standard error appended to
    /// `HOME/stderr.log`. `-r`: demo and test nodes run as the user that starts them, root included.
    pub fn start(binary: &Path, home: &Path, args: &[&str]) -> io::Result<Daemon> {
        let mut with_root = vec!["-r"];
        with_root.extend_from_slice(args);
        Daemon::start_plain(binary, home, &with_root)
    }

    /// Starts `binary -f --home HOME ARGS...` as a service manager would: started as root, the
    /// daemon drops to its configured user.
    pub fn start_plain(binary: &Path, home: &Path, args: &[&str]) -> io::Result<Daemon> {
        let mut d = Daemon {
            child: None,
            home: home.to_path_buf(),
            binary: binary.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        d.spawn()?;
        Ok(d)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join("stderr.log"))?;
        let child = Command::new(&self.binary)
            .arg("-f")
            .arg("--home")
            .arg(&self.home)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// Starts the same daemon again (after `kill9` or `stop`).
    pub fn restart(&mut self) -> io::Result<()> {
        self.spawn()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The daemon's `logs/cluster.log` so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.home.join("logs/cluster.log")).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, then wait up to 10 s (SIGKILL after that). Returns the exit status code if any.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        for _ in 0..100 {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// SIGKILL: no clean-up at all.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
