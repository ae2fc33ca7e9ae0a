//! Receive side of the file protocol (`new_file`, `file_upd`, `file_end`, PROTOCOL.md §2.6). The
//! engine checks paths, sizes and the SHA-256 digest; the bytes are handed out as [`FileOp`]s for
//! the transport to put on disk, in order.
//!
//! This table is the first holder of every file a peer sends into `queue/cluster/`: from
//! `new_file` until the command that references it takes it over ([`IncomingFiles::take_finished`]).
//! Whatever it still holds when the transfer fails (bad digest, too large, unwritable), when it
//! waits too long, or when the connection ends, it deletes; nothing a peer sent outlives its
//! transfer unless a task took it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::quote::quote;

/// Where received files may go, relative to the install root.
pub const RECEIVE_DIR: &str = "queue/cluster/";

/// Names handed over to tasks that this connection may not open again (a peer rewriting a file a
/// task is reading).
const HANDED_OVER_MAX: usize = 64;

/// Limits of one connection's incoming files: what one peer may hold in `queue/cluster/`.
#[derive(Debug, Clone, Copy)]
pub struct FileLimits {
    /// Transfers held at once: open ones and finished ones no command referenced yet.
    pub transfers_max: usize,
    /// Bytes of one file.
    pub file_bytes_max: u64,
    /// Bytes of every file this peer holds (open and finished, not yet referenced).
    pub held_bytes_max: u64,
}

impl Default for FileLimits {
    fn default() -> Self {
        FileLimits {
            transfers_max: 16,
            file_bytes_max: 2 << 30,
            held_bytes_max: 2 << 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The stock answer's text, for a path outside `queue/cluster/`.
    #[error("Write path not allowed")]
    PathNotAllowed,
    #[error("files are accepted only after a successful hello")]
    BeforeHello,
    #[error("this peer already holds {0} transfers in queue/cluster/ (limit {0}); finish or reference them first")]
    TooMany(usize),
    #[error("file {0} is larger than the {1} bytes allowed")]
    TooLarge(String, u64),
    #[error("this peer's files in queue/cluster/ would exceed {0} bytes")]
    HeldBytes(u64),
    #[error("no file {0} is being received")]
    Unknown(String),
    #[error("{0} was already received and handed over on this connection")]
    HandedOver(String),
    #[error("File wasn't correctly received. Checksums aren't equal.")]
    Checksum,
    #[error("malformed file command: {0}")]
    Malformed(&'static str),
    #[error("could not write {0}: {1}")]
    Write(String, String),
}

/// Bytes to put on disk, in order, under the install root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWrite {
    pub rel: String,
    pub data: Vec<u8>,
    /// Create or truncate the file before writing.
    pub truncate: bool,
}

/// What the transport must do with a received file, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    Write(FileWrite),
    /// Delete the file (a missing one is fine).
    Remove {
        rel: String,
    },
}

/// Where this connection's peer may write.
#[derive(Debug, Clone)]
enum Confinement {
    /// Nowhere yet (a cluster peer before its hello).
    Nowhere,
    /// Anywhere below `queue/cluster/` (a local client).
    Anywhere,
    /// Below this directory only (a worker: its own `queue/cluster/<name>/`).
    Below(String),
}

struct Open {
    hasher: Sha256,
    bytes: u64,
    /// Writing failed: the file will be reported as not received correctly.
    failed: Option<String>,
    last: Instant,
}

/// A finished transfer waiting for the command that references it.
struct Finished {
    intact: bool,
    bytes: u64,
    at: Instant,
}

/// The files a peer is sending on one connection.
pub struct IncomingFiles {
    limits: FileLimits,
    open: HashMap<String, Open>,
    finished: HashMap<String, Finished>,
    handed_over: VecDeque<String>,
    ops: Vec<FileOp>,
    confinement: Confinement,
}

/// Turns the wire path (`/queue/cluster/...`) into a path relative to the install root, refusing
/// anything that could leave `queue/cluster/`.
pub fn receive_path(wire: &[u8]) -> Result<String, FileError> {
    let text = std::str::from_utf8(wire).map_err(|_| FileError::PathNotAllowed)?;
    let rel = text.strip_prefix('/').unwrap_or(text);
    let inside = rel
        .strip_prefix(RECEIVE_DIR)
        .ok_or(FileError::PathNotAllowed)?;
    let clean = !inside.is_empty()
        && !text.contains('\0')
        && inside
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if !clean {
        return Err(FileError::PathNotAllowed);
    }
    Ok(rel.to_string())
}

fn split_path(payload: &[u8]) -> Result<(&[u8], &[u8]), FileError> {
    let space = payload
        .iter()
        .position(|b| *b == b' ')
        .ok_or(FileError::Malformed("no space after the path"))?;
    Ok((&payload[..space], &payload[space + 1..]))
}

impl IncomingFiles {
    /// A table that accepts files anywhere below `queue/cluster/` (see [`IncomingFiles::confine_to`]
    /// and [`IncomingFiles::refuse_all`]).
    pub fn new(limits: FileLimits) -> IncomingFiles {
        IncomingFiles {
            limits,
            open: HashMap::new(),
            finished: HashMap::new(),
            handed_over: VecDeque::new(),
            ops: Vec::new(),
            confinement: Confinement::Anywhere,
        }
    }

