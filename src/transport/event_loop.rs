//! The single-threaded event loop: owns every socket, feeds bytes and time to the node engine and
//! carries out what it asks. One reader task and one writer queue per connection; a read is never
//! raced against a timer (completion-based IO would lose the bytes already read), so timeouts reach
//! the engine as ticks and closing a connection shuts the socket down, which ends its pending read.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use compio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use compio::BufResult;
use futures_channel::mpsc;
use futures_util::StreamExt;

use crate::proto::jobs::{JobId, JobResult, JobRunner};
use crate::proto::node::{ConnId, Node, Now, Output};
use crate::proto::quote::quote;
use crate::{clog_debug, clog_error, clog_info, clog_warn};

/// How often time is fed to the engine.
const TICK: Duration = Duration::from_millis(100);
/// Bytes read per call.
const READ_BUF_BYTES: usize = 256 * 1024;

/// Limits of the loop.
#[derive(Debug, Clone, Copy)]
pub struct LoopLimits {
    /// Bytes queued for one peer that does not read; past this the connection is closed.
    pub write_queue_bytes_max: usize,
    /// Time allowed to open the TCP connection to the master.
    pub connect_timeout: Duration,
}

impl Default for LoopLimits {
    fn default() -> Self {
        LoopLimits {
            write_queue_bytes_max: 1 << 30,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

enum WriterMsg {
    Frames(Vec<Bytes>),
    /// Write what is queued, then shut the socket down.
    Close,
}

struct ConnHandle {
    tx: mpsc::UnboundedSender<WriterMsg>,
    queued_bytes: Rc<Cell<usize>>,
    fd: RawFd,
}

/// Where job results travel from the pool threads to the loop.
pub type JobResults = mpsc::UnboundedReceiver<(JobId, JobResult)>;

/// A sender for pool threads and the receiver the loop drains.
pub fn job_channel() -> (mpsc::UnboundedSender<(JobId, JobResult)>, JobResults) {
    mpsc::unbounded()
}

/// State shared by the loop's tasks (all on one thread).
pub struct EventLoop {
    node: RefCell<Node>,
    jobs: Box<dyn JobRunner>,
    conns: RefCell<HashMap<ConnId, ConnHandle>>,
    home: PathBuf,
    limits: LoopLimits,
    tag: String,
}

fn shutdown_fd(fd: RawFd) {
    // SAFETY: the fd belongs to a stream still owned by its reader task; shutting it down does not
    // close it, it only ends pending and future IO on it.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Both);
}

impl EventLoop {
    /// `tag` is the node's log tag (`Master`, `Worker <name>`).
    pub fn new(
        node: Node,
        jobs: Box<dyn JobRunner>,
        home: &Path,
        limits: LoopLimits,
        tag: &str,
    ) -> Rc<EventLoop> {
        let tag = tag.to_string();
        Rc::new(EventLoop {
            node: RefCell::new(node),
            jobs,
            conns: RefCell::new(HashMap::new()),
            home: home.to_path_buf(),
            limits,
            tag,
        })
    }

    /// Carries out everything the engine asked for.
    fn apply_outputs(self: &Rc<Self>) {
        loop {
            let outputs = self.node.borrow_mut().take_outputs();
            if outputs.is_empty() {
                return;
            }
            for output in outputs {
                self.apply(output);
            }
        }
    }

    fn apply(self: &Rc<Self>, output: Output) {
        match output {
            Output::Send { conn, frames } => {
                let conns = self.conns.borrow();
                let Some(handle) = conns.get(&conn) else {
                    return;
                };
                let bytes: usize = frames.iter().map(Bytes::len).sum();
                let queued = handle.queued_bytes.get() + bytes;
                if queued > self.limits.write_queue_bytes_max {
                    clog_warn!(
                        self.tag,
                        "Main",
                        "Closing a connection whose peer does not read: {queued} bytes queued."
                    );
                    shutdown_fd(handle.fd);
                    return;
                }
                handle.queued_bytes.set(queued);
                let _ = handle.tx.unbounded_send(WriterMsg::Frames(frames));
            }
            Output::Close { conn } => {
                if let Some(handle) = self.conns.borrow().get(&conn) {
                    let _ = handle.tx.unbounded_send(WriterMsg::Close);
                }
            }
            Output::Connect { conn, host, port } => {
                let this = self.clone();
                compio::runtime::spawn(async move { this.connect(conn, host, port).await })
                    .detach();
            }
            Output::WriteFile { conn, write } => {
                if let Err(e) = write_received(&self.home, &write) {
                    let shown = quote(&write.rel);
                    clog_error!(self.tag, "Main", "Could not write {shown}: {e}");
                    self.node
                        .borrow_mut()
                        .file_write_failed(conn, &write.rel, &e.to_string());
                }
            }
            Output::Job { id, job } => {
                if let Err(e) = self.jobs.submit(id, job) {
                    self.node.borrow_mut().job_done(id, Err(e), Now::system());
                }
            }
            Output::ReadChunk {
                conn,
                rel,
                offset,
                len,
                reader,
            } => {
                let data = read_chunk(&self.home.join(&rel), offset, len)
                    .map_err(|e| format!("could not read {rel}: {e}"));
                self.node
                    .borrow_mut()
                    .chunk_read(conn, reader, data, Now::system());
            }
            Output::RemoveFile { rel } => {
                if let Err(e) = remove_scratch(&self.home, &rel) {
                    let shown = quote(&rel);
                    clog_error!(self.tag, "Main", "Could not remove {shown}: {e}");
                }
            }
            Output::RemoveEmptyDir { rel } => {
                if let Err(e) = remove_empty_dir(&self.home, &rel) {
                    clog_debug!(self.tag, "Main", "Kept {}: {e}", quote(&rel));
                }
            }
            Output::CreateDir { rel } => {
                let path = self.home.join(&rel);
                if let Err(e) = std::fs::create_dir_all(&path) {
                    clog_error!(self.tag, "Main", "Could not create {}: {e}", path.display());
                }
            }
        }
    }

    async fn connect(self: Rc<Self>, conn: ConnId, host: String, port: u16) {
        let attempt = compio::time::timeout(
            self.limits.connect_timeout,
            TcpStream::connect((host.as_str(), port)),
        )
        .await;
        match attempt {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                self.start_conn(conn, stream);
                self.node.borrow_mut().connected(conn, Now::system());
            }
            Ok(Err(e)) => {
                self.node
                    .borrow_mut()
                    .connect_failed(conn, &e.to_string(), Now::system())
            }
            Err(_) => {
                self.node
                    .borrow_mut()
                    .connect_failed(conn, "connection timed out", Now::system())
            }
        }
        self.apply_outputs();
    }

    /// Registers a connection and starts its reader and writer tasks.
    fn start_conn<S>(self: &Rc<Self>, conn: ConnId, stream: S)
    where
        S: AsyncRead + AsyncWrite + AsRawFd + Clone + 'static,
    {
        let (tx, rx) = mpsc::unbounded();
        let queued_bytes = Rc::new(Cell::new(0));
        let fd = stream.as_raw_fd();
        self.conns.borrow_mut().insert(
            conn,
            ConnHandle {
                tx,
                queued_bytes: queued_bytes.clone(),
                fd,
            },
        );
        let writer = stream.clone();
        compio::runtime::spawn(write_loop(rx, writer, queued_bytes, fd)).detach();
        let this = self.clone();
        compio::runtime::spawn(async move { this.read_loop(conn, stream).await }).detach();
    }

    async fn read_loop<S: AsyncRead>(self: Rc<Self>, conn: ConnId, mut stream: S) {
        let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF_BYTES);
        loop {
            buf.clear();
            let BufResult(result, returned) = stream.read(buf).await;
            buf = returned;
            match result {
                Ok(0) => break,
                Ok(n) => {
                    self.node
                        .borrow_mut()
                        .receive(conn, &buf[..n], Now::system());
                    self.apply_outputs();
                }
                Err(e) => {
                    clog_debug!(self.tag, "Main", "Read error on connection {conn}: {e}");
                    break;
                }
            }
        }
        if let Some(handle) = self.conns.borrow_mut().remove(&conn) {
            let _ = handle.tx.unbounded_send(WriterMsg::Close);
        }
        self.node.borrow_mut().closed(conn, Now::system());
        self.apply_outputs();
    }

    /// Accepts workers on the cluster port (master).
    pub async fn serve_cluster(self: Rc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let accepted = self.node.borrow_mut().accept_cluster(
                        addr.ip(),
                        addr.port(),
                        Now::system(),
                    );
                    match accepted {
                        Some(conn) => self.start_conn(conn, stream),
                        None => drop(stream),
                    }
                    self.apply_outputs();
                }
                Err(e) => {
                    clog_error!(self.tag, "Main", "Could not accept a connection: {e}");
                    compio::time::sleep(TICK).await;
                }
            }
        }
    }

    /// Accepts local clients on `queue/cluster/c-internal.sock`.
    pub async fn serve_local(self: Rc<Self>, listener: UnixListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let conn = self.node.borrow_mut().accept_local(Now::system());
                    self.start_conn::<UnixStream>(conn, stream);
                    self.apply_outputs();
                }
                Err(e) => {
                    clog_error!(
                        "Local Server",
                        "Main",
                        "Could not accept a local connection: {e}"
                    );
                    compio::time::sleep(TICK).await;
                }
            }
        }
    }

    /// Feeds job results from the pool to the engine.
    pub async fn run_job_results(self: Rc<Self>, mut results: JobResults) {
        while let Some((id, result)) = results.next().await {
            self.node.borrow_mut().job_done(id, result, Now::system());
            self.apply_outputs();
        }
    }

    /// Feeds time to the engine.
    pub async fn run_timers(self: Rc<Self>) {
        loop {
            compio::time::sleep(TICK).await;
            self.node.borrow_mut().tick(Now::system());
            self.apply_outputs();
        }
    }

    /// Closes every connection and gives the writers a moment to flush.
    pub async fn shutdown(self: Rc<Self>) {
        self.node.borrow_mut().shutdown();
        self.apply_outputs();
        for _ in 0..20 {
            if self.conns.borrow().is_empty() {
                break;
            }
            compio::time::sleep(Duration::from_millis(25)).await;
        }
        clog_info!(self.tag, "Main", "Connections closed.");
    }
}

