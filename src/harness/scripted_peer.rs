//! A cluster peer driven step by step from a test or a load tool: it speaks the real protocol (frames,
//! Fernet, counters) over a blocking TCP stream, so a test can play a worker against a real master, or
//! a master against a real worker, and send exactly the messages it wants, hostile ones included.
//! On a Unix stream, without encryption, it plays either end of a local socket.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use crate::proto::command::Command;
use crate::proto::connection::{ConnLimits, Connection, Event};
use crate::proto::crypto::Cipher;
use crate::proto::frame::REQUEST_CHUNK_BYTES;
use crate::proto::transfer::{OutgoingFile, Step};

/// A request the other side sent us.
#[derive(Debug, Clone)]
pub struct PeerRequest {
    pub counter: u32,
    pub command: Command,
    pub payload: Vec<u8>,
}

/// The stream under a scripted peer.
enum PeerStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for PeerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            PeerStream::Tcp(s) => s.read(buf),
            PeerStream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for PeerStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            PeerStream::Tcp(s) => s.write(buf),
            PeerStream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            PeerStream::Tcp(s) => s.flush(),
            PeerStream::Unix(s) => s.flush(),
        }
    }
}

/// Polls a non-blocking `accept` until a connection comes or `timeout` passes.
fn accept_within<S>(timeout: Duration, mut accept: impl FnMut() -> io::Result<S>) -> io::Result<S> {
    let start = Instant::now();
    loop {
        match accept() {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e),
        }
    }
}

/// One end of a cluster connection, scripted.
pub struct ScriptedPeer {
    stream: PeerStream,
    conn: Connection<u64>,
    next_tag: u64,
    requests: VecDeque<PeerRequest>,
    replies: Vec<(u64, Command, Vec<u8>)>,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl ScriptedPeer {
    fn new(stream: TcpStream, key: &str) -> io::Result<ScriptedPeer> {
        stream.set_read_timeout(Some(Duration::from_millis(100)))?;
        let cipher = Cipher::from_cluster_key(key).map_err(other)?;
        Ok(ScriptedPeer::over(PeerStream::Tcp(stream), cipher))
    }

    fn over(stream: PeerStream, cipher: Cipher) -> ScriptedPeer {
        ScriptedPeer {
            stream,
            conn: Connection::new(cipher, ConnLimits::default(), rand::random()),
            next_tag: 0,
            requests: VecDeque::new(),
            replies: Vec::new(),
        }
    }

    /// Connects to a node's local socket (no encryption), as a local client does.
    pub fn connect_local(path: &std::path::Path) -> io::Result<ScriptedPeer> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(ScriptedPeer::over(PeerStream::Unix(stream), Cipher::Plain))
    }

    /// Waits for a client on a local socket (no encryption), as a node's local server does.
    pub fn accept_local(listener: &UnixListener, timeout: Duration) -> io::Result<ScriptedPeer> {
        listener.set_nonblocking(true)?;
        let stream = accept_within(timeout, || listener.accept().map(|(s, _)| s))?;
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(ScriptedPeer::over(PeerStream::Unix(stream), Cipher::Plain))
    }

    /// Connects to a master, as a worker does.
    pub fn connect(addr: &str, key: &str) -> io::Result<ScriptedPeer> {
        ScriptedPeer::new(TcpStream::connect(addr)?, key)
    }

    /// Waits for a worker to connect, as a master does.
    pub fn accept(
        listener: &TcpListener,
        key: &str,
        timeout: Duration,
    ) -> io::Result<ScriptedPeer> {
        listener.set_nonblocking(true)?;
        let stream = accept_within(timeout, || listener.accept().map(|(s, _)| s))?;
        stream.set_nonblocking(false)?;
        ScriptedPeer::new(stream, key)
    }

    fn flush(&mut self) -> io::Result<()> {
        for frame in self.conn.take_outbox() {
            self.stream.write_all(&frame)?;
        }
        Ok(())
    }

