//! Agent-info jobs (PROTOCOL.md §4.2, §6): the worker's read of its pending agents here, the
//! master's application of a worker's report, with the stale-report rule, in [`master`].
//!
//! Only commands a real wazuh-db also answers are used, within its socket limits: reads page with
//! `due`, lookups go in batches that halve when a reply does not fit, and records are packed into
//! `sync-agent-info-set` commands that stay under the command limit.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::rows::parse_array;
use super::AgentEnv;
use crate::config::Dialect;
use crate::proto::jobs::AgentOutcome;
use crate::store::{WazuhDb, WdbStatus, MAX_PAYLOAD};
use crate::sync::pyjson;

mod master;
pub(super) mod pending;

pub(super) use master::apply;

const SYNC_PATH: &str = "/v1/agents/sync";
const SET_COMMAND: &str = "global sync-agent-info-set";
/// 4.3.11 sends the trailing space and nothing else.
const GET_COMMAND: &str = "global sync-agent-info-get ";
/// The lists of the HTTP shape, in the order wazuh-db applies them, and their kinds.
const MEMBERS: [(&str, Kind); 3] = [
    ("syncreq", Kind::Full),
    ("syncreq_keepalive", Kind::Keepalive),
    ("syncreq_status", Kind::Status),
];
/// Pages of one 4.3 read (each at most 64 KiB): far beyond any deployment's pending agents in one
/// period; whatever is left stays pending for the next round.
const PAGES_MAX: usize = 4096;
/// A `sync-agent-info-set` command must fit wazuh-db's buffer, like every reply it sends.
const COMMAND_BYTES_MAX: usize = MAX_PAYLOAD;
const NO_SYNC_INFO: &str =
    "Error 2017 - Could not retrieve agents synchronization information from wazuh-db";
const NO_DATA: &str = "Error 2007 - Error retrieving data from Wazuh DB";

/// What an agent record carries: everything (`syncreq`), a keepalive, or a connection status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Full,
    Keepalive,
    Status,
}

impl Kind {
    /// The kind of a 4.3-shape record: full ones always name the agent, status ones carry the
    /// connection status, keepalive ones neither.
    fn of_record(record: &Value) -> Kind {
        if record.get("name").is_some() {
            Kind::Full
        } else if record.get("connection_status").is_some() {
            Kind::Status
        } else {
            Kind::Keepalive
        }
    }
}

fn record_id(record: &Value) -> Option<i64> {
    record.get("id").and_then(Value::as_i64)
}

/// Worker: reads the pending agents and builds the string `syn_a_w_m` carries, `carry` first.
pub(super) fn read(env: &AgentEnv, carry: Option<&[u8]>) -> Result<AgentOutcome, String> {
    match env.dialect {
        Dialect::V4_14 => read_http(env.db.as_ref(), carry),
        Dialect::V4_3 => read_socket(env.db.as_ref(), carry),
    }
}

/// 4.14: `GET /v1/agents/sync`, wrapped unchanged (less what `carry` supersedes) in the envelope.
fn read_http(db: &dyn WazuhDb, carry: Option<&[u8]>) -> Result<AgentOutcome, String> {
    let (status, body) = db
        .http("GET", SYNC_PATH, b"")
        .map_err(|e| format!("{NO_SYNC_INFO}: Error 2013 - Error sending HTTP request: {e}"))?;
    if !(200..300).contains(&status) {
        return Err(format!(
            "{NO_SYNC_INFO}: Error 2012 - Invalid wazuh-db HTTP request: {}",
            excerpt(&body)
        ));
    }
    let fresh = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(fresh)) => fresh,
        Ok(_) => return Err(format!("{NO_SYNC_INFO}: the answer is not a JSON object")),
        Err(e) => return Err(format!("{NO_SYNC_INFO}: {e}")),
    };
    let chunks = match carry.and_then(carried_object) {
        Some(old) => merge_http(old, fresh),
        None => fresh,
    };
    let agents: usize = MEMBERS
        .iter()
        .map(|(name, _)| {
            chunks
                .get(*name)
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        })
        .sum();
    if agents == 0 {
        return Ok(AgentOutcome::InfoRead {
            payload: None,
            agents: 0,
            error: None,
        });
    }
    let envelope = json!({"set_data_command": SET_COMMAND, "payload": {}, "chunks": chunks});
    Ok(AgentOutcome::InfoRead {
        payload: Some(Bytes::from(pyjson::to_vec(&envelope))),
        agents,
        error: None,
    })
}

/// The `chunks` object of a 4.14 string we built earlier.
fn carried_object(carry: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(carry)
        .ok()?
        .get_mut("chunks")?
        .take()
    {
        Value::Object(chunks) => Some(chunks),
        _ => None,
    }
}

/// The kinds of record each agent has in a newer read.
#[derive(Default, Clone, Copy)]
struct Newer {
    full: bool,
    keepalive: bool,
    status: bool,
}

impl Newer {
    fn note(map: &mut HashMap<i64, Newer>, kind: Kind, record: &Value) {
        let Some(id) = record_id(record) else {
            return;
        };
        let newer = map.entry(id).or_default();
        match kind {
            Kind::Full => newer.full = true,
            Kind::Keepalive => newer.keepalive = true,
            Kind::Status => newer.status = true,
        }
    }

