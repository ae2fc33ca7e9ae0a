//! [`DaemonRouter`]: the master's side of `sendsync`.
//!
//! A forwarded request is `{"daemon_name": "<daemon>", "message": <object or text>}`. The master
//! sends the message (an object as Python's `json.dumps` writes it) to the daemon's socket and
//! returns the answer text. Agent-database requests go to [`WazuhDb`]; authd requests go to authd
//! when it listens, else to the embedded [`Registrar`], all of one call in one batch.
//!
//! Failures are the texts of the Python master, checked in its order: the JSON, the `daemon_name`
//! member, unexpected members, the daemon name, the connection, the message type, the exchange.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use super::socket::MAX_ANSWER;
use super::socket::{self, communication_error, IO_TIMEOUT};
use super::{pyjson, Registrar, MAX_BATCH};
use crate::store::WazuhDb;

/// Longest message authd reads; it drops the connection on longer ones.
const AUTHD_MAX_MESSAGE: usize = 65_536;

/// The daemons a worker may address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Authd,
    WazuhDb,
    Remoted,
    TaskManager,
}

impl Daemon {
    /// The daemon called `name` in `daemon_name`.
    pub fn from_name(name: &str) -> Option<Daemon> {
        match name {
            "authd" => Some(Daemon::Authd),
            "wazuh-db" => Some(Daemon::WazuhDb),
            "remoted" => Some(Daemon::Remoted),
            "task-manager" => Some(Daemon::TaskManager),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Daemon::Authd => "authd",
            Daemon::WazuhDb => "wazuh-db",
            Daemon::Remoted => "remoted",
            Daemon::TaskManager => "task-manager",
        }
    }

    /// The daemon's socket, relative to the installation directory.
    pub fn socket(self) -> &'static str {
        match self {
            Daemon::Authd => "queue/sockets/auth",
            Daemon::WazuhDb => "queue/db/wdb",
            Daemon::Remoted => "queue/sockets/remote",
            Daemon::TaskManager => "queue/tasks/task",
        }
    }
}

/// A request that passed the master's first checks.
struct Parsed {
    daemon: Daemon,
    message: Value,
}

/// Routes forwarded daemon requests on the master.
pub struct DaemonRouter {
    /// The installation directory (sockets are under `queue/`).
    pub home: PathBuf,
    /// The agent database, for `wazuh-db` requests.
    pub db: Arc<dyn WazuhDb>,
    /// The embedded registration service, used when no authd listens.
    pub registrar: Option<Registrar>,
}

impl DaemonRouter {
    pub fn new(
        home: impl Into<PathBuf>,
        db: Arc<dyn WazuhDb>,
        registrar: Option<Registrar>,
    ) -> DaemonRouter {
        DaemonRouter {
            home: home.into(),
            db,
            registrar,
        }
    }

    /// One request: the daemon's answer or the error text.
    pub fn forward(&self, request: &[u8]) -> Result<String, String> {
        self.forward_batch(std::slice::from_ref(&request.to_vec()))
            .pop()
            .unwrap_or_else(|| Err(communication_error("no answer")))
    }

    /// Many requests, answered in order. Blocking: call from a worker thread.
    pub fn forward_batch(&self, requests: &[Vec<u8>]) -> Vec<Result<String, String>> {
        let mut results: Vec<Option<Result<String, String>>> = vec![None; requests.len()];
        let mut authd = Vec::new();
        for (index, request) in requests.iter().enumerate() {
            match parse_request(request) {
                Err(error) => results[index] = Some(Err(error)),
                Ok(parsed) if parsed.daemon == Daemon::Authd => authd.push((index, parsed.message)),
                Ok(parsed) => results[index] = Some(self.to_daemon(parsed)),
            }
        }
        if !authd.is_empty() {
            for (index, result) in self.to_authd(authd) {
                results[index] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(communication_error("no answer"))))
            .collect()
    }

    /// A non-authd request: the agent database, or the daemon's socket.
    fn to_daemon(&self, parsed: Parsed) -> Result<String, String> {
        if parsed.daemon == Daemon::WazuhDb {
            let command = message_text(&parsed.message)?;
            return self
                .db
                .query(&command)
                .map(|reply| reply.to_text())
                .map_err(communication_error);
        }
        let path = self.home.join(parsed.daemon.socket());
        let stream = socket::connect(&path).map_err(|e| socket::connect_error(&path, &e))?;
        let text = message_text(&parsed.message)?;
        socket::exchange(stream, text.as_bytes(), IO_TIMEOUT)
    }

