//! The custom ruleset (`etc/decoders/`, `etc/rules/`, `etc/lists/`): its digests, which the local
//! `get_hash` command and the API's ruleset synchronization status compare between nodes, and the
//! reload a worker asks analysisd for after a synchronization (`sendrreload`, Wazuh 4.13+).
//!
//! Digests are those of the integrity sync (MD5 in the 4.3 dialect, BLAKE2b-512 in 4.14), so a
//! node's `get_hash` equals the master's exactly when the sync has nothing left to do for the
//! ruleset. They come from a cache of their own: the ruleset walk must not replace the entries of
//! the full integrity walks.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::FilesTable;
use crate::pool::integrity::local_integrity;
use crate::pool::runner::Shared;
use crate::proto::jobs::RulesetReload as Reload;
use crate::store::unix::connect_within;

/// The items of the files table that hold the custom ruleset.
pub const RULESET_KEYS: [&str; 3] = ["etc/decoders/", "etc/rules/", "etc/lists/"];

/// analysisd's request socket, relative to the install root.
pub const ANALYSISD_SOCKET: &str = "queue/sockets/analysis";

/// How long analysisd may take to connect, answer and reload.
const ANALYSISD_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer read from analysisd.
const ANALYSISD_ANSWER_MAX: usize = 1 << 20;

/// Relative path → digest of every custom ruleset file of this node.
pub(in crate::pool) fn hashes(shared: &Shared) -> Result<BTreeMap<String, String>, String> {
    let env = &shared.env;
    let files = FilesTable {
        items: env
            .files
            .items
            .iter()
            .filter(|item| RULESET_KEYS.contains(&item.key.as_str()))
            .cloned()
            .collect(),
        excluded_files: env.files.excluded_files.clone(),
        excluded_extensions: env.files.excluded_extensions.clone(),
    };
    let mut cache = shared
        .ruleset_cache
        .lock()
        .map_err(|_| "the ruleset cache is poisoned".to_string())?;
    let report = local_integrity(&env.home, &files, env.hash(), env.dialect, &mut cache);
    Ok(report
        .metadata
        .into_iter()
        .map(|(rel, meta)| (rel, meta.digest))
        .collect())
}

/// The ruleset digests of this node, for distributed-API functions (none in simulations).
#[derive(Clone)]
pub struct RulesetSource {
    shared: Arc<Shared>,
}

impl RulesetSource {
    pub(in crate::pool) fn new(shared: Arc<Shared>) -> RulesetSource {
        RulesetSource { shared }
    }

    pub fn hashes(&self) -> Result<BTreeMap<String, String>, String> {
        hashes(&self.shared)
    }

    pub fn node_name(&self) -> &str {
        &self.shared.env.node_name
    }
}

/// Asks analysisd to reload the ruleset, as the 4.13+ framework does after a synchronization: one
/// JSON request (`reload-ruleset`, origin `cluster`) framed with a 4-byte little-endian length,
/// one answer framed the same way.
pub(in crate::pool) fn reload(home: &Path) -> Result<Reload, String> {
    let path = home.join(ANALYSISD_SOCKET);
    if !path.exists() {
        return Ok(Reload::NoAnalysisd);
    }
    let mut stream = connect_within(&path, ANALYSISD_TIMEOUT)
        .map_err(|e| format!("could not connect to {}: {e}", path.display()))?;
    stream
        .set_read_timeout(Some(ANALYSISD_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(ANALYSISD_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let request =
        json!({"version": 1, "origin": {"module": "cluster"}, "command": "reload-ruleset"})
            .to_string();
    let mut frame = (request.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(request.as_bytes());
    stream
        .write_all(&frame)
        .map_err(|e| format!("could not send the reload request to analysisd: {e}"))?;
    let mut header = [0u8; 4];
    stream
        .read_exact(&mut header)
        .map_err(|e| format!("analysisd gave no answer: {e}"))?;
    let len = u32::from_le_bytes(header) as usize;
    if len > ANALYSISD_ANSWER_MAX {
        return Err(format!(
            "analysisd announced a {len}-byte answer, at most {ANALYSISD_ANSWER_MAX} are read"
        ));
    }
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("analysisd's answer was cut short: {e}"))?;
    let answer: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("analysisd's answer is not JSON: {e}"))?;
    let texts = |v: &Value| -> Vec<String> {
        match v {
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect(),
            Value::String(s) if !s.is_empty() => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    let data = answer.get("data").map(texts).unwrap_or_default();
    Ok(match answer.get("error").and_then(Value::as_i64) {
        Some(0) => Reload::Done { warnings: data },
        Some(_) => Reload::Failed {
            errors: if data.is_empty() {
                vec![answer
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
                    .to_string()]
            } else {
                data
            },
        },
        None => return Err(format!("analysisd's answer has no error code: {answer}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn serve_once(home: &Path, answer: Value) -> std::thread::JoinHandle<Value> {
        std::fs::create_dir_all(home.join("queue/sockets")).unwrap();
        let listener = UnixListener::bind(home.join(ANALYSISD_SOCKET)).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut header = [0u8; 4];
            s.read_exact(&mut header).unwrap();
            let mut body = vec![0u8; u32::from_le_bytes(header) as usize];
            s.read_exact(&mut body).unwrap();
            let text = answer.to_string();
            s.write_all(&(text.len() as u32).to_le_bytes()).unwrap();
            s.write_all(text.as_bytes()).unwrap();
            serde_json::from_slice(&body).unwrap()
        })
    }

    #[test]
    fn reload_speaks_analysisd_protocol_and_reads_warnings_and_errors() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(reload(root.path()), Ok(Reload::NoAnalysisd));

        let server = serve_once(
            root.path(),
            json!({"error": 0, "message": "ok", "data": ["rule 100 overwritten"]}),
        );
        assert_eq!(
            reload(root.path()),
            Ok(Reload::Done {
                warnings: vec!["rule 100 overwritten".into()]
            })
        );
        assert_eq!(
            server.join().unwrap(),
            json!({"version": 1, "origin": {"module": "cluster"}, "command": "reload-ruleset"})
        );

        std::fs::remove_file(root.path().join(ANALYSISD_SOCKET)).unwrap();
        let server = serve_once(
            root.path(),
            json!({"error": 1, "message": "failed", "data": ["bad rule 100"]}),
        );
        assert_eq!(
            reload(root.path()),
            Ok(Reload::Failed {
                errors: vec!["bad rule 100".into()]
            })
        );
        server.join().unwrap();
    }
}
