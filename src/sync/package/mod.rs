//! The packages nodes exchange during the integrity sync (PROTOCOL.md §4.1.4, §10.2): files of the
//! install root plus one `files_metadata.json` member.
//!
//! - [`zlib`] (4.14 dialect): entries `<path>|//@@//|zlib(content)` joined by `|@@//@@|`, built under a
//!   size limit;
//! - [`zip`] (4.3 dialect): a real ZIP archive with stored (uncompressed) members.
//!
//! Both formats stream: a writer takes each file's content as a `Read` and never holds a whole file; a
//! reader hands member contents to a [`PackageSink`] in pieces and returns the metadata bytes. Readers
//! treat the package as hostile: names must be plain relative paths, output is bounded in total and per
//! member, and truncated or corrupt data is an error, after which the sink has been told to discard the
//! member it was writing.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Cursor, Seek, Write};

use super::paths::{safe_relative, PathError};

pub mod zip;
pub mod zlib;

/// Name of the metadata member (worker metadata, or the master's classification).
pub const METADATA_MEMBER: &str = "files_metadata.json";

/// Default bound of the metadata member.
pub const METADATA_BYTES_MAX: u64 = 256 << 20;

/// Receives the files of a package being read.
///
/// For each member: `begin`, any number of `data`, then `end`, or `abort` when the member (or the
/// package) failed after `begin` succeeded, so partial output can be removed.
pub trait PackageSink {
    /// A member starts; `rel` has passed [`safe_relative`].
    fn begin(&mut self, rel: &str) -> io::Result<()>;
    fn data(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// The member is complete and verified.
    fn end(&mut self) -> io::Result<()>;
    /// The member begun last will not be completed.
    fn abort(&mut self);
}

/// Package output that can take back an entry: a writer rewinds to the entry's start and cuts the file
/// there, so an entry that overflowed the limit or whose source failed leaves no trace.
pub trait PackageOutput: Write + Seek {
    /// Cuts the output at `len` bytes and moves to its end.
    fn truncate_at(&mut self, len: u64) -> io::Result<()>;
}

impl PackageOutput for File {
    fn truncate_at(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)?;
        self.seek(io::SeekFrom::Start(len)).map(|_| ())
    }
}

impl PackageOutput for Cursor<Vec<u8>> {
    fn truncate_at(&mut self, len: u64) -> io::Result<()> {
        let keep = usize::try_from(len).map_err(io::Error::other)?;
        self.get_mut().truncate(keep);
        self.set_position(len);
        Ok(())
    }
}

impl<T: PackageOutput + ?Sized> PackageOutput for &mut T {
    fn truncate_at(&mut self, len: u64) -> io::Result<()> {
        (**self).truncate_at(len)
    }
}

/// Bounds on what a reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// All members together, decompressed (the receiver's `max_zip_size`).
    pub total_bytes_max: u64,
    /// One file member, decompressed.
    pub member_bytes_max: u64,
    /// The metadata member, held in memory.
    pub metadata_bytes_max: u64,
    /// Members, metadata included.
    pub members_max: u64,
    /// Bytes of the package held at once by the zlib reader (stock readers use 10 MiB windows).
    pub window_bytes: usize,
}

impl UnpackLimits {
    /// Limits for a receiver whose `max_zip_size` is `max_zip_size`: no member larger than the whole, and
    /// room for one file per agent of the largest deployments.
    pub fn new(max_zip_size: u64) -> UnpackLimits {
        UnpackLimits {
            total_bytes_max: max_zip_size,
            member_bytes_max: max_zip_size,
            metadata_bytes_max: METADATA_BYTES_MAX.min(max_zip_size),
            members_max: 4 << 20,
            window_bytes: zlib::WINDOW_BYTES,
        }
    }
}

/// What a reader returns besides the files given to the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// The `files_metadata.json` member.
    pub metadata: Vec<u8>,
    /// File members given to the sink.
    pub files: u64,
    /// Decompressed bytes of all members, metadata included.
    pub bytes: u64,
}

