//! Settings of this daemon that Wazuh's own files have no place for.
//!
//! They live in an optional `etc/clusterd.toml`, so that a stock installation needs no extra file, and the
//! command line overrides them so a test or a one-off run need not edit it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use super::{ConfigError, Dialect};

/// The Wazuh version announced when none is configured.
pub const DEFAULT_WAZUH_VERSION: &str = "4.3.11";

/// Which kernel interface drives the sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IoDriverChoice {
    /// io_uring when the kernel allows it, epoll otherwise.
    #[default]
    Auto,
    /// io_uring only; start-up fails where it is blocked.
    #[value(name = "io_uring")]
    IoUring,
    /// epoll only.
    Epoll,
}

impl IoDriverChoice {
    /// The word used in `clusterd.toml`, on the command line and in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            IoDriverChoice::Auto => "auto",
            IoDriverChoice::IoUring => "io_uring",
            IoDriverChoice::Epoll => "epoll",
        }
    }
}

impl fmt::Display for IoDriverChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IoDriverChoice {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<IoDriverChoice, ConfigError> {
        match s {
            "auto" => Ok(IoDriverChoice::Auto),
            "io_uring" => Ok(IoDriverChoice::IoUring),
            "epoll" => Ok(IoDriverChoice::Epoll),
            other => Err(ConfigError::UnknownIoDriver {
                value: other.to_string(),
            }),
        }
    }
}

/// Our own settings, after the command line has been applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Wazuh version announced to peers; also selects the protocol dialect. Always a supported version.
    pub wazuh_version: String,
    pub io_driver: IoDriverChoice,
    /// Threads for file work; 0 means one per CPU core.
    pub pool_threads: usize,
    /// Cluster connections the master accepts from one source address (stock nodes: 10). Load tests
    /// that run hundreds of simulated workers from one address raise it.
    pub connections_per_ip_max: usize,
    /// A worker replaces its `etc/client.keys` with a master's that lost more than half of its agents
    /// only when this is set (protects workers from a master whose keys were wiped by mistake).
    pub allow_client_keys_shrink: bool,
    /// The Wazuh framework's interpreter for the distributed API's framework executor (`None`:
    /// `HOME/framework/python/bin/python3`).
    pub framework_python: Option<PathBuf>,
    /// Framework helper processes, hence framework requests running at once.
    pub framework_helpers: usize,
    /// The user and group the daemon drops to when started as root without `-r` (stock: `wazuh`).
    pub user: String,
    pub group: String,
    /// Where the metrics and health endpoint listens; `None`: no endpoint (the default). A bare
    /// port in the file means that port on loopback.
    pub metrics_listen: Option<SocketAddr>,
    /// Bytes one peer's files may take in `queue/cluster/` while they are received and before a
    /// task takes them (stock nodes have no such limit; the default fits the largest package).
    pub peer_scratch_bytes_max: u64,
    /// File transfers one peer may hold at once (open, or finished and not yet referenced).
    pub peer_transfers_max: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            wazuh_version: DEFAULT_WAZUH_VERSION.to_string(),
            io_driver: IoDriverChoice::Auto,
            pool_threads: 0,
            connections_per_ip_max: 10,
            allow_client_keys_shrink: false,
            framework_python: None,
            framework_helpers: 2,
            user: "wazuh".to_string(),
            group: "wazuh".to_string(),
            metrics_listen: None,
            peer_scratch_bytes_max: 2 << 30,
            peer_transfers_max: 16,
        }
    }
}

/// Values given on the command line; `None` keeps the file's value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsOverrides {
    pub wazuh_version: Option<String>,
    pub io_driver: Option<IoDriverChoice>,
}

/// The layout of `clusterd.toml`; every key optional, no other key allowed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SettingsFile {
    wazuh_version: Option<String>,
    io_driver: Option<IoDriverChoice>,
    pool_threads: Option<usize>,
    connections_per_ip_max: Option<usize>,
    allow_client_keys_shrink: Option<bool>,
    framework_python: Option<PathBuf>,
    framework_helpers: Option<usize>,
    user: Option<String>,
    group: Option<String>,
    metrics_listen: Option<MetricsListen>,
    peer_scratch_bytes_max: Option<u64>,
    peer_transfers_max: Option<usize>,
}

/// `metrics_listen`: `"127.0.0.1:9790"`, `"[::1]:9790"`, or a port alone (`9790` or `"9790"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MetricsListen {
    Port(u16),
    Text(String),
}

