//! What the simulator needs to know about the node before it starts, and the checks that the node
//! can take the load: its configuration, its cluster daemon and its agent database.
//!
//! Each check fails with one line naming the path involved, because a load run against the wrong
//! install root or a stopped node is the most common mistake and should be obvious at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::commands::Reporter;
use super::LoadError;
use crate::config::{Config, Dialect, NodeType, SettingsOverrides, OSSEC_CONF};
use crate::control::client::{socket_path, ControlError, LocalClient};
use crate::daemon::pidfile::{is_clusterd, running_daemon};
use crate::store::backend::{WDB_HTTP_SOCKET, WDB_SOCKET};
use crate::store::{WazuhDb, WdbSocket, WdbStatus};

/// The facts about the node that shape the simulated agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    pub home: PathBuf,
    pub node_name: String,
    pub node_type: NodeType,
    /// The Wazuh version the node runs as (agents report `Wazuh v<this>`).
    pub wazuh_version: String,
    /// The dialect of that version: which sync marks remoted leaves for the agent-info sync.
    pub dialect: Dialect,
    /// The host name agents report as their manager.
    pub manager_host: String,
    /// Agents already in the node's database, when it could say.
    pub agents_before: Option<u64>,
}

impl NodeFacts {
    /// Reads the configuration under `home` and checks that the daemon and the database answer.
    pub fn discover(home: &Path, timeout: Duration) -> Result<NodeFacts, LoadError> {
        let config = Config::load(home, &SettingsOverrides::default())
            .map_err(|e| LoadError::Config(format!("cannot load the node configuration: {e}")))?;
        let conf = home.join(OSSEC_CONF);
        if !config.cluster.present {
            return Err(LoadError::Config(format!(
                "{} has no <cluster> block: the node is not part of a cluster",
                conf.display()
            )));
        }
        if config.cluster.disabled {
            return Err(LoadError::Config(format!(
                "the cluster is disabled in {} (<disabled>yes</disabled>)",
                conf.display()
            )));
        }
        let wazuh_version =
            daemon_version(home, timeout)?.unwrap_or_else(|| config.settings.wazuh_version.clone());
        // Checked before anything is registered, so an unsupported version wastes no work.
        let dialect = Dialect::from_version(&wazuh_version).map_err(|e| {
            LoadError::Config(format!(
                "node {} cannot take simulated agents: {e}",
                config.cluster.node_name
            ))
        })?;
        let agents_before = database_agents(home, timeout)?;
        Ok(NodeFacts {
            home: home.to_path_buf(),
            node_name: config.cluster.node_name.clone(),
            node_type: config.cluster.node_type,
            wazuh_version,
            dialect,
            manager_host: crate::store::host::name()
                .unwrap_or_else(|| config.cluster.node_name.clone()),
            agents_before,
        })
    }

    /// What every report of this node's agents carries, in the node's dialect.
    pub fn reporter(&self) -> Reporter {
        Reporter {
            node_name: self.node_name.clone(),
            manager_host: self.manager_host.clone(),
            version: format!("Wazuh v{}", self.wazuh_version),
            dialect: self.dialect,
        }
    }

    /// The node's local socket.
    pub fn local_socket(&self) -> PathBuf {
        socket_path(&self.home)
    }

    /// A client of the node's agent database, as remoted would open it.
    pub fn database(&self, timeout: Duration) -> WdbSocket {
        database(&self.home, timeout)
    }

    /// The line printed before the run starts.
    pub fn describe(&self, count: usize, concurrency: usize) -> String {
        let before = match self.agents_before {
            Some(n) => format!(" ({n} agents before the run)"),
            None => String::new(),
        };
        format!(
            "node {} ({}, Wazuh v{}): registering {count} agents through {} with {concurrency} connections; \
             agent database {}{before}",
            self.node_name,
            self.node_type.as_str(),
            self.wazuh_version,
            self.local_socket().display(),
            self.home.join(WDB_SOCKET).display(),
        )
    }
}

