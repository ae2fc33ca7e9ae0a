//! The master's side of the agent-info jobs: a worker's report applied to this node's database,
//! less its stale records, in the shape of the dialect (one POST, or `sync-agent-info-set` commands
//! that each fit wazuh-db's limit).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::{excerpt, pack, record_id, Kind, MEMBERS, SET_COMMAND, SYNC_PATH};
use crate::config::Dialect;
use crate::pool::jobs::agents::rows::{lookup, parse_array};
use crate::pool::jobs::agents::AgentEnv;
use crate::proto::jobs::AgentOutcome;
use crate::store::{WazuhDb, WdbStatus};

/// Ids per stale-check lookup: rows of `id, node_name, last_keepalive` are ~100 bytes.
const LOOKUP_IDS: usize = 256;
/// Ids per lookup of whole rows (to complete 4.3 partial records): rows may hold kilobytes.
const COMPLETE_IDS: usize = 16;
/// What the stale-report rule needs of the master's row.
pub(super) const STALE_COLUMNS: &str = "id, node_name, last_keepalive";
/// The columns a `sync-agent-info-set` record overwrites, and the id.
const FULL_COLUMNS: &str = "id, name, ip, os_name, os_version, os_major, os_minor, os_codename, os_build, \
     os_platform, os_uname, os_arch, version, config_sum, merged_sum, manager_host, node_name, last_keepalive, \
     connection_status, disconnection_time, group_config_status, status_code";

/// Master: applies a worker's agent-info string.
pub(in crate::pool::jobs::agents) fn apply(
    env: &AgentEnv,
    worker: &str,
    payload: &[u8],
) -> Result<AgentOutcome, String> {
    let envelope: Value = match serde_json::from_slice(payload) {
        Ok(envelope) => envelope,
        Err(e) => {
            return Ok(AgentOutcome::InfoUnreadable {
                reason: e.to_string(),
            })
        }
    };
    let Value::Object(mut envelope) = envelope else {
        return Ok(Report::failed("the agent-info string is not a JSON object"));
    };
    let db = env.db.as_ref();
    Ok(match (env.dialect, envelope.remove("chunks")) {
        (Dialect::V4_14, Some(Value::Object(chunks))) => apply_http(db, worker, chunks),
        (Dialect::V4_3, Some(Value::Array(chunks))) => apply_socket(db, worker, chunks),
        (Dialect::V4_14, _) => Report::failed("'chunks' is not a JSON object"),
        (Dialect::V4_3, _) => Report::failed("'chunks' is not a list"),
    })
}

/// What an application reports besides the chunks it updated.
#[derive(Default)]
struct Report {
    updated_chunks: usize,
    error_messages: Vec<String>,
    stale_skipped: usize,
    /// Records that name no agent (no integer `id`): nothing they say can be applied.
    without_id: usize,
    failure: Option<String>,
    warnings: Vec<String>,
}

impl Report {
    fn failed(reason: &str) -> AgentOutcome {
        Report {
            failure: Some(reason.to_owned()),
            ..Report::default()
        }
        .outcome()
    }

    fn outcome(mut self) -> AgentOutcome {
        if self.without_id > 0 {
            self.warnings.push(format!(
                "Skipped {} agent records without an agent id.",
                self.without_id
            ));
        }
        AgentOutcome::InfoApplied {
            updated_chunks: self.updated_chunks,
            error_messages: self.error_messages,
            stale_skipped: self.stale_skipped,
            failure: self.failure,
            warnings: self.warnings,
        }
    }

    /// The master's current rows for `ids` (stale check), or `None` after a warning: then the
    /// report applies unfiltered rather than being lost.
    fn current(
        &mut self,
        db: &dyn WazuhDb,
        worker: &str,
        ids: Vec<i64>,
    ) -> Option<HashMap<i64, Map<String, Value>>> {
        match lookup(db, ids, STALE_COLUMNS, LOOKUP_IDS) {
            Ok(rows) => Some(rows),
            Err(e) => {
                self.warnings.push(format!(
                    "Could not check the agent-info of {worker} against this node's agents, applying it unfiltered: {e}"
                ));
                None
            }
        }
    }

