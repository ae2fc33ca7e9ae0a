//! Local integrity: the metadata of every synced file of this node (PROTOCOL.md §4.1.2, §5.1, §5.2).
//!
//! Stock nodes reuse a file's previous digest when its mtime is unchanged. That misses a rewrite that
//! keeps the mtime (`touch -d`, `cp -p`, `rsync -t`, a restore from backup), after which master and
//! workers disagree forever about a file each thinks is synced. Here a digest is reused only when the
//! file's size, mtime, ctime (which no one can set back), inode and device are all unchanged.
//!
//! A file changed within the same clock tick as the moment it was hashed could keep all of these while
//! its content differs from what was hashed. Files whose mtime or ctime is at most
//! [`RACY_MARGIN`] older than the start of a run are therefore hashed again on the next run as well.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Dialect, FilesTable};
use crate::sync::{FileMeta, HashKind, Metadata};

use super::hash::{hash_open_file, open_regular};
use super::walk::{walk_item, Found};

/// How recent a change must be, relative to the start of a run, for a digest not to be trusted on the
/// next run. Generous compared with file timestamp granularity (a few milliseconds).
pub const RACY_MARGIN: Duration = Duration::from_secs(1);

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_s: i64,
    mtime_ns: i64,
    ctime_s: i64,
    ctime_ns: i64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_s: meta.mtime(),
            mtime_ns: meta.mtime_nsec(),
            ctime_s: meta.ctime(),
            ctime_ns: meta.ctime_nsec(),
        }
    }

    /// The mtime as stock nodes report it: `os.path.getmtime`, computed as `sec + nsec * 1e-9`.
    fn mod_time(&self) -> f64 {
        self.mtime_s as f64 + self.mtime_ns as f64 * 1e-9
    }

    /// Whether the file changed too close to `since_ns` (nanoseconds since the epoch) to trust its digest.
    fn changed_since(&self, since_ns: i128) -> bool {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        ns(self.mtime_s, self.mtime_ns) >= since_ns || ns(self.ctime_s, self.ctime_ns) >= since_ns
    }
}

#[derive(Debug, Clone)]
struct Cached {
    stamp: Stamp,
    digest: String,
    /// Hashed too soon after a change: hash again next time whatever the stamp says.
    racy: bool,
}

/// Digests of the previous run, by relative path; reused across runs (and reconnections). Plain data,
/// so it can be moved into a pool job and handed back with its result.
#[derive(Debug, Clone)]
pub struct IntegrityCache {
    /// The digest kind the entries hold; a change of kind empties the cache.
    kind: Option<HashKind>,
    entries: HashMap<String, Cached>,
    racy_margin: Duration,
}

impl Default for IntegrityCache {
    fn default() -> IntegrityCache {
        IntegrityCache {
            kind: None,
            entries: HashMap::new(),
            racy_margin: RACY_MARGIN,
        }
    }
}

impl IntegrityCache {
    /// Files whose digest is remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The result of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntegrityReport {
    pub metadata: Metadata,
    /// Entries in `metadata`.
    pub files: usize,
    /// Files read and hashed in this run (the others reused the cache).
    pub hashed: usize,
    pub bytes_hashed: u64,
    /// Selected files that were skipped: relative path and reason.
    pub unreadable: Vec<(String, String)>,
}

