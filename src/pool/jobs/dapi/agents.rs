//! The agent functions answered natively from the agent database (embedded or a real wazuh-db,
//! through read-only `global sql`): the agents overview `cluster_control -a` asks for, the API's
//! `GET /agents` and `GET /agents/summary/status`. Arguments, fields and result shapes are the
//! framework's (`wazuh/core/agent.py`, `wazuh/agent.py`); what the native reading does not cover
//! (nested `q` queries, version-aware sorting) is refused with an error that says so.

use serde_json::{json, Map, Value};

use crate::pool::jobs::agents::listing::{quoted, select};
use crate::pool::jobs::agents::AgentEnv;
use crate::proto::dapi::encode::{wazuh_result, Affected, FailedItem};
use crate::proto::dapi::scope::{scope, Scope};
use crate::proto::wazuh_error::WazuhError;

/// The API's agent fields and the columns behind them (`Agent.fields` of the framework).
const FIELDS: [(&str, &str); 25] = [
    ("id", "id"),
    ("name", "name"),
    ("ip", "coalesce(ip,register_ip)"),
    ("status", "connection_status"),
    ("os.name", "os_name"),
    ("os.version", "os_version"),
    ("os.platform", "os_platform"),
    ("version", "version"),
    ("manager", "manager_host"),
    ("dateAdd", "date_add"),
    ("group", "`group`"),
    ("mergedSum", "merged_sum"),
    ("configSum", "config_sum"),
    ("os.codename", "os_codename"),
    ("os.major", "os_major"),
    ("os.minor", "os_minor"),
    ("os.uname", "os_uname"),
    ("os.arch", "os_arch"),
    ("os.build", "os_build"),
    ("node_name", "node_name"),
    ("lastKeepAlive", "last_keepalive"),
    ("internal_key", "internal_key"),
    ("registerIP", "register_ip"),
    ("disconnection_time", "disconnection_time"),
    ("group_config_status", "group_config_status"),
];

/// The framework's default page.
const DATABASE_LIMIT: u64 = 500;

/// Rows asked for per statement at first; halved when a reply is cut (a real wazuh-db's 64 KiB).
const ROWS_PER_QUERY: u64 = 1024;

/// Statements one answer may run.
const QUERIES_MAX: usize = 4096;

fn column(field: &str) -> Option<&'static str> {
    FIELDS.iter().find(|(f, _)| *f == field).map(|(_, c)| *c)
}

fn bad(code: u32, extra: impl Into<String>) -> WazuhError {
    WazuhError::with_extra(code, extra)
}

/// A listing query built from the function's arguments.
struct Listing {
    condition: String,
    order: String,
    offset: u64,
    limit: Option<u64>,
    fields: Vec<&'static str>,
}

