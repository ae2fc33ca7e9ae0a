//! Where a Wazuh install keeps the framework's own `cluster.json`. A manager ships the file inside
//! its Python framework package, and operators tune timers there; a drop-in daemon must read the
//! same file or their tuning would silently stop working. The package sits in the framework's
//! interpreter (`framework/python/lib/python3.X/site-packages/`, as a plain package or an egg), or
//! in the source layout (`framework/wazuh/`).

use std::path::{Path, PathBuf};

/// The framework's `cluster.json` under `home`, if this install has one.
pub fn framework_cluster_json(home: &Path) -> Option<PathBuf> {
    const INSIDE: &str = "wazuh/core/cluster/cluster.json";
    let mut candidates = Vec::new();
    for lib in children(&home.join("framework/python/lib"), |n| {
        n.starts_with("python3")
    }) {
        let site = lib.join("site-packages");
        candidates.push(site.join(INSIDE));
        candidates.extend(
            children(&site, |n| n.starts_with("wazuh-") && n.ends_with(".egg"))
                .into_iter()
                .map(|egg| egg.join(INSIDE)),
        );
    }
    candidates.push(home.join("framework").join(INSIDE));
    candidates.into_iter().find(|path| path.is_file())
}

/// Entries of `dir` whose names pass `keep`, sorted (newest Python last, so the first match is
/// deterministic).
fn children(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(&keep))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_installed_package_the_egg_or_the_source_layout() {
        let home = tempfile::tempdir().unwrap();
        assert_eq!(framework_cluster_json(home.path()), None);

        let source = home
            .path()
            .join("framework/wazuh/core/cluster/cluster.json");
        std::fs::create_dir_all(source.parent().unwrap()).unwrap();
        std::fs::write(&source, "{}").unwrap();
        assert_eq!(framework_cluster_json(home.path()), Some(source));

        let egg = home.path().join(
            "framework/python/lib/python3.10/site-packages/wazuh-4.14.7-py3.10.egg/wazuh/core/cluster/cluster.json",
        );
        std::fs::create_dir_all(egg.parent().unwrap()).unwrap();
        std::fs::write(&egg, "{}").unwrap();
        assert_eq!(framework_cluster_json(home.path()), Some(egg));

        let package = home
            .path()
            .join("framework/python/lib/python3.10/site-packages/wazuh/core/cluster/cluster.json");
        std::fs::create_dir_all(package.parent().unwrap()).unwrap();
        std::fs::write(&package, "{}").unwrap();
        assert_eq!(framework_cluster_json(home.path()), Some(package));
    }
}
