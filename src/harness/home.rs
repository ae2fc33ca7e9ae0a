//! Writing a node's install root: `etc/ossec.conf` with its `<cluster>` block and, for fast tests,
//! an `etc/cluster.json` override with short intervals.

use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::Path;

use serde_json::Value;

/// The key of the demo and test clusters (32 word characters, as the configuration requires).
pub const DEMO_KEY: &str = "c98b62a9b6169ac5f67dae55ae4a9088";

/// One node of a test cluster.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub node_name: String,
    pub is_master: bool,
    pub cluster_name: String,
    pub key: String,
    pub port: u16,
    pub master_host: String,
    /// Written to `etc/cluster.json` when set (partial override of the shipped values).
    pub cluster_json: Option<Value>,
}

impl NodeSpec {
    pub fn master(port: u16) -> NodeSpec {
        NodeSpec {
            node_name: "master".into(),
            is_master: true,
            cluster_name: "wazuh".into(),
            key: DEMO_KEY.into(),
            port,
            master_host: "127.0.0.1".into(),
            cluster_json: None,
        }
    }

    pub fn worker(name: &str, port: u16) -> NodeSpec {
        NodeSpec {
            node_name: name.into(),
            is_master: false,
            ..NodeSpec::master(port)
        }
    }

    pub fn with_cluster_json(mut self, value: Value) -> NodeSpec {
        self.cluster_json = Some(value);
        self
    }

    /// The `<cluster>` block as an operator would write it.
    pub fn ossec_conf(&self) -> String {
        format!(
            "<ossec_config>\n  <cluster>\n    <name>{}</name>\n    <node_name>{}</node_name>\n    <node_type>{}</node_type>\n    \
             <key>{}</key>\n    <port>{}</port>\n    <bind_addr>127.0.0.1</bind_addr>\n    <nodes>\n      <node>{}</node>\n    \
             </nodes>\n    <hidden>no</hidden>\n    <disabled>no</disabled>\n  </cluster>\n</ossec_config>\n",
            self.cluster_name,
            self.node_name,
            if self.is_master { "master" } else { "worker" },
            self.key,
            self.port,
            self.master_host,
        )
    }

    /// Creates the install root with only what an operator provides: `etc/ossec.conf` (and the override).
    pub fn write(&self, home: &Path) -> io::Result<()> {
        fs::create_dir_all(home.join("etc"))?;
        fs::write(home.join("etc/ossec.conf"), self.ossec_conf())?;
        if let Some(json) = &self.cluster_json {
            fs::write(
                home.join("etc/cluster.json"),
                serde_json::to_vec_pretty(json)?,
            )?;
        }
        Ok(())
    }
}

/// A TCP port free on loopback right now.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
