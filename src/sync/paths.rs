//! Confinement of paths that come from peers.
//!
//! Every path a peer names (in metadata, in a package member, in a merged-file record) is a path relative
//! to the install root with `/` separators. Before anything joins it to a directory it must pass
//! [`safe_relative`], so that no peer can reach outside the directory it is joined to, and it must belong
//! to a synchronised item ([`item_for`]) before the file is created, overwritten or deleted.

use crate::config::{FileSelection, FilesTable, ItemSpec};

/// Longest path accepted from a peer, in bytes (Linux's `PATH_MAX`).
pub const PATH_BYTES_MAX: usize = 4096;

/// Why a peer's path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty path")]
    Empty,
    #[error("absolute path '{0}'")]
    Absolute(String),
    #[error("path of {len} bytes is longer than {PATH_BYTES_MAX}")]
    TooLong { len: usize },
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path '{0}' contains a backslash")]
    Backslash(String),
    /// An empty, `.` or `..` component: the path is not in its simplest form or climbs out.
    #[error("path '{path}' has a '{component}' component")]
    Component { path: String, component: String },
}

/// Checks that `name` is a plain relative path: not empty, not absolute, no empty, `.` or `..` component,
/// no NUL byte, no backslash, at most [`PATH_BYTES_MAX`] bytes. Returns it unchanged.
///
/// Refusing rather than normalising keeps one spelling per file, so two spellings cannot name the same
/// file in one package or metadata object.
pub fn safe_relative(name: &str) -> Result<&str, PathError> {
    if name.is_empty() {
        return Err(PathError::Empty);
    }
    if name.len() > PATH_BYTES_MAX {
        return Err(PathError::TooLong { len: name.len() });
    }
    if name.contains('\0') {
        return Err(PathError::Nul);
    }
    if name.starts_with('/') {
        return Err(PathError::Absolute(name.to_string()));
    }
    if name.contains('\\') {
        return Err(PathError::Backslash(name.to_string()));
    }
    if let Some(bad) = name
        .split('/')
        .find(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err(PathError::Component {
            path: name.to_string(),
            component: bad.to_string(),
        });
    }
    Ok(name)
}

/// The item of the files table that `rel` belongs to, if any.
///
/// A file belongs to an item when the item's key is a prefix of its path, the item is recursive or the
/// file lies directly in the key's directory, and the item selects all files or lists the file's name.
/// Excluded names and name endings belong to no item. When nested items both accept a file, the one with
/// the longest key wins: that is the item whose walk a node lists the file under last. An unsafe path
/// belongs to no item.
pub fn item_for<'a>(rel: &str, files: &'a FilesTable) -> Option<&'a ItemSpec> {
    safe_relative(rel).ok()?;
    let name = rel.rsplit('/').next()?;
    if is_excluded(name, files) {
        return None;
    }
    files
        .items
        .iter()
        .filter(|item| accepts(item, rel, name))
        .max_by_key(|item| item.key.len())
}

/// Whether a file name is skipped in every item (`excluded_files`, `excluded_extensions`).
pub fn is_excluded(name: &str, files: &FilesTable) -> bool {
    files.excluded_files.iter().any(|f| f == name)
        || files
            .excluded_extensions
            .iter()
            .any(|ext| name.ends_with(ext.as_str()))
}

