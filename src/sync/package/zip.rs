//! The 4.3 package (PROTOCOL.md §10.2): a real ZIP archive, every member stored without compression
//! and named by its path relative to the install root, plus `files_metadata.json`.
//!
//! Stock 4.3 nodes build it with Python's `zipfile` and extract it with `extractall`, so the writer
//! produces what `zipfile` reads (no data descriptors, ZIP64 only for files of 4 GiB or more) and the
//! reader accepts what `zipfile` writes. The reader works from the central directory, so it needs
//! `Seek`; it checks every entry against its local header and refuses anything but stored regular
//! files with plain relative names.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ::zip::result::ZipError;
use ::zip::write::SimpleFileOptions;
use ::zip::{CompressionMethod, ZipArchive, ZipReadOptions, ZipWriter};

use super::{
    check_file_name, AddOutcome, Extractor, PackageError, PackageOutput, PackageSink, UnpackLimits,
    Unpacked, METADATA_MEMBER,
};
use crate::sync::paths::safe_relative;

/// Piece size for copying contents.
const CHUNK_BYTES: usize = 64 * 1024;
/// End of central directory record: signature and fixed size.
const EOCD_SIG: &[u8; 4] = b"PK\x05\x06";
const EOCD_BYTES: usize = 22;
const EOCD_COMMENT_MAX: usize = 0xFFFF;
const ZIP64_LOCATOR_SIG: &[u8; 4] = b"PK\x06\x07";
const ZIP64_LOCATOR_BYTES: usize = 20;
const ZIP64_EOCD_SIG: &[u8; 4] = b"PK\x06\x06";
/// Unix file type bits of an entry's mode.
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// Builds a 4.3 package. There is no size limit in this dialect.
pub struct ZipPackageWriter<W: PackageOutput> {
    zip: ZipWriter<Cuttable<W>>,
    /// Set after an entry was taken back: the output is cut at its current position.
    cut: Arc<AtomicBool>,
    files: u64,
    buf: Vec<u8>,
}

/// The output as the ZIP writer sees it. When an entry is taken back the ZIP writer only rewinds to
/// the entry's header; the bytes already written past it are cut off here, before the next operation,
/// so they do not stay in the archive.
struct Cuttable<W: PackageOutput> {
    out: W,
    cut: Arc<AtomicBool>,
}

impl<W: PackageOutput> Cuttable<W> {
    fn apply_cut(&mut self) -> io::Result<()> {
        if self.cut.swap(false, Ordering::Relaxed) {
            let at = self.out.stream_position()?;
            self.out.truncate_at(at)?;
        }
        Ok(())
    }
}

impl<W: PackageOutput> Write for Cuttable<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.apply_cut()?;
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<W: PackageOutput> Seek for Cuttable<W> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.apply_cut()?;
        self.out.seek(pos)
    }
}

impl<W: PackageOutput> ZipPackageWriter<W> {
    pub fn new(out: W) -> ZipPackageWriter<W> {
        let cut = Arc::new(AtomicBool::new(false));
        ZipPackageWriter {
            zip: ZipWriter::new(Cuttable {
                out,
                cut: cut.clone(),
            }),
            cut,
            files: 0,
            buf: vec![0u8; CHUNK_BYTES],
        }
    }

    /// Adds one file. `size_bytes` is the file's size as the caller saw it; it decides whether the entry
    /// needs ZIP64 fields.
    pub fn add_file(
        &mut self,
        rel: &str,
        size_bytes: u64,
        content: &mut dyn Read,
    ) -> Result<AddOutcome, PackageError> {
        if let Err(e) = check_file_name(rel) {
            return Ok(AddOutcome::BadName(e));
        }
        self.zip
            .start_file(rel, options(size_bytes))
            .map_err(write_error)?;
        match copy(content, &mut self.zip, &mut self.buf) {
            Ok(stored_bytes) => {
                self.files += 1;
                Ok(AddOutcome::Added { stored_bytes })
            }
            Err(CopyError::Source(e)) => {
                self.zip.abort_file().map_err(write_error)?;
                self.cut.store(true, Ordering::Relaxed);
                Ok(AddOutcome::Unreadable(e))
            }
            Err(CopyError::Consumer(e)) => Err(PackageError::Write(e)),
        }
    }

    /// Files added so far.
    pub fn files(&self) -> u64 {
        self.files
    }

