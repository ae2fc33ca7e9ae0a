//! Local clients of `queue/cluster/c-internal.sock` (PROTOCOL.md §7): `cluster_control`, the API and
//! Wazuh's C daemons. No hello and no encryption; the server names each client with a random id.

use std::time::Instant;

use bytes::Bytes;

use super::strings_out::{StringSends, Then};
use super::{flush_conn, silent_peers, ConnId, Node, Now, PeerConn, Purpose, Role};
use crate::proto::command::Command;
use crate::proto::connection::Event;
use crate::proto::wazuh_error::WazuhError;
use crate::{clog_debug, clog_error, clog_warn};

/// One local client.
pub(super) struct LocalPeer {
    pub(super) conn: PeerConn,
    client_id: u32,
    last_keepalive: Instant,
    /// Long strings being sent to the client (DAPI results).
    strings: StringSends,
}

/// A deferred answer to a local client's request (same counter), e.g. a page of the agent listing.
pub(super) struct LocalReply {
    pub(super) local: ConnId,
    pub(super) counter: u32,
    pub(super) command: &'static str,
    pub(super) payload: Vec<u8>,
}

/// A message to deliver to a local client as a new request (`control_res`, `err`, ...).
pub(super) struct LocalDelivery {
    pub(super) local: ConnId,
    pub(super) command: &'static str,
    pub(super) payload: Vec<u8>,
    /// `payload` goes first as a long string, then `<command> <string id>` (a DAPI result).
    pub(super) long: bool,
}

impl LocalDelivery {
    /// `<command> <payload>` as one request.
    pub(super) fn request(local: ConnId, command: &'static str, payload: Vec<u8>) -> LocalDelivery {
        LocalDelivery {
            local,
            command,
            payload,
            long: false,
        }
    }

    /// `payload` as a long string, then `<command> <string id>`.
    pub(super) fn string(local: ConnId, command: &'static str, payload: Vec<u8>) -> LocalDelivery {
        LocalDelivery {
            local,
            command,
            payload,
            long: true,
        }
    }
}

impl LocalPeer {
    pub(super) fn new(conn: PeerConn, client_id: u32, now: Now) -> LocalPeer {
        LocalPeer {
            conn,
            client_id,
            last_keepalive: now.mono,
            strings: StringSends::default(),
        }
    }

    fn tag(&self) -> String {
        format!("Local {}", self.client_id)
    }

    /// The id this node gave the client (the `<local client id>` of relayed requests).
    pub(super) fn client_id(&self) -> u32 {
        self.client_id
    }

    pub(super) fn log_closed(&self) {
        clog_debug!(
            self.tag(),
            "Main",
            "Local client {} disconnected.",
            self.client_id
        );
    }
}

/// A peer's `ok`/`err` that answers no request of ours: logged at debug level and dropped.
pub(super) fn stray_reply(conn: ConnId, counter: u32, command: &Command) {
    clog_debug!(
        "Main",
        "Main",
        "Dropped '{command}' (counter {counter}) on connection {conn}: it answers no request of ours."
    );
}

/// The plain-text answer stock nodes give to an unknown command on the cluster wire, where a stock
/// peer reads plain text as error 3000.
pub(super) fn unknown_command(command: &Command) -> Vec<u8> {
    format!("unknown command 'b'{}''", command.as_str()).into_bytes()
}

/// The answer to an unknown command from a local client: the same words as Wazuh's JSON error 3000,
/// because Wazuh's local client hands `err` payloads to JSON decoding as they are (plain text makes
/// the stock `cluster_control` and API fail with `Expecting value`).
pub(super) fn unknown_local_command(command: &Command) -> Vec<u8> {
    let text = String::from_utf8_lossy(&unknown_command(command)).into_owned();
    WazuhError::with_extra(3000, text).to_payload()
}

