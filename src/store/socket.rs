//! [`WdbSocket`]: the client of a running wazuh-db, on its classic socket and its HTTP socket.
//!
//! The classic socket keeps one connection open between commands, as wazuh-db expects from its
//! long-lived clients; commands are serialised on it by a mutex (a reply belongs to the command just
//! sent, so two callers cannot share the stream at once). wazuh-db drops idle or failed peers, so a
//! reused connection that turns out to be closed is replaced once, transparently.

mod http;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::unix;
use super::wire::{self, HEADER_LEN};
use super::{StoreError, WazuhDb, WdbReply};

pub use http::{HTTP_BODY_MAX, HTTP_HEAD_MAX};

/// How long one connect, write or read may take before the exchange is abandoned (as the Python
/// framework's clients do).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A wazuh-db reached through its Unix sockets.
pub struct WdbSocket {
    wdb_path: PathBuf,
    http_path: PathBuf,
    timeout: Duration,
    conn: Mutex<Option<UnixStream>>,
}

/// Why one exchange on a connection failed, and whether trying a fresh connection makes sense.
enum Failure {
    /// The peer had closed the connection before taking the command: a new connection may work.
    Stale(StoreError),
    /// Anything else: retrying could run the command twice or wait twice as long.
    Final(StoreError),
}

impl Failure {
    fn into_error(self) -> StoreError {
        match self {
            Failure::Stale(e) | Failure::Final(e) => e,
        }
    }
}

impl WdbSocket {
    /// A client of the classic socket `wdb_path` and the HTTP socket `http_path`; connects on first use.
    pub fn new(wdb_path: PathBuf, http_path: PathBuf) -> WdbSocket {
        WdbSocket {
            wdb_path,
            http_path,
            timeout: DEFAULT_TIMEOUT,
            conn: Mutex::new(None),
        }
    }

    /// Replaces the connect/read/write timeout (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> WdbSocket {
        self.timeout = timeout;
        self
    }

    /// Whether something listens on the Unix stream socket at `path` (it accepts, or its queue is full).
    pub fn probe(path: &Path) -> bool {
        unix::listening(path)
    }

    /// The classic socket this client talks to.
    pub fn wdb_path(&self) -> &Path {
        &self.wdb_path
    }

    /// The HTTP socket this client talks to.
    pub fn http_path(&self) -> &Path {
        &self.http_path
    }

    fn socket_error(&self, reason: String) -> StoreError {
        StoreError::Socket {
            path: self.wdb_path.display().to_string(),
            reason,
        }
    }

    fn connect(&self) -> Result<UnixStream, StoreError> {
        let stream = unix::connect_within(&self.wdb_path, self.timeout)
            .map_err(|e| self.socket_error(format!("cannot connect: {e}")))?;
        // A zero duration is refused by the socket options; it would mean "wait forever" anyway.
        let timeout = Some(self.timeout.max(Duration::from_millis(1)));
        stream
            .set_read_timeout(timeout)
            .and_then(|()| stream.set_write_timeout(timeout))
            .map_err(|e| self.socket_error(format!("cannot set timeouts: {e}")))?;
        Ok(stream)
    }

    fn io_reason(&self, step: &str, e: &io::Error) -> String {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                format!("{step}: no progress within {} ms", self.timeout.as_millis())
            }
            _ => format!("{step}: {e}"),
        }
    }

    /// Sends one framed command and reads the framed reply's bytes.
    fn exchange(&self, mut stream: &UnixStream, frame: &[u8]) -> Result<Vec<u8>, Failure> {
        if let Err(e) = stream.write_all(frame).and_then(|()| stream.flush()) {
            let error = self.socket_error(self.io_reason("sending the command failed", &e));
            return Err(match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Final(error),
                _ => Failure::Stale(error),
            });
        }
        let mut header = [0u8; HEADER_LEN];
        match read_full(stream, &mut header) {
            Ok(()) => {}
            Err((0, e)) if closed_by_peer(&e) => {
                let reason = format!("connection closed before any reply ({e})");
                return Err(Failure::Stale(self.socket_error(reason)));
            }
            Err((got, e)) => {
                let step =
                    format!("reading the reply header failed after {got} of {HEADER_LEN} bytes");
                return Err(Failure::Final(self.socket_error(self.io_reason(&step, &e))));
            }
        }
        // `frame_len` answers `None` only for fewer than four bytes; the header has four. A reply
        // announced at 64 KiB or more is refused, as the framework's own client does; its bytes are
        // still in flight, so the caller drops this connection.
        let len = match wire::frame_len(&header) {
            Ok(len) => len.unwrap_or_default(),
            Err(e) => return Err(Failure::Final(e)),
        };
        let mut body = vec![0u8; len];
        read_full(stream, &mut body).map_err(|(got, e)| {
            let step = format!("reading the reply failed after {got} of {len} bytes");
            Failure::Final(self.socket_error(self.io_reason(&step, &e)))
        })?;
        Ok(body)
    }
}