    /// Drops the stale records of `list`.
    fn filter(
        &mut self,
        worker: &str,
        current: Option<&HashMap<i64, Map<String, Value>>>,
        list: &mut Vec<Value>,
        kind_of: impl Fn(&Value) -> Kind,
    ) {
        let before = list.len();
        list.retain(|r| record_id(r).is_some());
        self.without_id += before - list.len();
        let Some(current) = current else {
            return;
        };
        let before = list.len();
        list.retain(|r| {
            let row = record_id(r).and_then(|id| current.get(&id));
            !is_stale(worker, kind_of(r), r, row)
        });
        self.stale_skipped += before - list.len();
    }
}

/// The stale-report rule: an agent the master knows on another node `N` (not empty, not
/// `unknown`) only changes on `worker`'s word if the record proves the agent came back: a full
/// record at least as recent as the master's keepalive. Keepalive and status records name no node
/// and prove nothing, so they are skipped; otherwise a worker that lost an agent (it moved to
/// another node) would keep overwriting its status with what it last saw.
fn is_stale(
    worker: &str,
    kind: Kind,
    record: &Value,
    current: Option<&Map<String, Value>>,
) -> bool {
    let Some(current) = current else {
        return false;
    };
    let node = current
        .get("node_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node.is_empty() || node == "unknown" || node == worker {
        return false;
    }
    match kind {
        Kind::Full => {
            let ours = current.get("last_keepalive").and_then(Value::as_i64);
            let theirs = record
                .get("last_keepalive")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            ours.is_some_and(|ours| theirs < ours)
        }
        Kind::Keepalive | Kind::Status => true,
    }
}

/// 4.14: the filtered object, POSTed once (wazuh-db applies it in one transaction).
fn apply_http(db: &dyn WazuhDb, worker: &str, mut chunks: Map<String, Value>) -> AgentOutcome {
    let mut report = Report::default();
    let ids: Vec<i64> = MEMBERS
        .iter()
        .filter_map(|(name, _)| chunks.get(*name).and_then(Value::as_array))
        .flatten()
        .filter_map(record_id)
        .collect();
    let current = report.current(db, worker, ids);
    for (name, kind) in MEMBERS {
        if let Some(Value::Array(list)) = chunks.get_mut(name) {
            report.filter(worker, current.as_ref(), list, |_| kind);
        }
    }
    drop(current);
    chunks.retain(|_, v| !matches!(v, Value::Array(list) if list.is_empty()));
    let members = chunks.len();
    if members == 0 {
        return report.outcome();
    }
    let body = Value::Object(chunks).to_string();
    match db.http("POST", SYNC_PATH, body.as_bytes()) {
        Ok((status, _)) if (200..300).contains(&status) => report.updated_chunks = members,
        Ok((_, answer)) => {
            report.failure = Some(format!(
                "Error 2012 - Invalid wazuh-db HTTP request: {}",
                excerpt(&answer)
            ))
        }
        Err(e) => report.failure = Some(format!("Error 2013 - Error sending HTTP request: {e}")),
    }
    report.outcome()
}

/// One chunk of a 4.3 report: its records, or a text that is not a JSON array (sent as is, so
/// wazuh-db answers with the error stock masters report).
enum Chunk {
    Records(Vec<Value>),
    Raw(String),
}

