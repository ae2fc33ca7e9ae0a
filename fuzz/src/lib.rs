//! Helpers shared by the fuzz targets: a cursor over the fuzzer's bytes, a package sink that
//! writes into a temporary directory, and a driver that plays a cluster peer or a local client
//! against a whole `clusterd::proto::node::Node`.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use clusterd::config::Dialect;
use clusterd::proto::connection::ConnLimits;
use clusterd::proto::crypto::Cipher;
use clusterd::proto::decoder::{DecodeLimits, Decoder, RawMessage};
use clusterd::proto::encoder::encode_message;
use clusterd::proto::files::FileLimits;
use clusterd::proto::jobs::JobId;
use clusterd::proto::node::{
    AgentSettings, ChunkReader, ConnId, Node, NodeSettings, Now, Output, SyncSettings, Timers,
};
use clusterd::proto::strings::StringLimits;
use clusterd::sync::PackageSink;

/// The cluster key every node target uses (the one of the protocol's worked examples).
pub const KEY: &str = "c98b62a9b6169ac5f67dae55ae4a9088";

/// Reads fields off the fuzzer's input; every read past the end yields zeros or empty slices.
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Cursor<'a> {
        Cursor { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// A length-prefixed (u16, little-endian) byte string.
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.take(n)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

/// Writes each package member into a fresh directory the way the daemon's sink does: parents
/// created, files created new and never through a symbolic link. Dropping it deletes the directory.
pub struct TempDirSink {
    dir: tempfile::TempDir,
    current: Option<(PathBuf, File)>,
    /// Bytes written so far: the unpack limits bound it, this checks that they did.
    pub written: u64,
}

impl TempDirSink {
    pub fn new() -> TempDirSink {
        let base = std::env::var_os("FUZZ_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        TempDirSink {
            dir: tempfile::Builder::new()
                .prefix("clusterd-fuzz-")
                .tempdir_in(base)
                .expect("temporary directory"),
            current: None,
            written: 0,
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TempDirSink {
    fn default() -> Self {
        TempDirSink::new()
    }
}

impl PackageSink for TempDirSink {
    fn begin(&mut self, rel: &str) -> io::Result<()> {
        let path = self.dir.path().join(rel);
        // The reader must have refused any name that leaves the directory.
        assert!(
            !rel.starts_with('/') && !rel.split('/').any(|c| c == ".." || c == "."),
            "member name escapes the extraction directory: {rel:?}"
        );
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc_o_nofollow())
            .open(&path)?;
        self.current = Some((path, file));
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.written += bytes.len() as u64;
        match &mut self.current {
            Some((_, file)) => file.write_all(bytes),
            None => Err(io::Error::other("data outside a member")),
        }
    }

    fn end(&mut self) -> io::Result<()> {
        self.current
            .take()
            .map_or(Ok(()), |(_, mut file)| file.flush())
    }

    fn abort(&mut self) {
        if let Some((path, _)) = self.current.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// `O_NOFOLLOW` on Linux (x86-64 and aarch64 share the generic value).
const fn libc_o_nofollow() -> i32 {
    0o400000
}

/// Connection limits small enough that one fuzz input cannot make the engine hold more than a
/// few MiB, while every limit can still be reached.
pub fn small_limits() -> ConnLimits {
    ConnLimits {
        decode: DecodeLimits {
            frame_bytes_max: 1 << 20,
            message_bytes_max: 2 << 20,
            divided_messages_max: 4,
            payload_timeout: Duration::from_secs(30),
        },
        strings: StringLimits {
            string_bytes_max: 1 << 20,
            strings_max: 8,
            total_bytes_max: 2 << 20,
        },
        files: FileLimits {
            file_bytes_max: 1 << 20,
            ..FileLimits::default()
        },
        requests_in_flight_max: 64,
        chunk_bytes: 4096,
    }
}

/// Node settings like the engine's own simulations use, with the small limits above.
pub fn settings(name: &str, master: bool, dialect: Dialect) -> NodeSettings {
    let version = match dialect {
        Dialect::V4_3 => "4.3.11",
        Dialect::V4_14 => "4.14.0",
    };
    NodeSettings {
        is_master: master,
        cluster_name: "wazuh".into(),
        node_name: name.into(),
        version: version.into(),
        master_host: "127.0.0.1".into(),
        port: 1516,
        cluster_key: KEY.into(),
        get_config: serde_json::json!({"name": "wazuh"}),
        runtime_info: serde_json::json!({"io_driver": "none"}),
        timers: Timers {
            keep_alive: Duration::from_secs(2),
            connection_retry: Duration::from_secs(3),
            max_failed_keepalive_attempts: 2,
            check_worker_lastkeepalive: Duration::from_secs(1),
            max_allowed_time_without_keepalive: Duration::from_secs(6),
            timeout_cluster_request: Duration::from_secs(5),
            timeout_dapi_request: Duration::from_secs(10),
        },
        sync: SyncSettings {
            sync_integrity: Duration::from_secs(2),
            recalculate_integrity: Duration::from_secs(1),
            timeout_receiving_file: Duration::from_secs(10),
            max_zip_size: 4 << 20,
            min_zip_size: 1 << 20,
            ..SyncSettings::defaults(dialect)
        },
        agents: AgentSettings::default(),
        connections_per_ip_max: 10,
        distributed_api: true,
        limits: small_limits(),
    }
}

/// Command names a peer or a local client sends; an index past the table reads a name from the
/// input instead.
pub const COMMANDS: &[&str] = &[
    "ok", "err", "ok-m", "ok-c", "hello", "echo", "echo-c", "echo-m", "new_str", "str_upd",
    "err_str", "new_file", "file_upd", "file_end", "cancel_task", "get_config", "get_nodes",
    "get_health", "get_hash", "control_res", "syn_i_w_m_p", "syn_i_w_m", "syn_i_w_m_e",
    "syn_i_w_m_r", "syn_e_w_m", "syn_e_w_m_e", "syn_a_w_m_p", "syn_a_w_m", "syn_m_c_ok", "syn_m_c",
    "syn_m_c_e", "syn_m_c_r", "syn_m_a_e", "syn_m_a_err", "syn_g_m_w", "syn_g_m_w_c", "syn_w_g_c",
    "syn_w_g_e", "syn_wgc_e", "syn_w_g_err", "syn_wgc_err", "dapi", "dapi_res", "dapi_err",
    "dapi_fwd", "sendsync", "sendasync", "sendsyn_res", "sendsyn_err", "sendrreload",
    "get_agents", "send_file", "send_f_res", "get_runtime", "ok ", "ok-m ",
];

/// Reads a command name: a table index, or (index 255) a name of up to 12 bytes from the input.
pub fn command<'a>(c: &mut Cursor<'a>) -> String {
    let i = c.u8() as usize;
    if i == 255 {
        let n = (c.u8() % 13) as usize;
        return String::from_utf8_lossy(c.take(n)).into_owned();
    }
    COMMANDS[i % COMMANDS.len()].to_string()
}

/// Longest payload one operation carries (a u16 length prefix already caps it at 64 KiB).
pub const PAYLOAD_MAX: usize = 65_535;

/// Which end the driver plays against the node.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// A worker connected to a master node.
    Worker,
    /// The master a worker node connected to.
    Master,
    /// A local client on the node's local socket (`master`: the node is the master).
    Local { master: bool },
}

/// Drives one connection of a node: encodes the fuzzer's messages with the crate's encoder, reads
/// the node's frames back with the crate's decoder, and answers jobs and chunk reads.
pub struct Driver {
    pub node: Node,
    pub conn: ConnId,
    role: Role,
    cipher: Cipher,
    start: Instant,
    elapsed: Duration,
    counter: u32,
    /// Frames of the node to this connection are decoded here.
    decoder: Decoder,
    /// Counters of the node's own requests on this connection, newest last.
    requests: VecDeque<(u32, String)>,
    jobs: VecDeque<JobId>,
    reads: VecDeque<(ConnId, ChunkReader, u64, usize)>,
    /// Counters of our `new_str` requests whose reply (the string id) has not come yet.
    new_strs: Vec<u32>,
    /// The string id the node answered last to a `new_str`.
    last_sid: Vec<u8>,
    /// True when the node closed this connection.
    pub closed: bool,
    /// When set, every message the node sends on this connection is kept here, decrypted.
    pub record: Option<Vec<(u32, String, Vec<u8>)>>,
}

impl Driver {
    /// A node with one connection of `role`; a cluster link has done a valid `hello` already.
    pub fn new(role: Role, dialect: Dialect) -> Driver {
        let start = Instant::now();
        let now = Now {
            mono: start,
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        };
        let node_is_master = match role {
            Role::Worker => true,
            Role::Master => false,
            Role::Local { master } => master,
        };
        let name = if node_is_master { "master" } else { "worker1" };
        let node = Node::new(settings(name, node_is_master, dialect), 7, now).expect("node");
        let encrypted = !matches!(role, Role::Local { .. });
        let cipher = if encrypted {
            Cipher::from_cluster_key(KEY).expect("key")
        } else {
            Cipher::Plain
        };
        let mut d = Driver {
            node,
            conn: 0,
            role,
            cipher,
            start,
            elapsed: Duration::ZERO,
            counter: 1000,
            decoder: Decoder::new(DecodeLimits::default()),
            requests: VecDeque::new(),
            jobs: VecDeque::new(),
            reads: VecDeque::new(),
            new_strs: Vec::new(),
            last_sid: Vec::new(),
            closed: false,
            record: None,
        };
        match role {
            Role::Worker => {
                let conn = d
                    .node
                    .accept_cluster(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 40000, d.now())
                    .expect("accepted");
                d.conn = conn;
                let version = match dialect {
                    Dialect::V4_3 => "4.3.11",
                    Dialect::V4_14 => "4.14.0",
                };
                let hello = format!("worker1 wazuh worker {version}");
                d.send("hello", hello.as_bytes(), usize::MAX);
                d.pump();
            }
            Role::Master => {
                // The worker asks to connect on its first tick; the link is then up.
                let now = d.now();
                d.node.tick(now);
                let conn = d
                    .node
                    .take_outputs()
                    .into_iter()
                    .find_map(|o| match o {
                        Output::Connect { conn, .. } => Some(conn),
                        _ => None,
                    })
                    .expect("connect");
                d.conn = conn;
                d.node.connected(conn, now);
                d.pump();
                // Answer the worker's hello.
                if let Some(pos) = d.requests.iter().position(|(_, c)| c == "hello") {
                    let (counter, _) = d.requests.remove(pos).expect("hello");
                    d.send_with_counter(counter, "ok", b"Client worker1 added", usize::MAX);
                    d.pump();
                }
            }
            Role::Local { .. } => {
                let now = d.now();
                d.conn = d.node.accept_local(now);
            }
        }
        d
    }

    pub fn now(&self) -> Now {
        Now {
            mono: self.start + self.elapsed,
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + self.elapsed,
        }
    }

    /// Sends a request with a fresh counter.
    pub fn send(&mut self, command: &str, payload: &[u8], chunk_bytes: usize) {
        self.counter = self.counter.wrapping_add(1);
        if command == "new_str" && self.new_strs.len() < 16 {
            self.new_strs.push(self.counter);
        }
        self.send_with_counter(self.counter, command, payload, chunk_bytes);
    }

    /// Sends a request whose payload is the last string id the node gave, then `suffix`: how
    /// commands name a long string they were sent (`str_upd <id> <chunk>`, `syn_a_w_m <id>`, ...).
    pub fn send_with_sid(&mut self, command: &str, suffix: &[u8], chunk_bytes: usize) {
        let mut payload = self.last_sid.clone();
        payload.extend_from_slice(suffix);
        self.send(command, &payload, chunk_bytes);
    }

    /// Sends a message with a given counter (a reply to one of the node's requests).
    pub fn send_with_counter(&mut self, counter: u32, command: &str, payload: &[u8], chunk_bytes: usize) {
        // A name the encoder refuses cannot be put on the wire; nothing to send.
        let chunk = chunk_bytes.max(64);
        let Ok(frames) = encode_message(counter, command, payload, &self.cipher, chunk) else {
            return;
        };
        for frame in frames {
            self.raw(&frame);
        }
    }

    /// Bytes on the wire as they are.
    pub fn raw(&mut self, bytes: &[u8]) {
        if self.closed {
            return;
        }
        let now = self.now();
        self.node.receive(self.conn, bytes, now);
    }

    /// Replies to the `index`-th request of the node still unanswered.
    pub fn reply(&mut self, index: usize, command: &str, payload: &[u8], chunk_bytes: usize) {
        if self.requests.is_empty() {
            return;
        }
        let i = index % self.requests.len();
        let (counter, _) = self.requests.remove(i).expect("request");
        self.send_with_counter(counter, command, payload, chunk_bytes);
    }

    pub fn advance(&mut self, secs: u64) {
        self.elapsed += Duration::from_secs(secs);
        let now = self.now();
        self.node.tick(now);
    }

    /// Fails the oldest job the node queued.
    pub fn fail_job(&mut self, reason: &str) {
        if let Some(id) = self.jobs.pop_front() {
            let now = self.now();
            self.node.job_done(id, Err(reason.to_string()), now);
        }
    }

    /// Answers the oldest chunk read with `data`, or with a read error.
    pub fn answer_read(&mut self, data: Option<&[u8]>) {
        if let Some((conn, reader, _offset, len)) = self.reads.pop_front() {
            let now = self.now();
            let data = match data {
                Some(d) => Ok(d[..d.len().min(len)].to_vec()),
                None => Err("Input/output error".to_string()),
            };
            self.node.chunk_read(conn, reader, data, now);
        }
    }

    /// Handles everything the node asked for: decodes its frames to this connection, remembers
    /// its requests, jobs and reads.
    pub fn pump(&mut self) {
        let outputs = self.node.take_outputs();
        for output in outputs {
            match output {
                Output::Send { conn, frames } if conn == self.conn => {
                    for frame in frames {
                        self.read_frame(&frame);
                    }
                }
                Output::Close { conn } if conn == self.conn => {
                    if !self.closed {
                        self.closed = true;
                        let now = self.now();
                        self.node.closed(conn, now);
                    }
                }
                Output::WriteFile { write, .. } => {
                    // Whatever a peer sends may only land below queue/cluster/.
                    assert!(
                        write.rel.starts_with("queue/cluster/")
                            && !write.rel.split('/').any(|p| p == ".." || p == "."),
                        "received file written outside queue/cluster/: {:?}",
                        write.rel
                    );
                }
                Output::Job { id, .. } => {
                    if self.jobs.len() < 64 {
                        self.jobs.push_back(id);
                    }
                }
                Output::ReadChunk {
                    conn,
                    offset,
                    len,
                    reader,
                    ..
                } => {
                    if self.reads.len() < 64 {
                        self.reads.push_back((conn, reader, offset, len));
                    }
                }
                _ => {}
            }
        }
    }

    fn read_frame(&mut self, frame: &Bytes) {
        let mut messages: Vec<RawMessage> = Vec::new();
        let now = self.now().mono;
        // The node's own frames must always decode and decrypt.
        self.decoder
            .feed(frame, now, &mut messages)
            .expect("node sent a frame its own decoder refuses");
        for m in messages {
            let plain = self
                .cipher
                .decrypt(&m.payload)
                .expect("node sent a payload its own cipher cannot decrypt");
            if let Some(pos) = self.new_strs.iter().position(|c| *c == m.counter) {
                self.new_strs.remove(pos);
                if m.command == "ok" {
                    self.last_sid = plain.clone();
                }
            }
            if let Some(record) = &mut self.record {
                record.push((m.counter, m.command.clone(), plain));
            }
            let is_reply = matches!(
                m.command.as_str(),
                "ok" | "err" | "ok-m" | "ok-c" | "error" | "dapi_res" | "dapi_err" | "control_res"
            );
            if !is_reply {
                if self.requests.len() >= 64 {
                    self.requests.pop_front();
                }
                self.requests.push_back((m.counter, m.command));
            }
        }
    }

    /// Plays the fuzzer's operations: messages (whole or divided), replies to the node's own
    /// requests, raw bytes, time, failed jobs and chunk reads.
    pub fn run(&mut self, data: &[u8]) {
        let mut c = Cursor::new(data);
        let mut ops = 0;
        while !c.is_empty() && ops < 256 && !self.closed {
            ops += 1;
            match c.u8() % 11 {
                0..=3 => {
                    let cmd = command(&mut c);
                    let payload = c.chunk();
                    self.send(&cmd, payload, usize::MAX);
                }
                4 => {
                    // Divided into frames of a few hundred bytes.
                    let chunk = 64 + c.u8() as usize * 4;
                    let cmd = command(&mut c);
                    let payload = c.chunk();
                    self.send(&cmd, payload, chunk);
                }
                5 => {
                    let index = c.u8() as usize;
                    let cmd = command(&mut c);
                    let payload = c.chunk();
                    self.reply(index, &cmd, payload, usize::MAX);
                }
                6 => {
                    let bytes = c.chunk();
                    self.raw(bytes);
                }
                7 => {
                    let secs = (c.u8() % 130) as u64;
                    self.advance(secs);
                }
                8 => {
                    let reason = String::from_utf8_lossy(c.chunk()).into_owned();
                    self.fail_job(&reason);
                }
                10 => {
                    let cmd = command(&mut c);
                    let suffix = c.chunk();
                    self.send_with_sid(&cmd, suffix, usize::MAX);
                }
                _ => {
                    if c.u8() & 1 == 0 {
                        let bytes = c.chunk();
                        self.answer_read(Some(bytes));
                    } else {
                        self.answer_read(None);
                    }
                }
            }
            self.pump();
        }
        if !self.closed {
            let now = self.now();
            self.node.closed(self.conn, now);
            self.pump();
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }
}

/// Writes inputs in the format [`Driver::run`] reads (the seed corpora are made with it).
#[derive(Default)]
pub struct Ops {
    pub bytes: Vec<u8>,
}

impl Ops {
    fn command(&mut self, name: &str) {
        match COMMANDS.iter().position(|c| *c == name) {
            Some(i) => self.bytes.push(i as u8),
            None => {
                self.bytes.push(255);
                let n = name.len().min(12);
                self.bytes.push(n as u8);
                self.bytes.extend_from_slice(&name.as_bytes()[..n]);
            }
        }
    }

    fn chunk(&mut self, payload: &[u8]) {
        let n = payload.len().min(PAYLOAD_MAX);
        self.bytes.extend_from_slice(&(n as u16).to_le_bytes());
        self.bytes.extend_from_slice(&payload[..n]);
    }

    pub fn send(&mut self, command: &str, payload: &[u8]) -> &mut Self {
        self.bytes.push(0);
        self.command(command);
        self.chunk(payload);
        self
    }

    pub fn send_divided(&mut self, command: &str, payload: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(&[4, 0]);
        self.command(command);
        self.chunk(payload);
        self
    }

    pub fn reply(&mut self, index: u8, command: &str, payload: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(&[5, index]);
        self.command(command);
        self.chunk(payload);
        self
    }

    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes.push(6);
        self.chunk(bytes);
        self
    }

    pub fn tick(&mut self, secs: u8) -> &mut Self {
        self.bytes.extend_from_slice(&[7, secs]);
        self
    }

    pub fn fail_job(&mut self, reason: &str) -> &mut Self {
        self.bytes.push(8);
        self.chunk(reason.as_bytes());
        self
    }

    pub fn send_with_sid(&mut self, command: &str, suffix: &[u8]) -> &mut Self {
        self.bytes.push(10);
        self.command(command);
        self.chunk(suffix);
        self
    }

    pub fn read(&mut self, data: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(&[9, 0]);
        self.chunk(data);
        self
    }

    /// A long string sent the stock way: `new_str <len>`, `str_upd <id> <chunk>`..., then
    /// `command <id>`.
    pub fn long_string(&mut self, command: &str, text: &[u8]) -> &mut Self {
        self.send("new_str", text.len().to_string().as_bytes());
        for piece in text.chunks(4000) {
            let mut p = b" ".to_vec();
            p.extend_from_slice(piece);
            self.send_with_sid("str_upd", &p);
        }
        self.send_with_sid(command, b"")
    }
}
