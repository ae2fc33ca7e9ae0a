//! A blocking client of the local socket `queue/cluster/c-internal.sock`, as `cluster_control` and the
//! API use it. On a worker, `get_nodes`, `get_health` and `get_agents` are relayed to the master: the
//! first answer is `Sent request to master node`, the result arrives later as a `control_res` request.
//! A `sendsync` gets no answer of its own: its outcome arrives as a request `ok` or `err`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::proto::command::Command;
use crate::proto::connection::{ConnError, ConnLimits, Connection, Event};
use crate::proto::crypto::Cipher;
use crate::proto::wazuh_error::WazuhError;

/// The first answer of a worker that relays a request to its master.
const RELAYED: &[u8] = b"Sent request to master node";

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("could not connect to {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("local socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(#[from] ConnError),
    #[error("{0}")]
    Remote(WazuhError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the daemon closed the connection before answering")]
    Closed,
}

/// One connection to a node's local server.
pub struct LocalClient {
    stream: UnixStream,
    conn: Connection<()>,
    timeout: Duration,
}

/// An `err` payload of the node as an error.
fn remote(payload: &[u8]) -> ControlError {
    ControlError::Remote(WazuhError::from_payload(payload))
}

pub fn socket_path(home: &Path) -> PathBuf {
    home.join("queue/cluster/c-internal.sock")
}

impl LocalClient {
    pub fn connect(home: &Path, timeout: Duration) -> Result<LocalClient, ControlError> {
        let path = socket_path(home);
        let stream =
            UnixStream::connect(&path).map_err(|source| ControlError::Connect { path, source })?;
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(LocalClient {
            stream,
            conn: Connection::new(Cipher::Plain, ConnLimits::default(), rand::random()),
            timeout,
        })
    }

    fn flush(&mut self) -> Result<(), ControlError> {
        for frame in self.conn.take_outbox() {
            self.stream.write_all(&frame)?;
        }
        Ok(())
    }

    /// Reads once (the socket's short read timeout bounds the wait) and decodes what arrived; the
    /// events may be none. Fails once `timeout` has passed since `start`.
    fn read_events(
        &mut self,
        start: Instant,
        buf: &mut [u8],
    ) -> Result<Vec<Event<()>>, ControlError> {
        if start.elapsed() > self.timeout {
            return Err(ControlError::Timeout(self.timeout));
        }
        let n = match self.stream.read(buf) {
            Ok(0) => return Err(ControlError::Closed),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e.into()),
        };
        let mut events = Vec::new();
        self.conn.receive(&buf[..n], Instant::now(), &mut events)?;
        Ok(events)
    }

    /// Reads until `handle` turns an event into the outcome (the last one of a read wins), or the
    /// timeout counted from `start` passes. Requests `handle` answers are flushed after each read.
    fn drive<T>(
        &mut self,
        start: Instant,
        buf_bytes: usize,
        mut handle: impl FnMut(
            &mut Self,
            Event<()>,
        ) -> Result<Option<Result<T, ControlError>>, ControlError>,
    ) -> Result<T, ControlError> {
        let mut buf = vec![0u8; buf_bytes];
        loop {
            let events = self.read_events(start, &mut buf)?;
            let mut outcome = None;
            for event in events {
                if let Some(found) = handle(self, event)? {
                    outcome = Some(found);
                }
            }
            self.flush()?;
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    }

    /// Sends a request and returns the result payload, following a worker's relay.
    pub fn call(&mut self, command: &str, payload: &[u8]) -> Result<Vec<u8>, ControlError> {
        let start = Instant::now();
        self.conn
            .request(command, payload, (), start, self.timeout)?;
        self.flush()?;
        self.drive(start, 256 * 1024, |client, event| {
            Ok(match event {
                Event::Reply {
                    command: Command::Ok,
                    payload,
                    ..
                } if payload == RELAYED => None,
                Event::Reply {
                    command: Command::Ok,
                    payload,
                    ..
                } => Some(Ok(payload)),
                Event::Reply { payload, .. } => Some(Err(remote(&payload))),
                Event::Request {
                    counter,
                    command: Command::ControlRes,
                    payload,
                } => {
                    client.conn.reply(counter, "ok", b"Response received")?;
                    Some(Ok(payload))
                }
                // The outcome of a `sendsync`: the daemon's answer as a new request.
                Event::Request {
                    counter,
                    command,
                    payload,
                } => client.daemon_answer(counter, command, payload)?,
                Event::Cancelled { .. } => None,
            })
        })
    }

    /// Sends a distributed-API request (`dapi`) as Wazuh's local client does, and returns its
    /// result: the node acknowledges the request, then sends the result as a long string followed
    /// by a `dapi_res <string id>` request, or a `dapi_err <error>` request. Both are acknowledged
    /// with Wazuh's replies.
    pub fn dapi(&mut self, request: &[u8]) -> Result<Vec<u8>, ControlError> {
        let start = Instant::now();
        self.conn
            .request("dapi", request, (), start, self.timeout)?;
        self.flush()?;
        self.drive(start, 256 * 1024, |client, event| {
            Ok(match event {
                Event::Reply {
                    command: Command::Ok,
                    ..
                } => None,
                Event::Reply { payload, .. } => Some(Err(remote(&payload))),
                Event::Request {
                    counter,
                    command: Command::DapiRes,
                    payload,
                } => {
                    let sid = String::from_utf8_lossy(&payload).into_owned();
                    let result = client.conn.take_string(&sid).map_err(|e| {
                        ControlError::Remote(WazuhError::with_extra(3035, e.to_string()))
                    });
                    client
                        .conn
                        .reply(counter, "ok", b"Distributed api response received")?;
                    Some(result)
                }
                Event::Request {
                    counter,
                    command: Command::DapiErr,
                    payload,
                } => {
                    client.conn.reply(counter, "ok", b"Response received")?;
                    Some(Err(remote(&payload)))
                }
                Event::Request { counter, .. } => {
                    client.conn.reply(counter, "err", b"unexpected request")?;
                    None
                }
                Event::Cancelled { .. } => None,
            })
        })
    }

    /// Sends a file under the node's `queue/cluster/` to `node` (`send_file`, the file-protocol test
    /// command): the node acknowledges, sends the file and then reports with a `send_f_res <bytes>`
    /// request (the bytes sent) or an `err <error>` request.
    pub fn send_file(&mut self, path: &Path, node: &str) -> Result<u64, ControlError> {
        let start = Instant::now();
        let payload = format!("{} {node}", path.display());
        self.conn
            .request("send_file", payload.as_bytes(), (), start, self.timeout)?;
        self.flush()?;
        self.drive(start, 4096, |client, event| {
            Ok(match event {
                Event::Reply {
                    command: Command::Ok,
                    ..
                } => None,
                Event::Reply { payload, .. } => Some(Err(remote(&payload))),
                Event::Request {
                    counter,
                    command: Command::SendFRes,
                    payload,
                } => {
                    client.conn.reply(counter, "ok", b"Response received")?;
                    let text = String::from_utf8_lossy(&payload);
                    Some(text.trim().parse::<u64>().map_err(|_| {
                        ControlError::Remote(WazuhError::with_extra(
                            1000,
                            format!("send_f_res carries no byte count: {text}"),
                        ))
                    }))
                }
                Event::Request {
                    counter,
                    command: Command::Err,
                    payload,
                } => {
                    client
                        .conn
                        .reply(counter, "ok", b"Error response received")?;
                    Some(Err(remote(&payload)))
                }
                Event::Request { counter, .. } => {
                    client.conn.reply(counter, "err", b"unexpected request")?;
                    None
                }
                Event::Cancelled { .. } => None,
            })
        })
    }

    /// Like [`call`](Self::call), for JSON answers.
    pub fn call_json(
        &mut self,
        command: &str,
        payload: &[u8],
    ) -> Result<serde_json::Value, ControlError> {
        let raw = self.call(command, payload)?;
        serde_json::from_slice(&raw)
            .map_err(|e| ControlError::Remote(WazuhError::with_extra(3036, e.to_string())))
    }

    /// Sends one `sendsync` request (`{"daemon_name": .., "message": ..}`) as a worker-side daemon
    /// does, and waits for its outcome: the node gives the request no reply of its own, the
    /// daemon's answer arrives later as a new request `ok` (returned) or `err` (an error). Both are
    /// acknowledged the way Wazuh's local client does. An immediate `err` reply (a node that does not
    /// take `sendsync`, an oversized request) is an error; an immediate `ok` (the acknowledgement
    /// `sendasync` gets) is passed over.
    pub fn sendsync(&mut self, json: &[u8]) -> Result<String, ControlError> {
        let start = Instant::now();
        self.conn
            .request("sendsync", json, (), start, self.timeout)?;
        self.flush()?;
        let outcome = self.sendsync_outcome(start);
        // The request never gets a reply: forget it, so the table of requests in flight does not
        // fill up over thousands of calls on one connection.
        self.conn.abandon_requests();
        outcome
    }

    /// A request from the node: the outcome of a `sendsync` (`ok` with the daemon's answer, `err`
    /// with the error), acknowledged as Wazuh's local client does. Anything else is refused and
    /// yields no outcome.
    fn daemon_answer(
        &mut self,
        counter: u32,
        command: Command,
        payload: Vec<u8>,
    ) -> Result<Option<Result<Vec<u8>, ControlError>>, ControlError> {
        match command {
            Command::Ok => {
                self.conn
                    .reply(counter, "ok", b"Sendsync response received")?;
                Ok(Some(Ok(payload)))
            }
            Command::Err => {
                self.conn.reply(counter, "ok", b"Error response received")?;
                Ok(Some(Err(remote(&payload))))
            }
            _ => {
                self.conn.reply(counter, "err", b"unexpected request")?;
                Ok(None)
            }
        }
    }

    /// Reads until the outcome of the `sendsync` sent at `start` arrives, or the timeout passes.
    fn sendsync_outcome(&mut self, start: Instant) -> Result<String, ControlError> {
        self.drive(start, 64 * 1024, |client, event| {
            Ok(match event {
                Event::Request {
                    counter,
                    command,
                    payload,
                } => client
                    .daemon_answer(counter, command, payload)?
                    .map(|answer| answer.map(|text| String::from_utf8_lossy(&text).into_owned())),
                Event::Reply {
                    command: Command::Ok,
                    ..
                } => None,
                Event::Reply { payload, .. } => Some(Err(remote(&payload))),
                Event::Cancelled { .. } => None,
            })
        })
    }
}
