//! The distributed-API functions behind `GET /cluster/ruleset/synchronization`: the API first
//! asks the master for its ruleset digests (`get_node_ruleset_integrity`, `local_master`), then
//! every node whether its own digests equal them (`get_ruleset_sync_status`, broadcast).

use serde_json::{json, Map, Value};

use super::agents::kwargs;
use crate::pool::jobs::ruleset::RulesetSource;
use crate::proto::dapi::encode::{wazuh_result, Affected, FailedItem};
use crate::proto::wazuh_error::WazuhError;

fn source(ruleset: Option<&RulesetSource>) -> Result<&RulesetSource, WazuhError> {
    ruleset.ok_or_else(|| WazuhError::with_extra(1000, "this node cannot read its ruleset"))
}

fn digests(ruleset: &RulesetSource) -> Result<Value, String> {
    let hashes = ruleset.hashes()?;
    Ok(Value::Object(
        hashes
            .into_iter()
            .map(|(rel, digest)| (rel, Value::String(digest)))
            .collect(),
    ))
}

/// `get_node_ruleset_integrity`: relative path → digest, as a plain result.
pub(super) fn integrity(ruleset: Option<&RulesetSource>) -> Result<Value, WazuhError> {
    let digests = digests(source(ruleset)?).map_err(|e| WazuhError::with_extra(1000, e))?;
    Ok(wazuh_result(digests))
}

/// `get_ruleset_sync_status(master_md5)`: this node, synced when its digests equal the master's.
pub(super) fn sync_status(
    ruleset: Option<&RulesetSource>,
    request: &Map<String, Value>,
) -> Result<Value, WazuhError> {
    let ruleset = source(ruleset)?;
    let master = kwargs(request)
        .get("master_md5")
        .cloned()
        .unwrap_or(Value::Null);
    let mut result = Affected::new([
        "Nodes ruleset synchronization status was successfully read",
        "Could not read ruleset synchronization status in some nodes",
        "Could not read ruleset synchronization status",
    ]);
    result.sort_casting = "str";
    match digests(ruleset) {
        Ok(own) => {
            result
                .items
                .push(json!({"name": ruleset.node_name(), "synced": own == master}));
            result.total = 1;
        }
        Err(e) => result.failed.push(FailedItem {
            class: "WazuhInternalError",
            code: 1000,
            title: "Wazuh Internal Error",
            message: Some(e),
            id: ruleset.node_name().to_string(),
        }),
    }
    Ok(result.encode())
}