    /// Adds the metadata member, writes the central directory and returns the output.
    pub fn finish(mut self, metadata_json: &[u8]) -> Result<W, PackageError> {
        self.zip
            .start_file(METADATA_MEMBER, options(metadata_json.len() as u64))
            .map_err(write_error)?;
        self.zip
            .write_all(metadata_json)
            .map_err(PackageError::Write)?;
        let mut out = self.zip.finish().map_err(write_error)?;
        out.apply_cut().map_err(PackageError::Write)?;
        out.flush().map_err(PackageError::Write)?;
        Ok(out.out)
    }
}

fn options(size_bytes: u64) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .large_file(size_bytes >= u64::from(u32::MAX))
}

fn write_error(e: ZipError) -> PackageError {
    match e {
        ZipError::Io(e) => PackageError::Write(e),
        other => PackageError::Write(io::Error::other(other)),
    }
}

fn archive_error(e: ZipError) -> PackageError {
    match e {
        ZipError::Io(e) => PackageError::Read(e),
        other => PackageError::Archive(other.to_string()),
    }
}

/// Which side of a copy failed.
enum CopyError {
    Source(io::Error),
    Consumer(io::Error),
}

fn copy(from: &mut dyn Read, to: &mut dyn Write, buf: &mut [u8]) -> Result<u64, CopyError> {
    let mut total = 0u64;
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Source(e)),
        };
        to.write_all(&buf[..n]).map_err(CopyError::Consumer)?;
        total += n as u64;
    }
}

/// Number of entries the end of central directory announces, read before the directory itself is
/// parsed so that a hostile count cannot make the parser allocate. `None` when no record is found (the
/// archive parser then reports the archive as invalid).
fn announced_entries<R: Read + Seek>(r: &mut R) -> io::Result<Option<u64>> {
    let len = r.seek(SeekFrom::End(0))?;
    let tail_len = len.min((EOCD_BYTES + EOCD_COMMENT_MAX) as u64);
    let tail_start = len - tail_len;
    r.seek(SeekFrom::Start(tail_start))?;
    let mut tail = vec![0u8; tail_len as usize];
    r.read_exact(&mut tail)?;
    let Some(eocd) = (0..=tail.len().saturating_sub(EOCD_BYTES))
        .rev()
        .find(|&i| tail.get(i..i + 4) == Some(EOCD_SIG))
    else {
        return Ok(None);
    };
    let u16_at = |b: &[u8], at: usize| b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u64_at = |b: &[u8], at: usize| {
        b.get(at..at + 8)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map(u64::from_le_bytes)
    };
    let Some(entries) = u16_at(&tail, eocd + 10) else {
        return Ok(None);
    };
    if entries != 0xFFFF {
        return Ok(Some(u64::from(entries)));
    }
    // ZIP64: the locator just before the record points at the ZIP64 end of central directory.
    let Some(locator) = eocd.checked_sub(ZIP64_LOCATOR_BYTES) else {
        return Ok(Some(u64::from(entries)));
    };
    if tail.get(locator..locator + 4) != Some(ZIP64_LOCATOR_SIG) {
        return Ok(Some(u64::from(entries)));
    }
    let Some(record_at) = u64_at(&tail, locator + 8) else {
        return Ok(None);
    };
    if record_at.checked_add(56).is_none_or(|end| end > len) {
        return Ok(None);
    }
    r.seek(SeekFrom::Start(record_at))?;
    let mut record = [0u8; 56];
    r.read_exact(&mut record)?;
    if &record[..4] != ZIP64_EOCD_SIG {
        return Ok(None);
    }
    Ok(u64_at(&record, 32))
}

/// Reads a package, giving its files to `sink`, and returns its metadata.
///
/// Declared sizes are checked against the limits before anything is extracted; contents are then
/// verified against their sizes and CRC-32 while they stream.
pub fn unpack<R: Read + Seek>(
    mut input: R,
    limits: &UnpackLimits,
    sink: &mut dyn PackageSink,
) -> Result<Unpacked, PackageError> {
    let too_many = || PackageError::TooManyMembers {
        limit: limits.members_max,
    };
    if announced_entries(&mut input)
        .map_err(PackageError::Read)?
        .is_some_and(|n| n > limits.members_max)
    {
        return Err(too_many());
    }
    input.seek(SeekFrom::Start(0)).map_err(PackageError::Read)?;
    let mut archive = ZipArchive::new(input).map_err(archive_error)?;
    if archive.len() as u64 > limits.members_max {
        return Err(too_many());
    }
    if archive.has_duplicate_names() {
        return Err(PackageError::Archive("duplicate member names".into()));
    }
    check_declared_sizes(&archive, limits)?;
    let mut ex = Extractor::new(sink, limits);
    let mut buf = vec![0u8; CHUNK_BYTES];
    for index in 0..archive.len() {
        if let Err(e) = extract_member(&mut archive, index, &mut ex, &mut buf) {
            ex.fail();
            return Err(e);
        }
    }
    ex.finish()
}

