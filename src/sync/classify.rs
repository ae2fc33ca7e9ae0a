//! The master's comparison of a worker's metadata with its own (PROTOCOL.md §4.1.3, §4.1.10).
//!
//! The result says what the worker must create (`missing`), delete (`extra`) and overwrite (`shared`),
//! and, in the 4.3 dialect, which worker-only files of extra-valid items the master wants to receive
//! (`extra_valid`). Decisions about a worker's path are taken from the master's own files table and the
//! path itself, never from the item key the worker claims: a path that belongs to no item of the master
//! is left alone rather than deleted.

use serde_json::{Map, Value};

use super::metadata::{self, FileMeta, HashKind, Metadata, MetadataError};
use super::paths::item_for;
use crate::config::{Dialect, FilesTable};

/// The extra-valid item of the 4.3 dialect: one file per agent, named by the agent id.
pub const AGENT_GROUPS_KEY: &str = "queue/agent-groups/";
/// Merge type of the agent-groups merged files.
pub const AGENT_GROUPS_MERGE_TYPE: &str = "agent-groups";

/// Files that differ between master and worker, by what the worker must do with them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Classification {
    /// On the master only: the worker creates them (master metadata).
    pub missing: Metadata,
    /// On the worker only, in an item that is not extra-valid: the worker deletes them (worker metadata).
    pub extra: Metadata,
    /// On both with different digests: the worker overwrites them (master metadata).
    pub shared: Metadata,
    /// 4.3: on the worker only, in an extra-valid item: the worker sends them (worker metadata).
    pub extra_valid: Metadata,
    /// 4.3, master side: differing files of extra-valid items. They travel merged into one file, whose
    /// entry [`Classification::insert_merged_shared`] adds to `shared` once the caller has built it.
    pub shared_to_merge: Vec<String>,
}

/// Sizes of the groups, as the logs and the status report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub missing: usize,
    pub extra: usize,
    /// Differing files: on the master the files behind a merged entry count one by one.
    pub shared: usize,
    pub extra_valid: usize,
}

/// A classification received from the master could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error("classification is not valid JSON: {0}")]
    Json(String),
    #[error("classification must be a JSON object")]
    NotAnObject,
    #[error("classification has no '{0}' group")]
    MissingGroup(&'static str),
    #[error("'{group}' group of the classification: {source}")]
    Group {
        group: &'static str,
        #[source]
        source: MetadataError,
    },
}

/// Compares the master's metadata with a worker's.
///
/// `agent_exists` answers whether an agent id (the file name of an `queue/agent-groups/` file) is known
/// to the master; agent-group files of unknown agents are not requested (4.3).
pub fn classify(
    master: &Metadata,
    worker: &Metadata,
    files: &FilesTable,
    dialect: Dialect,
    agent_exists: &dyn Fn(&str) -> bool,
) -> Classification {
    let mut c = Classification::default();
    for (path, meta) in master {
        if !worker.contains_key(path) {
            c.missing.insert(path.clone(), meta.clone());
        }
    }
    for (path, theirs) in worker {
        let extra_valid_item = || item_for(path, files).map(|item| item.extra_valid);
        match master.get(path) {
            None => match extra_valid_item() {
                None => {}
                Some(false) => {
                    c.extra.insert(path.clone(), theirs.clone());
                }
                // 4.14 keeps extra-valid files where they are and asks for nothing.
                Some(true) if dialect == Dialect::V4_3 => {
                    let wanted = match path.strip_prefix(AGENT_GROUPS_KEY) {
                        Some(rest) => agent_exists(rest.rsplit('/').next().unwrap_or(rest)),
                        None => true,
                    };
                    if wanted {
                        c.extra_valid.insert(path.clone(), theirs.clone());
                    }
                }
                Some(true) => {}
            },
            Some(ours) if ours.digest != theirs.digest => {
                // 4.14 has no extra-valid exchange: the master's copy simply overwrites the worker's.
                if dialect == Dialect::V4_3 && extra_valid_item() == Some(true) {
                    c.shared_to_merge.push(path.clone());
                } else {
                    c.shared.insert(path.clone(), ours.clone());
                }
            }
            Some(_) => {}
        }
    }
    c
}

/// Where a 4.3 master puts the merged file of `shared_to_merge` for `worker`, relative to the install root.
pub fn merged_shared_path(worker: &str) -> String {
    format!("queue/cluster/{worker}/agent-groups-shared.merged")
}

