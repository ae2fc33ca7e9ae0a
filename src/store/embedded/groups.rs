//! Agent groups: membership in priority order, per-agent and global hashes, and the
//! `sync-agent-groups-get` paging the master uses to send groups to workers.

use rusqlite::{params, OptionalExtension, Transaction};
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::agents::{agent_exists, insert_row};
use super::text::{int, near};
use super::Ctx;
use crate::store::{WdbReply, WdbStatus, MAX_PAYLOAD};

/// Longest group name, and most groups one agent may have.
const MAX_GROUP_NAME: usize = 255;
const MAX_GROUPS_PER_AGENT: i64 = 128;

/// Group names are directory names under `etc/shared/`: letters, digits, `_`, `.`, `-`, not `.`/`..`.
pub(super) fn valid_group_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_GROUP_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && name != "."
        && name != ".."
}

/// Per-agent hash: the first 8 hex characters of the SHA-256 of the comma-separated groups.
pub fn group_hash(csv: &str) -> String {
    let digest = Sha256::digest(csv.as_bytes());
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// The agent's groups, highest priority first.
fn agent_groups(tx: &Transaction, id: i64) -> rusqlite::Result<Vec<String>> {
    let mut stmt = tx.prepare_cached(
        "SELECT g.name FROM belongs b JOIN `group` g ON g.id = b.id_group WHERE b.id_agent = ?1 ORDER BY b.priority",
    )?;
    let names = stmt.query_map([id], |row| row.get::<_, Option<String>>(0))?;
    names.filter_map(|name| name.transpose()).collect()
}

/// The global groups hash: SHA-1 over every agent's `group_hash` in id order; `None` when no agent has one.
pub fn global_hash(tx: &Transaction) -> rusqlite::Result<Option<String>> {
    let mut stmt = tx.prepare_cached(
        "SELECT group_hash FROM agent WHERE id > 0 AND group_hash IS NOT NULL ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut sha = Sha1::new();
    let mut any = false;
    while let Some(row) = rows.next()? {
        let hash: String = row.get(0)?;
        sha.update(hash.as_bytes());
        any = true;
    }
    Ok(any.then(|| sha.finalize().iter().map(|b| format!("{b:02x}")).collect()))
}

fn find_group(tx: &Transaction, name: &str) -> rusqlite::Result<Option<i64>> {
    tx.query_row("SELECT id FROM `group` WHERE name = ?1", [name], |row| {
        row.get(0)
    })
    .optional()
}

fn max_priority(tx: &Transaction, id: i64) -> rusqlite::Result<Option<i64>> {
    tx.query_row(
        "SELECT MAX(priority) FROM belongs WHERE id_agent = ?1",
        [id],
        |row| row.get(0),
    )
}

/// `global insert-agent-group <name>`: declares a group so agents can be assigned to it.
pub fn insert_group(tx: &Transaction, name: &str) -> WdbReply {
    if !valid_group_name(name)
        || tx
            .execute("INSERT INTO `group` (name) VALUES (?1)", [name])
            .is_err()
    {
        return WdbReply::err("Error inserting group in global.db.");
    }
    WdbReply::ok()
}

/// The id of a declared group named by `group` (a JSON string); `None` for anything else.
fn declared_group(tx: &Transaction, group: &Value) -> Option<i64> {
    group
        .as_str()
        .and_then(|name| find_group(tx, name).ok().flatten())
}

/// Adds `groups` to the agent from `priority` on. With `create_name`, a missing agent is created
/// (never connected) so that a worker can hold groups of agents it has not seen yet.
fn assign(
    tx: &Transaction,
    ctx: &Ctx,
    id: i64,
    groups: &[Value],
    mut priority: i64,
    create_name: Option<&str>,
) -> bool {
    let mut ok = true;
    for group in groups {
        // A worker takes the master's word for its groups: one it has not declared yet (its
        // `etc/shared/` may still be on its way) is declared rather than refused.
        let declared = declared_group(tx, group).or_else(|| {
            let name = group.as_str().filter(|n| valid_group_name(n))?;
            create_name?;
            tx.execute("INSERT OR IGNORE INTO `group` (name) VALUES (?1)", [name])
                .ok()?;
            find_group(tx, name).ok().flatten()
        });
        let Some(group_id) = declared else {
            ok = false;
            continue;
        };
        let link = |p: i64| {
            tx.execute(
                "INSERT OR REPLACE INTO belongs (id_group, id_agent, priority) VALUES (?1, ?2, ?3)",
                params![group_id, id, p],
            )
        };
        if link(priority).is_ok() {
            priority += 1;
            continue;
        }
        let Some(agent_name) = create_name else {
            ok = false;
            continue;
        };
        if matches!(agent_exists(tx, id), Ok(false))
            && insert_row(
                tx,
                id,
                agent_name,
                Some("0.0.0.0"),
                Some("0.0.0.0"),
                None,
                None,
                ctx.now,
            )
            .is_ok()
            && link(priority).is_ok()
        {
            priority += 1;
        } else {
            ok = false;
        }
    }
    ok
}

/// Removes `groups` from the agent; an agent left with none goes back to `default`.
fn unassign(tx: &Transaction, ctx: &Ctx, id: i64, groups: &[Value]) -> bool {
    let mut ok = true;
    for group in groups {
        let Some(group_id) = declared_group(tx, group) else {
            ok = false;
            continue;
        };
        if tx
            .execute(
                "DELETE FROM belongs WHERE id_group = ?1 AND id_agent = ?2",
                params![group_id, id],
            )
            .is_err()
        {
            ok = false;
            continue;
        }
        if matches!(max_priority(tx, id), Ok(None))
            && !assign(tx, ctx, id, &[json!("default")], 0, None)
        {
            ok = false;
        }
    }
    ok
}

/// Whether adding `groups` keeps the agent within the limits and every name is valid.
fn groups_acceptable(tx: &Transaction, id: i64, groups: &[Value]) -> bool {
    let Ok(current) = tx.query_row(
        "SELECT count(id_group) FROM belongs WHERE id_agent = ?1",
        [id],
        |row| row.get::<_, i64>(0),
    ) else {
        return false;
    };
    let names: Vec<&str> = groups.iter().filter_map(Value::as_str).collect();
    current + names.len() as i64 <= MAX_GROUPS_PER_AGENT && names.into_iter().all(valid_group_name)
}

/// Stores the agent's group list, its hash and group sync status from the `belongs` rows.
fn store_group_context(
    tx: &Transaction,
    id: i64,
    sync_status: Option<&str>,
) -> rusqlite::Result<bool> {
    let groups = agent_groups(tx, id)?;
    let csv = (!groups.is_empty()).then(|| groups.join(","));
    let hash = csv.as_deref().map(group_hash);
    let changed = match sync_status {
        Some(sync) => tx.execute(
            "UPDATE agent SET `group` = ?1, group_hash = ?2, group_sync_status = ?3 WHERE id = ?4",
            params![csv, hash, sync, id],
        )?,
        None => tx.execute(
            "UPDATE agent SET `group` = ?1, group_hash = ?2 WHERE id = ?3",
            params![csv, hash, id],
        )?,
    };
    Ok(changed > 0)
}

/// `global set-agent-groups {"mode","sync_status","data":[{"id","groups"[,"name"]}]}`.
pub fn set_agent_groups(tx: &Transaction, ctx: &Ctx, input: &str) -> WdbReply {
    let Ok(args) = serde_json::from_str::<Value>(input) else {
        return WdbReply::err(format!("Invalid JSON syntax, near '{}'", near(input)));
    };
    let (Some(data), Some(mode)) = (args["data"].as_array(), args["mode"].as_str()) else {
        return WdbReply::err("Invalid JSON data, missing required fields");
    };
    if !matches!(mode, "override" | "append" | "empty_only" | "remove") {
        return WdbReply::err(format!("Invalid mode '{mode}' in set_agent_groups command"));
    }
    let sync_status = args["sync_status"].as_str().unwrap_or("synced");
    let mut ok = true;
    for item in data {
        let (Some(id), Some(groups)) = (
            item.get("id")
                .filter(|v| v.is_number())
                .and_then(|v| int(Some(v))),
            item["groups"].as_array(),
        ) else {
            ok = false;
            continue;
        };
        let mut acceptable = true;
        if mode == "remove" {
            ok &= unassign(tx, ctx, id, groups);
        } else {
            let mut priority = 0;
            if mode == "override" {
                ok &= tx
                    .execute("DELETE FROM belongs WHERE id_agent = ?1", [id])
                    .is_ok();
            } else if let Ok(Some(last)) = max_priority(tx, id) {
                if mode == "empty_only" {
                    continue;
                }
                priority = last + 1;
            }
            acceptable = groups_acceptable(tx, id, groups);
            if acceptable {
                let name = if mode == "override" {
                    item["name"].as_str()
                } else {
                    None
                };
                if mode == "override" && name.is_none() && ctx.worker_node {
                    ok = false;
                    continue;
                }
                ok &= assign(tx, ctx, id, groups, priority, name);
            } else {
                ok = false;
            }
        }
        if acceptable {
            ok &= store_group_context(tx, id, Some(sync_status)).is_ok();
        }
    }
    if ok {
        WdbReply::ok()
    } else {
        WdbReply::err("An error occurred during the set of the groups")
    }
}

/// `global recalculate-agent-group-hashes`: rebuilds every agent's group list and hash.
pub fn recalculate_all(tx: &Transaction) -> WdbReply {
    let ids = tx
        .prepare("SELECT id FROM agent WHERE id > 0")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| row.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        });
    let done = ids.and_then(|ids| {
        ids.into_iter()
            .try_for_each(|id| store_group_context(tx, id, None).map(drop))
    });
    match done {
        Ok(()) => WdbReply::ok(),
        Err(_) => WdbReply::err("Error recalculating group hash of agents in global.db"),
    }
}

