//! Reply handling shared by every caller of the agent database.
//!
//! wazuh-db answers success as `ok` or `due` (more to fetch: send the same command again) and
//! failure as `err <text>`. Callers want a payload or an error, and a paging loop that cannot run
//! away when a database keeps answering `due`.

use super::{StoreError, WazuhDb, WdbReply, WdbStatus};

/// Longest part of an unexpected reply quoted in an error.
const QUOTE_MAX: usize = 128;

/// Why a database request produced no usable payload.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// wazuh-db answered `err <text>` (the framework's error 2003).
    #[error("Error in wazuhdb request: {0}")]
    Wdb(String),
    /// A reply that is neither success nor `err`: `ign`, `unk`, or `due` where paging is not expected.
    #[error("unexpected wazuh-db reply: '{0}'")]
    Unexpected(String),
    /// The database was unreachable or broke the framing.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database still answered `due` after this many pages.
    #[error("wazuh-db still had data pending after {0} pages")]
    TooManyPages(usize),
}

/// The start of `reply`'s text, short enough to log.
fn quote(reply: &WdbReply) -> String {
    let text = reply.to_text();
    let mut end = text.len().min(QUOTE_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Runs `command`; `ok` and `due` replies pass, `err` and anything else become a [`DbError`].
pub fn query_ok(db: &dyn WazuhDb, command: &str) -> Result<WdbReply, DbError> {
    let reply = db.query(command)?;
    match reply.status {
        WdbStatus::Ok | WdbStatus::Due => Ok(reply),
        WdbStatus::Err => Err(DbError::Wdb(reply.payload)),
        WdbStatus::Ign | WdbStatus::Unk => Err(DbError::Unexpected(quote(&reply))),
    }
}

/// Repeats `command` while the reply is `due`, collecting the non-empty payloads up to the final
/// `ok`; gives up with [`DbError::TooManyPages`] after `pages_max` replies.
pub fn query_pages(
    db: &dyn WazuhDb,
    command: &str,
    pages_max: usize,
) -> Result<Vec<String>, DbError> {
    let mut pages = Vec::new();
    for _ in 0..pages_max {
        let reply = query_ok(db, command)?;
        if !reply.payload.is_empty() {
            pages.push(reply.payload);
        }
        if reply.status == WdbStatus::Ok {
            return Ok(pages);
        }
    }
    Err(DbError::TooManyPages(pages_max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Answers a fixed script of reply texts, one per query, and records the commands.
    struct Script {
        replies: Mutex<Vec<&'static str>>,
        seen: Mutex<Vec<String>>,
    }

    impl Script {
        fn new(replies: &[&'static str]) -> Script {
            let mut replies = replies.to_vec();
            replies.reverse();
            Script {
                replies: Mutex::new(replies),
                seen: Mutex::new(Vec::new()),
            }
        }
    }

    impl WazuhDb for Script {
        fn query(&self, command: &str) -> Result<WdbReply, StoreError> {
            self.seen.lock().expect("seen").push(command.to_owned());
            let text = self.replies.lock().expect("replies").pop();
            super::super::wire::parse_reply(text.unwrap_or("err script exhausted"))
        }
        fn http(&self, _: &str, _: &str, _: &[u8]) -> Result<(u16, Vec<u8>), StoreError> {
            Ok((404, Vec::new()))
        }
    }

    #[test]
    fn query_ok_sorts_replies() {
        let db = Script::new(&[
            "ok [1]",
            "due [2]",
            "err Invalid JSON syntax, near 'x'",
            "ign",
            "unk",
        ]);
        assert_eq!(query_ok(&db, "q").expect("ok").payload, "[1]");
        assert_eq!(query_ok(&db, "q").expect("due").status, WdbStatus::Due);
        let error = query_ok(&db, "q").expect_err("err");
        assert_eq!(
            error.to_string(),
            "Error in wazuhdb request: Invalid JSON syntax, near 'x'"
        );
        assert!(matches!(query_ok(&db, "q"), Err(DbError::Unexpected(text)) if text == "ign"));
        assert!(matches!(query_ok(&db, "q"), Err(DbError::Unexpected(text)) if text == "unk"));
    }

    #[test]
    fn query_pages_repeats_while_due_and_skips_empty_payloads() {
        let db = Script::new(&["due [1]", "due", "ok [3]"]);
        let pages = query_pages(&db, "global sync-agent-info-get", 10).expect("pages");
        assert_eq!(pages, ["[1]", "[3]"]);
        let seen = db.seen.lock().expect("seen");
        assert!(seen.iter().all(|c| c == "global sync-agent-info-get") && seen.len() == 3);
    }

    #[test]
    fn query_pages_is_bounded_and_stops_on_err() {
        let db = Script::new(&["due [1]", "due [2]", "ok [3]"]);
        assert!(matches!(
            query_pages(&db, "q", 2),
            Err(DbError::TooManyPages(2))
        ));
        let db = Script::new(&["due [1]", "err boom"]);
        assert!(matches!(query_pages(&db, "q", 5), Err(DbError::Wdb(text)) if text == "boom"));
        let db = Script::new(&[]);
        assert!(matches!(
            query_pages(&db, "q", 0),
            Err(DbError::TooManyPages(0))
        ));
    }
}