/// The `shared` entry a 4.3 master sends for the merged file of `shared_to_merge`.
///
/// On the wire it is `{"cluster_item_key": "queue/agent-groups/", "merged": true, "merge-type":
/// "agent-groups"}` (hyphen, no mod_time, no digest). In memory it is a merged [`FileMeta`] with an empty
/// digest, the same value [`metadata::from_json`] reads from that JSON; such entries are written back in
/// that shape.
pub fn merged_shared_entry(worker: &str) -> (String, FileMeta) {
    (
        merged_shared_path(worker),
        FileMeta {
            mod_time: 0.0,
            cluster_item_key: AGENT_GROUPS_KEY.to_string(),
            merged: true,
            merge_type: Some(AGENT_GROUPS_MERGE_TYPE.to_string()),
            merge_name: None,
            digest: String::new(),
        },
    )
}

/// Whether an entry is a master's merged entry (a walked file always has a digest).
fn is_master_merged(meta: &FileMeta) -> bool {
    meta.merged && meta.digest.is_empty()
}

fn entry_json(meta: &FileMeta, hash: HashKind) -> Value {
    if !is_master_merged(meta) {
        return meta.to_json(hash);
    }
    let mut m = Map::new();
    m.insert(
        "cluster_item_key".into(),
        Value::from(meta.cluster_item_key.clone()),
    );
    m.insert("merged".into(), Value::from(true));
    if let Some(t) = &meta.merge_type {
        m.insert("merge-type".into(), Value::from(t.clone()));
    }
    Value::Object(m)
}

fn group_json(group: &Metadata, hash: HashKind) -> Value {
    Value::Object(
        group
            .iter()
            .map(|(path, meta)| (path.clone(), entry_json(meta, hash)))
            .collect(),
    )
}

impl Classification {
    /// Adds the merged entry of `shared_to_merge` to `shared` and returns its path: the caller writes
    /// the merged file there and packs it like any other shared file.
    pub fn insert_merged_shared(&mut self, worker: &str) -> String {
        let (path, entry) = merged_shared_entry(worker);
        self.shared.insert(path.clone(), entry);
        path
    }

    /// Paths whose content the master packs: `missing` and `shared`.
    pub fn to_send(&self) -> impl Iterator<Item = &str> {
        self.missing
            .keys()
            .chain(self.shared.keys())
            .map(String::as_str)
    }

    /// Records that a file could not be packed (§4.1.5): it leaves `missing` and `shared`; a shared file
    /// that no longer exists or cannot be read on the master moves to `extra`, so the worker deletes it.
    /// A file skipped only for size stays out of both until a later round.
    pub fn drop_unsent(&mut self, path: &str, still_exists: bool) {
        if self.missing.remove(path).is_some() {
            return;
        }
        if let Some(meta) = self.shared.remove(path) {
            if !still_exists {
                self.extra.insert(path.to_string(), meta);
            }
        }
    }

    /// The classification as the master sends it: `missing`, `extra`, `shared` and, in 4.3,
    /// `extra_valid`.
    pub fn to_json(&self, hash: HashKind, dialect: Dialect) -> Value {
        let mut m = Map::new();
        m.insert("missing".into(), group_json(&self.missing, hash));
        m.insert("extra".into(), group_json(&self.extra, hash));
        m.insert("shared".into(), group_json(&self.shared, hash));
        if dialect == Dialect::V4_3 {
            m.insert("extra_valid".into(), group_json(&self.extra_valid, hash));
        }
        Value::Object(m)
    }