/// `global get-groups-integrity <sha1 hex>`: `["syncreq"]` while any agent awaits a group sync,
/// else `["synced"]` or `["hash_mismatch"]` against the global hash.
pub fn integrity(tx: &Transaction, input: &str) -> WdbReply {
    if input.len() < 40 {
        return WdbReply::err(format!(
            "Hash hex-digest does not have the expected length. Expected (40) got ({})",
            input.len()
        ));
    }
    let expected = input.get(..40).unwrap_or(input);
    let pending = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM agent WHERE group_sync_status = 'syncreq')",
        [],
        |row| row.get(0),
    );
    let state = match pending {
        Ok(true) => "syncreq",
        Ok(false) => match global_hash(tx) {
            Ok(Some(hash)) if hash == expected => "synced",
            Ok(_) => "hash_mismatch",
            Err(_) => {
                return WdbReply::err("Error getting groups integrity information from global.db.")
            }
        },
        Err(_) => {
            return WdbReply::err("Error getting groups integrity information from global.db.")
        }
    };
    WdbReply::new(WdbStatus::Ok, json!([state]).to_string())
}

/// `global sync-agent-groups-get {"condition","last_id","set_synced","get_global_hash","agent_registration_delta"}`.
pub fn sync_get(tx: &Transaction, ctx: &Ctx, input: &str) -> WdbReply {
    let Ok(args) = serde_json::from_str::<Value>(input) else {
        return WdbReply::err(format!("Invalid JSON syntax, near '{}'", near(input)));
    };
    let non_negative = |v: &Value| int(Some(v)).is_some_and(|n| n >= 0);
    let condition = args.get("condition");
    let last_id = args.get("last_id");
    let set_synced = args.get("set_synced");
    let get_hash = args.get("get_global_hash");
    let delta = args.get("agent_registration_delta");
    if condition.is_some_and(|v| !v.is_string())
        || last_id.is_some_and(|v| !non_negative(v))
        || set_synced.is_some_and(|v| !v.is_boolean())
        || get_hash.is_some_and(|v| !v.is_boolean())
        || delta.is_some_and(|v| !non_negative(v))
    {
        return WdbReply::err("Invalid JSON data, invalid alternative fields data");
    }
    let only_pending = match condition.and_then(Value::as_str) {
        None => None,
        Some("sync_status") => Some(true),
        Some("all") => Some(false),
        Some(_) => {
            return WdbReply::err(
                "Could not obtain a response from wdb_global_sync_agent_groups_get",
            )
        }
    };
    let set_synced = set_synced == Some(&Value::Bool(true));
    let get_hash = get_hash == Some(&Value::Bool(true));
    let registered_before = ctx.now - int(delta).unwrap_or(0);

    let mut data = Vec::new();
    let mut size = r#"[{"data":[]}]"#.len();
    let mut status = WdbStatus::Ok;
    if let Some(only_pending) = only_pending {
        match collect_agents(
            tx,
            only_pending,
            int(last_id).unwrap_or(0),
            registered_before,
            set_synced,
            &mut data,
            &mut size,
        ) {
            Ok(true) => status = WdbStatus::Due,
            Ok(false) => {}
            Err(_) => status = WdbStatus::Err,
        }
    }
    let mut response = json!({ "data": data });
    if status == WdbStatus::Ok && get_hash {
        if size + r#"hash:"""#.len() + 41 + 1 < MAX_PAYLOAD {
            match global_hash(tx) {
                Ok(hash) => response["hash"] = hash.map_or(Value::Null, Value::from),
                Err(_) => status = WdbStatus::Err,
            }
        } else {
            status = WdbStatus::Due;
        }
    }
    let text = json!([response]).to_string();
    if text.len() > MAX_PAYLOAD {
        return WdbReply::err("Invalid response from wdb_global_sync_agent_groups_get");
    }
    WdbReply::new(status, text)
}

