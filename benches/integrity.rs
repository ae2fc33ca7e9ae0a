//! Speed of the integrity sync's file work, against baselines measured in the same run.
//!
//! - Group `hash`: [`hash_file`] with MD5 (4.3 dialect) and BLAKE2b-512 (4.14 dialect) of one file of
//!   4 KiB, 1 MiB (the first size that is memory-mapped) and 64 MiB, next to reading the same file
//!   (`std::fs::read`) and SHA-256 of the same bytes already in memory. The file stays in the page
//!   cache, so these are CPU figures, not disk figures.
//! - Group `package`: building a package of each format from files on disk into a file (zlib at the
//!   default `compress_level` 1, and ZIP with stored members), and extracting it from memory into a
//!   sink that only counts bytes, for 200 files of 16 KiB of text and for one 64 MiB text file. The
//!   baselines copy the same bytes: `std::fs::copy` of each file into a new file, the files one after
//!   the other into one new file ("concat", the same reads and writes as a build without the format),
//!   and the bytes in memory into buffers allocated once ("memcpy", as an extraction).
//!
//! Only ratios between these figures mean anything on a shared machine;
//! `perf/hash_package_ratios.sh` runs this benchmark and prints them.
//!
//! Run with `cargo bench --bench integrity`.

use std::fs::{self, File};
use std::hint::black_box;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use sha2::{Digest, Sha256};

use clusterd::pool::hash_file;
use clusterd::sync::metadata::{self, FileMeta, Metadata};
use clusterd::sync::package::{zip, zlib, AddOutcome, PackageError, PackageSink, UnpackLimits};
use clusterd::sync::HashKind;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// File sizes of the `hash` group and the labels used in benchmark ids.
const HASH_SIZES: [(&str, usize); 3] = [("4KiB", 4 * KIB), ("1MiB", MIB), ("64MiB", 64 * MIB)];

/// The package sets: label, number of files, bytes per file.
const PACKAGE_SETS: [(&str, usize, usize); 2] =
    [("200x16KiB", 200, 16 * KIB), ("1x64MiB", 1, 64 * MIB)];

/// The receiver's `max_zip_size` and the sender's package limit (the shipped default, 1 GiB): large
/// enough that nothing is deferred.
const MAX_ZIP_BYTES: u64 = 1 << 30;

/// The shipped `compress_level`.
const COMPRESS_LEVEL: u32 = 1;

/// Deterministic text in the style of rules, decoders and shared configuration: XML-ish lines of
/// words drawn from a small vocabulary (xorshift64). zlib at level 1 reduces it to about 0.3 of its
/// size.
fn text(bytes: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 32] = [
        "rule",
        "level",
        "group",
        "match",
        "regex",
        "decoder",
        "prematch",
        "program_name",
        "sshd",
        "authentication",
        "failed",
        "user",
        "srcip",
        "dstport",
        "syslog",
        "windows",
        "audit",
        "agent",
        "config",
        "localfile",
        "location",
        "log_format",
        "frequency",
        "options",
        "no_full_log",
        "description",
        "if_sid",
        "field",
        "name",
        "type",
        "pcre2",
        "osregex",
    ];
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(bytes + 128);
    while out.len() < bytes {
        let r = next();
        out.extend_from_slice(
            format!("<rule id=\"{}\" level=\"{}\">", 100_000 + r % 9_000, r % 16).as_bytes(),
        );
        for i in 0..(3 + r % 6) {
            let w = WORDS[((r >> (8 + 5 * i)) % 32) as usize];
            out.extend_from_slice(w.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(b"</rule>\n");
    }
    out.truncate(bytes);
    out
}

/// A scratch directory in the system's temporary directory, removed at the end.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("clusterd-bench-integrity-")
        .tempdir()
        .expect("a temporary directory can be created")
}

/// Criterion settings shared by every group; large inputs are sampled flat (same iteration count
/// per sample) so that 10 samples of a 100 ms operation take about a second, not five.
fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, bytes: usize) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500));
    if bytes >= 32 * MIB {
        group.sampling_mode(SamplingMode::Flat);
    } else {
        group.sampling_mode(SamplingMode::Auto);
    }
}