impl Node {
    pub(super) fn receive_local(&mut self, conn: ConnId, bytes: &[u8], now: Now) {
        let Some(peer) = self.locals.get_mut(&conn) else {
            return;
        };
        let mut events = Vec::new();
        if let Err(e) = peer.conn.receive(bytes, now.mono, &mut events) {
            clog_warn!(peer.tag(), "Main", "Closing local connection: {e}.");
            self.locals.remove(&conn);
            self.outputs.push(super::Output::Close { conn });
            return;
        }
        let timeout = self.settings.timers.timeout_cluster_request;
        for event in events {
            match event {
                Event::Request {
                    counter,
                    command,
                    payload,
                } => self.local_request(conn, counter, command, payload, now),
                Event::Reply {
                    purpose: Purpose::StringStep { token },
                    command,
                    payload,
                } => {
                    if let Some(peer) = self.locals.get_mut(&conn) {
                        if let Some(failed) = peer.strings.replied(
                            &mut peer.conn,
                            token,
                            command,
                            payload,
                            now.mono,
                            timeout,
                        ) {
                            clog_error!(
                                peer.tag(),
                                "Main",
                                "Could not send a result to the local client: {}",
                                crate::proto::quote::quote_bytes(&failed.payload)
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(peer) = self.locals.get_mut(&conn) {
            flush_conn(&mut self.outputs, conn, &mut peer.conn);
        }
        self.flush_all();
    }

    fn local_request(
        &mut self,
        conn: ConnId,
        counter: u32,
        command: Command,
        payload: Vec<u8>,
        now: Now,
    ) {
        let reply = match &command {
            Command::EchoC => {
                if let Some(peer) = self.locals.get_mut(&conn) {
                    peer.last_keepalive = now.mono;
                }
                Some(("ok-m ", payload))
            }
            Command::GetConfig => Some(("ok", self.settings.get_config.to_string().into_bytes())),
            Command::Other(name) if name == "get_runtime" => {
                Some(("ok", self.settings.runtime_info.to_string().into_bytes()))
            }
            Command::GetNodes | Command::GetHealth => match &mut self.role {
                Role::Master(master) => {
                    Some(match master.control(&command, &payload, &self.settings) {
                        Ok(json) => ("ok", json.to_string().into_bytes()),
                        Err(e) => ("err", e.to_payload()),
                    })
                }
                Role::Worker(worker) => {
                    match worker.forward(
                        &command,
                        &payload,
                        Purpose::ForwardToLocal { local: conn },
                        &self.settings,
                        now,
                    ) {
                        Ok(()) => Some(("ok", b"Sent request to master node".to_vec())),
                        Err(e) => Some(("err", e.to_payload())),
                    }
                }
            },
            Command::Dapi | Command::DapiFwd => {
                self.dapi_local_request(conn, &command, &payload, now)
            }
            Command::GetHash => self.get_hash_local(conn, counter),
            Command::SendFile => Some(self.send_file_local(conn, &payload, now)),
            Command::SendRReload => match self.sendrreload_local() {
                Some(reply) => Some(reply),
                None => Some(("err", unknown_local_command(&command))),
            },
            other => match self.sendsync_local_request(conn, counter, other, &payload, now) {
                Some(reply) => reply,
                None => Some(("err", unknown_local_command(other))),
            },
        };
        if let (Some((reply_command, reply_payload)), Some(peer)) =
            (reply, self.locals.get_mut(&conn))
        {
            if let Err(e) = peer.conn.reply(counter, reply_command, &reply_payload) {
                clog_error!(peer.tag(), "Main", "Could not answer '{command}': {e}");
            }
        }
    }

    /// Sends relayed answers to local clients as new requests, as stock nodes do.
    pub(super) fn deliver_to_locals(&mut self, deliveries: Vec<LocalDelivery>, now: Now) {
        let timeout = self.settings.timers.timeout_cluster_request;
        for d in deliveries {
            let Some(peer) = self.locals.get_mut(&d.local) else {
                continue;
            };
            let sent = if d.long {
                let then = Then {
                    command: d.command,
                    prefix: String::new(),
                    purpose: Purpose::Ignore,
                };
                peer.strings.start(
                    &mut peer.conn,
                    Bytes::from(d.payload),
                    then,
                    now.mono,
                    timeout,
                )
            } else {
                peer.conn
                    .request(d.command, &d.payload, Purpose::Ignore, now.mono, timeout)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            if let Err(e) = sent {
                clog_error!(
                    peer.tag(),
                    "Main",
                    "Could not forward the master's answer: {e}"
                );
            }
            flush_conn(&mut self.outputs, d.local, &mut peer.conn);
        }
    }

    /// Sends deferred answers to local clients that are still connected.
    pub(super) fn reply_to_locals(&mut self, replies: Vec<LocalReply>) {
        for r in replies {
            let Some(peer) = self.locals.get_mut(&r.local) else {
                continue;
            };
            if let Err(e) = peer.conn.reply(r.counter, r.command, &r.payload) {
                clog_error!(peer.tag(), "Main", "Could not answer: {e}");
            }
            flush_conn(&mut self.outputs, r.local, &mut peer.conn);
        }
    }

    /// Local clients are held to the same keepalive rule as workers.
    pub(super) fn check_local_keepalives(&mut self, now: Now) {
        let limit = self.settings.timers.max_allowed_time_without_keepalive;
        let silent = silent_peers(self.locals.iter(), |p| p.last_keepalive, limit, now);
        for conn in silent {
            if let Some(peer) = self.locals.remove(&conn) {
                clog_error!(
                    "Local Server",
                    "Keep alive",
                    "No keep alives have been received from {} in the last minute. Disconnecting",
                    peer.client_id
                );
                self.outputs.push(super::Output::Close { conn });
            }
        }
    }

    pub(super) fn expire_local_requests(&mut self, now: Now) {
        let timeout = self.settings.timers.timeout_cluster_request;
        for peer in self.locals.values_mut() {
            for purpose in peer.conn.expire(now.mono) {
                if let Purpose::StringStep { token } = purpose {
                    if peer
                        .strings
                        .timed_out(&mut peer.conn, token, now.mono, timeout)
                        .is_some()
                    {
                        clog_error!(
                            peer.tag(),
                            "Main",
                            "The local client did not take a result in time."
                        );
                    }
                }
            }
        }
    }

    /// Local clients' received files that waited too long are deleted.
    pub(super) fn expire_local_files(&mut self, now: Now) {
        for peer in self.locals.values_mut() {
            let tag = peer.tag();
            super::expire_received(&mut peer.conn, &tag, &self.settings, now);
        }
    }
}

/// A local request relayed to the master failed: tell the client with an `err` request.
pub(super) fn relay_failure(local: ConnId, error: &WazuhError) -> LocalDelivery {
    LocalDelivery::request(local, "err", error.to_payload())
}
