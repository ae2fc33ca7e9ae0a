//! Agent-groups jobs (PROTOCOL.md §4.3, §6.1): the master reads group changes (or every agent) from
//! its database and builds each worker's string, keeping back the agents whose key the worker does
//! not hold yet; the worker stores what it receives and compares the global hashes.
//!
//! Everything here must also work against a real wazuh-db socket: replies are at most
//! [`MAX_PAYLOAD`] bytes (longer answers are paged with `due`) and a command must stay below
//! 65,536 bytes, so chunks are sized to fit and oversized ones are split.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::AgentEnv;
use crate::proto::agent_jobs::{GroupRecord, GroupsHash, GROUPS_HELD_MAX};
use crate::proto::jobs::AgentOutcome;
use crate::store::{WdbReply, WdbStatus, MAX_PAYLOAD};

/// Pages one round may read; a round that stops there leaves the rest for the next one (with
/// `set_synced` the unread agents stay pending), so the bound loses nothing.
const PAGES_MAX: usize = 16_384;

/// Largest `data` array in a chunk we build: the worker's `set-agent-groups` command around it
/// stays below wazuh-db's limits.
const CHUNK_DATA_BYTES_MAX: usize = 60_000;

/// Largest command the worker sends to wazuh-db (its reply buffer size, well below the 65,536-byte
/// command limit).
const COMMAND_BYTES_MAX: usize = MAX_PAYLOAD;

/// The one write command a master may ask a worker to run with what it sends.
const SET_COMMAND: &str = "global set-agent-groups";

/// wazuh-db's answer when an agent vanished between the master's read and the worker's write;
/// stock workers skip it silently, and so do we.
const FOREIGN_KEY_ERROR: &str =
    "Cannot execute Global database query; FOREIGN KEY constraint failed";

/// Master: the periodic read of changed agents (marked synced as they are read) and the global
/// hash, or (`full`) every agent after recalculating the hashes.
pub(super) fn collect(env: &AgentEnv, full: bool) -> Result<AgentOutcome, String> {
    let mut records = Vec::new();
    let mut warnings = Vec::new();
    let mut hash = None;
    let result = if full {
        if let Some(w) = recalculate(env) {
            warnings.push(w);
        }
        read_all(env, &mut records)
    } else {
        read_changed(env, &mut records, &mut hash)
    };
    let error = result.err();
    let read = records.len();
    let records: Vec<GroupRecord> = records.into_iter().filter_map(Record::checked).collect();
    let skipped = read - records.len();
    if skipped > 0 {
        warnings.push(format!(
            "{skipped} agent-group records without a valid agent id were left out"
        ));
    }
    Ok(AgentOutcome::GroupsCollected {
        records: Arc::new(records),
        hash,
        warnings,
        error,
    })
}

/// `global recalculate-agent-group-hashes`; a failure is only worth a warning.
fn recalculate(env: &AgentEnv) -> Option<String> {
    let reply = env
        .db
        .query("global recalculate-agent-group-hashes")
        .map_err(|e| e.to_string());
    match reply {
        Ok(WdbReply {
            status: WdbStatus::Ok,
            ..
        }) => None,
        Ok(reply) => Some(format!(
            "Error 2007 executing recalculate agent-group hash command: Error retrieving data from Wazuh DB: {}",
            reply.payload
        )),
        Err(e) => Some(format!(
            "Error executing recalculate agent-group hash command: {e}"
        )),
    }
}

/// Repeats the `sync_status` read while wazuh-db answers `due`; the last page carries the hash.
fn read_changed(
    env: &AgentEnv,
    records: &mut Vec<Record>,
    hash: &mut Option<GroupsHash>,
) -> Result<(), String> {
    let command = r#"global sync-agent-groups-get {"condition": "sync_status", "set_synced": true, "get_global_hash": true}"#;
    for _ in 0..PAGES_MAX {
        let (status, page) = query_page(env, command)?;
        let before = records.len();
        *hash = page_records(&page, records)?;
        if status == WdbStatus::Ok {
            return Ok(());
        }
        if records.len() == before {
            return Err("wazuh-db answered 'due' with no agent to return".into());
        }
    }
    Err(format!(
        "stopped after {PAGES_MAX} pages; the rest waits for the next round"
    ))
}

