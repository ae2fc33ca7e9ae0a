//! The `<cluster>` block of `etc/ossec.conf`.
//!
//! The same block is read by the C daemons of a Wazuh manager, so we accept exactly what they accept and
//! refuse what they refuse: an `ossec.conf` that makes this daemon fail would also stop the rest of the
//! manager. The checks that only matter to a running cluster (key, port range, master address) are applied
//! only when the cluster is enabled, because the stock file ships a disabled block full of placeholders.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::ConfigError;

/// Name of the synthetic element wrapped around the whole file. `ossec.conf` has several top-level
/// `<ossec_config>` blocks, which plain XML does not allow. The name is chosen so that the parser's
/// message for a block left open reads naturally ("expected 'ossec_config' tag, not 'end_of_file'").
const ROOT: &str = "end_of_file";

const DEFAULT_NAME: &str = "wazuh";
const DEFAULT_NODE_NAME: &str = "node01";
const DEFAULT_PORT: u16 = 1516;
const DEFAULT_BIND_ADDR: &str = "0.0.0.0";
/// Placeholder of the stock `ossec.conf`; refused when the cluster is enabled.
const DEFAULT_NODE: &str = "NODE_IP";

/// Keys of the `get_config` answer, in the order used for those not written in `ossec.conf`.
const GET_CONFIG_KEYS: [&str; 9] = [
    "name",
    "node_name",
    "node_type",
    "key",
    "port",
    "bind_addr",
    "nodes",
    "hidden",
    "disabled",
];

/// Master addresses a worker could never reach the master with.
const RESERVED_NODES: [&str; 4] = ["localhost", "NODE_IP", "0.0.0.0", "127.0.1.1"];

/// Length of a cluster key: the 32 bytes Fernet derives its signing and encryption keys from.
const KEY_LEN: usize = 32;

/// Role of this node in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeType {
    Master,
    Worker,
}

impl NodeType {
    /// The word used in `ossec.conf`, in `get_config` and in node listings.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Master => "master",
            NodeType::Worker => "worker",
        }
    }
}

impl std::fmt::Display for NodeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The validated `<cluster>` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Cluster name; master and workers must agree on it.
    pub name: String,
    /// This node's name, unique in the cluster.
    pub node_name: String,
    pub node_type: NodeType,
    /// Fernet key material (32 ASCII word characters when the cluster is enabled).
    pub key: String,
    /// TCP port the master listens on and workers connect to.
    pub port: u16,
    /// Address the master listens on (ignored by workers).
    pub bind_addr: String,
    /// Master addresses; workers use the first one.
    pub nodes: Vec<String>,
    /// `<hidden>yes</hidden>`: other daemons leave cluster details out of alerts.
    pub hidden: bool,
    /// No cluster at all: the daemon exits at once.
    pub disabled: bool,
    /// element names in the order they appear in ossec.conf (for get_config key order)
    pub element_order: Vec<String>,
    /// true when ossec.conf had a <cluster> block at all
    pub present: bool,
}

impl Default for ClusterConfig {
    /// The configuration of a manager whose `ossec.conf` has no `<cluster>` block: disabled.
    fn default() -> ClusterConfig {
        ClusterConfig {
            name: DEFAULT_NAME.to_string(),
            node_name: DEFAULT_NODE_NAME.to_string(),
            node_type: NodeType::Master,
            key: String::new(),
            port: DEFAULT_PORT,
            bind_addr: DEFAULT_BIND_ADDR.to_string(),
            nodes: vec![DEFAULT_NODE.to_string()],
            hidden: false,
            disabled: true,
            element_order: Vec::new(),
            present: false,
        }
    }
}

impl ClusterConfig {
    /// Parses the text of an `ossec.conf`; errors name the file `ossec.conf`.
    ///
    /// Returns the configuration and the warnings to log (deprecated values, ignored extra nodes).
    pub fn parse(xml_text: &str) -> Result<(ClusterConfig, Vec<String>), ConfigError> {
        parse_named(xml_text, Path::new("ossec.conf"))
    }

    /// Reads and parses `ossec_conf`; errors name that path.
    pub fn load(ossec_conf: &Path) -> Result<(ClusterConfig, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(ossec_conf).map_err(|source| ConfigError::Read {
            path: ossec_conf.to_path_buf(),
            source,
        })?;
        parse_named(&text, ossec_conf)
    }

