//! One answer from the answers of several nodes to a `distributed_master` request, by the stock
//! rules: results are combined left to right (affected items concatenated and counted, failed
//! items joined; dictionaries merged key by key, numbers added, lists joined, differing strings
//! joined with `|`); an error that names items becomes failed items of a result, any other error
//! is the answer.

use serde_json::{Map, Value};

/// The combined answer (encoded) of `parts` (encoded), for a request with arguments `kwargs`.
pub fn merge(parts: Vec<Value>, kwargs: &Map<String, Value>) -> Value {
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else {
        return Value::Null;
    };
    let merged = parts.fold(first, or);
    limit_items(merged, kwargs)
}

fn class(v: &Value) -> Option<(&'static str, &str)> {
    for marker in ["__wazuh_result__", "__wazuh_exception__"] {
        if let Some(class) = v
            .get(marker)
            .and_then(|o| o.get("__class__"))
            .and_then(Value::as_str)
        {
            return Some((marker, class));
        }
    }
    None
}

fn object_mut<'a>(v: &'a mut Value, marker: &str) -> Option<&'a mut Map<String, Value>> {
    v.get_mut(marker)?.get_mut("__object__")?.as_object_mut()
}

fn or(a: Value, b: Value) -> Value {
    match (class(&a), class(&b)) {
        (Some(("__wazuh_exception__", _)), Some(("__wazuh_exception__", _))) => a,
        (Some(("__wazuh_exception__", _)), _) => or(b, a),
        (
            Some(("__wazuh_result__", "AffectedItemsWazuhResult")),
            Some(("__wazuh_exception__", _)),
        ) => with_error_items(a, b),
        (_, Some(("__wazuh_exception__", _))) => b,
        (
            Some(("__wazuh_result__", "AffectedItemsWazuhResult")),
            Some(("__wazuh_result__", "AffectedItemsWazuhResult")),
        ) => affected_or(a, b),
        (Some(("__wazuh_result__", _)), Some(("__wazuh_result__", _))) => {
            let mut a = a;
            let other = b["__wazuh_result__"]["__object__"]["result"].clone();
            if let Some(result) =
                object_mut(&mut a, "__wazuh_result__").and_then(|o| o.get_mut("result"))
            {
                merge_value(result, other);
            }
            a
        }
        _ => a,
    }
}

/// An error naming items (`ids`) joins the result as failed items; without ids it is the answer.
fn with_error_items(mut result: Value, error: Value) -> Value {
    let exc = &error["__wazuh_exception__"];
    let ids: Vec<Value> = exc["__object__"]["ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if ids.is_empty() {
        return error;
    }
    if let Some(o) = object_mut(&mut result, "__wazuh_result__") {
        push_failed(o, exc.clone(), ids);
    }
    result
}

fn push_failed(o: &mut Map<String, Value>, key: Value, ids: Vec<Value>) {
    let n = ids.len() as u64;
    let keys = o
        .entry("failed_items_keys")
        .or_insert_with(|| Value::Array(vec![]));
    let position = keys
        .as_array()
        .and_then(|k| k.iter().position(|x| *x == key));
    let index = match position {
        Some(i) => i,
        None => {
            if let Some(k) = keys.as_array_mut() {
                k.push(key);
            }
            keys.as_array().map_or(0, |k| k.len() - 1)
        }
    };
    let values = o
        .entry("failed_items_values")
        .or_insert_with(|| Value::Array(vec![]));
    if let Some(v) = values.as_array_mut() {
        while v.len() <= index {
            v.push(Value::Array(vec![]));
        }
        if let Some(list) = v[index].as_array_mut() {
            list.extend(ids);
        }
    }
    let total = o
        .get("total_failed_items")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    o.insert("total_failed_items".into(), (total + n).into());
}

