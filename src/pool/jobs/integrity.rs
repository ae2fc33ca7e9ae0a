//! Local integrity: the master's snapshot, and the metadata package a worker sends.

use std::sync::Arc;

use super::files::{create_package, PackageWriter};
use crate::clog_warn;
use crate::pool::integrity::{local_integrity, IntegrityReport};
use crate::pool::runner::Shared;
use crate::proto::jobs::{JobOutcome, Package};
use crate::sync::metadata;

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
    let mut snapshot = shared
        .snapshot
        .write()
        .map_err(|_| "the snapshot is poisoned".to_string())?;
    *snapshot = Arc::new(report.metadata);
    Ok(JobOutcome::LocalIntegrity { files, hashed })
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