    /// JSON answered to the local `get_config` command: keys name,node_name,node_type,key,port,bind_addr,nodes,hidden,disabled;
    /// keys in ossec.conf order first, then the remaining ones in that default order. port is a number, nodes an array,
    /// hidden the string "yes"/"no", disabled a bool, node_type "master"/"worker".
    pub fn get_config_json(&self) -> Value {
        let written = self
            .element_order
            .iter()
            .map(String::as_str)
            .filter(|name| GET_CONFIG_KEYS.contains(name));
        let mut map = Map::new();
        for key in written.chain(GET_CONFIG_KEYS) {
            if map.contains_key(key) {
                continue;
            }
            let value = match key {
                "name" => Value::from(self.name.as_str()),
                "node_name" => Value::from(self.node_name.as_str()),
                "node_type" => Value::from(self.node_type.as_str()),
                "key" => Value::from(self.key.as_str()),
                "port" => Value::from(self.port),
                "bind_addr" => Value::from(self.bind_addr.as_str()),
                "nodes" => Value::from(self.nodes.clone()),
                "hidden" => Value::from(if self.hidden { "yes" } else { "no" }),
                _ => Value::from(self.disabled),
            };
            map.insert(key.to_string(), value);
        }
        Value::Object(map)
    }

    /// the master address workers connect to (nodes[0])
    ///
    /// Empty only for a disabled cluster whose `<nodes>` block is empty; an enabled one always has a node.
    pub fn master_address(&self) -> &str {
        self.nodes.first().map(String::as_str).unwrap_or("")
    }
}

/// Parses `text`, naming `path` in errors.
fn parse_named(text: &str, path: &Path) -> Result<(ClusterConfig, Vec<String>), ConfigError> {
    let prepared = prepare(text);
    let document = roxmltree::Document::parse(&prepared).map_err(|e| xml_error(path, &e))?;
    let blocks = document
        .root_element()
        .children()
        .filter(|n| n.has_tag_name("ossec_config"))
        .flat_map(|n| n.children())
        .filter(|n| n.has_tag_name("cluster"));

    let mut reader = BlockReader::new(path);
    for block in blocks {
        reader.read_block(block)?;
    }
    reader.finish()
}

/// Accumulates the `<cluster>` blocks in file order; a later element replaces an earlier one.
struct BlockReader {
    path: PathBuf,
    config: ClusterConfig,
    /// Port as written and its value (already known to be an integer); the range is checked once it is
    /// known whether the cluster is enabled.
    port: Option<(String, u64)>,
    warnings: Vec<String>,
}

impl BlockReader {
    fn new(path: &Path) -> BlockReader {
        BlockReader {
            path: path.to_path_buf(),
            config: ClusterConfig::default(),
            port: None,
            warnings: Vec::new(),
        }
    }

    fn read_block(&mut self, block: roxmltree::Node<'_, '_>) -> Result<(), ConfigError> {
        if !self.config.present {
            self.config.present = true;
            self.config.disabled = false;
        }
        for element in block.children().filter(|n| n.is_element()) {
            let name = element.tag_name().name();
            self.read_element(name, element)?;
            if !self.config.element_order.iter().any(|n| n == name) {
                self.config.element_order.push(name.to_string());
            }
        }
        Ok(())
    }

    /// Checks that depend on one element only are made on every occurrence, as the C readers do.
    fn read_element(
        &mut self,
        name: &str,
        element: roxmltree::Node<'_, '_>,
    ) -> Result<(), ConfigError> {
        let value = text_of(element);
        match name {
            "name" | "node_name" => {
                self.check_name(name, &value)?;
                if name == "name" {
                    self.config.name = value;
                } else {
                    self.config.node_name = value;
                }
            }
            "node_type" => self.config.node_type = self.node_type(&value)?,
            "key" => self.config.key = value,
            "port" => {
                let number = self.port_number(&value)?;
                self.port = Some((value, number));
            }
            "bind_addr" => self.config.bind_addr = value,
            "nodes" => self.config.nodes = self.nodes(element),
            "hidden" => self.config.hidden = self.yes_no(name, &value)?,
            "disabled" => self.config.disabled = self.yes_no(name, &value)?,
            "interval" => self.warnings.push(
                "The <interval> option of <cluster> is deprecated and no longer has any effect."
                    .to_string(),
            ),
            "haproxy_helper" => {
                let disabled = element
                    .children()
                    .find(|c| c.has_tag_name("haproxy_disabled"))
                    .map(text_of);
                if disabled.as_deref() != Some("yes") {
                    self.warnings.push(
                        "<haproxy_helper> is enabled but not supported by clusterd and is ignored: \
                         the master does not balance agents through HAProxy. Set \
                         <haproxy_disabled>yes</haproxy_disabled> to keep it off."
                            .to_string(),
                    );
                }
            }
            // Accepted by the C readers and without effect on the cluster daemon.
            "socket_timeout" | "connection_timeout" => {}
            _ => {
                return Err(ConfigError::UnknownElement {
                    path: self.path.clone(),
                    element: name.to_string(),
                })
            }
        }
        Ok(())
    }

