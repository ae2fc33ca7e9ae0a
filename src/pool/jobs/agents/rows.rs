//! Reading agent rows by id with `global sql`, which wazuh-db and the embedded database answer
//! alike: the agent-info apply looks up who reports each agent, the 4.3 integrity check which
//! agents exist.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::store::{WazuhDb, WdbStatus};

/// Rows of `agent` by id, with `global sql` (read-only, answered by wazuh-db and the embedded
/// database alike). Batches halve when a reply is refused or cut (too large for the socket).
pub(crate) fn lookup(
    db: &dyn WazuhDb,
    mut ids: Vec<i64>,
    columns: &str,
    batch: usize,
) -> Result<HashMap<i64, Map<String, Value>>, String> {
    ids.sort_unstable();
    ids.dedup();
    let mut rows = HashMap::with_capacity(ids.len());
    let mut rest = &ids[..];
    let mut size = batch.max(1);
    while !rest.is_empty() {
        let take = size.min(rest.len());
        let list: Vec<String> = rest[..take].iter().map(i64::to_string).collect();
        let command = format!(
            "global sql SELECT {columns} FROM agent WHERE id IN ({})",
            list.join(",")
        );
        let reply = db.query(&command).map_err(|e| e.to_string())?;
        let refused = match (reply.status, parse_array(&reply.payload)) {
            (WdbStatus::Ok, Some(found)) => {
                for row in found {
                    if let Value::Object(row) = row {
                        if let Some(id) = row.get("id").and_then(Value::as_i64) {
                            rows.insert(id, row);
                        }
                    }
                }
                rest = &rest[take..];
                continue;
            }
            (WdbStatus::Ok, None) => "the answer is not a JSON array".to_owned(),
            (status, _) => format!("{status} {}", reply.payload),
        };
        if take == 1 {
            return Err(refused);
        }
        size = take / 2;
    }
    Ok(rows)
}

/// A JSON array text, or `None`.
pub(crate) fn parse_array(text: &str) -> Option<Vec<Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Array(items)) => Some(items),
        _ => None,
    }
}
