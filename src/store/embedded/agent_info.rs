//! Agent-info sync over the classic socket (`sync-agent-info-get` / `-set`), the 4.3–4.12 shape
//! still served by wazuh-db and by this database.

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Transaction};
use serde_json::Value;

use super::agents::rows_json;
use super::text::{atoi, int, near, query_failed};
use crate::store::{WdbReply, WdbStatus, MAX_PAYLOAD};

/// The three kinds of pending agents, in reply order, with the columns sent for each.
const KINDS: [(&str, &str); 3] = [
    (
        "syncreq",
        "id, name, ip, os_name, os_version, os_major, os_minor, os_codename, os_build, os_platform, os_uname, os_arch, \
         version, config_sum, merged_sum, manager_host, node_name, last_keepalive, connection_status, \
         disconnection_time, group_config_status, status_code",
    ),
    ("syncreq_status", "id, last_keepalive, connection_status, disconnection_time, status_code"),
    ("syncreq_keepalive", "id, last_keepalive"),
];

/// The agent columns a `sync-agent-info-set` record may overwrite.
const SETTABLE: [&str; 21] = [
    "config_sum",
    "ip",
    "manager_host",
    "merged_sum",
    "name",
    "node_name",
    "os_arch",
    "os_build",
    "os_codename",
    "os_major",
    "os_minor",
    "os_name",
    "os_platform",
    "os_uname",
    "os_version",
    "version",
    "last_keepalive",
    "connection_status",
    "disconnection_time",
    "group_config_status",
    "status_code",
];

/// Columns a record may leave out and still keep their value: the ones that cannot be NULL (`name`,
/// `connection_status`, `group_config_status`) and `status_code`, which 4.3 records never carry.
///
/// wazuh-db binds an absent member as NULL. On wazuh-db 4.14 that makes every record of a 4.3.11
/// worker fail (`NOT NULL constraint failed: agent.group_config_status`), and wazuh-db 4.3.11 has
/// neither of the two later columns, so it never touches them. Keeping the stored value is what a
/// 4.3 master holds for such a record; the other columns follow wazuh-db (absent means NULL).
const KEPT_WHEN_ABSENT: [&str; 4] = [
    "name",
    "connection_status",
    "group_config_status",
    "status_code",
];

/// Where a paged `sync-agent-info-get` pass stands between a `due` reply and the next call: the kind
/// of pending agents being returned and the last id returned of that kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cursor {
    kind: usize,
    last_id: i64,
}

/// `global sync-agent-info-get [last_id <n>]`: pending agents as a JSON array, marked synced as
/// they are returned; `due` when the next one does not fit, and the next call goes on from there.
/// Unlike wazuh-db 4.3, which restarts every kind from the last id of the page, the pass resumes the
/// kind it stopped in and then reads the later kinds from the start, so one pass returns every
/// pending agent (with wazuh-db's order, status-only and keepalive agents of lower ids than a
/// `due` in the full records waited for the next round).
pub fn sync_get(tx: &Transaction, cursor: &mut Cursor, input: Option<&str>) -> WdbReply {
    if let Some(("last_id", value)) = input.and_then(|i| i.split_once(' ')) {
        *cursor = Cursor {
            kind: 0,
            last_id: atoi(value),
        };
    }
    let mut items: Vec<String> = Vec::new();
    let mut size = 2;
    let mut status = WdbStatus::Ok;
    'kinds: for (index, (kind, columns)) in KINDS.iter().enumerate().skip(cursor.kind) {
        if index > cursor.kind {
            *cursor = Cursor {
                kind: index,
                last_id: 0,
            };
        }
        let sql = format!(
            "SELECT {columns} FROM agent WHERE id > ?1 AND sync_status = ?2 ORDER BY id LIMIT 1"
        );
        loop {
            let row = tx
                .prepare_cached(&sql)
                .and_then(|mut stmt| rows_json(&mut stmt, params![cursor.last_id, kind]));
            let mut agent = match row {
                Ok(rows) => match rows.into_iter().next() {
                    Some(agent) => agent,
                    None => break,
                },
                Err(e) => {
                    status = WdbStatus::Err;
                    items = vec![near(&e.to_string()).to_owned()];
                    break 'kinds;
                }
            };
            let Some(id) = agent["id"].as_i64() else {
                cursor.last_id += 1;
                continue;
            };
            if *kind == "syncreq" {
                let labels = tx
                    .prepare_cached("SELECT * FROM labels WHERE id = ?1")
                    .and_then(|mut s| rows_json(&mut s, [id]));
                if let Ok(labels) = labels {
                    if !labels.is_empty() {
                        agent["labels"] = Value::from(labels);
                    }
                }
            }
            let text = agent.to_string();
            if size + text.len() + 1 >= MAX_PAYLOAD {
                status = WdbStatus::Due;
                break 'kinds;
            }
            size += text.len() + 1;
            items.push(text);
            cursor.last_id = id;
            if let Err(e) = tx.execute(
                "UPDATE agent SET sync_status = 'synced' WHERE id = ?1",
                [id],
            ) {
                return query_failed(&e);
            }
        }
    }
    if status != WdbStatus::Due {
        *cursor = Cursor::default();
    }
    if status == WdbStatus::Err {
        return WdbReply::new(status, items.concat());
    }
    WdbReply::new(status, format!("[{}]", items.join(",")))
}

