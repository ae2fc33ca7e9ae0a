//! [`WdbServer`]: any [`WazuhDb`] served on a Unix stream socket with wazuh-db's classic framing.
//!
//! Tools written for wazuh-db (and our load generator) then reach the embedded database exactly as
//! they would reach wazuh-db. Plain threads, not the async runtime: every command ends in a
//! blocking SQLite call anyway, and a thread per connection with a hard cap keeps one slow client
//! from delaying the others.

mod conn;

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{unix, StoreError, WazuhDb};

/// Bounds on what clients of a [`WdbServer`] may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once; further ones are closed as soon as they are accepted.
    pub connections_max: usize,
    /// How long a started frame may take to arrive in full; also how often an idle connection
    /// notices that the server stopped.
    pub read_timeout: Duration,
    /// How long a reply may wait for a client that does not read.
    pub write_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            connections_max: 64,
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// State shared by the accept thread and the connection threads.
struct Shared {
    path: PathBuf,
    db: Arc<dyn WazuhDb>,
    limits: ServerLimits,
    stopping: AtomicBool,
    active: AtomicUsize,
}

/// A connection slot, given back when the connection thread ends (or never starts).
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running server; stopping (or dropping) it closes the listener and removes the socket file.
pub struct WdbServer {
    shared: Arc<Shared>,
    /// A second handle on the listening socket, used to wake the accept thread.
    listener: UnixListener,
    accept: Option<JoinHandle<()>>,
    /// Device and inode of the socket file we created, so we never remove someone else's.
    identity: (u64, u64),
}

fn socket_error(path: &Path, reason: String) -> StoreError {
    StoreError::Socket {
        path: path.display().to_string(),
        reason,
    }
}

/// Removes a socket file nobody listens on; refuses to touch a live socket or a non-socket file.
fn clear_stale(path: &Path) -> Result<(), StoreError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(socket_error(path, format!("cannot inspect the path: {e}"))),
    };
    if !meta.file_type().is_socket() {
        let reason = "the path exists and is not a socket; refusing to replace it".to_owned();
        return Err(socket_error(path, reason));
    }
    if unix::listening(path) {
        let reason = "another process is already listening on it".to_owned();
        return Err(socket_error(path, reason));
    }
    fs::remove_file(path)
        .map_err(|e| socket_error(path, format!("cannot remove the stale socket file: {e}")))
}

fn identity(path: &Path) -> io::Result<(u64, u64)> {
    fs::symlink_metadata(path).map(|meta| (meta.dev(), meta.ino()))
}

impl WdbServer {
    /// Serves `db` on a new socket at `path`, replacing a stale socket file left by a dead process.
    pub fn start(
        path: &Path,
        db: Arc<dyn WazuhDb>,
        limits: ServerLimits,
    ) -> Result<WdbServer, StoreError> {
        clear_stale(path)?;
        let listener = UnixListener::bind(path)
            .map_err(|e| socket_error(path, format!("cannot bind: {e}")))?;
        let prepared = fs::set_permissions(path, fs::Permissions::from_mode(0o660))
            .map_err(|e| format!("cannot set mode 0660: {e}"))
            .and_then(|()| identity(path).map_err(|e| format!("cannot inspect the socket: {e}")))
            .and_then(|id| {
                let clone = listener
                    .try_clone()
                    .map_err(|e| format!("cannot share the listener: {e}"))?;
                Ok((id, clone))
            });
        let (identity, accept_listener) = match prepared {
            Ok(parts) => parts,
            Err(reason) => {
                let _ = fs::remove_file(path);
                return Err(socket_error(path, reason));
            }
        };
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            db,
            limits,
            stopping: AtomicBool::new(false),
            active: AtomicUsize::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("wdb-accept".into())
            .spawn(move || accept_loop(&accept_listener, &accept_shared));
        match accept {
            Ok(handle) => Ok(WdbServer {
                shared,
                listener,
                accept: Some(handle),
                identity,
            }),
            Err(e) => {
                let _ = fs::remove_file(path);
                Err(socket_error(
                    path,
                    format!("cannot start the accept thread: {e}"),
                ))
            }
        }
    }

    /// The socket path served.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Connections being served right now.
    pub fn connections(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Stops accepting and removes the socket file; open connections end when their client closes
    /// or at their next read timeout.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Shutting the listening socket down makes a blocked accept return at once on Linux; the
        // connection attempt covers systems where it does not.
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        let _ = unix::connect_within(&self.shared.path, Duration::from_millis(100));
        if accept.join().is_err() {
            tracing::warn!(
                "wazuh-db socket {}: the accept thread panicked",
                self.shared.path.display()
            );
        }
        if identity(&self.shared.path).ok() == Some(self.identity) {
            let _ = fs::remove_file(&self.shared.path);
        }
    }
}

impl Drop for WdbServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: &UnixListener, shared: &Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, _)) => admit(stream, shared),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                // The listener was shut down without a stop: nothing more can be accepted.
                tracing::warn!(
                    "wazuh-db socket {}: no longer accepting: {e}",
                    shared.path.display()
                );
                return;
            }
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning on the error.
                tracing::warn!(
                    "wazuh-db socket {}: accepting a connection failed: {e}",
                    shared.path.display()
                );
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Starts a connection thread if a slot is free; otherwise closes the connection at once.
fn admit(stream: UnixStream, shared: &Arc<Shared>) {
    let max = shared.limits.connections_max;
    if shared.active.fetch_add(1, Ordering::SeqCst) >= max {
        shared.active.fetch_sub(1, Ordering::SeqCst);
        tracing::warn!(
            "wazuh-db socket {}: refusing a connection, {max} already open",
            shared.path.display()
        );
        return;
    }
    let slot = Slot(Arc::clone(shared));
    let spawned = thread::Builder::new()
        .name("wdb-conn".into())
        .spawn(move || {
            let shared = Arc::clone(&slot.0);
            conn::serve(stream, &shared);
            drop(slot);
        });
    if let Err(e) = spawned {
        tracing::warn!(
            "wazuh-db socket {}: cannot start a connection thread: {e}",
            shared.path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedDb;

    fn start(path: &Path) -> Result<WdbServer, StoreError> {
        let db: Arc<dyn WazuhDb> = Arc::new(EmbeddedDb::in_memory().expect("db"));
        WdbServer::start(path, db, ServerLimits::default())
    }

    #[test]
    fn socket_file_has_mode_0660_and_is_removed_on_stop() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wdb");
        let server = start(&path).expect("start");
        let mode = fs::metadata(&path).expect("socket").permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        server.stop();
        assert!(!path.exists());
    }

    #[test]
    fn refuses_a_live_socket_and_a_regular_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wdb");
        let server = start(&path).expect("start");
        let error = start(&path).err().expect("live socket").to_string();
        assert!(error.contains("already listening"), "{error}");
        drop(server);
        assert!(!path.exists(), "drop removes the socket file");
        fs::write(&path, b"data").expect("file");
        let error = start(&path).err().expect("regular file").to_string();
        assert!(error.contains("is not a socket"), "{error}");
        assert_eq!(fs::read(&path).expect("kept"), b"data");
    }

    #[test]
    fn stop_leaves_a_replaced_socket_file_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wdb");
        let server = start(&path).expect("start");
        fs::remove_file(&path).expect("remove");
        let other = UnixListener::bind(&path).expect("someone else binds");
        server.stop();
        assert!(path.exists(), "the other process's socket stays");
        drop(other);
    }
}
