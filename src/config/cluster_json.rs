//! The synchronised-files table and the timers of the cluster (Wazuh's `cluster.json`).
//!
//! Wazuh ships these values inside its framework, identical on every node, so they are built in here for
//! each dialect. On a Wazuh install the framework's own `cluster.json` (where operators tune it) is
//! merged over the built-in table, then `etc/cluster.json`, which holds only the values to change,
//! in the same layout, key by key. Keys the table does not have are refused rather than ignored, so
//! a misspelt timer cannot silently keep its default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::{ConfigError, Dialect};

/// The whole table: what is synchronised, how often, and whether API requests are forwarded.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterJson {
    pub files: FilesTable,
    pub intervals: Intervals,
    /// `distributed_api.enabled`: when false every API request runs on the node that received it.
    pub distributed_api_enabled: bool,
}

/// The `files` section: directories kept identical from the master to the workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilesTable {
    /// Items in table order.
    pub items: Vec<ItemSpec>,
    /// File names skipped in every item.
    pub excluded_files: Vec<String>,
    /// Name endings skipped in every item.
    pub excluded_extensions: Vec<String>,
}

impl FilesTable {
    /// The item whose key (`etc/shared/`, ...) is `key`.
    pub fn item(&self, key: &str) -> Option<&ItemSpec> {
        self.items.iter().find(|item| item.key == key)
    }
}

/// One synchronised directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemSpec {
    /// Directory relative to the install root, ending with `/`; also the item key carried in metadata.
    pub key: String,
    /// Mode given to every file of the item written on the receiving node.
    pub permissions: u32,
    pub files: FileSelection,
    /// Whether sub-directories are walked too.
    pub recursive: bool,
    /// Informational: neither 4.3.11 nor 4.14.7 acts on it.
    pub restart: bool,
    /// Remove a directory left empty after deleting a worker's extra files.
    pub remove_subdirs_if_empty: bool,
    /// Worker-only files are kept (and, in 4.3, sent to the master) instead of deleted.
    pub extra_valid: bool,
    pub description: String,
}

/// Which files of an item's directory are synchronised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileSelection {
    /// `["all"]`: every file.
    All,
    /// Only these file names.
    Names(Vec<String>),
}

/// The `intervals` section. Its defaults are the same in both dialects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Intervals {
    pub worker: WorkerIntervals,
    pub master: MasterIntervals,
    pub communication: CommunicationIntervals,
}

/// A value of the `intervals` section: how it is written to and read from JSON.
trait Setting: Sized {
    fn to_json(&self) -> Value;
    fn from_json(value: &Value, at: &At<'_>) -> Result<Self, ConfigError>;
}

impl Setting for Duration {
    fn to_json(&self) -> Value {
        if self.subsec_nanos() == 0 {
            Value::from(self.as_secs())
        } else {
            Value::from(self.as_secs_f64())
        }
    }

    /// Seconds, possibly fractional; zero is refused because every timer here must advance.
    fn from_json(value: &Value, at: &At<'_>) -> Result<Duration, ConfigError> {
        value
            .as_f64()
            .filter(|secs| *secs > 0.0)
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .filter(|duration| !duration.is_zero())
            .ok_or_else(|| at.invalid("a positive number of seconds", value))
    }
}

impl Setting for u64 {
    fn to_json(&self) -> Value {
        Value::from(*self)
    }

    fn from_json(value: &Value, at: &At<'_>) -> Result<u64, ConfigError> {
        value
            .as_u64()
            .ok_or_else(|| at.invalid("a non-negative integer", value))
    }
}

impl Setting for u32 {
    fn to_json(&self) -> Value {
        Value::from(*self)
    }

    fn from_json(value: &Value, at: &At<'_>) -> Result<u32, ConfigError> {
        value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| at.invalid("an integer from 0 to 4294967295", value))
    }
}

impl Setting for usize {
    fn to_json(&self) -> Value {
        Value::from(*self)
    }

    fn from_json(value: &Value, at: &At<'_>) -> Result<usize, ConfigError> {
        value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| at.invalid("a non-negative integer", value))
    }
}

impl Setting for f64 {
    fn to_json(&self) -> Value {
        Value::from(*self)
    }

    fn from_json(value: &Value, at: &At<'_>) -> Result<f64, ConfigError> {
        value
            .as_f64()
            .filter(|n| n.is_finite())
            .ok_or_else(|| at.invalid("a number", value))
    }
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Declares one sub-section of `intervals` once: the struct, its default values (the same in both
/// dialects: a setting one dialect lacks takes the other's value) and its JSON conversions.
macro_rules! interval_section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> $name {
                $name { $( $field: $default, )* }
            }
        }

