//! Worker: open the master's package and apply it (PROTOCOL.md §4.1.7); in the 4.3 dialect, gather the
//! extra-valid files the master asked for (§4.1.10).

use std::fs::{self, File};
use std::path::Path;

use serde_json::json;

use super::files::{create_package, with_unpacked, write_merged, PackageWriter};
use crate::config::Dialect;
use crate::pool::apply::{apply, ApplyPlan};
use crate::pool::runner::Shared;
use crate::proto::jobs::{JobOutcome, Package};
use crate::sync::classify::{Classification, AGENT_GROUPS_KEY, AGENT_GROUPS_MERGE_TYPE};
use crate::sync::merged::{MergedLimits, MergedReader};
use crate::sync::{item_for, FileMeta};

pub(crate) fn apply_package(
    shared: &Shared,
    rel: &str,
    extra_valid_rel: &str,
) -> Result<JobOutcome, String> {
    let env = &shared.env;
    with_unpacked(env, rel, |dir, metadata| {
        let class =
            Classification::parse(metadata, env.hash(), env.dialect).map_err(|e| e.to_string())?;
        apply_classification(shared, &class, dir, extra_valid_rel)
    })
}

/// The item the master says a path belongs to must be the one it belongs to here.
fn item_matches(shared: &Shared, path: &str, meta: &FileMeta) -> bool {
    item_for(path, &shared.env.files).is_some_and(|item| item.key == meta.cluster_item_key)
}

fn apply_classification(
    shared: &Shared,
    class: &Classification,
    dir: &Path,
    extra_valid_rel: &str,
) -> Result<JobOutcome, String> {
    let env = &shared.env;
    let mut errors = Vec::new();
    let mut writes = Vec::new();
    for (path, meta) in class.missing.iter().chain(class.shared.iter()) {
        if meta.merged {
            match split_merged(shared, dir, path) {
                Ok(files) => writes.extend(files),
                Err(e) => errors.push(format!("{path}: {e}")),
            }
        } else if item_matches(shared, path, meta) {
            writes.push(path.clone());
        } else {
            errors.push(format!(
                "{path}: refused, it does not belong to item {}",
                meta.cluster_item_key
            ));
        }
    }
    let mut deletes = Vec::new();
    for (path, meta) in &class.extra {
        if item_matches(shared, path, meta) {
            deletes.push(path.clone());
        } else {
            errors.push(format!(
                "{path}: not deleted, it does not belong to item {}",
                meta.cluster_item_key
            ));
        }
    }
    let report = apply(
        &env.home,
        dir,
        &ApplyPlan { writes, deletes },
        &env.files,
        &env.policy,
    );
    errors.extend(
        report
            .refused
            .iter()
            .chain(report.errors.iter())
            .map(|(path, why)| format!("{path}: {why}")),
    );
    let (extra_valid_files, extra_valid) =
        if env.dialect == Dialect::V4_3 && !class.extra_valid.is_empty() {
            let files = class.extra_valid.len();
            (
                files,
                Some(extra_valid_package(shared, class, extra_valid_rel)?),
            )
        } else {
            (0, None)
        };
    crate::metrics::Metrics::global()
        .files_applied((report.created + report.updated) as u64, report.bytes);
    Ok(JobOutcome::Apply {
        created: report.created,
        updated: report.updated,
        deleted: report.deleted,
        extra_valid_files,
        extra_valid,
        errors,
        warnings: report.warnings,
    })
}

/// 4.3: a merged agent-groups file from the master, split into `queue/agent-groups/<agent>` files of
/// the unpack directory so they are applied like the rest.
fn split_merged(shared: &Shared, dir: &Path, path: &str) -> Result<Vec<String>, String> {
    let file = File::open(dir.join(path)).map_err(|e| format!("merged file missing: {e}"))?;
    let target = dir.join(AGENT_GROUPS_KEY);
    fs::create_dir_all(&target).map_err(|e| e.to_string())?;
    let mut reader = MergedReader::new(file, MergedLimits::default());
    let mut files = Vec::new();
    while let Some(record) = reader.next_record().map_err(|e| e.to_string())? {
        fs::write(target.join(&record.name), &record.content).map_err(|e| e.to_string())?;
        files.push(format!("{AGENT_GROUPS_KEY}{}", record.name));
    }
    let _ = shared;
    Ok(files)
}

/// 4.3: the worker-only agent-group files the master asked for, merged into one file and packed.
fn extra_valid_package(
    shared: &Shared,
    class: &Classification,
    rel: &str,
) -> Result<Package, String> {
    let env = &shared.env;
    let merged_rel = format!("queue/cluster/{}/agent-groups.merged", env.node_name);
    let merged_path = env.home.join(&merged_rel);
    write_merged(
        &env.home,
        env.dialect,
        &merged_path,
        class.extra_valid.keys(),
    )?;
    let metadata = json!({ merged_rel.clone(): {
        "merged": true, "merge_type": AGENT_GROUPS_MERGE_TYPE, "merge_name": merged_rel, "cluster_item_key": AGENT_GROUPS_KEY
    }});
    let built = (|| {
        let mut content = File::open(&merged_path).map_err(|e| e.to_string())?;
        let size = content.metadata().map_err(|e| e.to_string())?.len();
        let mut writer = PackageWriter::new(
            env.dialect,
            create_package(&env.home, rel)?,
            env.compress_level,
            env.max_zip_size,
        );
        writer.add_file(&merged_rel, size, &mut content)?;
        writer.finish(metadata.to_string().as_bytes())
    })();
    let _ = fs::remove_file(&merged_path);
    Ok(Package {
        rel: rel.to_string(),
        bytes: built?,
    })
}
