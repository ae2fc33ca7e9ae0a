//! The manager's own row (agent 000) in the embedded database.
//!
//! On a full manager, wazuh-modulesd writes this row at start: the host's name, its system, the
//! Wazuh version and the cluster node name, so that listings show the manager as an active agent
//! on its node. A node running on the embedded database has no wazuh-modulesd, so the daemon
//! writes the same row itself; with a real wazuh-db the manager's own daemons do it.

use serde_json::{json, Map, Value};

use super::host::{self, Distribution, Kernel};
use super::{query_ok, DbError, WazuhDb};

/// What the manager's row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerRow {
    pub name: String,
    pub node_name: String,
    /// `Wazuh v<version>`.
    pub version: String,
    pub kernel: Option<Kernel>,
    pub distribution: Option<Distribution>,
}

impl ManagerRow {
    /// This host's row for node `node_name` running as Wazuh `wazuh_version` (`4.14.7`).
    pub fn of_this_host(node_name: &str, wazuh_version: &str) -> ManagerRow {
        ManagerRow {
            name: host::name().unwrap_or_else(|| "localhost".to_owned()),
            node_name: node_name.to_owned(),
            version: format!("Wazuh v{wazuh_version}"),
            kernel: Kernel::of_this_host(),
            distribution: Distribution::of_this_host(),
        }
    }

    /// The `update-agent-data` argument: only the members known, as the manager sends them.
    fn agent_data(&self) -> Value {
        let mut data = Map::new();
        let mut put = |key: &str, value: Option<&str>| {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                data.insert(key.to_owned(), json!(value));
            }
        };
        if let Some(os) = &self.distribution {
            put("os_name", Some(&os.name));
            put("os_version", Some(&os.version));
            put("os_major", os.major.as_deref());
            put("os_minor", os.minor.as_deref());
            put("os_codename", os.codename.as_deref());
            put("os_platform", Some(&os.platform));
        }
        if let Some(kernel) = &self.kernel {
            put("os_uname", Some(&kernel.os_uname()));
            put("os_arch", kernel.arch());
        }
        put("version", Some(&self.version));
        put("manager_host", Some(&self.name));
        put("node_name", Some(&self.node_name));
        put("connection_status", Some("active"));
        put("sync_status", Some("synced"));
        put("group_config_status", Some("synced"));
        data.insert("id".to_owned(), json!(0));
        Value::Object(data)
    }

    /// Writes the row: its name, then its data.
    pub fn write(&self, db: &dyn WazuhDb) -> Result<(), DbError> {
        let name = json!({"id": 0, "name": self.name});
        query_ok(db, &format!("global update-agent-name {name}"))?;
        query_ok(
            db,
            &format!("global update-agent-data {}", self.agent_data()),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedDb;

    /// Writes `row` into a new database and reads agent 000 back.
    fn written(row: &ManagerRow) -> Value {
        let db = EmbeddedDb::in_memory().expect("db");
        row.write(&db).expect("written");
        let reply = query_ok(&db, "global get-agent-info 0").expect("info");
        let agents: Value = serde_json::from_str(&reply.payload).expect("json");
        agents[0].clone()
    }

    #[test]
    fn the_manager_row_names_the_host_node_version_and_system() {
        let row = ManagerRow {
            name: "wazuh-master".into(),
            node_name: "master-node".into(),
            version: "Wazuh v4.14.7".into(),
            kernel: Some(Kernel {
                sysname: "Linux".into(),
                nodename: "wazuh-master".into(),
                release: "6.1.0-18-amd64".into(),
                version: "#1 SMP".into(),
                machine: "x86_64".into(),
            }),
            distribution: Distribution::parse(
                "NAME=\"Debian GNU/Linux\"\nVERSION=\"12 (bookworm)\"\nID=debian\n",
            ),
        };
        let agent = written(&row);
        assert_eq!(agent["name"], "wazuh-master");
        assert_eq!(agent["node_name"], "master-node");
        assert_eq!(agent["version"], "Wazuh v4.14.7");
        assert_eq!(agent["manager_host"], "wazuh-master");
        assert_eq!(agent["connection_status"], "active");
        assert_eq!(agent["os_name"], "Debian GNU/Linux");
        assert_eq!(agent["os_version"], "12");
        assert_eq!(agent["os_codename"], "bookworm");
        assert_eq!(agent["os_major"], "12");
        assert_eq!(agent["os_platform"], "debian");
        assert_eq!(agent["os_arch"], "x86_64");
        assert_eq!(
            agent["os_uname"],
            "Linux |wazuh-master |6.1.0-18-amd64 |#1 SMP |x86_64"
        );
        assert_eq!(agent["sync_status"], "synced");
        // The manager never expires.
        assert_eq!(agent["last_keepalive"], 253_402_300_799_i64);
    }

    #[test]
    fn a_host_without_system_facts_still_gets_name_node_and_version() {
        let row = ManagerRow {
            name: "m".into(),
            node_name: "n".into(),
            version: "Wazuh v4.3.11".into(),
            kernel: None,
            distribution: None,
        };
        let agent = written(&row);
        assert_eq!(agent["name"], "m");
        assert_eq!(agent["node_name"], "n");
        assert_eq!(agent["version"], "Wazuh v4.3.11");
    }
}