/// Pages through every agent with `last_id` until wazuh-db answers `ok`.
fn read_all(env: &AgentEnv, records: &mut Vec<Record>) -> Result<(), String> {
    let mut last_id: u64 = 0;
    for _ in 0..PAGES_MAX {
        let command = format!(
            r#"global sync-agent-groups-get {{"condition": "all", "set_synced": false, "get_global_hash": false, "last_id": {last_id}}}"#
        );
        let (status, page) = query_page(env, &command)?;
        let before = records.len();
        page_records(&page, records)?;
        if status == WdbStatus::Ok {
            return Ok(());
        }
        let next = records[before..].last().and_then(|r| r.raw_id);
        match next {
            Some(id) if id > last_id => last_id = id,
            _ => {
                return Err(format!(
                    "wazuh-db answered 'due' without advancing past agent {last_id}"
                ))
            }
        }
    }
    Err(format!("stopped after {PAGES_MAX} pages"))
}

/// One query whose answer is `ok` or `due` with a JSON page.
fn query_page(env: &AgentEnv, command: &str) -> Result<(WdbStatus, Value), String> {
    let reply = env.db.query(command).map_err(|e| e.to_string())?;
    match reply.status {
        WdbStatus::Ok | WdbStatus::Due => {
            let page = serde_json::from_str(&reply.payload).map_err(|e| {
                format!("Error retrieving data from Wazuh DB: invalid JSON page: {e}")
            })?;
            Ok((reply.status, page))
        }
        _ => Err(format!(
            "Error 2007 - Error retrieving data from Wazuh DB: {}",
            reply.to_text()
        )),
    }
}

/// A record as read, before ids are checked.
struct Record {
    raw_id: Option<u64>,
    json: Bytes,
}

/// Appends the agents of a page `[{"data":[...], "hash": ...}]`; returns the hash of its last
/// element when it has one.
fn page_records(page: &Value, records: &mut Vec<Record>) -> Result<Option<GroupsHash>, String> {
    let Some(elements) = page.as_array() else {
        return Err("Error retrieving data from Wazuh DB: a page is not a JSON array".into());
    };
    for element in elements {
        let Some(data) = element.get("data").and_then(Value::as_array) else {
            continue;
        };
        for agent in data {
            records.push(Record {
                raw_id: agent.get("id").and_then(Value::as_u64),
                json: Bytes::from(agent.to_string()),
            });
        }
    }
    Ok(elements
        .last()
        .and_then(|e| e.get("hash"))
        .map(|h| h.as_str().map(str::to_string)))
}

impl Record {
    /// The record, if its id is an agent id; one without cannot be matched to a key.
    fn checked(self) -> Option<GroupRecord> {
        let id = u32::try_from(self.raw_id?).ok()?;
        Some(GroupRecord {
            id,
            json: self.json,
        })
    }
}

/// Master: one worker's envelope. See [`crate::proto::jobs::AgentJob::GroupsEnvelope`].
pub(super) fn envelope(
    pending: &[GroupRecord],
    rounds: &[Arc<Vec<GroupRecord>>],
    keys: &BTreeSet<u32>,
    hash: Option<&GroupsHash>,
) -> Result<AgentOutcome, String> {
    let mut latest: BTreeMap<u32, &Bytes> = BTreeMap::new();
    for record in pending.iter().chain(rounds.iter().flat_map(|r| r.iter())) {
        latest.insert(record.id, &record.json);
    }
    let mut sent = Vec::new();
    let mut held = Vec::new();
    for (id, json) in latest {
        let record = GroupRecord {
            id,
            json: json.clone(),
        };
        if keys.contains(&id) {
            sent.push(record);
        } else {
            held.push(record);
        }
    }
    let overflow = held.len() > GROUPS_HELD_MAX;
    if overflow {
        held = Vec::new();
    }
    let chunks = build_chunks(&sent, hash);
    let payload = (!chunks.is_empty()).then(|| Bytes::from(envelope_text(&chunks)));
    Ok(AgentOutcome::GroupsEnvelope {
        payload,
        chunks: chunks.len(),
        sent: Arc::new(sent),
        held: Arc::new(held),
        overflow,
    })
}