/// Computes the metadata of every file of `files` under `home`, hashing only what changed since the
/// run that filled `cache`. Items are walked in table order; a path found by two items gets the later
/// item's key, as on stock nodes.
pub fn local_integrity(
    home: &Path,
    files: &FilesTable,
    kind: HashKind,
    dialect: Dialect,
    cache: &mut IntegrityCache,
) -> IntegrityReport {
    if cache.kind != Some(kind) {
        cache.entries.clear();
        cache.kind = Some(kind);
    }
    let start = SystemTime::now()
        .checked_sub(cache.racy_margin)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    let mut report = IntegrityReport::default();
    let mut fresh: HashMap<String, Cached> = HashMap::with_capacity(cache.entries.len());
    for item in &files.items {
        walk_item(home, item, files, &mut |found| match found {
            Found::Skipped { rel, reason } => report.unreadable.push((rel, reason)),
            Found::File { rel, path } => {
                let entry = match fresh_entry(&path, cache.entries.get(&rel), kind, start) {
                    Ok(Some((entry, hashed_bytes))) => {
                        if let Some(bytes) = hashed_bytes {
                            report.hashed += 1;
                            report.bytes_hashed += bytes;
                        }
                        entry
                    }
                    // Deleted between being listed and being read: not an error, just gone.
                    Ok(None) => return,
                    Err(reason) => return report.unreadable.push((rel, reason)),
                };
                let merged = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains(".merged"));
                let (merge_type, merge_name) = if merged {
                    let merge_type = match dialect {
                        Dialect::V4_3 => "agent-groups",
                        Dialect::V4_14 => "TYPE",
                    };
                    (
                        Some(merge_type.to_string()),
                        Some(path.to_string_lossy().into_owned()),
                    )
                } else {
                    (None, None)
                };
                report.metadata.insert(
                    rel.clone(),
                    FileMeta {
                        mod_time: entry.stamp.mod_time(),
                        cluster_item_key: item.key.clone(),
                        merged,
                        merge_type,
                        merge_name,
                        digest: entry.digest.clone(),
                    },
                );
                fresh.insert(rel, entry);
            }
        });
    }
    // Only files seen in this run stay: a deleted file leaves the cache.
    cache.entries = fresh;
    report.files = report.metadata.len();
    report
}

