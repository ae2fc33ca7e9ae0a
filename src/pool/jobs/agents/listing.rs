//! Agent listings from the database: pages for `cluster_control -a` (`get_agents`) and active
//! agents per node for `get_health`.
//!
//! Both use read-only `global sql` statements, which embedded and real wazuh-db answer alike. A
//! real wazuh-db cuts a reply at its 64 KiB buffer (the JSON then no longer parses), so rows are
//! read in sub-pages that fit, and a sub-page that does not is read again at half the size.

use serde_json::{json, Map, Value};

use super::AgentEnv;
use crate::proto::agent_jobs::AGENT_STATUSES;
use crate::proto::jobs::AgentOutcome;

/// Rows asked for per statement at first: about 20 KB of JSON for ordinary agents.
const ROWS_PER_QUERY: u64 = 128;

/// Statements one listing may run (a page of 1,000 agents needs about 8).
const QUERIES_MAX: usize = 1024;

/// wazuh-db refuses commands of 65,536 bytes or more.
const COMMAND_BYTES_MAX: usize = 65_535;

/// Nodes read per statement when counting active agents, and statements at most.
const COUNT_ROWS_PER_QUERY: u64 = 500;
const COUNT_QUERIES_MAX: u64 = 200;

/// One page of the agent listing: `{"items": [...], "totalItems": n}`, rows in id order, ids
/// zero-padded to three digits and absent values left out, as the agents overview does.
pub(super) fn page(
    env: &AgentEnv,
    offset: u64,
    limit: u64,
    nodes: Option<&[String]>,
    statuses: Option<&[String]>,
) -> Result<AgentOutcome, String> {
    let filter = filter(nodes, statuses)?;
    let total = count(env, &filter)?;
    let mut items = Vec::new();
    let mut rows_per_query = ROWS_PER_QUERY;
    let mut last_id: Option<i64> = None;
    let mut queries = 0;
    while (items.len() as u64) < limit {
        queries += 1;
        if queries > QUERIES_MAX {
            return Err(format!(
                "the agent listing needed more than {QUERIES_MAX} database queries"
            ));
        }
        let want = rows_per_query.min(limit - items.len() as u64);
        // The first statement skips `offset` rows; the next ones continue after the last id read.
        let statement = match last_id {
            None => format!(
                "SELECT id, name, coalesce(ip, register_ip) AS ip, connection_status, version, node_name FROM agent WHERE {filter} ORDER BY id LIMIT {want} OFFSET {offset}"
            ),
            Some(id) => format!(
                "SELECT id, name, coalesce(ip, register_ip) AS ip, connection_status, version, node_name FROM agent WHERE {filter} AND id > {id} ORDER BY id LIMIT {want}"
            ),
        };
        let rows = match select(env, &statement)? {
            Ok(rows) => rows,
            Err(why) if rows_per_query > 1 => {
                let _ = why;
                rows_per_query /= 2;
                continue;
            }
            Err(why) => return Err(why),
        };
        let read = rows.len() as u64;
        for row in rows {
            let id = row
                .get("id")
                .and_then(Value::as_i64)
                .ok_or_else(|| format!("the agent database returned a row without an id: {row}"))?;
            last_id = Some(id);
            items.push(item(id, &row));
        }
        if read < want {
            break;
        }
    }
    let page = json!({"items": items, "totalItems": total});
    Ok(AgentOutcome::Agents {
        page: page.to_string(),
    })
}

/// Active agents per node (agent 000, the manager itself, left out).
pub(super) fn count_active(env: &AgentEnv) -> Result<AgentOutcome, String> {
    let mut per_node = Vec::new();
    for query in 0..COUNT_QUERIES_MAX {
        let offset = query * COUNT_ROWS_PER_QUERY;
        let statement = format!(
            "SELECT node_name, COUNT(*) AS n FROM agent WHERE id > 0 AND connection_status = 'active' GROUP BY node_name ORDER BY node_name LIMIT {COUNT_ROWS_PER_QUERY} OFFSET {offset}"
        );
        let rows = select(env, &statement)??;
        let read = rows.len() as u64;
        for row in rows {
            let (Some(node), Some(n)) = (
                row.get("node_name").and_then(Value::as_str),
                row.get("n").and_then(Value::as_u64),
            ) else {
                continue;
            };
            per_node.push((node.to_string(), n));
        }
        if read < COUNT_ROWS_PER_QUERY {
            return Ok(AgentOutcome::ActiveAgents { per_node });
        }
    }
    Err(format!(
        "more than {} node names among the active agents",
        COUNT_QUERIES_MAX * COUNT_ROWS_PER_QUERY
    ))
}