/// Appends agents after `last_id` while they fit; `Ok(true)` when one more did not fit.
fn collect_agents(
    tx: &Transaction,
    only_pending: bool,
    mut last_id: i64,
    registered_before: i64,
    set_synced: bool,
    data: &mut Vec<Value>,
    size: &mut usize,
) -> rusqlite::Result<bool> {
    let sql = if only_pending {
        "SELECT id, name FROM agent WHERE id > ?1 AND group_sync_status = 'syncreq' AND date_add < ?2 ORDER BY id LIMIT 1"
    } else {
        "SELECT id, name FROM agent WHERE id > ?1 AND date_add < ?2 ORDER BY id LIMIT 1"
    };
    loop {
        let next = tx
            .prepare_cached(sql)?
            .query_row(params![last_id, registered_before], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .optional()?;
        let Some((id, name)) = next else {
            return Ok(false);
        };
        last_id = id;
        let agent = json!({ "id": id, "name": name, "groups": agent_groups(tx, id)? });
        let len = agent.to_string().len();
        if *size + len + 1 >= MAX_PAYLOAD {
            return Ok(true);
        }
        *size += len + 1;
        data.push(agent);
        if set_synced {
            tx.execute(
                "UPDATE agent SET group_sync_status = 'synced' WHERE id = ?1",
                [id],
            )?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn group_hash_is_first_8_hex_of_sha256() {
        // SHA-256("default") = 37a8eec1...
        assert_eq!(group_hash("default"), "37a8eec1");
    }

    #[test]
    fn global_hash_is_sha1_of_agent_hashes_in_id_order() {
        let db = db();
        let empty = json(&ok(
            &db,
            r#"global sync-agent-groups-get {"get_global_hash":true}"#,
        ));
        assert_eq!(empty, json(r#"[{"data":[],"hash":null}]"#));
        add_agent(&db, 2, "b", &["web", "default"]);
        add_agent(&db, 1, "a", &["default"]);
        let expected: String = Sha1::digest(
            format!("{}{}", group_hash("default"), group_hash("web,default")).as_bytes(),
        )
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
        let reply = json(&ok(
            &db,
            r#"global sync-agent-groups-get {"get_global_hash": true}"#,
        ));
        assert_eq!(reply[0]["hash"], expected.as_str());
        assert_eq!(reply[0]["data"], json("[]"));
        assert_eq!(
            ok(&db, &format!("global get-groups-integrity {expected}")),
            r#"["syncreq"]"#
        );
    }

    #[test]
    fn periodic_sync_returns_pending_agents_once_with_hash() {
        let db = db();
        add_agent(&db, 1, "a", &["default", "web"]);
        add_agent(&db, 2, "b", &[]);
        let cmd = r#"global sync-agent-groups-get {"condition": "sync_status", "set_synced": true, "get_global_hash": true}"#;
        let first = json(&ok(&db, cmd));
        assert_eq!(
            first[0]["data"],
            json(
                r#"[{"id":1,"name":"a","groups":["default","web"]},{"id":2,"name":"b","groups":[]}]"#
            )
        );
        assert!(first[0]["hash"].is_string());
        let second = json(&ok(&db, cmd));
        assert_eq!(second[0]["data"], json("[]"));
        let hash = second[0]["hash"].as_str().expect("hash").to_owned();
        assert_eq!(
            ok(&db, &format!("global get-groups-integrity {hash}")),
            r#"["synced"]"#
        );
        assert_eq!(
            ok(
                &db,
                &format!("global get-groups-integrity {}", "0".repeat(40))
            ),
            r#"["hash_mismatch"]"#
        );
        assert_eq!(
            q(&db, "global get-groups-integrity abc").to_text(),
            "err Hash hex-digest does not have the expected length. Expected (40) got (3)"
        );
    }

    #[test]
    fn full_sync_pages_with_due_and_last_id() {
        let db = db();
        ok(&db, "global insert-agent-group default");
        let groups: Vec<String> = (0..100)
            .map(|i| format!("group-with-a-longish-name-{i:03}"))
            .collect();
        for g in &groups {
            ok(&db, &format!("global insert-agent-group {g}"));
        }
        let group_list = serde_json::to_string(&groups).expect("groups");
        for id in 1..=40 {
            ok(
                &db,
                &format!(r#"global insert-agent {{"id":{id},"name":"agent{id}","date_add":1}}"#),
            );
            ok(
                &db,
                &format!(
                    r#"global set-agent-groups {{"mode":"override","data":[{{"id":{id},"groups":{group_list}}}]}}"#
                ),
            );
        }
        let mut last_id = 0;
        let mut seen: Vec<i64> = Vec::new();
        loop {
            let cmd = format!(
                r#"global sync-agent-groups-get {{"condition": "all", "set_synced": false, "get_global_hash": false, "last_id": {last_id}}}"#
            );
            let reply = q(&db, &cmd);
            assert!(reply.payload.len() <= MAX_PAYLOAD);
            let page = json(&reply.payload);
            let ids: Vec<i64> = page[0]["data"]
                .as_array()
                .expect("data")
                .iter()
                .filter_map(|a| a["id"].as_i64())
                .collect();
            assert!(page[0].get("hash").is_none());
            seen.extend(&ids);
            match reply.status {
                WdbStatus::Due => last_id = *ids.last().expect("a due page is not empty"),
                WdbStatus::Ok => break,
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(seen, (1..=40).collect::<Vec<_>>());
    }

    #[test]
    fn registration_delta_hides_recent_agents() {
        let db = db();
        add_agent(&db, 1, "a", &["default"]);
        ok(
            &db,
            &format!(r#"global insert-agent {{"id":2,"name":"b","date_add":{NOW}}}"#),
        );
        let reply = json(&ok(
            &db,
            r#"global sync-agent-groups-get {"condition":"all","agent_registration_delta":10}"#,
        ));
        assert_eq!(reply[0]["data"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn sync_get_argument_errors() {
        let db = db();
        assert_eq!(
            q(&db, "global sync-agent-groups-get {x").to_text(),
            "err Invalid JSON syntax, near '{x'"
        );
        for bad in [
            r#"{"condition":1}"#,
            r#"{"last_id":-1}"#,
            r#"{"set_synced":"yes"}"#,
            r#"{"get_global_hash":1}"#,
        ] {
            assert_eq!(
                q(&db, &format!("global sync-agent-groups-get {bad}")).to_text(),
                "err Invalid JSON data, invalid alternative fields data"
            );
        }
        assert_eq!(
            q(&db, r#"global sync-agent-groups-get {"condition":"some"}"#).to_text(),
            "err Could not obtain a response from wdb_global_sync_agent_groups_get"
        );
    }

    #[test]
    fn set_agent_groups_modes() {
        let db = db();
        for g in ["default", "web", "db"] {
            ok(&db, &format!("global insert-agent-group {g}"));
        }
        add_agent(&db, 1, "a", &["default"]);
        let groups = |db: &crate::store::EmbeddedDb| {
            json(&ok(
                db,
                r#"global sync-agent-groups-get {"condition":"all"}"#,
            ))[0]["data"][0]["groups"]
                .clone()
        };

        ok(
            &db,
            r#"global set-agent-groups {"mode":"append","data":[{"id":1,"groups":["web"]}]}"#,
        );
        assert_eq!(groups(&db), json(r#"["default","web"]"#));
        ok(
            &db,
            r#"global set-agent-groups {"mode":"empty_only","data":[{"id":1,"groups":["db"]}]}"#,
        );
        assert_eq!(groups(&db), json(r#"["default","web"]"#));
        ok(
            &db,
            r#"global set-agent-groups {"mode":"remove","data":[{"id":1,"groups":["default","web"]}]}"#,
        );
        assert_eq!(
            groups(&db),
            json(r#"["default"]"#),
            "an agent left without groups returns to default"
        );
        ok(
            &db,
            r#"global set-agent-groups {"mode":"override","sync_status":"syncreq","data":[{"id":1,"groups":["db","web"]}]}"#,
        );
        assert_eq!(groups(&db), json(r#"["db","web"]"#));
        let agent = &json(&ok(&db, "global get-agent-info 1"))[0];
        assert_eq!(agent["group"], "db,web");
        assert_eq!(agent["group_hash"], group_hash("db,web").as_str());
        assert_eq!(agent["group_sync_status"], "syncreq");
    }

    #[test]
    fn set_agent_groups_errors() {
        let db = db();
        ok(&db, "global insert-agent-group default");
        assert_eq!(
            q(&db, "global set-agent-groups {").to_text(),
            "err Invalid JSON syntax, near '{'"
        );
        assert_eq!(
            q(&db, r#"global set-agent-groups {"mode":"append"}"#).to_text(),
            "err Invalid JSON data, missing required fields"
        );
        assert_eq!(
            q(&db, r#"global set-agent-groups {"mode":"merge","data":[]}"#).to_text(),
            "err Invalid mode 'merge' in set_agent_groups command"
        );
        let failed = "err An error occurred during the set of the groups";
        // Unknown group, unknown agent without a name, invalid group name.
        add_agent(&db, 1, "a", &["default"]);
        assert_eq!(
            q(
                &db,
                r#"global set-agent-groups {"mode":"append","data":[{"id":1,"groups":["nope"]}]}"#
            )
            .to_text(),
            failed
        );
        assert_eq!(q(&db, r#"global set-agent-groups {"mode":"override","data":[{"id":9,"groups":["default"]}]}"#).to_text(), failed);
        assert_eq!(
            q(
                &db,
                r#"global set-agent-groups {"mode":"append","data":[{"id":1,"groups":["../x"]}]}"#
            )
            .to_text(),
            failed
        );
    }

    #[test]
    fn worker_override_creates_missing_agents_and_needs_names() {
        let db = db();
        db.set_worker_node(true);
        ok(&db, "global insert-agent-group default");
        ok(
            &db,
            r#"global set-agent-groups {"mode":"override","sync_status":"synced","data":[{"id":7,"name":"new","groups":["default"]}]}"#,
        );
        let agent = &json(&ok(&db, "global get-agent-info 7"))[0];
        assert_eq!(agent["name"], "new");
        assert_eq!(agent["ip"], "0.0.0.0");
        assert_eq!(agent["connection_status"], "never_connected");
        assert_eq!(agent["group"], "default");
        assert_eq!(
            q(&db, r#"global set-agent-groups {"mode":"override","data":[{"id":8,"groups":["default"]}]}"#).to_text(),
            "err An error occurred during the set of the groups"
        );
    }

    #[test]
    fn recalculate_rebuilds_hashes() {
        let db = db();
        add_agent(&db, 1, "a", &["default"]);
        db.with_tx(|tx, _| tx.execute("UPDATE agent SET `group` = NULL, group_hash = NULL", []))
            .expect("tx")
            .expect("update");
        ok(&db, "global recalculate-agent-group-hashes");
        let agent = &json(&ok(&db, "global get-agent-info 1"))[0];
        assert_eq!(agent["group"], "default");
        assert_eq!(agent["group_hash"], group_hash("default").as_str());
    }

    #[test]
    fn insert_group_refuses_duplicates_and_bad_names() {
        let db = db();
        ok(&db, "global insert-agent-group web");
        assert_eq!(
            q(&db, "global insert-agent-group web").to_text(),
            "err Error inserting group in global.db."
        );
        assert_eq!(
            q(&db, "global insert-agent-group a/b").to_text(),
            "err Error inserting group in global.db."
        );
    }
}