/// The cache entry of one file: the previous one if its stamp is unchanged, else a new digest (and
/// the bytes read). `Ok(None)` when the file vanished.
fn fresh_entry(
    path: &Path,
    previous: Option<&Cached>,
    kind: HashKind,
    racy_since_ns: i128,
) -> Result<Option<(Cached, Option<u64>)>, String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let stamp = Stamp::of(&meta);
    if let Some(previous) = previous.filter(|p| !p.racy && p.stamp == stamp) {
        return Ok(Some((previous.clone(), None)));
    }
    let (file, meta) = match open_regular(path) {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    // The stamp taken when the file was opened: a change made while it is read moves the ctime past it,
    // so the next run hashes the file again.
    let stamp = Stamp::of(&meta);
    let digest = hash_open_file(&file, meta.len(), kind).map_err(|e| e.to_string())?;
    let entry = Cached {
        stamp,
        digest,
        racy: stamp.changed_since(racy_since_ns),
    };
    Ok(Some((entry, Some(meta.len()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClusterJson;
    use crate::pool::hash::hash_file;
    use std::fs;

    fn table(dialect: Dialect) -> FilesTable {
        ClusterJson::defaults(dialect).files
    }

    /// A cache that trusts any file not changed after the start of the run, so tests need not wait.
    /// One 4.14 run (BLAKE2b, the 4.14 files table) over `home`.
    fn run_4_14(home: &Path, cache: &mut IntegrityCache) -> IntegrityReport {
        local_integrity(
            home,
            &table(Dialect::V4_14),
            HashKind::Blake2b512,
            Dialect::V4_14,
            cache,
        )
    }

    fn eager_cache() -> IntegrityCache {
        IntegrityCache {
            racy_margin: Duration::ZERO,
            ..IntegrityCache::default()
        }
    }

    fn put(home: &Path, rel: &str, content: &str) {
        let path = home.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn tree() -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        put(h, "etc/client.keys", "001 agent1 any key1\n");
        put(h, "etc/ossec.conf", "<ossec_config/>");
        put(h, "etc/internal_options.conf", "");
        put(h, "etc/shared/default/agent.conf", "<agent_config/>");
        put(h, "etc/shared/default/ar.conf", "excluded by name");
        put(h, "etc/shared/default/notes.txt~", "excluded by extension");
        put(
            h,
            "etc/shared/default/.agent.conf.swp",
            "excluded by extension",
        );
        put(h, "etc/shared/group1/sub/deep/file.txt", "deep");
        put(h, "etc/shared/group1/agents.merged", "merged");
        put(h, "etc/rules/local_rules.xml", "<group/>");
        put(h, "etc/lists/audit-keys", "k:v");
        put(h, "var/multigroups/abc123/merged.mg", "mg");
        put(h, "var/multigroups/abc123/other", "not listed");
        home
    }

    #[test]
    fn walks_every_item_with_the_stock_rules() {
        let home = tree();
        let h = home.path();
        std::os::unix::fs::symlink(
            h.join("etc/rules/local_rules.xml"),
            h.join("etc/rules/linked.xml"),
        )
        .unwrap();
        fs::create_dir_all(h.join("etc/decoders")).unwrap();
        nix::unistd::mkfifo(
            &h.join("etc/decoders/pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let report = local_integrity(
            h,
            &table(Dialect::V4_14),
            HashKind::Blake2b512,
            Dialect::V4_14,
            &mut eager_cache(),
        );
        let paths: Vec<&str> = report.metadata.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            vec![
                "etc/client.keys",
                "etc/lists/audit-keys",
                "etc/rules/local_rules.xml",
                "etc/shared/default/agent.conf",
                "etc/shared/group1/agents.merged",
                "etc/shared/group1/sub/deep/file.txt",
                "var/multigroups/abc123/merged.mg",
            ]
        );
        assert_eq!(report.files, 7);
        assert_eq!(report.hashed, 7);
        let mut unreadable = report.unreadable.clone();
        unreadable.sort();
        assert_eq!(
            unreadable,
            vec![
                ("etc/decoders/pipe".into(), "not a regular file".into()),
                (
                    "etc/rules/linked.xml".into(),
                    "is a symbolic link, not followed".into()
                ),
            ]
        );

        let keys = &report.metadata["etc/client.keys"];
        assert_eq!(keys.cluster_item_key, "etc/");
        assert!(!keys.merged);
        assert_eq!(
            keys.digest,
            hash_file(&h.join("etc/client.keys"), HashKind::Blake2b512).unwrap()
        );
        let mtime = fs::metadata(h.join("etc/client.keys")).unwrap();
        assert_eq!(
            keys.mod_time,
            mtime.mtime() as f64 + mtime.mtime_nsec() as f64 * 1e-9
        );
        assert_eq!(
            report.metadata["var/multigroups/abc123/merged.mg"].cluster_item_key,
            "var/multigroups/"
        );

        let merged = &report.metadata["etc/shared/group1/agents.merged"];
        assert!(merged.merged);
        assert_eq!(merged.merge_type.as_deref(), Some("TYPE"));
        let absolute = h.join("etc/shared/group1/agents.merged");
        assert_eq!(merged.merge_name.as_deref(), absolute.to_str());
    }

    #[test]
    fn the_4_3_dialect_uses_md5_and_agent_groups_merges() {
        let home = tree();
        put(home.path(), "queue/agent-groups/001", "default");
        let report = local_integrity(
            home.path(),
            &table(Dialect::V4_3),
            HashKind::Md5,
            Dialect::V4_3,
            &mut eager_cache(),
        );
        assert_eq!(
            report.metadata["queue/agent-groups/001"].cluster_item_key,
            "queue/agent-groups/"
        );
        assert_eq!(report.metadata["etc/client.keys"].digest.len(), 32);
        let merged = &report.metadata["etc/shared/group1/agents.merged"];
        assert_eq!(merged.merge_type.as_deref(), Some("agent-groups"));
    }

    #[test]
    fn the_cache_spares_unchanged_files_and_forgets_deleted_ones() {
        let home = tree();
        let files = table(Dialect::V4_14);
        let mut cache = eager_cache();
        let first = run_4_14(home.path(), &mut cache);
        assert_eq!(first.hashed, 7);
        let second = run_4_14(home.path(), &mut cache);
        assert_eq!(second.hashed, 0);
        assert_eq!(second.bytes_hashed, 0);
        assert_eq!(second.metadata, first.metadata);

        put(
            home.path(),
            "etc/rules/local_rules.xml",
            "<group name=\"x\"/>",
        );
        let third = run_4_14(home.path(), &mut cache);
        assert_eq!(third.hashed, 1);
        assert_eq!(third.bytes_hashed, 17);

        fs::remove_file(home.path().join("etc/lists/audit-keys")).unwrap();
        let fourth = run_4_14(home.path(), &mut cache);
        assert_eq!(fourth.hashed, 0);
        assert!(!fourth.metadata.contains_key("etc/lists/audit-keys"));
        assert_eq!(cache.len(), 6);

        // Another digest kind cannot reuse the entries.
        let md5 = local_integrity(
            home.path(),
            &files,
            HashKind::Md5,
            Dialect::V4_3,
            &mut cache,
        );
        assert_eq!(md5.hashed, 6);
    }

    #[test]
    fn a_rewrite_keeping_size_and_mtime_is_still_caught() {
        let home = tree();
        let path = home.path().join("etc/shared/default/agent.conf");
        let mut cache = eager_cache();
        let before = run_4_14(home.path(), &mut cache);
        let old_mtime = before.metadata["etc/shared/default/agent.conf"].mod_time;

        // Same length, mtime set back to the old value (as `touch -d` would): only ctime and the inode
        // betray the new content.
        let old_modified = fs::metadata(&path).unwrap().modified().unwrap();
        let set_mtime_back = |path: &Path| {
            fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(old_modified)
                .unwrap();
        };
        let replacement = home.path().join("replacement");
        fs::write(&replacement, "<agent_CONFIG/>").unwrap();
        fs::rename(&replacement, &path).unwrap();
        set_mtime_back(&path);
        let after_meta = fs::metadata(&path).unwrap();
        assert_eq!(after_meta.len(), "<agent_config/>".len() as u64);
        assert_eq!(after_meta.modified().unwrap(), old_modified);

        let after = run_4_14(home.path(), &mut cache);
        assert_eq!(after.hashed, 1);
        let entry = &after.metadata["etc/shared/default/agent.conf"];
        assert_eq!(entry.mod_time, old_mtime);
        assert_ne!(
            entry.digest,
            before.metadata["etc/shared/default/agent.conf"].digest
        );

        // In place this time (same inode), mtime back again.
        let inode = fs::metadata(&path).unwrap().ino();
        fs::write(&path, "<agent_config/>").unwrap();
        set_mtime_back(&path);
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
        let again = run_4_14(home.path(), &mut cache);
        assert_eq!(again.hashed, 1);
        assert_eq!(
            again.metadata["etc/shared/default/agent.conf"].digest,
            before.metadata["etc/shared/default/agent.conf"].digest
        );
    }

    #[test]
    fn recently_changed_files_are_hashed_again_next_run() {
        let home = tree();
        let mut cache = IntegrityCache::default();
        assert_eq!(run_4_14(home.path(), &mut cache).hashed, 7);
        // Every file was written a moment ago: none of their digests can be trusted yet.
        assert_eq!(run_4_14(home.path(), &mut cache).hashed, 7);
    }

    #[test]
    fn unreadable_files_are_listed_and_a_missing_tree_is_empty() {
        let empty = tempfile::tempdir().unwrap();
        let report = local_integrity(
            empty.path(),
            &table(Dialect::V4_14),
            HashKind::Md5,
            Dialect::V4_14,
            &mut eager_cache(),
        );
        assert_eq!(report, IntegrityReport::default());

        if nix::unistd::geteuid().is_root() {
            eprintln!("note: running as root, permission-denied case skipped");
            return;
        }
        let home = tree();
        let path = home.path().join("etc/rules/local_rules.xml");
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
        let report = local_integrity(
            home.path(),
            &table(Dialect::V4_14),
            HashKind::Md5,
            Dialect::V4_14,
            &mut eager_cache(),
        );
        assert_eq!(report.files, 6);
        assert_eq!(report.unreadable.len(), 1);
        assert_eq!(report.unreadable[0].0, "etc/rules/local_rules.xml");
    }
}
