//! Send side of the long-string protocol (PROTOCOL.md §2.5): `new_str`, then one `str_upd` at a
//! time (each awaits its reply, so a 50 MB agent-info string never floods the connection), then
//! the command that references the string id. Several strings may be in flight on one connection;
//! each is named by a token carried in its requests' purpose.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{PeerConn, Purpose};
use crate::proto::command::Command;

/// Strings being sent on one connection at once; more is refused (the flows send one each).
const SENDS_MAX: usize = 1024;

/// The request sent once the string is complete: `<command> <prefix><string id>`.
#[derive(Debug, Clone)]
pub(super) struct Then {
    pub(super) command: &'static str,
    pub(super) prefix: String,
    /// The purpose of that final request; also receives a failure of the transfer (see [`StringSends::replied`]).
    pub(super) purpose: Purpose,
}

struct Sending {
    data: Bytes,
    sent: usize,
    /// The peer's id for the string, once `new_str` is answered.
    sid: Option<String>,
    then: Then,
}

/// A failed transfer, reported to the owner as if its final request had been answered `err`.
pub(super) struct Failed {
    pub(super) purpose: Purpose,
    pub(super) command: Command,
    pub(super) payload: Vec<u8>,
}

/// The long strings one connection is sending.
#[derive(Default)]
pub(super) struct StringSends {
    sends: HashMap<u64, Sending>,
    next: u64,
}

impl StringSends {
    /// Starts sending `data`; `then` follows when every byte is out.
    pub(super) fn start(
        &mut self,
        peer: &mut PeerConn,
        data: Bytes,
        then: Then,
        now: Instant,
        timeout: Duration,
    ) -> Result<(), String> {
        if self.sends.len() >= SENDS_MAX {
            return Err(format!(
                "too many long strings in flight on this connection (limit {SENDS_MAX})"
            ));
        }
        self.next += 1;
        let token = self.next;
        peer.request(
            "new_str",
            data.len().to_string().as_bytes(),
            Purpose::StringStep { token },
            now,
            timeout,
        )
        .map_err(|e| e.to_string())?;
        self.sends.insert(
            token,
            Sending {
                data,
                sent: 0,
                sid: None,
                then,
            },
        );
        Ok(())
    }

    /// The peer answered a step of transfer `token`. A refused `new_str` ends the transfer and is
    /// returned for the owner; `str_upd` errors are ignored, as stock senders do.
    pub(super) fn replied(
        &mut self,
        peer: &mut PeerConn,
        token: u64,
        command: Command,
        payload: Vec<u8>,
        now: Instant,
        timeout: Duration,
    ) -> Option<Failed> {
        let send = self.sends.get_mut(&token)?;
        if send.sid.is_none() {
            if command != Command::Ok {
                let send = self.sends.remove(&token)?;
                return Some(Failed {
                    purpose: send.then.purpose,
                    command: Command::Err,
                    payload,
                });
            }
            send.sid = Some(String::from_utf8_lossy(&payload).trim().to_string());
        }
        self.advance(peer, token, now, timeout)
    }

    /// A step's reply did not come in time: `new_str` fails the transfer, `str_upd` moves on.
    pub(super) fn timed_out(
        &mut self,
        peer: &mut PeerConn,
        token: u64,
        now: Instant,
        timeout: Duration,
    ) -> Option<Failed> {
        let send = self.sends.get(&token)?;
        if send.sid.is_none() {
            let send = self.sends.remove(&token)?;
            return Some(Failed {
                purpose: send.then.purpose,
                command: Command::Err,
                payload: b"the peer did not answer new_str in time".to_vec(),
            });
        }
        self.advance(peer, token, now, timeout)
    }