    /// Reads what arrived (up to 100 ms), sorting it into replies and requests. Err when closed.
    fn pump(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        let n = match self.stream.read(&mut buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the peer closed the connection",
                ))
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        let mut events = Vec::new();
        self.conn
            .receive(&buf[..n], Instant::now(), &mut events)
            .map_err(other)?;
        for event in events {
            match event {
                Event::Request {
                    counter,
                    command,
                    payload,
                } => self.requests.push_back(PeerRequest {
                    counter,
                    command,
                    payload,
                }),
                Event::Reply {
                    purpose,
                    command,
                    payload,
                } => self.replies.push((purpose, command, payload)),
                // Already acknowledged by the connection: queued as the request it was, so a
                // script can expect it (`counter` 0, payload `<task id> <error>`).
                Event::Cancelled { task_id, error } => self.requests.push_back(PeerRequest {
                    counter: 0,
                    command: Command::CancelTask,
                    payload: format!("{task_id} {error}").into_bytes(),
                }),
            }
        }
        self.flush()
    }

    /// Sends a request and waits for its reply; requests arriving meanwhile are queued.
    pub fn request(
        &mut self,
        command: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> io::Result<(Command, Vec<u8>)> {
        self.next_tag += 1;
        let tag = self.next_tag;
        self.conn
            .request(command, payload, tag, Instant::now(), timeout)
            .map_err(other)?;
        self.flush()?;
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(i) = self.replies.iter().position(|(t, _, _)| *t == tag) {
                let (_, command, payload) = self.replies.swap_remove(i);
                return Ok((command, payload));
            }
            self.pump()?;
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no reply to {command}"),
        ))
    }

    /// Waits for the next request whose command satisfies `wanted`, answering the others with `ok`
    /// (keepalives get `ok-m`, as a master answers them).
    pub fn expect(
        &mut self,
        wanted: impl Fn(&Command) -> bool,
        timeout: Duration,
    ) -> io::Result<PeerRequest> {
        let start = Instant::now();
        loop {
            while let Some(request) = self.requests.pop_front() {
                if wanted(&request.command) {
                    return Ok(request);
                }
                if request.command == Command::CancelTask {
                    continue;
                }
                let reply = if request.command == Command::EchoC {
                    "ok-m "
                } else {
                    "ok"
                };
                self.reply(request.counter, reply, &request.payload)?;
            }
            if start.elapsed() > timeout {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the expected request did not come",
                ));
            }
            self.pump()?;
        }
    }

    /// Answers a request.
    pub fn reply(&mut self, counter: u32, command: &str, payload: &[u8]) -> io::Result<()> {
        self.conn.reply(counter, command, payload).map_err(other)?;
        self.flush()
    }

    /// Sends `content` with the long-string protocol (`new_str`, then `str_upd` chunks) and returns
    /// the string id the peer gave it, for the request that references it.
    pub fn send_string(&mut self, content: &[u8], timeout: Duration) -> io::Result<String> {
        let (command, sid) =
            self.request("new_str", content.len().to_string().as_bytes(), timeout)?;
        if command != Command::Ok {
            return Err(other(format!(
                "new_str refused: {command} {}",
                String::from_utf8_lossy(&sid)
            )));
        }
        let sid = String::from_utf8(sid).map_err(other)?;
        let chunk = crate::proto::frame::REQUEST_CHUNK_BYTES - sid.len() - 1;
        for piece in content.chunks(chunk.max(1)) {
            let mut payload = Vec::with_capacity(sid.len() + 1 + piece.len());
            payload.extend_from_slice(sid.as_bytes());
            payload.push(b' ');
            payload.extend_from_slice(piece);
            self.request("str_upd", &payload, timeout)?;
        }
        Ok(sid)
    }

    /// A long string the other side sent us (`new_str`, `str_upd`), taken by its id.
    pub fn take_string(&mut self, sid: &str) -> io::Result<Vec<u8>> {
        self.conn.take_string(sid).map_err(other)
    }

    /// Sends `content` with the file protocol as `rel` (relative to the install root).
    pub fn send_file(&mut self, rel: &str, content: &[u8], timeout: Duration) -> io::Result<()> {
        let (mut file, mut step) =
            OutgoingFile::start(rel, content.len() as u64, REQUEST_CHUNK_BYTES);
        loop {
            step = match step {
                Step::Request { command, payload } => {
                    self.request(command, &payload, timeout)?;
                    file.replied(false)
                }
                Step::Read { offset, len } => {
                    file.chunk_read(&content[offset as usize..offset as usize + len])
                }
                Step::Done => return Ok(()),
            };
        }
    }
}