    fn check_name(&self, element: &str, value: &str) -> Result<(), ConfigError> {
        if value.is_empty() {
            return Err(ConfigError::EmptyElement {
                path: self.path.clone(),
                element: element.to_string(),
            });
        }
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || super::error::NAME_PUNCTUATION.contains(c);
        if !value.chars().all(allowed) {
            return Err(ConfigError::InvalidCharacters {
                path: self.path.clone(),
                element: element.to_string(),
                value: value.to_string(),
            });
        }
        Ok(())
    }

    fn node_type(&mut self, value: &str) -> Result<NodeType, ConfigError> {
        match value {
            "master" => Ok(NodeType::Master),
            "worker" => Ok(NodeType::Worker),
            "client" => {
                self.warnings
                    .push("Deprecated node type 'client'. Using 'worker' instead.".to_string());
                Ok(NodeType::Worker)
            }
            "" => Err(ConfigError::EmptyElement {
                path: self.path.clone(),
                element: "node_type".to_string(),
            }),
            other => Err(ConfigError::InvalidNodeType {
                path: self.path.clone(),
                value: other.to_string(),
            }),
        }
    }

    /// Any run of ASCII digits is an integer; values too large for `u64` are certainly out of range.
    fn port_number(&self, value: &str) -> Result<u64, ConfigError> {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::PortNotInteger {
                path: self.path.clone(),
                value: value.to_string(),
            });
        }
        Ok(value.parse::<u64>().unwrap_or(u64::MAX))
    }

    /// Every child element is a node address, whatever its tag, as the stock daemon reads them; empty
    /// entries are dropped so they cannot become an empty master address.
    fn nodes(&mut self, element: roxmltree::Node<'_, '_>) -> Vec<String> {
        let mut nodes = Vec::new();
        for child in element.children().filter(|n| n.is_element()) {
            let tag = child.tag_name().name();
            if tag != "node" {
                self.warnings.push(format!(
                    "Element <{tag}> inside <cluster><nodes> is read as a <node>."
                ));
            }
            let address = text_of(child);
            if address.is_empty() {
                self.warnings
                    .push("Ignoring an empty <node> inside <cluster><nodes>.".to_string());
                continue;
            }
            nodes.push(address);
        }
        nodes
    }

    fn yes_no(&self, element: &str, value: &str) -> Result<bool, ConfigError> {
        match value {
            "yes" => Ok(true),
            "no" => Ok(false),
            other => Err(ConfigError::InvalidYesNo {
                path: self.path.clone(),
                element: element.to_string(),
                value: other.to_string(),
            }),
        }
    }

    /// Applies the checks that concern the merged result, in the order the stock daemon makes them.
    fn finish(mut self) -> Result<(ClusterConfig, Vec<String>), ConfigError> {
        let enabled = self.config.present && !self.config.disabled;
        if enabled {
            self.check_enabled()?;
        }
        if let Some((value, number)) = &self.port {
            // A disabled cluster may keep any port, but it still has to be one.
            self.config.port = u16::try_from(*number).map_err(|_| ConfigError::PortOutOfRange {
                path: self.path.clone(),
                value: value.clone(),
            })?;
        }
        Ok((self.config, self.warnings))
    }

    fn check_enabled(&mut self) -> Result<(), ConfigError> {
        let key = &self.config.key;
        if key.is_empty() {
            return Err(ConfigError::UnspecifiedKey {
                path: self.path.clone(),
            });
        }
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        if key.len() != KEY_LEN || !key.bytes().all(word) {
            return Err(ConfigError::InvalidKey {
                path: self.path.clone(),
            });
        }
        if let Some((value, number)) = &self.port {
            if !(1024 < *number && *number < 65535) {
                return Err(ConfigError::PortOutOfRange {
                    path: self.path.clone(),
                    value: value.clone(),
                });
            }
        }
        let nodes = &self.config.nodes;
        let Some(first) = nodes.first() else {
            return Err(ConfigError::NoNodes {
                path: self.path.clone(),
            });
        };
        if nodes.len() > 1 {
            self.warnings.push(format!(
                "Found more than one node in configuration. Only master node should be specified. \
                 Using {first} as master."
            ));
        }
        let mut invalid: Vec<String> = Vec::new();
        for node in nodes {
            if RESERVED_NODES.contains(&node.as_str()) && !invalid.contains(node) {
                invalid.push(node.clone());
            }
        }
        if !invalid.is_empty() {
            return Err(ConfigError::InvalidNodes {
                path: self.path.clone(),
                nodes: invalid,
            });
        }
        Ok(())
    }
}

