//! The distributed API on the local socket and what both roles share (PROTOCOL.md §4.5). A local
//! `dapi` is acknowledged at once (`ok Added request to API requests queue`); its result follows
//! as a long string and `dapi_res <string id>`, or as `dapi_err <error>`. The master runs requests
//! (`dapi_master.rs`); a worker runs `local_any` requests and those its master sends, and relays
//! the rest to the master (`dapi_worker.rs`).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::local::LocalDelivery;
use super::strings_out::{StringSends, Then};
use super::{ConnId, Node, Now, PeerConn, Purpose, Role};
use crate::clog_error;
use crate::proto::command::Command;
use crate::proto::dapi::{classify, request, DapiRequest, Execution, Refusal};
use crate::proto::wazuh_error::WazuhError;

/// The acknowledgement of a queued (or relayed) request.
pub(super) const QUEUED: &[u8] = b"Added request to API requests queue";

/// What a request ends with: its encoded answer (a result, or an exception the API renders), or
/// the text of a `dapi_err` (the request could not run).
pub(super) type Answer = Result<Bytes, Vec<u8>>;

/// Seconds a worker waits for its master beyond `timeout_dapi_request` (the master's own timeout
/// answers first).
pub(super) const RELAY_MARGIN_SECS: u64 = 10;

/// A request checked against code execution and the allow-list.
pub(super) fn checked(payload: &[u8]) -> Result<(DapiRequest, Execution), Refusal> {
    let request = DapiRequest::parse(payload)?;
    let execution = classify(&request.f)?;
    Ok((request, execution))
}

/// The `dapi_err` text of a refused request: an encoded error, which Wazuh's local client decodes.
pub(super) fn refusal_text(refusal: &Refusal) -> Vec<u8> {
    WazuhError::with_extra(1000, refusal.to_string()).to_payload()
}

/// The name logs give a refused request's function: `module.qualname`.
pub(super) fn refused_function(payload: &[u8]) -> String {
    request::callable_path(payload)
}

/// A request's answer for the local client that asked it: a result as a long string then
/// `dapi_res <string id>`, an error as `dapi_err <text>`.
pub(super) fn local_answer(local: ConnId, answer: Answer) -> LocalDelivery {
    match answer {
        Ok(bytes) => LocalDelivery::string(local, "dapi_res", bytes.to_vec()),
        Err(text) => LocalDelivery::request(local, "dapi_err", text),
    }
}

/// Sends a request's answer to the peer that asked it as `<id>`: a result as a long string then
/// `dapi_res <id> <string id>`, an error as `dapi_err <id> <text>`. Both roles answer this way.
pub(super) fn send_answer(
    strings: &mut StringSends,
    peer: &mut PeerConn,
    id: &str,
    answer: Answer,
    now: Instant,
    timeout: Duration,
) -> Result<(), String> {
    let purpose = Purpose::DapiAnswer { id: id.to_string() };
    match answer {
        Ok(bytes) => {
            let then = Then {
                command: "dapi_res",
                prefix: format!("{id} "),
                purpose,
            };
            strings.start(peer, bytes, then, now, timeout)
        }
        Err(text) => {
            let mut body = format!("{id} ").into_bytes();
            body.extend_from_slice(&text);
            peer.request("dapi_err", &body, purpose, now, timeout)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }
}

/// The peer refused the answer of request `id` it had asked for (`to` names it in the log).
pub(super) fn log_refused_answer(tag: &str, id: &str, to: &str, command: &Command, payload: &[u8]) {
    if *command != Command::Ok {
        clog_error!(
            tag,
            "D API",
            "Could not send the answer of request {id} to {to}: {}",
            WazuhError::from_payload(payload)
        );
    }
}

/// Splits `<id> SP <rest>`.
pub(super) fn split_id(payload: &[u8]) -> Option<(String, &[u8])> {
    let space = payload.iter().position(|b| *b == b' ')?;
    let id = std::str::from_utf8(&payload[..space]).ok()?;
    if id.is_empty() || id.len() > 64 {
        return None;
    }
    Some((id.to_string(), &payload[space + 1..]))
}

impl Node {
    /// Local `dapi` and `dapi_fwd`: `None` when `command` is neither.
    pub(super) fn dapi_local_request(
        &mut self,
        conn: ConnId,
        command: &Command,
        payload: &[u8],
        now: Now,
    ) -> Option<(&'static str, Vec<u8>)> {
        let client = self.locals.get(&conn)?.client_id();
        let forward = match command {
            Command::Dapi => false,
            Command::DapiFwd => true,
            _ => return None,
        };
        if forward && !matches!(self.role, Role::Master(_)) {
            return Some(("err", super::local::unknown_local_command(command)));
        }
        let mut on_master = None;
        let mut on_worker = None;
        self.with_role(
            now,
            |m, ctx| {
                on_master = Some(if forward {
                    m.dapi_forward_local(conn, client, payload, ctx)
                } else {
                    m.dapi_local(conn, client, payload, ctx)
                });
            },
            |w, ctx| {
                on_worker = Some(w.dapi_local(conn, client, payload, ctx));
                Vec::new()
            },
        );
        on_master.or(on_worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_precede_the_first_space_and_are_short() {
        assert_eq!(split_id(b"ab-1 {}"), Some(("ab-1".to_string(), &b"{}"[..])));
        assert_eq!(split_id(b" {}"), None);
        assert_eq!(split_id(&[b'a'; 100]), None);
    }
}
