//! Text printed by `cluster_control` from the daemon's JSON answers.
//!
//! Scripts and people compare this output with that of the original tool, so layout, labels and the
//! way values are spelled (`True`/`False`, `n/a`, durations like `0.016s`) follow it exactly,
//! including its quirks: table cells are padded even in the last column, and labels such as
//! `Last keep Alive:` and `Agents-groups:` keep their original spelling. Every function returns the
//! complete text to write to standard output, final newline included.

use std::fmt::Write as _;

use chrono::{NaiveDateTime, TimeDelta};
use serde_json::Value;

use crate::sync::pyjson::{float_repr as py_float, repr_value as py_repr};

/// The daemon's answer does not have the shape the output needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A member is absent; the path is dotted from the top of the answer (`nodes.worker1.info.ip`).
    #[error("the daemon's answer lacks member '{0}'")]
    Missing(String),
    /// A member has another JSON type than the one needed.
    #[error("member '{path}' of the daemon's answer is not {expected}")]
    WrongType {
        path: String,
        expected: &'static str,
    },
    /// A date is neither `n/a` nor `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    #[error("member '{path}' of the daemon's answer is not a valid date: '{value}'")]
    BadDate { path: String, value: String },
}

/// Placeholder the daemon uses for a date that was never set.
const NOT_SET: &str = "n/a";

/// Which Wazuh release's `cluster_control` the `-i` text follows. Wazuh 4.4 added the agent-groups
/// tasks and dropped the extra-valid counts, so a 4.3 cluster is shown as the 4.3 tool shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthLayout {
    /// Wazuh 4.3: extra-valid counts, no agent-groups tasks.
    V4_3,
    /// Wazuh 4.4 and later (4.14): agent-groups tasks, no extra-valid counts.
    V4_14,
}

impl HealthLayout {
    /// The layout of the release the answer's nodes run (they all run the master's version);
    /// an answer naming no version is taken as the newer layout.
    pub fn of(get_health_result: &Value) -> HealthLayout {
        let versions = get_health_result["nodes"]
            .as_object()
            .into_iter()
            .flat_map(|nodes| nodes.values())
            .filter_map(|node| node["info"]["version"].as_str());
        for version in versions {
            let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
            if let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) {
                return match (major, minor) {
                    (4, 0..=3) | (0..=3, _) => HealthLayout::V4_3,
                    _ => HealthLayout::V4_14,
                };
            }
        }
        HealthLayout::V4_14
    }
}

/// `-l`: the node table (`NAME TYPE VERSION ADDRESS`), from the `get_nodes` answer
/// `{"items": [{"name", "type", "version", "ip"}, ...], ...}`, rows in the given order.
pub fn nodes_table(get_nodes_result: &Value) -> Result<String, FormatError> {
    let root = At::root(get_nodes_result);
    let items = root.get("items")?;
    let list = items.array()?;
    let mut rows = vec![strings(&["NAME", "TYPE", "VERSION", "ADDRESS"])];
    for (i, item) in list.iter().enumerate() {
        let item = At {
            value: item,
            path: format!("items[{i}]"),
        };
        let row = ["name", "type", "version", "ip"]
            .iter()
            .map(|key| item.get(key).map(|v| v.text()))
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(row);
    }
    Ok(table(&rows))
}

/// `-a`: the agent table (`ID NAME IP STATUS VERSION NODE NAME`) from the agents-overview items;
/// absent (or null) values print as `unknown`, as for never-connected agents without a version.
pub fn agents_table(items: &[Value]) -> String {
    const KEYS: [&str; 6] = ["id", "name", "ip", "status", "version", "node_name"];
    let mut rows = vec![strings(&[
        "ID",
        "NAME",
        "IP",
        "STATUS",
        "VERSION",
        "NODE NAME",
    ])];
    for item in items {
        rows.push(
            KEYS.iter()
                .map(|key| match item.get(key) {
                    None | Some(Value::Null) => "unknown".to_owned(),
                    Some(value) => py_str(value),
                })
                .collect(),
        );
    }
    table(&rows)
}

