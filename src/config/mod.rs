//! Typed, validated configuration.
//!
//! These sources make up a node's configuration, all under the install root:
//! - `etc/ossec.conf` (or the file of `-c`), the `<cluster>` block shared with the rest of the Wazuh
//!   manager ([`ClusterConfig`]);
//! - the framework's own `cluster.json` on a Wazuh install, then `etc/cluster.json`, optional
//!   adjustments to the built-in synchronisation table and timers ([`ClusterJson`]);
//! - `etc/internal_options.conf` / `etc/local_internal_options.conf`: `wazuh_clusterd.debug`;
//! - `etc/clusterd.toml`, optional settings of this daemon only, overridable from the command line
//!   ([`Settings`]).
//!
//! Everything is checked once, at start-up; later layers take the values as they are.

mod cluster_json;
mod dialect;
mod error;
mod framework_files;
mod internal_options;
mod ossec;
mod settings;

use std::path::{Path, PathBuf};

pub use cluster_json::{
    ClusterJson, CommunicationIntervals, FileSelection, FilesTable, Intervals, ItemSpec,
    MasterIntervals, WorkerIntervals,
};
pub use dialect::Dialect;
pub use error::ConfigError;
pub use framework_files::framework_cluster_json;
pub use internal_options::{debug_option, DebugOption, INTERNAL_OPTIONS, LOCAL_INTERNAL_OPTIONS};
pub use ossec::{ClusterConfig, NodeType};
pub use settings::{IoDriverChoice, Settings, SettingsOverrides, DEFAULT_WAZUH_VERSION};

/// `<cluster>` block, relative to the install root.
pub const OSSEC_CONF: &str = "etc/ossec.conf";
/// Operator adjustments to the built-in `cluster.json`, relative to the install root.
pub const CLUSTER_JSON: &str = "etc/cluster.json";
/// This daemon's own settings, relative to the install root.
pub const SETTINGS_TOML: &str = "etc/clusterd.toml";

/// The whole configuration of a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Install root (`WAZUH_HOME`); every other path is relative to it.
    pub home: PathBuf,
    pub cluster: ClusterConfig,
    pub cluster_json: ClusterJson,
    pub settings: Settings,
    /// Protocol generation, from `settings.wazuh_version`.
    pub dialect: Dialect,
    /// Messages to log once logging is set up (deprecated values, ignored extra nodes, options
    /// accepted but not supported).
    pub warnings: Vec<String>,
    /// The `ossec.conf` that was read.
    pub ossec_conf: PathBuf,
    /// The `cluster.json` files merged over the built-in table, in order (none: built-in only).
    pub cluster_json_files: Vec<PathBuf>,
    /// `wazuh_clusterd.debug` of the internal options files, when set.
    pub debug_option: Option<DebugOption>,
}

impl Config {
    /// Reads HOME/etc/ossec.conf, HOME/etc/clusterd.toml, the framework's and HOME/etc/cluster.json
    /// (dialect from the settings' version) and the internal options.
    pub fn load(home: &Path, overrides: &SettingsOverrides) -> Result<Config, ConfigError> {
        Config::load_with(home, overrides, None)
    }

    /// As [`Config::load`], with the `<cluster>` block read from `ossec_conf` when given (`-c`).
    pub fn load_with(
        home: &Path,
        overrides: &SettingsOverrides,
        ossec_conf: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let ossec_conf = ossec_conf.map_or_else(|| home.join(OSSEC_CONF), Path::to_path_buf);
        let (cluster, mut warnings) = ClusterConfig::load(&ossec_conf)?;
        let settings = Settings::load(&home.join(SETTINGS_TOML), overrides)?;
        let dialect = Dialect::from_version(&settings.wazuh_version)?;
        let framework = framework_cluster_json(home);
        let operator = home.join(CLUSTER_JSON);
        let mut layers: Vec<&Path> = framework.iter().map(PathBuf::as_path).collect();
        layers.push(&operator);
        let (cluster_json, cluster_json_files) = ClusterJson::load_layers(dialect, &layers)?;
        let debug_option = debug_option(home).unwrap_or_else(|warning| {
            warnings.push(warning);
            None
        });
        Ok(Config {
            home: home.to_path_buf(),
            cluster,
            cluster_json,
            settings,
            dialect,
            warnings,
            ossec_conf,
            cluster_json_files,
            debug_option,
        })
    }