    /// From now on only paths below `prefix` (e.g. `queue/cluster/worker1/`) are accepted.
    pub fn confine_to(&mut self, prefix: &str) {
        self.confinement = Confinement::Below(prefix.to_string());
    }

    /// No file is accepted until [`IncomingFiles::confine_to`] (a cluster peer before its hello).
    pub fn refuse_all(&mut self) {
        self.confinement = Confinement::Nowhere;
    }

    fn path(&self, wire: &[u8]) -> Result<String, FileError> {
        let rel = receive_path(wire)?;
        match &self.confinement {
            Confinement::Nowhere => Err(FileError::BeforeHello),
            Confinement::Below(prefix) if !rel.starts_with(prefix.as_str()) => {
                Err(FileError::PathNotAllowed)
            }
            _ => Ok(rel),
        }
    }

    fn held_bytes(&self) -> u64 {
        let open: u64 = self.open.values().map(|f| f.bytes).sum();
        open + self.finished.values().map(|f| f.bytes).sum::<u64>()
    }

    fn remove(&mut self, rel: String) {
        self.ops.push(FileOp::Remove { rel });
    }

    /// `new_file <path>`. Reopening a file being received starts it over; a finished one not yet
    /// referenced is replaced.
    pub fn open(&mut self, payload: &[u8], now: Instant) -> Result<(), FileError> {
        let rel = self.path(payload)?;
        if self.handed_over.contains(&rel) {
            return Err(FileError::HandedOver(quote(&rel)));
        }
        let known = self.open.remove(&rel).is_some() || self.finished.remove(&rel).is_some();
        if !known && self.open.len() + self.finished.len() >= self.limits.transfers_max {
            return Err(FileError::TooMany(self.limits.transfers_max));
        }
        self.open.insert(
            rel.clone(),
            Open {
                hasher: Sha256::new(),
                bytes: 0,
                failed: None,
                last: now,
            },
        );
        self.ops.push(FileOp::Write(FileWrite {
            rel,
            data: Vec::new(),
            truncate: true,
        }));
        Ok(())
    }

    /// `file_upd <path> <bytes>`. A file over a limit is abandoned and deleted.
    pub fn update(&mut self, payload: &[u8], now: Instant) -> Result<(), FileError> {
        let (path, data) = split_path(payload)?;
        let rel = self.path(path)?;
        let held = self.held_bytes();
        let file = self
            .open
            .get_mut(&rel)
            .ok_or_else(|| FileError::Unknown(quote(&rel)))?;
        let bytes = file.bytes + data.len() as u64;
        let error = if bytes > self.limits.file_bytes_max {
            Some(FileError::TooLarge(quote(&rel), self.limits.file_bytes_max))
        } else if held + data.len() as u64 > self.limits.held_bytes_max {
            Some(FileError::HeldBytes(self.limits.held_bytes_max))
        } else {
            None
        };
        if let Some(error) = error {
            self.open.remove(&rel);
            self.finished.insert(
                rel.clone(),
                Finished {
                    intact: false,
                    bytes: 0,
                    at: now,
                },
            );
            self.remove(rel);
            return Err(error);
        }
        file.bytes = bytes;
        file.last = now;
        file.hasher.update(data);
        self.ops.push(FileOp::Write(FileWrite {
            rel,
            data: data.to_vec(),
            truncate: false,
        }));
        Ok(())
    }

    /// `file_end <path> <32-byte SHA-256>`: closes the transfer and checks the digest. A file that
    /// did not arrive intact is deleted at once; the referencing command learns it was not.
    pub fn end(&mut self, payload: &[u8], now: Instant) -> Result<(), FileError> {
        let (path, digest) = split_path(payload)?;
        let rel = self.path(path)?;
        let file = self
            .open
            .remove(&rel)
            .ok_or_else(|| FileError::Unknown(quote(&rel)))?;
        let intact = file.failed.is_none() && file.hasher.finalize().as_slice() == digest;
        self.finished.insert(
            rel.clone(),
            Finished {
                intact,
                bytes: if intact { file.bytes } else { 0 },
                at: now,
            },
        );
        if intact {
            return Ok(());
        }
        self.remove(rel.clone());
        match file.failed {
            Some(reason) => Err(FileError::Write(quote(&rel), reason)),
            None => Err(FileError::Checksum),
        }
    }

