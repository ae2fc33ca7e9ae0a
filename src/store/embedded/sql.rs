//! `global sql <statement>`: wazuh-db's free query, which the framework uses for listings. The
//! embedded database accepts only read-only statements: writes go through the named commands, so
//! their sync-status side effects can never be bypassed.

use rusqlite::Transaction;
use serde_json::Value;

use super::agents::rows_json;
use super::text::{near, query_failed};
use crate::store::{WdbReply, WdbStatus, MAX_PAYLOAD};

/// Runs one read-only statement and answers its rows as a JSON array of objects.
pub fn query(tx: &Transaction, statement: &str) -> WdbReply {
    let mut stmt = match tx.prepare(statement) {
        Ok(stmt) => stmt,
        Err(e) => return query_failed(&e),
    };
    if !stmt.readonly() {
        return WdbReply::err(format!(
            "Cannot execute Global database query; only read-only statements are accepted, near '{}'",
            near(statement)
        ));
    }
    let rows = match rows_json(&mut stmt, []) {
        Ok(rows) => rows,
        Err(e) => return query_failed(&e),
    };
    let text = Value::Array(rows).to_string();
    if text.len() > MAX_PAYLOAD {
        // wazuh-db would cut the reply at its buffer; a clear error is better than broken JSON.
        return WdbReply::err(format!(
            "Cannot execute Global database query; the response of {} bytes exceeds {MAX_PAYLOAD}, add a LIMIT",
            text.len()
        ));
    }
    WdbReply::new(WdbStatus::Ok, text)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::store::WdbStatus;

    #[test]
    fn selects_answer_rows_and_writes_are_refused() {
        let db = db();
        add_agent(&db, 1, "alpha", &["default"]);
        add_agent(&db, 2, "beta", &[]);
        let rows = json(&ok(
            &db,
            "global sql SELECT id, name FROM agent WHERE id > 0 ORDER BY id",
        ));
        assert_eq!(
            rows,
            json(r#"[{"id":1,"name":"alpha"},{"id":2,"name":"beta"}]"#)
        );
        let refused = q(&db, "global sql DELETE FROM agent");
        assert_eq!(refused.status, WdbStatus::Err);
        assert!(refused.payload.contains("read-only"), "{}", refused.payload);
        let bad = q(&db, "global sql SELECT nope FROM agent");
        assert_eq!(bad.status, WdbStatus::Err);
        assert!(bad
            .payload
            .starts_with("Cannot execute Global database query; no such column"));
        assert_eq!(
            json(&ok(
                &db,
                "global sql SELECT COUNT(*) AS n FROM agent WHERE id > 0"
            )),
            json(r#"[{"n":2}]"#)
        );
    }
}
