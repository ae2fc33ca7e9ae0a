//! One connection's generic handler layer (PROTOCOL.md §2): decoding, decryption, request counters and
//! reply matching, and the commands every handler answers the same way (`echo`, long strings,
//! `cancel_task`). Role-specific requests are handed up as [`Event::Request`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::command::Command;
use super::crypto::{Cipher, CryptoError};
use super::decoder::{DecodeError, DecodeLimits, Decoder};
use super::encoder::encode_message;
use super::files::{FileError, FileLimits, FileOp, IncomingFiles};
use super::frame::{CommandNameError, REQUEST_CHUNK_BYTES};
use super::requests::{Match, Requests, TooManyRequests};
use super::strings::{StringError, StringLimits, Strings};
use super::wazuh_error::WazuhError;

/// Cancelled task ids remembered per connection.
const INTERRUPTED_TASKS_MAX: usize = 1024;

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub decode: DecodeLimits,
    pub strings: StringLimits,
    pub files: FileLimits,
    pub requests_in_flight_max: usize,
    /// Plaintext size above which outgoing messages are divided.
    pub chunk_bytes: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            decode: DecodeLimits::default(),
            strings: StringLimits::default(),
            files: FileLimits::default(),
            requests_in_flight_max: 1024,
            chunk_bytes: REQUEST_CHUNK_BYTES,
        }
    }
}

