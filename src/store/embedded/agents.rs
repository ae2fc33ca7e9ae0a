//! Agent records: registration, removal, keepalives, connection status and listings.

use rusqlite::types::ValueRef;
use rusqlite::{params, OptionalExtension, Statement, Transaction};
use serde_json::{Map, Value};

use super::groups::valid_group_name;
use super::schema::MANAGER_KEEPALIVE;
use super::text::{atoi, int, near, query_failed};
use super::Ctx;
use crate::store::{WdbReply, WdbStatus, MAX_PAYLOAD};

/// The rows of a prepared statement as JSON objects named by column; NULL columns are left out,
/// as wazuh-db does.
pub(super) fn rows_json(
    stmt: &mut Statement,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Value>> {
    let names: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut object = Map::new();
        for (i, name) in names.iter().enumerate() {
            let value = match row.get_ref(i)? {
                ValueRef::Null => continue,
                ValueRef::Integer(n) => Value::from(n),
                ValueRef::Real(f) => Value::from(f),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Value::from(String::from_utf8_lossy(t).into_owned())
                }
            };
            object.insert(name.clone(), value);
        }
        out.push(Value::Object(object));
    }
    Ok(out)
}

fn parse_object(input: &str) -> Result<Value, WdbReply> {
    serde_json::from_str(input)
        .map_err(|_| WdbReply::err(format!("Invalid JSON syntax, near '{}'", near(input))))
}

fn invalid_data(input: &str) -> WdbReply {
    WdbReply::err(format!("Invalid JSON data, near '{}'", near(input)))
}

/// `global insert-agent {"id","name","date_add"[,"ip","register_ip","internal_key","group"]}`.
pub fn insert(tx: &Transaction, input: &str) -> WdbReply {
    let data = match parse_object(input) {
        Ok(data) => data,
        Err(reply) => return reply,
    };
    let (Some(id), Some(name), Some(date_add)) = (
        data.get("id")
            .filter(|v| v.is_number())
            .and_then(|v| int(Some(v))),
        data["name"].as_str(),
        int(data.get("date_add")),
    ) else {
        return invalid_data(input);
    };
    let group = data["group"].as_str();
    if let Some(group) = group.filter(|g| !g.is_empty()) {
        if !group
            .split(',')
            .filter(|g| !g.is_empty())
            .all(valid_group_name)
        {
            return WdbReply::err("Cannot execute Global database query; not an error");
        }
    }
    match insert_row(
        tx,
        id,
        name,
        data["ip"].as_str(),
        data["register_ip"].as_str(),
        data["internal_key"].as_str(),
        group,
        date_add,
    ) {
        Ok(()) => WdbReply::ok(),
        Err(e) => query_failed(&e),
    }
}

/// Inserts one agent row; the columns not given take their defaults.
#[allow(clippy::too_many_arguments)]
pub(super) fn insert_row(
    tx: &Transaction,
    id: i64,
    name: &str,
    ip: Option<&str>,
    register_ip: Option<&str>,
    internal_key: Option<&str>,
    group: Option<&str>,
    date_add: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO agent (id, name, ip, register_ip, internal_key, date_add, `group`) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![id, name, ip, register_ip, internal_key, date_add, group],
    )?;
    Ok(())
}

/// `global delete-agent <id>`: the agent, its labels and group memberships. Unknown ids are fine.
pub fn delete(tx: &Transaction, input: &str) -> WdbReply {
    match tx.execute("DELETE FROM agent WHERE id = ?1", [atoi(input)]) {
        Ok(_) => WdbReply::ok(),
        Err(_) => WdbReply::err("Error deleting agent from agent table in global.db."),
    }
}

pub(super) fn agent_exists(tx: &Transaction, id: i64) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM agent WHERE id = ?1)",
        [id],
        |row| row.get(0),
    )
}

/// The sync status to store when a client asks for `requested`: a pending full sync is never
/// downgraded to a status-only or keepalive-only one, and a pending status sync never to a keepalive.
fn effective_sync_status(tx: &Transaction, id: i64, requested: &str) -> String {
    let old: Option<String> = tx
        .query_row("SELECT sync_status FROM agent WHERE id = ?1", [id], |row| {
            row.get(0)
        })
        .optional()
        .ok()
        .flatten();
    let Some(old) = old else {
        return requested.to_owned();
    };
    let allowed = match old.as_str() {
        "synced" | "syncreq_keepalive" => true,
        "syncreq_status" => requested != "syncreq_keepalive",
        "syncreq" => requested != "syncreq_keepalive" && requested != "syncreq_status",
        _ => false,
    };
    if allowed {
        requested.to_owned()
    } else {
        old
    }
}

