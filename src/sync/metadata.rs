//! File metadata as nodes exchange it in `files_metadata.json` (PROTOCOL.md §4.1.2): per relative path,
//! `mod_time`, `cluster_item_key`, `merged` (with `merge_type`, `merge_name`) and the content digest,
//! MD5 under `md5` in the 4.3 dialect, BLAKE2b-512 under `hash` in the 4.14 dialect.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::Dialect;

/// The content digest a dialect uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    Md5,
    Blake2b512,
}

impl HashKind {
    pub fn of(dialect: Dialect) -> HashKind {
        match dialect {
            Dialect::V4_3 => HashKind::Md5,
            Dialect::V4_14 => HashKind::Blake2b512,
        }
    }

    /// The JSON key of the digest.
    pub fn json_key(self) -> &'static str {
        match self {
            HashKind::Md5 => "md5",
            HashKind::Blake2b512 => "hash",
        }
    }

    /// Length of the lowercase hex digest.
    pub fn hex_len(self) -> usize {
        match self {
            HashKind::Md5 => 32,
            HashKind::Blake2b512 => 128,
        }
    }
}

/// What a node knows of one synced file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileMeta {
    /// Modification time, seconds since the epoch (as Python's `os.path.getmtime`).
    pub mod_time: f64,
    /// The `files` item of cluster.json the file belongs to, e.g. `etc/shared/`.
    pub cluster_item_key: String,
    pub merged: bool,
    pub merge_type: Option<String>,
    pub merge_name: Option<String>,
    /// Lowercase hex digest of the content (MD5 or BLAKE2b-512 by dialect).
    pub digest: String,
}

/// Metadata of a whole tree, by path relative to the install root (`etc/rules/local_rules.xml`).
pub type Metadata = BTreeMap<String, FileMeta>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("files metadata is not valid JSON: {0}")]
    Json(String),
    #[error("files metadata must be a JSON object of paths")]
    NotAnObject,
    #[error("metadata of {path}: {problem}")]
    Entry { path: String, problem: String },
}

impl FileMeta {
    /// The entry as stock nodes write it, keys in their order.
    pub fn to_json(&self, hash: HashKind) -> Value {
        let mut m = Map::new();
        m.insert("mod_time".into(), Value::from(self.mod_time));
        m.insert(
            "cluster_item_key".into(),
            Value::from(self.cluster_item_key.clone()),
        );
        m.insert("merged".into(), Value::from(self.merged));
        if let Some(t) = &self.merge_type {
            m.insert("merge_type".into(), Value::from(t.clone()));
        }
        if let Some(n) = &self.merge_name {
            m.insert("merge_name".into(), Value::from(n.clone()));
        }
        m.insert(hash.json_key().into(), Value::from(self.digest.clone()));
        Value::Object(m)
    }

    fn from_json(path: &str, value: &Value, hash: HashKind) -> Result<FileMeta, MetadataError> {
        let bad = |problem: &str| MetadataError::Entry {
            path: path.to_string(),
            problem: problem.to_string(),
        };
        let obj = value.as_object().ok_or_else(|| bad("not an object"))?;
        let text = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_string);
        let cluster_item_key =
            text("cluster_item_key").ok_or_else(|| bad("no cluster_item_key"))?;
        let digest = text(hash.json_key()).unwrap_or_default();
        let merged = obj.get("merged").and_then(Value::as_bool).unwrap_or(false);
        if !merged && digest.is_empty() {
            return Err(bad(&format!("no {}", hash.json_key())));
        }
        Ok(FileMeta {
            mod_time: obj.get("mod_time").and_then(Value::as_f64).unwrap_or(0.0),
            cluster_item_key,
            merged,
            // 4.3 masters spell it `merge-type` in the merged entry of a classification.
            merge_type: text("merge_type").or_else(|| text("merge-type")),
            merge_name: text("merge_name"),
            digest,
        })
    }
}