/// `-i` and `-i more`: cluster health from the `get_health` answer, laid out as the `cluster_control`
/// of the answer's release prints it ([`HealthLayout::of`]).
///
/// Nodes are listed in name order. Without `more`, one summary line per worker with the end dates
/// of its last synchronizations; with `more`, a block per node (workers with detailed sections).
/// As in the original tool, the whole answer is checked even when only the summary is printed.
pub fn health_text(
    get_health_result: &Value,
    cluster_name: &str,
    more: bool,
) -> Result<String, FormatError> {
    let layout = HealthLayout::of(get_health_result);
    let root = At::root(get_health_result);
    let connected = root.get("n_connected_nodes")?.text();
    let nodes = root.get("nodes")?;
    let mut names: Vec<&String> = nodes.object()?.keys().collect();
    names.sort();

    let mut summary = format!("Cluster name: {cluster_name}\n\n");
    if more {
        let _ = write!(summary, "Connected nodes ({connected}):");
    } else {
        let _ = writeln!(
            summary,
            "Last completed synchronization for connected nodes ({connected}):"
        );
    }
    let mut details = String::new();
    for name in names {
        let node = nodes.get(name)?;
        let info = node.get("info")?;
        let ip = info.get("ip")?.text();
        let node_type = info.get("type")?;
        let _ = write!(
            details,
            "\n    {name} ({ip})\n        Version: {}\n        Type: {}\n        Active agents: {}\n",
            info.get("version")?.text(),
            node_type.text(),
            info.get("n_active_agents")?.text(),
        );
        if node_type.value.as_str() != Some("master") {
            let status = node.get("status")?;
            if !more {
                worker_summary(&mut summary, name, &ip, &status, layout)?;
            }
            worker_details(&mut details, &status, layout)?;
        }
    }
    summary.push('\n');
    if more {
        summary.push_str(&details);
        summary.push('\n');
    }
    Ok(summary)
}

/// One `-i` line: end dates of the last runs of each task and the last keep-alive.
fn worker_summary(
    out: &mut String,
    name: &str,
    ip: &str,
    status: &At,
    layout: HealthLayout,
) -> Result<(), FormatError> {
    let groups = match layout {
        HealthLayout::V4_3 => String::new(),
        HealthLayout::V4_14 => format!(
            "Agent-groups: {} | Agent-groups full: {} | ",
            status.at(&["last_sync_agentgroup", "date_end"])?.text(),
            status
                .at(&["last_sync_full_agentgroup", "date_end"])?
                .text(),
        ),
    };
    let _ = writeln!(
        out,
        "    {name} ({ip}): Integrity check: {} | Integrity sync: {} | Agents-info: {} | \
         {groups}Last keep alive: {}.",
        status
            .at(&["last_check_integrity", "date_end_master"])?
            .text(),
        status
            .at(&["last_sync_integrity", "date_end_master"])?
            .text(),
        status
            .at(&["last_sync_agentinfo", "date_end_master"])?
            .text(),
        status.get("last_keep_alive")?.text(),
    );
    Ok(())
}