fn check_declared_sizes<R: Read + Seek>(
    archive: &ZipArchive<R>,
    limits: &UnpackLimits,
) -> Result<(), PackageError> {
    let mut total = 0u64;
    for index in 0..archive.len() {
        let entry = archive.by_index_data(index).map_err(archive_error)?;
        let name = || String::from_utf8_lossy(entry.name_raw()).into_owned();
        let size = entry.size();
        if entry.compressed_size() != size {
            return Err(PackageError::SizeMismatch {
                name: name(),
                detail: format!(
                    "{} bytes stored for {} bytes of content",
                    entry.compressed_size(),
                    size
                ),
            });
        }
        total = total.saturating_add(size);
        if total > limits.total_bytes_max {
            return Err(PackageError::SizeExceeded {
                limit_bytes: limits.total_bytes_max,
            });
        }
        let is_metadata = entry.name_raw() == METADATA_MEMBER.as_bytes();
        if !is_metadata && size > limits.member_bytes_max {
            return Err(PackageError::MemberTooLarge {
                name: name(),
                limit_bytes: limits.member_bytes_max,
            });
        }
        if is_metadata && size > limits.metadata_bytes_max {
            return Err(PackageError::MetadataTooLarge {
                limit_bytes: limits.metadata_bytes_max,
            });
        }
    }
    Ok(())
}

