//! A cluster peer driven step by step from a test or a load tool: it speaks the real protocol (frames,
//! Fernet, counters) over a blocking TCP stream, so a test can play a worker against a real master, or
//! a master against a real worker, and send exactly the messages it wants, hostile ones included.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::proto::command::Command;
use crate::proto::connection::{ConnLimits, Connection, Event};
use crate::proto::crypto::Cipher;
use crate::proto::transfer::{OutgoingFile, Step};

/// A request the other side sent us.
#[derive(Debug, Clone)]
pub struct PeerRequest {
    pub counter: u32,
    pub command: Command,
    pub payload: Vec<u8>,
}

/// One end of a cluster connection, scripted.
pub struct ScriptedPeer {
    stream: TcpStream,
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
        Ok(ScriptedPeer {
            stream,
            conn: Connection::new(cipher, ConnLimits::default(), rand::random()),
            next_tag: 0,
            requests: VecDeque::new(),
            replies: Vec::new(),
        })
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
        let start = Instant::now();
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false)?;
                    return ScriptedPeer::new(stream, key);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && start.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(e),
            }
        }
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
                Event::Cancelled { .. } => {}
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

    /// Sends `content` with the file protocol as `rel` (relative to the install root).
    pub fn send_file(&mut self, rel: &str, content: &[u8], timeout: Duration) -> io::Result<()> {
        let (mut file, mut step) = OutgoingFile::start(rel, content.len() as u64);
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