        impl $name {
            fn to_json(&self) -> Value {
                let mut map = Map::new();
                $( map.insert(stringify!($field).to_string(), Setting::to_json(&self.$field)); )*
                Value::Object(map)
            }

            fn from_json(value: &Value, at: &At<'_>) -> Result<$name, ConfigError> {
                Ok($name {
                    $( $field: {
                        let (value, at) = at.field(value, stringify!($field))?;
                        Setting::from_json(value, &at)?
                    }, )*
                })
            }
        }
    };
}

interval_section! {
    /// `intervals.worker`: timers of a worker node.
    pub struct WorkerIntervals {
        /// Sleep between integrity-check attempts.
        sync_integrity: Duration = secs(9),
        /// Sleep between agent-info sends.
        sync_agent_info: Duration = secs(10),
        /// 4.3 only: retry period after a failed agent-info send.
        sync_agent_info_ko_retry: Duration = secs(1),
        /// 4.14 only, and not acted upon there either.
        sync_agent_groups: Duration = secs(30),
        /// 4.14: longest time to store a received agent-groups update.
        timeout_agent_groups: Duration = secs(40),
        /// Period of the worker's keepalive (`echo-c`).
        keep_alive: Duration = secs(60),
        /// Delay before reconnecting to the master.
        connection_retry: Duration = secs(10),
        /// Consecutive failed keepalives before the worker drops the connection.
        max_failed_keepalive_attempts: u32 = 2,
        /// 4.14: consecutive agent-groups checksum mismatches before asking for a full send.
        agent_groups_mismatch_limit: u32 = 5,
    }
}

interval_section! {
    /// `intervals.master`: timers of the master node.
    pub struct MasterIntervals {
        /// Processes (threads here) for file work, capped at the CPU count.
        process_pool_size: usize = 2,
        /// 4.14: period of the agent-groups query and broadcast.
        sync_agent_groups: Duration = secs(10),
        /// Longest time to apply a worker's extra-valid files.
        timeout_extra_valid: Duration = secs(40),
        /// Sleep between two local integrity calculations.
        recalculate_integrity: Duration = secs(8),
        /// Longest time to store a worker's agent-info.
        timeout_agent_info: Duration = secs(40),
        /// 4.14: delay before the first agent-groups round.
        agent_group_start_delay: Duration = secs(30),
        /// Period of the check for silent workers.
        check_worker_lastkeepalive: Duration = secs(60),
        /// Silence after which a worker or local client is disconnected.
        max_allowed_time_without_keepalive: Duration = secs(120),
        /// Age after which an integrity lock is released anyway.
        max_locked_integrity_time: Duration = secs(1000),
    }
}

interval_section! {
    /// `intervals.communication`: limits shared by both roles.
    pub struct CommunicationIntervals {
        /// Wait for the reply to any request.
        timeout_cluster_request: Duration = secs(20),
        /// Wait for a forwarded API result, and for a local client's answer.
        timeout_dapi_request: Duration = secs(200),
        /// Wait between the start of a file reception and its end command.
        timeout_receiving_file: Duration = secs(120),
        /// 4.14: largest integrity package, in bytes, and bound on decompression.
        max_zip_size: u64 = 1_073_741_824,
        /// 4.14: floor of the adaptive package limit, in bytes.
        min_zip_size: u64 = 31_457_280,
        /// 4.14: zlib level of package members (0 to 9).
        compress_level: u32 = 1,
        /// 4.14: factor by which the adaptive package limit shrinks or grows (0 to just under 1).
        zip_limit_tolerance: f64 = 0.2,
    }
}

impl ClusterJson {
    /// The built-in table of `dialect`.
    pub fn defaults(dialect: Dialect) -> ClusterJson {
        ClusterJson {
            files: default_files(dialect),
            intervals: Intervals::default(),
            distributed_api_enabled: true,
        }
    }

    /// The built-in table of `dialect` with the operator's `override_path` merged over it, if that file
    /// exists.
    pub fn load(dialect: Dialect, override_path: &Path) -> Result<ClusterJson, ConfigError> {
        Ok(ClusterJson::load_layers(dialect, &[override_path])?.0)
    }