/// Whether a read error means the peer had already closed the connection.
fn closed_by_peer(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Fills `buf`, reporting how many bytes had arrived when it failed.
fn read_full(mut stream: &UnixStream, buf: &mut [u8]) -> Result<(), (usize, io::Error)> {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => {
                let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "end of stream");
                return Err((got, eof));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((got, e)),
        }
    }
    Ok(())
}

impl WazuhDb for WdbSocket {
    fn query(&self, command: &str) -> Result<WdbReply, StoreError> {
        let frame = wire::encode(command)?;
        // A panic elsewhere cannot leave a half-read frame behind: the stream is taken out while in use.
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let reused = conn.take();
        let (stream, body) = match reused.map(|stream| (self.exchange(&stream, &frame), stream)) {
            Some((Ok(body), stream)) => (stream, body),
            Some((Err(Failure::Final(e)), _)) => return Err(e),
            Some((Err(Failure::Stale(_)), _)) | None => {
                let stream = self.connect()?;
                let body = self
                    .exchange(&stream, &frame)
                    .map_err(Failure::into_error)?;
                (stream, body)
            }
        };
        // The whole frame was read, so the connection is in step whatever the text says.
        *conn = Some(stream);
        drop(conn);
        let text = std::str::from_utf8(&body).map_err(|_| StoreError::NotText)?;
        wire::parse_reply(text)
    }

    fn http(&self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), StoreError> {
        http::request(&self.http_path, self.timeout, method, path, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::WdbStatus;
    use std::os::unix::net::UnixListener;
    use std::thread;

    fn client(dir: &Path) -> WdbSocket {
        WdbSocket::new(dir.join("wdb"), dir.join("http")).with_timeout(Duration::from_secs(2))
    }

    #[test]
    fn new_does_no_io_and_missing_socket_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = client(dir.path());
        let error = db.query("global get-agent-info 1").expect_err("no socket");
        let text = error.to_string();
        assert!(
            text.contains(&dir.path().join("wdb").display().to_string()),
            "{text}"
        );
        assert!(text.contains("cannot connect"), "{text}");
    }

    #[test]
    fn oversized_command_is_refused_before_connecting() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = client(dir.path());
        let command = "x".repeat(wire::MAX_MESSAGE);
        assert!(matches!(db.query(&command), Err(StoreError::TooLarge(_))));
    }

    #[test]
    fn silent_server_times_out_with_a_precise_message() {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = UnixListener::bind(dir.path().join("wdb")).expect("bind");
        let holder = thread::spawn(move || listener.accept().map(|(s, _)| s));
        let db = client(dir.path()).with_timeout(Duration::from_millis(100));
        let error = db.query("global get-agent-info 1").expect_err("timeout");
        assert!(
            error.to_string().contains("no progress within 100 ms"),
            "{error}"
        );
        drop(holder.join());
    }

    #[test]
    fn non_text_reply_keeps_the_connection() {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = UnixListener::bind(dir.path().join("wdb")).expect("bind");
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            for reply in [&[0xffu8, 0xfe][..], b"ok 1"] {
                let mut header = [0u8; 4];
                stream.read_exact(&mut header).expect("header");
                let mut body = vec![0u8; u32::from_le_bytes(header) as usize];
                stream.read_exact(&mut body).expect("body");
                let mut frame = (reply.len() as u32).to_le_bytes().to_vec();
                frame.extend_from_slice(reply);
                stream.write_all(&frame).expect("reply");
            }
        });
        let db = client(dir.path());
        assert!(matches!(db.query("a"), Err(StoreError::NotText)));
        let reply = db.query("b").expect("second reply");
        assert_eq!((reply.status, reply.payload.as_str()), (WdbStatus::Ok, "1"));
        server.join().expect("server");
    }
}
