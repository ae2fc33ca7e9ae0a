//! Receive side of the file protocol (`new_file`, `file_upd`, `file_end`, PROTOCOL.md §2.6). The
//! engine checks paths, sizes and the SHA-256 digest; the bytes are handed out as [`FileWrite`]s
//! for the transport to put on disk.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// Where received files may go, relative to the install root.
pub const RECEIVE_DIR: &str = "queue/cluster/";

/// Limits of one connection's incoming files.
#[derive(Debug, Clone, Copy)]
pub struct FileLimits {
    pub open_files_max: usize,
    pub file_bytes_max: u64,
}

impl Default for FileLimits {
    fn default() -> Self {
        FileLimits {
            open_files_max: 16,
            file_bytes_max: 2 << 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The stock answer's text, for a path outside `queue/cluster/`.
    #[error("Write path not allowed")]
    PathNotAllowed,
    #[error("too many files are being received on this connection (limit {0})")]
    TooMany(usize),
    #[error("file {0} is larger than the {1} bytes allowed")]
    TooLarge(String, u64),
    #[error("no file {0} is being received")]
    Unknown(String),
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

struct Incoming {
    hasher: Sha256,
    bytes: u64,
    /// Writing failed: the file will be reported as not received correctly.
    failed: Option<String>,
}

/// The files a peer is sending on one connection.
pub struct IncomingFiles {
    limits: FileLimits,
    open: HashMap<String, Incoming>,
    writes: Vec<FileWrite>,
    /// Finished transfers and whether they arrived intact, for the command that references them.
    finished: HashMap<String, bool>,
    /// A narrower directory this peer may write into (a worker: its own `queue/cluster/<name>/`).
    prefix: Option<String>,
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
    pub fn new(limits: FileLimits) -> IncomingFiles {
        IncomingFiles {
            limits,
            open: HashMap::new(),
            writes: Vec::new(),
            finished: HashMap::new(),
            prefix: None,
        }
    }

    /// From now on only paths below `prefix` (e.g. `queue/cluster/worker1/`) are accepted.
    pub fn confine_to(&mut self, prefix: &str) {
        self.prefix = Some(prefix.to_string());
    }

    fn path(&self, wire: &[u8]) -> Result<String, FileError> {
        let rel = receive_path(wire)?;
        match &self.prefix {
            Some(prefix) if !rel.starts_with(prefix.as_str()) => Err(FileError::PathNotAllowed),
            _ => Ok(rel),
        }
    }

    /// `new_file <path>`.
    pub fn open(&mut self, payload: &[u8]) -> Result<(), FileError> {
        let rel = self.path(payload)?;
        if !self.open.contains_key(&rel) && self.open.len() >= self.limits.open_files_max {
            return Err(FileError::TooMany(self.limits.open_files_max));
        }
        self.finished.remove(&rel);
        self.open.insert(
            rel.clone(),
            Incoming {
                hasher: Sha256::new(),
                bytes: 0,
                failed: None,
            },
        );
        self.writes.push(FileWrite {
            rel,
            data: Vec::new(),
            truncate: true,
        });
        Ok(())
    }

    /// `file_upd <path> <bytes>`.
    pub fn update(&mut self, payload: &[u8]) -> Result<(), FileError> {
        let (path, data) = split_path(payload)?;
        let rel = self.path(path)?;
        let file = self
            .open
            .get_mut(&rel)
            .ok_or_else(|| FileError::Unknown(rel.clone()))?;
        file.bytes += data.len() as u64;
        if file.bytes > self.limits.file_bytes_max {
            self.open.remove(&rel);
            self.finished.insert(rel.clone(), false);
            return Err(FileError::TooLarge(rel, self.limits.file_bytes_max));
        }
        file.hasher.update(data);
        self.writes.push(FileWrite {
            rel,
            data: data.to_vec(),
            truncate: false,
        });
        Ok(())
    }

    /// `file_end <path> <32-byte SHA-256>`: closes the transfer and checks the digest.
    pub fn end(&mut self, payload: &[u8]) -> Result<(), FileError> {
        let (path, digest) = split_path(payload)?;
        let rel = self.path(path)?;
        let file = self
            .open
            .remove(&rel)
            .ok_or_else(|| FileError::Unknown(rel.clone()))?;
        let intact = file.failed.is_none() && file.hasher.finalize().as_slice() == digest;
        self.finished.insert(rel.clone(), intact);
        match (intact, file.failed) {
            (true, _) => Ok(()),
            (false, Some(reason)) => Err(FileError::Write(rel, reason)),
            (false, None) => Err(FileError::Checksum),
        }
    }

    /// The transport could not write part of a file.
    pub fn write_failed(&mut self, rel: &str, reason: &str) {
        if let Some(file) = self.open.get_mut(rel) {
            file.failed.get_or_insert_with(|| reason.to_string());
        }
    }

    /// Whether a finished transfer arrived intact (consumed by the command that references it).
    pub fn take_finished(&mut self, rel: &str) -> Option<bool> {
        self.finished.remove(rel)
    }

    pub fn take_writes(&mut self) -> Vec<FileWrite> {
        std::mem::take(&mut self.writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut f = IncomingFiles::new(FileLimits::default());
        f.confine_to("queue/cluster/w1/");
        assert_eq!(
            f.open(b"/queue/cluster/w2/p.zip"),
            Err(FileError::PathNotAllowed)
        );
        assert_eq!(
            f.open(b"/queue/cluster/c-internal.sock"),
            Err(FileError::PathNotAllowed)
        );
        f.open(b"/queue/cluster/w1/p.zip").unwrap();
    }

    #[test]
    fn a_transfer_is_written_and_checked() {
        let mut f = IncomingFiles::new(FileLimits::default());
        f.open(b"/queue/cluster/w1/p.zip").unwrap();
        f.update(b"/queue/cluster/w1/p.zip hello ").unwrap();
        f.update(b"/queue/cluster/w1/p.zip world").unwrap();
        let mut end = b"/queue/cluster/w1/p.zip ".to_vec();
        end.extend_from_slice(&Sha256::digest(b"hello world"));
        f.end(&end).unwrap();
        assert_eq!(f.take_finished("queue/cluster/w1/p.zip"), Some(true));
        let writes = f.take_writes();
        assert_eq!(writes.len(), 3);
        assert!(writes[0].truncate);
        assert_eq!(writes[1].data, b"hello ");
    }

    #[test]
    fn bad_digest_size_and_write_failures() {
        let mut f = IncomingFiles::new(FileLimits {
            open_files_max: 1,
            file_bytes_max: 4,
        });
        f.open(b"/queue/cluster/a").unwrap();
        assert_eq!(f.open(b"/queue/cluster/b"), Err(FileError::TooMany(1)));
        f.update(b"/queue/cluster/a abc").unwrap();
        assert_eq!(
            f.end(b"/queue/cluster/a 0123456789abcdef0123456789abcdef"),
            Err(FileError::Checksum)
        );
        assert_eq!(f.take_finished("queue/cluster/a"), Some(false));
        f.open(b"/queue/cluster/a").unwrap();
        assert!(matches!(
            f.update(b"/queue/cluster/a 12345"),
            Err(FileError::TooLarge(..))
        ));
        f.open(b"/queue/cluster/c").unwrap();
        f.write_failed("queue/cluster/c", "No space left on device");
        let mut end = b"/queue/cluster/c ".to_vec();
        end.extend_from_slice(&Sha256::digest(b""));
        assert!(matches!(f.end(&end), Err(FileError::Write(..))));
        assert_eq!(
            f.update(b"/queue/cluster/zz x"),
            Err(FileError::Unknown("queue/cluster/zz".into()))
        );
    }
}