    /// The transport could not write part of a file.
    pub fn write_failed(&mut self, rel: &str, reason: &str) {
        if let Some(file) = self.open.get_mut(rel) {
            file.failed.get_or_insert_with(|| reason.to_string());
        }
    }

    /// Whether a finished transfer arrived intact. The file (if intact) is handed over to the
    /// caller's task, which must delete it when done; this connection may not write it again.
    pub fn take_finished(&mut self, rel: &str) -> Option<bool> {
        let finished = self.finished.remove(rel)?;
        if finished.intact {
            if self.handed_over.len() >= HANDED_OVER_MAX {
                self.handed_over.pop_front();
            }
            self.handed_over.push_back(rel.to_string());
        }
        Some(finished.intact)
    }

    /// Deletes transfers idle for longer than `max_age`: open ones with no chunk since, finished
    /// ones no command referenced. Returns their paths (quoted for a log).
    pub fn expire(&mut self, now: Instant, max_age: Duration) -> Vec<String> {
        let old = |at: Instant| now.saturating_duration_since(at) > max_age;
        let mut gone: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| old(f.last))
            .map(|(rel, _)| rel.clone())
            .collect();
        gone.extend(
            self.finished
                .iter()
                .filter(|(_, f)| old(f.at))
                .map(|(rel, _)| rel.clone()),
        );
        gone.sort();
        for rel in &gone {
            self.open.remove(rel);
            if self.finished.remove(rel).is_some_and(|f| !f.intact) {
                continue;
            }
            self.remove(rel.clone());
        }
        gone.iter().map(|rel| quote(rel)).collect()
    }

    /// The connection ended: every file still held is deleted.
    pub fn release_all(&mut self) {
        let open: Vec<String> = self.open.drain().map(|(rel, _)| rel).collect();
        let finished: Vec<String> = self
            .finished
            .drain()
            .filter(|(_, f)| f.intact)
            .map(|(rel, _)| rel)
            .collect();
        for rel in open.into_iter().chain(finished) {
            self.remove(rel);
        }
    }

    /// Transfers held now (open and finished, not yet referenced).
    pub fn held(&self) -> usize {
        self.open.len() + self.finished.len()
    }

