//! The 4.14 package (PROTOCOL.md §4.1.4, §4.1.5): despite its `.zip` name, a concatenation
//!
//! ```text
//! <path> |//@@//| zlib(content) |@@//@@| ... |@@//@@| files_metadata.json |//@@//| zlib(json)
//! ```
//!
//! Every content is an independent zlib stream; the metadata entry is last and has no trailing
//! separator. Separators are not escaped, so the reader relies on each zlib stream's own end to find
//! where an entry stops, and then expects a separator or the end of the package.

use std::io::{self, Read, SeekFrom, Write};

use flate2::write::ZlibEncoder;
use flate2::{Compression, Decompress, FlushDecompress, Status};

use super::{
    check_file_name, find, AddOutcome, Extractor, PackageError, PackageOutput, PackageSink,
    UnpackLimits, Unpacked, METADATA_MEMBER,
};
use crate::sync::paths::PATH_BYTES_MAX;

/// Between entries.
pub const FILE_SEP: &[u8; 8] = b"|@@//@@|";
/// Between an entry's path and its zlib stream.
pub const PATH_SEP: &[u8; 8] = b"|//@@//|";
/// Window of the reader, as stock receivers use.
pub const WINDOW_BYTES: usize = 10 << 20;
/// Smallest window: it must hold a whole name and its separator.
const WINDOW_BYTES_MIN: usize = 2 * (PATH_BYTES_MAX + PATH_SEP.len());
/// Piece size for reading sources and inflating.
const CHUNK_BYTES: usize = 64 * 1024;

/// Builds a package under a size limit (§4.1.5).
///
/// Files are compressed one at a time straight into the output. A file whose own size exceeds the limit
/// is skipped; files are added while the entries (path, separators and compressed content) fit in the
/// limit, and the first one that does not fit, and every later one, is deferred. An entry that does not
/// fit or whose source fails is cut back out of the output, so memory stays at one piece whatever the
/// file sizes. The metadata entry written by [`finish`](Self::finish) is not counted against the limit.
pub struct ZlibPackageWriter<W: PackageOutput> {
    out: W,
    level: Compression,
    limit_bytes: u64,
    /// Bytes of the file entries written so far.
    entries_bytes: u64,
    full: bool,
    files: u64,
    buf: Vec<u8>,
}

/// Why an entry was not completed.
enum EntryError {
    OverBudget,
    TooLarge,
    Source(io::Error),
    Output(io::Error),
}

/// Passes bytes on while the entry stays within its budget; once over, refuses everything.
struct Budget<'a, W: Write> {
    out: &'a mut W,
    left: u64,
    used: u64,
    over: bool,
}

