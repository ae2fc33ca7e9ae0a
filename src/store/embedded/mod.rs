//! [`EmbeddedDb`]: the agent database on an embedded SQLite file, answering like wazuh-db.
//!
//! One connection behind a mutex: callers are worker threads (never the event loop), and wazuh-db
//! itself serialises the global database the same way. Each command runs in one transaction that
//! is committed whatever the reply, because wazuh-db keeps the effects of a command that fails
//! half-way (e.g. a `set-agent-groups` where one agent of many is refused).

mod agent_info;
mod agents;
mod groups;
mod http;
mod schema;
mod sql;
mod text;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rusqlite::{Connection, Transaction};

use super::{StoreError, WazuhDb, WdbReply};
use text::near;

/// State kept between commands, like wazuh-db's process-wide statics.
struct Inner {
    conn: Connection,
    /// Paging position of `sync-agent-info-get` between a `due` reply and the next call.
    info_cursor: agent_info::Cursor,
}

/// Facts a command needs besides the database.
pub(crate) struct Ctx {
    /// Current time, seconds since the epoch.
    pub now: i64,
    /// Worker nodes require agent names when overriding groups (they create missing agents).
    pub worker_node: bool,
}

/// The embedded agent database.
pub struct EmbeddedDb {
    inner: Mutex<Inner>,
    worker_node: AtomicBool,
    clock: fn() -> i64,
}

fn system_clock() -> i64 {
    chrono::Utc::now().timestamp()
}

impl EmbeddedDb {
    /// Opens (creating if needed) the database file at `path`, in WAL mode.
    pub fn open(path: &Path) -> Result<EmbeddedDb, StoreError> {
        let open_error = |e: rusqlite::Error| StoreError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let conn = Connection::open(path).map_err(open_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_error)?;
        EmbeddedDb::prepare(conn, system_clock).map_err(open_error)
    }

    /// A private database in memory, for tests and tools.
    pub fn in_memory() -> Result<EmbeddedDb, StoreError> {
        let conn = Connection::open_in_memory()?;
        Ok(EmbeddedDb::prepare(conn, system_clock)?)
    }

    fn prepare(conn: Connection, clock: fn() -> i64) -> rusqlite::Result<EmbeddedDb> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::create(&conn, clock())?;
        Ok(EmbeddedDb {
            inner: Mutex::new(Inner {
                conn,
                info_cursor: agent_info::Cursor::default(),
            }),
            worker_node: AtomicBool::new(false),
            clock,
        })
    }

    /// Replaces the clock (tests pin time).
    pub fn with_clock(mut self, clock: fn() -> i64) -> EmbeddedDb {
        self.clock = clock;
        self
    }

    /// Tells whether this node is a cluster worker, which changes `set-agent-groups` in `override` mode.
    pub fn set_worker_node(&self, worker: bool) {
        self.worker_node.store(worker, Ordering::Relaxed);
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            now: (self.clock)(),
            worker_node: self.worker_node.load(Ordering::Relaxed),
        }
    }

    /// Runs `f` in one transaction, committed whatever its reply.
    fn with_tx<T>(
        &self,
        f: impl FnOnce(&Transaction, &mut agent_info::Cursor) -> T,
    ) -> Result<T, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| StoreError::Poisoned)?;
        let Inner { conn, info_cursor } = &mut *inner;
        let tx = conn.transaction()?;
        let out = f(&tx, info_cursor);
        tx.commit()?;
        Ok(out)
    }
}

/// Splits `global <command>[ <argument>]`; answers the syntax errors wazuh-db gives for bad prefixes.
fn split_command(input: &str) -> Result<(&str, Option<&str>), WdbReply> {
    let input = input.trim_start_matches([' ', '\n']);
    let Some((actor, rest)) = input.split_once(' ') else {
        return Err(WdbReply::err(format!(
            "Invalid DB query syntax, near '{}'",
            near(input)
        )));
    };
    if actor != "global" {
        return Err(WdbReply::err(format!(
            "Invalid DB query actor: '{}'",
            near(actor)
        )));
    }
    Ok(match rest.split_once(' ') {
        Some((name, arg)) => (name, Some(arg)),
        None => (rest, None),
    })
}

fn syntax_error(name: &str) -> WdbReply {
    WdbReply::err(format!("Invalid DB query syntax, near '{}'", near(name)))
}