    /// What the transport must do, in order.
    pub fn take_ops(&mut self) -> Vec<FileOp> {
        std::mem::take(&mut self.ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(ops: Vec<FileOp>) -> Vec<FileWrite> {
        ops.into_iter()
            .filter_map(|op| match op {
                FileOp::Write(w) => Some(w),
                FileOp::Remove { .. } => None,
            })
            .collect()
    }

    fn removed(ops: &[FileOp]) -> Vec<&str> {
        ops.iter()
            .filter_map(|op| match op {
                FileOp::Remove { rel } => Some(rel.as_str()),
                FileOp::Write(_) => None,
            })
            .collect()
    }

    fn digest_of(path: &str, content: &[u8]) -> Vec<u8> {
        let mut end = format!("{path} ").into_bytes();
        end.extend_from_slice(&Sha256::digest(content));
        end
    }

    #[test]
    fn paths_are_confined_to_queue_cluster() {
        assert_eq!(
            receive_path(b"/queue/cluster/w1/w1-1.zip").unwrap(),
            "queue/cluster/w1/w1-1.zip"
        );
        for bad in [
            &b"/etc/client.keys"[..],
            b"/queue/cluster/../../etc/passwd",
            b"/queue/cluster/",
            b"/queue/cluster//x",
            b"/queue/cluster/w1/./x",
            b"/queue/clusterx/a",
            b"/queue/cluster/a\0b",
            b"\xff",
        ] {
            assert_eq!(
                receive_path(bad),
                Err(FileError::PathNotAllowed),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_confined_peer_writes_only_into_its_directory() {
        let now = Instant::now();
        let mut f = IncomingFiles::new(FileLimits::default());
        f.refuse_all();
        assert_eq!(
            f.open(b"/queue/cluster/w1/p.zip", now),
            Err(FileError::BeforeHello)
        );
        f.confine_to("queue/cluster/w1/");
        assert_eq!(
            f.open(b"/queue/cluster/w2/p.zip", now),
            Err(FileError::PathNotAllowed)
        );
        assert_eq!(
            f.open(b"/queue/cluster/c-internal.sock", now),
            Err(FileError::PathNotAllowed)
        );
        f.open(b"/queue/cluster/w1/p.zip", now).unwrap();
    }

    #[test]
    fn a_transfer_is_written_checked_and_handed_over_once() {
        let now = Instant::now();
        let mut f = IncomingFiles::new(FileLimits::default());
        f.open(b"/queue/cluster/w1/p.zip", now).unwrap();
        f.update(b"/queue/cluster/w1/p.zip hello ", now).unwrap();
        f.update(b"/queue/cluster/w1/p.zip world", now).unwrap();
        f.end(&digest_of("/queue/cluster/w1/p.zip", b"hello world"), now)
            .unwrap();
        assert_eq!(f.take_finished("queue/cluster/w1/p.zip"), Some(true));
        let writes = writes(f.take_ops());
        assert_eq!(writes.len(), 3);
        assert!(writes[0].truncate);
        assert_eq!(writes[1].data, b"hello ");
        assert_eq!(f.held(), 0);
        assert!(matches!(
            f.open(b"/queue/cluster/w1/p.zip", now),
            Err(FileError::HandedOver(_))
        ));
    }

    #[test]
    fn failed_transfers_are_deleted_at_once() {
        let now = Instant::now();
        let mut f = IncomingFiles::new(FileLimits {
            transfers_max: 2,
            file_bytes_max: 4,
            held_bytes_max: 6,
        });
        f.open(b"/queue/cluster/a", now).unwrap();
        f.update(b"/queue/cluster/a abc", now).unwrap();
        assert_eq!(
            f.end(b"/queue/cluster/a 0123456789abcdef0123456789abcdef", now),
            Err(FileError::Checksum)
        );
        assert_eq!(removed(&f.take_ops()), ["queue/cluster/a"]);
        assert_eq!(f.take_finished("queue/cluster/a"), Some(false));

        f.open(b"/queue/cluster/a", now).unwrap();
        assert!(matches!(
            f.update(b"/queue/cluster/a 12345", now),
            Err(FileError::TooLarge(..))
        ));
        assert_eq!(removed(&f.take_ops()), ["queue/cluster/a"]);
        assert_eq!(f.take_finished("queue/cluster/a"), Some(false));

        f.open(b"/queue/cluster/c", now).unwrap();
        f.write_failed("queue/cluster/c", "No space left on device");
        assert!(matches!(
            f.end(&digest_of("/queue/cluster/c", b""), now),
            Err(FileError::Write(..))
        ));
        assert_eq!(removed(&f.take_ops()), ["queue/cluster/c"]);
        assert_eq!(
            f.update(b"/queue/cluster/zz x", now),
            Err(FileError::Unknown("queue/cluster/zz".into()))
        );
    }

    #[test]
    fn a_peer_holds_at_most_its_transfers_and_bytes() {
        let now = Instant::now();
        let mut f = IncomingFiles::new(FileLimits {
            transfers_max: 2,
            file_bytes_max: 100,
            held_bytes_max: 6,
        });
        f.open(b"/queue/cluster/a", now).unwrap();
        f.update(b"/queue/cluster/a abcd", now).unwrap();
        f.end(&digest_of("/queue/cluster/a", b"abcd"), now).unwrap();
        f.open(b"/queue/cluster/b", now).unwrap();
        assert_eq!(f.open(b"/queue/cluster/c", now), Err(FileError::TooMany(2)));
        assert_eq!(
            f.update(b"/queue/cluster/b abc", now),
            Err(FileError::HeldBytes(6))
        );
        f.take_ops();
        // Referencing a finished file frees its place.
        assert_eq!(f.take_finished("queue/cluster/a"), Some(true));
        assert_eq!(f.take_finished("queue/cluster/b"), Some(false));
        f.open(b"/queue/cluster/c", now).unwrap();
    }

    #[test]
    fn idle_and_unreferenced_transfers_expire_and_a_closed_connection_leaves_nothing() {
        let t0 = Instant::now();
        let mut f = IncomingFiles::new(FileLimits::default());
        f.open(b"/queue/cluster/done", t0).unwrap();
        f.end(&digest_of("/queue/cluster/done", b""), t0).unwrap();
        f.open(b"/queue/cluster/stalled", t0).unwrap();
        f.open(b"/queue/cluster/busy", t0).unwrap();
        let later = t0 + Duration::from_secs(100);
        f.update(b"/queue/cluster/busy x", later).unwrap();
        f.take_ops();
        assert_eq!(
            f.expire(later, Duration::from_secs(60)),
            ["queue/cluster/done", "queue/cluster/stalled"]
        );
        assert_eq!(
            removed(&f.take_ops()),
            ["queue/cluster/done", "queue/cluster/stalled"]
        );
        f.release_all();
        assert_eq!(removed(&f.take_ops()), ["queue/cluster/busy"]);
        assert_eq!(f.held(), 0);
    }

    #[test]
    fn errors_quote_a_bounded_prefix_of_the_path() {
        let mut f = IncomingFiles::new(FileLimits::default());
        let path = format!("/queue/cluster/{} x", "a".repeat(5000));
        let error = f.update(path.as_bytes(), Instant::now()).unwrap_err();
        assert!(error.to_string().len() < 300, "{error}");
    }
}
