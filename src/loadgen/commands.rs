//! The texts the simulator sends: the `sendsync` registration request and the agent-database
//! commands remoted issues for its agents (PROTOCOL.md §4.4, §6.1), plus the operating systems the
//! simulated agents claim to run.
//!
//! Kept pure so that what goes on the wire can be checked without a node.

use serde_json::{json, Value};

use crate::config::Dialect;

/// `status_code` of an agent that disconnected because it sent its shutdown message (4.14).
pub const STATUS_SHUTDOWN: i64 = 3;

/// The `sendsync` payload authd on a worker sends to register `name`.
pub fn add_request(name: &str, groups: &str) -> Vec<u8> {
    json!({
        "daemon_name": "authd",
        "message": {
            "arguments": {"name": name, "ip": "any", "groups": groups},
            "function": "add"
        }
    })
    .to_string()
    .into_bytes()
}

/// `global insert-agent`: the agent's row, as the manager creates it at registration.
pub fn insert_agent(id: u32, name: &str, now: i64) -> String {
    let data = json!({"id": id, "name": name, "ip": "any", "date_add": now});
    format!("global insert-agent {data}")
}

/// True when `insert-agent` failed only because the row exists (the agent-groups sync may have
/// created it first, or an earlier run did).
pub fn already_inserted(error_text: &str) -> bool {
    error_text.contains("UNIQUE constraint failed") || error_text.contains("already exists")
}

/// What a simulated agent says about itself when it connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsProfile {
    pub os_name: &'static str,
    pub os_version: &'static str,
    pub os_major: &'static str,
    pub os_minor: &'static str,
    pub os_codename: &'static str,
    pub os_platform: &'static str,
    pub os_build: &'static str,
    /// `os_uname` with `{name}` where the agent's host name goes.
    pub os_uname: &'static str,
    pub os_arch: &'static str,
}

/// A mix of the systems a large fleet runs, so listings and filters see more than one kind.
pub const OS_PROFILES: [OsProfile; 4] = [
    OsProfile {
        os_name: "Ubuntu",
        os_version: "22.04.4 LTS (Jammy Jellyfish)",
        os_major: "22",
        os_minor: "04",
        os_codename: "Jammy Jellyfish",
        os_platform: "ubuntu",
        os_build: "",
        os_uname: "Linux |{name} |5.15.0-105-generic |#115-Ubuntu SMP |x86_64",
        os_arch: "x86_64",
    },
    OsProfile {
        os_name: "Red Hat Enterprise Linux",
        os_version: "9.3 (Plow)",
        os_major: "9",
        os_minor: "3",
        os_codename: "Plow",
        os_platform: "rhel",
        os_build: "",
        os_uname: "Linux |{name} |5.14.0-362.8.1.el9_3.x86_64 |#1 SMP PREEMPT_DYNAMIC |x86_64",
        os_arch: "x86_64",
    },
    OsProfile {
        os_name: "Microsoft Windows Server 2022 Datacenter",
        os_version: "10.0.20348.2340",
        os_major: "10",
        os_minor: "0",
        os_codename: "",
        os_platform: "windows",
        os_build: "20348.2340",
        os_uname: "Microsoft Windows Server 2022 Datacenter 10.0.20348.2340",
        os_arch: "x86_64",
    },
    OsProfile {
        os_name: "Debian GNU/Linux",
        os_version: "12 (bookworm)",
        os_major: "12",
        os_minor: "",
        os_codename: "bookworm",
        os_platform: "debian",
        os_build: "",
        os_uname: "Linux |{name} |6.1.0-18-arm64 |#1 SMP Debian 6.1.76-1 |aarch64",
        os_arch: "aarch64",
    },
];

/// The profile of agent `id`: fixed per agent, so a rerun reports the same system.
pub fn profile(id: u32) -> &'static OsProfile {
    &OS_PROFILES[id as usize % OS_PROFILES.len()]
}

