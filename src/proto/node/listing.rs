//! Answers of `get_nodes` and `get_health` (PROTOCOL.md §7.3–§7.4), computed from the master's view.

use std::time::SystemTime;

use serde_json::{json, Map, Value};

use super::agent_info::AgentInfoHealth;
use super::groups::GroupsHealth;
use super::master_sync::SyncHealth;
use super::wazuh_date;
use crate::config::Dialect;
use crate::proto::wazuh_error::WazuhError;

/// One node as the master lists it.
#[derive(Debug, Clone)]
pub(super) struct NodeEntry {
    pub name: String,
    pub node_type: &'static str,
    pub version: String,
    pub ip: String,
    /// Agents reported active on this node (0 until counted).
    pub active_agents: u64,
    /// Present for workers.
    pub worker: Option<WorkerStatus>,
}

/// What the master knows of a connected worker's activity.
#[derive(Debug, Clone)]
pub(super) struct WorkerStatus {
    pub last_keep_alive: SystemTime,
    pub sync: SyncHealth,
    pub groups: GroupsHealth,
    pub agent_info: AgentInfoHealth,
}

fn date(at: Option<SystemTime>) -> String {
    at.map_or_else(|| "n/a".to_string(), wazuh_date)
}

const FIELDS: [&str; 4] = ["name", "type", "version", "ip"];

fn item(entry: &NodeEntry) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(entry.name));
    m.insert("type".into(), json!(entry.node_type));
    m.insert("version".into(), json!(entry.version));
    m.insert("ip".into(), json!(entry.ip));
    m
}

fn names_filter(value: Option<&Value>) -> Option<Vec<String>> {
    match value {
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(a)) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        _ => None,
    }
}

/// `get_nodes`: the master first, then workers in connection order, filtered, sorted and paged.
pub(super) fn nodes(entries: &[NodeEntry], args: &[u8]) -> Result<Value, WazuhError> {
    let args: Value = if args.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(args).map_err(|e| WazuhError::with_extra(3036, e.to_string()))?
    };
    let filter_type = args
        .get("filter_type")
        .and_then(Value::as_str)
        .unwrap_or("all");
    if !["all", "master", "worker"].contains(&filter_type) {
        return Err(WazuhError::with_extra(
            1728,
            format!("filter_type '{filter_type}'"),
        ));
    }
    let mut selected: Vec<&NodeEntry> = entries
        .iter()
        .filter(|e| filter_type == "all" || e.node_type == filter_type)
        .collect();
    if let Some(names) = names_filter(args.get("filter_node")) {
        if let Some(missing) = names
            .iter()
            .find(|n| !entries.iter().any(|e| &e.name == *n))
        {
            return Err(WazuhError::with_extra(
                1730,
                format!("node '{missing}' is not connected"),
            ));
        }
        selected.retain(|e| names.contains(&e.name));
    }
    let mut items: Vec<Map<String, Value>> = selected.into_iter().map(item).collect();
    if let Some(search) = args.get("search").filter(|v| !v.is_null()) {
        let needle = search
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_lowercase();
        let negation = search
            .get("negation")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        items.retain(|m| {
            let hit = m.values().any(|v| {
                v.as_str()
                    .is_some_and(|s| s.to_lowercase().contains(&needle))
            });
            hit != negation
        });
    }
    if let Some(sort) = args.get("sort").filter(|v| !v.is_null()) {
        let fields: Vec<String> = sort
            .get("fields")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let descending = sort.get("order").and_then(Value::as_str) == Some("desc");
        items.sort_by(|a, b| {
            let key = |m: &Map<String, Value>| -> Vec<String> {
                fields
                    .iter()
                    .map(|f| m.get(f).and_then(Value::as_str).unwrap_or("").to_string())
                    .collect()
            };
            let ordering = key(a).cmp(&key(b));
            if descending {
                ordering.reverse()
            } else {
                ordering
            }
        });
    }
    let total = items.len();
    let offset = args.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(500) as usize;
    let mut page: Vec<Map<String, Value>> = items.into_iter().skip(offset).take(limit).collect();
    if let Some(select) = args.get("select").and_then(Value::as_array) {
        let wanted: Vec<&str> = select.iter().filter_map(Value::as_str).collect();
        if let Some(bad) = wanted.iter().find(|f| !FIELDS.contains(f)) {
            return Err(WazuhError::with_extra(
                1724,
                format!("select field '{bad}'"),
            ));
        }
        for m in page.iter_mut() {
            m.retain(|k, _| wanted.contains(&k.as_str()));
        }
    }
    Ok(json!({"items": page, "totalItems": total}))
}

/// `get_health`: `null` selects every node, a list selects by name, anything else every worker.
/// The worker records hold what the dialect's stock master reports (see [`worker_status`]).
pub(super) fn health(
    entries: &[NodeEntry],
    filter: &[u8],
    dialect: Dialect,
) -> Result<Value, WazuhError> {
    let filter: Value = if filter.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(filter).map_err(|e| WazuhError::with_extra(3036, e.to_string()))?
    };
    let included = |e: &NodeEntry| match &filter {
        Value::Null => true,
        Value::Array(names) => names.iter().any(|n| n.as_str() == Some(&e.name)),
        _ => e.worker.is_some(),
    };
    let mut nodes = Map::new();
    let mut connected = 0;
    for entry in entries.iter().filter(|e| included(e)) {
        let mut node = Map::new();
        node.insert(
            "info".into(),
            json!({"name": entry.name, "type": entry.node_type, "version": entry.version, "ip": entry.ip,
                   "n_active_agents": entry.active_agents}),
        );
        if let Some(worker) = &entry.worker {
            connected += 1;
            node.insert("status".into(), worker_status(worker, dialect));
        }
        nodes.insert(entry.name.clone(), Value::Object(node));
    }
    Ok(json!({"n_connected_nodes": connected, "nodes": nodes}))
}