/// Chunks `[{"data":[...]}]` of at most [`CHUNK_DATA_BYTES_MAX`] bytes of records; the last one
/// ends with the hash when there is one (alone when there are no records).
fn build_chunks(records: &[GroupRecord], hash: Option<&GroupsHash>) -> Vec<String> {
    let mut datas: Vec<String> = Vec::new();
    let mut data = String::new();
    for record in records {
        let json = String::from_utf8_lossy(&record.json);
        if !data.is_empty() && data.len() + 1 + json.len() > CHUNK_DATA_BYTES_MAX {
            datas.push(std::mem::take(&mut data));
        }
        if !data.is_empty() {
            data.push(',');
        }
        data.push_str(&json);
    }
    if !data.is_empty() || (datas.is_empty() && hash.is_some()) {
        datas.push(data);
    }
    let last = datas.len().saturating_sub(1);
    datas
        .into_iter()
        .enumerate()
        .map(|(i, data)| match hash {
            Some(h) if i == last => {
                let h = h.as_ref().map_or(Value::Null, |s| Value::from(s.as_str()));
                format!(r#"[{{"data":[{data}],"hash":{h}}}]"#)
            }
            _ => format!(r#"[{{"data":[{data}]}}]"#),
        })
        .collect()
}

/// The string `syn_g_m_w`/`syn_g_m_w_c` references, laid out as stock masters write it.
fn envelope_text(chunks: &[String]) -> String {
    let chunks: Vec<String> = chunks
        .iter()
        .map(|c| Value::from(c.as_str()).to_string())
        .collect();
    format!(
        r#"{{"set_data_command": "{SET_COMMAND}", "payload": {{"mode": "override", "sync_status": "synced"}}, "chunks": [{}]}}"#,
        chunks.join(", ")
    )
}

/// Worker: stores an agent-groups string from the master, then (periodic) compares the master's
/// hash with ours or (full) recalculates the hashes.
pub(super) fn apply(env: &AgentEnv, payload: &[u8], full: bool) -> Result<AgentOutcome, String> {
    let envelope: Value = serde_json::from_slice(payload)
        .map_err(|e| format!("error while trying to load JSON: {e}"))?;
    let command = envelope
        .get("set_data_command")
        .and_then(Value::as_str)
        .unwrap_or(SET_COMMAND);
    if command != SET_COMMAND {
        return Err(format!(
            "error while trying to load JSON: unexpected set_data_command '{command}'"
        ));
    }
    let empty = Map::new();
    let settings = match envelope.get("payload") {
        Some(Value::Object(map)) => map,
        None | Some(Value::Null) => &empty,
        Some(_) => {
            return Err("error while trying to load JSON: 'payload' is not an object".into())
        }
    };
    let Some(chunks) = envelope.get("chunks").and_then(Value::as_array) else {
        return Err("error while trying to load JSON: 'chunks' is not a list".into());
    };
    let prefix = command_prefix(settings);
    let mut updated_chunks = 0;
    let mut error_messages = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        match store_chunk(env, &prefix, chunk) {
            Ok(true) => updated_chunks += 1,
            Ok(false) => {}
            Err(ChunkError::Rejected(messages)) => error_messages.extend(messages),
            Err(ChunkError::Invalid(reason)) => {
                error_messages.push(format!("chunk {}/{}: {reason}", i + 1, chunks.len()))
            }
            Err(ChunkError::Database(e)) => {
                return Err(format!(
                "error processing agent-groups chunks: {e} ({updated_chunks} of {} chunks stored)",
                chunks.len()
            ))
            }
        }
    }
    let mut warnings = Vec::new();
    let checksum_matches = if full {
        warnings.extend(recalculate(env));
        None
    } else {
        chunks
            .last()
            .and_then(master_hash)
            .map(|theirs| local_hash(env) == Some(theirs))
    };
    Ok(AgentOutcome::GroupsApplied {
        updated_chunks,
        error_messages,
        checksum_matches,
        warnings,
    })
}

/// `global set-agent-groups {<the master's payload keys>,"data":[`: compact, keys in the master's order.
fn command_prefix(settings: &Map<String, Value>) -> String {
    let mut prefix = format!("{SET_COMMAND} {{");
    for (key, value) in settings.iter().filter(|(k, _)| k.as_str() != "data") {
        prefix.push_str(&Value::from(key.as_str()).to_string());
        prefix.push(':');
        prefix.push_str(&value.to_string());
        prefix.push(',');
    }
    prefix.push_str(r#""data":["#);
    prefix
}

enum ChunkError {
    /// wazuh-db refused part of it: `Error 2003 ...` texts.
    Rejected(Vec<String>),
    /// The chunk is not what a master sends.
    Invalid(String),
    /// The database could not be reached.
    Database(String),
}

/// Stores one chunk, in several commands when it is too long for one; `Ok(false)` when wazuh-db
/// refused it only because an agent vanished.
fn store_chunk(env: &AgentEnv, prefix: &str, chunk: &Value) -> Result<bool, ChunkError> {
    let text = chunk
        .as_str()
        .ok_or_else(|| ChunkError::Invalid("not a string".into()))?;
    let parsed: Value =
        serde_json::from_str(text).map_err(|e| ChunkError::Invalid(format!("not JSON: {e}")))?;
    let data = parsed
        .get(0)
        .and_then(|e| e.get("data"))
        .and_then(Value::as_array)
        .ok_or_else(|| ChunkError::Invalid("no 'data' list in its first element".into()))?;
    let room = COMMAND_BYTES_MAX.saturating_sub(prefix.len() + 2);
    let mut commands: Vec<String> = Vec::new();
    let mut body = String::new();
    for agent in data {
        let json = agent.to_string();
        if json.len() > room {
            return Err(ChunkError::Invalid(format!(
                "an agent record of {} bytes does not fit in a wazuh-db command",
                json.len()
            )));
        }
        if !body.is_empty() && body.len() + 1 + json.len() > room {
            commands.push(std::mem::take(&mut body));
        }
        if !body.is_empty() {
            body.push(',');
        }
        body.push_str(&json);
    }
    commands.push(body);
    let mut stored = true;
    let mut rejected = Vec::new();
    for body in commands {
        let reply = env
            .db
            .query(&format!("{prefix}{body}]}}"))
            .map_err(|e| ChunkError::Database(e.to_string()))?;
        match reply.status {
            WdbStatus::Ok => {}
            WdbStatus::Err if reply.payload.contains(FOREIGN_KEY_ERROR) => stored = false,
            WdbStatus::Err => {
                stored = false;
                rejected.push(format!(
                    "Error 2003 - Error in wazuhdb request: {}",
                    reply.payload
                ));
            }
            _ => {
                stored = false;
                rejected.push(format!(
                    "Error 2003 - Error in wazuhdb request: unexpected answer '{}'",
                    reply.to_text()
                ));
            }
        }
    }
    if rejected.is_empty() {
        Ok(stored)
    } else {
        Err(ChunkError::Rejected(rejected))
    }
}

/// The `hash` of the first element of the master's last chunk; `None` when it has none (full sends).
fn master_hash(chunk: &Value) -> Option<GroupsHash> {
    let parsed: Value = serde_json::from_str(chunk.as_str()?).ok()?;
    parsed
        .get(0)?
        .get("hash")
        .map(|h| h.as_str().map(str::to_string))
}

/// This node's global hash; `None` when it cannot be obtained (which counts as a mismatch).
fn local_hash(env: &AgentEnv) -> Option<GroupsHash> {
    let reply = env
        .db
        .query(r#"global sync-agent-groups-get {"get_global_hash": true}"#)
        .ok()?;
    if reply.status != WdbStatus::Ok {
        return None;
    }
    let page: Value = serde_json::from_str(&reply.payload).ok()?;
    page.as_array()?
        .last()?
        .get("hash")
        .map(|h| h.as_str().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Mutex;

    use super::*;
    use crate::config::Dialect;
    use crate::store::embedded::test_support::{add_agent, db, json, ok};
    use crate::store::{EmbeddedDb, StoreError, WazuhDb};

    /// A real embedded database that records every command and can refuse some of them.
    struct Recording {
        db: EmbeddedDb,
        commands: Mutex<Vec<String>>,
        refuse: Vec<(&'static str, &'static str)>,
    }

    impl WazuhDb for Recording {
        fn query(&self, command: &str) -> Result<WdbReply, StoreError> {
            self.commands.lock().unwrap().push(command.to_string());
            if let Some((_, answer)) = self.refuse.iter().find(|(m, _)| command.contains(m)) {
                return Ok(WdbReply::err(*answer));
            }
            let reply = self.db.query(command)?;
            assert!(reply.payload.len() <= MAX_PAYLOAD, "{command}");
            Ok(reply)
        }

        fn http(&self, m: &str, p: &str, b: &[u8]) -> Result<(u16, Vec<u8>), StoreError> {
            self.db.http(m, p, b)
        }
    }

    fn env(
        db: EmbeddedDb,
        refuse: Vec<(&'static str, &'static str)>,
    ) -> (AgentEnv, Arc<Recording>) {
        let recording = Arc::new(Recording {
            db,
            commands: Mutex::default(),
            refuse,
        });
        let env = AgentEnv {
            db: recording.clone(),
            daemons: None,
            dialect: Dialect::V4_14,
            node_name: "node".into(),
            home: PathBuf::from("/nonexistent"),
        };
        (env, recording)
    }

    /// Groups with long names, so that a few hundred agents fill several wazuh-db pages.
    fn groups() -> Vec<String> {
        (0..20)
            .map(|i| format!("group-with-a-rather-long-name-{i:02}"))
            .collect()
    }

    fn master_with_agents(n: i64) -> EmbeddedDb {
        let db = db();
        for g in groups() {
            ok(&db, &format!("global insert-agent-group {g}"));
        }
        let names = groups();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        for id in 1..=n {
            add_agent(&db, id, &format!("agent{id}"), &names[(id as usize) % 5..]);
        }
        db
    }

    fn worker_db() -> EmbeddedDb {
        let db = db();
        db.set_worker_node(true);
        for g in groups() {
            ok(&db, &format!("global insert-agent-group {g}"));
        }
        db
    }

    fn collected(
        outcome: AgentOutcome,
    ) -> (Arc<Vec<GroupRecord>>, Option<GroupsHash>, Option<String>) {
        match outcome {
            AgentOutcome::GroupsCollected {
                records,
                hash,
                error,
                ..
            } => (records, hash, error),
            other => panic!("{other:?}"),
        }
    }

    fn global_hash(db: &EmbeddedDb) -> Value {
        json(&ok(
            db,
            r#"global sync-agent-groups-get {"get_global_hash":true}"#,
        ))[0]["hash"]
            .clone()
    }

    /// Every agent's name and groups, read back with plain SQL, a page at a time.
    fn all_groups(db: &EmbeddedDb) -> Vec<Value> {
        let mut rows = Vec::new();
        loop {
            let last = rows.last().map_or(0, |r: &Value| r["id"].as_i64().unwrap());
            let page = json(&ok(
                db,
                &format!("global sql SELECT id, name, `group`, group_hash FROM agent WHERE id > {last} ORDER BY id LIMIT 50"),
            ));
            let page = page.as_array().unwrap().clone();
            if page.is_empty() {
                return rows;
            }
            rows.extend(page);
        }
    }

    fn keys(ids: impl IntoIterator<Item = u32>) -> BTreeSet<u32> {
        ids.into_iter().collect()
    }

    fn envelope_of(outcome: AgentOutcome) -> (Option<Bytes>, usize, Vec<u32>, Vec<u32>, bool) {
        match outcome {
            AgentOutcome::GroupsEnvelope {
                payload,
                chunks,
                sent,
                held,
                overflow,
            } => (
                payload,
                chunks,
                sent.iter().map(|r| r.id).collect(),
                held.iter().map(|r| r.id).collect(),
                overflow,
            ),
            other => panic!("{other:?}"),
        }
    }

    fn applied(outcome: AgentOutcome) -> (usize, Vec<String>, Option<bool>, Vec<String>) {
        match outcome {
            AgentOutcome::GroupsApplied {
                updated_chunks,
                error_messages,
                checksum_matches,
                warnings,
            } => (updated_chunks, error_messages, checksum_matches, warnings),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_periodic_read_pages_with_due_marks_agents_synced_and_ends_with_the_hash() {
        let (master, rec) = env(master_with_agents(600), vec![]);
        let (records, hash, error) = collected(collect(&master, false).unwrap());
        assert_eq!(error, None);
        let ids: Vec<u32> = records.iter().map(|r| r.id).collect();
        assert_eq!(ids, (1..=600).collect::<Vec<_>>());
        assert_eq!(hash.map(Value::from), Some(global_hash(&rec.db)));
        let pages = rec.commands.lock().unwrap().len();
        assert!(pages > 2, "600 agents take several pages, got {pages}");
        // Everything was marked synced: the next round has only the hash.
        let (records, hash, _) = collected(collect(&master, false).unwrap());
        assert!(records.is_empty());
        assert!(matches!(hash, Some(Some(_))));
    }

    #[test]
    fn the_full_read_recalculates_then_pages_every_agent_by_last_id() {
        let (master, rec) = env(master_with_agents(600), vec![]);
        collect(&master, false).unwrap();
        rec.commands.lock().unwrap().clear();
        let (records, hash, error) = collected(collect(&master, true).unwrap());
        assert_eq!((error, hash), (None, None));
        assert_eq!(records.len(), 600);
        let commands = rec.commands.lock().unwrap().clone();
        assert_eq!(commands[0], "global recalculate-agent-group-hashes");
        assert!(commands[1].ends_with(r#""last_id": 0}"#), "{}", commands[1]);
        let last_ids: Vec<u64> = commands[1..]
            .iter()
            .map(|c| {
                json(&c[c.find('{').unwrap()..])["last_id"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert!(
            last_ids.len() > 2 && last_ids.windows(2).all(|w| w[0] < w[1]),
            "{last_ids:?}"
        );
    }

    #[test]
    fn a_read_failure_keeps_what_was_read_and_a_failed_recalculation_is_a_warning() {
        let (master, _) = env(
            master_with_agents(3),
            vec![(
                "recalculate",
                "Error recalculating group hash of agents in global.db",
            )],
        );
        match collect(&master, true).unwrap() {
            AgentOutcome::GroupsCollected {
                records, warnings, ..
            } => {
                assert_eq!(records.len(), 3);
                assert_eq!(warnings, ["Error 2007 executing recalculate agent-group hash command: Error retrieving data from Wazuh DB: Error recalculating group hash of agents in global.db"]);
            }
            other => panic!("{other:?}"),
        }
        let (broken, _) = env(
            master_with_agents(3),
            vec![("sync-agent-groups-get", "boom")],
        );
        let (records, hash, error) = collected(collect(&broken, false).unwrap());
        assert!(records.is_empty() && hash.is_none());
        assert_eq!(
            error.as_deref(),
            Some("Error 2007 - Error retrieving data from Wazuh DB: err boom")
        );
    }

    #[test]
    fn the_envelope_holds_back_agents_without_keys_and_the_latest_record_wins() {
        let record = |id: u32, group: &str| GroupRecord {
            id,
            json: Bytes::from(format!(
                r#"{{"id":{id},"name":"a{id}","groups":["{group}"]}}"#
            )),
        };
        let pending = vec![record(2, "old"), record(7, "old")];
        let round1: Vec<GroupRecord> = (1..=3000).map(|i| record(i, "first")).collect();
        let round2 = vec![record(2, "new")];
        let hex = "ab".repeat(20);
        let hash = Some(hex.clone());
        let outcome = envelope(
            &pending,
            &[Arc::new(round1), Arc::new(round2)],
            &keys((1..=3000).filter(|i| i % 2 == 0)),
            Some(&hash),
        )
        .unwrap();
        let (payload, chunks, sent, held, overflow) = envelope_of(outcome);
        assert!(!overflow);
        assert_eq!(sent, (1..=3000).filter(|i| i % 2 == 0).collect::<Vec<_>>());
        assert_eq!(held, (1..=3000).filter(|i| i % 2 == 1).collect::<Vec<_>>());
        let envelope: Value = serde_json::from_slice(&payload.unwrap()).unwrap();
        assert_eq!(envelope["set_data_command"], "global set-agent-groups");
        assert_eq!(
            envelope["payload"],
            serde_json::json!({"mode": "override", "sync_status": "synced"})
        );
        let texts = envelope["chunks"].as_array().unwrap();
        assert!(chunks > 1 && texts.len() == chunks);
        let mut seen = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let chunk = json(text.as_str().unwrap());
            let data = chunk[0]["data"].as_array().unwrap();
            assert!(serde_json::to_string(data).unwrap().len() <= CHUNK_DATA_BYTES_MAX + 2);
            assert_eq!(chunk[0].get("hash").is_some(), i == chunks - 1);
            seen.extend(data.iter().cloned());
        }
        assert_eq!(seen.len(), 1500);
        assert_eq!(
            seen[0]["groups"],
            serde_json::json!(["new"]),
            "round 2 overrides"
        );
        assert_eq!(
            json(texts[chunks - 1].as_str().unwrap())[0]["hash"],
            hex.as_str()
        );
    }

    #[test]
    fn an_empty_full_envelope_is_nothing_and_a_hash_alone_is_one_chunk() {
        let (payload, chunks, ..) = envelope_of(envelope(&[], &[], &keys([]), None).unwrap());
        assert_eq!((payload, chunks), (None, 0));
        let (payload, chunks, ..) =
            envelope_of(envelope(&[], &[], &keys([]), Some(&None)).unwrap());
        assert_eq!(chunks, 1);
        let envelope: Value = serde_json::from_slice(&payload.unwrap()).unwrap();
        assert_eq!(envelope["chunks"][0], r#"[{"data":[],"hash":null}]"#);
    }

    #[test]
    fn too_many_held_back_records_overflow() {
        let records: Vec<GroupRecord> = (1..=GROUPS_HELD_MAX as u32 + 2)
            .map(|id| GroupRecord {
                id,
                json: Bytes::from_static(b"{}"),
            })
            .collect();
        let (_, _, sent, held, overflow) =
            envelope_of(envelope(&[], &[Arc::new(records)], &keys([1]), None).unwrap());
        assert_eq!((sent, held.len(), overflow), (vec![1], 0, true));
    }

    #[test]
    fn a_worker_stores_what_the_master_sends_and_the_hashes_match() {
        let (master, master_rec) = env(master_with_agents(600), vec![]);
        let (records, hash, _) = collected(collect(&master, false).unwrap());
        let (payload, chunks, ..) =
            envelope_of(envelope(&[], &[records], &keys(1..=600), hash.as_ref()).unwrap());
        let (worker, rec) = env(worker_db(), vec![]);
        let (updated, errors, matches, _) =
            applied(apply(&worker, &payload.unwrap(), false).unwrap());
        assert_eq!((updated, errors, matches), (chunks, vec![], Some(true)));
        assert_eq!(all_groups(&rec.db), all_groups(&master_rec.db));
        for command in rec.commands.lock().unwrap().iter() {
            assert!(command.len() < 65_536);
            if command.starts_with("global set-agent-groups") {
                assert!(command.starts_with(
                    r#"global set-agent-groups {"mode":"override","sync_status":"synced","data":[{"#
                ));
            }
        }
        // The worker drifts: the next periodic update (only the hash) reports the mismatch.
        ok(
            &rec.db,
            r#"global set-agent-groups {"mode":"override","data":[{"id":1,"name":"agent1","groups":["group-with-a-rather-long-name-00"]}]}"#,
        );
        let (records, hash, _) = collected(collect(&master, false).unwrap());
        let (payload, ..) =
            envelope_of(envelope(&[], &[records], &keys(1..=600), hash.as_ref()).unwrap());
        let (updated, _, matches, _) = applied(apply(&worker, &payload.unwrap(), false).unwrap());
        assert_eq!((updated, matches), (1, Some(false)));
        // A full update restores it and recalculates the hashes instead of comparing.
        let (records, ..) = collected(collect(&master, true).unwrap());
        let (payload, ..) = envelope_of(envelope(&[], &[records], &keys(1..=600), None).unwrap());
        rec.commands.lock().unwrap().clear();
        let (_, errors, matches, warnings) =
            applied(apply(&worker, &payload.unwrap(), true).unwrap());
        assert_eq!((errors.len(), matches, warnings.len()), (0, None, 0));
        assert_eq!(
            rec.commands.lock().unwrap().last().map(String::as_str),
            Some("global recalculate-agent-group-hashes")
        );
        assert_eq!(all_groups(&rec.db), all_groups(&master_rec.db));
        assert_eq!(global_hash(&rec.db), global_hash(&master_rec.db));
    }

    #[test]
    fn vanished_agents_are_skipped_other_refusals_reported() {
        let (worker, _) = env(
            worker_db(),
            vec![
                (
                    r#""id":5,"#,
                    "Cannot execute Global database query; FOREIGN KEY constraint failed",
                ),
                (
                    r#""id":6,"#,
                    "An error occurred during the set of the groups",
                ),
            ],
        );
        let chunk = |id: u32| {
            format!(
                r#"[{{"data":[{{"id":{id},"name":"a{id}","groups":["group-with-a-rather-long-name-01"]}}]}}]"#
            )
        };
        let payload = serde_json::json!({
            "set_data_command": "global set-agent-groups",
            "payload": {"mode": "override", "sync_status": "synced"},
            "chunks": [chunk(4), chunk(5), chunk(6), format!(r#"[{{"data":[],"hash":null}}]"#)],
        });
        let (updated, errors, matches, _) =
            applied(apply(&worker, payload.to_string().as_bytes(), false).unwrap());
        assert_eq!(updated, 2, "chunks 4 and the hash-only one");
        assert_eq!(errors, ["Error 2003 - Error in wazuhdb request: An error occurred during the set of the groups"]);
        assert_eq!(
            matches,
            Some(false),
            "the worker has a hash, the master none"
        );
    }

    #[test]
    fn an_oversized_chunk_from_a_master_is_split_into_commands_that_fit() {
        let (worker, rec) = env(worker_db(), vec![]);
        let group = "group-with-a-rather-long-name-02";
        let data: Vec<Value> = (1..=1200)
            .map(
                |id| serde_json::json!({"id": id, "name": format!("agent{id}"), "groups": [group]}),
            )
            .collect();
        let chunk = serde_json::json!([{ "data": data }]).to_string();
        assert!(chunk.len() > 65_536);
        let payload = serde_json::json!({
            "set_data_command": "global set-agent-groups",
            "payload": {"mode": "override", "sync_status": "synced"},
            "chunks": [chunk],
        });
        let (updated, errors, matches, _) =
            applied(apply(&worker, payload.to_string().as_bytes(), false).unwrap());
        assert_eq!((updated, errors, matches), (1, vec![], None));
        let sets: Vec<usize> = rec
            .commands
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.starts_with("global set-agent-groups"))
            .map(String::len)
            .collect();
        assert!(
            sets.len() >= 2 && sets.iter().all(|&n| n <= MAX_PAYLOAD),
            "{sets:?}"
        );
        assert_eq!(all_groups(&rec.db).len(), 1200);
    }

    #[test]
    fn what_is_not_an_agent_groups_string_is_refused_whole() {
        let (worker, _) = env(worker_db(), vec![]);
        for (payload, expected) in [
            (&b"{"[..], "error while trying to load JSON: "),
            (
                br#"{"set_data_command": "global delete-agent", "chunks": []}"#,
                "error while trying to load JSON: unexpected set_data_command",
            ),
            (
                br#"{"chunks": 3}"#,
                "error while trying to load JSON: 'chunks' is not a list",
            ),
        ] {
            let error = apply(&worker, payload, false).unwrap_err();
            assert!(error.starts_with(expected), "{error}");
        }
        let (updated, errors, ..) =
            applied(apply(&worker, br#"{"chunks": [1, "[]"]}"#, false).unwrap());
        assert_eq!(updated, 0);
        assert_eq!(
            errors,
            [
                "chunk 1/2: not a string",
                "chunk 2/2: no 'data' list in its first element"
            ]
        );
    }
}
