//! Agent database: the wazuh-db interface the cluster talks to.
//!
//! The cluster needs a global agent database (agent groups sent master → workers, agent-info sent
//! workers → master). In a stock deployment that is wazuh-db; a node may instead run our embedded
//! SQLite database. Both sit behind [`WazuhDb`], which speaks wazuh-db's own command texts and
//! replies, so the cluster code cannot tell them apart and a reply captured from one is valid from
//! the other.
//!
//! - [`wire`]: the classic socket framing (length prefix, `<status> <payload>` replies);
//! - [`embedded`]: [`EmbeddedDb`], the SQLite implementation;
//! - [`socket`]: [`WdbSocket`], the client of a real wazuh-db (classic socket and HTTP API);
//! - [`server`]: [`WdbServer`], which serves any [`WazuhDb`] on a socket framed like wazuh-db's;
//! - [`paging`]: [`query_ok`] and [`query_pages`], the reply handling every caller shares;
//! - [`backend`]: [`open`], the choice between a running wazuh-db and the embedded database.
//! - [`host`] and [`manager_row`]: the manager's own row (agent 000), written for the embedded
//!   database as a full manager's daemons write it for wazuh-db.
//! - [`registration`]: agent registration on the master ([`Registrar`]) and the routing of
//!   daemon requests forwarded by workers ([`DaemonRouter`]).

pub mod backend;
pub mod embedded;
pub mod host;
pub mod manager_row;
pub mod paging;
pub mod registration;
pub mod server;
pub mod socket;
pub(crate) mod unix;
pub mod wire;

pub use backend::{open, AgentDb, Backend};
pub use embedded::EmbeddedDb;
pub use manager_row::ManagerRow;
pub use paging::{query_ok, query_pages, DbError};
pub use registration::{DaemonRouter, Registrar};
pub use server::{ServerLimits, WdbServer};
pub use socket::WdbSocket;

use std::fmt;

/// Largest reply payload wazuh-db produces: its 64 KiB buffer less the room kept for a command.
pub const MAX_PAYLOAD: usize = 65_536 - 512;

/// The first word of every wazuh-db reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WdbStatus {
    /// Success, nothing more to fetch.
    Ok,
    /// Success, more data pending: repeat the query.
    Due,
    /// The command failed; the payload says why.
    Err,
    /// The command was ignored.
    Ign,
    /// Unknown outcome.
    Unk,
}

impl WdbStatus {
    /// The text form used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            WdbStatus::Ok => "ok",
            WdbStatus::Due => "due",
            WdbStatus::Err => "err",
            WdbStatus::Ign => "ign",
            WdbStatus::Unk => "unk",
        }
    }

    /// Parses the text form; `None` for anything else.
    pub fn parse(text: &str) -> Option<WdbStatus> {
        match text {
            "ok" => Some(WdbStatus::Ok),
            "due" => Some(WdbStatus::Due),
            "err" => Some(WdbStatus::Err),
            "ign" => Some(WdbStatus::Ign),
            "unk" => Some(WdbStatus::Unk),
            _ => None,
        }
    }
}

impl fmt::Display for WdbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reply of the classic socket: `<status> SP <payload>`, or only `<status>` when the payload is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WdbReply {
    pub status: WdbStatus,
    pub payload: String,
}

impl WdbReply {
    /// A reply with a payload.
    pub fn new(status: WdbStatus, payload: impl Into<String>) -> WdbReply {
        WdbReply {
            status,
            payload: payload.into(),
        }
    }

    /// A bare `ok`.
    pub fn ok() -> WdbReply {
        WdbReply::new(WdbStatus::Ok, "")
    }

    /// An `err <text>` reply.
    pub fn err(text: impl Into<String>) -> WdbReply {
        WdbReply::new(WdbStatus::Err, text)
    }

    /// The reply text as it travels on the wire.
    pub fn to_text(&self) -> String {
        if self.payload.is_empty() {
            self.status.as_str().to_owned()
        } else {
            format!("{} {}", self.status, self.payload)
        }
    }
}

/// Failures of the agent database itself, as opposed to `err` replies, which are answers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or prepared.
    #[error("cannot open the agent database {path}: {reason}")]
    Open { path: String, reason: String },
    /// A statement failed where wazuh-db has no reply text for it.
    #[error("agent database failure: {0}")]
    Database(String),
    /// Another thread panicked while holding the database.
    #[error("agent database is unusable after a failed operation")]
    Poisoned,
    /// A frame shorter than its 4-byte length header.
    #[error("wazuh-db frame truncated: {have} bytes, {need} expected")]
    Truncated { have: usize, need: usize },
    /// A frame whose text is not UTF-8.
    #[error("wazuh-db message is not UTF-8")]
    NotText,
    /// A message larger than wazuh-db accepts.
    #[error("wazuh-db message too large: {0} bytes")]
    TooLarge(usize),
    /// A reply that does not start with a known status word.
    #[error("wazuh-db reply has no valid status: '{0}'")]
    BadStatus(String),
    /// Connecting to, writing to or reading from a Unix socket failed; `reason` says which step.
    #[error("wazuh-db socket {path}: {reason}")]
    Socket { path: String, reason: String },
    /// An HTTP exchange that broke the protocol: a request we refuse to send or a malformed response.
    #[error("wazuh-db HTTP socket {path}: {reason}")]
    Http { path: String, reason: String },
    /// An HTTP response body past the limit we are willing to hold in memory.
    #[error("wazuh-db HTTP socket {path}: response body larger than {limit} bytes")]
    BodyTooLarge { path: String, limit: usize },
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::Database(error.to_string())
    }
}

/// The wazuh-db interface: the classic socket commands and the HTTP API, with wazuh-db semantics.
pub trait WazuhDb: Send + Sync {
    /// One command of the classic socket, e.g. `global sync-agent-groups-get {...}`.
    fn query(&self, command: &str) -> Result<WdbReply, StoreError>;
    /// One request of the HTTP API (`GET`/`POST` `/v1/agents/sync`): status code and body.
    fn http(&self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_round_trips() {
        for status in [
            WdbStatus::Ok,
            WdbStatus::Due,
            WdbStatus::Err,
            WdbStatus::Ign,
            WdbStatus::Unk,
        ] {
            assert_eq!(WdbStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(WdbStatus::parse("OK"), None);
    }

    #[test]
    fn reply_text_omits_empty_payload() {
        assert_eq!(WdbReply::ok().to_text(), "ok");
        assert_eq!(WdbReply::new(WdbStatus::Due, "[]").to_text(), "due []");
        assert_eq!(WdbReply::err("boom").to_text(), "err boom");
    }
}