/// 4.3: `sync-agent-info-set <chunk>` per chunk, filtered, partial records completed, split where a
/// chunk no longer fits one command.
fn apply_socket(db: &dyn WazuhDb, worker: &str, chunks: Vec<Value>) -> AgentOutcome {
    let mut report = Report::default();
    let mut chunks: Vec<Chunk> = chunks
        .into_iter()
        .map(|chunk| match chunk {
            Value::String(text) => match parse_array(&text) {
                Some(records) => Chunk::Records(records),
                None => Chunk::Raw(text),
            },
            other => Chunk::Raw(other.to_string()),
        })
        .collect();
    let ids_of = |chunks: &[Chunk]| -> Vec<i64> {
        chunks
            .iter()
            .filter_map(|c| match c {
                Chunk::Records(records) => Some(records),
                Chunk::Raw(_) => None,
            })
            .flatten()
            .filter_map(record_id)
            .collect()
    };
    let current = report.current(db, worker, ids_of(&chunks));
    for chunk in &mut chunks {
        if let Chunk::Records(list) = chunk {
            report.filter(worker, current.as_ref(), list, Kind::of_record);
        }
    }
    drop(current);
    complete_partials(db, &mut chunks, &mut report);
    for chunk in chunks {
        let commands = match chunk {
            Chunk::Records(records) if records.is_empty() => continue,
            Chunk::Records(records) => pack(records.iter().map(Value::to_string)),
            Chunk::Raw(text) => vec![text],
        };
        let mut all_ok = true;
        for text in commands {
            match db.query(&format!("{SET_COMMAND} {text}")) {
                Ok(reply) if reply.status == WdbStatus::Ok => {}
                Ok(reply) => {
                    all_ok = false;
                    report.error_messages.push(format!(
                        "Error 2003 - Error in wazuhdb request: {}",
                        reply.payload
                    ));
                }
                Err(e) => {
                    all_ok = false;
                    report
                        .error_messages
                        .push(format!("Error 2005 - Could not connect to wdb socket: {e}"));
                }
            }
        }
        if all_ok {
            report.updated_chunks += 1;
        }
    }
    report.outcome()
}

/// `sync-agent-info-set` overwrites every column of a record, so a keepalive or status record
/// (what 4.4–4.12 wazuh-db and the embedded database page out besides full ones) would blank the
/// rest of the agent. Each is completed from the master's own row; records of agents the master
/// does not have are dropped (the update would not touch anything). If the rows cannot be read the
/// records go as they are and wazuh-db reports them.
fn complete_partials(db: &dyn WazuhDb, chunks: &mut [Chunk], report: &mut Report) {
    let ids: Vec<i64> = chunks
        .iter()
        .filter_map(|c| match c {
            Chunk::Records(records) => Some(records),
            Chunk::Raw(_) => None,
        })
        .flatten()
        .filter(|r| Kind::of_record(r) != Kind::Full)
        .filter_map(record_id)
        .collect();
    if ids.is_empty() {
        return;
    }
    let rows = match lookup(db, ids, FULL_COLUMNS, COMPLETE_IDS) {
        Ok(rows) => rows,
        Err(e) => {
            report.warnings.push(format!(
                "Could not read this node's agents to complete keepalive and status records, sending them as they are: {e}"
            ));
            return;
        }
    };
    for chunk in chunks.iter_mut() {
        let Chunk::Records(records) = chunk else {
            continue;
        };
        let taken = std::mem::take(records);
        *records = taken
            .into_iter()
            .filter_map(|record| match Kind::of_record(&record) {
                Kind::Full => Some(record),
                kind => {
                    let row = rows.get(&record_id(&record)?)?;
                    Some(complete(row, kind, record))
                }
            })
            .collect();
    }
}

/// The master's row overlaid with what the record says; a keepalive also means the agent is
/// connected, as wazuh-db's own keepalive update records it.
fn complete(row: &Map<String, Value>, kind: Kind, record: Value) -> Value {
    let mut full = row.clone();
    if kind == Kind::Keepalive {
        full.insert("connection_status".into(), json!("active"));
        full.insert("disconnection_time".into(), json!(0));
        full.insert("status_code".into(), json!(0));
    }
    if let Value::Object(fields) = record {
        full.extend(fields);
    }
    Value::Object(full)
}