/// The `Status:` block of a worker in `-i more`.
fn worker_details(out: &mut String, status: &At, layout: HealthLayout) -> Result<(), FormatError> {
    const IND2: &str = "            ";
    const IND3: &str = "                ";
    let _ = writeln!(out, "        Status:");
    let _ = writeln!(out, "{IND2}Last keep Alive:");
    let _ = writeln!(
        out,
        "{IND3}Last received: {}.",
        status.get("last_keep_alive")?.text()
    );

    let check = status.get("last_check_integrity")?;
    let _ = writeln!(out, "{IND2}Integrity check:");
    let _ = writeln!(
        out,
        "{IND3}Last integrity check: {}.",
        span(&check, "date_start_master", "date_end_master")?
    );
    let _ = writeln!(
        out,
        "{IND3}Permission to check integrity: {}.",
        status.get("sync_integrity_free")?.text()
    );

    let sync = status.get("last_sync_integrity")?;
    let files = sync.get("total_files")?;
    let _ = writeln!(out, "{IND2}Integrity sync:");
    let _ = writeln!(
        out,
        "{IND3}Last integrity synchronization: {}.",
        span(&sync, "date_start_master", "date_end_master")?
    );
    let (shared, missing, extra) = (
        files.get("shared")?.text(),
        files.get("missing")?.text(),
        files.get("extra")?.text(),
    );
    match layout {
        HealthLayout::V4_3 => {
            let _ = writeln!(
                out,
                "{IND3}Synchronized files: Shared: {shared} | Missing: {missing} | Extra: {extra} | \
                 Extra valid: {}.",
                files.get("extra_valid")?.text()
            );
            let _ = writeln!(
                out,
                "{IND3}Extra valid files correctly updated in master: {}.",
                sync.get("total_extra_valid")?.text()
            );
        }
        HealthLayout::V4_14 => {
            let _ = writeln!(
                out,
                "{IND3}Synchronized files: Shared: {shared} | Missing: {missing} | Extra: {extra}."
            );
        }
    }

    let info = status.get("last_sync_agentinfo")?;
    let _ = writeln!(out, "{IND2}Agents-info:");
    let _ = writeln!(
        out,
        "{IND3}Last synchronization: {}.",
        span(&info, "date_start_master", "date_end_master")?
    );
    let _ = writeln!(
        out,
        "{IND3}Number of synchronized chunks: {}.",
        info.get("n_synced_chunks")?.text()
    );
    let _ = writeln!(
        out,
        "{IND3}Permission to synchronize agent-info: {}.",
        status.get("sync_agent_info_free")?.text()
    );

    if layout == HealthLayout::V4_3 {
        return Ok(());
    }
    for (key, label) in [
        ("last_sync_agentgroup", "Agents-groups"),
        ("last_sync_full_agentgroup", "Agents-groups full"),
    ] {
        let groups = status.get(key)?;
        let _ = writeln!(out, "{IND2}{label}:");
        let _ = writeln!(
            out,
            "{IND3}Last synchronization: {}.",
            span(&groups, "date_start", "date_end")?
        );
        let _ = writeln!(
            out,
            "{IND3}Number of synchronized chunks: {}.",
            groups.get("n_synced_chunks")?.text()
        );
    }
    Ok(())
}

/// `<duration> (<start> - <end>)` for a task record.
fn span(task: &At, start_key: &str, end_key: &str) -> Result<String, FormatError> {
    let start = task.get(start_key)?;
    let end = task.get(end_key)?;
    Ok(format!(
        "{} ({} - {})",
        duration(&start, &end)?,
        start.text(),
        end.text()
    ))
}

/// Time between two dates as the original tool prints it: seconds rounded to three decimals in
/// Python float notation (`0.016s`, `2.0s`), at least `0.001s`, or `n/a` if either date is unset.
fn duration(start: &At, end: &At) -> Result<String, FormatError> {
    if end.value.as_str() == Some(NOT_SET) || start.value.as_str() == Some(NOT_SET) {
        return Ok(NOT_SET.to_owned());
    }
    let elapsed = end.date()? - start.date()?;
    let micros = elapsed.num_microseconds().unwrap_or(i64::MAX);
    let secs = micros as f64 / 1e6;
    if secs < 0.0005 {
        return Ok("0.001s".to_owned());
    }
    // Formatting to three decimals rounds the exact binary value half-to-even, like Python's round().
    let rounded: f64 = format!("{secs:.3}").parse().unwrap_or(secs);
    Ok(format!("{}s", py_float(rounded)))
}

/// Parses `YYYY-MM-DDTHH:MM:SS.ffffffZ` (1 to 6 fraction digits, UTC).
fn parse_date(text: &str) -> Option<NaiveDateTime> {
    let (main, fraction) = text.strip_suffix('Z')?.rsplit_once('.')?;
    if fraction.is_empty() || fraction.len() > 6 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base = NaiveDateTime::parse_from_str(main, "%Y-%m-%dT%H:%M:%S").ok()?;
    let micros: i64 = format!("{fraction:0<6}").parse().ok()?;
    base.checked_add_signed(TimeDelta::microseconds(micros))
}

/// Left-aligned columns, each padded to its longest cell plus two spaces, one row per line.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).min().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count() + 2)
                .max()
                .unwrap_or(2)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (cell, width) in row.iter().zip(&widths) {
            out.push_str(cell);
            let pad = width.saturating_sub(cell.chars().count());
            out.extend(std::iter::repeat_n(' ', pad));
        }
        out.push('\n');
    }
    out
}