/// Text directly inside `node` (comments and child elements skipped), trimmed.
fn text_of(node: roxmltree::Node<'_, '_>) -> String {
    let text: String = node
        .children()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect();
    text.trim().to_string()
}

/// Turns the file into one well-formed document while keeping line numbers unchanged.
///
/// Besides the synthetic root, this tolerates what the other Wazuh readers of the same file tolerate:
/// an XML declaration at the top, `--` inside comments, and `<` or `&` characters that do not start markup
/// or an entity (they are taken literally).
fn prepare(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = String::with_capacity(text.len() + 64);
    out.push('<');
    out.push_str(ROOT);
    out.push('>');

    let mut rest = text;
    let leading = rest.len() - rest.trim_start().len();
    if rest[leading..].starts_with("<?xml") {
        if let Some(end) = rest.find("?>") {
            // Blank the declaration out rather than remove it, so positions stay the same.
            out.extend(
                rest[..end + 2]
                    .chars()
                    .map(|c| if c == '\n' { c } else { ' ' }),
            );
            rest = &rest[end + 2..];
        }
    }

    while let Some(i) = rest.find(['<', '&']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(body) = rest.strip_prefix("<!--") {
            let Some(end) = body.find("-->") else {
                break; // Unterminated: the parser reports it.
            };
            out.push_str("<!--");
            out.push_str(&body[..end].replace("--", ".."));
            out.push_str("-->");
            rest = &body[end + 3..];
        } else if rest.starts_with("<![CDATA[") {
            let end = rest.find("]]>").map_or(rest.len(), |e| e + 3);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        } else if let Some(after) = rest.strip_prefix('<') {
            let starts_markup = after
                .chars()
                .next()
                .is_some_and(|c| matches!(c, '/' | '?' | '!' | '_' | ':') || c.is_alphabetic());
            out.push_str(if starts_markup { "<" } else { "&lt;" });
            rest = after;
        } else {
            let after = &rest[1..];
            out.push_str(if is_entity(after) { "&" } else { "&amp;" });
            rest = after;
        }
    }
    out.push_str(rest);
    out.push_str("</");
    out.push_str(ROOT);
    out.push('>');
    out
}