impl<W: Write> Write for Budget<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.over || buf.len() as u64 > self.left {
            self.over = true;
            return Err(io::Error::other("package size limit reached"));
        }
        let n = self.out.write(buf)?;
        self.left -= n as u64;
        self.used += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<W: PackageOutput> ZlibPackageWriter<W> {
    /// `compress_level` is zlib's 0–9 (`compress_level` of cluster.json, default 1); `limit_bytes` the
    /// current package limit.
    pub fn new(out: W, compress_level: u32, limit_bytes: u64) -> ZlibPackageWriter<W> {
        ZlibPackageWriter {
            out,
            level: Compression::new(compress_level.min(9)),
            limit_bytes,
            entries_bytes: 0,
            full: false,
            files: 0,
            buf: vec![0u8; CHUNK_BYTES],
        }
    }

    /// Offers one file. `size_bytes` is the file's size as the caller saw it; the bytes actually read
    /// are checked against the limit too.
    pub fn add_file(
        &mut self,
        rel: &str,
        size_bytes: u64,
        content: &mut dyn Read,
    ) -> Result<AddOutcome, PackageError> {
        if let Err(e) = check_file_name(rel) {
            return Ok(AddOutcome::BadName(e));
        }
        if self.full {
            return Ok(AddOutcome::Deferred);
        }
        if size_bytes > self.limit_bytes {
            return Ok(AddOutcome::TooLarge);
        }
        let start = self.out.stream_position().map_err(PackageError::Write)?;
        let mut budget = Budget {
            out: &mut self.out,
            left: self.limit_bytes - self.entries_bytes,
            used: 0,
            over: false,
        };
        let result = write_entry(
            &mut budget,
            rel,
            content,
            self.level,
            self.limit_bytes,
            &mut self.buf,
        );
        let used = budget.used;
        let outcome = match result {
            Ok(()) => {
                self.entries_bytes += used;
                self.files += 1;
                return Ok(AddOutcome::Added { stored_bytes: used });
            }
            Err(EntryError::OverBudget) => {
                self.full = true;
                AddOutcome::Deferred
            }
            Err(EntryError::TooLarge) => AddOutcome::TooLarge,
            Err(EntryError::Source(e)) => AddOutcome::Unreadable(e),
            Err(EntryError::Output(e)) => return Err(PackageError::Write(e)),
        };
        self.out
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.out.truncate_at(start))
            .map_err(PackageError::Write)?;
        Ok(outcome)
    }

    /// Whether the limit was reached: every later file is deferred.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Files added so far.
    pub fn files(&self) -> u64 {
        self.files
    }

    /// Bytes of the file entries, as counted against the limit.
    pub fn entries_bytes(&self) -> u64 {
        self.entries_bytes
    }

    /// Appends the metadata entry and returns the output.
    pub fn finish(mut self, metadata_json: &[u8]) -> Result<W, PackageError> {
        let mut header = Vec::with_capacity(METADATA_MEMBER.len() + PATH_SEP.len());
        header.extend_from_slice(METADATA_MEMBER.as_bytes());
        header.extend_from_slice(PATH_SEP);
        self.out.write_all(&header).map_err(PackageError::Write)?;
        let mut encoder = ZlibEncoder::new(&mut self.out, self.level);
        encoder
            .write_all(metadata_json)
            .and_then(|_| encoder.finish().map(|_| ()))
            .map_err(PackageError::Write)?;
        self.out.flush().map_err(PackageError::Write)?;
        Ok(self.out)
    }
}

/// Writes `<rel>|//@@//|zlib(content)|@@//@@|` through the budget.
fn write_entry<W: Write>(
    budget: &mut Budget<'_, W>,
    rel: &str,
    content: &mut dyn Read,
    level: Compression,
    limit_bytes: u64,
    buf: &mut [u8],
) -> Result<(), EntryError> {
    let mut head = Vec::with_capacity(rel.len() + PATH_SEP.len());
    head.extend_from_slice(rel.as_bytes());
    head.extend_from_slice(PATH_SEP);
    let mut result = budget.write_all(&head).map_err(EntryError::Output);
    if result.is_ok() {
        let mut encoder = ZlibEncoder::new(&mut *budget, level);
        result = compress(content, &mut encoder, limit_bytes, buf)
            .and_then(|()| encoder.try_finish().map_err(EntryError::Output));
    }
    result = result.and_then(|()| budget.write_all(FILE_SEP).map_err(EntryError::Output));
    match result {
        // The output refused because the entry outgrew what is left of the limit.
        Err(EntryError::Output(_)) if budget.over => Err(EntryError::OverBudget),
        other => other,
    }
}

/// Feeds `content` to the encoder, stopping as soon as more than `limit_bytes` were read.
fn compress(
    content: &mut dyn Read,
    encoder: &mut impl Write,
    limit_bytes: u64,
    buf: &mut [u8],
) -> Result<(), EntryError> {
    let mut read = 0u64;
    loop {
        let n = match content.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(EntryError::Source(e)),
        };
        read += n as u64;
        if read > limit_bytes {
            return Err(EntryError::TooLarge);
        }
        encoder.write_all(&buf[..n]).map_err(EntryError::Output)?;
    }
}