/// A private address per agent (`10.x.y.z`), as remoted would see it connect from.
pub fn agent_ip(id: u32) -> String {
    format!(
        "10.{}.{}.{}",
        (id >> 16) & 0xff,
        (id >> 8) & 0xff,
        id & 0xff
    )
}

/// The node facts every connection report carries, and the dialect that decides which sync mark
/// each report leaves for the agent-info sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reporter {
    pub node_name: String,
    pub manager_host: String,
    /// `Wazuh v<version>`.
    pub version: String,
    pub dialect: Dialect,
}

/// What changed about an agent, which decides how much of it the agent-info sync must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Keepalive,
    Status,
}

impl Reporter {
    /// The `sync_status` remoted on a worker writes for `change`. wazuh-db 4.3 knows only
    /// `syncreq` (every change sends the whole agent); 4.14 sends only what changed.
    fn sync_status(&self, change: Change) -> &'static str {
        match (self.dialect, change) {
            (Dialect::V4_3, _) => "syncreq",
            (Dialect::V4_14, Change::Keepalive) => "syncreq_keepalive",
            (Dialect::V4_14, Change::Status) => "syncreq_status",
        }
    }

    /// `global update-keepalive`: the agent is alive.
    pub fn keepalive(&self, id: u32) -> String {
        let sync = self.sync_status(Change::Keepalive);
        let data = json!({"id": id, "connection_status": "active", "sync_status": sync});
        format!("global update-keepalive {data}")
    }

    /// `global update-keepalive` with `pending`: the agent's startup message after it was away.
    /// Its next keepalive is a full [`Reporter::update_agent_data`], as remoted does after a
    /// startup, so the master gets the whole agent, keepalive included.
    pub fn startup(&self, id: u32) -> String {
        let sync = self.sync_status(Change::Status);
        let data = json!({"id": id, "connection_status": "pending", "sync_status": sync});
        format!("global update-keepalive {data}")
    }

    /// `global update-connection-status`: the agent sent its shutdown message. 4.14 also records
    /// why ([`STATUS_SHUTDOWN`]); 4.3's command has no `status_code`.
    pub fn shutdown(&self, id: u32) -> String {
        let sync = self.sync_status(Change::Status);
        let mut data = json!({"id": id, "connection_status": "disconnected", "sync_status": sync});
        if self.dialect == Dialect::V4_14 {
            data["status_code"] = json!(STATUS_SHUTDOWN);
        }
        format!("global update-connection-status {data}")
    }

    /// `global update-agent-data`: the agent connected and told remoted about itself. The agent
    /// needs a full agent-info sync (`syncreq`) and has its shared configuration (`synced`).
    pub fn update_agent_data(&self, id: u32, name: &str) -> String {
        let os = profile(id);
        let mut data = json!({
            "id": id,
            "os_name": os.os_name,
            "os_version": os.os_version,
            "os_major": os.os_major,
            "os_minor": os.os_minor,
            "os_codename": os.os_codename,
            "os_platform": os.os_platform,
            "os_build": os.os_build,
            "os_uname": os.os_uname.replace("{name}", name),
            "os_arch": os.os_arch,
            "version": self.version,
            "config_sum": "ab73af41699f13fdd81903b5f23d8d00",
            "merged_sum": "4a8724b20dee0124ff9656783c490c4e",
            "manager_host": self.manager_host,
            "node_name": self.node_name,
            "agent_ip": agent_ip(id),
            "connection_status": "active",
            "sync_status": "syncreq",
            "group_config_status": "synced",
        });
        // Members a real agent leaves empty are not sent, as remoted does.
        if let Value::Object(map) = &mut data {
            map.retain(|_, v| v.as_str() != Some(""));
        }
        format!("global update-agent-data {data}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argument(command: &str) -> Value {
        let (_, json) = command.split_once(" {").expect("argument");
        serde_json::from_str(&format!("{{{json}")).expect("json")
    }

    #[test]
    fn registration_request_is_what_authd_sends() {
        let request: Value =
            serde_json::from_slice(&add_request("w1-agent-7", "default,web")).expect("json");
        assert_eq!(
            request,
            json!({"daemon_name": "authd", "message": {"arguments": {"name": "w1-agent-7",
                   "ip": "any", "groups": "default,web"}, "function": "add"}})
        );
    }

    #[test]
    fn insert_agent_and_duplicates() {
        let command = insert_agent(12, "w1-agent-12", 1_700_000_000);
        assert!(command.starts_with("global insert-agent {"));
        assert_eq!(
            argument(&command),
            json!({"id": 12, "name": "w1-agent-12", "ip": "any", "date_add": 1_700_000_000})
        );
        assert!(already_inserted(
            "Cannot execute Global database query; UNIQUE constraint failed: agent.id"
        ));
        assert!(!already_inserted("Invalid JSON data, near '{'"));
    }

    fn reporter(dialect: Dialect) -> Reporter {
        Reporter {
            node_name: "worker1".into(),
            manager_host: "host1".into(),
            version: "Wazuh v4.14.7".into(),
            dialect,
        }
    }

    #[test]
    fn agent_data_names_the_node_and_skips_empty_members() {
        let reporter = reporter(Dialect::V4_14);
        let data = argument(&reporter.update_agent_data(4, "w1-agent-4"));
        assert_eq!(data["id"], 4);
        assert_eq!(data["node_name"], "worker1");
        assert_eq!(data["manager_host"], "host1");
        assert_eq!(data["version"], "Wazuh v4.14.7");
        assert_eq!(data["connection_status"], "active");
        assert_eq!(data["sync_status"], "syncreq");
        assert_eq!(data["group_config_status"], "synced");
        assert_eq!(data["os_platform"], "ubuntu");
        assert_eq!(data["agent_ip"], "10.0.0.4");
        assert!(data["os_uname"]
            .as_str()
            .expect("uname")
            .contains("|w1-agent-4 |"));
        assert!(data.get("os_build").is_none(), "empty members are left out");
        let windows = argument(&reporter.update_agent_data(6, "w1-agent-6"));
        assert_eq!(windows["os_platform"], "windows");
        assert_eq!(windows["os_build"], "20348.2340");
    }

    #[test]
    fn keepalive_startup_and_shutdown_in_4_14_mark_only_what_changed() {
        let remoted = reporter(Dialect::V4_14);
        assert!(remoted.keepalive(3).starts_with("global update-keepalive "));
        assert_eq!(
            argument(&remoted.keepalive(3)),
            json!({"id": 3, "connection_status": "active", "sync_status": "syncreq_keepalive"})
        );
        assert!(remoted.startup(3).starts_with("global update-keepalive "));
        assert_eq!(
            argument(&remoted.startup(3)),
            json!({"id": 3, "connection_status": "pending", "sync_status": "syncreq_status"})
        );
        assert!(remoted
            .shutdown(3)
            .starts_with("global update-connection-status "));
        assert_eq!(
            argument(&remoted.shutdown(3)),
            json!({"id": 3, "connection_status": "disconnected", "sync_status": "syncreq_status", "status_code": 3})
        );
    }

    #[test]
    fn in_4_3_every_change_asks_for_a_full_sync_and_shutdown_has_no_status_code() {
        let remoted = reporter(Dialect::V4_3);
        assert_eq!(argument(&remoted.keepalive(3))["sync_status"], "syncreq");
        assert_eq!(argument(&remoted.startup(3))["sync_status"], "syncreq");
        assert_eq!(
            argument(&remoted.shutdown(3)),
            json!({"id": 3, "connection_status": "disconnected", "sync_status": "syncreq"})
        );
        assert_eq!(
            argument(&remoted.update_agent_data(3, "a"))["sync_status"],
            "syncreq"
        );
    }

    #[test]
    fn agent_ips_are_distinct() {
        assert_eq!(agent_ip(1), "10.0.0.1");
        assert_eq!(agent_ip(70_000), "10.1.17.112");
    }
}
