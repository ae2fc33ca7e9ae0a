//! A wazuh-db stand-in for fault tests. It listens on wazuh-db's two sockets under an install root
//! (the classic framed socket `queue/db/wdb` and the HTTP API `queue/sockets/wdb-http.sock`) and
//! answers from a real embedded database, so a daemon started beside it takes it for wazuh-db.
//! A test can make it answer late ([`Behaviour::Slow`]) or never ([`Behaviour::Dead`]: it reads
//! and keeps silent), and bring it back.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::store::backend::{WDB_HTTP_SOCKET, WDB_SOCKET};
use crate::store::{wire, EmbeddedDb, WazuhDb};

/// How the stand-in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// Every answer waits this long.
    Slow(Duration),
    /// Requests are read and never answered (a hung wazuh-db).
    Dead,
}

struct Shared {
    db: EmbeddedDb,
    behaviour: Mutex<Behaviour>,
    stopping: AtomicBool,
    /// Requests answered, for tests that wait for traffic.
    answered: Mutex<u64>,
}

/// The running stand-in; stops (and removes its sockets) when dropped.
pub struct WdbStandIn {
    shared: Arc<Shared>,
    sockets: Vec<PathBuf>,
}

/// Largest request the stand-in reads (a test never sends more).
const REQUEST_MAX: usize = 64 << 20;

impl WdbStandIn {
    /// Opens (or creates) the database at `db_file` and listens on `home`'s wazuh-db sockets.
    pub fn start(home: &Path, db_file: &Path) -> io::Result<WdbStandIn> {
        let db = EmbeddedDb::open(db_file).map_err(io::Error::other)?;
        let shared = Arc::new(Shared {
            db,
            behaviour: Mutex::new(Behaviour::Normal),
            stopping: AtomicBool::new(false),
            answered: Mutex::new(0),
        });
        let mut sockets = Vec::new();
        for (rel, http) in [(WDB_SOCKET, false), (WDB_HTTP_SOCKET, true)] {
            let path = home.join(rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path)?;
            sockets.push(path);
            let shared = shared.clone();
            thread::spawn(move || accept_loop(listener, shared, http));
        }
        Ok(WdbStandIn { shared, sockets })
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self
            .shared
            .behaviour
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = behaviour;
    }

    /// Requests answered so far.
    pub fn answered(&self) -> u64 {
        *self
            .shared
            .answered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The database behind the stand-in, for a test to read what was stored.
    pub fn db(&self) -> &EmbeddedDb {
        &self.shared.db
    }
}

impl Drop for WdbStandIn {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for path in &self.sockets {
            // Wakes the accept loop so it sees `stopping`.
            let _ = UnixStream::connect(path);
            let _ = std::fs::remove_file(path);
        }
    }
}

fn accept_loop(listener: UnixListener, shared: Arc<Shared>, http: bool) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let shared = shared.clone();
        thread::spawn(move || {
            let _ = if http {
                serve_http(stream, &shared)
            } else {
                serve_classic(stream, &shared)
            };
        });
    }
}

/// Waits as the behaviour says; false when the request must never be answered.
fn delay(shared: &Shared) -> bool {
    let behaviour = *shared.behaviour.lock().unwrap_or_else(|e| e.into_inner());
    match behaviour {
        Behaviour::Normal => true,
        Behaviour::Slow(d) => {
            thread::sleep(d);
            true
        }
        Behaviour::Dead => {
            while !shared.stopping.load(Ordering::SeqCst)
                && *shared.behaviour.lock().unwrap_or_else(|e| e.into_inner()) == Behaviour::Dead
            {
                thread::sleep(Duration::from_millis(50));
            }
            // Came back: the request that hung is dropped, as a restarted wazuh-db would.
            false
        }
    }
}

fn count(shared: &Shared) {
    *shared.answered.lock().unwrap_or_else(|e| e.into_inner()) += 1;
}

/// The classic socket: 4-byte little-endian length, then the command; the same framing back.
fn serve_classic(mut stream: UnixStream, shared: &Shared) -> io::Result<()> {
    loop {
        let mut header = [0u8; 4];
        stream.read_exact(&mut header)?;
        let len = u32::from_le_bytes(header) as usize;
        if len > REQUEST_MAX {
            return Err(io::Error::other("request too large"));
        }
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body)?;
        if !delay(shared) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&body);
        let reply = match shared.db.query(&text) {
            Ok(reply) => reply,
            Err(e) => crate::store::WdbReply::err(e.to_string()),
        };
        stream.write_all(&wire::encode_reply(&reply).map_err(io::Error::other)?)?;
        count(shared);
    }
}

/// The HTTP socket: one request per connection, answered with a length-delimited body.
fn serve_http(mut stream: UnixStream, shared: &Shared) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let (method, path, body_start, length) = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head) = request.parse(&buf).map_err(io::Error::other)? {
            let length = request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0usize);
            let method = request.method.unwrap_or("GET").to_string();
            let path = request.path.unwrap_or("/").to_string();
            break (method, path, head, length);
        }
        if buf.len() > REQUEST_MAX {
            return Err(io::Error::other("request head too large"));
        }
    };
    if length > REQUEST_MAX {
        return Err(io::Error::other("request body too large"));
    }
    while buf.len() < body_start + length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if !delay(shared) {
        return Ok(());
    }
    let body = &buf[body_start..body_start + length];
    let (status, answer) = shared
        .db
        .http(&method, &path, body)
        .unwrap_or_else(|e| (500, e.to_string().into_bytes()));
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        if status < 300 { "OK" } else { "Error" },
        answer.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&answer)?;
    count(shared);
    Ok(())
}