/// The part of the package held in memory.
struct Window<R: Read> {
    input: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Package offset of `buf[start]`.
    offset: u64,
    eof: bool,
}

impl<R: Read> Window<R> {
    fn avail(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    fn is_full(&self) -> bool {
        self.start == 0 && self.end == self.buf.len()
    }

    /// Reads more after what is held; false at the end of the package (or when the window is full).
    fn fill(&mut self) -> Result<bool, PackageError> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Ok(false);
        }
        loop {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(PackageError::Read(e)),
            }
        }
    }
}

/// Reads a package, giving its files to `sink`, and returns its metadata.
pub fn unpack<R: Read>(
    input: R,
    limits: &UnpackLimits,
    sink: &mut dyn PackageSink,
) -> Result<Unpacked, PackageError> {
    let mut window = Window {
        input,
        buf: vec![0u8; limits.window_bytes.max(WINDOW_BYTES_MIN)],
        start: 0,
        end: 0,
        offset: 0,
        eof: false,
    };
    let mut ex = Extractor::new(sink, limits);
    match read_entries(&mut window, &mut ex) {
        Ok(()) => ex.finish(),
        Err(e) => {
            ex.fail();
            Err(e)
        }
    }
}

fn read_entries<R: Read>(w: &mut Window<R>, ex: &mut Extractor<'_>) -> Result<(), PackageError> {
    let mut inflated = vec![0u8; CHUNK_BYTES];
    let mut first = true;
    loop {
        let entry_offset = w.offset;
        let name_len = loop {
            let avail = w.avail();
            let no_path_sep = PackageError::Malformed {
                offset: entry_offset,
                problem: "entry without path separator",
            };
            match find(avail, PATH_SEP) {
                Some(i) if find(&avail[..i], FILE_SEP).is_some() => return Err(no_path_sep),
                Some(i) => break i,
                None if find(avail, FILE_SEP).is_some() => return Err(no_path_sep),
                None if avail.len() >= PATH_BYTES_MAX + PATH_SEP.len() => {
                    return Err(PackageError::Malformed {
                        offset: entry_offset,
                        problem: "entry name too long",
                    })
                }
                None => {}
            }
            if !w.fill()? {
                return Err(if first && w.avail().is_empty() {
                    PackageError::MetadataMissing
                } else {
                    no_path_sep
                });
            }
        };
        first = false;
        let name = std::str::from_utf8(&w.avail()[..name_len])
            .map_err(|_| PackageError::NameNotUtf8 {
                offset: entry_offset,
            })?
            .to_string();
        ex.begin(&name)?;
        w.consume(name_len + PATH_SEP.len());
        inflate(w, ex, &name, &mut inflated)?;
        while w.avail().len() < FILE_SEP.len() && w.fill()? {}
        let avail = w.avail();
        if avail.is_empty() {
            return ex.end();
        }
        if !avail.starts_with(FILE_SEP) {
            return Err(PackageError::Malformed {
                offset: w.offset,
                problem: "data after the end of a member",
            });
        }
        ex.end()?;
        w.consume(FILE_SEP.len());
    }
}