fn extract_member<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    index: usize,
    ex: &mut Extractor<'_>,
    buf: &mut [u8],
) -> Result<(), PackageError> {
    let options = ZipReadOptions::new().enforce_header_consistency(true);
    let mut file = archive
        .by_index_with_options(index, options)
        .map_err(archive_error)?;
    let name = file.name().map_err(archive_error)?.into_owned();
    let unsupported = |detail: &str| PackageError::Unsupported {
        name: name.clone(),
        detail: detail.into(),
    };
    if file.encrypted() {
        return Err(unsupported("encrypted"));
    }
    let kind = file.unix_mode().map(|mode| mode & S_IFMT).unwrap_or(0);
    if kind == S_IFLNK || file.is_symlink() {
        return Err(PackageError::Symlink { name });
    }
    if file.is_dir() {
        // Directories come implied by the files' paths; an explicit one is only checked.
        let dir = name.strip_suffix('/').unwrap_or(&name);
        return safe_relative(dir)
            .map(|_| ())
            .map_err(|e| PackageError::Name {
                name: name.clone(),
                source: e.into(),
            });
    }
    if kind != 0 && kind != S_IFREG {
        return Err(PackageError::NotAFile { name });
    }
    if file.compression() != CompressionMethod::Stored {
        return Err(unsupported("compressed member"));
    }
    let size = file.size();
    ex.begin(&name)?;
    let mut got = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(PackageError::Truncated { name })
            }
            Err(e) => {
                return Err(PackageError::Corrupt {
                    name,
                    detail: e.to_string(),
                })
            }
        };
        got += n as u64;
        if got > size {
            break;
        }
        ex.data(&buf[..n])?;
    }
    if got != size {
        return Err(PackageError::SizeMismatch {
            name,
            detail: format!("{got} bytes read, {size} declared"),
        });
    }
    ex.end()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Failing;
    use std::io::Cursor;

    use super::super::{md5, python, MemorySink};
    use super::*;

    const MIB: u64 = 1 << 20;

    fn content(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn limits() -> UnpackLimits {
        UnpackLimits::new(64 * MIB)
    }

    fn build(files: &[(&str, &[u8])], metadata: &[u8]) -> Vec<u8> {
        let mut w = ZipPackageWriter::new(Cursor::new(Vec::new()));
        for (rel, data) in files {
            let outcome = w.add_file(rel, data.len() as u64, &mut &data[..]).unwrap();
            assert!(matches!(outcome, AddOutcome::Added { .. }), "{outcome:?}");
        }
        w.finish(metadata).unwrap().into_inner()
    }

    fn read(bytes: &[u8], limits: &UnpackLimits) -> (Result<Unpacked, PackageError>, MemorySink) {
        let mut sink = MemorySink::default();
        let result = unpack(Cursor::new(bytes), limits, &mut sink);
        (result, sink)
    }

    fn refused(bytes: &[u8], limits: &UnpackLimits) -> PackageError {
        match read(bytes, limits).0 {
            Err(e) => e,
            Ok(u) => panic!("accepted: {u:?}"),
        }
    }

    #[test]
    fn round_trip_of_empty_small_and_large_files() {
        let big = content(3 * MIB as usize, 5);
        let files: [(&str, &[u8]); 4] = [
            ("etc/client.keys", b"001 agent any key\n"),
            ("etc/shared/default/empty.conf", b""),
            ("etc/rules/big.xml", &big),
            ("queue/agent-groups/001", b"default"),
        ];
        let package = build(&files, b"{\"missing\": {}}");
        let (result, sink) = read(&package, &limits());
        let unpacked = result.unwrap();
        assert_eq!(unpacked.metadata, b"{\"missing\": {}}");
        assert_eq!(unpacked.files, 4);
        for (rel, data) in files {
            assert_eq!(sink.files[rel], data, "{rel}");
        }
    }

    #[test]
    fn python_zipfile_reads_our_archives() {
        let big = content(3 * MIB as usize, 1);
        let package = build(
            &[
                ("etc/client.keys", b"keys"),
                ("etc/shared/default/empty.conf", b""),
                ("etc/rules/big.xml", &big),
            ],
            b"{}",
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w1-1.zip");
        std::fs::write(&path, &package).unwrap();
        let script = "import sys, zipfile, tempfile, os, hashlib\n\
            z = zipfile.ZipFile(sys.argv[1])\n\
            assert z.testzip() is None\n\
            d = tempfile.mkdtemp()\n\
            z.extractall(d)\n\
            for i in z.infolist():\n\
            \x20   assert i.compress_type == zipfile.ZIP_STORED\n\
            \x20   data = open(os.path.join(d, i.filename), 'rb').read()\n\
            \x20   print(i.filename, len(data), hashlib.md5(data).hexdigest())\n";
        let Some(out) = python(script, &path) else {
            return;
        };
        let expected = format!(
            "etc/client.keys 4 {}\netc/shared/default/empty.conf 0 {}\netc/rules/big.xml {} {}\n\
             files_metadata.json 2 {}\n",
            md5(b"keys"),
            md5(b""),
            big.len(),
            md5(&big),
            md5(b"{}")
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn we_read_archives_written_by_python_zipfile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m-1.zip");
        let rules = content(100_000, 9);
        std::fs::write(dir.path().join("local_rules.xml"), &rules).unwrap();
        // As a stock master does: `write` for files of the install root, `writestr` for the metadata.
        let script = "import sys, os, zipfile\n\
            src = os.path.join(os.path.dirname(sys.argv[1]), 'local_rules.xml')\n\
            with zipfile.ZipFile(sys.argv[1], 'x') as zf:\n\
            \x20   zf.write(filename=src, arcname='etc/rules/local_rules.xml')\n\
            \x20   zf.writestr('etc/client.keys', b'keys')\n\
            \x20   zf.writestr('files_metadata.json', '{\"shared\": {}}')\n";
        if python(script, &path).is_none() {
            return;
        }
        let package = std::fs::read(&path).unwrap();
        let (result, sink) = read(&package, &limits());
        assert_eq!(result.unwrap().metadata, b"{\"shared\": {}}");
        assert_eq!(sink.files["etc/client.keys"], b"keys");
        assert_eq!(sink.files["etc/rules/local_rules.xml"], rules);
    }

    #[test]
    fn unreadable_files_and_bad_names_are_left_out() {
        let mut w = ZipPackageWriter::new(Cursor::new(Vec::new()));
        assert!(matches!(
            w.add_file("etc/a", 1, &mut &b"a"[..]).unwrap(),
            AddOutcome::Added { stored_bytes: 1 }
        ));
        assert!(matches!(
            w.add_file("etc/bad", 300_000, &mut Failing(200_000))
                .unwrap(),
            AddOutcome::Unreadable(_)
        ));
        assert!(matches!(
            w.add_file("/etc/passwd", 1, &mut &b"a"[..]).unwrap(),
            AddOutcome::BadName(_)
        ));
        assert!(matches!(
            w.add_file("etc/b", 1, &mut &b"b"[..]).unwrap(),
            AddOutcome::Added { .. }
        ));
        assert_eq!(w.files(), 2);
        let package = w.finish(b"{}").unwrap().into_inner();
        assert!(package.len() < 100_000, "{}", package.len());
        let (result, sink) = read(&package, &limits());
        result.unwrap();
        assert_eq!(sink.files.keys().collect::<Vec<_>>(), ["etc/a", "etc/b"]);

        // Taken back as the very last file: the directory must still end the archive.
        let mut w = ZipPackageWriter::new(Cursor::new(Vec::new()));
        w.add_file("etc/a", 1, &mut &b"a"[..]).unwrap();
        w.add_file("etc/bad", 300_000, &mut Failing(200_000))
            .unwrap();
        let package = w.finish(b"{}").unwrap().into_inner();
        assert!(package.len() < 1000, "{}", package.len());
        let (result, sink) = read(&package, &limits());
        result.unwrap();
        assert_eq!(sink.files.keys().collect::<Vec<_>>(), ["etc/a"]);
    }

    /// Rewrites every occurrence of a name (local header and central directory) to another of the same
    /// length: the way a hostile archive is made without a ZIP library that refuses such names.
    fn rename(package: &[u8], from: &str, to: &str) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let mut out = package.to_vec();
        let mut i = 0;
        while let Some(at) = super::super::find(&out[i..], from.as_bytes()) {
            out[i + at..i + at + to.len()].copy_from_slice(to.as_bytes());
            i += at + to.len();
        }
        out
    }

    #[test]
    fn hostile_names_are_refused() {
        let package = build(&[("etc/aaaaaaaaaaaaa", b"x")], b"{}");
        for bad in [
            "../../etc/passwdx",
            "/etc/passwd/xxxxx",
            "etc/../../../xxxx",
            "etc\\aaaaaaaaaaaaa",
        ] {
            assert_eq!(bad.len(), 17, "{bad}");
            let hostile = rename(&package, "etc/aaaaaaaaaaaaa", bad);
            let (result, sink) = read(&hostile, &limits());
            assert!(
                matches!(result, Err(PackageError::Name { .. })),
                "{bad}: {result:?}"
            );
            assert!(sink.files.is_empty() && sink.aborted.is_empty());
        }
        // An explicit directory entry is checked and skipped.
        let dir = rename(&package, "etc/aaaaaaaaaaaaa", "etc/aaaaaaaaaaaa/");
        let (result, sink) = read(&dir, &limits());
        assert_eq!(result.unwrap().files, 0);
        assert!(sink.files.is_empty());
    }

    #[test]
    fn symlinks_and_special_files_are_refused() {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        w.add_symlink(
            "etc/shared/link",
            "/etc/passwd",
            SimpleFileOptions::default(),
        )
        .unwrap();
        w.start_file(METADATA_MEMBER, options(2)).unwrap();
        w.write_all(b"{}").unwrap();
        let package = w.finish().unwrap().into_inner();
        assert!(matches!(
            refused(&package, &limits()),
            PackageError::Symlink { .. }
        ));

        // A FIFO: the file type bits of the entry's Unix mode, in the central directory.
        let mut fifo = build(&[("etc/fifo", b"")], b"{}");
        let central = super::super::find(&fifo, b"PK\x01\x02").unwrap();
        fifo[central + 5] = 3; // made by Unix
        fifo[central + 38..central + 42].copy_from_slice(&(0o010644u32 << 16).to_le_bytes());
        assert!(matches!(
            refused(&fifo, &limits()),
            PackageError::NotAFile { .. }
        ));
    }

    #[test]
    fn oversized_packages_are_refused_before_extraction() {
        let zeros = vec![0u8; 2 * MIB as usize];
        let package = build(&[("etc/a", &zeros), ("etc/b", &zeros)], b"{}");
        let (result, sink) = read(&package, &UnpackLimits::new(3 * MIB));
        assert!(matches!(
            result,
            Err(PackageError::SizeExceeded { limit_bytes }) if limit_bytes == 3 * MIB
        ));
        assert!(sink.files.is_empty());
        let err = refused(
            &package,
            &UnpackLimits {
                member_bytes_max: MIB,
                ..limits()
            },
        );
        assert!(matches!(err, PackageError::MemberTooLarge { .. }));
        let err = refused(
            &package,
            &UnpackLimits {
                members_max: 2,
                ..limits()
            },
        );
        assert!(matches!(err, PackageError::TooManyMembers { limit: 2 }));
        let big_meta = build(&[], &zeros);
        let err = refused(
            &big_meta,
            &UnpackLimits {
                metadata_bytes_max: MIB,
                ..limits()
            },
        );
        assert!(matches!(err, PackageError::MetadataTooLarge { .. }));
    }

    /// Offsets of a field in the local header and the central directory entry of the first member.
    fn patch_sizes(package: &mut [u8], size: u32) {
        let local = 0;
        let central = super::super::find(package, b"PK\x01\x02").unwrap();
        for at in [local + 18, local + 22, central + 20, central + 24] {
            package[at..at + 4].copy_from_slice(&size.to_le_bytes());
        }
    }

    #[test]
    fn sizes_that_lie_and_corrupt_contents_are_refused() {
        let data = content(10_000, 3);
        let package = build(&[("etc/a", &data)], b"{}");

        // Claims more than it holds: reads into the next header, CRC and sizes disagree.
        let mut lying = package.clone();
        patch_sizes(&mut lying, 10_100);
        let (result, sink) = read(&lying, &limits());
        assert!(
            matches!(
                result,
                Err(PackageError::Corrupt { .. } | PackageError::Archive(_))
            ),
            "{result:?}"
        );
        assert!(sink.files.is_empty());
        // Claims less.
        let mut lying = package.clone();
        patch_sizes(&mut lying, 9_000);
        let err = refused(&lying, &limits());
        assert!(
            matches!(err, PackageError::Corrupt { .. } | PackageError::Archive(_)),
            "{err}"
        );
        // Local header and directory disagree.
        let mut lying = package.clone();
        lying[18..22].copy_from_slice(&5u32.to_le_bytes());
        let err = refused(&lying, &limits());
        assert!(matches!(err, PackageError::Archive(_)), "{err}");
        // A flipped content byte fails the CRC.
        let mut corrupt = package.clone();
        let at = super::super::find(&corrupt, &data[100..116]).unwrap();
        corrupt[at] ^= 1;
        let (result, sink) = read(&corrupt, &limits());
        assert!(
            matches!(result, Err(PackageError::Corrupt { .. })),
            "{result:?}"
        );
        assert_eq!(sink.aborted, ["etc/a"]);
    }

    #[test]
    fn truncated_garbage_and_incomplete_archives_are_refused() {
        let package = build(&[("etc/a", &content(5000, 1))], b"{}");
        for cut in [package.len() - 1, package.len() / 2, 10, 0] {
            let err = refused(&package[..cut], &limits());
            assert!(
                matches!(err, PackageError::Archive(_) | PackageError::Read(_)),
                "{cut}: {err}"
            );
        }
        let err = refused(b"this is not a zip archive at all, just text", &limits());
        assert!(matches!(err, PackageError::Archive(_)), "{err}");
        // A zlib package is not a ZIP archive either.
        let err = refused(b"files_metadata.json|//@@//|x\x9c", &limits());
        assert!(matches!(err, PackageError::Archive(_)), "{err}");

        let mut w = ZipPackageWriter::new(Cursor::new(Vec::new()));
        w.add_file("etc/a", 1, &mut &b"a"[..]).unwrap();
        let mut no_meta = w.finish(b"{}").unwrap().into_inner();
        no_meta = rename(&no_meta, METADATA_MEMBER, "files_metadata.jsox");
        assert!(matches!(
            refused(&no_meta, &limits()),
            PackageError::MetadataMissing
        ));
    }

    #[test]
    fn announced_entry_count_is_read_from_the_end_record() {
        let package = build(&[("a", b"1"), ("b", b"2")], b"{}");
        assert_eq!(
            announced_entries(&mut Cursor::new(&package)).unwrap(),
            Some(3)
        );
        assert_eq!(
            announced_entries(&mut Cursor::new(b"no record here")).unwrap(),
            None
        );
        let mut huge = package.clone();
        let eocd = huge.len() - EOCD_BYTES;
        huge[eocd + 8..eocd + 12].copy_from_slice(&[0xFE, 0xFF, 0xFE, 0xFF]);
        assert!(matches!(
            refused(
                &huge,
                &UnpackLimits {
                    members_max: 100,
                    ..limits()
                }
            ),
            PackageError::TooManyMembers { limit: 100 }
        ));
    }
}