    /// Sends the next chunk, or the final request when the string is complete.
    fn advance(
        &mut self,
        peer: &mut PeerConn,
        token: u64,
        now: Instant,
        timeout: Duration,
    ) -> Option<Failed> {
        let send = self.sends.get_mut(&token)?;
        let sid = send.sid.clone().unwrap_or_default();
        if send.sent < send.data.len() {
            let room = peer.chunk_bytes().saturating_sub(sid.len() + 1).max(1);
            let end = (send.sent + room).min(send.data.len());
            let mut payload = Vec::with_capacity(sid.len() + 1 + end - send.sent);
            payload.extend_from_slice(sid.as_bytes());
            payload.push(b' ');
            payload.extend_from_slice(&send.data[send.sent..end]);
            send.sent = end;
            return match peer.request(
                "str_upd",
                &payload,
                Purpose::StringStep { token },
                now,
                timeout,
            ) {
                Ok(_) => None,
                Err(e) => self.fail(token, e.to_string()),
            };
        }
        let send = self.sends.remove(&token)?;
        let text = format!("{}{sid}", send.then.prefix);
        match peer.request(
            send.then.command,
            text.as_bytes(),
            send.then.purpose.clone(),
            now,
            timeout,
        ) {
            Ok(_) => None,
            Err(e) => Some(Failed {
                purpose: send.then.purpose,
                command: Command::Err,
                payload: e.to_string().into_bytes(),
            }),
        }
    }

    fn fail(&mut self, token: u64, reason: String) -> Option<Failed> {
        let send = self.sends.remove(&token)?;
        Some(Failed {
            purpose: send.then.purpose,
            command: Command::Err,
            payload: reason.into_bytes(),
        })
    }

    /// The connection is gone: every transfer ends with it.
    pub(super) fn clear(&mut self) {
        self.sends.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::connection::{ConnLimits, Connection, Event};
    use crate::proto::crypto::Cipher;

    fn conn(seed: u64, chunk_bytes: usize) -> PeerConn {
        Connection::new(
            Cipher::Plain,
            ConnLimits {
                chunk_bytes,
                ..ConnLimits::default()
            },
            seed,
        )
    }

    /// Delivers `from`'s frames to `to` and returns `to`'s events.
    fn pump(from: &mut PeerConn, to: &mut PeerConn, now: Instant) -> Vec<Event<Purpose>> {
        let mut events = Vec::new();
        for frame in from.take_outbox() {
            to.receive(&frame, now, &mut events).unwrap();
        }
        events
    }

    #[test]
    fn a_string_larger_than_a_chunk_arrives_whole_then_the_final_request_follows() {
        let now = Instant::now();
        let timeout = Duration::from_secs(5);
        let (mut sender, mut receiver) = (conn(1, 100), conn(2, 100));
        let mut sends = StringSends::default();
        let data: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let then = Then {
            command: "syn_a_w_m",
            prefix: String::new(),
            purpose: Purpose::AgentInfo,
        };
        sends
            .start(&mut sender, Bytes::from(data.clone()), then, now, timeout)
            .unwrap();
        let mut final_request = None;
        for _ in 0..100 {
            for event in pump(&mut sender, &mut receiver, now) {
                if let Event::Request {
                    command, payload, ..
                } = event
                {
                    final_request = Some((command, payload));
                }
            }
            let replies = pump(&mut receiver, &mut sender, now);
            if replies.is_empty() {
                break;
            }
            for event in replies {
                if let Event::Reply {
                    purpose: Purpose::StringStep { token },
                    command,
                    payload,
                } = event
                {
                    assert!(sends
                        .replied(&mut sender, token, command, payload, now, timeout)
                        .is_none());
                }
            }
        }
        let (command, sid) = final_request.expect("the final request was sent");
        assert_eq!(command, Command::SynAWM);
        let sid = String::from_utf8(sid).unwrap();
        assert_eq!(receiver.take_string(&sid).unwrap(), data);
    }

    #[test]
    fn a_refused_new_str_fails_the_transfer_for_its_owner() {
        let now = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut sender = conn(1, 100);
        let mut sends = StringSends::default();
        let then = Then {
            command: "sendsyn_res",
            prefix: "42 ".into(),
            purpose: Purpose::Ignore,
        };
        sends
            .start(&mut sender, Bytes::from_static(b"x"), then, now, timeout)
            .unwrap();
        let failed = sends
            .replied(
                &mut sender,
                1,
                Command::Other("error".into()),
                b"Requested size exceeds maximum allowed limit".to_vec(),
                now,
                timeout,
            )
            .expect("the owner hears of the failure");
        assert_eq!(failed.purpose, Purpose::Ignore);
        assert_eq!(failed.command, Command::Err);
        assert!(sends.sends.is_empty());
    }
}
