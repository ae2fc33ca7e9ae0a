//! Local integrity: the master's snapshot, and the metadata package a worker sends.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::files::{create_package, PackageWriter};
use crate::clog_warn;
use crate::pool::client_keys::agent_ids;
use crate::pool::hash::{hash_bytes, open_regular};
use crate::pool::integrity::{local_integrity, IntegrityReport};
use crate::pool::runner::Shared;
use crate::proto::jobs::{AgentKeys, JobOutcome, Package};
use crate::sync::{metadata, HashKind};

/// Where the agent keys live, relative to the install root.
const CLIENT_KEYS: &str = "etc/client.keys";

fn walk(shared: &Shared, master: bool) -> Result<IntegrityReport, String> {
    let env = &shared.env;
    let cache = if master {
        &shared.master_cache
    } else {
        &shared.own_cache
    };
    let mut cache = cache
        .lock()
        .map_err(|_| "the integrity cache is poisoned".to_string())?;
    let report = local_integrity(&env.home, &env.files, env.hash(), env.dialect, &mut cache);
    let tag = if master {
        "Master".to_string()
    } else {
        format!("Worker {}", env.node_name)
    };
    let subtag = if master {
        "Local integrity"
    } else {
        "Integrity check"
    };
    for (path, error) in &report.unreadable {
        clog_warn!(tag, subtag, "Can't read metadata from file {path}: {error}");
    }
    Ok(report)
}

/// Master: recomputes the snapshot every worker is compared against.
pub(crate) fn local(shared: &Shared) -> Result<JobOutcome, String> {
    let report = walk(shared, true)?;
    let (files, hashed) = (report.files, report.hashed);
    let client_keys = report.metadata.get(CLIENT_KEYS).map(|m| m.digest.clone());
    {
        let mut snapshot = shared
            .snapshot
            .write()
            .map_err(|_| "the snapshot is poisoned".to_string())?;
        *snapshot = Arc::new(report.metadata);
    }
    let agent_keys = changed_agent_keys(shared, &client_keys);
    Ok(JobOutcome::LocalIntegrity {
        files,
        hashed,
        client_keys,
        agent_keys,
    })
}

/// The agents of `etc/client.keys` when its digest differs from the one last reported; the agent
/// groups sent to a worker are limited to the agents whose key it holds.
fn changed_agent_keys(shared: &Shared, digest: &Option<String>) -> Option<AgentKeys> {
    let env = &shared.env;
    let mut last = shared.client_keys_read.lock().ok()?;
    if last.as_ref() == Some(digest) {
        return None;
    }
    match read_agent_keys(&env.home, env.hash()) {
        Ok(keys) => {
            // The file may have changed since it was hashed: what is remembered is what was read.
            *last = Some(keys.digest.clone());
            Some(keys)
        }
        Err(e) => {
            clog_warn!(
                "Master",
                "Local integrity",
                "Can't read the agents of {CLIENT_KEYS}: {e}"
            );
            None
        }
    }
}

/// Reads `etc/client.keys` once, so the ids and the digest describe the same bytes.
fn read_agent_keys(home: &Path, kind: HashKind) -> std::io::Result<AgentKeys> {
    let (mut file, meta) = match open_regular(&home.join(CLIENT_KEYS)) {
        Ok(found) => found,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(AgentKeys {
                digest: None,
                ids: Arc::default(),
            })
        }
        Err(e) => return Err(e),
    };
    let mut content = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut content)?;
    Ok(AgentKeys {
        digest: Some(hash_bytes(&content, kind)),
        ids: Arc::new(agent_ids(&content)),
    })
}

/// Worker: computes its own metadata and writes it as a metadata-only package.
pub(crate) fn worker_package(shared: &Shared, rel: &str) -> Result<JobOutcome, String> {
    let env = &shared.env;
    let report = walk(shared, false)?;
    let json = metadata::to_json(&report.metadata, env.hash()).to_string();
    let file = create_package(&env.home, rel)?;
    let bytes = PackageWriter::new(env.dialect, file, env.compress_level, env.max_zip_size)
        .finish(json.as_bytes())?;
    Ok(JobOutcome::WorkerPackage {
        files: report.files,
        package: Package {
            rel: rel.to_string(),
            bytes,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::hash_file;

    #[test]
    fn the_agent_keys_and_their_digest_come_from_the_same_read() {
        let home = tempfile::tempdir().unwrap();
        let none = read_agent_keys(home.path(), HashKind::Blake2b512).unwrap();
        assert_eq!((none.digest, none.ids.len()), (None, 0));
        std::fs::create_dir(home.path().join("etc")).unwrap();
        let path = home.path().join(CLIENT_KEYS);
        std::fs::write(
            &path,
            "001 a1 any k1\n002 !a2 any k2\n010 a10 10.0.0.1 k10\n",
        )
        .unwrap();
        let keys = read_agent_keys(home.path(), HashKind::Blake2b512).unwrap();
        assert_eq!(
            keys.digest.unwrap(),
            hash_file(&path, HashKind::Blake2b512).unwrap()
        );
        assert_eq!(*keys.ids, [1, 10].into_iter().collect());
    }
}