/// A fault that ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Decrypt(#[from] CryptoError),
    #[error(transparent)]
    CommandName(#[from] CommandNameError),
    #[error(transparent)]
    TooManyRequests(#[from] TooManyRequests),
}

/// Something the role above must handle.
#[derive(Debug)]
pub enum Event<P> {
    /// A request from the peer that the generic layer does not answer itself.
    Request {
        counter: u32,
        command: Command,
        payload: Vec<u8>,
    },
    /// The reply to one of our requests.
    Reply {
        purpose: P,
        command: Command,
        payload: Vec<u8>,
    },
    /// The peer cancelled one of our tasks (`cancel_task`); already acknowledged.
    Cancelled { task_id: String, error: String },
}

/// The generic layer of one connection. `P` tells the role what a reply is for.
pub struct Connection<P> {
    cipher: Cipher,
    decoder: Decoder,
    counter: u32,
    rng: SmallRng,
    requests: Requests<P>,
    strings: Strings,
    files: IncomingFiles,
    interrupted: VecDeque<String>,
    outbox: Vec<Bytes>,
    chunk_bytes: usize,
}

impl<P> Connection<P> {
    /// `seed` feeds the counter start and string ids (random in production, fixed in simulations).
    pub fn new(cipher: Cipher, limits: ConnLimits, seed: u64) -> Connection<P> {
        let mut rng = SmallRng::seed_from_u64(seed);
        Connection {
            cipher,
            decoder: Decoder::new(limits.decode),
            counter: rng.random(),
            rng,
            requests: Requests::new(limits.requests_in_flight_max),
            strings: Strings::new(limits.strings),
            files: IncomingFiles::new(limits.files),
            interrupted: VecDeque::new(),
            outbox: Vec::new(),
            chunk_bytes: limits.chunk_bytes,
        }
    }

    /// Feeds received bytes; generic requests are answered into the outbox, the rest become events.
    pub fn receive(
        &mut self,
        input: &[u8],
        now: Instant,
        events: &mut Vec<Event<P>>,
    ) -> Result<(), ConnError> {
        let mut messages = Vec::new();
        self.decoder.feed(input, now, &mut messages)?;
        for message in messages {
            let payload = self.cipher.decrypt(&message.payload)?;
            let command = Command::parse(&message.command);
            match self.requests.take(message.counter) {
                Match::Reply(purpose) => events.push(Event::Reply {
                    purpose,
                    command,
                    payload,
                }),
                Match::Late => {}
                Match::NotOurs => {
                    self.handle_generic(message.counter, command, payload, now, events)?
                }
            }
        }
        Ok(())
    }

    fn handle_generic(
        &mut self,
        counter: u32,
        command: Command,
        payload: Vec<u8>,
        now: Instant,
        events: &mut Vec<Event<P>>,
    ) -> Result<(), ConnError> {
        match command {
            Command::Echo => self.reply(counter, "ok", &payload),
            Command::NewStr => {
                let id = self.rng.random();
                match self.strings.open(&payload, id) {
                    Ok(id) => self.reply(counter, "ok", id.to_string().as_bytes()),
                    Err(StringError::TooLarge) => self.reply(
                        counter,
                        "error",
                        StringError::TooLarge.to_string().as_bytes(),
                    ),
                    Err(e) => self.refuse(counter, e),
                }
            }
            Command::StrUpd => match self.strings.update(&payload) {
                Ok(()) => self.reply(counter, "ok", b"String updated"),
                Err(e) => self.refuse(counter, e),
            },
            Command::ErrStr => match self.strings.abandon(&payload) {
                Ok(Some(id)) => self.reply(counter, "ok", id.to_string().as_bytes()),
                Ok(None) => self.reply(counter, "ok", b"None"),
                Err(e) => self.refuse(counter, e),
            },
            Command::NewFile => match self.files.open(&payload, now) {
                Ok(()) => self.reply(counter, "ok ", b"Ready to receive new file"),
                Err(e) => self.file_refused(counter, e),
            },
            Command::FileUpd => self.file_reply(
                counter,
                |files| files.update(&payload, now),
                b"File updated",
            ),
            Command::FileEnd => self.file_reply(
                counter,
                |files| files.end(&payload, now),
                b"File received correctly",
            ),
            Command::CancelTask => {
                let text = String::from_utf8_lossy(&payload);
                let (task_id, error) = text.split_once(' ').unwrap_or((&text, ""));
                if task_id != "None" {
                    if self.interrupted.len() >= INTERRUPTED_TASKS_MAX {
                        self.interrupted.pop_front();
                    }
                    self.interrupted.push_back(task_id.to_string());
                }
                events.push(Event::Cancelled {
                    task_id: task_id.to_string(),
                    error: error.to_string(),
                });
                self.reply(counter, "ok", b"Request received correctly")
            }
            command => {
                events.push(Event::Request {
                    counter,
                    command,
                    payload,
                });
                Ok(())
            }
        }
    }

    fn file_reply(
        &mut self,
        counter: u32,
        step: impl FnOnce(&mut IncomingFiles) -> Result<(), FileError>,
        done: &[u8],
    ) -> Result<(), ConnError> {
        match step(&mut self.files) {
            Ok(()) => self.reply(counter, "ok", done),
            Err(e) => self.file_refused(counter, e),
        }
    }

    /// A generic request that failed: where a stock node's handler raises, its peer gets
    /// Wazuh's JSON error 1000 with the reason.
    fn refuse(&mut self, counter: u32, reason: impl std::fmt::Display) -> Result<(), ConnError> {
        let error = WazuhError::with_extra(1000, reason.to_string());
        self.reply(counter, "err", &error.to_payload())
    }

    /// A refused file step: the two texts stock nodes answer in plain words stay plain, the rest
    /// is an error as stock handlers raise it.
    fn file_refused(&mut self, counter: u32, error: FileError) -> Result<(), ConnError> {
        match error {
            FileError::PathNotAllowed | FileError::Checksum => {
                self.reply(counter, "err", error.to_string().as_bytes())
            }
            other => self.refuse(counter, other),
        }
    }

    /// Sends a new request and remembers what its reply is for.
    pub fn request(
        &mut self,
        command: &str,
        payload: &[u8],
        purpose: P,
        now: Instant,
        timeout: Duration,
    ) -> Result<u32, ConnError> {
        let mut counter = self.counter.wrapping_add(1);
        while !self.requests.is_free(counter) {
            counter = counter.wrapping_add(1);
        }
        let frames = encode_message(counter, command, payload, &self.cipher, self.chunk_bytes)?;
        self.requests.insert(counter, purpose, now, timeout)?;
        self.counter = counter;
        self.outbox.extend(frames);
        Ok(counter)
    }

    /// Answers a peer's request (same counter).
    pub fn reply(&mut self, counter: u32, command: &str, payload: &[u8]) -> Result<(), ConnError> {
        let frames = encode_message(counter, command, payload, &self.cipher, self.chunk_bytes)?;
        self.outbox.extend(frames);
        Ok(())
    }

    /// Requests whose reply did not come in time.
    pub fn expire(&mut self, now: Instant) -> Vec<P> {
        self.requests.expire(now)
    }

    /// Every request still waiting (the connection is closing).
    pub fn abandon_requests(&mut self) -> Vec<P> {
        self.requests.drain()
    }

    /// True when a frame's payload stalled longer than allowed.
    pub fn payload_overdue(&self, now: Instant) -> bool {
        self.decoder.payload_overdue(now)
    }

    /// Consumes a long string the peer filled.
    pub fn take_string(&mut self, id: &str) -> Result<Vec<u8>, StringError> {
        self.strings.take(id)
    }

    /// True if the peer cancelled the task.
    pub fn is_interrupted(&self, task_id: &str) -> bool {
        self.interrupted.iter().any(|t| t == task_id)
    }

    /// Accept received files only below `prefix` from now on.
    pub fn confine_received_files(&mut self, prefix: &str) {
        self.files.confine_to(prefix);
    }

    /// Accept no file until [`Connection::confine_received_files`] (a peer before its hello).
    pub fn refuse_received_files(&mut self) {
        self.files.refuse_all();
    }

    /// Received file bytes to write and files to delete, in order.
    pub fn take_file_ops(&mut self) -> Vec<FileOp> {
        self.files.take_ops()
    }

    /// Deletes received files idle or unreferenced for longer than `max_age`; their paths.
    pub fn expire_received_files(&mut self, now: Instant, max_age: Duration) -> Vec<String> {
        self.files.expire(now, max_age)
    }

    /// The connection is over: every received file no task took is deleted (see
    /// [`Connection::take_file_ops`]).
    pub fn release_received_files(&mut self) {
        self.files.release_all();
    }

    /// Received files held now (open, or finished and not yet referenced).
    pub fn received_files_held(&self) -> usize {
        self.files.held()
    }

    /// Writing a received file failed: its `file_end` will be answered with the error.
    pub fn file_write_failed(&mut self, rel: &str, reason: &str) {
        self.files.write_failed(rel, reason);
    }

    /// Whether a finished file transfer arrived intact (for the command that references it).
    pub fn take_received_file(&mut self, rel: &str) -> Option<bool> {
        self.files.take_finished(rel)
    }

    /// Frames waiting to be written, in order.
    pub fn take_outbox(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.outbox)
    }

    /// Plaintext size above which a message is divided: the long-string chunk is sized from it.
    pub fn chunk_bytes(&self) -> usize {
        self.chunk_bytes
    }

    pub fn requests_in_flight(&self) -> usize {
        self.requests.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(key: Option<&str>) -> (Connection<&'static str>, Connection<&'static str>) {
        let cipher = key.map_or(Cipher::Plain, |k| Cipher::from_cluster_key(k).unwrap());
        (
            Connection::new(cipher.clone(), ConnLimits::default(), 1),
            Connection::new(cipher, ConnLimits::default(), 2),
        )
    }

    fn pump(
        from: &mut Connection<&'static str>,
        to: &mut Connection<&'static str>,
    ) -> Vec<Event<&'static str>> {
        let mut events = Vec::new();
        for frame in from.take_outbox() {
            to.receive(&frame, Instant::now(), &mut events).unwrap();
        }
        events
    }

    #[test]
    fn echo_is_answered_generically_and_matched_by_counter() {
        let (mut a, mut b) = pair(Some("c98b62a9b6169ac5f67dae55ae4a9088"));
        a.request(
            "echo",
            b"ping",
            "echo",
            Instant::now(),
            Duration::from_secs(20),
        )
        .unwrap();
        assert!(pump(&mut a, &mut b).is_empty());
        let events = pump(&mut b, &mut a);
        assert!(
            matches!(&events[..], [Event::Reply { purpose: "echo", command: Command::Ok, payload }] if payload == b"ping")
        );
    }

    #[test]
    fn long_string_is_received_and_taken() {
        let (mut a, mut b) = pair(None);
        let now = Instant::now();
        a.request("new_str", b"11", "new", now, Duration::from_secs(20))
            .unwrap();
        pump(&mut a, &mut b);
        let events = pump(&mut b, &mut a);
        let Event::Reply { payload, .. } = &events[0] else {
            panic!("no reply")
        };
        let id = String::from_utf8(payload.clone()).unwrap();
        a.request(
            "str_upd",
            format!("{id} hello ").as_bytes(),
            "upd",
            now,
            Duration::from_secs(20),
        )
        .unwrap();
        a.request(
            "str_upd",
            format!("{id} world").as_bytes(),
            "upd",
            now,
            Duration::from_secs(20),
        )
        .unwrap();
        pump(&mut a, &mut b);
        assert_eq!(b.take_string(&id).unwrap(), b"hello world");
    }

    /// Where a stock handler raises, the refusal is Wazuh's JSON error 1000; the two refusals stock
    /// answers in plain words stay plain.
    #[test]
    fn generic_refusals_are_json_errors_except_the_stock_plain_ones() {
        let (mut a, mut b) = pair(None);
        let now = Instant::now();
        let t = Duration::from_secs(20);
        a.request("str_upd", b"12345 lost", "upd", now, t).unwrap();
        a.request("new_file", b"/etc/client.keys", "file", now, t)
            .unwrap();
        pump(&mut a, &mut b);
        let events = pump(&mut b, &mut a);
        let payloads: Vec<&Vec<u8>> = events
            .iter()
            .map(|e| match e {
                Event::Reply {
                    command: Command::Err,
                    payload,
                    ..
                } => payload,
                other => panic!("{other:?}"),
            })
            .collect();
        let error = WazuhError::from_payload(payloads[0]);
        assert_eq!(error.code, 1000);
        assert!(payloads[0].starts_with(b"{\"__wazuh_exception__\""));
        assert_eq!(payloads[1].as_slice(), b"Write path not allowed");
    }

    #[test]
    fn wrong_key_is_a_decrypt_error() {
        let mut a: Connection<&str> = Connection::new(
            Cipher::from_cluster_key("c98b62a9b6169ac5f67dae55ae4a9088").unwrap(),
            ConnLimits::default(),
            1,
        );
        let mut b: Connection<&str> = Connection::new(
            Cipher::from_cluster_key("00000000000000000000000000000000").unwrap(),
            ConnLimits::default(),
            2,
        );
        a.request(
            "hello",
            b"w1 wazuh worker 4.3.11",
            "hello",
            Instant::now(),
            Duration::from_secs(1),
        )
        .unwrap();
        let mut events = Vec::new();
        let frame = a.take_outbox().remove(0);
        assert!(matches!(
            b.receive(&frame, Instant::now(), &mut events),
            Err(ConnError::Decrypt(_))
        ));
    }

    #[test]
    fn late_replies_are_dropped_and_cancel_task_is_acknowledged() {
        let (mut a, mut b) = pair(None);
        let t0 = Instant::now();
        a.request("echo", b"x", "slow", t0, Duration::from_secs(1))
            .unwrap();
        pump(&mut a, &mut b);
        assert_eq!(a.expire(t0 + Duration::from_secs(2)), vec!["slow"]);
        assert!(pump(&mut b, &mut a).is_empty());
        a.request(
            "cancel_task",
            b"abc {\"error\": 3039}",
            "cancel",
            t0,
            Duration::from_secs(5),
        )
        .unwrap();
        let events = pump(&mut a, &mut b);
        assert!(matches!(&events[0], Event::Cancelled { task_id, .. } if task_id == "abc"));
        assert!(b.is_interrupted("abc"));
    }
}