fn hash(c: &mut Criterion) {
    let dir = scratch();
    let mut group = c.benchmark_group("hash");
    for (label, bytes) in HASH_SIZES {
        let content = text(bytes, 0x9e37_79b9_7f4a_7c15);
        let path = dir.path().join(label);
        fs::write(&path, &content).expect("the scratch file can be written");
        configure(&mut group, bytes);
        group.throughput(Throughput::Bytes(bytes as u64));

        group.bench_with_input(BenchmarkId::new("read", label), &path, |b, p| {
            b.iter(|| fs::read(black_box(p)).expect("the scratch file is readable"))
        });
        group.bench_with_input(BenchmarkId::new("sha256", label), &content, |b, bytes| {
            b.iter(|| Sha256::digest(black_box(bytes.as_slice())))
        });
        for (name, kind) in [("md5", HashKind::Md5), ("blake2b", HashKind::Blake2b512)] {
            group.bench_with_input(BenchmarkId::new(name, label), &path, |b, p| {
                b.iter(|| hash_file(black_box(p), kind).expect("the scratch file is hashable"))
            });
        }
    }
    group.finish();
}

/// Files of one package set, on disk and in memory.
struct FileSet {
    /// Relative path (as a package member) and full path of each file.
    files: Vec<(String, PathBuf)>,
    contents: Vec<Vec<u8>>,
    metadata_json: Vec<u8>,
    total_bytes: u64,
}

impl FileSet {
    fn create(home: &Path, count: usize, bytes: usize) -> FileSet {
        let mut files = Vec::with_capacity(count);
        let mut contents = Vec::with_capacity(count);
        let mut meta = Metadata::new();
        for i in 0..count {
            let rel = format!("etc/shared/group{:02}/file{i:04}.conf", i % 20);
            let path = home.join(&rel);
            let content = text(bytes, 0x2545_f491_4f6c_dd1d ^ (i as u64 + 1));
            fs::create_dir_all(path.parent().expect("a member path has a directory"))
                .expect("the scratch tree can be created");
            fs::write(&path, &content).expect("the scratch tree can be written");
            meta.insert(
                rel.clone(),
                FileMeta {
                    mod_time: 1_700_000_000.0 + i as f64,
                    cluster_item_key: "etc/shared/".into(),
                    merged: false,
                    merge_type: None,
                    merge_name: None,
                    digest: format!("{:0128x}", i),
                },
            );
            files.push((rel, path));
            contents.push(content);
        }
        let metadata_json = serde_json::to_vec(&metadata::to_json(&meta, HashKind::Blake2b512))
            .expect("metadata serialises");
        FileSet {
            files,
            contents,
            metadata_json,
            total_bytes: (count * bytes) as u64,
        }
    }
}

/// A package format under test.
#[derive(Clone, Copy)]
enum Format {
    Zlib,
    Zip,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Zlib => "zlib",
            Format::Zip => "zip",
        }
    }
}

/// Removes the output of the previous iteration, so that each iteration writes a new file. On ext4 a
/// file truncated and written again is flushed to disk when it is closed (`auto_da_alloc`), which
/// would add a disk write to every iteration.
fn remove_old(path: &Path) {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => panic!("{}: {e}", path.display()),
        _ => {}
    }
}

/// Builds the package of `set` into a new file at `out`, reading each file from disk.
fn build(format: Format, set: &FileSet, out: &Path) -> File {
    remove_old(out);
    let file = File::create_new(out).expect("the package file can be created");
    match format {
        Format::Zlib => {
            let mut writer = zlib::ZlibPackageWriter::new(file, COMPRESS_LEVEL, MAX_ZIP_BYTES);
            add_all(set, |rel, size, source| writer.add_file(rel, size, source));
            writer
                .finish(&set.metadata_json)
                .expect("the package is finished")
        }
        Format::Zip => {
            let mut writer = zip::ZipPackageWriter::new(file);
            add_all(set, |rel, size, source| writer.add_file(rel, size, source));
            writer
                .finish(&set.metadata_json)
                .expect("the package is finished")
        }
    }
}