/// `global update-keepalive {"id","connection_status","sync_status"}`: keepalive set to now.
pub fn update_keepalive(tx: &Transaction, ctx: &Ctx, input: &str) -> WdbReply {
    let data = match parse_object(input) {
        Ok(data) => data,
        Err(reply) => return reply,
    };
    let (Some(id), Some(status), Some(sync)) = (
        data.get("id")
            .filter(|v| v.is_number())
            .and_then(|v| int(Some(v))),
        data["connection_status"].as_str(),
        data["sync_status"].as_str(),
    ) else {
        return invalid_data(input);
    };
    let sync = effective_sync_status(tx, id, sync);
    let result = tx.execute(
        "UPDATE agent SET last_keepalive = ?1, connection_status = ?2, sync_status = ?3, disconnection_time = 0, status_code = 0
         WHERE id = ?4",
        params![ctx.now, status, sync, id],
    );
    match result {
        Ok(_) => WdbReply::ok(),
        Err(e) => query_failed(&e),
    }
}

/// The text members `update-agent-data` copies into the agent row (absent ones become NULL).
const AGENT_DATA_TEXT: [&str; 17] = [
    "os_name",
    "os_version",
    "os_major",
    "os_minor",
    "os_codename",
    "os_platform",
    "os_build",
    "os_uname",
    "os_arch",
    "version",
    "config_sum",
    "merged_sum",
    "manager_host",
    "node_name",
    "connection_status",
    "sync_status",
    "group_config_status",
];

/// `global update-agent-data {"id", "os_*", "version", ..., "node_name", "agent_ip",
/// "connection_status", "sync_status", "group_config_status", "labels"}`: what remoted stores when an
/// agent (re)connects. The keepalive is set to now; `labels` (`key:value` lines) replace the old ones.
pub fn update_agent_data(tx: &Transaction, ctx: &Ctx, input: &str) -> WdbReply {
    let data = match parse_object(input) {
        Ok(data) => data,
        Err(reply) => return reply,
    };
    let Some(id) = data
        .get("id")
        .filter(|v| v.is_number())
        .and_then(|v| int(Some(v)))
    else {
        return invalid_data(input);
    };
    let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut values: Vec<Option<String>> = AGENT_DATA_TEXT.iter().map(|k| text(k)).collect();
    let sync = values[15].clone().unwrap_or_else(|| "synced".to_owned());
    values[15] = Some(effective_sync_status(tx, id, &sync));
    let keepalive = if id == 0 { MANAGER_KEEPALIVE } else { ctx.now };
    let mut sql = String::from("UPDATE agent SET last_keepalive = ?1");
    for (i, key) in AGENT_DATA_TEXT.iter().enumerate() {
        // NOT NULL columns keep their value when the member is absent.
        if matches!(*key, "connection_status" | "group_config_status") {
            sql.push_str(&format!(", {key} = COALESCE(?{}, {key})", i + 2));
        } else {
            sql.push_str(&format!(", {key} = ?{}", i + 2));
        }
    }
    let ip = text("agent_ip");
    let mut params: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(keepalive)];
    params.extend(
        values
            .into_iter()
            .map(|v| Box::new(v) as Box<dyn rusqlite::ToSql>),
    );
    if let Some(ip) = ip {
        sql.push_str(&format!(", ip = ?{}", params.len() + 1));
        params.push(Box::new(ip));
    }
    sql.push_str(&format!(" WHERE id = ?{}", params.len() + 1));
    params.push(Box::new(id));
    let updated = tx.execute(
        &sql,
        rusqlite::params_from_iter(params.iter().map(|p| p.as_ref())),
    );
    if let Err(e) = updated {
        return query_failed(&e);
    }
    let labels = data.get("labels").and_then(Value::as_str).unwrap_or("");
    match replace_labels(tx, id, labels) {
        Ok(()) => WdbReply::ok(),
        Err(e) => query_failed(&e),
    }
}

