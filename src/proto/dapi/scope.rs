//! The part of an API user's RBAC permissions a native function needs: which agents (or nodes) the
//! request's `rbac_permissions` let it read. The framework applies the same policies in its
//! decorators; natively they are applied here, so a native answer never shows more than the
//! framework would. Policies this reading does not cover (by group, by other resources) are refused
//! rather than guessed.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::proto::wazuh_error::WazuhError;

/// What a user may read of one kind of resource (`agent:id:` or `node:id:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Only(BTreeSet<String>),
    Except(BTreeSet<String>),
}

impl Scope {
    pub fn allows(&self, id: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(ids) => ids.contains(id),
            Scope::Except(ids) => !ids.contains(id),
        }
    }
}

/// The scope of `action` on resources `prefix*` (e.g. `agent:read`, `agent:id:`). Requests without
/// permissions (the daemon's own tools) read everything, as stock's default black mode does.
pub fn scope(
    request: &Map<String, Value>,
    action: &str,
    prefix: &str,
) -> Result<Scope, WazuhError> {
    let Some(Value::Object(perms)) = request.get("rbac_permissions") else {
        return Ok(Scope::All);
    };
    let white = perms.get("rbac_mode").and_then(Value::as_str) == Some("white");
    let Some(policy) = perms.get(action) else {
        return Ok(if white {
            Scope::Only(BTreeSet::new())
        } else {
            Scope::All
        });
    };
    let Value::Object(policy) = policy else {
        return Err(unsupported(action));
    };
    let mut allow = BTreeSet::new();
    let mut deny = BTreeSet::new();
    let mut star = None;
    for (resource, effect) in policy {
        let allowed = match effect.as_str() {
            Some("allow") => true,
            Some("deny") => false,
            _ => return Err(unsupported(action)),
        };
        let Some(id) = resource.strip_prefix(prefix) else {
            return Err(unsupported(action));
        };
        if id == "*" {
            star = Some(allowed);
        } else if allowed {
            allow.insert(id.to_string());
        } else {
            deny.insert(id.to_string());
        }
    }
    Ok(match star.unwrap_or(!white) {
        true => {
            if deny.is_empty() {
                Scope::All
            } else {
                Scope::Except(deny)
            }
        }
        false => Scope::Only(allow.difference(&deny).cloned().collect()),
    })
}

fn unsupported(action: &str) -> WazuhError {
    WazuhError::with_extra(
        1000,
        format!("the '{action}' policies of this user need the Wazuh framework to be applied"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(perms: Value) -> Map<String, Value> {
        json!({"rbac_permissions": perms})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn policies_give_the_ids_a_user_reads() {
        assert_eq!(
            scope(&Map::new(), "agent:read", "agent:id:"),
            Ok(Scope::All)
        );
        let only = scope(
            &req(json!({"rbac_mode": "white", "agent:read": {"agent:id:001": "allow"}})),
            "agent:read",
            "agent:id:",
        )
        .unwrap();
        assert!(only.allows("001") && !only.allows("002"));
        let except = scope(
            &req(json!({"rbac_mode": "white", "agent:read": {"agent:id:*": "allow", "agent:id:002": "deny"}})),
            "agent:read",
            "agent:id:",
        )
        .unwrap();
        assert!(except.allows("001") && !except.allows("002"));
        assert_eq!(
            scope(
                &req(json!({"rbac_mode": "white"})),
                "agent:read",
                "agent:id:"
            ),
            Ok(Scope::Only(BTreeSet::new()))
        );
        assert!(scope(
            &req(json!({"agent:read": {"agent:group:web": "allow"}})),
            "agent:read",
            "agent:id:"
        )
        .is_err());
    }
}
