//! The agent-info jobs against the embedded database, in both dialects.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};

use super::master::STALE_COLUMNS;
use super::*;
use crate::pool::jobs::agents::rows::{lookup, parse_array};
use crate::store::embedded::test_support::{add_agent, json as parse, ok, q, set_sync, NOW};
use crate::store::{EmbeddedDb, StoreError, WdbReply};

fn env(db: &Arc<EmbeddedDb>, dialect: Dialect, node: &str) -> AgentEnv {
    AgentEnv {
        db: db.clone(),
        daemons: None,
        dialect,
        node_name: node.into(),
        home: PathBuf::from("/nonexistent"),
    }
}

fn database() -> Arc<EmbeddedDb> {
    Arc::new(crate::store::embedded::test_support::db())
}

/// Overwrites an agent's info the way a worker's report would, leaving it synced.
fn set_info(db: &EmbeddedDb, id: i64, fields: Value) {
    let mut record = json!({"id": id, "name": format!("a{id}"), "connection_status": "active",
                            "group_config_status": "synced"});
    for (k, v) in fields.as_object().expect("object") {
        record[k] = v.clone();
    }
    ok(db, &format!("global sync-agent-info-set [{record}]"));
}

fn agent(db: &EmbeddedDb, id: i64) -> Value {
    parse(&ok(db, &format!("global get-agent-info {id}")))[0].clone()
}

fn read_outcome(env: &AgentEnv, carry: Option<&[u8]>) -> (Option<Bytes>, usize) {
    match read(env, carry).expect("read") {
        AgentOutcome::InfoRead {
            payload,
            agents,
            error,
        } => {
            assert_eq!(error, None);
            (payload, agents)
        }
        other => panic!("{other:?}"),
    }
}

fn applied(outcome: AgentOutcome) -> (usize, Vec<String>, usize, Option<String>, Vec<String>) {
    match outcome {
        AgentOutcome::InfoApplied {
            updated_chunks,
            error_messages,
            stale_skipped,
            failure,
            warnings,
        } => (
            updated_chunks,
            error_messages,
            stale_skipped,
            failure,
            warnings,
        ),
        other => panic!("{other:?}"),
    }
}

/// Three agents with a full, a keepalive and a status change pending.
fn pending_three(db: &EmbeddedDb) {
    for id in 1..=3 {
        add_agent(db, id, &format!("a{id}"), &["default"]);
    }
    set_info(
        db,
        1,
        json!({"os_name": "Ubuntu", "node_name": "worker1", "last_keepalive": NOW - 5,
               "labels": [{"id": 1, "key": "env", "value": "prod"}]}),
    );
    set_sync(db, 1, "syncreq");
    set_sync(db, 2, "syncreq_keepalive");
    set_sync(db, 3, "syncreq_status");
}

#[test]
fn http_read_wraps_the_sync_object_with_python_separators() {
    let db = database();
    let env = env(&db, Dialect::V4_14, "worker1");
    assert_eq!(read_outcome(&env, None), (None, 0), "nothing pending");
    pending_three(&db);
    let (payload, agents) = read_outcome(&env, None);
    assert_eq!(agents, 3);
    let text = String::from_utf8(payload.expect("payload").to_vec()).unwrap();
    assert!(
        text.starts_with(
            r#"{"set_data_command": "global sync-agent-info-set", "payload": {}, "chunks": {"syncreq": [{"id": 1, "name": "a1", "#
        ),
        "{text}"
    );
    let envelope = parse(&text);
    let chunks = &envelope["chunks"];
    assert_eq!(chunks["syncreq"][0]["os_name"], "Ubuntu");
    assert_eq!(chunks["syncreq_keepalive"], json!([{"id": 2}]));
    assert_eq!(chunks["syncreq_status"][0]["id"], 3);
    assert_eq!(
        read_outcome(&env, None),
        (None, 0),
        "the read marked them synced"
    );
}