/// The `WHERE` condition of the filters (node names quoted for SQL; statuses must be known).
fn filter(nodes: Option<&[String]>, statuses: Option<&[String]>) -> Result<String, String> {
    let mut condition = "id >= 0".to_string();
    if let Some(nodes) = nodes {
        if let Some(bad) = nodes.iter().find(|n| n.contains('\0')) {
            return Err(format!("invalid node name {bad:?} in the filter"));
        }
        let list: Vec<String> = nodes.iter().map(|n| quoted(n)).collect();
        condition.push_str(&format!(" AND node_name IN ({})", list.join(", ")));
    }
    if let Some(statuses) = statuses {
        if let Some(bad) = statuses
            .iter()
            .find(|s| !AGENT_STATUSES.contains(&s.as_str()))
        {
            return Err(format!(
                "unknown agent status '{bad}' (valid: {})",
                AGENT_STATUSES.join(", ")
            ));
        }
        let list: Vec<String> = statuses.iter().map(|s| quoted(s)).collect();
        condition.push_str(&format!(" AND connection_status IN ({})", list.join(", ")));
    }
    Ok(condition)
}

/// An SQL string literal.
pub(crate) fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Agents matching the filter.
fn count(env: &AgentEnv, filter: &str) -> Result<u64, String> {
    let rows = select(
        env,
        &format!("SELECT COUNT(*) AS n FROM agent WHERE {filter}"),
    )??;
    rows.first()
        .and_then(|row| row.get("n"))
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("the agent database did not count the agents: {rows:?}"))
}

/// Runs one statement. The outer error ends the job (the database cannot be asked); the inner one
/// is a refused or cut reply, which a smaller sub-page may avoid.
pub(crate) fn select(
    env: &AgentEnv,
    statement: &str,
) -> Result<Result<Vec<Value>, String>, String> {
    let command = format!("global sql {statement}");
    if command.len() > COMMAND_BYTES_MAX {
        return Err(format!(
            "the agent query has {} bytes, more than wazuh-db accepts ({COMMAND_BYTES_MAX}); filter on fewer nodes",
            command.len()
        ));
    }
    let reply = env
        .db
        .query(&command)
        .map_err(|e| format!("could not query the agent database: {e}"))?;
    if reply.status != crate::store::WdbStatus::Ok {
        return Ok(Err(format!(
            "the agent database answered '{}'",
            reply.to_text()
        )));
    }
    Ok(match serde_json::from_str::<Value>(&reply.payload) {
        Ok(Value::Array(rows)) => Ok(rows),
        Ok(other) => Err(format!(
            "the agent database answered {other} where rows were expected"
        )),
        Err(e) => Err(format!(
            "the agent database reply of {} bytes is not complete JSON: {e}",
            reply.payload.len()
        )),
    })
}