impl MetricsListen {
    fn address(&self) -> Result<SocketAddr, String> {
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        match self {
            MetricsListen::Port(port) => Ok(loopback(*port)),
            MetricsListen::Text(text) => match text.trim().parse::<u16>() {
                Ok(port) => Ok(loopback(port)),
                Err(_) => text.trim().parse().map_err(|_| {
                    format!(
                        "metrics_listen must be an address and port such as \"127.0.0.1:9790\" \
                         or a port alone (found \"{text}\")"
                    )
                }),
            },
        }
    }
}

impl Settings {
    /// Reads `path` if it exists (a missing file means all defaults), then applies `overrides`.
    pub fn load(path: &Path, overrides: &SettingsOverrides) -> Result<Settings, ConfigError> {
        let file = match std::fs::read_to_string(path) {
            Ok(text) => parse_file(&text, path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SettingsFile::default(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let defaults = Settings::default();
        let settings = Settings {
            wazuh_version: overrides
                .wazuh_version
                .clone()
                .or(file.wazuh_version)
                .unwrap_or(defaults.wazuh_version),
            io_driver: overrides
                .io_driver
                .or(file.io_driver)
                .unwrap_or(defaults.io_driver),
            pool_threads: file.pool_threads.unwrap_or(defaults.pool_threads),
            connections_per_ip_max: file
                .connections_per_ip_max
                .unwrap_or(defaults.connections_per_ip_max),
            allow_client_keys_shrink: file
                .allow_client_keys_shrink
                .unwrap_or(defaults.allow_client_keys_shrink),
            framework_python: file.framework_python,
            framework_helpers: file.framework_helpers.unwrap_or(defaults.framework_helpers),
            user: file.user.unwrap_or(defaults.user),
            group: file.group.unwrap_or(defaults.group),
            metrics_listen: match &file.metrics_listen {
                Some(listen) => {
                    Some(listen.address().map_err(|message| ConfigError::Settings {
                        path: path.to_path_buf(),
                        message,
                    })?)
                }
                None => None,
            },
            peer_scratch_bytes_max: file
                .peer_scratch_bytes_max
                .unwrap_or(defaults.peer_scratch_bytes_max),
            peer_transfers_max: file
                .peer_transfers_max
                .unwrap_or(defaults.peer_transfers_max),
        };
        for (key, name) in [("user", &settings.user), ("group", &settings.group)] {
            if name.is_empty() || name.len() > 64 || name.contains(['\0', ':', '/']) {
                return Err(ConfigError::Settings {
                    path: path.to_path_buf(),
                    message: format!("{key} must be a user or group name (found \"{name}\")"),
                });
            }
        }
        if !(1..=64).contains(&settings.framework_helpers) {
            return Err(ConfigError::Settings {
                path: path.to_path_buf(),
                message: "framework_helpers must be between 1 and 64".to_string(),
            });
        }
        if settings.peer_transfers_max == 0 || settings.peer_scratch_bytes_max == 0 {
            return Err(ConfigError::Settings {
                path: path.to_path_buf(),
                message: "peer_transfers_max and peer_scratch_bytes_max must be at least 1"
                    .to_string(),
            });
        }
        if settings.connections_per_ip_max == 0 {
            return Err(ConfigError::Settings {
                path: path.to_path_buf(),
                message: "connections_per_ip_max must be at least 1".to_string(),
            });
        }
        Dialect::from_version(&settings.wazuh_version)?;
        Ok(settings)
    }
}

/// Parses the file, reporting errors on one line as `path:line:column: message`.
fn parse_file(text: &str, path: &Path) -> Result<SettingsFile, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let location = e.span().map(|span| {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}: ")
        });
        ConfigError::Settings {
            path: path.to_path_buf(),
            message: format!("{}{}", location.unwrap_or_default(), e.message().trim_end()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
        let path = dir.path().join("clusterd.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn missing_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::load(
            &dir.path().join("clusterd.toml"),
            &SettingsOverrides::default(),
        )
        .unwrap();
        assert_eq!(settings.wazuh_version, "4.3.11");
        assert_eq!(settings.io_driver, IoDriverChoice::Auto);
        assert_eq!(settings.pool_threads, 0);
        assert_eq!(settings, Settings::default());
    }

    #[test]
    fn file_values_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "# tuned for the lab\nwazuh_version = \"4.14.7\"\nio_driver = \"epoll\"\npool_threads = 6\n\
             connections_per_ip_max = 500\n",
        );
        let settings = Settings::load(&path, &SettingsOverrides::default()).unwrap();
        assert_eq!(
            settings,
            Settings {
                wazuh_version: "4.14.7".to_string(),
                io_driver: IoDriverChoice::Epoll,
                pool_threads: 6,
                connections_per_ip_max: 500,
                allow_client_keys_shrink: false,
                framework_python: None,
                framework_helpers: 2,
                user: "wazuh".to_string(),
                group: "wazuh".to_string(),
                metrics_listen: None,
                peer_scratch_bytes_max: 2 << 30,
                peer_transfers_max: 16,
            }
        );
        let zero = write(&dir, "connections_per_ip_max = 0\n");
        let err = Settings::load(&zero, &SettingsOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("connections_per_ip_max must be at least 1"),
            "{err}"
        );
        let empty = write(&dir, "");
        assert_eq!(
            Settings::load(&empty, &SettingsOverrides::default()).unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn user_group_and_metrics_listen() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "user = \"ossec\"\ngroup = \"ossec\"\nmetrics_listen = 9790\n",
        );
        let settings = Settings::load(&path, &SettingsOverrides::default()).unwrap();
        assert_eq!(
            (settings.user.as_str(), settings.group.as_str()),
            ("ossec", "ossec")
        );
        assert_eq!(
            settings.metrics_listen,
            Some("127.0.0.1:9790".parse().unwrap())
        );
        for (text, expected) in [
            ("metrics_listen = \"9791\"\n", "127.0.0.1:9791"),
            ("metrics_listen = \"0.0.0.0:9792\"\n", "0.0.0.0:9792"),
            ("metrics_listen = \"[::1]:9793\"\n", "[::1]:9793"),
        ] {
            let path = write(&dir, text);
            let settings = Settings::load(&path, &SettingsOverrides::default()).unwrap();
            assert_eq!(settings.metrics_listen, Some(expected.parse().unwrap()));
        }
        for (text, expected) in [
            ("metrics_listen = \"localhost\"\n", "metrics_listen must be"),
            ("user = \"\"\n", "user must be a user or group name"),
            ("group = \"a:b\"\n", "group must be a user or group name"),
        ] {
            let path = write(&dir, text);
            let err = Settings::load(&path, &SettingsOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn command_line_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "wazuh_version = \"4.14.7\"\nio_driver = \"epoll\"\n");
        let overrides = SettingsOverrides {
            wazuh_version: Some("4.3.11".to_string()),
            io_driver: Some(IoDriverChoice::IoUring),
        };
        let settings = Settings::load(&path, &overrides).unwrap();
        assert_eq!(settings.wazuh_version, "4.3.11");
        assert_eq!(settings.io_driver, IoDriverChoice::IoUring);
    }

    #[test]
    fn unknown_key_is_refused_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "io_driver = \"auto\"\npool_thread = 4\n");
        let err = Settings::load(&path, &SettingsOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains("line 2, column 1"), "{err}");
        assert!(err.contains("unknown field `pool_thread`"), "{err}");
        assert!(err.contains("`pool_threads`"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "io_driver = \"uring\"\n");
        let err = Settings::load(&path, &SettingsOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`uring`"), "{err}");
        assert!(err.contains("`io_uring`"), "{err}");

        let path = write(&dir, "pool_threads = -1\n");
        assert!(Settings::load(&path, &SettingsOverrides::default()).is_err());

        let path = write(&dir, "wazuh_version = \"4.9.0\"\n");
        let err = Settings::load(&path, &SettingsOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported Wazuh version '4.9.0'"), "{err}");

        let path = write(&dir, "wazuh_version = \n");
        assert!(matches!(
            Settings::load(&path, &SettingsOverrides::default()),
            Err(ConfigError::Settings { .. })
        ));
    }

    #[test]
    fn unsupported_version_on_the_command_line_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let overrides = SettingsOverrides {
            wazuh_version: Some("4.8.2".to_string()),
            io_driver: None,
        };
        let err = Settings::load(&dir.path().join("none.toml"), &overrides).unwrap_err();
        assert!(matches!(err, ConfigError::UnsupportedVersion { .. }));
    }

    #[test]
    fn io_driver_words() {
        for choice in [
            IoDriverChoice::Auto,
            IoDriverChoice::IoUring,
            IoDriverChoice::Epoll,
        ] {
            assert_eq!(
                choice.to_string().parse::<IoDriverChoice>().unwrap(),
                choice
            );
            let value = clap::ValueEnum::to_possible_value(&choice).unwrap();
            assert_eq!(value.get_name(), choice.as_str());
        }
        let err = "iouring".parse::<IoDriverChoice>().unwrap_err().to_string();
        assert!(err.contains("'iouring'") && err.contains("auto, io_uring and epoll"));
    }
}