    /// The built-in table of `dialect` with each of `layers` that exists merged over it in turn (the
    /// framework's file, then the operator's), and the files that were read.
    pub fn load_layers(
        dialect: Dialect,
        layers: &[&Path],
    ) -> Result<(ClusterJson, Vec<PathBuf>), ConfigError> {
        let mut merged = ClusterJson::defaults(dialect).to_json();
        let mut read = Vec::new();
        for path in layers {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(ConfigError::Read {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            };
            let layer: Value =
                serde_json::from_str(&text).map_err(|source| ConfigError::JsonSyntax {
                    path: path.to_path_buf(),
                    source,
                })?;
            let root = At {
                file: path,
                dialect,
                key: String::new(),
            };
            merge(&mut merged, layer, &root)?;
            // Each layer is checked on its own, so an error names the file that caused it.
            let table = ClusterJson::from_json(&merged, &root)?;
            table.check(&root)?;
            read.push(path.to_path_buf());
        }
        if read.is_empty() {
            return Ok((ClusterJson::defaults(dialect), read));
        }
        let root = At {
            file: &read[read.len() - 1],
            dialect,
            key: String::new(),
        };
        Ok((ClusterJson::from_json(&merged, &root)?, read))
    }

    /// The table in `cluster.json` layout (durations in seconds, permissions as `"0o640"`).
    pub fn to_json(&self) -> Value {
        let mut files = Map::new();
        for item in &self.files.items {
            files.insert(item.key.clone(), item.to_json());
        }
        files.insert(
            "excluded_files".to_string(),
            Value::from(self.files.excluded_files.clone()),
        );
        files.insert(
            "excluded_extensions".to_string(),
            Value::from(self.files.excluded_extensions.clone()),
        );
        serde_json::json!({
            "files": files,
            "intervals": {
                "worker": self.intervals.worker.to_json(),
                "master": self.intervals.master.to_json(),
                "communication": self.intervals.communication.to_json(),
            },
            "distributed_api": { "enabled": self.distributed_api_enabled },
        })
    }

    fn from_json(value: &Value, root: &At<'_>) -> Result<ClusterJson, ConfigError> {
        let (files, files_at) = root.field(value, "files")?;
        let Some(entries) = files.as_object() else {
            return Err(files_at.invalid("an object", files));
        };
        let mut items = Vec::new();
        for (key, entry) in entries {
            if key != "excluded_files" && key != "excluded_extensions" {
                items.push(ItemSpec::from_json(key, entry, &files_at.child(key))?);
            }
        }
        let excluded = |name: &str| {
            let (list, at) = files_at.field(files, name)?;
            strings(list, &at)
        };
        let (intervals, intervals_at) = root.field(value, "intervals")?;
        let (worker, worker_at) = intervals_at.field(intervals, "worker")?;
        let (master, master_at) = intervals_at.field(intervals, "master")?;
        let (communication, communication_at) = intervals_at.field(intervals, "communication")?;
        let (api, api_at) = root.field(value, "distributed_api")?;
        let (enabled, enabled_at) = api_at.field(api, "enabled")?;
        Ok(ClusterJson {
            files: FilesTable {
                items,
                excluded_files: excluded("excluded_files")?,
                excluded_extensions: excluded("excluded_extensions")?,
            },
            intervals: Intervals {
                worker: WorkerIntervals::from_json(worker, &worker_at)?,
                master: MasterIntervals::from_json(master, &master_at)?,
                communication: CommunicationIntervals::from_json(communication, &communication_at)?,
            },
            distributed_api_enabled: boolean(enabled, &enabled_at)?,
        })
    }

    /// Ranges that a type alone does not express.
    fn check(&self, root: &At<'_>) -> Result<(), ConfigError> {
        let master = root.child("intervals").child("master");
        let communication = root.child("intervals").child("communication");
        let c = &self.intervals.communication;
        let checks = [
            (
                self.intervals.master.process_pool_size >= 1,
                master.child("process_pool_size"),
                "at least 1",
                Value::from(self.intervals.master.process_pool_size),
            ),
            (
                c.compress_level <= 9,
                communication.child("compress_level"),
                "an integer from 0 to 9",
                Value::from(c.compress_level),
            ),
            (
                (0.0..1.0).contains(&c.zip_limit_tolerance),
                communication.child("zip_limit_tolerance"),
                "at least 0 and less than 1",
                Value::from(c.zip_limit_tolerance),
            ),
            (
                c.min_zip_size >= 1,
                communication.child("min_zip_size"),
                "at least 1 byte",
                Value::from(c.min_zip_size),
            ),
            (
                c.max_zip_size >= c.min_zip_size,
                communication.child("max_zip_size"),
                "at least min_zip_size",
                Value::from(c.max_zip_size),
            ),
        ];
        for (ok, at, expected, found) in checks {
            if !ok {
                return Err(at.invalid(expected, &found));
            }
        }
        Ok(())
    }
}

impl ItemSpec {
    fn to_json(&self) -> Value {
        let files = match &self.files {
            FileSelection::All => vec!["all".to_string()],
            FileSelection::Names(names) => names.clone(),
        };
        serde_json::json!({
            "permissions": format!("0o{:o}", self.permissions),
            "source": "master",
            "files": files,
            "recursive": self.recursive,
            "restart": self.restart,
            "remove_subdirs_if_empty": self.remove_subdirs_if_empty,
            "extra_valid": self.extra_valid,
            "description": self.description,
        })
    }