/// `global sync-agent-info-set <JSON array>`: overwrite the agents' info and labels, mark them synced.
/// Records of every stock shape apply: the full 4.3.11 record (no `group_config_status` or
/// `status_code`), the 4.4+ one, and the status and keepalive kinds (see [`KEPT_WHEN_ABSENT`]).
pub fn sync_set(tx: &Transaction, input: &str) -> WdbReply {
    let Ok(root) = serde_json::from_str::<Value>(input) else {
        return WdbReply::err(format!("Invalid JSON syntax, near '{}'", near(input)));
    };
    let agents: Vec<&Value> = match &root {
        Value::Array(items) => items.iter().collect(),
        Value::Object(map) => map.values().collect(),
        _ => Vec::new(),
    };
    let assignments: Vec<String> = SETTABLE
        .iter()
        .enumerate()
        .map(|(i, c)| match KEPT_WHEN_ABSENT.contains(c) {
            true => format!("{c} = COALESCE(?{}, {c})", i + 1),
            false => format!("{c} = ?{}", i + 1),
        })
        .collect();
    let sql = format!(
        "UPDATE agent SET {}, sync_status = 'synced' WHERE id = ?{}",
        assignments.join(", "),
        SETTABLE.len() + 1
    );
    for agent in agents {
        let mut values: Vec<SqlValue> = SETTABLE
            .iter()
            .map(|column| sql_value(agent.get(*column)))
            .collect();
        values.push(sql_value(agent.get("id")));
        if let Err(e) = tx
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(values)))
        {
            return query_failed(&e);
        }
        let Some(labels) = agent.get("labels").and_then(Value::as_array) else {
            continue;
        };
        let Some(id) = agent
            .get("id")
            .filter(|v| v.is_number())
            .and_then(|v| int(Some(v)))
        else {
            return WdbReply::err("Cannot update labels due to invalid id.");
        };
        if let Err(e) = tx.execute("DELETE FROM labels WHERE id = ?1", [id]) {
            return query_failed(&e);
        }
        for label in labels {
            let (Some(key), Some(value), Some(label_id)) = (
                label["key"].as_str(),
                label["value"].as_str(),
                label
                    .get("id")
                    .filter(|v| v.is_number())
                    .and_then(|v| int(Some(v))),
            ) else {
                continue;
            };
            if let Err(e) = tx.execute(
                "INSERT INTO labels (id, key, value) VALUES (?1, ?2, ?3)",
                params![label_id, key, value],
            ) {
                return query_failed(&e);
            }
        }
    }
    WdbReply::ok()
}