/// One listed agent: `id` zero-padded, `connection_status` named `status`, absent values left out.
fn item(id: i64, row: &Value) -> Value {
    let mut item = Map::new();
    item.insert("id".into(), json!(format!("{id:03}")));
    for (column, key) in [
        ("name", "name"),
        ("ip", "ip"),
        ("connection_status", "status"),
        ("version", "version"),
        ("node_name", "node_name"),
    ] {
        if let Some(value) = row.get(column).filter(|v| !v.is_null()) {
            item.insert(key.into(), value.clone());
        }
    }
    Value::Object(item)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::config::Dialect;
    use crate::store::{EmbeddedDb, StoreError, WazuhDb, WdbReply, WdbStatus};

    fn env_with(db: Arc<dyn WazuhDb>) -> AgentEnv {
        AgentEnv {
            db,
            daemons: None,
            dialect: Dialect::V4_14,
            node_name: "master".into(),
            home: PathBuf::from("/nonexistent"),
        }
    }

    fn q(db: &EmbeddedDb, command: &str) {
        let reply = db.query(command).unwrap();
        assert_eq!(reply.status, WdbStatus::Ok, "{command}: {reply:?}");
    }

    /// Agents 1..=n on nodes w1/w2/master; every third active, version only when connected.
    fn populated(n: i64) -> EmbeddedDb {
        let db = EmbeddedDb::in_memory().unwrap();
        for id in 1..=n {
            q(
                &db,
                &format!(
                    r#"global insert-agent {{"id":{id},"name":"agent-{id}","ip":"10.0.{}.{}","date_add":1000}}"#,
                    id / 256,
                    id % 256
                ),
            );
            let node = ["w1", "w2", "master"][(id % 3) as usize];
            let status = match id % 4 {
                0 => "active",
                1 => "disconnected",
                2 => "never_connected",
                _ => "pending",
            };
            if status != "never_connected" {
                let set = format!(
                    r#"[{{"id":{id},"name":"agent-{id}","ip":"10.0.0.1","version":"Wazuh v4.14.7","node_name":"{node}","connection_status":"{status}","last_keepalive":1700000000,"group_config_status":"synced"}}]"#
                );
                q(&db, &format!("global sync-agent-info-set {set}"));
            }
        }
        db
    }

    fn listed(
        env: &AgentEnv,
        offset: u64,
        limit: u64,
        nodes: Option<&[String]>,
        statuses: Option<&[String]>,
    ) -> Value {
        match page(env, offset, limit, nodes, statuses).unwrap() {
            AgentOutcome::Agents { page } => serde_json::from_str(&page).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pages_cover_every_agent_once_in_id_order_including_the_manager() {
        let env = env_with(Arc::new(populated(700)));
        let mut ids = Vec::new();
        let mut offset = 0;
        loop {
            let page = listed(&env, offset, 300, None, None);
            assert_eq!(page["totalItems"], 701);
            let items = page["items"].as_array().unwrap();
            if items.is_empty() {
                break;
            }
            offset += items.len() as u64;
            ids.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_string()));
        }
        assert_eq!(ids.len(), 701);
        assert_eq!(ids[0], "000");
        assert_eq!(ids[1], "001");
        assert_eq!(ids[700], "700");
        let expected: Vec<String> = (0..=700).map(|i| format!("{i:03}")).collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn items_name_the_status_and_leave_out_absent_values() {
        let env = env_with(Arc::new(populated(4)));
        let page = listed(&env, 1, 3, None, None);
        assert_eq!(
            page["items"],
            json!([
                {"id": "001", "name": "agent-1", "ip": "10.0.0.1", "status": "disconnected",
                 "version": "Wazuh v4.14.7", "node_name": "w2"},
                {"id": "002", "name": "agent-2", "ip": "10.0.0.2", "status": "never_connected",
                 "node_name": "unknown"},
                {"id": "003", "name": "agent-3", "ip": "10.0.0.1", "status": "pending",
                 "version": "Wazuh v4.14.7", "node_name": "w1"},
            ])
        );
    }

    #[test]
    fn an_agent_without_an_address_shows_its_registration_address() {
        let db = EmbeddedDb::in_memory().unwrap();
        q(
            &db,
            r#"global insert-agent {"id":1,"name":"a","register_ip":"10.9.8.7","date_add":1000}"#,
        );
        let env = env_with(Arc::new(db));
        assert_eq!(listed(&env, 1, 1, None, None)["items"][0]["ip"], "10.9.8.7");
    }

    #[test]
    fn filters_select_nodes_and_statuses() {
        let env = env_with(Arc::new(populated(120)));
        let w1 = strings(&["w1"]);
        let page = listed(&env, 0, 1000, Some(&w1), None);
        let items = page["items"].as_array().unwrap();
        assert_eq!(page["totalItems"], items.len());
        assert!(items.iter().all(|i| i["node_name"] == "w1"));
        let active = strings(&["active", "pending"]);
        let both = listed(&env, 0, 1000, Some(&strings(&["w1", "w2"])), Some(&active));
        let items = both["items"].as_array().unwrap();
        assert!(!items.is_empty());
        assert!(items.iter().all(|i| ["active", "pending"]
            .contains(&i["status"].as_str().unwrap())
            && ["w1", "w2"].contains(&i["node_name"].as_str().unwrap())));
        let quote = listed(&env, 0, 10, Some(&strings(&["o'brien"])), None);
        assert_eq!(quote["totalItems"], 0);
        let bad = page_err(&env, Some(&strings(&["sleepy"])));
        assert!(bad.contains("unknown agent status 'sleepy'"), "{bad}");
    }

    fn page_err(env: &AgentEnv, statuses: Option<&[String]>) -> String {
        page(env, 0, 10, None, statuses).unwrap_err()
    }

    #[test]
    fn active_agents_are_counted_per_node_without_the_manager() {
        let env = env_with(Arc::new(populated(120)));
        let AgentOutcome::ActiveAgents { per_node } = count_active(&env).unwrap() else {
            panic!("counts");
        };
        // Ids 4, 8, ..., 120 are active: 30 agents spread over the three nodes by id % 3.
        let total: u64 = per_node.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 30);
        let names: Vec<&str> = per_node.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["master", "w1", "w2"]);
    }

    /// A database that cuts replies at a small buffer, as a real wazuh-db cuts at 64 KiB.
    struct Cutting {
        inner: EmbeddedDb,
        max: usize,
    }

    impl WazuhDb for Cutting {
        fn query(&self, command: &str) -> Result<WdbReply, StoreError> {
            let mut reply = self.inner.query(command)?;
            if reply.payload.len() > self.max {
                let mut end = self.max;
                while !reply.payload.is_char_boundary(end) {
                    end -= 1;
                }
                reply.payload.truncate(end);
            }
            Ok(reply)
        }

        fn http(&self, m: &str, p: &str, b: &[u8]) -> Result<(u16, Vec<u8>), StoreError> {
            self.inner.http(m, p, b)
        }
    }

    #[test]
    fn cut_replies_are_read_again_in_smaller_sub_pages() {
        let db = Cutting {
            inner: populated(300),
            max: 2_000,
        };
        let env = env_with(Arc::new(db));
        let all = listed(&env, 0, 1000, None, None);
        assert_eq!(all["totalItems"], 301);
        assert_eq!(all["items"].as_array().unwrap().len(), 301);
        let tiny = env_with(Arc::new(Cutting {
            inner: populated(3),
            max: 5,
        }));
        assert!(page(&tiny, 0, 10, None, None)
            .unwrap_err()
            .contains("not complete JSON"));
    }
}