fn strings(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// A value of the answer with its path, so errors can say exactly what is wrong where.
struct At<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> At<'a> {
    fn root(value: &'a Value) -> Self {
        At {
            value,
            path: String::new(),
        }
    }

    fn shown_path(&self) -> String {
        if self.path.is_empty() {
            "(top level)".to_owned()
        } else {
            self.path.clone()
        }
    }

    fn wrong(&self, expected: &'static str) -> FormatError {
        FormatError::WrongType {
            path: self.shown_path(),
            expected,
        }
    }

    fn object(&self) -> Result<&'a serde_json::Map<String, Value>, FormatError> {
        self.value
            .as_object()
            .ok_or_else(|| self.wrong("an object"))
    }

    fn array(&self) -> Result<&'a Vec<Value>, FormatError> {
        self.value.as_array().ok_or_else(|| self.wrong("an array"))
    }

    fn get(&self, key: &str) -> Result<At<'a>, FormatError> {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        match self.object()?.get(key) {
            Some(value) => Ok(At { value, path }),
            None => Err(FormatError::Missing(path)),
        }
    }

    fn at(&self, keys: &[&str]) -> Result<At<'a>, FormatError> {
        let mut here = At {
            value: self.value,
            path: self.path.clone(),
        };
        for key in keys {
            here = here.get(key)?;
        }
        Ok(here)
    }

    fn text(&self) -> String {
        py_str(self.value)
    }

    fn date(&self) -> Result<NaiveDateTime, FormatError> {
        let text = self.value.as_str().ok_or_else(|| self.wrong("a date"))?;
        parse_date(text).ok_or_else(|| FormatError::BadDate {
            path: self.shown_path(),
            value: text.to_owned(),
        })
    }
}