fn database(home: &Path, timeout: Duration) -> WdbSocket {
    WdbSocket::new(home.join(WDB_SOCKET), home.join(WDB_HTTP_SOCKET)).with_timeout(timeout)
}

/// Connects to the daemon's local socket; asks it which Wazuh version it runs as (our daemon's
/// `get_runtime`; `None` from Wazuh's daemon or one that does not know the command).
fn daemon_version(home: &Path, timeout: Duration) -> Result<Option<String>, LoadError> {
    let not_running = |e: ControlError| {
        LoadError::Daemon(format!(
            "the cluster daemon of {} is not running: {e}",
            home.display()
        ))
    };
    let mut client = LocalClient::connect(home, timeout).map_err(not_running)?;
    // `get_runtime` is ours: a Wazuh daemon is not asked.
    if !running_daemon(home).is_some_and(is_clusterd) {
        return Ok(None);
    }
    match client.call_json("get_runtime", b"") {
        Ok(runtime) => Ok(runtime["wazuh_version"].as_str().map(str::to_owned)),
        Err(ControlError::Remote(_)) => Ok(None),
        Err(e) => Err(LoadError::Daemon(format!(
            "the cluster daemon of {} does not answer on {}: {e}",
            home.display(),
            socket_path(home).display()
        ))),
    }
}

/// Asks the agent database how many agents it holds; an error when it does not answer at all.
fn database_agents(home: &Path, timeout: Duration) -> Result<Option<u64>, LoadError> {
    let db = database(home, timeout);
    let reply = db
        .query("global sql SELECT COUNT(*) AS n FROM agent WHERE id > 0")
        .map_err(|e| LoadError::Database(format!("the agent database does not answer: {e}")))?;
    if reply.status != WdbStatus::Ok {
        return Ok(None);
    }
    let rows: serde_json::Value = serde_json::from_str(&reply.payload).unwrap_or_default();
    Ok(rows[0]["n"].as_u64())
}

/// This machine's host name (as the kernel has it), which remoted reports as the agents' manager.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::NodeSpec;

    #[test]
    fn a_home_without_configuration_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = NodeFacts::discover(dir.path(), Duration::from_secs(1))
            .expect_err("no config")
            .to_string();
        assert!(
            error.starts_with("cannot load the node configuration: cannot read"),
            "{error}"
        );
        assert!(error.contains("etc/ossec.conf"), "{error}");
    }

    #[test]
    fn a_stopped_daemon_is_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        NodeSpec::worker("worker1", 1516)
            .write(dir.path())
            .expect("home");
        let error = NodeFacts::discover(dir.path(), Duration::from_secs(1))
            .expect_err("not running")
            .to_string();
        assert!(
            error.contains("is not running: could not connect to"),
            "{error}"
        );
        assert!(error.contains("c-internal.sock"), "{error}");
    }

    #[test]
    fn a_database_that_does_not_answer_is_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        NodeSpec::worker("worker1", 1516)
            .write(dir.path())
            .expect("home");
        let node = super::super::fake_node::serve(dir.path(), Vec::new());
        let error = NodeFacts::discover(dir.path(), Duration::from_secs(2))
            .expect_err("no database")
            .to_string();
        assert!(
            error.starts_with("the agent database does not answer: "),
            "{error}"
        );
        assert!(error.contains("queue/db/wdb: cannot connect"), "{error}");
        drop(node.join());
    }

    #[test]
    fn a_disabled_cluster_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = NodeSpec::worker("worker1", 1516);
        let conf = spec
            .ossec_conf()
            .replace("<disabled>no</disabled>", "<disabled>yes</disabled>");
        std::fs::create_dir_all(dir.path().join("etc")).expect("etc");
        std::fs::write(dir.path().join(OSSEC_CONF), conf).expect("conf");
        let error = NodeFacts::discover(dir.path(), Duration::from_secs(1))
            .expect_err("disabled")
            .to_string();
        assert!(error.starts_with("the cluster is disabled in"), "{error}");
    }
}