fn accepts(item: &ItemSpec, rel: &str, name: &str) -> bool {
    let Some(rest) = rel.strip_prefix(item.key.as_str()) else {
        return false;
    };
    // A key is a directory ending with `/`; a key without one must still match whole components.
    if rest.is_empty() || (!item.key.ends_with('/') && !rest.starts_with('/')) {
        return false;
    }
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if !item.recursive && rest.contains('/') {
        return false;
    }
    match &item.files {
        FileSelection::All => true,
        FileSelection::Names(names) => names.iter().any(|n| n == name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClusterJson, Dialect};

    fn table(dialect: Dialect) -> FilesTable {
        ClusterJson::defaults(dialect).files
    }

    #[test]
    fn plain_relative_paths_pass_unchanged() {
        for ok in [
            "etc/client.keys",
            "etc/shared/default/agent.conf",
            "a",
            ".hidden/x..y",
            "queue/agent-groups/001",
        ] {
            assert_eq!(safe_relative(ok), Ok(ok));
        }
    }

    #[test]
    fn escaping_or_ambiguous_paths_are_refused() {
        assert_eq!(safe_relative(""), Err(PathError::Empty));
        assert_eq!(
            safe_relative("/etc/passwd"),
            Err(PathError::Absolute("/etc/passwd".into()))
        );
        assert_eq!(safe_relative("a\0b"), Err(PathError::Nul));
        assert_eq!(
            safe_relative("etc\\x"),
            Err(PathError::Backslash("etc\\x".into()))
        );
        for (bad, component) in [
            ("../etc/passwd", ".."),
            ("etc/shared/../../x", ".."),
            ("etc/./x", "."),
            ("etc//x", ""),
            ("etc/shared/", ""),
            ("..", ".."),
        ] {
            assert_eq!(
                safe_relative(bad),
                Err(PathError::Component {
                    path: bad.into(),
                    component: component.into()
                }),
                "{bad}"
            );
        }
        let long = "a/".repeat(2048) + "b";
        assert_eq!(
            safe_relative(&long),
            Err(PathError::TooLong { len: long.len() })
        );
        assert!(safe_relative(&"a".repeat(PATH_BYTES_MAX)).is_ok());
    }

    #[test]
    fn files_belong_to_the_item_that_selects_them() {
        let files = table(Dialect::V4_3);
        let key = |rel: &str| item_for(rel, &files).map(|i| i.key.as_str());
        assert_eq!(key("etc/client.keys"), Some("etc/"));
        // `etc/` is not recursive and names one file only.
        assert_eq!(key("etc/other.conf"), None);
        assert_eq!(key("etc/sub/client.keys"), None);
        assert_eq!(key("etc/shared/default/agent.conf"), Some("etc/shared/"));
        assert_eq!(key("etc/shared/agent.conf"), Some("etc/shared/"));
        assert_eq!(
            key("var/multigroups/abc/merged.mg"),
            Some("var/multigroups/")
        );
        assert_eq!(key("var/multigroups/abc/other"), None);
        assert_eq!(key("etc/rules/sub/local_rules.xml"), Some("etc/rules/"));
        assert_eq!(key("queue/agent-groups/001"), Some("queue/agent-groups/"));
        assert_eq!(key("etc/rulesx/a"), None);
        assert_eq!(key("etc/shared"), None);
        assert_eq!(key("etc/shared/../client.keys"), None);
        assert_eq!(key("var/ossec.log"), None);
        let files = table(Dialect::V4_14);
        assert_eq!(item_for("queue/agent-groups/001", &files), None);
    }

    #[test]
    fn excluded_names_belong_to_no_item() {
        let files = table(Dialect::V4_14);
        for rel in [
            "etc/shared/default/ar.conf",
            "etc/shared/ossec.conf",
            "etc/rules/local_rules.xml~",
            "etc/rules/x.swp",
            "etc/lists/a.tmp",
            "etc/decoders/b.lock",
        ] {
            assert_eq!(item_for(rel, &files), None, "{rel}");
        }
        assert!(item_for("etc/shared/default/ar.conf.bak", &files).is_some());
    }

    #[test]
    fn nested_items_prefer_the_longest_key_that_accepts() {
        let mut files = table(Dialect::V4_14);
        if let Some(etc) = files.items.iter_mut().find(|i| i.key == "etc/") {
            etc.recursive = true;
            etc.files = FileSelection::All;
        }
        if let Some(shared) = files.items.iter_mut().find(|i| i.key == "etc/shared/") {
            shared.files = FileSelection::Names(vec!["agent.conf".into()]);
        }
        let key = |rel: &str| item_for(rel, &files).map(|i| i.key.as_str());
        assert_eq!(key("etc/shared/default/agent.conf"), Some("etc/shared/"));
        assert_eq!(key("etc/shared/default/other.txt"), Some("etc/"));
        assert_eq!(key("etc/rules/a.xml"), Some("etc/rules/"));
    }
}