    /// authd requests: to authd when something accepts on its socket, else to the registrar.
    fn to_authd(&self, requests: Vec<(usize, Value)>) -> Vec<(usize, Result<String, String>)> {
        let path = self.home.join(Daemon::Authd.socket());
        let mut probe = match socket::connect(&path) {
            Ok(stream) => Some(stream),
            Err(error) => {
                return match &self.registrar {
                    Some(registrar) if socket::nobody_listens(&error) => {
                        embedded(registrar, requests)
                    }
                    _ => {
                        let text = socket::connect_error(&path, &error);
                        requests
                            .into_iter()
                            .map(|(index, _)| (index, Err(text.clone())))
                            .collect()
                    }
                };
            }
        };
        requests
            .into_iter()
            .map(|(index, message)| {
                let stream = match probe.take() {
                    Some(stream) => Ok(stream),
                    None => socket::connect(&path).map_err(|e| socket::connect_error(&path, &e)),
                };
                let result = stream.and_then(|stream| {
                    let text = message_text(&message)?;
                    socket::exchange(stream, text.as_bytes(), IO_TIMEOUT)
                });
                (index, result)
            })
            .collect()
    }
}

/// Hands authd requests to the registrar in batches, answering as authd's socket would for
/// messages authd would not read.
fn embedded(
    registrar: &Registrar,
    requests: Vec<(usize, Value)>,
) -> Vec<(usize, Result<String, String>)> {
    let mut results = Vec::with_capacity(requests.len());
    let mut accepted = Vec::with_capacity(requests.len());
    for (index, message) in requests {
        match message_text(&message) {
            Err(error) => results.push((index, Err(error))),
            // authd closes the connection on an empty message without answering.
            Ok(text) if text.is_empty() => results.push((
                index,
                Err(communication_error("unpack requires a buffer of 4 bytes")),
            )),
            // It drops the connection on an over-long one, unread.
            Ok(text) if text.len() > AUTHD_MAX_MESSAGE => results.push((
                index,
                Err(communication_error("[Errno 104] Connection reset by peer")),
            )),
            Ok(_) => accepted.push((index, message)),
        }
    }
    for chunk in accepted.chunks(MAX_BATCH) {
        let messages: Vec<Value> = chunk.iter().map(|(_, message)| message.clone()).collect();
        let answers = registrar.handle_batch(&messages);
        results.extend(
            chunk
                .iter()
                .map(|(index, _)| *index)
                .zip(answers.into_iter().map(Ok)),
        );
    }
    results
}

/// The text sent to a daemon: an object serialised as Python does, a text as it is.
fn message_text(message: &Value) -> Result<String, String> {
    match message {
        Value::Object(_) => Ok(pyjson::dumps(message)),
        Value::String(text) => Ok(text.clone()),
        other => Err(communication_error(format!(
            "'{}' object has no attribute 'encode'",
            pyjson::type_name(other)
        ))),
    }
}

/// The master's checks before contacting a daemon.
fn parse_request(bytes: &[u8]) -> Result<Parsed, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| pyjson::utf8_error(bytes, &e))?;
    let request: Value = serde_json::from_str(text).map_err(|_| pyjson::decode_error(text))?;
    let object: &Map<String, Value> = match &request {
        Value::Object(object) => object,
        Value::Array(_) => return Err("list indices must be integers or slices, not str".into()),
        Value::String(_) => return Err("string indices must be integers".into()),
        other => {
            return Err(format!(
                "'{}' object is not subscriptable",
                pyjson::type_name(other)
            ))
        }
    };
    let Some(name) = object.get("daemon_name") else {
        return Err("'daemon_name'".into());
    };
    if let Some(key) = object
        .keys()
        .find(|key| !matches!(key.as_str(), "daemon_name" | "message"))
    {
        return Err(format!(
            "wazuh_sendsync() got an unexpected keyword argument '{key}'"
        ));
    }
    let daemon = match name {
        Value::String(text) => Daemon::from_name(text),
        _ => None,
    };
    let Some(daemon) = daemon else {
        return Err(communication_error(match name {
            Value::Array(_) | Value::Object(_) => {
                format!("unhashable type: '{}'", pyjson::type_name(name))
            }
            other => pyjson::repr(other),
        }));
    };
    Ok(Parsed {
        daemon,
        message: object.get("message").cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
#[path = "daemons_tests.rs"]
mod tests;