    fn from_json(key: &str, value: &Value, at: &At<'_>) -> Result<ItemSpec, ConfigError> {
        let field = |name: &str| at.field(value, name);
        let flag = |name: &str| field(name).and_then(|(v, at)| boolean(v, &at));
        let text = |name: &str| {
            field(name).and_then(|(v, at)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| at.invalid("a string", v))
            })
        };
        let (permissions, permissions_at) = field("permissions")?;
        let (files, files_at) = field("files")?;
        let names = strings(files, &files_at)?;
        // The source node is always the master; the key is accepted for layout compatibility only.
        text("source")?;
        Ok(ItemSpec {
            key: key.to_string(),
            permissions: mode(permissions, &permissions_at)?,
            files: if names == ["all"] {
                FileSelection::All
            } else {
                FileSelection::Names(names)
            },
            recursive: flag("recursive")?,
            restart: flag("restart")?,
            remove_subdirs_if_empty: flag("remove_subdirs_if_empty")?,
            extra_valid: flag("extra_valid")?,
            description: text("description")?,
        })
    }
}

/// The items of each dialect, in the order Wazuh lists them.
fn default_files(dialect: Dialect) -> FilesTable {
    let item = |key: &str,
                permissions: u32,
                files: FileSelection,
                recursive: bool,
                restart: bool,
                remove_subdirs_if_empty: bool,
                description: &str| ItemSpec {
        key: key.to_string(),
        permissions,
        files,
        recursive,
        restart,
        remove_subdirs_if_empty,
        extra_valid: false,
        description: description.to_string(),
    };
    let names = |n: &str| FileSelection::Names(vec![n.to_string()]);
    let all = || FileSelection::All;
    let mut items = vec![
        item(
            "etc/",
            0o640,
            names("client.keys"),
            false,
            false,
            false,
            "client keys file database",
        ),
        item(
            "etc/shared/",
            0o660,
            all(),
            true,
            false,
            true,
            "shared configuration files",
        ),
        item(
            "var/multigroups/",
            0o660,
            names("merged.mg"),
            true,
            false,
            true,
            "shared configuration files",
        ),
        item("etc/rules/", 0o660, all(), true, true, false, "user rules"),
        item(
            "etc/decoders/",
            0o660,
            all(),
            true,
            true,
            false,
            "user decoders",
        ),
        item(
            "etc/lists/",
            0o660,
            all(),
            true,
            true,
            false,
            "user CDB lists",
        ),
    ];
    if dialect == Dialect::V4_3 {
        items.push(ItemSpec {
            extra_valid: true,
            ..item(
                "queue/agent-groups/",
                0o660,
                all(),
                true,
                false,
                false,
                "agents group configuration",
            )
        });
    }
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    FilesTable {
        items,
        excluded_files: strings(&["ar.conf", "ossec.conf"]),
        excluded_extensions: strings(&["~", ".tmp", ".lock", ".swp"]),
    }
}

/// Where a value sits: the file it came from and its key path inside that file.
struct At<'a> {
    file: &'a Path,
    dialect: Dialect,
    /// Rendered path, e.g. `intervals.worker.keep_alive` or `files["etc/shared/"].permissions`.
    key: String,
}

