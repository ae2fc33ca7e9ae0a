//! The agent database a node uses, chosen once at start.
//!
//! A running wazuh-db owns the agents and must stay their only writer, so when its socket answers
//! we talk to it. Without one (a cluster node deployed without the manager's daemons), we open the
//! embedded database and serve it on wazuh-db's socket path, so local tools find it where they
//! would find wazuh-db.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{EmbeddedDb, ServerLimits, StoreError, WazuhDb, WdbServer, WdbSocket};

/// Where wazuh-db's classic socket lives, relative to the installation directory.
pub const WDB_SOCKET: &str = "queue/db/wdb";
/// Where wazuh-db's HTTP socket lives, relative to the installation directory.
pub const WDB_HTTP_SOCKET: &str = "queue/sockets/wdb-http.sock";
/// The embedded database file, relative to the installation directory.
pub const EMBEDDED_DB: &str = "queue/db/clusterd-global.db";

/// Which database was chosen, for the startup log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A running wazuh-db, reached on its sockets.
    Wazuh { wdb: PathBuf, http: PathBuf },
    /// The embedded SQLite database, served on wazuh-db's socket path.
    Embedded { db_path: PathBuf, socket: PathBuf },
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Wazuh { wdb, .. } => write!(f, "wazuh-db at {}", wdb.display()),
            Backend::Embedded { db_path, socket } => write!(
                f,
                "embedded agent database {}, served on {}",
                db_path.display(),
                socket.display()
            ),
        }
    }
}

/// The node's agent database, and the server that exposes it when it is the embedded one.
pub struct AgentDb {
    pub db: Arc<dyn WazuhDb>,
    pub backend: Backend,
    server: Option<WdbServer>,
}

impl AgentDb {
    /// Stops serving the embedded database on its socket (nothing to do for wazuh-db).
    pub fn stop(self) {
        if let Some(server) = self.server {
            server.stop();
        }
    }
}

/// Chooses the agent database under the installation directory `home`: wazuh-db if its socket
/// answers, otherwise the embedded database, created if needed and served on wazuh-db's socket.
pub fn open(home: &Path, is_worker: bool) -> Result<AgentDb, StoreError> {
    let wdb = home.join(WDB_SOCKET);
    if WdbSocket::probe(&wdb) {
        let http = home.join(WDB_HTTP_SOCKET);
        let db: Arc<dyn WazuhDb> = Arc::new(WdbSocket::new(wdb.clone(), http.clone()));
        return Ok(AgentDb {
            db,
            backend: Backend::Wazuh { wdb, http },
            server: None,
        });
    }
    let db_path = home.join(EMBEDDED_DB);
    if let Some(dir) = db_path.parent() {
        fs::create_dir_all(dir).map_err(|e| StoreError::Open {
            path: dir.display().to_string(),
            reason: format!("cannot create the directory: {e}"),
        })?;
    }
    let embedded = EmbeddedDb::open(&db_path)?;
    embedded.set_worker_node(is_worker);
    let db: Arc<dyn WazuhDb> = Arc::new(embedded);
    let server = WdbServer::start(&wdb, Arc::clone(&db), ServerLimits::default())?;
    Ok(AgentDb {
        db,
        backend: Backend::Embedded {
            db_path,
            socket: wdb,
        },
        server: Some(server),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_paths() {
        let wazuh = Backend::Wazuh {
            wdb: "/var/ossec/queue/db/wdb".into(),
            http: "/var/ossec/queue/sockets/wdb-http.sock".into(),
        };
        assert_eq!(wazuh.to_string(), "wazuh-db at /var/ossec/queue/db/wdb");
        let embedded = Backend::Embedded {
            db_path: "/var/ossec/queue/db/clusterd-global.db".into(),
            socket: "/var/ossec/queue/db/wdb".into(),
        };
        assert_eq!(
            embedded.to_string(),
            "embedded agent database /var/ossec/queue/db/clusterd-global.db, served on /var/ossec/queue/db/wdb"
        );
    }
}