fn affected_or(mut a: Value, b: Value) -> Value {
    let Some(other) = b["__wazuh_result__"]["__object__"].as_object().cloned() else {
        return a;
    };
    let Some(o) = object_mut(&mut a, "__wazuh_result__") else {
        return a;
    };
    if let (Some(Value::Array(items)), Some(Value::Array(more))) =
        (o.get_mut("affected_items"), other.get("affected_items"))
    {
        items.extend(more.iter().cloned());
    }
    let sum = |key: &str, o: &Map<String, Value>| {
        o.get(key).and_then(Value::as_u64).unwrap_or(0)
            + other.get(key).and_then(Value::as_u64).unwrap_or(0)
    };
    let total = sum("total_affected_items", o);
    o.insert("total_affected_items".into(), total.into());
    let keys = other.get("failed_items_keys").and_then(Value::as_array);
    let values = other.get("failed_items_values").and_then(Value::as_array);
    if let (Some(keys), Some(values)) = (keys, values) {
        for (key, ids) in keys.iter().zip(values) {
            push_failed(o, key.clone(), ids.as_array().cloned().unwrap_or_default());
        }
    }
    if let (Some(dikt), Some(more)) = (o.get_mut("dikt"), other.get("dikt")) {
        merge_value(dikt, more.clone());
    }
    a
}

/// The stock merge of two dictionaries' values, in place.
fn merge_value(into: &mut Value, other: Value) {
    match (into, other) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in b {
                match a.get_mut(&key) {
                    Some(existing) => merge_value(existing, value),
                    None => {
                        a.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for item in b {
                if !a.contains(&item) {
                    a.push(item);
                }
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            let sum = match (a.as_i64(), b.as_i64()) {
                (Some(x), Some(y)) => Value::from(x.saturating_add(y)),
                _ => Value::from(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0)),
            };
            if let Value::Number(n) = sum {
                *a = n;
            }
        }
        (Value::String(a), Value::String(b)) if *a != b => {
            *a = format!("{a}|{b}");
        }
        _ => {}
    }
}

/// A plain result with `data.items` keeps the requested page of them (`offset`, `limit`), as the
/// stock master does after merging.
fn limit_items(mut merged: Value, kwargs: &Map<String, Value>) -> Value {
    let offset = kwargs.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    let limit = kwargs.get("limit").and_then(Value::as_u64).unwrap_or(500) as usize;
    if let Some(Value::Array(items)) = object_mut(&mut merged, "__wazuh_result__")
        .and_then(|o| o.get_mut("result"))
        .and_then(|r| r.get_mut("data"))
        .and_then(|d| d.get_mut("items"))
    {
        let end = offset.saturating_add(limit).min(items.len());
        *items = items
            .get(offset.min(end)..end)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::dapi::encode::{wazuh_result, Affected};
    use crate::proto::wazuh_error::WazuhError;
    use serde_json::json;

    fn affected(names: &[&str]) -> Value {
        let mut a = Affected::new(["all", "some", "none"]);
        a.items = names.iter().map(|n| json!({"name": n})).collect();
        a.total = names.len() as u64;
        a.encode()
    }

    #[test]
    fn affected_items_of_every_node_are_joined_and_counted() {
        let merged = merge(
            vec![affected(&["master"]), affected(&["w1", "w2"])],
            &Map::new(),
        );
        let o = &merged["__wazuh_result__"]["__object__"];
        assert_eq!(o["total_affected_items"], 3);
        assert_eq!(o["affected_items"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn an_error_with_ids_becomes_failed_items_and_one_without_is_the_answer() {
        let mut named = WazuhError::with_extra(3022, "worker9").to_json();
        named["__wazuh_exception__"]["__object__"]["ids"] = json!(["worker9"]);
        let merged = merge(vec![affected(&["master"]), named], &Map::new());
        let o = &merged["__wazuh_result__"]["__object__"];
        assert_eq!(o["total_failed_items"], 1);
        assert_eq!(o["failed_items_values"], json!([["worker9"]]));
        let bare = WazuhError::new(3021).to_json();
        assert_eq!(
            merge(vec![bare.clone(), affected(&["a"])], &Map::new()),
            bare
        );
    }

    #[test]
    fn plain_results_merge_key_by_key() {
        let a = wazuh_result(json!({"items": [1], "totalItems": 1, "node": "a"}));
        let b = wazuh_result(json!({"items": [2], "totalItems": 1, "node": "b"}));
        let merged = merge(vec![a, b], &Map::new());
        assert_eq!(
            merged["__wazuh_result__"]["__object__"]["result"],
            json!({"items": [1, 2], "totalItems": 2, "node": "a|b"})
        );
    }
}
