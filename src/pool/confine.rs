//! Whether a path received from a peer may be touched at all, before any file is opened.
//!
//! A received path must name a file that this node's own walk would have synced: inside the directory of
//! one item of the files table, at a depth and with a name that item allows, and not excluded. Anything
//! else is refused, so a compromised or buggy master cannot write to `etc/ossec.conf`, to `bin/`, or
//! outside the install root.

use crate::config::{FilesTable, ItemSpec};

use super::walk::{is_excluded, is_selected, key_dir};

/// Why a received path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("not a clean relative path: {0}")]
    Unclean(&'static str),
    #[error("not inside any synced directory")]
    NoItem,
    #[error("{key} only syncs files directly in it")]
    NotRecursive { key: String },
    #[error("{key} does not sync files of that name")]
    NotListed { key: String },
    #[error("excluded from synchronisation by name")]
    Excluded,
    #[error("{0} is a symbolic link")]
    Symlink(String),
}

/// A received path that passed the checks: the item it belongs to and its parts below the item directory.
#[derive(Debug, Clone)]
pub(crate) struct Target<'a> {
    pub rel: &'a str,
    pub item: &'a ItemSpec,
    /// Directories between the item directory and the file.
    pub dirs: Vec<&'a str>,
    pub name: &'a str,
}

/// The directory `dirs` below the directory of `item`, relative to the install root (for messages).
pub(crate) fn dir_rel(item: &ItemSpec, dirs: &[&str]) -> String {
    let mut rel = key_dir(&item.key).to_string();
    for dir in dirs {
        if !rel.is_empty() {
            rel.push('/');
        }
        rel.push_str(dir);
    }
    rel
}

/// Checks `rel` against the files table: clean, inside the item with the longest matching key, allowed
/// by that item's depth and name rules, not excluded.
pub(crate) fn confine<'a>(rel: &'a str, files: &'a FilesTable) -> Result<Target<'a>, Refusal> {
    check_clean(rel)?;
    let item = files
        .items
        .iter()
        .filter(|item| {
            let dir = key_dir(&item.key);
            dir.is_empty()
                || rel
                    .strip_prefix(dir)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .max_by_key(|item| key_dir(&item.key).len())
        .ok_or(Refusal::NoItem)?;
    let dir = key_dir(&item.key);
    let below = if dir.is_empty() {
        rel
    } else {
        &rel[dir.len() + 1..]
    };
    let mut parts: Vec<&str> = below.split('/').collect();
    let name = parts.pop().ok_or(Refusal::Unclean("empty"))?;
    if !item.recursive && !parts.is_empty() {
        return Err(Refusal::NotRecursive {
            key: item.key.clone(),
        });
    }
    if is_excluded(name, files) {
        return Err(Refusal::Excluded);
    }
    if !is_selected(name, item) {
        return Err(Refusal::NotListed {
            key: item.key.clone(),
        });
    }
    Ok(Target {
        rel,
        item,
        dirs: parts,
        name,
    })
}

fn check_clean(rel: &str) -> Result<(), Refusal> {
    if rel.is_empty() {
        return Err(Refusal::Unclean("empty"));
    }
    if rel.starts_with('/') {
        return Err(Refusal::Unclean("absolute"));
    }
    if rel.contains('\0') {
        return Err(Refusal::Unclean("contains a NUL byte"));
    }
    if rel.contains('\\') {
        return Err(Refusal::Unclean("contains a backslash"));
    }
    for part in rel.split('/') {
        match part {
            "" => return Err(Refusal::Unclean("empty component")),
            "." => return Err(Refusal::Unclean("`.` component")),
            ".." => return Err(Refusal::Unclean("`..` component")),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClusterJson, Dialect};

    #[test]
    fn the_longest_key_wins_and_rules_apply() {
        let files = ClusterJson::defaults(Dialect::V4_14).files;
        let t = confine("etc/shared/default/agent.conf", &files).unwrap();
        assert_eq!(t.item.key, "etc/shared/");
        assert_eq!(t.dirs, vec!["default"]);
        assert_eq!(t.name, "agent.conf");
        assert_eq!(dir_rel(t.item, &t.dirs), "etc/shared/default");
        assert_eq!(dir_rel(t.item, &[]), "etc/shared");
        assert_eq!(confine("etc/client.keys", &files).unwrap().item.key, "etc/");
        let refused = |rel: &str| confine(rel, &files).unwrap_err().to_string();
        assert_eq!(
            refused("etc/ossec.conf"),
            "excluded from synchronisation by name"
        );
        assert_eq!(
            refused("etc/internal_options.conf"),
            "etc/ does not sync files of that name"
        );
        assert_eq!(
            refused("etc/sub/client.keys"),
            "etc/ only syncs files directly in it"
        );
        assert_eq!(
            refused("etc/shared/default/ar.conf"),
            "excluded from synchronisation by name"
        );
        assert_eq!(
            refused("etc/shared/x.swp"),
            "excluded from synchronisation by name"
        );
        assert_eq!(
            refused("var/multigroups/a/other"),
            "var/multigroups/ does not sync files of that name"
        );
        assert_eq!(
            refused("bin/wazuh-clusterd"),
            "not inside any synced directory"
        );
        assert_eq!(
            refused("etc/sharedx/a"),
            "etc/ only syncs files directly in it"
        );
        assert_eq!(refused("etc"), "not inside any synced directory");
    }

    #[test]
    fn unclean_paths_are_refused() {
        let files = ClusterJson::defaults(Dialect::V4_14).files;
        for (rel, why) in [
            ("", "empty"),
            ("/etc/shared/a", "absolute"),
            ("etc/shared/../../etc/passwd", "`..` component"),
            ("etc/shared/./a", "`.` component"),
            ("etc/shared//a", "empty component"),
            ("etc/shared/a/", "empty component"),
            ("etc/shared/a\0b", "contains a NUL byte"),
            ("etc/shared/..\\..\\a", "contains a backslash"),
        ] {
            assert_eq!(
                confine(rel, &files).unwrap_err(),
                Refusal::Unclean(why),
                "{rel:?}"
            );
        }
    }
}