/// Result of offering one file to a package writer.
#[derive(Debug)]
pub enum AddOutcome {
    /// Written; bytes the entry takes in the package.
    Added { stored_bytes: u64 },
    /// Not written: the file alone is larger than the package limit.
    TooLarge,
    /// Not written: the package is full; this and every later file wait for another round.
    Deferred,
    /// Not written: reading the file failed.
    Unreadable(io::Error),
    /// Not written: a receiver would refuse the name.
    BadName(NameError),
}

/// Why a member name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("is the name of the metadata member")]
    Reserved,
}

/// Checks a file member's name (not the metadata member). Both zlib-package separators contain `//`,
/// so a name [`safe_relative`] accepts can never contain one.
fn check_file_name(rel: &str) -> Result<(), NameError> {
    safe_relative(rel)?;
    if rel == METADATA_MEMBER {
        return Err(NameError::Reserved);
    }
    Ok(())
}

/// First position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What went wrong writing or reading a package.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The receiver's `max_zip_size` was reached (Wazuh error 3053).
    #[error("Decompressed file exceeds the maximum allowed size ({limit_bytes} bytes)")]
    SizeExceeded { limit_bytes: u64 },
    #[error("package member '{name}' exceeds the maximum allowed size ({limit_bytes} bytes)")]
    MemberTooLarge { name: String, limit_bytes: u64 },
    #[error("files metadata of the package exceeds {limit_bytes} bytes")]
    MetadataTooLarge { limit_bytes: u64 },
    #[error("package has more than {limit} members")]
    TooManyMembers { limit: u64 },
    #[error("package member name '{name}' refused: {source}")]
    Name {
        name: String,
        #[source]
        source: NameError,
    },
    #[error("package member name at byte {offset} is not UTF-8")]
    NameNotUtf8 { offset: u64 },
    #[error("malformed package at byte {offset}: {problem}")]
    Malformed { offset: u64, problem: &'static str },
    #[error("package ends inside member '{name}'")]
    Truncated { name: String },
    #[error("package member '{name}' is corrupt: {detail}")]
    Corrupt { name: String, detail: String },
    #[error("package has no files metadata")]
    MetadataMissing,
    #[error("package has member '{name}' twice")]
    Duplicate { name: String },
    #[error("package member '{name}' is a symbolic link")]
    Symlink { name: String },
    #[error("package member '{name}' is not a regular file")]
    NotAFile { name: String },
    #[error("package member '{name}' is not supported: {detail}")]
    Unsupported { name: String, detail: String },
    #[error("package member '{name}' has sizes that disagree: {detail}")]
    SizeMismatch { name: String, detail: String },
    #[error("not a valid package archive: {0}")]
    Archive(String),
    #[error("reading the package: {0}")]
    Read(#[source] io::Error),
    #[error("writing the package: {0}")]
    Write(#[source] io::Error),
    #[error("storing package member '{name}': {source}")]
    Sink {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// The member being extracted.
struct Member {
    name: String,
    bytes: u64,
    /// `None` for a file (its bytes go to the sink).
    metadata: Option<Vec<u8>>,
}

/// Bookkeeping shared by the readers: names, limits and the sink protocol.
struct Extractor<'a> {
    sink: &'a mut dyn PackageSink,
    limits: UnpackLimits,
    current: Option<Member>,
    metadata: Option<Vec<u8>>,
    members: u64,
    files: u64,
    bytes: u64,
}

impl<'a> Extractor<'a> {
    fn new(sink: &'a mut dyn PackageSink, limits: &UnpackLimits) -> Extractor<'a> {
        Extractor {
            sink,
            limits: *limits,
            current: None,
            metadata: None,
            members: 0,
            files: 0,
            bytes: 0,
        }
    }

    fn begin(&mut self, name: &str) -> Result<(), PackageError> {
        if self.members >= self.limits.members_max {
            return Err(PackageError::TooManyMembers {
                limit: self.limits.members_max,
            });
        }
        self.members += 1;
        if name == METADATA_MEMBER {
            if self.metadata.is_some() {
                return Err(PackageError::Duplicate { name: name.into() });
            }
            self.current = Some(Member {
                name: name.into(),
                bytes: 0,
                metadata: Some(Vec::new()),
            });
            return Ok(());
        }
        safe_relative(name).map_err(|e| PackageError::Name {
            name: name.into(),
            source: e.into(),
        })?;
        self.sink.begin(name).map_err(|source| PackageError::Sink {
            name: name.into(),
            source,
        })?;
        self.current = Some(Member {
            name: name.into(),
            bytes: 0,
            metadata: None,
        });
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), PackageError> {
        let Some(member) = self.current.as_mut() else {
            return Ok(());
        };
        let n = bytes.len() as u64;
        if self.bytes + n > self.limits.total_bytes_max {
            return Err(PackageError::SizeExceeded {
                limit_bytes: self.limits.total_bytes_max,
            });
        }
        match &mut member.metadata {
            Some(buf) => {
                if member.bytes + n > self.limits.metadata_bytes_max {
                    return Err(PackageError::MetadataTooLarge {
                        limit_bytes: self.limits.metadata_bytes_max,
                    });
                }
                buf.extend_from_slice(bytes);
            }
            None => {
                if member.bytes + n > self.limits.member_bytes_max {
                    return Err(PackageError::MemberTooLarge {
                        name: member.name.clone(),
                        limit_bytes: self.limits.member_bytes_max,
                    });
                }
                self.sink.data(bytes).map_err(|source| PackageError::Sink {
                    name: member.name.clone(),
                    source,
                })?;
            }
        }
        self.bytes += n;
        member.bytes += n;
        Ok(())
    }

    fn end(&mut self) -> Result<(), PackageError> {
        let Some(member) = self.current.take() else {
            return Ok(());
        };
        match member.metadata {
            Some(buf) => self.metadata = Some(buf),
            None => {
                self.sink.end().map_err(|source| PackageError::Sink {
                    name: member.name,
                    source,
                })?;
                self.files += 1;
            }
        }
        Ok(())
    }

    /// The package failed: a file member in progress is discarded.
    fn fail(&mut self) {
        if let Some(Member { metadata: None, .. }) = self.current.take() {
            self.sink.abort();
        }
    }

    fn finish(self) -> Result<Unpacked, PackageError> {
        Ok(Unpacked {
            metadata: self.metadata.ok_or(PackageError::MetadataMissing)?,
            files: self.files,
            bytes: self.bytes,
        })
    }
}

/// A sink that keeps files in memory, for packages known to be small (a worker's metadata-only package)
/// and for tests.
#[derive(Debug, Default)]
pub struct MemorySink {
    pub files: BTreeMap<String, Vec<u8>>,
    /// Members begun and then discarded.
    pub aborted: Vec<String>,
    current: Option<(String, Vec<u8>)>,
}

impl PackageSink for MemorySink {
    fn begin(&mut self, rel: &str) -> io::Result<()> {
        self.current = Some((rel.to_string(), Vec::new()));
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.current {
            Some((_, buf)) => {
                buf.extend_from_slice(bytes);
                Ok(())
            }
            None => Err(io::Error::other("data outside a member")),
        }
    }

    fn end(&mut self) -> io::Result<()> {
        let (name, buf) = self
            .current
            .take()
            .ok_or_else(|| io::Error::other("end outside a member"))?;
        self.files.insert(name, buf);
        Ok(())
    }

    fn abort(&mut self) {
        if let Some((name, _)) = self.current.take() {
            self.aborted.push(name);
        }
    }
}

/// Runs a Python snippet with `arg` as `sys.argv[1]` and returns its output; `None` without python3.
#[cfg(test)]
fn python(script: &str, arg: &std::path::Path) -> Option<String> {
    let out = match std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(arg)
        .output()
    {
        Ok(out) => out,
        Err(_) => {
            println!("python3 not available: compatibility with stock nodes not checked");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
fn md5(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_and_file_outputs_truncate_and_move_to_the_end() {
        let mut c = Cursor::new(Vec::new());
        c.write_all(b"abcdef").unwrap();
        c.truncate_at(2).unwrap();
        c.write_all(b"Z").unwrap();
        assert_eq!(c.into_inner(), b"abZ");

        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"abcdef").unwrap();
        f.truncate_at(3).unwrap();
        f.write_all(b"Z").unwrap();
        f.seek(io::SeekFrom::Start(0)).unwrap();
        let mut back = Vec::new();
        io::Read::read_to_end(&mut f, &mut back).unwrap();
        assert_eq!(back, b"abcZ");
    }

    #[test]
    fn file_names_must_be_plain_which_excludes_separators() {
        assert_eq!(check_file_name("etc/client.keys"), Ok(()));
        for sep in [zlib::FILE_SEP, zlib::PATH_SEP] {
            let name = format!("etc/a{}b", String::from_utf8_lossy(sep));
            assert!(matches!(
                check_file_name(&name),
                Err(NameError::Path(PathError::Component { .. }))
            ));
        }
        assert_eq!(check_file_name(METADATA_MEMBER), Err(NameError::Reserved));
        assert!(matches!(
            check_file_name("/etc/passwd"),
            Err(NameError::Path(PathError::Absolute(_)))
        ));
    }

    #[test]
    fn extractor_bounds_totals_members_and_metadata() {
        let limits = UnpackLimits {
            total_bytes_max: 10,
            member_bytes_max: 6,
            metadata_bytes_max: 4,
            members_max: 3,
            window_bytes: 1 << 16,
        };
        let mut sink = MemorySink::default();
        let mut ex = Extractor::new(&mut sink, &limits);
        ex.begin("a").unwrap();
        ex.data(b"123456").unwrap();
        assert!(matches!(
            ex.data(b"7"),
            Err(PackageError::MemberTooLarge { limit_bytes: 6, .. })
        ));
        ex.fail();
        ex.begin(METADATA_MEMBER).unwrap();
        ex.data(b"{}").unwrap();
        ex.end().unwrap();
        assert!(matches!(
            ex.begin(METADATA_MEMBER),
            Err(PackageError::Duplicate { .. })
        ));
        assert!(matches!(
            ex.begin("b"),
            Err(PackageError::TooManyMembers { limit: 3 })
        ));
        let done = ex.finish().unwrap();
        assert_eq!(done.metadata, b"{}");
        assert_eq!(done.bytes, 8);
        assert_eq!(sink.aborted, ["a"]);

        let mut sink = MemorySink::default();
        let mut ex = Extractor::new(&mut sink, &limits);
        ex.begin(METADATA_MEMBER).unwrap();
        assert!(matches!(
            ex.data(b"12345"),
            Err(PackageError::MetadataTooLarge { limit_bytes: 4 })
        ));
        ex.fail();
        assert!(matches!(ex.finish(), Err(PackageError::MetadataMissing)));
        assert!(sink.aborted.is_empty());
        assert_eq!(
            PackageError::SizeExceeded { limit_bytes: 10 }.to_string(),
            "Decompressed file exceeds the maximum allowed size (10 bytes)"
        );
    }
}

/// Readers shared by the tests of both formats.
#[cfg(test)]
mod test_support {
    use std::io::{self, Read};

    /// Fails after some bytes, like a file that cannot be read to its end.
    pub(super) struct Failing(pub(super) usize);

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk error"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(b'x');
            self.0 -= n;
            Ok(n)
        }
    }
}
