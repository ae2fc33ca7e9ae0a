//! Which files of an install root belong to the synced items, found the way stock nodes find them.
//!
//! Stock nodes walk each item's directory (`WAZUH_HOME/<key>`), recursively or only its top level, skip
//! names listed in `excluded_files` or ending with one of `excluded_extensions`, and keep every file
//! (`["all"]`) or only the listed names. The same name rules decide, in `apply`, which received paths
//! may be written.
//!
//! Unlike stock nodes, symbolic links are never followed: a link in a synced directory could otherwise
//! publish any file of the master to every worker. Links and other non-regular files that the name rules
//! select are reported instead, so an operator can see why a file is not synced.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::{FileSelection, FilesTable, ItemSpec};

/// What the walk found for one selected name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// A regular file (as the directory listing saw it): its path relative to the install root, with
    /// `/`, and its full path.
    File { rel: String, path: PathBuf },
    /// Something that is not synced, with the reason: a symbolic link, a FIFO, a name that is not
    /// UTF-8, a directory that cannot be listed.
    Skipped { rel: String, reason: String },
}

/// Whether the global exclusion lists rule out a file name.
pub(crate) fn is_excluded(name: &str, files: &FilesTable) -> bool {
    files.excluded_files.iter().any(|n| n == name)
        || files
            .excluded_extensions
            .iter()
            .any(|ext| name.ends_with(ext.as_str()))
}

/// Whether an item syncs a file of that name (exclusions aside).
pub(crate) fn is_selected(name: &str, item: &ItemSpec) -> bool {
    match &item.files {
        FileSelection::All => true,
        FileSelection::Names(names) => names.iter().any(|n| n == name),
    }
}

/// The item key as a directory prefix: without a trailing `/` doubled, and empty for the root.
pub(crate) fn key_dir(key: &str) -> &str {
    key.trim_end_matches('/')
}

/// Calls `visit` for every file of `item` that the name rules select. A missing item directory is
/// simply empty.
pub(crate) fn walk_item(
    home: &Path,
    item: &ItemSpec,
    files: &FilesTable,
    visit: &mut dyn FnMut(Found),
) {
    let base_rel = key_dir(&item.key).to_string();
    let base = home.join(&base_rel);
    match fs::symlink_metadata(&base) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            return visit(Found::Skipped {
                rel: base_rel,
                reason: e.to_string(),
            })
        }
        Ok(meta) if meta.file_type().is_symlink() => {
            return visit(Found::Skipped {
                rel: base_rel,
                reason: "the item directory is a symbolic link, not followed".into(),
            })
        }
        Ok(meta) if !meta.is_dir() => {
            return visit(Found::Skipped {
                rel: base_rel,
                reason: "the item path is not a directory".into(),
            })
        }
        Ok(_) => {}
    }
    // Depth-first with an explicit stack, so a deep tree cannot exhaust the thread's stack.
    let mut pending = vec![(base, base_rel)];
    while let Some((dir, dir_rel)) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Removed between being listed and being read.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                visit(Found::Skipped {
                    rel: dir_rel,
                    reason: format!("cannot list the directory: {e}"),
                });
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    visit(Found::Skipped {
                        rel: dir_rel.clone(),
                        reason: format!("cannot list the directory: {e}"),
                    });
                    break;
                }
            };
            let os_name = entry.file_name();
            let join = |name: &str| {
                if dir_rel.is_empty() {
                    name.to_string()
                } else {
                    format!("{dir_rel}/{name}")
                }
            };
            let Some(name) = os_name.to_str() else {
                visit(Found::Skipped {
                    rel: join(&os_name.to_string_lossy()),
                    reason: "the name is not valid UTF-8".into(),
                });
                continue;
            };
            let rel = join(name);
            // The entry's type comes from the listing and describes the entry itself, not a link's target.
            let kind = match entry.file_type() {
                Ok(kind) => kind,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    visit(Found::Skipped {
                        rel,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            if kind.is_dir() {
                if item.recursive {
                    pending.push((entry.path(), rel));
                }
                continue;
            }
            if is_excluded(name, files) || !is_selected(name, item) {
                continue;
            }
            if kind.is_symlink() {
                visit(Found::Skipped {
                    rel,
                    reason: "is a symbolic link, not followed".into(),
                });
            } else if kind.is_file() {
                visit(Found::File {
                    rel,
                    path: entry.path(),
                });
            } else {
                visit(Found::Skipped {
                    rel,
                    reason: "not a regular file".into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClusterJson, Dialect};

    fn found(home: &Path, key: &str) -> Vec<Found> {
        let files = ClusterJson::defaults(Dialect::V4_14).files;
        let item = files.item(key).unwrap().clone();
        let mut out = Vec::new();
        walk_item(home, &item, &files, &mut |f| out.push(f));
        out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        out
    }

    #[test]
    fn names_and_exclusions_follow_the_item() {
        let home = tempfile::tempdir().unwrap();
        let etc = home.path().join("etc");
        fs::create_dir_all(etc.join("shared/default")).unwrap();
        fs::write(etc.join("client.keys"), "001 a any k\n").unwrap();
        fs::write(etc.join("ossec.conf"), "").unwrap();
        fs::write(etc.join("shared/default/agent.conf"), "").unwrap();
        fs::write(etc.join("shared/default/ar.conf"), "").unwrap();
        fs::write(etc.join("shared/default/x.swp"), "").unwrap();
        let keys = found(home.path(), "etc/");
        assert_eq!(
            keys,
            vec![Found::File {
                rel: "etc/client.keys".into(),
                path: etc.join("client.keys")
            }]
        );
        let shared = found(home.path(), "etc/shared/");
        assert_eq!(
            shared,
            vec![Found::File {
                rel: "etc/shared/default/agent.conf".into(),
                path: etc.join("shared/default/agent.conf")
            }]
        );
        assert!(found(home.path(), "etc/rules/").is_empty());
    }

    #[test]
    fn a_symlinked_item_directory_is_reported_not_walked() {
        let home = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("local_rules.xml"), "").unwrap();
        fs::create_dir(home.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(outside.path(), home.path().join("etc/rules")).unwrap();
        let rules = found(home.path(), "etc/rules/");
        assert_eq!(rules.len(), 1);
        assert!(matches!(&rules[0], Found::Skipped { rel, .. } if rel == "etc/rules"));
    }
}