fn dispatch(
    tx: &Transaction,
    ctx: &Ctx,
    info_cursor: &mut agent_info::Cursor,
    name: &str,
    arg: Option<&str>,
) -> WdbReply {
    // Commands that need no argument, or take an optional one.
    match name {
        "recalculate-agent-group-hashes" => return groups::recalculate_all(tx),
        "sync-agent-info-get" => return agent_info::sync_get(tx, info_cursor, arg),
        _ => {}
    }
    let Some(arg) = arg else {
        return syntax_error(name);
    };
    match name {
        "insert-agent" => agents::insert(tx, arg),
        "delete-agent" => agents::delete(tx, arg),
        "update-keepalive" => agents::update_keepalive(tx, ctx, arg),
        "update-agent-data" => agents::update_agent_data(tx, ctx, arg),
        "update-agent-name" => agents::update_name(tx, arg),
        "update-connection-status" => agents::update_connection_status(tx, ctx, arg),
        "get-all-agents" => agents::get_all(tx, arg),
        "get-agent-info" => agents::get_info(tx, arg),
        "sql" => sql::query(tx, arg),
        "insert-agent-group" => groups::insert_group(tx, arg),
        "set-agent-groups" => groups::set_agent_groups(tx, ctx, arg),
        "sync-agent-groups-get" => groups::sync_get(tx, ctx, arg),
        "get-groups-integrity" => groups::integrity(tx, arg),
        "sync-agent-info-set" => agent_info::sync_set(tx, arg),
        _ => syntax_error(name),
    }
}

impl WazuhDb for EmbeddedDb {
    fn query(&self, command: &str) -> Result<WdbReply, StoreError> {
        let (name, arg) = match split_command(command) {
            Ok(parts) => parts,
            Err(reply) => return Ok(reply),
        };
        let ctx = self.ctx();
        self.with_tx(|tx, info_cursor| dispatch(tx, &ctx, info_cursor, name, arg))
    }

    fn http(&self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), StoreError> {
        let ctx = self.ctx();
        self.with_tx(|tx, _| http::handle(tx, &ctx, method, path, body))?
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::store::{WdbReply, WdbStatus};

    /// A fixed clock far from the agents' registration dates.
    pub const NOW: i64 = 1_700_000_000;

    /// Sets an agent's agent-info sync status directly, as remoted's updates would.
    pub fn set_sync(db: &EmbeddedDb, id: i64, status: &str) {
        db.with_tx(|tx, _| {
            tx.execute(
                "UPDATE agent SET sync_status = ?1 WHERE id = ?2",
                rusqlite::params![status, id],
            )
        })
        .expect("tx")
        .expect("update");
    }

    fn fixed_clock() -> i64 {
        NOW
    }

    pub fn db() -> EmbeddedDb {
        EmbeddedDb::in_memory()
            .expect("in-memory database")
            .with_clock(fixed_clock)
    }

    pub fn q(db: &EmbeddedDb, command: &str) -> WdbReply {
        db.query(command).expect("query runs")
    }

    pub fn ok(db: &EmbeddedDb, command: &str) -> String {
        let reply = q(db, command);
        assert_eq!(reply.status, WdbStatus::Ok, "{command} -> {reply:?}");
        reply.payload
    }

    /// Registers an agent the way authd does: the record, then its groups.
    pub fn add_agent(db: &EmbeddedDb, id: i64, name: &str, groups: &[&str]) {
        ok(
            db,
            &format!(
                r#"global insert-agent {{"id":{id},"name":"{name}","ip":"any","date_add":1000}}"#
            ),
        );
        for group in groups {
            let _ = q(db, &format!("global insert-agent-group {group}"));
        }
        let groups = serde_json::to_string(groups).expect("groups");
        ok(
            db,
            &format!(
                r#"global set-agent-groups {{"mode":"override","sync_status":"syncreq","data":[{{"id":{id},"groups":{groups}}}]}}"#
            ),
        );
    }

    pub fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).expect("JSON payload")
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn bad_prefixes_answer_like_wazuh_db() {
        let db = db();
        assert_eq!(
            q(&db, "global").to_text(),
            "err Invalid DB query syntax, near 'global'"
        );
        assert_eq!(
            q(&db, "agent1 x").to_text(),
            "err Invalid DB query actor: 'agent1'"
        );
        assert_eq!(
            q(&db, "global frobnicate 1").to_text(),
            "err Invalid DB query syntax, near 'frobnicate'"
        );
        assert_eq!(
            q(&db, "global insert-agent").to_text(),
            "err Invalid DB query syntax, near 'insert-agent'"
        );
    }

    #[test]
    fn file_database_persists_in_wal_mode() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("clusterd-global.db");
        {
            let db = EmbeddedDb::open(&path).expect("open");
            add_agent(&db, 1, "a1", &["default"]);
        }
        let db = EmbeddedDb::open(&path).expect("reopen");
        let info = json(&ok(&db, "global get-agent-info 1"));
        assert_eq!(info[0]["name"], "a1");
        let mode: String = db
            .with_tx(|tx, _| tx.query_row("PRAGMA journal_mode", [], |row| row.get(0)))
            .expect("tx")
            .expect("pragma");
        assert_eq!(mode, "wal");
    }
}