impl Listing {
    fn new(kwargs: &Map<String, Value>, agents: &Scope) -> Result<Listing, WazuhError> {
        let mut conditions = vec!["1".to_string()];
        match agents {
            Scope::All => {}
            Scope::Only(ids) => conditions.push(format!("id IN ({})", id_list(ids.iter())?)),
            Scope::Except(ids) => conditions.push(format!("id NOT IN ({})", id_list(ids.iter())?)),
        }
        if let Some(Value::Object(filters)) = kwargs.get("filters") {
            for (name, value) in filters {
                if let Some(c) = filter_condition(name, value)? {
                    conditions.push(c);
                }
            }
        }
        if let Some(q) = kwargs
            .get("q")
            .and_then(Value::as_str)
            .filter(|q| !q.is_empty())
        {
            conditions.push(query_condition(q)?);
        }
        if let Some(search) = kwargs.get("search").filter(|s| !s.is_null()) {
            conditions.push(search_condition(search)?);
        }
        let offset = match kwargs.get("offset") {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_u64().ok_or_else(|| bad(1400, format!("{v}")))?,
        };
        let limit = match kwargs.get("limit") {
            None => Some(DATABASE_LIMIT),
            Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(0) => return Err(WazuhError::new(1406)),
                Some(n) => Some(n),
                None => return Err(bad(1401, format!("{v}"))),
            },
        };
        Ok(Listing {
            condition: conditions.join(" AND "),
            order: order(kwargs.get("sort"))?,
            offset,
            limit,
            fields: selected(kwargs.get("select"))?,
        })
    }

    fn total(&self, env: &AgentEnv) -> Result<u64, WazuhError> {
        let rows = rows(
            env,
            &format!("SELECT COUNT(*) AS n FROM agent WHERE {}", self.condition),
        )?;
        Ok(rows
            .first()
            .and_then(|r| r.get("n"))
            .and_then(Value::as_u64)
            .unwrap_or(0))
    }

    /// The items of the page, formatted as the framework formats them.
    fn items(&self, env: &AgentEnv) -> Result<Vec<Value>, WazuhError> {
        let columns: Vec<String> = self
            .fields
            .iter()
            .map(|f| format!("{} AS \"{f}\"", column(f).unwrap_or("NULL")))
            .collect();
        let mut items = Vec::new();
        let mut per_query = ROWS_PER_QUERY;
        for _ in 0..QUERIES_MAX {
            let want = match self.limit {
                Some(limit) => per_query.min(limit - items.len() as u64),
                None => per_query,
            };
            if want == 0 {
                break;
            }
            let statement = format!(
                "SELECT {} FROM agent WHERE {} ORDER BY {} LIMIT {want} OFFSET {}",
                columns.join(", "),
                self.condition,
                self.order,
                self.offset + items.len() as u64
            );
            let got = match select(env, &statement).map_err(|e| bad(2007, e))? {
                Ok(rows) => rows,
                Err(_) if per_query > 1 => {
                    per_query /= 2;
                    continue;
                }
                Err(why) => return Err(bad(2007, why)),
            };
            let n = got.len() as u64;
            items.extend(got.iter().map(format_item));
            if n < want {
                return Ok(items);
            }
        }
        if self.limit.is_some_and(|l| items.len() as u64 >= l) {
            return Ok(items);
        }
        Err(bad(
            2007,
            format!("the listing needed more than {QUERIES_MAX} database queries"),
        ))
    }
}

fn rows(env: &AgentEnv, statement: &str) -> Result<Vec<Value>, WazuhError> {
    select(env, statement)
        .map_err(|e| bad(2007, e))?
        .map_err(|e| bad(2007, e))
}

/// Agent ids as SQL integers; an id that is not a number is an error of the request.
fn id_list<'a>(ids: impl Iterator<Item = &'a String>) -> Result<String, WazuhError> {
    let mut list = Vec::new();
    for id in ids {
        let n: u32 = id
            .parse()
            .map_err(|_| bad(1701, format!("'{id}' is not an agent id")))?;
        list.push(n.to_string());
    }
    Ok(if list.is_empty() {
        "NULL".into()
    } else {
        list.join(",")
    })
}

/// Filter values: a list, or a string of comma-separated values; `all` selects everything.
fn filter_values(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().flat_map(filter_values).collect(),
        Value::String(s) => s.split(',').map(str::to_string).collect(),
        Value::Null => Vec::new(),
        other => vec![other.to_string()],
    }
}

fn filter_condition(name: &str, value: &Value) -> Result<Option<String>, WazuhError> {
    let values = filter_values(value);
    if values.is_empty() || values.iter().any(|v| v == "all") {
        return Ok(None);
    }
    if name == "older_than" {
        return Err(bad(1000, "the older_than filter needs the Wazuh framework"));
    }
    let column = column(name).ok_or_else(|| bad(1408, format!("unknown filter field '{name}'")))?;
    let list: Vec<String> = values
        .iter()
        .map(|v| {
            if v == "null" {
                "NULL".into()
            } else {
                literal(name, v)
            }
        })
        .collect();
    Ok(Some(format!("{column} IN ({})", list.join(", "))))
}

