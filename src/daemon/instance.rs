//! One daemon per install root. Two daemons on one root would share `queue/cluster/` (the second
//! one's start-up clean-up wipes the first one's transfers) and the local socket (the second one
//! replaces it, so tools reach a daemon that no longer listens). The first daemon holds an
//! exclusive lock on `var/run/wazuh-clusterd.lock` for its whole life; a second one sees the lock
//! before it touches anything and exits. The lock dies with the process, so a daemon killed with
//! SIGKILL never blocks the next start; the pid files it left behind are taken over.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::pidfile::{daemon_pid_files, is_cluster_daemon};

/// The lock file, relative to the install root. Its name does not look like a pid file, so Wazuh's
/// tools that scan `var/run/` for `wazuh-clusterd-<pid>.pid` never mistake it for one.
pub const LOCK_FILE: &str = "var/run/wazuh-clusterd.lock";

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("another wazuh-clusterd (pid {0}) runs on this install root")]
    Running(u32),
    #[error("another wazuh-clusterd runs on this install root (it holds {0})")]
    RunningUnknownPid(PathBuf),
    #[error("could not lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
}

/// The held lock; released when the process ends. Dropped (a clean stop), it removes the lock file
/// first, so a stopped node leaves `var/run/` as empty as a stock one.
#[derive(Debug)]
pub struct InstanceLock {
    file: Flock<File>,
    path: PathBuf,
    pid: u32,
    /// Pid files of dead daemons removed when the lock was taken: `(pid, path)`, for the log.
    pub taken_over: Vec<(u32, PathBuf)>,
}

impl InstanceLock {
    /// Takes the lock of `home`, or says which daemon holds it. A daemon that runs without the lock
    /// (Wazuh's own, on the same root) is found by its live pid file and refused too; pid files of
    /// processes that are gone are removed.
    pub fn acquire(home: &Path) -> Result<InstanceLock, InstanceError> {
        let path = home.join(LOCK_FILE);
        let failed = |source| InstanceError::Lock {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(failed)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(failed)?;
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                return Err(match read_pid(&mut file) {
                    Some(pid) => InstanceError::Running(pid),
                    None => InstanceError::RunningUnknownPid(path),
                });
            }
            Err((_, errno)) => return Err(failed(io::Error::from(errno))),
        };
        let own = std::process::id();
        let mut taken_over = Vec::new();
        for (pid, pid_path) in daemon_pid_files(home) {
            if pid != own && is_cluster_daemon(pid) {
                return Err(InstanceError::Running(pid));
            }
            if fs::remove_file(&pid_path).is_ok() {
                taken_over.push((pid, pid_path));
            }
        }
        file.set_len(0).map_err(failed)?;
        Ok(InstanceLock {
            file,
            path,
            pid: own,
            taken_over,
        })
    }

    /// Records the pid of the daemon that holds the lock (after it has detached), so that a second
    /// daemon can name it.
    pub fn record_pid(&mut self, pid: u32) -> io::Result<()> {
        self.pid = pid;
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(format!("{pid}\n").as_bytes())?;
        self.file.sync_data()
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // A parent that detached never drops it; only the process that holds it removes the file.
        if std::process::id() == self.pid {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_root_names_the_first_holder() {
        let home = tempfile::tempdir().unwrap();
        let mut first = InstanceLock::acquire(home.path()).unwrap();
        first.record_pid(4242).unwrap();
        let second = InstanceLock::acquire(home.path()).unwrap_err();
        assert_eq!(
            second.to_string(),
            "another wazuh-clusterd (pid 4242) runs on this install root"
        );
        first.record_pid(std::process::id()).unwrap();
        drop(first);
        assert!(!home.path().join(LOCK_FILE).exists());
        InstanceLock::acquire(home.path()).expect("free again once the holder is gone");
    }

    #[test]
    fn pid_files_of_dead_daemons_are_taken_over() {
        let home = tempfile::tempdir().unwrap();
        let run = home.path().join("var/run");
        fs::create_dir_all(&run).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = run.join(format!("wazuh-clusterd-{dead}.pid"));
        fs::write(&stale, format!("{dead}\n")).unwrap();
        let lock = InstanceLock::acquire(home.path()).unwrap();
        assert_eq!(lock.taken_over, vec![(dead, stale.clone())]);
        assert!(!stale.exists());
    }

    #[test]
    fn a_symlinked_lock_file_is_refused() {
        let home = tempfile::tempdir().unwrap();
        fs::create_dir_all(home.path().join("var/run")).unwrap();
        let target = home.path().join("elsewhere");
        fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, home.path().join(LOCK_FILE)).unwrap();
        let err = InstanceLock::acquire(home.path()).unwrap_err();
        assert!(matches!(err, InstanceError::Lock { .. }), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"keep");
    }
}