impl<'a> At<'a> {
    fn child(&self, segment: &str) -> At<'a> {
        let plain = !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let key = match (self.key.is_empty(), plain) {
            (true, true) => segment.to_string(),
            (false, true) => format!("{}.{segment}", self.key),
            (_, false) => format!("{}[{}]", self.key, Value::from(segment)),
        };
        At {
            file: self.file,
            dialect: self.dialect,
            key,
        }
    }

    /// The value under `name` in `parent`, which sits at `self`. After merging over the built-in table
    /// every key is present; the error only guards against a table that lost one.
    fn field<'v>(&self, parent: &'v Value, name: &str) -> Result<(&'v Value, At<'a>), ConfigError> {
        let at = self.child(name);
        match parent.get(name) {
            Some(value) => Ok((value, at)),
            None => Err(at.invalid("present", &Value::Null)),
        }
    }

    fn invalid(&self, expected: &str, found: &Value) -> ConfigError {
        let mut found = found.to_string();
        if found.len() > 60 {
            let cut = (0..=57)
                .rev()
                .find(|i| found.is_char_boundary(*i))
                .unwrap_or(0);
            found.truncate(cut);
            found.push_str("...");
        }
        let key_path = if self.key.is_empty() {
            "(top level)".to_string()
        } else {
            self.key.clone()
        };
        ConfigError::JsonValue {
            path: self.file.to_path_buf(),
            key_path,
            expected: expected.to_string(),
            found,
        }
    }

    fn unknown(&self) -> ConfigError {
        ConfigError::JsonUnknownKey {
            path: self.file.to_path_buf(),
            key_path: self.key.clone(),
            dialect: self.dialect.to_string(),
        }
    }
}

/// Merges `overrides` into `base`: objects key by key, anything else replaced whole. Every key of
/// `overrides` must exist in `base`.
fn merge(base: &mut Value, overrides: Value, at: &At<'_>) -> Result<(), ConfigError> {
    let Value::Object(base_map) = base else {
        *base = overrides;
        return Ok(());
    };
    let Value::Object(over_map) = overrides else {
        return Err(at.invalid("an object", &overrides));
    };
    for (key, value) in over_map {
        let child = at.child(&key);
        let Some(slot) = base_map.get_mut(&key) else {
            return Err(child.unknown());
        };
        merge(slot, value, &child)?;
    }
    Ok(())
}

fn boolean(value: &Value, at: &At<'_>) -> Result<bool, ConfigError> {
    value
        .as_bool()
        .ok_or_else(|| at.invalid("true or false", value))
}

fn strings(value: &Value, at: &At<'_>) -> Result<Vec<String>, ConfigError> {
    let expected = "a list of strings";
    let list = value
        .as_array()
        .ok_or_else(|| at.invalid(expected, value))?;
    list.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| at.invalid(expected, value))
        })
        .collect()
}