fn literal(field: &str, value: &str) -> String {
    match (field, value.parse::<i64>()) {
        ("id", Ok(n)) => n.to_string(),
        _ => quoted(value),
    }
}

/// `q` as the API writes it, without parentheses: `;` is AND, `,` is OR, operators `=`, `!=`,
/// `<`, `>`, `~` (contains).
fn query_condition(q: &str) -> Result<String, WazuhError> {
    if q.contains('(') || q.contains(')') {
        return Err(bad(
            1407,
            "queries with parentheses need the Wazuh framework",
        ));
    }
    let mut ands = Vec::new();
    for conjunct in q.split(';') {
        let mut ors = Vec::new();
        for term in conjunct.split(',') {
            let (field, op, value) = ["!=", "=", "<", ">", "~"]
                .iter()
                .find_map(|op| term.split_once(op).map(|(f, v)| (f, *op, v)))
                .ok_or_else(|| bad(1407, format!("'{term}'")))?;
            let column =
                column(field).ok_or_else(|| bad(1408, format!("unknown field '{field}'")))?;
            ors.push(match op {
                "~" => format!("{column} LIKE {}", quoted(&format!("%{value}%"))),
                _ => format!("{column} {op} {}", literal(field, value)),
            });
        }
        ands.push(format!("({})", ors.join(" OR ")));
    }
    Ok(ands.join(" AND "))
}

fn search_condition(search: &Value) -> Result<String, WazuhError> {
    let value = search
        .get("value")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(1407, "search needs a 'value'"))?;
    let pattern = quoted(&format!("%{value}%"));
    let any: Vec<String> = [
        "id",
        "name",
        "coalesce(ip,register_ip)",
        "version",
        "node_name",
        "os_name",
    ]
    .iter()
    .map(|c| format!("{c} LIKE {pattern}"))
    .collect();
    let condition = format!("({})", any.join(" OR "));
    Ok(
        if search
            .get("negation")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            format!("NOT {condition}")
        } else {
            condition
        },
    )
}

fn order(sort: Option<&Value>) -> Result<String, WazuhError> {
    let Some(sort) = sort.filter(|s| !s.is_null()) else {
        return Ok("id ASC".into());
    };
    let direction = match sort.get("order").and_then(Value::as_str).unwrap_or("asc") {
        "asc" => "ASC",
        "desc" => "DESC",
        other => return Err(bad(1407, format!("sort order '{other}'"))),
    };
    let mut terms = Vec::new();
    for field in sort
        .get("fields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = field.as_str().unwrap_or_default();
        let column = column(name).ok_or_else(|| bad(1403, format!("'{name}'")))?;
        terms.push(format!("{column} {direction}"));
    }
    terms.push("id ASC".into());
    Ok(terms.join(", "))
}

/// The selected fields (always with `id`); by default every field but the agent's key.
fn selected(select: Option<&Value>) -> Result<Vec<&'static str>, WazuhError> {
    let names: Vec<String> = match select.filter(|s| !s.is_null()) {
        None => {
            return Ok(FIELDS
                .iter()
                .map(|(f, _)| *f)
                .filter(|f| *f != "internal_key")
                .collect())
        }
        Some(v) => filter_values(v),
    };
    let mut fields = vec!["id"];
    for name in &names {
        let matching: Vec<&'static str> = FIELDS
            .iter()
            .map(|(f, _)| *f)
            .filter(|f| {
                f == name
                    || f.strip_prefix(name.as_str())
                        .is_some_and(|r| r.starts_with('.'))
            })
            .collect();
        if matching.is_empty() {
            return Err(bad(1724, name.to_string()));
        }
        for f in matching {
            if !fields.contains(&f) {
                fields.push(f);
            }
        }
    }
    Ok(fields)
}

