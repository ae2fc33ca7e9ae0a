//! The one error type of the configuration layer.
//!
//! Every message names the file it comes from and the element or key at fault, so an operator can fix the
//! configuration from the log line alone. Where the stock daemon has a well-known message for the same
//! mistake (`Unspecified key`, `Port must be higher than 1024 and lower than 65535.`, ...), the message
//! contains that exact text so existing runbooks and searches keep working.

use std::path::PathBuf;

/// Characters accepted in `<name>` and `<node_name>` besides ASCII letters and digits.
pub const NAME_PUNCTUATION: &str = "!\"#$%&'-.:<=>?[\\]^_{|}~";

/// Everything that can be wrong with the configuration files or the command-line settings.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A configuration file exists (or is required) but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `ossec.conf` is not well-formed XML.
    #[error("{}:{line}:{column}: malformed XML: {reason}", path.display())]
    Xml {
        path: PathBuf,
        line: u32,
        column: u32,
        reason: String,
    },

    /// An element inside `<cluster>` that no Wazuh daemon accepts.
    #[error(
        "{}: invalid element <{element}> inside <cluster>; allowed elements are name, node_name, \
         node_type, key, port, bind_addr, nodes, hidden, disabled, interval, socket_timeout, \
         connection_timeout and haproxy_helper",
        path.display()
    )]
    UnknownElement { path: PathBuf, element: String },

    /// `<name>`, `<node_name>` or `<node_type>` present but empty.
    #[error("{}: <cluster><{element}> is empty in configuration", path.display())]
    EmptyElement { path: PathBuf, element: String },

    /// `<name>` or `<node_name>` with a character outside the allowed set.
    #[error(
        "{}: <cluster><{element}>: detected a not allowed character in \"{value}\". Characters allowed: \
         ASCII letters, digits and {}",
        path.display(),
        NAME_PUNCTUATION
    )]
    InvalidCharacters {
        path: PathBuf,
        element: String,
        value: String,
    },

    /// `<node_type>` other than `master`, `worker` or `client`.
    #[error(
        "{}: <cluster><node_type>: detected a not allowed node type '{value}'. Valid types are 'master' \
         and 'worker'.",
        path.display()
    )]
    InvalidNodeType { path: PathBuf, value: String },

    /// `<disabled>` or `<hidden>` other than `yes` / `no`.
    #[error(
        "{}: <cluster><{element}>: invalid value '{value}'; allowed values are 'yes' and 'no'",
        path.display()
    )]
    InvalidYesNo {
        path: PathBuf,
        element: String,
        value: String,
    },

    /// The cluster is enabled and `<key>` is missing or empty.
    #[error("{}: <cluster><key>: Unspecified key", path.display())]
    UnspecifiedKey { path: PathBuf },

    /// The cluster is enabled and `<key>` is not 32 ASCII word characters. The key itself is a secret and
    /// is not repeated.
    #[error(
        "{}: <cluster><key>: Key must be 32 characters long and only have alphanumeric characters",
        path.display()
    )]
    InvalidKey { path: PathBuf },

    /// `<port>` is not a decimal integer.
    #[error("{}: <cluster><port> '{value}': Port has to be an integer.", path.display())]
    PortNotInteger { path: PathBuf, value: String },

    /// `<port>` is no TCP port at all, or the cluster is enabled and `<port>` is outside 1025..=65534.
    #[error(
        "{}: <cluster><port> '{value}': Port must be higher than 1024 and lower than 65535.",
        path.display()
    )]
    PortOutOfRange { path: PathBuf, value: String },

    /// The cluster is enabled and `<nodes>` has no `<node>`.
    #[error(
        "{}: <cluster><nodes>: No nodes defined in cluster configuration.",
        path.display()
    )]
    NoNodes { path: PathBuf },

    /// The cluster is enabled and a `<node>` holds an address a worker cannot use to reach the master.
    #[error(
        "{}: <cluster><nodes>: Invalid elements in node fields: {}.",
        path.display(),
        nodes.join(", ")
    )]
    InvalidNodes { path: PathBuf, nodes: Vec<String> },

    /// `cluster.json` is not valid JSON.
    #[error("{}: invalid JSON: {source}", path.display())]
    JsonSyntax {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A key of `cluster.json` that the built-in table of this dialect does not have.
    #[error(
        "{}: unknown key '{key_path}' (not part of cluster.json for Wazuh {dialect})",
        path.display()
    )]
    JsonUnknownKey {
        path: PathBuf,
        key_path: String,
        dialect: String,
    },

    /// A value of `cluster.json` with the wrong type or outside its range.
    #[error("{}: '{key_path}' must be {expected}, found {found}", path.display())]
    JsonValue {
        path: PathBuf,
        key_path: String,
        expected: String,
        found: String,
    },

    /// `clusterd.toml` is not valid TOML or has keys or values we do not know.
    #[error("{}: {message}", path.display())]
    Settings { path: PathBuf, message: String },

    /// A Wazuh version for which no protocol dialect exists.
    #[error(
        "unsupported Wazuh version '{version}': supported versions are 4.3.x, 4.13.x and 4.14.x"
    )]
    UnsupportedVersion { version: String },

    /// An `io_driver` value other than the three known drivers.
    #[error("unknown io driver '{value}': allowed values are auto, io_uring and epoll")]
    UnknownIoDriver { value: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ossec_messages_name_file_and_element_and_keep_the_wazuh_wording() {
        let path = PathBuf::from("/var/ossec/etc/ossec.conf");
        let err = ConfigError::InvalidNodes {
            path: path.clone(),
            nodes: vec!["localhost".to_string(), "NODE_IP".to_string()],
        };
        assert_eq!(
            err.to_string(),
            "/var/ossec/etc/ossec.conf: <cluster><nodes>: Invalid elements in node fields: \
             localhost, NODE_IP."
        );
        let err = ConfigError::PortOutOfRange {
            path: path.clone(),
            value: "80".to_string(),
        };
        assert_eq!(
            err.to_string(),
            "/var/ossec/etc/ossec.conf: <cluster><port> '80': Port must be higher than 1024 and \
             lower than 65535."
        );
        let err = ConfigError::InvalidCharacters {
            path,
            element: "name".to_string(),
            value: "a b".to_string(),
        };
        assert!(err
            .to_string()
            .ends_with("ASCII letters, digits and !\"#$%&'-.:<=>?[\\]^_{|}~"));
    }

    #[test]
    fn json_messages_name_the_key_path() {
        let err = ConfigError::JsonValue {
            path: PathBuf::from("etc/cluster.json"),
            key_path: "intervals.worker.keep_alive".to_string(),
            expected: "a positive number of seconds".to_string(),
            found: "0".to_string(),
        };
        assert_eq!(
            err.to_string(),
            "etc/cluster.json: 'intervals.worker.keep_alive' must be a positive number of seconds, \
             found 0"
        );
    }
}