/// A worker's `status` record as the dialect's stock master writes it: 4.3 has no agent-groups
/// tasks; 4.14 counts the files of the last sync by its three groups once a sync has run (before,
/// the four counters it starts with).
fn worker_status(worker: &WorkerStatus, dialect: Dialect) -> Value {
    let s = &worker.sync;
    let g = &worker.groups;
    let total_files = match dialect {
        Dialect::V4_14 if s.sync_start.is_some() => {
            json!({"missing": s.counts.missing, "extra": s.counts.extra, "shared": s.counts.shared})
        }
        _ => json!({"missing": s.counts.missing, "shared": s.counts.shared,
                    "extra": s.counts.extra, "extra_valid": s.counts.extra_valid}),
    };
    let mut status = json!({
        "sync_integrity_free": s.free,
        "last_check_integrity": {"date_start_master": date(s.check_start), "date_end_master": date(s.check_end)},
        "last_sync_integrity": {"date_start_master": date(s.sync_start), "date_end_master": date(s.sync_end),
                                "total_extra_valid": s.counts.extra_valid,
                                "total_files": total_files},
        "sync_agent_info_free": !worker.agent_info.busy,
        "last_sync_agentinfo": {"date_start_master": date(worker.agent_info.start),
                                "date_end_master": date(worker.agent_info.end),
                                "n_synced_chunks": worker.agent_info.synced_chunks},
        "last_keep_alive": wazuh_date(worker.last_keep_alive),
    });
    if dialect == Dialect::V4_14 {
        status["last_sync_agentgroup"] = json!({"date_start": date(g.periodic.date_start),
            "date_end": date(g.periodic.date_end), "n_synced_chunks": g.periodic.n_synced_chunks});
        status["last_sync_full_agentgroup"] = json!({"date_start": date(g.full.date_start),
            "date_end": date(g.full.date_end), "n_synced_chunks": g.full.n_synced_chunks});
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<NodeEntry> {
        let worker = |name: &str, ip: &str| NodeEntry {
            name: name.into(),
            node_type: "worker",
            version: "4.3.11".into(),
            ip: ip.into(),
            active_agents: 0,
            worker: Some(WorkerStatus {
                last_keep_alive: SystemTime::UNIX_EPOCH,
                sync: SyncHealth::default(),
                groups: GroupsHealth::default(),
                agent_info: AgentInfoHealth::default(),
            }),
        };
        vec![
            NodeEntry {
                name: "master".into(),
                node_type: "master",
                version: "4.3.11".into(),
                ip: "10.0.0.1".into(),
                active_agents: 7,
                worker: None,
            },
            worker("worker2", "10.0.0.3"),
            worker("worker1", "10.0.0.2"),
        ]
    }

    #[test]
    fn nodes_default_order_and_filters() {
        let all = nodes(&entries(), b"").unwrap();
        assert_eq!(all["totalItems"], 3);
        assert_eq!(
            all["items"][0],
            json!({"name": "master", "type": "master", "version": "4.3.11", "ip": "10.0.0.1"})
        );
        assert_eq!(all["items"][1]["name"], "worker2");
        let one = nodes(&entries(), br#"{"filter_node": ["worker1"]}"#).unwrap();
        assert_eq!(one["items"].as_array().unwrap().len(), 1);
        let sorted = nodes(&entries(), br#"{"filter_type": "worker", "sort": {"fields": ["name"], "order": "asc"}, "select": ["name"]}"#).unwrap();
        assert_eq!(
            sorted["items"],
            json!([{"name": "worker1"}, {"name": "worker2"}])
        );
        assert_eq!(
            nodes(&entries(), br#"{"filter_node": "nope"}"#)
                .unwrap_err()
                .code,
            1730
        );
        assert_eq!(
            nodes(&entries(), br#"{"select": ["bogus"]}"#)
                .unwrap_err()
                .code,
            1724
        );
    }

    #[test]
    fn health_filters() {
        let all = health(&entries(), b"null", Dialect::V4_14).unwrap();
        assert_eq!(all["n_connected_nodes"], 2);
        assert!(all["nodes"]["master"].get("status").is_none());
        assert_eq!(all["nodes"]["master"]["info"]["n_active_agents"], 7);
        assert_eq!(all["nodes"]["worker1"]["info"]["n_active_agents"], 0);
        assert_eq!(
            all["nodes"]["worker1"]["status"]["last_keep_alive"],
            "1970-01-01T00:00:00.000000Z"
        );
        let workers_only = health(&entries(), b"{}", Dialect::V4_14).unwrap();
        assert!(workers_only["nodes"].get("master").is_none());
        let one = health(&entries(), br#"["worker2"]"#, Dialect::V4_14).unwrap();
        assert_eq!(one["nodes"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn health_records_follow_the_dialect() {
        let v43 = health(&entries(), b"null", Dialect::V4_3).unwrap();
        let status = &v43["nodes"]["worker1"]["status"];
        assert!(status.get("last_sync_agentgroup").is_none());
        assert!(status.get("last_sync_full_agentgroup").is_none());
        assert_eq!(
            status["last_sync_integrity"]["total_files"]["extra_valid"],
            0
        );
        let v414 = health(&entries(), b"null", Dialect::V4_14).unwrap();
        let status = &v414["nodes"]["worker1"]["status"];
        assert_eq!(status["last_sync_agentgroup"]["date_end"], "n/a");
        assert_eq!(
            status["last_sync_integrity"]["total_files"]["extra_valid"], 0,
            "before a sync"
        );
    }
}