    /// Reads the classification a master sent. `extra_valid` is required in 4.3 and ignored in 4.14.
    pub fn from_json(
        value: &Value,
        hash: HashKind,
        dialect: Dialect,
    ) -> Result<Classification, ClassifyError> {
        let obj = value.as_object().ok_or(ClassifyError::NotAnObject)?;
        let group = |name: &'static str| -> Result<Metadata, ClassifyError> {
            let v = obj.get(name).ok_or(ClassifyError::MissingGroup(name))?;
            metadata::from_json(v, hash).map_err(|source| ClassifyError::Group {
                group: name,
                source,
            })
        };
        Ok(Classification {
            missing: group("missing")?,
            extra: group("extra")?,
            shared: group("shared")?,
            extra_valid: match dialect {
                Dialect::V4_3 => group("extra_valid")?,
                Dialect::V4_14 => Metadata::new(),
            },
            shared_to_merge: Vec::new(),
        })
    }

    /// Parses the classification bytes (the `files_metadata.json` of a master's package).
    pub fn parse(
        bytes: &[u8],
        hash: HashKind,
        dialect: Dialect,
    ) -> Result<Classification, ClassifyError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ClassifyError::Json(e.to_string()))?;
        Classification::from_json(&value, hash, dialect)
    }

    pub fn counts(&self) -> Counts {
        let shared = if self.shared_to_merge.is_empty() {
            self.shared.len()
        } else {
            let merged = self.shared.values().filter(|m| is_master_merged(m)).count();
            self.shared.len() - merged + self.shared_to_merge.len()
        };
        Counts {
            missing: self.missing.len(),
            extra: self.extra.len(),
            shared,
            extra_valid: self.extra_valid.len(),
        }
    }

    /// In sync: nothing missing, extra, shared or extra-valid.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.extra.is_empty()
            && self.shared.is_empty()
            && self.extra_valid.is_empty()
            && self.shared_to_merge.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClusterJson;

    fn meta(key: &str, digest: &str) -> FileMeta {
        FileMeta {
            mod_time: 1712000000.0,
            cluster_item_key: key.into(),
            merged: false,
            merge_type: None,
            merge_name: None,
            digest: digest.into(),
        }
    }

    fn tree(entries: &[(&str, &str, &str)]) -> Metadata {
        entries
            .iter()
            .map(|(path, key, digest)| (path.to_string(), meta(key, digest)))
            .collect()
    }

    fn files(dialect: Dialect) -> FilesTable {
        ClusterJson::defaults(dialect).files
    }

    fn keys(m: &Metadata) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    #[test]
    fn groups_follow_presence_and_digest() {
        let master = tree(&[
            ("etc/client.keys", "etc/", "a"),
            ("etc/rules/local_rules.xml", "etc/rules/", "b"),
            ("etc/shared/default/agent.conf", "etc/shared/", "c"),
        ]);
        let mut worker = tree(&[
            ("etc/client.keys", "etc/", "a"),
            ("etc/rules/local_rules.xml", "etc/rules/", "B"),
            ("etc/decoders/old.xml", "etc/decoders/", "d"),
            // Not selected by any item of the master: left alone.
            ("etc/shared/default/ar.conf", "etc/shared/", "e"),
            ("var/db/global.db", "etc/", "f"),
            ("etc/../etc/passwd", "etc/", "g"),
        ]);
        // mod_time is not compared.
        if let Some(m) = worker.get_mut("etc/client.keys") {
            m.mod_time = 1.0;
        }
        for dialect in [Dialect::V4_3, Dialect::V4_14] {
            let c = classify(&master, &worker, &files(dialect), dialect, &|_| true);
            assert_eq!(keys(&c.missing), ["etc/shared/default/agent.conf"]);
            assert_eq!(keys(&c.extra), ["etc/decoders/old.xml"]);
            assert_eq!(keys(&c.shared), ["etc/rules/local_rules.xml"]);
            assert_eq!(c.shared["etc/rules/local_rules.xml"].digest, "b");
            assert_eq!(c.extra["etc/decoders/old.xml"].digest, "d");
            assert!(c.extra_valid.is_empty() && c.shared_to_merge.is_empty());
            assert!(!c.is_empty());
            assert_eq!(
                c.counts(),
                Counts {
                    missing: 1,
                    extra: 1,
                    shared: 1,
                    extra_valid: 0
                }
            );
            let mut sent: Vec<&str> = c.to_send().collect();
            sent.sort_unstable();
            assert_eq!(
                sent,
                ["etc/rules/local_rules.xml", "etc/shared/default/agent.conf"]
            );
        }
        let same = classify(
            &master,
            &master,
            &files(Dialect::V4_14),
            Dialect::V4_14,
            &|_| true,
        );
        assert!(same.is_empty());
    }

    #[test]
    fn extra_valid_files_are_requested_in_4_3_for_known_agents_only() {
        let master = tree(&[
            ("queue/agent-groups/001", AGENT_GROUPS_KEY, "x"),
            ("queue/agent-groups/002", AGENT_GROUPS_KEY, "y"),
        ]);
        let worker = tree(&[
            ("queue/agent-groups/001", AGENT_GROUPS_KEY, "X"),
            ("queue/agent-groups/002", AGENT_GROUPS_KEY, "y"),
            ("queue/agent-groups/003", AGENT_GROUPS_KEY, "z"),
            ("queue/agent-groups/004", AGENT_GROUPS_KEY, "w"),
        ]);
        let c = classify(
            &master,
            &worker,
            &files(Dialect::V4_3),
            Dialect::V4_3,
            &|id| id == "003",
        );
        assert_eq!(keys(&c.extra_valid), ["queue/agent-groups/003"]);
        assert!(c.extra.is_empty() && c.shared.is_empty());
        assert_eq!(c.shared_to_merge, ["queue/agent-groups/001"]);
        assert_eq!(c.counts().shared, 1);
        assert!(!c.is_empty());

        // With the item configured in 4.14, worker-only files are kept and nothing is requested.
        let mut table = files(Dialect::V4_14);
        table.items.extend(
            files(Dialect::V4_3)
                .items
                .into_iter()
                .filter(|i| i.key == AGENT_GROUPS_KEY),
        );
        let c = classify(&master, &worker, &table, Dialect::V4_14, &|_| true);
        assert!(c.extra.is_empty() && c.extra_valid.is_empty());
        assert_eq!(keys(&c.shared), ["queue/agent-groups/001"]);
        assert!(c.shared_to_merge.is_empty());
    }

    #[test]
    fn merged_shared_entry_has_the_4_3_master_shape() {
        let mut c = Classification {
            shared_to_merge: vec![
                "queue/agent-groups/001".into(),
                "queue/agent-groups/002".into(),
            ],
            ..Classification::default()
        };
        c.shared
            .insert("etc/client.keys".into(), meta("etc/", "abc"));
        let path = c.insert_merged_shared("worker1");
        assert_eq!(path, "queue/cluster/worker1/agent-groups-shared.merged");
        assert_eq!(c.counts().shared, 3);
        let json = c.to_json(HashKind::Md5, Dialect::V4_3);
        assert_eq!(
            json["shared"][&path].to_string(),
            r#"{"cluster_item_key":"queue/agent-groups/","merged":true,"merge-type":"agent-groups"}"#
        );
        assert_eq!(json["shared"]["etc/client.keys"]["md5"], "abc");

        // The worker reads it back and counts the merged entry as one.
        let back = Classification::parse(json.to_string().as_bytes(), HashKind::Md5, Dialect::V4_3)
            .unwrap();
        assert_eq!(back.shared[&path], merged_shared_entry("worker1").1);
        assert_eq!(back.counts().shared, 2);
        assert_eq!(
            back.to_json(HashKind::Md5, Dialect::V4_3)["shared"][&path],
            json["shared"][&path]
        );
    }

    #[test]
    fn json_groups_per_dialect() {
        let c = Classification {
            missing: tree(&[("etc/client.keys", "etc/", "a")]),
            extra_valid: tree(&[("queue/agent-groups/001", AGENT_GROUPS_KEY, "b")]),
            ..Classification::default()
        };
        let j43 = c.to_json(HashKind::Md5, Dialect::V4_3);
        let names: Vec<&String> = j43.as_object().unwrap().keys().collect();
        assert_eq!(names, ["missing", "extra", "shared", "extra_valid"]);
        let back = Classification::from_json(&j43, HashKind::Md5, Dialect::V4_3).unwrap();
        assert_eq!(back, c);

        let j414 = c.to_json(HashKind::Blake2b512, Dialect::V4_14);
        let names: Vec<&String> = j414.as_object().unwrap().keys().collect();
        assert_eq!(names, ["missing", "extra", "shared"]);
        assert_eq!(j414["missing"]["etc/client.keys"]["hash"], "a");
        let back = Classification::from_json(&j414, HashKind::Blake2b512, Dialect::V4_14).unwrap();
        assert_eq!(back.missing, c.missing);
        assert!(back.extra_valid.is_empty());
        assert_eq!(
            Classification::from_json(&j414, HashKind::Blake2b512, Dialect::V4_3),
            Err(ClassifyError::MissingGroup("extra_valid"))
        );
    }

    #[test]
    fn malformed_classifications_are_refused() {
        let parse = |s: &str| Classification::parse(s.as_bytes(), HashKind::Md5, Dialect::V4_14);
        assert!(matches!(parse("{"), Err(ClassifyError::Json(_))));
        assert_eq!(parse("[]"), Err(ClassifyError::NotAnObject));
        assert_eq!(
            parse(r#"{"missing": {}, "extra": {}}"#),
            Err(ClassifyError::MissingGroup("shared"))
        );
        assert!(matches!(
            parse(r#"{"missing": {"etc/x": {"mod_time": 1}}, "extra": {}, "shared": {}}"#),
            Err(ClassifyError::Group {
                group: "missing",
                ..
            })
        ));
    }

    #[test]
    fn unsent_files_leave_the_classification() {
        let mut c = Classification {
            missing: tree(&[("etc/a", "etc/", "1")]),
            shared: tree(&[("etc/b", "etc/", "2"), ("etc/c", "etc/", "3")]),
            ..Classification::default()
        };
        c.drop_unsent("etc/a", false);
        c.drop_unsent("etc/b", true);
        c.drop_unsent("etc/c", false);
        assert!(c.missing.is_empty() && c.shared.is_empty());
        assert_eq!(keys(&c.extra), ["etc/c"]);
    }
}