/// Inflates one member's zlib stream, stopping at its end.
fn inflate<R: Read>(
    w: &mut Window<R>,
    ex: &mut Extractor<'_>,
    name: &str,
    out: &mut [u8],
) -> Result<(), PackageError> {
    let truncated = || PackageError::Truncated { name: name.into() };
    let mut z = Decompress::new(true);
    loop {
        if w.avail().is_empty() && !w.fill()? {
            return Err(truncated());
        }
        let (in_before, out_before) = (z.total_in(), z.total_out());
        let status = z
            .decompress(w.avail(), out, FlushDecompress::None)
            .map_err(|e| PackageError::Corrupt {
                name: name.into(),
                detail: e.to_string(),
            })?;
        let consumed = (z.total_in() - in_before) as usize;
        let produced = (z.total_out() - out_before) as usize;
        w.consume(consumed);
        if produced > 0 {
            ex.data(&out[..produced])?;
        }
        if status == Status::StreamEnd {
            return Ok(());
        }
        if consumed == 0 && produced == 0 {
            // The stream needs input beyond what the window holds.
            if w.is_full() {
                return Err(PackageError::Corrupt {
                    name: name.into(),
                    detail: "stream makes no progress".into(),
                });
            }
            if !w.fill()? {
                return Err(truncated());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Failing;
    use std::io::Cursor;

    use super::super::{md5, python, MemorySink};
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Compressible but not trivially so.
    fn content(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if i % 3 == 0 {
                    b'a' + (x % 26) as u8
                } else {
                    b' '
                }
            })
            .collect()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::new(1));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A package assembled by hand, as a stock sender lays it out.
    fn raw(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (name, data)) in entries.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(FILE_SEP);
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(PATH_SEP);
            out.extend_from_slice(&zlib(data));
        }
        out
    }

    fn limits() -> UnpackLimits {
        UnpackLimits::new(64 * MIB)
    }

    fn read(bytes: &[u8], limits: &UnpackLimits) -> (Result<Unpacked, PackageError>, MemorySink) {
        let mut sink = MemorySink::default();
        let result = unpack(bytes, limits, &mut sink);
        (result, sink)
    }

    #[test]
    fn round_trip_of_empty_small_and_large_files() {
        let files: Vec<(String, Vec<u8>)> = vec![
            ("etc/client.keys".into(), b"001 agent any key\n".to_vec()),
            ("etc/shared/default/empty.conf".into(), Vec::new()),
            ("etc/rules/big.xml".into(), content(3 * MIB as usize, 7)),
            ("etc/lists/x".into(), content(1000, 9)),
        ];
        let mut w = ZlibPackageWriter::new(Cursor::new(Vec::new()), 1, 64 * MIB);
        for (rel, data) in &files {
            let outcome = w
                .add_file(rel, data.len() as u64, &mut data.as_slice())
                .unwrap();
            assert!(matches!(outcome, AddOutcome::Added { .. }), "{outcome:?}");
        }
        assert_eq!(w.files(), 4);
        let package = w.finish(br#"{"missing": {}}"#).unwrap().into_inner();
        assert!(package.len() < 3 * MIB as usize);

        // Small windows make separators and streams straddle window boundaries.
        for window_bytes in [WINDOW_BYTES_MIN, WINDOW_BYTES_MIN + 3, WINDOW_BYTES] {
            let (result, sink) = read(
                &package,
                &UnpackLimits {
                    window_bytes,
                    ..limits()
                },
            );
            let unpacked = result.unwrap();
            assert_eq!(unpacked.metadata, br#"{"missing": {}}"#);
            assert_eq!(unpacked.files, 4);
            assert_eq!(sink.files.len(), 4);
            for (rel, data) in &files {
                assert_eq!(&sink.files[rel], data, "{rel}");
            }
        }
    }

    #[test]
    fn metadata_only_package_has_the_stock_layout() {
        let w = ZlibPackageWriter::new(Cursor::new(Vec::new()), 1, MIB);
        let package = w.finish(b"{}").unwrap().into_inner();
        assert_eq!(package, raw(&[(METADATA_MEMBER, b"{}")]));
        let (result, sink) = read(&package, &limits());
        assert_eq!(result.unwrap().metadata, b"{}");
        assert!(sink.files.is_empty());
    }

    #[test]
    fn reads_packages_laid_out_by_stock_senders() {
        let package = raw(&[
            ("etc/client.keys", b"keys"),
            ("etc/shared/a|b", b"pipe in name"),
            (METADATA_MEMBER, b"{\"a\": 1}"),
        ]);
        let (result, sink) = read(&package, &limits());
        assert_eq!(result.unwrap().metadata, b"{\"a\": 1}");
        assert_eq!(sink.files["etc/client.keys"], b"keys");
        assert_eq!(sink.files["etc/shared/a|b"], b"pipe in name");
    }

    #[test]
    fn stock_readers_and_writers_agree_with_ours() {
        let big = content(3 * MIB as usize, 4);
        let mut w = ZlibPackageWriter::new(Cursor::new(Vec::new()), 1, 64 * MIB);
        for (rel, data) in [
            ("etc/client.keys", &b"keys"[..]),
            ("etc/rules/big.xml", &big),
        ] {
            w.add_file(rel, data.len() as u64, &mut &data[..]).unwrap();
        }
        let package = w.finish(b"{}").unwrap().into_inner();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w1-1.zip");
        std::fs::write(&path, &package).unwrap();
        // The stock receiver's way: split on the separators, inflate each part.
        let script = "import sys, zlib, hashlib\n\
            data = open(sys.argv[1], 'rb').read()\n\
            for part in data.split(b'|@@//@@|'):\n\
            \x20   name, content = part.split(b'|//@@//|', 1)\n\
            \x20   out = zlib.decompress(content)\n\
            \x20   print(name.decode(), len(out), hashlib.md5(out).hexdigest())\n";
        let Some(out) = python(script, &path) else {
            return;
        };
        let expected = format!(
            "etc/client.keys 4 {}\netc/rules/big.xml {} {}\nfiles_metadata.json 2 {}\n",
            md5(b"keys"),
            big.len(),
            md5(&big),
            md5(b"{}")
        );
        assert_eq!(out, expected);

        // The stock sender's way: each file read whole and compressed at the configured level.
        let script = "import sys, zlib, json\n\
            with open(sys.argv[1], 'wb') as wf:\n\
            \x20   for name, data in [('etc/client.keys', b'keys'), ('etc/shared/a', b'x' * 100000)]:\n\
            \x20       wf.write(name.encode() + b'|//@@//|' + zlib.compress(data, level=1) + b'|@@//@@|')\n\
            \x20   wf.write(b'files_metadata.json|//@@//|' + zlib.compress(json.dumps({'a': 1}).encode(), level=1))\n";
        python(script, &path);
        let package = std::fs::read(&path).unwrap();
        let (result, sink) = read(&package, &limits());
        assert_eq!(result.unwrap().metadata, b"{\"a\": 1}");
        assert_eq!(sink.files["etc/client.keys"], b"keys");
        assert_eq!(sink.files["etc/shared/a"], vec![b'x'; 100_000]);
    }

    #[test]
    fn writer_skips_files_larger_than_the_limit() {
        let limit = 4096;
        let mut w = ZlibPackageWriter::new(Cursor::new(Vec::new()), 1, limit);
        let big = content(5000, 1);
        assert!(matches!(
            w.add_file("etc/big", 5000, &mut big.as_slice()).unwrap(),
            AddOutcome::TooLarge
        ));
        // The size announced was wrong: the bytes read decide.
        assert!(matches!(
            w.add_file("etc/grew", 10, &mut big.as_slice()).unwrap(),
            AddOutcome::TooLarge
        ));
        assert!(matches!(
            w.add_file("etc/small", 3, &mut &b"abc"[..]).unwrap(),
            AddOutcome::Added { .. }
        ));
        assert!(!w.is_full());
        let package = w.finish(b"{}").unwrap().into_inner();
        assert_eq!(
            package,
            [
                &raw(&[("etc/small", b"abc")])[..],
                FILE_SEP,
                &raw(&[(METADATA_MEMBER, b"{}")])[..]
            ]
            .concat()
        );
    }

    /// Bytes that do not compress.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn writer_stops_at_the_limit_and_defers_the_rest() {
        let limit = 3000;
        let a = vec![0u8; 3000];
        let b = noise(3000, 2);
        let entry_a = raw(&[("etc/a", &a)]).len() as u64 + FILE_SEP.len() as u64;
        assert!(entry_a < 100);
        let mut w = ZlibPackageWriter::new(Cursor::new(Vec::new()), 1, limit);
        match w.add_file("etc/a", 3000, &mut a.as_slice()).unwrap() {
            AddOutcome::Added { stored_bytes } => assert_eq!(stored_bytes, entry_a),
            other => panic!("{other:?}"),
        }
        // Not too large by itself, but its compressed entry does not fit in what is left.
        assert!(matches!(
            w.add_file("etc/b", 3000, &mut b.as_slice()).unwrap(),
            AddOutcome::Deferred
        ));
        assert!(w.is_full());
        // Even a file that would fit waits: files keep their order for the next round.
        assert!(matches!(
            w.add_file("etc/c", 1, &mut &b"c"[..]).unwrap(),
            AddOutcome::Deferred
        ));
        assert_eq!(w.entries_bytes(), entry_a);
        let package = w.finish(b"{}").unwrap().into_inner();
        assert_eq!(
            package,
            [
                &raw(&[("etc/a", &a)])[..],
                FILE_SEP,
                &raw(&[(METADATA_MEMBER, b"{}")])
            ]
            .concat()
        );

        // Exactly at the limit is allowed; one byte less is not.
        let entry_c = raw(&[("etc/c", b"abc")]).len() as u64 + FILE_SEP.len() as u64;
        let mut w = ZlibPackageWriter::new(Cursor::new(Vec::new()), 1, entry_c);
        assert!(matches!(
            w.add_file("etc/c", 3, &mut &b"abc"[..]).unwrap(),
            AddOutcome::Added { .. }
        ));
        let mut w = ZlibPackageWriter::new(Cursor::new(Vec::new()), 1, entry_c - 1);
        assert!(matches!(
            w.add_file("etc/c", 3, &mut &b"abc"[..]).unwrap(),
            AddOutcome::Deferred
        ));
    }

    #[test]
    fn unreadable_files_and_bad_names_leave_no_trace() {
        let mut w = ZlibPackageWriter::new(Cursor::new(Vec::new()), 1, MIB);
        assert!(matches!(
            w.add_file("etc/a", 1, &mut &b"a"[..]).unwrap(),
            AddOutcome::Added { .. }
        ));
        assert!(matches!(
            w.add_file("etc/bad", 200_000, &mut Failing(150_000))
                .unwrap(),
            AddOutcome::Unreadable(_)
        ));
        assert!(matches!(
            w.add_file("../etc/passwd", 1, &mut &b"a"[..]).unwrap(),
            AddOutcome::BadName(_)
        ));
        assert!(matches!(
            w.add_file("etc/x|@@//@@|y", 1, &mut &b"a"[..]).unwrap(),
            AddOutcome::BadName(_)
        ));
        assert!(matches!(
            w.add_file("etc/b", 1, &mut &b"b"[..]).unwrap(),
            AddOutcome::Added { .. }
        ));
        let package = w.finish(b"{}").unwrap().into_inner();
        assert_eq!(
            package,
            raw(&[("etc/a", b"a"), ("etc/b", b"b"), (METADATA_MEMBER, b"{}")])
        );
    }

    fn refused(bytes: &[u8], limits: &UnpackLimits) -> (PackageError, MemorySink) {
        let (result, sink) = read(bytes, limits);
        match result {
            Err(e) => (e, sink),
            Ok(u) => panic!("accepted: {u:?}"),
        }
    }

    #[test]
    fn hostile_names_are_refused() {
        for name in [
            "../../etc/passwd",
            "/etc/passwd",
            "etc/../../x",
            "etc\\x",
            "",
        ] {
            let package = raw(&[(name, b"x"), (METADATA_MEMBER, b"{}")]);
            let (err, sink) = refused(&package, &limits());
            assert!(matches!(err, PackageError::Name { .. }), "{name}: {err}");
            assert!(sink.files.is_empty());
        }
        let mut package = b"etc/\xff\xfe".to_vec();
        package.extend_from_slice(PATH_SEP);
        package.extend_from_slice(&zlib(b"x"));
        let (err, _) = refused(&package, &limits());
        assert!(matches!(err, PackageError::NameNotUtf8 { offset: 0 }));
        let long = "a".repeat(PATH_BYTES_MAX + 10);
        let (err, _) = refused(&raw(&[(&long, b"x")]), &limits());
        assert!(matches!(
            err,
            PackageError::Name {
                source: super::super::NameError::Path(crate::sync::PathError::TooLong { .. }),
                ..
            }
        ));
        // No separator in sight: the reader gives up after a name's worth of bytes.
        let (err, _) = refused("a".repeat(100_000).as_bytes(), &limits());
        assert!(matches!(
            err,
            PackageError::Malformed {
                offset: 0,
                problem: "entry name too long",
            }
        ));
    }

    #[test]
    fn decompression_bombs_stop_at_the_limits() {
        let mut bomb = ZlibEncoder::new(Vec::new(), Compression::best());
        bomb.write_all(&vec![0u8; 8 * MIB as usize]).unwrap();
        let bomb = bomb.finish().unwrap();
        assert!(bomb.len() < 16 * 1024, "{}", bomb.len());
        let mut package = b"etc/shared/bomb".to_vec();
        package.extend_from_slice(PATH_SEP);
        package.extend_from_slice(&bomb);
        package.extend_from_slice(FILE_SEP);
        package.extend_from_slice(&raw(&[(METADATA_MEMBER, b"{}")]));
        let (err, sink) = refused(&package, &UnpackLimits::new(MIB));
        assert!(
            matches!(err, PackageError::SizeExceeded { limit_bytes } if limit_bytes == MIB),
            "{err}"
        );
        assert_eq!(sink.aborted, ["etc/shared/bomb"]);
        assert!(sink.files.is_empty());

        // Many members each under the limit still add up.
        let half = vec![0u8; 600 * 1024];
        let package = raw(&[("a", &half), ("b", &half), (METADATA_MEMBER, b"{}")]);
        let (err, sink) = refused(&package, &UnpackLimits::new(MIB));
        assert!(matches!(err, PackageError::SizeExceeded { .. }), "{err}");
        assert_eq!(sink.files.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(sink.aborted, ["b"]);

        let (err, _) = refused(
            &package,
            &UnpackLimits {
                member_bytes_max: 1000,
                ..limits()
            },
        );
        assert!(matches!(
            err,
            PackageError::MemberTooLarge {
                limit_bytes: 1000,
                ..
            }
        ));
        let (err, _) = refused(
            &raw(&[(METADATA_MEMBER, &half)]),
            &UnpackLimits {
                metadata_bytes_max: 1000,
                ..limits()
            },
        );
        assert!(matches!(err, PackageError::MetadataTooLarge { .. }));
        let (err, _) = refused(
            &package,
            &UnpackLimits {
                members_max: 1,
                ..limits()
            },
        );
        assert!(matches!(err, PackageError::TooManyMembers { limit: 1 }));
    }

    #[test]
    fn truncated_corrupt_and_malformed_streams_are_refused() {
        let data = content(200_000, 3);
        let package = raw(&[("etc/a", &data), (METADATA_MEMBER, b"{}")]);
        let cut = raw(&[("etc/a", &data)]);

        // Cut inside the first member's stream.
        let (err, sink) = refused(&cut[..cut.len() / 2], &limits());
        assert!(matches!(err, PackageError::Truncated { ref name } if name == "etc/a"));
        assert_eq!(sink.aborted, ["etc/a"]);
        // Cut inside the metadata's stream.
        let (err, sink) = refused(&package[..package.len() - 3], &limits());
        assert!(matches!(err, PackageError::Truncated { ref name } if name == METADATA_MEMBER));
        assert!(sink.aborted.is_empty());

        // A flipped byte in the middle of the deflate data, or in the Adler-32 trailer.
        let mut bad = package.clone();
        let mid = "etc/a".len() + PATH_SEP.len() + 1000;
        bad[mid] ^= 0x55;
        let (err, sink) = refused(&bad, &limits());
        assert!(
            matches!(
                err,
                PackageError::Corrupt { .. } | PackageError::Malformed { .. }
            ),
            "{err}"
        );
        assert_eq!(sink.aborted, ["etc/a"]);
        let mut bad = package.clone();
        let trailer = cut.len() - 1;
        bad[trailer] ^= 0x01;
        let (err, _) = refused(&bad, &limits());
        assert!(matches!(err, PackageError::Corrupt { .. }), "{err}");

        // Not zlib at all.
        let mut garbage = b"etc/a".to_vec();
        garbage.extend_from_slice(PATH_SEP);
        garbage.extend_from_slice(b"this is not a zlib stream");
        let (err, _) = refused(&garbage, &limits());
        assert!(matches!(err, PackageError::Corrupt { .. }), "{err}");

        // Missing separators, trailing separators, bytes after a stream, no metadata.
        let (err, _) = refused(b"just some garbage without separators", &limits());
        assert!(matches!(
            err,
            PackageError::Malformed {
                offset: 0,
                problem: "entry without path separator"
            }
        ));
        let mut no_path_sep = raw(&[("etc/a", b"x")]);
        no_path_sep.extend_from_slice(FILE_SEP);
        no_path_sep.extend_from_slice(b"files_metadata.json");
        no_path_sep.extend_from_slice(FILE_SEP);
        let (err, _) = refused(&no_path_sep, &limits());
        assert!(matches!(err, PackageError::Malformed { .. }), "{err}");
        let mut trailing = package.clone();
        trailing.extend_from_slice(FILE_SEP);
        let (err, _) = refused(&trailing, &limits());
        assert!(matches!(err, PackageError::Malformed { .. }), "{err}");
        let mut joined = raw(&[("etc/a", b"x")]);
        joined.extend_from_slice(b"junk");
        joined.extend_from_slice(FILE_SEP);
        joined.extend_from_slice(&raw(&[(METADATA_MEMBER, b"{}")]));
        let (err, sink) = refused(&joined, &limits());
        assert!(matches!(
            err,
            PackageError::Malformed {
                problem: "data after the end of a member",
                ..
            }
        ));
        assert_eq!(sink.aborted, ["etc/a"]);
        let (err, _) = refused(&raw(&[("etc/a", b"x")]), &limits());
        assert!(matches!(err, PackageError::MetadataMissing));
        let (err, _) = refused(b"", &limits());
        assert!(matches!(err, PackageError::MetadataMissing));
        let (err, _) = refused(
            &raw(&[(METADATA_MEMBER, b"{}"), (METADATA_MEMBER, b"{}")]),
            &limits(),
        );
        assert!(matches!(err, PackageError::Duplicate { .. }));
    }

    /// A sink that fails on its second file.
    struct Picky(MemorySink, u32);

    impl PackageSink for Picky {
        fn begin(&mut self, rel: &str) -> io::Result<()> {
            self.1 += 1;
            self.0.begin(rel)
        }
        fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
            if self.1 == 2 {
                return Err(io::Error::other("disk full"));
            }
            self.0.data(bytes)
        }
        fn end(&mut self) -> io::Result<()> {
            self.0.end()
        }
        fn abort(&mut self) {
            self.0.abort()
        }
    }

    #[test]
    fn sink_errors_stop_the_package_and_abort_the_member() {
        let package = raw(&[("a", b"1"), ("b", b"2"), (METADATA_MEMBER, b"{}")]);
        let mut sink = Picky(MemorySink::default(), 0);
        let err = unpack(&package[..], &limits(), &mut sink).unwrap_err();
        assert!(matches!(err, PackageError::Sink { ref name, .. } if name == "b"));
        assert_eq!(sink.0.aborted, ["b"]);
        assert_eq!(sink.0.files.keys().collect::<Vec<_>>(), ["a"]);
    }
}
