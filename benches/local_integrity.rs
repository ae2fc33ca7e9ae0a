//! Times `local_integrity` over an install root, cold (empty cache: every file is hashed) and warm
//! (the cache of a cold run reused: nothing is hashed when nothing changed), in both dialects: MD5 with
//! the 4.3 files table and BLAKE2b-512 with the 4.14 table.
//!
//! Prints one JSON line on stdout, for `perf/integrity.sh` to compare with `md5sum` and `b2sum` over
//! the same files in the same run. Not a criterion benchmark: a run over 100,000 files takes seconds.
//!
//! ```sh
//! CLUSTERD_INTEGRITY_HOME=/path/to/home CLUSTERD_INTEGRITY_REPEAT=3 cargo bench --bench local_integrity
//! ```
//!
//! Without `CLUSTERD_INTEGRITY_HOME`, a small tree (2,000 files) is written to a temporary directory
//! and measured. Files changed less than [`RACY_MARGIN`] before a run are hashed again by the next one,
//! so the tree must be at least that old for the warm runs to hash nothing; `warm_hashed` says whether
//! it was.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use clusterd::config::{ClusterJson, Dialect};
use clusterd::pool::{local_integrity, IntegrityCache, IntegrityReport, RACY_MARGIN};
use clusterd::sync::HashKind;

/// Files of the tree written when no install root is given.
const DEFAULT_TREE_FILES: usize = 2_000;

fn main() {
    let repeat: usize = match std::env::var("CLUSTERD_INTEGRITY_REPEAT") {
        Ok(text) => match text.parse() {
            Ok(n) if n >= 1 => n,
            _ => {
                eprintln!(
                    "CLUSTERD_INTEGRITY_REPEAT must be a positive whole number, not {text:?}"
                );
                std::process::exit(2);
            }
        },
        Err(_) => 3,
    };
    let scratch;
    let home = match std::env::var_os("CLUSTERD_INTEGRITY_HOME") {
        Some(home) => std::path::PathBuf::from(home),
        None => {
            scratch = tempfile::Builder::new()
                .prefix("clusterd-local-integrity-")
                .tempdir()
                .expect("a temporary directory can be created");
            write_small_tree(scratch.path(), DEFAULT_TREE_FILES);
            std::thread::sleep(RACY_MARGIN + Duration::from_millis(100));
            scratch.path().to_path_buf()
        }
    };
    if !home.join("etc").is_dir() {
        eprintln!("{}: not an install root (no etc/)", home.display());
        std::process::exit(2);
    }

    let mut results = serde_json::Map::new();
    for (name, kind, dialect) in [
        ("md5", HashKind::Md5, Dialect::V4_3),
        ("blake2b", HashKind::Blake2b512, Dialect::V4_14),
    ] {
        results.insert(name.into(), measure(&home, kind, dialect, repeat));
    }
    let line = json!({
        "home": home.display().to_string(),
        "repeat": repeat,
        "results": Value::Object(results),
    });
    println!("{line}");
}

/// Cold runs (each with an empty cache), then warm runs reusing the cache of the last cold run.
fn measure(home: &Path, kind: HashKind, dialect: Dialect, repeat: usize) -> Value {
    let files = ClusterJson::defaults(dialect).files;
    let run = |cache: &mut IntegrityCache| -> (f64, IntegrityReport) {
        let start = Instant::now();
        let report = local_integrity(home, &files, kind, dialect, cache);
        (start.elapsed().as_secs_f64(), report)
    };

    let mut cold_s = Vec::with_capacity(repeat);
    let mut cache = IntegrityCache::default();
    let mut cold = IntegrityReport::default();
    for _ in 0..repeat {
        cache = IntegrityCache::default();
        let (seconds, report) = run(&mut cache);
        cold_s.push(seconds);
        cold = report;
    }
    let mut warm_s = Vec::with_capacity(repeat);
    let mut warm_hashed = 0;
    for _ in 0..repeat {
        let (seconds, report) = run(&mut cache);
        warm_s.push(seconds);
        warm_hashed = warm_hashed.max(report.hashed);
    }
    eprintln!(
        "{:?}: {} files, {} bytes; cold {:.3} s, warm {:.3} s (medians of {repeat})",
        kind,
        cold.files,
        cold.bytes_hashed,
        median(&cold_s),
        median(&warm_s)
    );
    json!({
        "files": cold.files,
        "bytes": cold.bytes_hashed,
        "unreadable": cold.unreadable.len(),
        "cold_s": median(&cold_s),
        "warm_s": median(&warm_s),
        "cold_runs_s": cold_s,
        "warm_runs_s": warm_s,
        "cold_hashed": cold.hashed,
        "warm_hashed": warm_hashed,
    })
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// A small master-like tree: keys, shared groups, rules, decoders and lists.
fn write_small_tree(home: &Path, files: usize) {
    let put = |rel: String, content: String| {
        let path = home.join(rel);
        fs::create_dir_all(path.parent().expect("the path has a directory"))
            .expect("the tree can be created");
        fs::write(path, content).expect("the tree can be written");
    };
    let keys: String = (1..=1_000u64)
        .map(|id| format!("{id:03} agent{id:05} any {:064x}\n", id * 0x9e37_79b9))
        .collect();
    put("etc/client.keys".into(), keys);
    for i in 0..files {
        let dir = match i % 4 {
            0 => format!("etc/shared/group{:03}", i % 50),
            1 => "etc/rules".to_string(),
            2 => "etc/decoders".to_string(),
            _ => "etc/lists".to_string(),
        };
        let line = format!(
            "<rule id=\"{}\" level=\"3\"><match>file {i}</match></rule>\n",
            100_000 + i
        );
        put(format!("{dir}/file{i:06}.xml"), line.repeat(1 + i % 64));
    }
}