#[test]
fn socket_read_collects_pages_and_skips_empty_ones() {
    let db = database();
    let env = env(&db, Dialect::V4_3, "worker1");
    assert_eq!(read_outcome(&env, None), (None, 0));
    pending_three(&db);
    let (payload, agents) = read_outcome(&env, None);
    assert_eq!(agents, 3);
    let envelope = parse(std::str::from_utf8(&payload.expect("payload")).unwrap());
    assert_eq!(
        envelope.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["set_data_command", "chunks"]
    );
    let chunks = envelope["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 1);
    let records = parse(chunks[0].as_str().unwrap());
    assert_eq!(records[0]["name"], "a1");
    assert_eq!(records[1]["id"], 3, "status records follow full ones");
    assert_eq!(records[2], json!({"id": 2}));
    assert_eq!(read_outcome(&env, None), (None, 0));

    // Many large records page with `due`: one chunk per page, each within the reply limit.
    let uname = "x".repeat(3000);
    for id in 10..60 {
        add_agent(&db, id, &format!("a{id}"), &[]);
        set_info(&db, id, json!({"os_uname": uname}));
        set_sync(&db, id, "syncreq");
    }
    let (payload, agents) = read_outcome(&env, None);
    assert_eq!(agents, 50);
    let envelope = parse(std::str::from_utf8(&payload.expect("payload")).unwrap());
    let chunks = envelope["chunks"].as_array().unwrap();
    assert!(chunks.len() > 1);
    assert!(chunks
        .iter()
        .all(|c| c.as_str().unwrap().len() <= MAX_PAYLOAD));
}

#[test]
fn a_carried_string_goes_first_less_what_newer_records_supersede() {
    for dialect in [Dialect::V4_14, Dialect::V4_3] {
        let db = database();
        let env = env(&db, dialect, "worker1");
        pending_three(&db);
        let (first, _) = read_outcome(&env, None);
        let first = first.expect("first round");
        // The round failed; meanwhile agent 2 changed fully, agent 3 sent a keepalive, 4 is new.
        add_agent(&db, 4, "a4", &[]);
        set_sync(&db, 2, "syncreq");
        set_sync(&db, 3, "syncreq_keepalive");
        set_sync(&db, 4, "syncreq_status");
        let (second, agents) = read_outcome(&env, Some(&first[..]));
        let envelope = parse(std::str::from_utf8(&second.expect("second round")).unwrap());
        let records: Vec<(i64, Kind)> = match dialect {
            Dialect::V4_14 => MEMBERS
                .iter()
                .flat_map(|(name, kind)| {
                    envelope["chunks"][*name]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(move |r| (r["id"].as_i64().unwrap(), *kind))
                })
                .collect(),
            Dialect::V4_3 => envelope["chunks"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|c| parse_array(c.as_str().unwrap()).unwrap())
                .map(|r| (r["id"].as_i64().unwrap(), Kind::of_record(&r)))
                .collect(),
        };
        // Old full record of 1 kept; old keepalive of 2 and status of 3 superseded.
        let mut expected = vec![
            (1, Kind::Full),
            (2, Kind::Full),
            (3, Kind::Keepalive),
            (4, Kind::Status),
        ];
        let mut got = records.clone();
        got.sort_by_key(|(id, _)| *id);
        expected.sort_by_key(|(id, _)| *id);
        assert_eq!(got, expected, "{dialect:?}: {records:?}");
        assert_eq!(agents, 4);
        if dialect == Dialect::V4_3 {
            assert_eq!(records[0], (1, Kind::Full), "carried records go first");
        }
        // Nothing new and the carry again: the same string comes back (a retry).
        let (third, _) = read_outcome(&env, Some(&first[..]));
        assert!(third.is_some());
    }
}

#[test]
fn a_failing_http_read_reports_error_2017() {
    struct Refusing;
    impl WazuhDb for Refusing {
        fn query(&self, _: &str) -> Result<WdbReply, StoreError> {
            Ok(WdbReply::err("boom"))
        }
        fn http(&self, _: &str, _: &str, _: &[u8]) -> Result<(u16, Vec<u8>), StoreError> {
            Ok((500, b"internal".to_vec()))
        }
    }
    let mut env = env(&database(), Dialect::V4_14, "worker1");
    env.db = Arc::new(Refusing);
    assert_eq!(
        read(&env, None).unwrap_err(),
        "Error 2017 - Could not retrieve agents synchronization information from wazuh-db: \
         Error 2012 - Invalid wazuh-db HTTP request: internal"
    );
    env.dialect = Dialect::V4_3;
    assert_eq!(
        read(&env, None).unwrap_err(),
        "Error 2007 - Error retrieving data from Wazuh DB: boom"
    );
}

/// The master's view: agent 7 moved from worker1 to worker2, whose last keepalive is newer; agent
/// 8 was never placed.
fn moved_agent(db: &EmbeddedDb) {
    add_agent(db, 7, "a7", &[]);
    add_agent(db, 8, "a8", &[]);
    set_info(
        db,
        7,
        json!({"node_name": "worker2", "last_keepalive": NOW - 10, "os_name": "Debian"}),
    );
}

fn http_report(chunks: Value) -> Vec<u8> {
    pyjson::to_vec(
        &json!({"set_data_command": "global sync-agent-info-set", "payload": {}, "chunks": chunks}),
    )
}

fn socket_report(records: Value) -> Vec<u8> {
    pyjson::to_vec(
        &json!({"set_data_command": "global sync-agent-info-set", "chunks": [records.to_string()]}),
    )
}

#[test]
fn http_apply_skips_stale_records_of_a_moved_agent() {
    let db = database();
    let master = env(&db, Dialect::V4_14, "master");
    moved_agent(&db);
    let full_old = json!({"id": 7, "name": "a7", "node_name": "worker1", "last_keepalive": NOW - 100,
                          "connection_status": "disconnected", "group_config_status": "synced"});
    let (updated, errors, stale, failure, warnings) = applied(
        apply(
            &master,
            "worker1",
            &http_report(json!({
                "syncreq": [full_old],
                "syncreq_keepalive": [{"id": 7, "version": "v1"}, {"id": 8, "version": "v1"}],
                "syncreq_status": [{"id": 7, "connection_status": "disconnected", "disconnection_time": 3,
                                    "status_code": 1, "version": "v1"}],
            })),
        )
        .unwrap(),
    );
    assert_eq!((errors, failure, warnings), (vec![], None, vec![]));
    assert_eq!(
        stale, 3,
        "worker1's full, keepalive and status records of agent 7"
    );
    assert_eq!(updated, 1, "only the keepalive member remains (agent 8)");
    let a7 = agent(&db, 7);
    assert_eq!(a7["node_name"], "worker2");
    assert_eq!(a7["connection_status"], "active");
    assert_eq!(a7["last_keepalive"], NOW - 10);
    assert_eq!(agent(&db, 8)["connection_status"], "active");

    // worker2's own reports apply, whatever their age.
    let (updated, _, stale, _, _) = applied(
        apply(
            &master,
            "worker2",
            &http_report(
                json!({"syncreq_status": [{"id": 7, "connection_status": "disconnected",
                                "disconnection_time": 5, "status_code": 1, "version": "v2"}]}),
            ),
        )
        .unwrap(),
    );
    assert_eq!((updated, stale), (1, 0));
    assert_eq!(agent(&db, 7)["connection_status"], "disconnected");

    // worker1 proves the agent came back with a newer full record.
    let full_new = json!({"id": 7, "name": "a7", "node_name": "worker1", "last_keepalive": NOW,
                          "connection_status": "active", "group_config_status": "synced"});
    let (updated, _, stale, _, _) = applied(
        apply(
            &master,
            "worker1",
            &http_report(json!({"syncreq": [full_new]})),
        )
        .unwrap(),
    );
    assert_eq!((updated, stale), (1, 0));
    assert_eq!(agent(&db, 7)["node_name"], "worker1");
}

#[test]
fn records_without_an_agent_id_are_skipped_with_a_warning_in_both_dialects() {
    for dialect in [Dialect::V4_14, Dialect::V4_3] {
        let db = database();
        let master = env(&db, dialect, "master");
        add_agent(&db, 8, "a8", &[]);
        let records = json!([{"id": 8, "name": "a8", "connection_status": "active",
                              "group_config_status": "synced", "version": "v9"},
                             {"name": "nobody", "connection_status": "active"},
                             {"id": "8", "name": "text id"}]);
        let report = match dialect {
            Dialect::V4_14 => http_report(json!({"syncreq": records})),
            Dialect::V4_3 => socket_report(records),
        };
        let (updated, errors, _, failure, warnings) =
            applied(apply(&master, "worker1", &report).unwrap());
        assert_eq!((updated, errors, failure), (1, vec![], None), "{dialect:?}");
        assert_eq!(
            warnings,
            ["Skipped 2 agent records without an agent id."],
            "{dialect:?}"
        );
        assert_eq!(agent(&db, 8)["version"], "v9");
    }
}

#[test]
fn socket_apply_skips_stale_records_and_completes_partial_ones() {
    let db = database();
    let master = env(&db, Dialect::V4_3, "master");
    moved_agent(&db);
    let report = json!([
        {"id": 7, "name": "a7", "node_name": "worker1", "last_keepalive": NOW - 100,
         "connection_status": "disconnected", "group_config_status": "synced"},
        {"id": 7, "last_keepalive": NOW - 1, "connection_status": "disconnected",
         "disconnection_time": 3, "status_code": 1},
        {"id": 7, "last_keepalive": NOW - 1},
        {"id": 8, "last_keepalive": NOW - 2},
        {"id": 99, "last_keepalive": NOW - 2}
    ]);
    let (updated, errors, stale, failure, warnings) =
        applied(apply(&master, "worker1", &socket_report(report)).unwrap());
    assert_eq!((errors, failure, warnings), (vec![], None, vec![]));
    assert_eq!((updated, stale), (1, 3));
    let a7 = agent(&db, 7);
    assert_eq!(
        (&a7["node_name"], &a7["last_keepalive"], &a7["os_name"]),
        (&json!("worker2"), &json!(NOW - 10), &json!("Debian"))
    );
    let a8 = agent(&db, 8);
    assert_eq!(a8["last_keepalive"], NOW - 2);
    assert_eq!(a8["connection_status"], "active");
    assert_eq!(a8["name"], "a8", "the rest of the row is kept");

    // worker2's keepalive and status records apply, completed from the master's row.
    let (updated, errors, stale, _, _) = applied(
        apply(
            &master,
            "worker2",
            &socket_report(
                json!([{"id": 7, "last_keepalive": NOW - 1, "connection_status": "disconnected",
                                   "disconnection_time": 4, "status_code": 2}]),
            ),
        )
        .unwrap(),
    );
    assert_eq!((updated, errors.len(), stale), (1, 0, 0));
    let a7 = agent(&db, 7);
    assert_eq!(a7["connection_status"], "disconnected");
    assert_eq!(a7["status_code"], 2);
    assert_eq!(a7["os_name"], "Debian");
    assert_eq!(a7["node_name"], "worker2");
}

#[test]
fn socket_apply_reports_refused_chunks_and_splits_large_ones() {
    let db = database();
    let master = env(&db, Dialect::V4_3, "master");
    let uname = "u".repeat(3000);
    for id in 1..=60 {
        add_agent(&db, id, &format!("a{id}"), &[]);
        set_info(&db, id, json!({"os_uname": uname}));
    }
    // 60 keepalives complete into ~3 KB records: one chunk becomes several commands.
    let keepalives: Vec<Value> = (1..=60)
        .map(|id| json!({"id": id, "last_keepalive": NOW - id}))
        .collect();
    let envelope = json!({"set_data_command": "global sync-agent-info-set",
                          "chunks": [Value::from(keepalives).to_string(), "[x", r#"[{"id":1,"name":"a1","connection_status":"asleep"}]"#]});
    let (updated, errors, _, failure, _) =
        applied(apply(&master, "worker1", &pyjson::to_vec(&envelope)).unwrap());
    assert_eq!(failure, None);
    assert_eq!(updated, 1);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(
        errors[0],
        "Error 2003 - Error in wazuhdb request: Invalid JSON syntax, near '[x'"
    );
    assert!(errors[1].starts_with(
        "Error 2003 - Error in wazuhdb request: Cannot execute Global database query; CHECK"
    ));
    assert_eq!(agent(&db, 60)["last_keepalive"], NOW - 60);
    assert_eq!(agent(&db, 60)["os_uname"], uname.as_str());
}

#[test]
fn unreadable_reports_and_failed_lookups() {
    let db = database();
    let master = env(&db, Dialect::V4_14, "master");
    assert!(matches!(
        apply(&master, "worker1", b"{nope").unwrap(),
        AgentOutcome::InfoUnreadable { .. }
    ));
    let (_, _, _, failure, _) = applied(apply(&master, "worker1", br#"{"chunks": []}"#).unwrap());
    assert_eq!(failure.as_deref(), Some("'chunks' is not a JSON object"));

    /// Answers everything but the lookups.
    struct NoSql(Arc<EmbeddedDb>);
    impl WazuhDb for NoSql {
        fn query(&self, command: &str) -> Result<WdbReply, StoreError> {
            if command.starts_with("global sql") {
                return Ok(WdbReply::err(
                    "Cannot execute Global database query; locked",
                ));
            }
            self.0.query(command)
        }
        fn http(&self, m: &str, p: &str, b: &[u8]) -> Result<(u16, Vec<u8>), StoreError> {
            self.0.http(m, p, b)
        }
    }
    moved_agent(&db);
    let mut blind = env(&db, Dialect::V4_14, "master");
    blind.db = Arc::new(NoSql(db.clone()));
    let (updated, _, stale, failure, warnings) = applied(
        apply(
            &blind,
            "worker1",
            &http_report(json!({"syncreq_keepalive": [{"id": 7, "version": "v1"}]})),
        )
        .unwrap(),
    );
    assert_eq!((updated, stale, failure), (1, 0, None));
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("applying it unfiltered"),
        "{warnings:?}"
    );
    assert_eq!(agent(&db, 7)["last_keepalive"], NOW, "applied unfiltered");
}

#[test]
fn lookups_halve_their_batches_until_replies_fit() {
    let db = database();
    let long = "n".repeat(2000);
    for id in 1..=100 {
        add_agent(&db, id, &format!("a{id}"), &[]);
        set_info(&db, id, json!({"node_name": long}));
    }
    let rows = lookup(db.as_ref(), (1..=100).collect(), STALE_COLUMNS, 256).expect("lookup");
    assert_eq!(rows.len(), 100);
    assert_eq!(rows[&42]["node_name"], long.as_str());
    assert!(q(&db, "global sql SELECT id, node_name FROM agent").status == WdbStatus::Err);
}

/// 50,000 agents: the worker reads them in one round and the master applies them with one POST
/// (4.14), or in a few rounds of a few hundred commands (4.3).
#[test]
fn fifty_thousand_agents_sync_in_the_4_14_dialect() {
    fifty_thousand_agents_sync(Dialect::V4_14);
}

#[test]
fn fifty_thousand_agents_sync_in_the_4_3_dialect() {
    fifty_thousand_agents_sync(Dialect::V4_3);
}

fn fifty_thousand_agents_sync(dialect: Dialect) {
    const AGENTS: i64 = 50_000;
    let worker_db = database();
    let master_db = database();
    for db in [&worker_db, &master_db] {
        for id in 1..=AGENTS {
            ok(
                db,
                &format!(r#"global insert-agent {{"id":{id},"name":"agent{id}","date_add":1}}"#),
            );
        }
    }
    for id in 1..=AGENTS {
        let sync = match id % 3 {
            0 => "syncreq",
            1 => "syncreq_keepalive",
            _ => "syncreq_status",
        };
        ok(
            &worker_db,
            &format!(
                r#"global update-connection-status {{"id":{id},"connection_status":"disconnected","sync_status":"{sync}","status_code":4}}"#
            ),
        );
    }
    // 4.14 reads everything at once; 4.3 paging may leave some for the following rounds.
    let (mut total, mut rounds) = (0, 0);
    while let (Some(payload), agents) = read_outcome(&env(&worker_db, dialect, "worker1"), None) {
        rounds += 1;
        total += agents;
        let (updated, errors, stale, failure, warnings) =
            applied(apply(&env(&master_db, dialect, "master"), "worker1", &payload).unwrap());
        assert_eq!(
            (errors, stale, failure, warnings),
            (vec![], 0, None, vec![])
        );
        assert!(updated >= 1);
        assert!(rounds <= 3, "{dialect:?}");
    }
    assert_eq!(total, AGENTS as usize, "{dialect:?}");
    if dialect == Dialect::V4_14 {
        assert_eq!(rounds, 1);
    }
    let disconnected = parse(&ok(
        &master_db,
        "global sql SELECT COUNT(*) AS n FROM agent WHERE connection_status = 'disconnected'",
    ));
    // Keepalive records make an agent active; the other two kinds carry the disconnection.
    let expected = AGENTS - (AGENTS + 2) / 3;
    assert_eq!(disconnected[0]["n"], expected, "{dialect:?}");
}