    /// The log level of a start with `flags` `-d` flags: the internal options' level plus one per
    /// flag, at most 2 (debug2).
    pub fn debug_level(&self, flags: u8) -> u8 {
        let from_file = self.debug_option.as_ref().map_or(0, |o| o.level);
        from_file.saturating_add(flags).min(2)
    }

    /// `rel` under the install root, e.g. `config.path("queue/cluster/c-internal.sock")`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.home.join(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c98b62a9b6169ac5f67dae55ae4a9088";

    fn install_root(ossec_conf: &str) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join("etc")).unwrap();
        std::fs::write(home.path().join(OSSEC_CONF), ossec_conf).unwrap();
        home
    }

    fn worker_conf() -> String {
        format!(
            "<ossec_config>\n<cluster>\n<node_name>worker-1</node_name><node_type>client</node_type>\
             <key>{KEY}</key><nodes><node>10.0.0.1</node></nodes>\n</cluster>\n</ossec_config>\n"
        )
    }

    #[test]
    fn ossec_conf_alone_is_a_complete_4_3_configuration() {
        let home = install_root(&worker_conf());
        let config = Config::load(home.path(), &SettingsOverrides::default()).unwrap();
        assert_eq!(config.home, home.path());
        assert_eq!(config.dialect, Dialect::V4_3);
        assert_eq!(config.settings, Settings::default());
        assert_eq!(config.cluster.node_type, NodeType::Worker);
        assert_eq!(config.cluster.master_address(), "10.0.0.1");
        assert_eq!(config.cluster_json, ClusterJson::defaults(Dialect::V4_3));
        assert_eq!(
            config.warnings,
            vec!["Deprecated node type 'client'. Using 'worker' instead."]
        );
        assert_eq!(
            config.path("queue/cluster/c-internal.sock"),
            home.path().join("queue/cluster/c-internal.sock")
        );
    }

    #[test]
    fn version_selects_the_cluster_json_dialect() {
        let home = install_root(&worker_conf());
        std::fs::write(
            home.path().join(SETTINGS_TOML),
            "wazuh_version = \"4.14.7\"\n",
        )
        .unwrap();
        std::fs::write(
            home.path().join(CLUSTER_JSON),
            r#"{"intervals": {"worker": {"keep_alive": 0.25}}}"#,
        )
        .unwrap();
        let config = Config::load(home.path(), &SettingsOverrides::default()).unwrap();
        assert_eq!(config.dialect, Dialect::V4_14);
        assert!(config
            .cluster_json
            .files
            .item("queue/agent-groups/")
            .is_none());
        assert_eq!(
            config.cluster_json.intervals.worker.keep_alive,
            std::time::Duration::from_millis(250)
        );

        let overrides = SettingsOverrides {
            wazuh_version: Some("4.3.11".to_string()),
            io_driver: Some(IoDriverChoice::Epoll),
        };
        let config = Config::load(home.path(), &overrides).unwrap();
        assert_eq!(config.dialect, Dialect::V4_3);
        assert_eq!(config.settings.io_driver, IoDriverChoice::Epoll);
        assert!(config
            .cluster_json
            .files
            .item("queue/agent-groups/")
            .is_some());
    }

    #[test]
    fn each_file_reports_its_own_errors() {
        let home = install_root("<ossec_config><cluster><bogus/></cluster></ossec_config>");
        let err = Config::load(home.path(), &SettingsOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ossec.conf") && err.contains("<bogus>"),
            "{err}"
        );

        let home = install_root(&worker_conf());
        std::fs::write(home.path().join(CLUSTER_JSON), r#"{"intervals": {"x": 1}}"#).unwrap();
        let err = Config::load(home.path(), &SettingsOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cluster.json") && err.contains("'intervals.x'"),
            "{err}"
        );

        let home = install_root(&worker_conf());
        std::fs::write(home.path().join(SETTINGS_TOML), "driver = \"epoll\"\n").unwrap();
        let err = Config::load(home.path(), &SettingsOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("clusterd.toml"), "{err}");
    }

    #[test]
    fn missing_ossec_conf_is_an_error() {
        let home = tempfile::tempdir().unwrap();
        let err = Config::load(home.path(), &SettingsOverrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        assert!(err.to_string().contains("etc/ossec.conf"));
    }
}