/// One row as the framework returns it: id zero-padded, dates as the encoder's datetimes, groups
/// as a list, `os.*` nested, absent values left out.
fn format_item(row: &Value) -> Value {
    let mut item = Map::new();
    let mut os = Map::new();
    let Some(fields) = row.as_object() else {
        return Value::Object(item);
    };
    for (key, value) in fields {
        if value.is_null() {
            continue;
        }
        let formatted = match key.as_str() {
            "id" => json!(format!("{:03}", value.as_i64().unwrap_or(0))),
            "dateAdd" | "lastKeepAlive" | "disconnection_time" => {
                let secs = value.as_i64().unwrap_or(0);
                if secs == 0 && key == "disconnection_time" {
                    continue;
                }
                match chrono::DateTime::from_timestamp(secs, 0) {
                    Some(at) => {
                        json!({"__wazuh_datetime__": at.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()})
                    }
                    None => value.clone(),
                }
            }
            "group" => json!(value
                .as_str()
                .unwrap_or_default()
                .split(',')
                .collect::<Vec<_>>()),
            _ => value.clone(),
        };
        match key.strip_prefix("os.") {
            Some(sub) => {
                os.insert(sub.to_string(), formatted);
            }
            None => {
                item.insert(key.clone(), formatted);
            }
        }
    }
    if !os.is_empty() {
        item.insert("os".into(), Value::Object(os));
    }
    Value::Object(item)
}

/// `Agent.get_agents_overview`: `{"items", "totalItems"}` as a plain result.
pub(super) fn overview(env: &AgentEnv, request: &Map<String, Value>) -> Result<Value, WazuhError> {
    let kwargs = kwargs(request);
    let listing = Listing::new(&kwargs, &Scope::All)?;
    let items = listing.items(env)?;
    let total = listing.total(env)?;
    Ok(wazuh_result(json!({"items": items, "totalItems": total})))
}

/// `wazuh.agent.get_agents`: affected items, unknown and forbidden ids as failed items.
pub(super) fn get_agents(
    env: &AgentEnv,
    request: &Map<String, Value>,
) -> Result<Value, WazuhError> {
    let kwargs = kwargs(request);
    let permitted = scope(request, "agent:read", "agent:id:")?;
    let mut result = Affected::new([
        "All selected agents information was returned",
        "Some agents information was not returned",
        "No agent information was returned",
    ]);
    let asked: Option<Vec<String>> = kwargs
        .get("agent_list")
        .map(filter_values)
        .filter(|l| !l.is_empty() && !l.iter().any(|a| a == "*"));
    let agents = match asked {
        None => permitted,
        Some(list) => {
            let normalized: Vec<String> = list
                .iter()
                .map(|a| {
                    a.parse::<u32>()
                        .map_or_else(|_| a.clone(), |n| format!("{n:03}"))
                })
                .collect();
            let known = existing(env, &normalized)?;
            let mut wanted = std::collections::BTreeSet::new();
            for id in normalized {
                if !known.contains(&id) {
                    result
                        .failed
                        .push(not_found(1701, "Agent does not exist", &id));
                } else if !permitted.allows(&id) {
                    result.failed.push(FailedItem {
                        class: "WazuhPermissionError",
                        code: 4000,
                        title: "Permission Denied",
                        message: None,
                        id,
                    });
                } else {
                    wanted.insert(id);
                }
            }
            Scope::Only(wanted)
        }
    };
    let listing = Listing::new(&kwargs, &agents)?;
    result.items = listing.items(env)?;
    result.total = listing.total(env)?;
    Ok(result.encode())
}