/// `global update-agent-name {"id","name"}`: what wazuh-modulesd writes for the manager (000).
pub fn update_name(tx: &Transaction, input: &str) -> WdbReply {
    let data = match parse_object(input) {
        Ok(data) => data,
        Err(reply) => return reply,
    };
    let (Some(id), Some(name)) = (
        data.get("id")
            .filter(|v| v.is_number())
            .and_then(|v| int(Some(v))),
        data["name"].as_str(),
    ) else {
        return invalid_data(input);
    };
    match tx.execute(
        "UPDATE agent SET name = ?1 WHERE id = ?2",
        params![name, id],
    ) {
        Ok(_) => WdbReply::ok(),
        Err(e) => query_failed(&e),
    }
}

/// Replaces an agent's labels with the `key:value` lines of `text` (lines without `:` are skipped).
fn replace_labels(tx: &Transaction, id: i64, text: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM labels WHERE id = ?1", [id])?;
    if !agent_exists(tx, id)? {
        return Ok(());
    }
    for line in text.lines() {
        if let Some((key, value)) = line.split_once(':') {
            tx.execute(
                "INSERT OR REPLACE INTO labels (id, key, value) VALUES (?1, ?2, ?3)",
                params![id, key, value],
            )?;
        }
    }
    Ok(())
}

/// `global update-connection-status {"id","connection_status","sync_status","status_code"}`
/// (4.3's command has no `status_code`: 0); `disconnected` records the time of disconnection.
pub fn update_connection_status(tx: &Transaction, ctx: &Ctx, input: &str) -> WdbReply {
    let data = match parse_object(input) {
        Ok(data) => data,
        Err(reply) => return reply,
    };
    let (Some(id), Some(status), Some(sync), Some(code)) = (
        data.get("id")
            .filter(|v| v.is_number())
            .and_then(|v| int(Some(v))),
        data["connection_status"].as_str(),
        data["sync_status"].as_str(),
        match data.get("status_code") {
            None => Some(0),
            Some(v) => Some(v).filter(|v| v.is_number()).and_then(|v| int(Some(v))),
        },
    ) else {
        return invalid_data(input);
    };
    let sync = effective_sync_status(tx, id, sync);
    let disconnection_time = if status == "disconnected" { ctx.now } else { 0 };
    let result = tx.execute(
        "UPDATE agent SET connection_status = ?1, sync_status = ?2, disconnection_time = ?3, status_code = ?4 WHERE id = ?5",
        params![status, sync, disconnection_time, code, id],
    );
    match result {
        Ok(_) => WdbReply::ok(),
        Err(e) => query_failed(&e),
    }
}

