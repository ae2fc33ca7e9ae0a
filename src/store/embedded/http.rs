//! The wazuh-db HTTP API for agent-info (`/v1/agents/sync`), used by the cluster since 4.13.

use rusqlite::{params, Transaction};
use serde_json::{Map, Value};

use super::agents::rows_json;
use super::Ctx;
use crate::store::StoreError;

const SYNC_PATH: &str = "/v1/agents/sync";

const FULL_COLUMNS: &str = "id, name, ip, os_name, os_version, os_major, os_minor, os_codename, os_build, os_platform, \
     os_uname, os_arch, version, config_sum, merged_sum, manager_host, node_name, last_keepalive, connection_status, \
     disconnection_time, group_config_status, status_code";

/// Routes one request; unknown routes get 404, other methods on the sync route 405.
pub fn handle(
    tx: &Transaction,
    ctx: &Ctx,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), StoreError> {
    let path = path.strip_prefix("http://localhost").unwrap_or(path);
    if path != SYNC_PATH {
        return Ok((404, b"Not Found".to_vec()));
    }
    match method {
        "GET" => Ok((200, get_sync(tx)?.to_string().into_bytes())),
        "POST" => match post_sync(tx, ctx, body) {
            Ok(()) => Ok((200, Vec::new())),
            Err(PostError::BadRequest(reason)) => Ok((400, reason.into_bytes())),
            Err(PostError::Database(e)) => Ok((500, e.to_string().into_bytes())),
        },
        _ => Ok((405, b"Method Not Allowed".to_vec())),
    }
}

/// Drops the members wazuh-db leaves out: empty strings, a lone space, and NULLs (already absent).
fn compact(mut record: Value) -> Value {
    if let Value::Object(map) = &mut record {
        map.retain(|_, v| !matches!(v.as_str(), Some("") | Some(" ")));
    }
    record
}

/// `GET /v1/agents/sync`: pending agents by kind (empty kinds omitted), then every agent marked synced.
fn get_sync(tx: &Transaction) -> rusqlite::Result<Value> {
    let mut response = Map::new();
    let kinds = [
        ("syncreq", FULL_COLUMNS),
        ("syncreq_keepalive", "id, version"),
        (
            "syncreq_status",
            "id, version, connection_status, disconnection_time, status_code",
        ),
    ];
    for (kind, columns) in kinds {
        let sql =
            format!("SELECT {columns} FROM agent WHERE id > 0 AND sync_status = ?1 ORDER BY id");
        let mut records = rows_json(&mut tx.prepare(&sql)?, [kind])?;
        if records.is_empty() {
            continue;
        }
        if kind == "syncreq" {
            let mut labels = tx.prepare("SELECT key, value FROM labels WHERE id = ?1")?;
            for record in &mut records {
                let id = record["id"].as_i64().unwrap_or(-1);
                let list = rows_json(&mut labels, [id])?;
                if !list.is_empty() {
                    record["labels"] = Value::from(list);
                }
            }
        }
        response.insert(
            kind.to_owned(),
            Value::from(records.into_iter().map(compact).collect::<Vec<_>>()),
        );
    }
    tx.execute("UPDATE agent SET sync_status = 'synced' WHERE id > 0", [])?;
    Ok(Value::Object(response))
}

enum PostError {
    BadRequest(String),
    Database(rusqlite::Error),
}

impl From<rusqlite::Error> for PostError {
    fn from(error: rusqlite::Error) -> PostError {
        PostError::Database(error)
    }
}

fn text<'a>(record: &'a Value, key: &str) -> &'a str {
    record.get(key).and_then(Value::as_str).unwrap_or("")
}

fn number(record: &Value, key: &str) -> i64 {
    super::text::int(record.get(key)).unwrap_or(0)
}

fn id(record: &Value) -> Result<i64, PostError> {
    super::text::int(record.get("id"))
        .ok_or_else(|| PostError::BadRequest("Missing required key.".to_owned()))
}

