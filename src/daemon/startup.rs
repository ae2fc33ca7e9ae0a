//! Preparing the install root before the loop starts.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Name of the local socket inside `queue/cluster/`; it survives the start-up clean-up.
pub const LOCAL_SOCKET: &str = "c-internal.sock";

/// Creates `logs/`, `queue/cluster/` and `var/run/` as needed (harmless to a daemon that already
/// runs there). Returns the directories it created (an install root of its own, as in tests and
/// demos), which the daemon's user then gets.
pub fn create_dirs(home: &Path) -> io::Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    for dir in ["logs", "queue", "queue/cluster", "var", "var/run"] {
        let path = home.join(dir);
        if !path.exists() {
            fs::create_dir_all(&path)?;
            created.push(path);
        }
    }
    Ok(created)
}

/// Empties `queue/cluster/` of what a previous run left there (per-worker transfer directories),
/// as stock nodes do at start. Only under the instance lock: it would wipe a running daemon's
/// transfers.
pub fn clean_transfers(home: &Path) -> io::Result<()> {
    let cluster = home.join("queue/cluster");
    fs::set_permissions(&cluster, fs::Permissions::from_mode(0o770))?;
    for entry in fs::read_dir(&cluster)? {
        let entry = entry?;
        if entry.file_name() == LOCAL_SOCKET {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Detaches from the terminal (no `-f`): fork, new session, standard streams to /dev/null.
pub fn daemonize() -> io::Result<()> {
    use nix::unistd::{fork, setsid, ForkResult};
    // SAFETY: called before any thread or runtime exists, so the child inherits a consistent process.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => {}
    }
    setsid().map_err(io::Error::from)?;
    let null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    use std::os::fd::AsRawFd;
    for fd in 0..3 {
        // SAFETY: both descriptors are open; dup2 only replaces the standard stream.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_dirs_creates_and_cleans_but_keeps_the_socket() {
        let home = tempfile::tempdir().unwrap();
        fs::create_dir_all(home.path().join("queue/cluster/worker1")).unwrap();
        fs::write(home.path().join("queue/cluster/worker1/old.zip"), b"x").unwrap();
        fs::write(home.path().join("queue/cluster/stray"), b"x").unwrap();
        fs::write(home.path().join("queue/cluster").join(LOCAL_SOCKET), b"").unwrap();
        let created = create_dirs(home.path()).unwrap();
        assert_eq!(
            created,
            ["logs", "var", "var/run"].map(|d| home.path().join(d))
        );
        clean_transfers(home.path()).unwrap();
        let left: Vec<_> = fs::read_dir(home.path().join("queue/cluster"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(LOCAL_SOCKET)]);
        assert!(home.path().join("logs").is_dir());
        assert!(home.path().join("var/run").is_dir());
    }
}