/// Whether the text after an `&` is a complete entity or character reference (`amp;`, `#38;`, `#x26;`).
fn is_entity(after_ampersand: &str) -> bool {
    let Some(end) = after_ampersand.find(';') else {
        return false;
    };
    let name = &after_ampersand[..end];
    if let Some(hex) = name.strip_prefix("#x") {
        return !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    if let Some(dec) = name.strip_prefix('#') {
        return !dec.is_empty() && dec.chars().all(|c| c.is_ascii_digit());
    }
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Reports a parser error at its place in the operator's file (the synthetic root shifts line 1 only).
fn xml_error(path: &Path, error: &roxmltree::Error) -> ConfigError {
    let pos = error.pos();
    let root_tag_chars = ROOT.len() as u32 + 2;
    let column = if pos.row == 1 {
        pos.col.saturating_sub(root_tag_chars).max(1)
    } else {
        pos.col
    };
    let reason = error.to_string().replace(&format!(" at {pos}"), "");
    ConfigError::Xml {
        path: path.to_path_buf(),
        line: pos.row,
        column,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c98b62a9b6169ac5f67dae55ae4a9088";

    fn block(inner: &str) -> String {
        format!("<ossec_config>\n  <cluster>\n{inner}\n  </cluster>\n</ossec_config>\n")
    }

    fn enabled(extra: &str) -> String {
        block(&format!(
            "<key>{KEY}</key><nodes><node>10.0.0.1</node></nodes>{extra}"
        ))
    }

    fn parse_err(text: &str) -> String {
        ClusterConfig::parse(text).unwrap_err().to_string()
    }

    /// The block written by the Wazuh installer on a fresh manager.
    const STOCK_DISABLED: &str = r#"<!--
  Manager configuration as installed
-->
<ossec_config>
  <global>
    <jsonout_output>yes</jsonout_output>
    <email_notification>no</email_notification>
  </global>

  <!-- Osquery integration -->
  <localfile>
    <log_format>command</log_format>
    <command>df -P</command>
    <frequency>360</frequency>
  </localfile>

  <cluster>
    <name>wazuh</name>
    <node_name>node01</node_name>
    <node_type>master</node_type>
    <key></key>
    <port>1516</port>
    <bind_addr>0.0.0.0</bind_addr>
    <nodes>
        <node>NODE_IP</node>
    </nodes>
    <hidden>no</hidden>
    <disabled>yes</disabled>
  </cluster>
</ossec_config>

<ossec_config>
  <localfile>
    <log_format>syslog</log_format>
    <location>/var/ossec/logs/active-responses.log</location>
  </localfile>
</ossec_config>
"#;

    #[test]
    fn missing_block_is_a_disabled_cluster_with_defaults() {
        let (config, warnings) =
            ClusterConfig::parse("<ossec_config><global/></ossec_config>").unwrap();
        assert!(!config.present);
        assert!(config.disabled);
        assert_eq!(config, ClusterConfig::default());
        assert_eq!(config.name, "wazuh");
        assert_eq!(config.node_name, "node01");
        assert_eq!(config.node_type, NodeType::Master);
        assert_eq!(config.port, 1516);
        assert_eq!(config.bind_addr, "0.0.0.0");
        assert_eq!(config.nodes, vec!["NODE_IP"]);
        assert_eq!(config.master_address(), "NODE_IP");
        assert!(warnings.is_empty());
    }

    #[test]
    fn stock_disabled_block_with_placeholders_loads() {
        let (config, warnings) = ClusterConfig::parse(STOCK_DISABLED).unwrap();
        assert!(config.present);
        assert!(config.disabled);
        assert_eq!(config.key, "");
        assert_eq!(config.nodes, vec!["NODE_IP"]);
        assert!(warnings.is_empty());
    }

    #[test]
    fn empty_block_is_enabled_and_then_needs_a_key() {
        assert!(parse_err(&block("")).contains("Unspecified key"));
    }

    #[test]
    fn full_block_is_read_with_whitespace_trimmed() {
        let text = block(&format!(
            "<name> prod </name>\n<node_name>\n  worker-7\n</node_name>\n<node_type>worker</node_type>\n\
             <key> {KEY} </key><port>2000</port><bind_addr>10.1.1.1</bind_addr>\n\
             <nodes>\n <node> master.example </node>\n</nodes><hidden>yes</hidden><disabled>no</disabled>"
        ));
        let (config, warnings) = ClusterConfig::parse(&text).unwrap();
        assert_eq!(config.name, "prod");
        assert_eq!(config.node_name, "worker-7");
        assert_eq!(config.node_type, NodeType::Worker);
        assert_eq!(config.key, KEY);
        assert_eq!(config.port, 2000);
        assert_eq!(config.bind_addr, "10.1.1.1");
        assert_eq!(config.nodes, vec!["master.example"]);
        assert_eq!(config.master_address(), "master.example");
        assert!(config.hidden);
        assert!(!config.disabled);
        assert!(config.present);
        assert!(warnings.is_empty());
    }

    #[test]
    fn multi_block_file_with_comments_later_elements_win() {
        let text = format!(
            r#"<?xml version="1.0"?>
<!-- first block: disabled placeholder -- as shipped -->
<ossec_config>
  <cluster>
    <!-- <name>commented-out</name> -->
    <name>first</name>
    <node_name>n1</node_name>
    <disabled>yes</disabled>
    <nodes><node>NODE_IP</node></nodes>
  </cluster>
  <remote><connection>secure</connection></remote>
</ossec_config>
<ossec_config>
  <localfile><command>test -f a && echo ok</command></localfile>
  <cluster>
    <node_name>n2</node_name>
    <key>{KEY}</key>
    <nodes><node>10.0.0.9</node></nodes>
    <disabled>no</disabled>
  </cluster>
</ossec_config>
"#
        );
        let (config, _) = ClusterConfig::parse(&text).unwrap();
        assert_eq!(config.name, "first");
        assert_eq!(config.node_name, "n2");
        assert!(!config.disabled);
        assert_eq!(config.nodes, vec!["10.0.0.9"]);
        assert_eq!(
            config.element_order,
            vec!["name", "node_name", "disabled", "nodes", "key"]
        );
    }

    #[test]
    fn cluster_outside_ossec_config_is_not_read() {
        let text = "<ossec_config/><other><cluster><name>x</name></cluster></other>";
        let (config, _) = ClusterConfig::parse(text).unwrap();
        assert!(!config.present);
    }

    #[test]
    fn disabled_yes_disables_and_skips_cluster_checks() {
        let (config, _) =
            ClusterConfig::parse(&block("<disabled>yes</disabled><key>short</key>")).unwrap();
        assert!(config.disabled);
        assert_eq!(config.key, "short");
    }

    #[test]
    fn yes_no_elements_refuse_other_values() {
        let err = parse_err(&block("<disabled>true</disabled>"));
        assert!(err.contains("<cluster><disabled>"), "{err}");
        assert!(err.contains("'true'"), "{err}");
        assert!(err.contains("'yes' and 'no'"), "{err}");
        let err = parse_err(&block("<disabled>yes</disabled><hidden>1</hidden>"));
        assert!(err.contains("<cluster><hidden>"), "{err}");
    }

    #[test]
    fn name_and_node_name_charset() {
        for element in ["name", "node_name"] {
            let err = parse_err(&block(&format!(
                "<disabled>yes</disabled><{element}>my cluster</{element}>"
            )));
            assert!(err.contains("not allowed character"), "{err}");
            assert!(err.contains(&format!("<cluster><{element}>")), "{err}");
            assert!(err.contains("\"my cluster\""), "{err}");
            let err = parse_err(&block(&format!(
                "<disabled>yes</disabled><{element}></{element}>"
            )));
            assert!(err.contains("is empty"), "{err}");
            for bad in ["a(b", "a/b", "a@b", "a*b", "a+b", "a,b", "a`b", "ñ"] {
                let text = block(&format!(
                    "<disabled>yes</disabled><{element}>{bad}</{element}>"
                ));
                assert!(ClusterConfig::parse(&text).is_err(), "{bad} accepted");
            }
        }
        let punct = "a!#$%-.:=?[]^_{|}~'\"0";
        let text = block(&format!(
            "<disabled>yes</disabled><name>{}</name>",
            punct.replace('"', "&quot;")
        ));
        let (config, _) = ClusterConfig::parse(&text).unwrap();
        assert_eq!(config.name, punct);
        let (config, _) = ClusterConfig::parse(&block(
            "<disabled>yes</disabled><name>a&lt;b&amp;c>d</name>",
        ))
        .unwrap();
        assert_eq!(config.name, "a<b&c>d");
    }

    #[test]
    fn node_types() {
        let (config, warnings) =
            ClusterConfig::parse(&enabled("<node_type>client</node_type>")).unwrap();
        assert_eq!(config.node_type, NodeType::Worker);
        assert_eq!(
            warnings,
            vec!["Deprecated node type 'client'. Using 'worker' instead."]
        );
        assert_eq!(
            get_type(&enabled("<node_type>worker</node_type>")),
            NodeType::Worker
        );
        assert_eq!(
            get_type(&enabled("<node_type>master</node_type>")),
            NodeType::Master
        );
        let err = parse_err(&enabled("<node_type>Master</node_type>"));
        assert!(
            err.contains("not allowed node type 'Master'. Valid types are 'master' and 'worker'."),
            "{err}"
        );
        assert!(parse_err(&enabled("<node_type/>")).contains("<cluster><node_type> is empty"));
    }

    fn get_type(text: &str) -> NodeType {
        ClusterConfig::parse(text).unwrap().0.node_type
    }

    #[test]
    fn key_rules() {
        let text = block("<nodes><node>10.0.0.1</node></nodes><key>  </key>");
        assert!(parse_err(&text).ends_with("Unspecified key"));
        let long_msg = "Key must be 32 characters long and only have alphanumeric characters";
        for bad in [
            "abc",
            "c98b62a9b6169ac5f67dae55ae4a90881",
            "c98b62a9b6169ac5f67dae55ae4a908-",
            "c98b62a9b6169ac5f67dae55ae4a908ñ",
            "c98b62a9b6169ac5f67dae55ae4a90 8",
        ] {
            let text = block(&format!(
                "<nodes><node>10.0.0.1</node></nodes><key>{bad}</key>"
            ));
            let err = parse_err(&text);
            assert!(err.ends_with(long_msg), "{bad}: {err}");
            assert!(!err.contains(bad), "key echoed: {err}");
        }
        let underscore = "c98b62a9b6169ac5f67dae55ae4a908_";
        let text = block(&format!(
            "<nodes><node>10.0.0.1</node></nodes><key>{underscore}</key>"
        ));
        assert_eq!(ClusterConfig::parse(&text).unwrap().0.key, underscore);
    }

    #[test]
    fn port_rules() {
        let int_msg = "Port has to be an integer.";
        for bad in ["abc", "15.16", "-1516", "+1516", ""] {
            let err = parse_err(&enabled(&format!("<port>{bad}</port>")));
            assert!(err.ends_with(int_msg), "{bad}: {err}");
            // Not a number is refused even when the cluster is disabled.
            let err = parse_err(&block(&format!(
                "<disabled>yes</disabled><port>{bad}</port>"
            )));
            assert!(err.ends_with(int_msg), "{bad}: {err}");
        }
        let range_msg = "Port must be higher than 1024 and lower than 65535.";
        for bad in [
            "1024",
            "65535",
            "80",
            "0",
            "70000",
            "99999999999999999999999",
        ] {
            let err = parse_err(&enabled(&format!("<port>{bad}</port>")));
            assert!(err.ends_with(range_msg), "{bad}: {err}");
        }
        for good in [1025u16, 65534] {
            let (config, _) =
                ClusterConfig::parse(&enabled(&format!("<port>{good}</port>"))).unwrap();
            assert_eq!(config.port, good);
        }
        // A disabled cluster keeps a low port, but a value that is no TCP port at all is refused.
        let (config, _) =
            ClusterConfig::parse(&block("<disabled>yes</disabled><port>80</port>")).unwrap();
        assert_eq!(config.port, 80);
        assert!(
            parse_err(&block("<disabled>yes</disabled><port>70000</port>")).ends_with(range_msg)
        );
    }

    #[test]
    fn several_nodes_warn_and_use_the_first() {
        let text = block(&format!(
            "<key>{KEY}</key><nodes><node>10.0.0.1</node><node>10.0.0.2</node></nodes>"
        ));
        let (config, warnings) = ClusterConfig::parse(&text).unwrap();
        assert_eq!(config.master_address(), "10.0.0.1");
        assert_eq!(
            warnings,
            vec![
                "Found more than one node in configuration. Only master node should be specified. \
                 Using 10.0.0.1 as master."
            ]
        );
    }

    #[test]
    fn reserved_node_values_are_refused_when_enabled() {
        for bad in ["localhost", "NODE_IP", "0.0.0.0", "127.0.1.1"] {
            let text = block(&format!(
                "<key>{KEY}</key><nodes><node>{bad}</node></nodes>"
            ));
            let err = parse_err(&text);
            assert!(
                err.ends_with(&format!("Invalid elements in node fields: {bad}.")),
                "{err}"
            );
        }
        let text = block(&format!(
            "<key>{KEY}</key><nodes><node>localhost</node><node>10.0.0.1</node>\
             <node>0.0.0.0</node><node>localhost</node></nodes>"
        ));
        assert!(parse_err(&text).ends_with("Invalid elements in node fields: localhost, 0.0.0.0."));
        // The default placeholder counts too when <nodes> is absent.
        let text = block(&format!("<key>{KEY}</key>"));
        assert!(parse_err(&text).ends_with("Invalid elements in node fields: NODE_IP."));
    }

    #[test]
    fn empty_nodes_when_enabled_is_refused() {
        let text = block(&format!("<key>{KEY}</key><nodes></nodes>"));
        assert!(parse_err(&text).ends_with("No nodes defined in cluster configuration."));
        let text = block(&format!("<key>{KEY}</key><nodes><node> </node></nodes>"));
        assert!(parse_err(&text).ends_with("No nodes defined in cluster configuration."));
        let (config, _) = ClusterConfig::parse(&block("<disabled>yes</disabled><nodes/>")).unwrap();
        assert_eq!(config.master_address(), "");
    }

    #[test]
    fn deprecated_and_ignored_elements() {
        let text = enabled(
            "<interval>2m</interval><socket_timeout>5</socket_timeout>\
             <connection_timeout>1</connection_timeout>\
             <haproxy_helper><haproxy_disabled>no</haproxy_disabled>\
             <excluded_nodes><node>w1</node></excluded_nodes></haproxy_helper>",
        );
        let (config, warnings) = ClusterConfig::parse(&text).unwrap();
        assert!(!config.disabled);
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("<interval>"));
        assert!(warnings[0].contains("deprecated"));
        assert!(warnings[1].starts_with("<haproxy_helper> is enabled but not supported"));
        // Disabled, it is accepted without a word, as stock does.
        let text =
            enabled("<haproxy_helper><haproxy_disabled>yes</haproxy_disabled></haproxy_helper>");
        assert!(ClusterConfig::parse(&text).unwrap().1.is_empty());
    }

    #[test]
    fn unknown_element_is_named() {
        let err = parse_err(&block("<disabled>yes</disabled><nodename>x</nodename>"));
        assert!(
            err.contains("invalid element <nodename> inside <cluster>"),
            "{err}"
        );
        assert!(err.starts_with("ossec.conf: "), "{err}");
    }

    #[test]
    fn malformed_xml_reports_line_and_column() {
        let text =
            "<ossec_config>\n  <cluster>\n    <name>wazuh</nam>\n  </cluster>\n</ossec_config>\n";
        match ClusterConfig::parse(text).unwrap_err() {
            ConfigError::Xml {
                line,
                column,
                reason,
                ..
            } => {
                assert_eq!(line, 3);
                assert!(column > 1);
                assert!(reason.contains("'name'"), "{reason}");
                assert!(!reason.contains(" at "), "{reason}");
            }
            other => panic!("unexpected {other}"),
        }
        // A block left open: the parser's complaint names the block, not our wrapper.
        let err = parse_err("<ossec_config>\n<cluster/>\n");
        assert!(err.starts_with("ossec.conf:"), "{err}");
        assert!(err.contains("'ossec_config'"), "{err}");
        // Errors on the first line keep the operator's column.
        match ClusterConfig::parse("<ossec_config></cluster></ossec_config>").unwrap_err() {
            ConfigError::Xml { line, column, .. } => {
                assert_eq!((line, column), (1, 15));
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn get_config_key_order_follows_the_file() {
        let text = block(&format!(
            "<disabled>no</disabled><nodes><node>10.0.0.1</node></nodes><port>1516</port>\
             <interval>1m</interval><key>{KEY}</key><node_type>worker</node_type>"
        ));
        let (config, _) = ClusterConfig::parse(&text).unwrap();
        let json = config.get_config_json();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            vec![
                "disabled",
                "nodes",
                "port",
                "key",
                "node_type",
                "name",
                "node_name",
                "bind_addr",
                "hidden"
            ]
        );
        assert_eq!(
            json,
            serde_json::json!({
                "disabled": false, "nodes": ["10.0.0.1"], "port": 1516, "key": KEY,
                "node_type": "worker", "name": "wazuh", "node_name": "node01",
                "bind_addr": "0.0.0.0", "hidden": "no"
            })
        );
    }

    #[test]
    fn get_config_of_absent_block_uses_default_order() {
        let json = ClusterConfig::default().get_config_json();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, GET_CONFIG_KEYS.to_vec());
        assert_eq!(json["disabled"], Value::Bool(true));
        assert_eq!(json["hidden"], Value::from("no"));
    }

    #[test]
    fn load_reads_a_real_file_and_names_it_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ossec.conf");
        std::fs::write(&path, enabled("<name>from-disk</name>")).unwrap();
        let (config, _) = ClusterConfig::load(&path).unwrap();
        assert_eq!(config.name, "from-disk");

        std::fs::write(&path, block("<bogus/>")).unwrap();
        let err = ClusterConfig::load(&path).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");

        let missing = dir.path().join("nope.conf");
        let err = ClusterConfig::load(&missing).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("nope.conf"));
    }

    #[test]
    fn truncated_files_fail_cleanly() {
        let text = format!("\u{feff}<?xml version=\"1.0\"?>\n{STOCK_DISABLED}<!-- é & < -->");
        for (end, _) in text.char_indices() {
            // Any outcome but a panic is fine; most prefixes are malformed.
            let _ = ClusterConfig::parse(&text[..end]);
        }
        assert!(ClusterConfig::parse(&text).is_ok());
    }

    #[test]
    fn literal_ampersand_and_angle_brackets_elsewhere_are_tolerated() {
        let text = format!(
            "<ossec_config><localfile><command>a && b < c</command></localfile>\
             <cluster><disabled>yes</disabled></cluster></ossec_config>\n{STOCK_DISABLED}"
        );
        let (config, _) = ClusterConfig::parse(&text).unwrap();
        assert!(config.disabled);
    }
}