/// A file mode written as a string with an optional base prefix (`"0o640"`, `"0x1a0"`, `"416"`).
fn mode(value: &Value, at: &At<'_>) -> Result<u32, ConfigError> {
    let expected = "a file mode string such as \"0o640\" (at most 0o7777)";
    let text = value
        .as_str()
        .ok_or_else(|| at.invalid(expected, value))?
        .trim();
    let lower = text.to_ascii_lowercase();
    let (digits, radix) = if let Some(d) = lower.strip_prefix("0o") {
        (d, 8)
    } else if let Some(d) = lower.strip_prefix("0x") {
        (d, 16)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (d, 2)
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().any(|b| b != b'0') {
        // A leading zero without a base prefix is ambiguous (octal or decimal?): refused.
        return Err(at.invalid(expected, value));
    } else {
        (lower.as_str(), 10)
    };
    let valid_digits = !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix));
    match u32::from_str_radix(digits, radix) {
        Ok(mode) if valid_digits && mode <= 0o7777 => Ok(mode),
        _ => Err(at.invalid(expected, value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(dialect: Dialect, text: &str) -> Result<ClusterJson, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.json");
        std::fs::write(&path, text).unwrap();
        ClusterJson::load(dialect, &path)
    }

    fn err_text(dialect: Dialect, text: &str) -> String {
        load_text(dialect, text).unwrap_err().to_string()
    }

    fn keys(table: &ClusterJson) -> Vec<&str> {
        table.files.items.iter().map(|i| i.key.as_str()).collect()
    }

    #[test]
    fn v4_14_files_table() {
        let table = ClusterJson::defaults(Dialect::V4_14);
        assert_eq!(
            keys(&table),
            [
                "etc/",
                "etc/shared/",
                "var/multigroups/",
                "etc/rules/",
                "etc/decoders/",
                "etc/lists/"
            ]
        );
        let etc = table.files.item("etc/").unwrap();
        assert_eq!(etc.permissions, 0o640);
        assert_eq!(
            etc.files,
            FileSelection::Names(vec!["client.keys".to_string()])
        );
        assert!(!etc.recursive && !etc.restart && !etc.remove_subdirs_if_empty && !etc.extra_valid);
        assert_eq!(etc.description, "client keys file database");
        let shared = table.files.item("etc/shared/").unwrap();
        assert_eq!(shared.permissions, 0o660);
        assert_eq!(shared.files, FileSelection::All);
        assert!(shared.recursive && !shared.restart && shared.remove_subdirs_if_empty);
        let multigroups = table.files.item("var/multigroups/").unwrap();
        assert_eq!(
            multigroups.files,
            FileSelection::Names(vec!["merged.mg".to_string()])
        );
        assert!(multigroups.recursive && multigroups.remove_subdirs_if_empty);
        for key in ["etc/rules/", "etc/decoders/", "etc/lists/"] {
            let item = table.files.item(key).unwrap();
            assert_eq!(item.permissions, 0o660);
            assert_eq!(item.files, FileSelection::All);
            assert!(item.recursive && item.restart && !item.remove_subdirs_if_empty);
            assert!(!item.extra_valid);
        }
        assert_eq!(
            table.files.item("etc/lists/").unwrap().description,
            "user CDB lists"
        );
        assert!(table.files.item("queue/agent-groups/").is_none());
        assert_eq!(table.files.excluded_files, ["ar.conf", "ossec.conf"]);
        assert_eq!(
            table.files.excluded_extensions,
            ["~", ".tmp", ".lock", ".swp"]
        );
        assert!(table.distributed_api_enabled);
    }

    #[test]
    fn v4_3_adds_extra_valid_agent_groups() {
        let table = ClusterJson::defaults(Dialect::V4_3);
        assert_eq!(table.files.items.len(), 7);
        assert_eq!(
            table.files.items[..6],
            ClusterJson::defaults(Dialect::V4_14).files.items[..]
        );
        let groups = table.files.item("queue/agent-groups/").unwrap();
        assert_eq!(groups.permissions, 0o660);
        assert_eq!(groups.files, FileSelection::All);
        assert!(groups.recursive && !groups.restart && !groups.remove_subdirs_if_empty);
        assert!(groups.extra_valid);
        assert_eq!(groups.description, "agents group configuration");
    }

    #[test]
    fn interval_defaults_of_both_dialects() {
        for dialect in [Dialect::V4_3, Dialect::V4_14] {
            let i = ClusterJson::defaults(dialect).intervals;
            let w = &i.worker;
            assert_eq!(w.sync_integrity, secs(9));
            assert_eq!(w.sync_agent_info, secs(10));
            assert_eq!(w.sync_agent_info_ko_retry, secs(1));
            assert_eq!(w.sync_agent_groups, secs(30));
            assert_eq!(w.timeout_agent_groups, secs(40));
            assert_eq!(w.keep_alive, secs(60));
            assert_eq!(w.connection_retry, secs(10));
            assert_eq!(w.max_failed_keepalive_attempts, 2);
            assert_eq!(w.agent_groups_mismatch_limit, 5);
            let m = &i.master;
            assert_eq!(m.process_pool_size, 2);
            assert_eq!(m.sync_agent_groups, secs(10));
            assert_eq!(m.timeout_extra_valid, secs(40));
            assert_eq!(m.recalculate_integrity, secs(8));
            assert_eq!(m.timeout_agent_info, secs(40));
            assert_eq!(m.agent_group_start_delay, secs(30));
            assert_eq!(m.check_worker_lastkeepalive, secs(60));
            assert_eq!(m.max_allowed_time_without_keepalive, secs(120));
            assert_eq!(m.max_locked_integrity_time, secs(1000));
            let c = &i.communication;
            assert_eq!(c.timeout_cluster_request, secs(20));
            assert_eq!(c.timeout_dapi_request, secs(200));
            assert_eq!(c.timeout_receiving_file, secs(120));
            assert_eq!(c.max_zip_size, 1_073_741_824);
            assert_eq!(c.min_zip_size, 31_457_280);
            assert_eq!(c.compress_level, 1);
            assert_eq!(c.zip_limit_tolerance, 0.2);
        }
    }

    #[test]
    fn missing_override_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.json");
        for dialect in [Dialect::V4_3, Dialect::V4_14] {
            assert_eq!(
                ClusterJson::load(dialect, &path).unwrap(),
                ClusterJson::defaults(dialect)
            );
        }
    }

    #[test]
    fn json_layout_round_trips() {
        for dialect in [Dialect::V4_3, Dialect::V4_14] {
            let table = ClusterJson::defaults(dialect);
            let json = table.to_json();
            assert_eq!(json["files"]["etc/"]["permissions"], "0o640");
            assert_eq!(
                json["files"]["etc/shared/"]["files"],
                serde_json::json!(["all"])
            );
            assert_eq!(json["intervals"]["worker"]["keep_alive"], 60);
            assert_eq!(
                json["intervals"]["communication"]["zip_limit_tolerance"],
                0.2
            );
            let text = serde_json::to_string_pretty(&json).unwrap();
            assert_eq!(load_text(dialect, &text).unwrap(), table);
        }
    }

    #[test]
    fn partial_override_changes_only_what_it_names() {
        let table = load_text(
            Dialect::V4_14,
            r#"{"intervals": {"worker": {"keep_alive": 1, "connection_retry": 0.5}}}"#,
        )
        .unwrap();
        let mut expected = ClusterJson::defaults(Dialect::V4_14);
        expected.intervals.worker.keep_alive = secs(1);
        expected.intervals.worker.connection_retry = Duration::from_millis(500);
        assert_eq!(table, expected);

        let table = load_text(
            Dialect::V4_3,
            r#"{
                "files": {"etc/shared/": {"permissions": "0o640", "files": ["a.conf", "b.conf"]},
                          "excluded_extensions": [".bak"]},
                "intervals": {"communication": {"max_zip_size": 40000000, "compress_level": 9},
                              "master": {"process_pool_size": 1}},
                "distributed_api": {"enabled": false}
            }"#,
        )
        .unwrap();
        let shared = table.files.item("etc/shared/").unwrap();
        assert_eq!(shared.permissions, 0o640);
        assert_eq!(
            shared.files,
            FileSelection::Names(vec!["a.conf".into(), "b.conf".into()])
        );
        assert!(shared.recursive);
        assert_eq!(table.files.items.len(), 7);
        assert_eq!(table.files.excluded_extensions, [".bak"]);
        assert_eq!(table.files.excluded_files, ["ar.conf", "ossec.conf"]);
        assert_eq!(table.intervals.communication.max_zip_size, 40_000_000);
        assert_eq!(table.intervals.communication.compress_level, 9);
        assert_eq!(table.intervals.master.process_pool_size, 1);
        assert!(!table.distributed_api_enabled);
        assert_eq!(table.intervals.worker.keep_alive, secs(60));
    }

    #[test]
    fn sub_second_intervals() {
        let table = load_text(
            Dialect::V4_14,
            r#"{"intervals": {"master": {"check_worker_lastkeepalive": 0.05,
                                       "max_allowed_time_without_keepalive": 0.2}}}"#,
        )
        .unwrap();
        assert_eq!(
            table.intervals.master.check_worker_lastkeepalive,
            Duration::from_millis(50)
        );
        assert_eq!(
            table.intervals.master.max_allowed_time_without_keepalive,
            Duration::from_millis(200)
        );
    }

    #[test]
    fn settings_of_the_other_dialect_are_accepted() {
        let table = load_text(
            Dialect::V4_3,
            r#"{"intervals": {"worker": {"agent_groups_mismatch_limit": 7}}}"#,
        )
        .unwrap();
        assert_eq!(table.intervals.worker.agent_groups_mismatch_limit, 7);
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let err = err_text(
            Dialect::V4_14,
            r#"{"intervals": {"worker": {"keepalive": 1}}}"#,
        );
        assert!(
            err.contains("unknown key 'intervals.worker.keepalive'"),
            "{err}"
        );
        assert!(err.contains("cluster.json"), "{err}");
        let err = err_text(Dialect::V4_14, r#"{"interval": {}}"#);
        assert!(err.contains("unknown key 'interval'"), "{err}");
        let err = err_text(
            Dialect::V4_14,
            r#"{"files": {"queue/agent-groups/": {"recursive": false}}}"#,
        );
        assert!(
            err.contains(r#"unknown key 'files["queue/agent-groups/"]'"#),
            "{err}"
        );
        assert!(err.contains("Wazuh 4.14"), "{err}");
        let err = err_text(
            Dialect::V4_3,
            r#"{"files": {"etc/": {"permission": "0o600"}}}"#,
        );
        assert!(
            err.contains(r#"unknown key 'files["etc/"].permission'"#),
            "{err}"
        );
    }

    #[test]
    fn wrong_types_and_ranges_are_named_with_their_path() {
        let cases = [
            (
                r#"{"intervals": {"worker": {"keep_alive": "60"}}}"#,
                "'intervals.worker.keep_alive' must be a positive number of seconds, found \"60\"",
            ),
            (
                r#"{"intervals": {"worker": {"keep_alive": -1}}}"#,
                "'intervals.worker.keep_alive' must be a positive number of seconds, found -1",
            ),
            (
                r#"{"intervals": {"worker": {"sync_integrity": 1e-12}}}"#,
                "'intervals.worker.sync_integrity' must be a positive number of seconds",
            ),
            (
                r#"{"intervals": {"communication": {"timeout_cluster_request": 0}}}"#,
                "'intervals.communication.timeout_cluster_request' must be a positive number of \
                 seconds, found 0",
            ),
            (
                r#"{"intervals": {"worker": {"max_failed_keepalive_attempts": 1.5}}}"#,
                "'intervals.worker.max_failed_keepalive_attempts' must be an integer",
            ),
            (
                r#"{"intervals": {"communication": {"max_zip_size": -5}}}"#,
                "'intervals.communication.max_zip_size' must be a non-negative integer",
            ),
            (
                r#"{"intervals": {"communication": {"compress_level": 10}}}"#,
                "'intervals.communication.compress_level' must be an integer from 0 to 9",
            ),
            (
                r#"{"intervals": {"communication": {"zip_limit_tolerance": 1}}}"#,
                "'intervals.communication.zip_limit_tolerance' must be at least 0 and less than 1",
            ),
            (
                r#"{"intervals": {"communication": {"min_zip_size": 2000000000}}}"#,
                "'intervals.communication.max_zip_size' must be at least min_zip_size",
            ),
            (
                r#"{"intervals": {"master": {"process_pool_size": 0}}}"#,
                "'intervals.master.process_pool_size' must be at least 1",
            ),
            (
                r#"{"intervals": {"worker": 5}}"#,
                "'intervals.worker' must be an object, found 5",
            ),
            (r#"[]"#, "'(top level)' must be an object, found []"),
            (
                r#"{"distributed_api": {"enabled": "yes"}}"#,
                "'distributed_api.enabled' must be true or false",
            ),
            (
                r#"{"files": {"etc/": {"permissions": 416}}}"#,
                r#"'files["etc/"].permissions' must be a file mode string"#,
            ),
            (
                r#"{"files": {"etc/": {"permissions": "0o999"}}}"#,
                r#"'files["etc/"].permissions' must be a file mode string"#,
            ),
            (
                r#"{"files": {"etc/": {"permissions": "0640"}}}"#,
                r#"'files["etc/"].permissions' must be a file mode string"#,
            ),
            (
                r#"{"files": {"etc/": {"permissions": "0o17777"}}}"#,
                r#"'files["etc/"].permissions' must be a file mode string"#,
            ),
            (
                r#"{"files": {"etc/": {"files": "client.keys"}}}"#,
                r#"'files["etc/"].files' must be a list of strings"#,
            ),
            (
                r#"{"files": {"excluded_files": ["a", 1]}}"#,
                "'files.excluded_files' must be a list of strings",
            ),
            (
                r#"{"files": {"etc/": {"recursive": "no"}}}"#,
                r#"'files["etc/"].recursive' must be true or false"#,
            ),
        ];
        for (text, expected) in cases {
            let err = err_text(Dialect::V4_14, text);
            assert!(err.contains(expected), "{text}\n{err}");
        }
    }

    #[test]
    fn permission_strings_follow_the_base_prefix() {
        let root = At {
            file: Path::new("cluster.json"),
            dialect: Dialect::V4_14,
            key: "p".to_string(),
        };
        for (text, expected) in [
            ("0o640", 0o640),
            ("0O750", 0o750),
            ("0x1a0", 0o640),
            ("416", 0o640),
            ("0", 0),
            ("0b110100000", 0o640),
        ] {
            assert_eq!(mode(&Value::from(text), &root).unwrap(), expected, "{text}");
        }
        for bad in ["", "0o", "640o", "rw-r-----", "0o-1", "0x+1"] {
            assert!(mode(&Value::from(bad), &root).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_json_names_file_and_position() {
        let err = err_text(Dialect::V4_14, "{\n  \"intervals\": {,}\n}");
        assert!(err.contains("cluster.json: invalid JSON"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn unreadable_override_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in place of the file cannot be read.
        let err = ClusterJson::load(Dialect::V4_14, dir.path()).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }
}