/// Offers every file of `set` to `add` (a package writer's `add_file`), which must take them all.
fn add_all(
    set: &FileSet,
    mut add: impl FnMut(&str, u64, &mut File) -> Result<AddOutcome, PackageError>,
) {
    for (rel, path) in &set.files {
        let mut source = File::open(path).expect("the source file is readable");
        let size = source
            .metadata()
            .expect("the source file has metadata")
            .len();
        match add(rel, size, &mut source).expect("the package is writable") {
            AddOutcome::Added { .. } => {}
            other => panic!("file not added: {other:?}"),
        }
    }
}

/// Takes the members of a package and only counts them.
#[derive(Default)]
struct CountingSink {
    files: u64,
    bytes: u64,
}

impl PackageSink for CountingSink {
    fn begin(&mut self, _rel: &str) -> io::Result<()> {
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.bytes += black_box(bytes).len() as u64;
        Ok(())
    }

    fn end(&mut self) -> io::Result<()> {
        self.files += 1;
        Ok(())
    }

    fn abort(&mut self) {}
}

/// Extracts a package held in memory; returns (files, bytes of the files).
fn extract(format: Format, package: &[u8]) -> (u64, u64) {
    let limits = UnpackLimits::new(MAX_ZIP_BYTES);
    let mut sink = CountingSink::default();
    match format {
        Format::Zlib => zlib::unpack(package, &limits, &mut sink),
        Format::Zip => zip::unpack(Cursor::new(package), &limits, &mut sink),
    }
    .expect("the package was built by the writer");
    (sink.files, sink.bytes)
}

fn package(c: &mut Criterion) {
    let dir = scratch();
    let mut group = c.benchmark_group("package");
    for (label, count, bytes) in PACKAGE_SETS {
        let home = dir.path().join(label);
        let set = FileSet::create(&home.join("src"), count, bytes);
        let copies = home.join("copy");
        fs::create_dir_all(&copies).expect("the copy directory can be created");
        let package_path = home.join("package");
        configure(&mut group, count * bytes);
        group.throughput(Throughput::Bytes(set.total_bytes));

        group.bench_with_input(BenchmarkId::new("fs_copy", label), &set, |b, set| {
            b.iter(|| {
                for (i, (_, path)) in set.files.iter().enumerate() {
                    let copy = copies.join(i.to_string());
                    remove_old(&copy);
                    fs::copy(path, &copy).expect("the copy is written");
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("concat", label), &set, |b, set| {
            b.iter(|| {
                remove_old(&package_path);
                let mut out = File::create_new(&package_path).expect("the output can be created");
                for (_, path) in &set.files {
                    let mut source = File::open(path).expect("the source file is readable");
                    io::copy(&mut source, &mut out).expect("the output is written");
                }
                out
            })
        });
        // Into buffers allocated once: a fresh 64 MiB allocation is mapped and faulted in page by
        // page, which would make the baseline measure the kernel rather than the copy.
        let mut buffers: Vec<Vec<u8>> = set.contents.iter().map(|c| vec![0u8; c.len()]).collect();
        group.bench_with_input(BenchmarkId::new("memcpy", label), &set, |b, set| {
            b.iter(|| {
                for (content, buffer) in set.contents.iter().zip(buffers.iter_mut()) {
                    buffer.copy_from_slice(black_box(content.as_slice()));
                    black_box(buffer.as_slice());
                }
            })
        });

        for format in [Format::Zlib, Format::Zip] {
            let built = format!("build_{}", format.name());
            group.bench_with_input(BenchmarkId::new(built, label), &set, |b, set| {
                b.iter(|| build(format, set, &package_path))
            });

            build(format, &set, &package_path);
            let package = fs::read(&package_path).expect("the package is readable");
            assert_eq!(
                extract(format, &package),
                (count as u64, set.total_bytes),
                "{} package of {label} round trip",
                format.name()
            );
            eprintln!(
                "package/{label}: {} package of {} bytes ({:.2} of the content)",
                format.name(),
                package.len(),
                package.len() as f64 / set.total_bytes as f64
            );
            let extracted = format!("extract_{}", format.name());
            group.bench_with_input(BenchmarkId::new(extracted, label), &package, |b, p| {
                b.iter(|| extract(format, black_box(p)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, hash, package);
criterion_main!(benches);
