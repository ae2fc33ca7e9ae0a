//! Tables of the embedded agent database.
//!
//! Columns and constraints follow wazuh-db's global database so that replies built from rows (e.g.
//! `get-agent-info`, which returns every column) have the same members. Agent 000 is the manager.

use rusqlite::{params, Connection};

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS agent (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    ip TEXT,
    register_ip TEXT,
    internal_key TEXT,
    os_name TEXT,
    os_version TEXT,
    os_major TEXT,
    os_minor TEXT,
    os_codename TEXT,
    os_build TEXT,
    os_platform TEXT,
    os_uname TEXT,
    os_arch TEXT,
    version TEXT,
    config_sum TEXT,
    merged_sum TEXT,
    manager_host TEXT,
    node_name TEXT DEFAULT 'unknown',
    date_add INTEGER NOT NULL,
    last_keepalive INTEGER,
    `group` TEXT DEFAULT 'default',
    group_hash TEXT DEFAULT NULL,
    group_sync_status TEXT NOT NULL DEFAULT 'synced'
        CHECK (group_sync_status IN ('synced', 'syncreq')),
    sync_status TEXT NOT NULL DEFAULT 'synced'
        CHECK (sync_status IN ('synced', 'syncreq', 'syncreq_status', 'syncreq_keepalive')),
    connection_status TEXT NOT NULL DEFAULT 'never_connected'
        CHECK (connection_status IN ('pending', 'never_connected', 'active', 'disconnected')),
    disconnection_time INTEGER DEFAULT 0,
    group_config_status TEXT NOT NULL DEFAULT 'not synced'
        CHECK (group_config_status IN ('synced', 'not synced')),
    status_code INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS agent_name ON agent (name);
CREATE INDEX IF NOT EXISTS agent_ip ON agent (ip);
CREATE INDEX IF NOT EXISTS agent_group_hash ON agent (group_hash);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER REFERENCES agent (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (id, key)
);
CREATE TABLE IF NOT EXISTS `group` (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT UNIQUE
);
CREATE TABLE IF NOT EXISTS belongs (
    id_agent INTEGER REFERENCES agent (id) ON DELETE CASCADE,
    id_group INTEGER REFERENCES `group` (id) ON DELETE CASCADE,
    priority INTEGER NOT NULL DEFAULT 0,
    UNIQUE (id_agent, priority),
    PRIMARY KEY (id_agent, id_group)
);
CREATE INDEX IF NOT EXISTS belongs_id_group ON belongs (id_group);
";

/// The highest date representable by wazuh-db: the manager's keepalive never expires.
pub(super) const MANAGER_KEEPALIVE: i64 = 253_402_300_799;

/// Creates the tables and the manager's own row (agent 000) if missing.
pub fn create(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    conn.execute_batch(TABLES)?;
    conn.execute(
        "INSERT OR IGNORE INTO agent (id, name, ip, register_ip, date_add, last_keepalive, `group`, connection_status)
         VALUES (0, 'localhost', '127.0.0.1', '127.0.0.1', ?1, ?2, NULL, 'active')",
        params![now, MANAGER_KEEPALIVE],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_is_idempotent_and_adds_the_manager() {
        let conn = Connection::open_in_memory().expect("db");
        create(&conn, 5).expect("first");
        create(&conn, 6).expect("second");
        let (name, date): (String, i64) = conn
            .query_row("SELECT name, date_add FROM agent WHERE id = 0", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("row");
        assert_eq!((name.as_str(), date), ("localhost", 5));
    }
}
