//! The daemon's pid file, `var/run/wazuh-clusterd-<pid>.pid`.
//!
//! Wazuh tools (`wazuh-control`, the API's status call, `cluster_control`) decide whether the cluster
//! daemon runs by looking for this file and checking that its pid exists in `/proc`, so both the
//! name and the content (`<pid>\n`) follow their convention.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const PREFIX: &str = "wazuh-clusterd-";
const SUFFIX: &str = ".pid";

/// Directory of pid files under a Wazuh installation.
fn run_dir(home: &Path) -> PathBuf {
    home.join("var").join("run")
}

/// The pid file of this process; removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes `HOME/var/run/wazuh-clusterd-<pid>.pid` (mode 0640) for the current process.
    ///
    /// The content is written under a temporary name and renamed into place, so a reader never
    /// sees an empty or partial file.
    pub fn create(home: &Path) -> io::Result<PidFile> {
        let pid = std::process::id();
        let dir = run_dir(home);
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{PREFIX}{pid}{SUFFIX}"));
        // Starts with a dot and does not end in `.pid`: invisible to pid-file scans.
        let tmp = dir.join(format!(".{PREFIX}{pid}.tmp"));
        let written = write_pid(&tmp, pid).and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(PidFile { path, pid })
    }

    /// Location of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pid written in the file.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // A forked child inherits the value but does not own the file.
        if std::process::id() == self.pid {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn write_pid(path: &Path, pid: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(path)?;
    // The creation mode is filtered by the umask; the group must still be able to read it.
    file.set_permissions(Permissions::from_mode(0o640))?;
    file.write_all(format!("{pid}\n").as_bytes())?;
    file.sync_all()
}

/// Pid named by a daemon pid-file name: `wazuh-clusterd-<digits>.pid`. Pool children's files
/// (`wazuh-clusterd_child_<n>-<pid>.pid`) do not match.
fn pid_of(file_name: &str) -> Option<u32> {
    let digits = file_name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Every daemon pid file of the installation at `home`, live or not: `(pid, path)`.
pub fn daemon_pid_files(home: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = fs::read_dir(run_dir(home)) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let pid = entry.file_name().to_str().and_then(pid_of)?;
            Some((pid, entry.path()))
        })
        .collect()
}

/// Whether `pid` is a live cluster daemon, ours or Wazuh's (whose command line runs its
/// `wazuh_clusterd.py` or `wazuh-clusterd`), rather than a process that reused a dead daemon's pid.
pub fn is_cluster_daemon(pid: u32) -> bool {
    let Ok(cmdline) = fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline")) else {
        return false;
    };
    cmdline
        .split(|b| *b == 0)
        .take(4)
        .any(|arg| arg.ends_with(b"wazuh-clusterd") || arg.ends_with(b"wazuh_clusterd.py"))
}

/// Pid of a running cluster daemon of the installation at `home`, if any: a pid file whose pid
/// exists in `/proc`. Files left behind by dead processes are ignored.
pub fn running_daemon(home: &Path) -> Option<u32> {
    let entries = fs::read_dir(run_dir(home)).ok()?;
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str().and_then(pid_of))
        .collect();
    pids.sort_unstable();
    pids.into_iter()
        .find(|pid| Path::new("/proc").join(pid.to_string()).exists())
}

/// Whether process `pid` is this project's daemon rather than Wazuh's Python one: ours runs as the
/// `wazuh-clusterd` program itself, Wazuh's as its Python interpreter running the script (its
/// `argv[0]` is the interpreter). Tools use it to keep commands of ours away from a stock daemon.
pub fn is_clusterd(pid: u32) -> bool {
    let Ok(cmdline) = fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline")) else {
        return false;
    };
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let program = argv0.rsplit(|b| *b == b'/').next().unwrap_or_default();
    program == b"wazuh-clusterd"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reaped_child_pid() -> u32 {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        pid
    }

    #[test]
    fn create_writes_and_drop_removes() {
        let home = tempfile::tempdir().expect("tempdir");
        let pid = std::process::id();
        let file = PidFile::create(home.path()).expect("create");
        let path = file.path().to_path_buf();
        assert_eq!(
            path,
            home.path()
                .join(format!("var/run/wazuh-clusterd-{pid}.pid"))
        );
        assert_eq!(fs::read_to_string(&path).expect("read"), format!("{pid}\n"));
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        assert_eq!(running_daemon(home.path()), Some(pid));
        // Only the pid file is left in the directory (no temporary).
        assert_eq!(
            fs::read_dir(home.path().join("var/run"))
                .expect("ls")
                .count(),
            1
        );
        drop(file);
        assert!(!path.exists());
        assert_eq!(running_daemon(home.path()), None);
    }

    #[test]
    fn stale_and_child_files_are_ignored() {
        let home = tempfile::tempdir().expect("tempdir");
        let run = home.path().join("var/run");
        fs::create_dir_all(&run).expect("mkdir");
        let dead = reaped_child_pid();
        let own = std::process::id();
        fs::write(
            run.join(format!("wazuh-clusterd-{dead}.pid")),
            format!("{dead}\n"),
        )
        .expect("w");
        fs::write(run.join(format!("wazuh-clusterd_child_1-{own}.pid")), "x").expect("w");
        fs::write(run.join(format!("wazuh-clusterd-{own}.pid.bak")), "x").expect("w");
        fs::write(run.join(format!("wazuh-remoted-{own}.pid")), "x").expect("w");
        assert_eq!(running_daemon(home.path()), None);
        fs::write(
            run.join(format!("wazuh-clusterd-{own}.pid")),
            format!("{own}\n"),
        )
        .expect("w");
        assert_eq!(running_daemon(home.path()), Some(own));
    }

    #[test]
    fn missing_run_dir_means_not_running() {
        let home = tempfile::tempdir().expect("tempdir");
        assert_eq!(running_daemon(home.path()), None);
    }

    #[test]
    fn pid_names() {
        assert_eq!(pid_of("wazuh-clusterd-123.pid"), Some(123));
        assert_eq!(pid_of("wazuh-clusterd-.pid"), None);
        assert_eq!(pid_of("wazuh-clusterd-+12.pid"), None);
        assert_eq!(pid_of("wazuh-clusterd_child_2-123.pid"), None);
        assert_eq!(pid_of("wazuh-clusterd-99999999999.pid"), None);
    }
}