fn records<'a>(body: &'a Value, kind: &str) -> &'a [Value] {
    body.get(kind)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `POST /v1/agents/sync`: apply what a worker collected. Unknown agents are left alone.
fn post_sync(tx: &Transaction, ctx: &Ctx, body: &[u8]) -> Result<(), PostError> {
    let body: Value =
        serde_json::from_slice(body).map_err(|e| PostError::BadRequest(e.to_string()))?;
    for agent in records(&body, "syncreq") {
        let agent_id = id(agent)?;
        tx.execute(
            "UPDATE agent SET config_sum = ?1, ip = ?2, manager_host = ?3, merged_sum = ?4, name = ?5, node_name = ?6,
             os_arch = ?7, os_build = ?8, os_codename = ?9, os_major = ?10, os_minor = ?11, os_name = ?12,
             os_platform = ?13, os_uname = ?14, os_version = ?15, version = ?16, last_keepalive = ?17,
             connection_status = ?18, disconnection_time = ?19, group_config_status = ?20, status_code = ?21,
             sync_status = 'synced' WHERE id = ?22",
            params![
                text(agent, "config_sum"),
                text(agent, "ip"),
                text(agent, "manager_host"),
                text(agent, "merged_sum"),
                text(agent, "name"),
                text(agent, "node_name"),
                text(agent, "os_arch"),
                text(agent, "os_build"),
                text(agent, "os_codename"),
                text(agent, "os_major"),
                text(agent, "os_minor"),
                text(agent, "os_name"),
                text(agent, "os_platform"),
                text(agent, "os_uname"),
                text(agent, "os_version"),
                text(agent, "version"),
                number(agent, "last_keepalive"),
                text(agent, "connection_status"),
                number(agent, "disconnection_time"),
                text(agent, "group_config_status"),
                number(agent, "status_code"),
                agent_id,
            ],
        )?;
        tx.execute("DELETE FROM labels WHERE id = ?1", [agent_id])?;
        for label in records(agent, "labels") {
            // A refused label (duplicate key, unknown agent) ends this agent's labels, not the request.
            if tx
                .execute(
                    "INSERT INTO labels (id, key, value) VALUES (?1, ?2, ?3)",
                    params![agent_id, text(label, "key"), text(label, "value")],
                )
                .is_err()
            {
                break;
            }
        }
    }
    for agent in records(&body, "syncreq_keepalive") {
        tx.execute(
            "UPDATE agent SET last_keepalive = ?1, sync_status = 'synced', connection_status = 'active',
             disconnection_time = 0, status_code = 0, version = ?2 WHERE id = ?3",
            params![ctx.now, text(agent, "version"), id(agent)?],
        )?;
    }
    for agent in records(&body, "syncreq_status") {
        tx.execute(
            "UPDATE agent SET connection_status = ?1, sync_status = 'synced', disconnection_time = ?2, status_code = ?3,
             version = ?4 WHERE id = ?5",
            params![
                text(agent, "connection_status"),
                number(agent, "disconnection_time"),
                number(agent, "status_code"),
                text(agent, "version"),
                id(agent)?
            ],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::store::WazuhDb;

    fn get(db: &crate::store::EmbeddedDb) -> serde_json::Value {
        let (code, body) = db.http("GET", "/v1/agents/sync", b"").expect("http");
        assert_eq!(code, 200);
        serde_json::from_slice(&body).expect("JSON body")
    }

    #[test]
    fn get_groups_agents_by_kind_omits_empties_and_marks_synced() {
        let db = db();
        assert_eq!(get(&db), json("{}"));
        for id in 1..=3 {
            add_agent(&db, id, &format!("a{id}"), &["default"]);
        }
        ok(
            &db,
            r#"global sync-agent-info-set [{"id":1,"name":"a1","ip":" ","os_name":"","connection_status":"active","group_config_status":"synced","node_name":"w1","version":"Wazuh v4.14.7","labels":[{"id":1,"key":"env","value":"prod"}]}]"#,
        );
        ok(
            &db,
            r#"global sync-agent-info-set [{"id":2,"name":"a2","connection_status":"active","group_config_status":"synced","version":"Wazuh v4.14.7"}]"#,
        );
        set_sync(&db, 1, "syncreq");
        set_sync(&db, 2, "syncreq_keepalive");
        set_sync(&db, 3, "syncreq_status");
        let body = get(&db);
        let full = &body["syncreq"][0];
        assert_eq!(full["id"], 1);
        assert_eq!(full["node_name"], "w1");
        assert!(
            full.get("ip").is_none() && full.get("os_name").is_none(),
            "blank strings are omitted"
        );
        assert_eq!(full["labels"], json(r#"[{"key":"env","value":"prod"}]"#));
        assert_eq!(
            body["syncreq_keepalive"],
            json(r#"[{"id":2,"version":"Wazuh v4.14.7"}]"#)
        );
        assert_eq!(
            body["syncreq_status"],
            json(
                r#"[{"id":3,"connection_status":"never_connected","disconnection_time":0,"status_code":0}]"#
            )
        );
        let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["syncreq", "syncreq_keepalive", "syncreq_status"]);
        assert_eq!(get(&db), json("{}"), "the GET marks everything synced");
    }

    #[test]
    fn post_applies_the_three_kinds() {
        let db = db();
        for id in 1..=3 {
            add_agent(&db, id, &format!("a{id}"), &["default"]);
        }
        let body = r#"{"syncreq":[{"id":1,"name":"a1","os_name":"Ubuntu","connection_status":"active","group_config_status":"synced","last_keepalive":5,"labels":[{"key":"env","value":"prod"}]}],
                       "syncreq_keepalive":[{"id":2,"version":"Wazuh v4.14.7"}],
                       "syncreq_status":[{"id":3,"version":"v","connection_status":"disconnected","disconnection_time":77,"status_code":2}],
                       "ignored":[{"id":9}]}"#;
        let (code, _) = db
            .http("POST", "/v1/agents/sync", body.as_bytes())
            .expect("http");
        assert_eq!(code, 200);
        let a1 = &json(&ok(&db, "global get-agent-info 1"))[0];
        assert_eq!(a1["os_name"], "Ubuntu");
        assert_eq!(a1["ip"], "", "absent strings become empty");
        assert_eq!(a1["last_keepalive"], 5);
        let a2 = &json(&ok(&db, "global get-agent-info 2"))[0];
        assert_eq!(a2["last_keepalive"], NOW);
        assert_eq!(a2["connection_status"], "active");
        assert_eq!(a2["version"], "Wazuh v4.14.7");
        let a3 = &json(&ok(&db, "global get-agent-info 3"))[0];
        assert_eq!(a3["disconnection_time"], 77);
        assert_eq!(a3["status_code"], 2);
        set_sync(&db, 1, "syncreq");
        assert_eq!(
            get(&db)["syncreq"][0]["labels"],
            json(r#"[{"key":"env","value":"prod"}]"#)
        );
    }

    #[test]
    fn post_errors_and_routes() {
        let db = db();
        assert_eq!(
            db.http("POST", "/v1/agents/sync", b"{").expect("http").0,
            400
        );
        assert_eq!(
            db.http(
                "POST",
                "/v1/agents/sync",
                br#"{"syncreq_keepalive":[{"version":"v"}]}"#
            )
            .expect("http")
            .0,
            400
        );
        assert_eq!(
            db.http("GET", "/v1/agents/other", b"").expect("http").0,
            404
        );
        assert_eq!(
            db.http("DELETE", "/v1/agents/sync", b"").expect("http").0,
            405
        );
        assert_eq!(
            db.http(
                "POST",
                "/v1/agents/sync",
                br#"{"syncreq_keepalive":[{"id":42}]}"#
            )
            .expect("http")
            .0,
            200,
            "unknown agents are skipped"
        );
    }
}