/// `global get-all-agents last_id <n>`: `[{"id":..},..]` after `n`, `due` when the reply is full.
pub fn get_all(tx: &Transaction, input: &str) -> WdbReply {
    let mut words = input.split(' ').filter(|w| !w.is_empty());
    match words.next() {
        Some("last_id") => {}
        Some("context") => return WdbReply::err("Error getting agents from global.db."),
        _ => return WdbReply::err("Invalid arguments 'last_id' or 'context' not found"),
    }
    let Some(last_id) = words.next() else {
        return WdbReply::err("Invalid arguments 'last_id' not found");
    };
    let listed = tx
        .prepare("SELECT id FROM agent WHERE id > ?1 ORDER BY id")
        .and_then(|mut stmt| {
            stmt.query_map([atoi(last_id)], |row| row.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        });
    let Ok(ids) = listed else {
        return WdbReply::err("Error getting agents from global.db.");
    };
    let mut out = String::from("[");
    let mut status = WdbStatus::Ok;
    for id in ids {
        let item = format!("{{\"id\":{id}}}");
        if out.len() + item.len() + 2 > MAX_PAYLOAD {
            status = WdbStatus::Due;
            break;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&item);
    }
    out.push(']');
    WdbReply::new(status, out)
}

/// `global get-agent-info <id>`: every non-NULL column of the agent, `[]` for an unknown id.
pub fn get_info(tx: &Transaction, input: &str) -> WdbReply {
    let rows = tx
        .prepare("SELECT * FROM agent WHERE id = ?1")
        .and_then(|mut stmt| rows_json(&mut stmt, [atoi(input)]));
    match rows {
        Ok(rows) => WdbReply::new(WdbStatus::Ok, Value::Array(rows).to_string()),
        Err(_) => WdbReply::err("Error getting agent information from global.db."),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::store::WdbStatus;

    #[test]
    fn agent_data_is_stored_with_node_labels_and_a_full_sync_request() {
        let db = db();
        add_agent(&db, 3, "gamma", &["default"]);
        set_sync(&db, 3, "synced");
        ok(
            &db,
            r#"global update-agent-data {"id":3,"os_name":"Ubuntu","version":"Wazuh v4.14.7","node_name":"worker1","agent_ip":"10.0.0.3","connection_status":"active","sync_status":"syncreq","labels":"env:prod\nbad line"}"#,
        );
        let info = json(&ok(&db, "global get-agent-info 3"));
        let row = &info[0];
        assert_eq!(row["os_name"], "Ubuntu");
        assert_eq!(row["node_name"], "worker1");
        assert_eq!(row["ip"], "10.0.0.3");
        assert_eq!(row["connection_status"], "active");
        assert_eq!(row["sync_status"], "syncreq");
        assert_eq!(row["last_keepalive"], NOW);
        let labels = json(&ok(
            &db,
            "global sql SELECT key, value FROM labels WHERE id = 3",
        ));
        assert_eq!(labels, json(r#"[{"key":"env","value":"prod"}]"#));
        let bad = q(&db, r#"global update-agent-data {"os_name":"x"}"#);
        assert_eq!(bad.status, WdbStatus::Err);
        assert!(bad.payload.starts_with("Invalid JSON data, near"));
    }

    #[test]
    fn insert_get_delete_agent() {
        let db = db();
        ok(
            &db,
            r#"global insert-agent {"id":5,"name":"web","ip":"10.0.0.5","register_ip":"any","internal_key":"k","group":"default","date_add":1000}"#,
        );
        let info = json(&ok(&db, "global get-agent-info 5"));
        let agent = &info[0];
        assert_eq!(agent["id"], 5);
        assert_eq!(agent["name"], "web");
        assert_eq!(agent["register_ip"], "any");
        assert_eq!(agent["node_name"], "unknown");
        assert_eq!(agent["connection_status"], "never_connected");
        assert_eq!(agent["group"], "default");
        assert!(agent.get("os_name").is_none(), "NULL columns are left out");
        ok(&db, "global delete-agent 5");
        assert_eq!(ok(&db, "global get-agent-info 5"), "[]");
        ok(&db, "global delete-agent 5");
    }

    #[test]
    fn insert_agent_errors() {
        let db = db();
        assert_eq!(
            q(&db, "global insert-agent {bad").to_text(),
            "err Invalid JSON syntax, near '{bad'"
        );
        assert_eq!(
            q(&db, r#"global insert-agent {"id":1}"#).to_text(),
            r#"err Invalid JSON data, near '{"id":1}'"#
        );
        ok(
            &db,
            r#"global insert-agent {"id":1,"name":"a","date_add":1}"#,
        );
        let dup = q(
            &db,
            r#"global insert-agent {"id":1,"name":"a","date_add":1}"#,
        );
        assert_eq!(dup.status, WdbStatus::Err);
        assert!(
            dup.payload
                .starts_with("Cannot execute Global database query; UNIQUE constraint failed"),
            "{dup:?}"
        );
        let bad_group = q(
            &db,
            r#"global insert-agent {"id":2,"name":"b","date_add":1,"group":"ok,b/d"}"#,
        );
        assert_eq!(bad_group.status, WdbStatus::Err);
    }

    #[test]
    fn delete_agent_cascades_to_groups() {
        let db = db();
        add_agent(&db, 1, "a1", &["default", "web"]);
        ok(&db, "global delete-agent 1");
        let reply = json(&ok(
            &db,
            r#"global sync-agent-groups-get {"condition":"all"}"#,
        ));
        assert_eq!(reply, json(r#"[{"data":[]}]"#));
    }

    #[test]
    fn update_agent_name_renames_and_checks_its_input() {
        let db = db();
        ok(
            &db,
            r#"global update-agent-name {"id":0,"name":"wazuh-master"}"#,
        );
        let manager = &json(&ok(&db, "global get-agent-info 0"))[0];
        assert_eq!(manager["name"], "wazuh-master");
        let bad = q(&db, r#"global update-agent-name {"id":"0","name":"x"}"#);
        assert_eq!(bad.status, WdbStatus::Err);
        assert!(
            bad.payload.starts_with("Invalid JSON data, near"),
            "{bad:?}"
        );
    }

    #[test]
    fn keepalive_and_connection_status() {
        let db = db();
        add_agent(&db, 1, "a1", &["default"]);
        ok(
            &db,
            r#"global update-keepalive {"id":1,"connection_status":"active","sync_status":"syncreq_keepalive"}"#,
        );
        let agent = &json(&ok(&db, "global get-agent-info 1"))[0];
        assert_eq!(agent["last_keepalive"], NOW);
        assert_eq!(agent["connection_status"], "active");
        assert_eq!(agent["sync_status"], "syncreq_keepalive");

        ok(
            &db,
            r#"global update-connection-status {"id":1,"connection_status":"disconnected","sync_status":"syncreq_status","status_code":3}"#,
        );
        let agent = &json(&ok(&db, "global get-agent-info 1"))[0];
        assert_eq!(agent["disconnection_time"], NOW);
        assert_eq!(agent["status_code"], 3);
        assert_eq!(agent["sync_status"], "syncreq_status");

        // A pending status sync is not downgraded to a keepalive-only one.
        ok(
            &db,
            r#"global update-keepalive {"id":1,"connection_status":"active","sync_status":"syncreq_keepalive"}"#,
        );
        let agent = &json(&ok(&db, "global get-agent-info 1"))[0];
        assert_eq!(agent["sync_status"], "syncreq_status");
        assert_eq!(agent["disconnection_time"], 0);

        let bad = q(
            &db,
            r#"global update-keepalive {"id":1,"connection_status":"sleepy","sync_status":"synced"}"#,
        );
        assert!(
            bad.payload
                .starts_with("Cannot execute Global database query; CHECK constraint failed"),
            "{bad:?}"
        );
        // 4.3's form, without a status code.
        ok(
            &db,
            r#"global update-connection-status {"id":1,"connection_status":"disconnected","sync_status":"syncreq"}"#,
        );
        let agent = &json(&ok(&db, "global get-agent-info 1"))[0];
        assert_eq!(agent["status_code"], 0);
        assert_eq!(agent["sync_status"], "syncreq");
        let bad_code = q(
            &db,
            r#"global update-connection-status {"id":1,"connection_status":"active","sync_status":"synced","status_code":"3"}"#,
        );
        assert_eq!(bad_code.status, WdbStatus::Err);
        assert!(bad_code.payload.starts_with("Invalid JSON data, near"));
    }

    #[test]
    fn get_all_agents_lists_ids_after_last_id() {
        let db = db();
        for id in 1..=3 {
            add_agent(&db, id, &format!("a{id}"), &["default"]);
        }
        assert_eq!(
            ok(&db, "global get-all-agents last_id 0"),
            r#"[{"id":1},{"id":2},{"id":3}]"#
        );
        assert_eq!(ok(&db, "global get-all-agents last_id 2"), r#"[{"id":3}]"#);
        assert_eq!(ok(&db, "global get-all-agents last_id 3"), "[]");
        assert_eq!(
            q(&db, "global get-all-agents foo").to_text(),
            "err Invalid arguments 'last_id' or 'context' not found"
        );
        assert_eq!(
            q(&db, "global get-all-agents last_id").to_text(),
            "err Invalid arguments 'last_id' not found"
        );
    }

    #[test]
    fn get_all_agents_pages_with_due() {
        let db = db();
        for id in 1..=6000 {
            ok(
                &db,
                &format!(r#"global insert-agent {{"id":{id},"name":"a{id}","date_add":1}}"#),
            );
        }
        let first = q(&db, "global get-all-agents last_id 0");
        assert_eq!(first.status, WdbStatus::Due);
        assert!(first.payload.len() <= crate::store::MAX_PAYLOAD);
        let ids = json(&first.payload);
        let last = ids
            .as_array()
            .and_then(|a| a.last())
            .and_then(|v| v["id"].as_i64())
            .expect("last id");
        let second = q(&db, &format!("global get-all-agents last_id {last}"));
        assert_eq!(second.status, WdbStatus::Ok);
        assert_eq!(
            json(&second.payload).as_array().map(Vec::len).unwrap_or(0) as i64,
            6000 - last
        );
    }
}