/// `wazuh.agent.get_agents_summary_status`: counts by connection and group-configuration status.
pub(super) fn summary_status(
    env: &AgentEnv,
    request: &Map<String, Value>,
) -> Result<Value, WazuhError> {
    let permitted = scope(request, "agent:read", "agent:id:")?;
    let mut condition = "id > 0".to_string();
    match &permitted {
        Scope::All => {}
        Scope::Only(ids) => condition.push_str(&format!(" AND id IN ({})", id_list(ids.iter())?)),
        Scope::Except(ids) => {
            condition.push_str(&format!(" AND id NOT IN ({})", id_list(ids.iter())?))
        }
    }
    let mut connection =
        json!({"active": 0, "disconnected": 0, "never_connected": 0, "pending": 0, "total": 0});
    let mut configuration = json!({"synced": 0, "not_synced": 0, "total": 0});
    let mut total = 0;
    for row in rows(env, &format!("SELECT connection_status AS s, COUNT(*) AS n FROM agent WHERE {condition} GROUP BY connection_status"))? {
        let n = row["n"].as_u64().unwrap_or(0);
        if let Some(s) = row["s"].as_str() {
            connection[s] = n.into();
            total += n;
        }
    }
    for row in rows(env, &format!("SELECT group_config_status AS s, COUNT(*) AS n FROM agent WHERE {condition} GROUP BY group_config_status"))? {
        let key = match row["s"].as_str() {
            Some("not synced") => "not_synced",
            Some(other) => other,
            None => continue,
        };
        configuration[key] = row["n"].as_u64().unwrap_or(0).into();
    }
    connection["total"] = total.into();
    configuration["total"] = total.into();
    Ok(wazuh_result(
        json!({"data": {"connection": connection, "configuration": configuration}}),
    ))
}

/// The node each agent reports to, for a `distributed_master` request (`None`: every agent);
/// ids the database does not know come under the empty name.
pub(super) fn solve(
    env: &AgentEnv,
    agents: Option<&[String]>,
) -> Result<Vec<(String, Vec<String>)>, WazuhError> {
    let condition = match agents {
        None => "id > 0".to_string(),
        Some(list) => format!(
            "id IN ({})",
            id_list(list.iter().filter(|a| a.parse::<u32>().is_ok()))?
        ),
    };
    let mut by_node: Vec<(String, Vec<String>)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut last = -1i64;
    loop {
        let got = rows(env, &format!("SELECT id, node_name FROM agent WHERE {condition} AND id > {last} ORDER BY id LIMIT 4096"))?;
        for row in &got {
            let id = row["id"].as_i64().unwrap_or(0);
            last = id;
            let node = row["node_name"].as_str().unwrap_or_default().to_string();
            let id = format!("{id:03}");
            seen.insert(id.clone());
            match by_node.iter_mut().find(|(n, _)| *n == node) {
                Some((_, ids)) => ids.push(id),
                None => by_node.push((node, vec![id])),
            }
        }
        if got.len() < 4096 {
            break;
        }
    }
    if let Some(list) = agents {
        let unknown: Vec<String> = list
            .iter()
            .map(|a| {
                a.parse::<u32>()
                    .map_or_else(|_| a.clone(), |n| format!("{n:03}"))
            })
            .filter(|a| !seen.contains(a))
            .collect();
        if !unknown.is_empty() {
            by_node.push((String::new(), unknown));
        }
    }
    Ok(by_node)
}

fn existing(
    env: &AgentEnv,
    ids: &[String],
) -> Result<std::collections::BTreeSet<String>, WazuhError> {
    let numeric: Vec<&String> = ids.iter().filter(|a| a.parse::<u32>().is_ok()).collect();
    let got = rows(
        env,
        &format!(
            "SELECT id FROM agent WHERE id IN ({})",
            id_list(numeric.into_iter())?
        ),
    )?;
    Ok(got
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .map(|id| format!("{id:03}"))
        .collect())
}

fn not_found(code: u32, _what: &str, id: &str) -> FailedItem {
    FailedItem {
        class: "WazuhResourceNotFound",
        code,
        title: "Resource Not Found",
        message: None,
        id: id.to_string(),
    }
}

pub(super) fn kwargs(request: &Map<String, Value>) -> Map<String, Value> {
    request
        .get("f_kwargs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}
