//! The registrar's side of the agent database: the records authd's writer makes for registered and
//! removed agents, and the agent state the replacement rules look at.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::store::{WazuhDb, WdbStatus};

/// One database change, run after the keys file is written.
pub(super) enum DbOp {
    Delete(u32),
    Insert(NewAgent),
}

/// A registered agent's record.
pub(super) struct NewAgent {
    pub id: u32,
    pub name: String,
    /// The address registered (without prefix), or `any`.
    pub register_ip: String,
    pub key: String,
    pub groups: Vec<String>,
    pub date_add: i64,
}

/// What the replacement rules need to know about an agent.
pub(super) struct AgentState {
    pub connection_status: String,
    pub disconnection_time: i64,
    pub date_add: i64,
}

/// An agent's state from the database; `None` when it has no (complete) record.
pub(super) fn agent_state(db: &dyn WazuhDb, id: u32) -> Option<AgentState> {
    let reply = db
        .query(&format!("global get-agent-info {id}"))
        .ok()
        .filter(|reply| reply.status == WdbStatus::Ok)?;
    let rows: Value = serde_json::from_str(&reply.payload).ok()?;
    let agent = rows.get(0)?;
    Some(AgentState {
        connection_status: agent.get("connection_status")?.as_str()?.to_owned(),
        disconnection_time: agent.get("disconnection_time")?.as_i64()?,
        date_add: agent.get("date_add")?.as_i64()?,
    })
}

/// Runs the database changes of a written batch, in order (a removal before the insertion of
/// the agent that replaces it).
pub(super) fn apply(db: &dyn WazuhDb, ops: Vec<DbOp>) {
    let mut declared = HashSet::new();
    for op in ops {
        match op {
            DbOp::Delete(id) => {
                command(db, &format!("global delete-agent {id}"));
            }
            DbOp::Insert(agent) => insert(db, &agent, &mut declared),
        }
    }
}

/// Records a new agent and its groups (sync status `syncreq`, so the master sends them to the
/// workers). A leftover row with the same id, unknown to `client.keys`, is replaced.
fn insert(db: &dyn WazuhDb, agent: &NewAgent, declared: &mut HashSet<String>) {
    let record = json!({
        "id": agent.id,
        "name": agent.name,
        "register_ip": agent.register_ip,
        "internal_key": agent.key,
        "group": agent.groups.join(","),
        "date_add": agent.date_add,
    });
    let insert = format!("global insert-agent {record}");
    match db.query(&insert) {
        Ok(reply) if reply.status == WdbStatus::Ok => {}
        Ok(reply) if reply.payload.contains("UNIQUE constraint failed") => {
            tracing::info!(
                "Agent {:03} was still in the database: replacing it",
                agent.id
            );
            if command(db, &format!("global delete-agent {}", agent.id)) {
                command(db, &insert);
            }
        }
        Ok(reply) => tracing::error!(
            "Agent {:03} not recorded in the database: {}",
            agent.id,
            reply.to_text()
        ),
        Err(error) => tracing::error!(
            "Agent {:03} not recorded in the database: {error}",
            agent.id
        ),
    }
    // Groups must be declared before agents can belong to them; declaring one twice is harmless.
    for group in &agent.groups {
        if declared.insert(group.clone()) {
            let _ = db.query(&format!("global insert-agent-group {group}"));
        }
    }
    let assignment = json!({
        "mode": "override",
        "sync_status": "syncreq",
        "data": [{"id": agent.id, "groups": agent.groups}],
    });
    if !command(db, &format!("global set-agent-groups {assignment}")) {
        tracing::error!(
            "Groups {} of agent {:03} not recorded",
            agent.groups.join(","),
            agent.id
        );
    }
}

/// Runs one command; `true` on `ok`, else logs the reply.
fn command(db: &dyn WazuhDb, command: &str) -> bool {
    match db.query(command) {
        Ok(reply) if reply.status == WdbStatus::Ok => true,
        Ok(reply) => {
            tracing::error!("Agent database refused '{command}': {}", reply.to_text());
            false
        }
        Err(error) => {
            tracing::error!("Agent database failed on '{command}': {error}");
            false
        }
    }
}