    /// Whether an older record of `kind` adds nothing once the newer ones are applied after it.
    /// Records apply full, then keepalive, then status (4.14), or in list order (4.3): an older
    /// keepalive or status applied after a newer full record would undo it, so those go; an older
    /// full record is kept under newer partial ones, which complete it.
    fn supersede(map: &HashMap<i64, Newer>, kind: Kind, record: &Value) -> bool {
        let Some(newer) = record_id(record).and_then(|id| map.get(&id)) else {
            return false;
        };
        match kind {
            Kind::Full => newer.full,
            Kind::Keepalive => newer.full || newer.keepalive,
            Kind::Status => newer.full || newer.keepalive || newer.status,
        }
    }
}

/// Older (unconfirmed) lists first, less their superseded records, then the fresh ones. Each agent
/// keeps at most one record per kind, so retries never grow beyond the agents themselves.
fn merge_http(mut old: Map<String, Value>, mut fresh: Map<String, Value>) -> Map<String, Value> {
    let mut newer = HashMap::new();
    for (name, kind) in MEMBERS {
        for record in fresh
            .get(name)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            Newer::note(&mut newer, kind, record);
        }
    }
    let mut merged = Map::new();
    for (name, kind) in MEMBERS {
        let mut list: Vec<Value> = take_list(&mut old, name)
            .into_iter()
            .filter(|r| !Newer::supersede(&newer, kind, r))
            .collect();
        list.extend(take_list(&mut fresh, name));
        if !list.is_empty() {
            merged.insert(name.to_owned(), Value::Array(list));
        }
    }
    // Members wazuh-db may add one day travel along, the newer value winning.
    for (name, value) in old {
        if !fresh.contains_key(&name) {
            merged.insert(name, value);
        }
    }
    merged.extend(fresh);
    merged
}

fn take_list(map: &mut Map<String, Value>, name: &str) -> Vec<Value> {
    match map.remove(name) {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    }
}

/// 4.3: `sync-agent-info-get` repeated while `due`; each page (a JSON array) is one chunk.
fn read_socket(db: &dyn WazuhDb, carry: Option<&[u8]>) -> Result<AgentOutcome, String> {
    let mut pages: Vec<String> = Vec::new();
    let mut error = None;
    for _ in 0..PAGES_MAX {
        let reply = match db.query(GET_COMMAND) {
            Ok(reply) => reply,
            Err(e) => {
                error = Some(format!("{NO_DATA}: {e}"));
                break;
            }
        };
        match reply.status {
            WdbStatus::Ok | WdbStatus::Due => {
                if !reply.payload.is_empty() && reply.payload != "[]" {
                    pages.push(reply.payload);
                }
                if reply.status == WdbStatus::Ok {
                    break;
                }
            }
            _ => {
                error = Some(format!("{NO_DATA}: {}", reply.payload));
                break;
            }
        }
    }
    // Pages already read are marked synced: they are sent even if a later page failed.
    if let (Some(e), true) = (&error, pages.is_empty()) {
        return Err(e.clone());
    }
    let mut newer = HashMap::new();
    let mut agents = 0;
    for page in &pages {
        for record in parse_array(page).into_iter().flatten() {
            Newer::note(&mut newer, Kind::of_record(&record), &record);
            agents += 1;
        }
    }
    let mut chunks: Vec<Value> = Vec::new();
    if let Some(old) = carry.and_then(carried_list) {
        let kept: Vec<String> = old
            .iter()
            .filter_map(|chunk| chunk.as_str().and_then(parse_array))
            .flatten()
            .filter(|r| !Newer::supersede(&newer, Kind::of_record(r), r))
            .map(|r| r.to_string())
            .collect();
        agents += kept.len();
        chunks.extend(pack(kept).into_iter().map(Value::String));
    }
    chunks.extend(pages.into_iter().map(Value::String));
    if chunks.is_empty() {
        return Ok(AgentOutcome::InfoRead {
            payload: None,
            agents: 0,
            error,
        });
    }
    let envelope = json!({"set_data_command": SET_COMMAND, "chunks": chunks});
    Ok(AgentOutcome::InfoRead {
        payload: Some(Bytes::from(pyjson::to_vec(&envelope))),
        agents,
        error,
    })
}

/// The `chunks` list of a 4.3 string we built earlier.
fn carried_list(carry: &[u8]) -> Option<Vec<Value>> {
    match serde_json::from_slice::<Value>(carry)
        .ok()?
        .get_mut("chunks")?
        .take()
    {
        Value::Array(chunks) => Some(chunks),
        _ => None,
    }
}

/// Packs records (compact JSON texts) into arrays whose `sync-agent-info-set` command fits the
/// command limit; a record too large on its own goes alone (wazuh-db then refuses that chunk).
fn pack(records: impl IntoIterator<Item = String>) -> Vec<String> {
    let room = COMMAND_BYTES_MAX - SET_COMMAND.len() - 1;
    let mut chunks = Vec::new();
    let mut current = String::from("[");
    for record in records {
        if current.len() > 1 && current.len() + record.len() + 2 > room {
            current.push(']');
            chunks.push(std::mem::replace(&mut current, String::from("[")));
        }
        if current.len() > 1 {
            current.push(',');
        }
        current.push_str(&record);
    }
    if current.len() > 1 {
        current.push(']');
        chunks.push(current);
    }
    chunks
}

/// The start of an answer, for error messages.
fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests;