/// A JSON member as a bound value: numbers as integers, strings as text, anything else NULL.
fn sql_value(value: Option<&Value>) -> SqlValue {
    match value {
        Some(Value::String(s)) => SqlValue::Text(s.clone()),
        Some(v @ Value::Number(_)) => int(Some(v)).map_or(SqlValue::Null, SqlValue::Integer),
        _ => SqlValue::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::store::WdbStatus;

    #[test]
    fn one_paged_pass_returns_every_pending_agent_of_every_kind() {
        let db = db();
        // Keepalive-only agents with low ids, then enough full records to need several pages.
        for id in 1..=10 {
            add_agent(&db, id, &format!("ka{id}"), &[]);
            set_sync(&db, id, "syncreq_keepalive");
        }
        for id in 11..=900 {
            add_agent(
                &db,
                id,
                &format!("full-agent-with-a-long-name-{id:05}"),
                &[],
            );
            set_sync(&db, id, "syncreq");
        }
        let mut ids = Vec::new();
        let mut pages = 0;
        loop {
            let reply = q(&db, "global sync-agent-info-get ");
            pages += 1;
            for agent in json(&reply.payload).as_array().unwrap() {
                ids.push(agent["id"].as_i64().unwrap());
            }
            if reply.status != WdbStatus::Due {
                assert_eq!(reply.status, WdbStatus::Ok);
                break;
            }
            assert!(pages < 50, "the pass never ends");
        }
        assert!(pages > 1, "the full records needed more than one page");
        ids.sort_unstable();
        assert_eq!(ids, (1..=900).collect::<Vec<i64>>());
    }

    #[test]
    fn get_returns_three_kinds_in_order_and_marks_synced() {
        let db = db();
        for id in 1..=3 {
            add_agent(&db, id, &format!("a{id}"), &[]);
        }
        ok(
            &db,
            r#"global sync-agent-info-set [{"id":1,"name":"a1","connection_status":"active","group_config_status":"synced","version":"Wazuh v4.14.7","labels":[{"id":1,"key":"env","value":"prod"}]}]"#,
        );
        set_sync(&db, 1, "syncreq");
        set_sync(&db, 2, "syncreq_keepalive");
        set_sync(&db, 3, "syncreq_status");
        let reply = json(&ok(&db, "global sync-agent-info-get"));
        let items = reply.as_array().expect("array");
        assert_eq!(items.len(), 3);
        assert_eq!(items[0]["id"], 1);
        assert_eq!(items[0]["version"], "Wazuh v4.14.7");
        assert_eq!(
            items[0]["labels"],
            json(r#"[{"id":1,"key":"env","value":"prod"}]"#)
        );
        assert_eq!(
            items[1],
            json(
                r#"{"id":3,"connection_status":"never_connected","disconnection_time":0,"status_code":0}"#
            )
        );
        assert_eq!(items[2], json(r#"{"id":2}"#));
        assert_eq!(ok(&db, "global sync-agent-info-get {}"), "[]");
    }

    #[test]
    fn get_pages_with_due_and_resumes() {
        let db = db();
        let uname = "x".repeat(3000);
        for id in 1..=40 {
            ok(
                &db,
                &format!(r#"global insert-agent {{"id":{id},"name":"a{id}","date_add":1}}"#),
            );
            ok(
                &db,
                &format!(
                    r#"global sync-agent-info-set [{{"id":{id},"name":"a{id}","connection_status":"active","group_config_status":"synced","os_uname":"{uname}"}}]"#
                ),
            );
            set_sync(&db, id, "syncreq");
        }
        let mut total = 0;
        let mut calls = 0;
        loop {
            let reply = q(&db, "global sync-agent-info-get ");
            assert!(reply.payload.len() <= crate::store::MAX_PAYLOAD);
            total += json(&reply.payload).as_array().map(Vec::len).unwrap_or(0);
            calls += 1;
            if reply.status == WdbStatus::Ok {
                break;
            }
            assert_eq!(reply.status, WdbStatus::Due);
        }
        assert_eq!(total, 40);
        assert!(calls > 1);
    }

    #[test]
    fn set_overwrites_info_and_labels() {
        let db = db();
        add_agent(&db, 1, "a1", &["default"]);
        ok(
            &db,
            r#"global sync-agent-info-set [{"id":1,"name":"renamed","os_name":"Ubuntu","connection_status":"active","group_config_status":"synced","last_keepalive":99,"labels":[{"id":1,"key":"a","value":"1"}]}]"#,
        );
        ok(
            &db,
            r#"global sync-agent-info-set [{"id":1,"name":"renamed","connection_status":"active","group_config_status":"synced","labels":[{"id":1,"key":"b","value":"2"}]}]"#,
        );
        let agent = &json(&ok(&db, "global get-agent-info 1"))[0];
        assert_eq!(agent["name"], "renamed");
        assert!(agent.get("os_name").is_none(), "absent members are cleared");
        assert_eq!(agent["sync_status"], "synced");
        set_sync(&db, 1, "syncreq");
        let info = json(&ok(&db, "global sync-agent-info-get"));
        assert_eq!(
            info[0]["labels"],
            json(r#"[{"id":1,"key":"b","value":"2"}]"#)
        );
    }

    #[test]
    fn set_errors() {
        let db = db();
        add_agent(&db, 1, "a1", &["default"]);
        assert_eq!(
            q(&db, "global sync-agent-info-set [x").to_text(),
            "err Invalid JSON syntax, near '[x'"
        );
        let bad_status = q(
            &db,
            r#"global sync-agent-info-set [{"id":1,"name":"a1","connection_status":"asleep"}]"#,
        );
        assert!(
            bad_status
                .payload
                .starts_with("Cannot execute Global database query; CHECK constraint failed"),
            "{bad_status:?}"
        );
        assert_eq!(
            q(&db, r#"global sync-agent-info-set [{"name":"a1","connection_status":"active","group_config_status":"synced","labels":[]}]"#).to_text(),
            "err Cannot update labels due to invalid id."
        );
    }

    #[test]
    fn set_takes_a_4_3_record_and_keeps_what_it_does_not_carry() {
        let db = db();
        add_agent(&db, 1, "a1", &["default"]);
        ok(
            &db,
            r#"global sync-agent-info-set [{"id":1,"name":"a1","connection_status":"active","group_config_status":"synced","status_code":2,"os_name":"Old"}]"#,
        );
        // What a 4.3.11 worker sends: no group_config_status, no status_code, NULL columns left out.
        ok(
            &db,
            r#"global sync-agent-info-set [{"id":1,"name":"a1","ip":"10.0.0.5","version":"Wazuh v4.3.11","node_name":"worker1","last_keepalive":1700000000,"connection_status":"active","disconnection_time":0}]"#,
        );
        let agent = &json(&ok(&db, "global get-agent-info 1"))[0];
        assert_eq!(agent["ip"], "10.0.0.5");
        assert_eq!(agent["node_name"], "worker1");
        assert_eq!(agent["last_keepalive"], 1_700_000_000);
        assert_eq!(agent["group_config_status"], "synced", "kept");
        assert_eq!(agent["status_code"], 2, "kept");
        assert!(
            agent.get("os_name").is_none(),
            "absent nullable members are NULL"
        );
        assert_eq!(agent["sync_status"], "synced");

        // Status and keepalive kinds carry no name: the name stays.
        ok(
            &db,
            r#"global sync-agent-info-set [{"id":1,"last_keepalive":1700000100,"connection_status":"disconnected","disconnection_time":1700000100,"status_code":0},{"id":2,"last_keepalive":5}]"#,
        );
        let agent = &json(&ok(&db, "global get-agent-info 1"))[0];
        assert_eq!(agent["name"], "a1");
        assert_eq!(agent["connection_status"], "disconnected");
    }
}