/// A JSON value as the original tool prints it (Python `str()` of the decoded value).
fn py_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn health_answer() -> Value {
        let never = json!({
            "sync_integrity_free": true,
            "last_check_integrity": {"date_start_master": "n/a", "date_end_master": "n/a"},
            "last_sync_integrity": {"date_start_master": "n/a", "date_end_master": "n/a",
                                    "total_extra_valid": 0,
                                    "total_files": {"missing": 0, "shared": 0, "extra": 0}},
            "sync_agent_info_free": true,
            "last_sync_agentinfo": {"date_start_master": "n/a", "date_end_master": "n/a",
                                    "n_synced_chunks": 0},
            "last_sync_agentgroup": {"date_start": "n/a", "date_end": "n/a", "n_synced_chunks": 0},
            "last_sync_full_agentgroup": {"date_start": "n/a", "date_end": "n/a",
                                          "n_synced_chunks": 0},
            "last_keep_alive": "n/a"
        });
        let busy = json!({
            "sync_integrity_free": false,
            "last_check_integrity": {"date_start_master": "2024-03-31T10:00:00.000000Z",
                                     "date_end_master": "2024-03-31T10:00:00.016234Z"},
            "last_sync_integrity": {"date_start_master": "2024-03-31T10:00:00.020000Z",
                                    "date_end_master": "2024-03-31T10:00:02.020000Z",
                                    "total_extra_valid": 0,
                                    "total_files": {"missing": 3, "shared": 1, "extra": 2,
                                                    "extra_valid": 0}},
            "sync_agent_info_free": true,
            "last_sync_agentinfo": {"date_start_master": "2024-03-31T10:00:05.000000Z",
                                    "date_end_master": "2024-03-31T10:00:05.0001Z",
                                    "n_synced_chunks": 4},
            "last_sync_agentgroup": {"date_start": "2024-03-31T10:00:06.000000Z",
                                     "date_end": "2024-03-31T10:00:06.0625Z", "n_synced_chunks": 1},
            "last_sync_full_agentgroup": {"date_start": "2024-03-31T09:59:00.500000Z",
                                          "date_end": "2024-03-31T10:00:01.000000Z",
                                          "n_synced_chunks": 7},
            "last_keep_alive": "2024-03-31T10:00:07.123456Z"
        });
        json!({"n_connected_nodes": 2, "nodes": {
            "worker2": {"info": {"name": "worker2", "type": "worker", "version": "4.14.7",
                                 "ip": "10.0.0.3", "n_active_agents": 0}, "status": never},
            "worker1": {"info": {"name": "worker1", "type": "worker", "version": "4.14.7",
                                 "ip": "10.0.0.2", "n_active_agents": 12}, "status": busy},
            "master": {"info": {"name": "master", "type": "master", "version": "4.14.7",
                                "ip": "10.0.0.1", "n_active_agents": 5}}
        }})
    }

    #[test]
    fn nodes_table_pads_every_column() {
        let answer = json!({"items": [
            {"name": "master", "type": "master", "version": "4.14.7", "ip": "10.0.0.1"},
            {"name": "worker1", "type": "worker", "version": "4.14.7", "ip": "10.0.0.2"}
        ], "totalItems": 2});
        assert_eq!(
            nodes_table(&answer).expect("table"),
            concat!(
                "NAME     TYPE    VERSION  ADDRESS   \n",
                "master   master  4.14.7   10.0.0.1  \n",
                "worker1  worker  4.14.7   10.0.0.2  \n",
            )
        );
    }

    #[test]
    fn nodes_table_without_items() {
        let answer = json!({"items": [], "totalItems": 0});
        assert_eq!(
            nodes_table(&answer).expect("table"),
            "NAME  TYPE  VERSION  ADDRESS  \n"
        );
    }

    #[test]
    fn nodes_table_errors() {
        assert_eq!(
            nodes_table(&json!({"totalItems": 0})),
            Err(FormatError::Missing("items".into()))
        );
        let answer = json!({"items": [{"name": "m", "type": "master", "version": "4"}]});
        let err = nodes_table(&answer).expect_err("no ip");
        assert_eq!(err, FormatError::Missing("items[0].ip".into()));
        assert_eq!(
            err.to_string(),
            "the daemon's answer lacks member 'items[0].ip'"
        );
        assert_eq!(
            nodes_table(&json!(["x"])).expect_err("array").to_string(),
            "member '(top level)' of the daemon's answer is not an object"
        );
        assert_eq!(
            nodes_table(&json!({"items": {}})),
            Err(FormatError::WrongType {
                path: "items".into(),
                expected: "an array"
            })
        );
    }

    #[test]
    fn agents_table_fills_unknown() {
        let items = [
            json!({"id": "000", "name": "master", "ip": "127.0.0.1", "status": "active",
                   "version": "Wazuh v4.14.7", "node_name": "master"}),
            json!({"id": "001", "name": "agent-one", "ip": "any", "status": "never_connected",
                   "node_name": "unknown"}),
        ];
        assert_eq!(
            agents_table(&items),
            concat!(
                "ID   NAME       IP         STATUS           VERSION        NODE NAME  \n",
                "000  master     127.0.0.1  active           Wazuh v4.14.7  master     \n",
                "001  agent-one  any        never_connected  unknown        unknown    \n",
            )
        );
    }

    #[test]
    fn health_summary() {
        assert_eq!(
            health_text(&health_answer(), "wazuh", false).expect("text"),
            concat!(
                "Cluster name: wazuh\n",
                "\n",
                "Last completed synchronization for connected nodes (2):\n",
                "    worker1 (10.0.0.2): Integrity check: 2024-03-31T10:00:00.016234Z | ",
                "Integrity sync: 2024-03-31T10:00:02.020000Z | Agents-info: 2024-03-31T10:00:05.0001Z | ",
                "Agent-groups: 2024-03-31T10:00:06.0625Z | Agent-groups full: 2024-03-31T10:00:01.000000Z | ",
                "Last keep alive: 2024-03-31T10:00:07.123456Z.\n",
                "    worker2 (10.0.0.3): Integrity check: n/a | Integrity sync: n/a | Agents-info: n/a | ",
                "Agent-groups: n/a | Agent-groups full: n/a | Last keep alive: n/a.\n",
                "\n",
            )
        );
    }

    #[test]
    fn health_more() {
        let expected = concat!(
            "Cluster name: wazuh\n",
            "\n",
            "Connected nodes (2):\n",
            "\n",
            "    master (10.0.0.1)\n",
            "        Version: 4.14.7\n",
            "        Type: master\n",
            "        Active agents: 5\n",
            "\n",
            "    worker1 (10.0.0.2)\n",
            "        Version: 4.14.7\n",
            "        Type: worker\n",
            "        Active agents: 12\n",
            "        Status:\n",
            "            Last keep Alive:\n",
            "                Last received: 2024-03-31T10:00:07.123456Z.\n",
            "            Integrity check:\n",
            "                Last integrity check: 0.016s (2024-03-31T10:00:00.000000Z - 2024-03-31T10:00:00.016234Z).\n",
            "                Permission to check integrity: False.\n",
            "            Integrity sync:\n",
            "                Last integrity synchronization: 2.0s (2024-03-31T10:00:00.020000Z - 2024-03-31T10:00:02.020000Z).\n",
            "                Synchronized files: Shared: 1 | Missing: 3 | Extra: 2.\n",
            "            Agents-info:\n",
            "                Last synchronization: 0.001s (2024-03-31T10:00:05.000000Z - 2024-03-31T10:00:05.0001Z).\n",
            "                Number of synchronized chunks: 4.\n",
            "                Permission to synchronize agent-info: True.\n",
            "            Agents-groups:\n",
            "                Last synchronization: 0.062s (2024-03-31T10:00:06.000000Z - 2024-03-31T10:00:06.0625Z).\n",
            "                Number of synchronized chunks: 1.\n",
            "            Agents-groups full:\n",
            "                Last synchronization: 60.5s (2024-03-31T09:59:00.500000Z - 2024-03-31T10:00:01.000000Z).\n",
            "                Number of synchronized chunks: 7.\n",
            "\n",
            "    worker2 (10.0.0.3)\n",
            "        Version: 4.14.7\n",
            "        Type: worker\n",
            "        Active agents: 0\n",
            "        Status:\n",
            "            Last keep Alive:\n",
            "                Last received: n/a.\n",
            "            Integrity check:\n",
            "                Last integrity check: n/a (n/a - n/a).\n",
            "                Permission to check integrity: True.\n",
            "            Integrity sync:\n",
            "                Last integrity synchronization: n/a (n/a - n/a).\n",
            "                Synchronized files: Shared: 0 | Missing: 0 | Extra: 0.\n",
            "            Agents-info:\n",
            "                Last synchronization: n/a (n/a - n/a).\n",
            "                Number of synchronized chunks: 0.\n",
            "                Permission to synchronize agent-info: True.\n",
            "            Agents-groups:\n",
            "                Last synchronization: n/a (n/a - n/a).\n",
            "                Number of synchronized chunks: 0.\n",
            "            Agents-groups full:\n",
            "                Last synchronization: n/a (n/a - n/a).\n",
            "                Number of synchronized chunks: 0.\n",
            "\n",
        );
        assert_eq!(
            health_text(&health_answer(), "wazuh", true).expect("text"),
            expected
        );
    }

    #[test]
    fn health_master_only() {
        let answer = json!({"n_connected_nodes": 0, "nodes": {"master": {"info": {
            "name": "master", "type": "master", "version": "4.14.7", "ip": "10.0.0.1",
            "n_active_agents": 0}}}});
        assert_eq!(
            health_text(&answer, "prod", false).expect("text"),
            "Cluster name: prod\n\nLast completed synchronization for connected nodes (0):\n\n"
        );
    }

    #[test]
    fn health_errors() {
        let mut answer = health_answer();
        if let Some(status) = answer.pointer_mut("/nodes/worker1/status") {
            status["last_sync_integrity"]
                .as_object_mut()
                .map(|m| m.remove("total_files"));
        }
        // Checked even for the short summary, like the original tool.
        assert_eq!(
            health_text(&answer, "wazuh", false),
            Err(FormatError::Missing(
                "nodes.worker1.status.last_sync_integrity.total_files".into()
            ))
        );

        let mut answer = health_answer();
        if let Some(date) =
            answer.pointer_mut("/nodes/worker1/status/last_check_integrity/date_end_master")
        {
            *date = json!("2024-03-31 10:00:00");
        }
        let err = health_text(&answer, "wazuh", true).expect_err("bad date");
        assert_eq!(
            err.to_string(),
            "member 'nodes.worker1.status.last_check_integrity.date_end_master' of the daemon's \
             answer is not a valid date: '2024-03-31 10:00:00'"
        );

        assert_eq!(
            health_text(&json!({"nodes": {}}), "wazuh", false),
            Err(FormatError::Missing("n_connected_nodes".into()))
        );
        assert_eq!(
            health_text(
                &json!({"n_connected_nodes": 0, "nodes": []}),
                "wazuh",
                false
            ),
            Err(FormatError::WrongType {
                path: "nodes".into(),
                expected: "an object"
            })
        );
    }

    #[test]
    fn durations() {
        let task = |start: &str, end: &str| json!({"s": start, "e": end});
        let cases = [
            (
                "2024-01-01T00:00:00.000000Z",
                "2024-01-01T00:00:00.000300Z",
                "0.001s",
            ),
            (
                "2024-01-01T00:00:01.000000Z",
                "2024-01-01T00:00:00.000000Z",
                "0.001s",
            ),
            (
                "2024-01-01T00:00:00.000000Z",
                "2024-01-01T00:00:00.0025Z",
                "0.003s",
            ),
            (
                "2024-01-01T00:00:00.000000Z",
                "2024-01-01T00:00:00.999500Z",
                "1.0s",
            ),
            (
                "2024-01-01T23:59:59.5Z",
                "2024-01-02T00:00:12.345678Z",
                "12.846s",
            ),
            ("n/a", "2024-01-01T00:00:00.000000Z", "n/a"),
        ];
        for (start, end, expected) in cases {
            let value = task(start, end);
            let at = At::root(&value);
            let got = duration(&at.get("s").expect("s"), &at.get("e").expect("e"));
            assert_eq!(got.as_deref(), Ok(expected), "{start} -> {end}");
        }
    }

    #[test]
    fn dates() {
        assert!(parse_date("2024-03-31T10:00:00.016234Z").is_some());
        assert!(parse_date("2024-03-31T10:00:00.1Z").is_some());
        assert!(parse_date("2024-03-31T10:00:00Z").is_none());
        assert!(parse_date("2024-03-31T10:00:00.1234567Z").is_none());
        assert!(parse_date("2024-03-31T10:00:00.12").is_none());
        assert!(parse_date("n/a").is_none());
    }

    #[test]
    fn python_spelling() {
        assert_eq!(py_float(2.0), "2.0");
        assert_eq!(py_float(0.016), "0.016");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(1.5e-5), "1.5e-05");
        assert_eq!(py_str(&json!(null)), "None");
        assert_eq!(py_str(&json!(true)), "True");
        assert_eq!(py_str(&json!(1.0)), "1.0");
        assert_eq!(py_str(&json!(-3)), "-3");
        assert_eq!(
            py_str(&json!({"a": ["x", "it's"], "b": false})),
            r#"{'a': ['x', "it's"], 'b': False}"#
        );
    }

    /// A stock 4.3.11 master's answer (`tests/data/stock/`), printed as the 4.3.11 tool prints it.
    #[test]
    fn health_of_a_4_3_master_follows_the_4_3_tool() {
        let vector: Value = serde_json::from_str(include_str!(
            "../../tests/data/stock/get_health_4_3_master.json"
        ))
        .expect("vector");
        let answer: Value =
            serde_json::from_str(vector["reply_payload"].as_str().expect("payload"))
                .expect("answer");
        assert_eq!(HealthLayout::of(&answer), HealthLayout::V4_3);
        assert_eq!(
            health_text(&answer, "wazuh", true).expect("text"),
            concat!(
                "Cluster name: wazuh\n\nConnected nodes (1):\n",
                "\n    master (10.0.0.1)\n        Version: 4.3.11\n        Type: master\n        Active agents: 1\n",
                "\n    worker1 (10.0.0.2)\n        Version: 4.3.11\n        Type: worker\n        Active agents: 2\n",
                "        Status:\n            Last keep Alive:\n                Last received: 2024-05-31T16:08:02.511634Z.\n",
                "            Integrity check:\n",
                "                Last integrity check: 0.059s (2024-05-31T16:08:25.104512Z - 2024-05-31T16:08:25.163807Z).\n",
                "                Permission to check integrity: True.\n",
                "            Integrity sync:\n",
                "                Last integrity synchronization: 0.229s (2024-05-31T16:03:14.552019Z - 2024-05-31T16:03:14.781233Z).\n",
                "                Synchronized files: Shared: 2 | Missing: 1 | Extra: 0 | Extra valid: 0.\n",
                "                Extra valid files correctly updated in master: 0.\n",
                "            Agents-info:\n",
                "                Last synchronization: 0.025s (2024-05-31T16:08:31.018244Z - 2024-05-31T16:08:31.042871Z).\n",
                "                Number of synchronized chunks: 1.\n",
                "                Permission to synchronize agent-info: True.\n",
                "\n",
            )
        );
    }
}