/// Reads part of a file being sent. One chunk is at most one frame (5 MiB) from the page cache.
fn read_chunk(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], offset + filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Writes received file bytes under the install root. The engine confined `rel` to
/// `queue/cluster/`; the last component is never followed if it is a symlink, and parents are not
/// created (the per-peer directory exists from `hello` on).
// Writes are small (at most one frame's worth) and sequential; they move to the worker pool with the
// integrity sync.
/// Deletes a scratch file the engine released; only below `queue/cluster/`, a missing one is fine.
fn remove_scratch(home: &Path, rel: &str) -> std::io::Result<()> {
    ignore_missing(std::fs::remove_file(scratch_path(home, rel)?))
}

/// Deletes a peer's scratch directory if nothing is left in it (a job of the gone connection may
/// still be finishing there; its files go when it ends).
fn remove_empty_dir(home: &Path, rel: &str) -> std::io::Result<()> {
    ignore_missing(std::fs::remove_dir(scratch_path(home, rel)?))
}

fn scratch_path(home: &Path, rel: &str) -> std::io::Result<std::path::PathBuf> {
    let inside = rel.strip_prefix(crate::proto::files::RECEIVE_DIR);
    if inside.is_none_or(|p| p.is_empty() || p.split('/').any(|c| c.is_empty() || c == "..")) {
        return Err(std::io::Error::other("not a path below queue/cluster/"));
    }
    Ok(home.join(rel))
}

fn ignore_missing(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn write_received(home: &Path, write: &crate::proto::files::FileWrite) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options
        .create(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o640);
    if write.truncate {
        options.write(true).truncate(true);
    } else {
        options.append(true);
    }
    let mut file = options.open(home.join(&write.rel))?;
    file.write_all(&write.data)
}

async fn write_loop<S: AsyncWrite>(
    mut rx: mpsc::UnboundedReceiver<WriterMsg>,
    mut stream: S,
    queued: Rc<Cell<usize>>,
    fd: RawFd,
) {
    while let Some(msg) = rx.next().await {
        match msg {
            WriterMsg::Frames(frames) => {
                for frame in frames {
                    let len = frame.len();
                    let BufResult(result, _) = stream.write_all(frame).await;
                    queued.set(queued.get().saturating_sub(len));
                    if result.is_err() {
                        shutdown_fd(fd);
                        return;
                    }
                }
            }
            WriterMsg::Close => break,
        }
    }
    shutdown_fd(fd);
}