/// Serialises metadata as `files_metadata.json`.
pub fn to_json(metadata: &Metadata, hash: HashKind) -> Value {
    Value::Object(
        metadata
            .iter()
            .map(|(p, m)| (p.clone(), m.to_json(hash)))
            .collect(),
    )
}

/// Reads a metadata object (`files_metadata.json`, or one group of a classification).
pub fn from_json(value: &Value, hash: HashKind) -> Result<Metadata, MetadataError> {
    let obj = value.as_object().ok_or(MetadataError::NotAnObject)?;
    obj.iter()
        .map(|(path, entry)| Ok((path.clone(), FileMeta::from_json(path, entry, hash)?)))
        .collect()
}

/// Parses `files_metadata.json` bytes.
pub fn parse(bytes: &[u8], hash: HashKind) -> Result<Metadata, MetadataError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| MetadataError::Json(e.to_string()))?;
    from_json(&value, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(digest: &str) -> FileMeta {
        FileMeta {
            mod_time: 1712345678.1234567,
            cluster_item_key: "etc/".into(),
            merged: false,
            merge_type: None,
            merge_name: None,
            digest: digest.into(),
        }
    }

    #[test]
    fn entries_have_the_stock_key_order_and_digest_key() {
        let json = meta("abc").to_json(HashKind::Blake2b512).to_string();
        assert_eq!(
            json,
            r#"{"mod_time":1712345678.1234567,"cluster_item_key":"etc/","merged":false,"hash":"abc"}"#
        );
        let json = meta("abc").to_json(HashKind::Md5).to_string();
        assert!(json.ends_with(r#""merged":false,"md5":"abc"}"#), "{json}");
        let whole = FileMeta {
            mod_time: 1712000000.0,
            ..meta("x")
        }
        .to_json(HashKind::Md5)
        .to_string();
        assert!(whole.starts_with(r#"{"mod_time":1712000000.0,"#), "{whole}");
    }

    #[test]
    fn parse_round_trips_and_names_bad_entries() {
        let mut m = Metadata::new();
        m.insert(
            "etc/client.keys".into(),
            meta("d41d8cd98f00b204e9800998ecf8427e"),
        );
        let bytes = to_json(&m, HashKind::Md5).to_string();
        assert_eq!(parse(bytes.as_bytes(), HashKind::Md5).unwrap(), m);
        let err = parse(br#"{"etc/x": {"mod_time": 1}}"#, HashKind::Md5).unwrap_err();
        assert_eq!(err.to_string(), "metadata of etc/x: no cluster_item_key");
        let err = parse(
            br#"{"etc/x": {"cluster_item_key": "etc/", "merged": false}}"#,
            HashKind::Blake2b512,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "metadata of etc/x: no hash");
        assert_eq!(
            parse(b"[]", HashKind::Md5).unwrap_err(),
            MetadataError::NotAnObject
        );
        let merged = parse(
            br#"{"queue/cluster/w1/agent-groups.merged": {"merged": true, "merge-type": "agent-groups", "cluster_item_key": "queue/agent-groups/"}}"#,
            HashKind::Md5,
        )
        .unwrap();
        assert_eq!(
            merged.values().next().unwrap().merge_type.as_deref(),
            Some("agent-groups")
        );
    }

    /// Found by fuzzing (`fuzz/run.sh`, target `metadata`): serde_json's fast float parser did not
    /// read every `mod_time` back as written (1.700000201e215 became 1.7000002009999999e215); the
    /// `float_roundtrip` parser does.
    #[test]
    fn a_mod_time_reads_back_as_written() {
        let json = br#"{"etc/x": {"mod_time": 1.700000201e215, "cluster_item_key": "etc/", "merged": false, "md5": "a"}}"#;
        let meta = parse(json, HashKind::Md5).unwrap();
        let again = serde_json::to_vec(&to_json(&meta, HashKind::Md5)).unwrap();
        let back = parse(&again, HashKind::Md5).unwrap();
        assert_eq!(to_json(&back, HashKind::Md5), to_json(&meta, HashKind::Md5));
    }
}
