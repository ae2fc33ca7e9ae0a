//! Results as the stock JSON encoder writes them, so the stock API and `cluster_control` decode
//! them unchanged: `{"__wazuh_result__": {"__class__", "__object__"}}` for results and
//! `{"__wazuh_exception__": ...}` for errors (see [`crate::proto::wazuh_error`]).

use serde_json::{json, Value};

/// A plain result (`WazuhResult`): the function returned a dictionary.
pub fn wazuh_result(dikt: Value) -> Value {
    json!({"__wazuh_result__": {"__class__": "WazuhResult",
        "__object__": {"str_priority": null, "result": dikt}}})
}

/// An item that failed, with the error it failed with.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedItem {
    /// `WazuhError`, `WazuhResourceNotFound`, ...
    pub class: &'static str,
    pub code: u32,
    pub title: &'static str,
    pub message: Option<String>,
    pub id: String,
}

/// A result listing affected items (`AffectedItemsWazuhResult`).
#[derive(Debug, Clone, PartialEq)]
pub struct Affected {
    pub items: Vec<Value>,
    pub total: u64,
    pub all_msg: &'static str,
    pub some_msg: &'static str,
    pub none_msg: &'static str,
    /// How items are compared when results of several nodes are merged (`int`, `str`).
    pub sort_casting: &'static str,
    pub failed: Vec<FailedItem>,
}

impl Affected {
    pub fn new(msgs: [&'static str; 3]) -> Affected {
        Affected {
            items: Vec::new(),
            total: 0,
            all_msg: msgs[0],
            some_msg: msgs[1],
            none_msg: msgs[2],
            sort_casting: "int",
            failed: Vec::new(),
        }
    }

    /// The stock encoding: failed items grouped by error, in first-seen order.
    pub fn encode(self) -> Value {
        let mut keys: Vec<Value> = Vec::new();
        let mut values: Vec<Vec<String>> = Vec::new();
        for f in &self.failed {
            let key = json!({"__class__": f.class, "__object__": {
                "type": "about:blank", "title": f.title, "code": f.code,
                "extra_message": f.message, "extra_remediation": null, "cmd_error": false,
                "dapi_errors": {}, "ids": []}});
            match keys.iter().position(|k| *k == key) {
                Some(i) => values[i].push(f.id.clone()),
                None => {
                    keys.push(key);
                    values.push(vec![f.id.clone()]);
                }
            }
        }
        let failed_total: usize = values.iter().map(Vec::len).sum();
        json!({"__wazuh_result__": {"__class__": "AffectedItemsWazuhResult", "__object__": {
            "affected_items": self.items,
            "sort_fields": null,
            "sort_casting": [self.sort_casting],
            "sort_ascending": [true],
            "total_affected_items": self.total,
            "total_failed_items": failed_total,
            "dikt": {},
            "all_msg": self.all_msg,
            "some_msg": self.some_msg,
            "none_msg": self.none_msg,
            "failed_items_keys": keys,
            "failed_items_values": values,
        }}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_items_of_one_error_share_a_key() {
        let mut a = Affected::new(["all", "some", "none"]);
        a.items.push(json!({"name": "master"}));
        a.total = 1;
        for id in ["w9", "w8"] {
            a.failed.push(FailedItem {
                class: "WazuhResourceNotFound",
                code: 1730,
                title: "Resource Not Found",
                message: None,
                id: id.into(),
            });
        }
        let v = a.encode();
        let o = &v["__wazuh_result__"]["__object__"];
        assert_eq!(o["total_failed_items"], 2);
        assert_eq!(o["failed_items_values"], json!([["w9", "w8"]]));
        assert_eq!(o["failed_items_keys"][0]["__object__"]["code"], 1730);
    }
}
