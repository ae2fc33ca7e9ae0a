//! Master (4.3): a worker's extra-valid package, its merged agent-group files written to
//! `queue/agent-groups/` unless the master holds a newer copy (PROTOCOL.md §4.1.10).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::SystemTime;

use super::files::with_unpacked;
use crate::pool::runner::Shared;
use crate::proto::jobs::JobOutcome;
use crate::sync::classify::AGENT_GROUPS_KEY;
use crate::sync::merged::{MergedLimits, MergedReader, MergedRecord};
use crate::sync::metadata;

pub(crate) fn receive(shared: &Shared, worker: &str, rel: &str) -> Result<JobOutcome, String> {
    let env = &shared.env;
    with_unpacked(env, rel, |dir, metadata| {
        let entries = metadata::parse(metadata, env.hash()).map_err(|e| e.to_string())?;
        let mut updated = 0;
        let mut errors = Vec::new();
        for (path, meta) in &entries {
            // Only merged agent-group files may come this way; a worker never sends client.keys.
            if !meta.merged || meta.cluster_item_key != AGENT_GROUPS_KEY {
                errors.push(format!("Error 3007 - {path} is not an extra-valid file and was refused (sent by {worker})"));
                continue;
            }
            match unmerge(shared, &dir.join(path)) {
                Ok((n, errs)) => {
                    updated += n;
                    errors.extend(errs);
                }
                Err(e) => errors.push(format!("{path}: {e}")),
            }
        }
        Ok(JobOutcome::ExtraValid { updated, errors })
    })
}

fn unmerge(shared: &Shared, merged: &Path) -> Result<(usize, Vec<String>), String> {
    let env = &shared.env;
    let item = env
        .files
        .item(AGENT_GROUPS_KEY)
        .ok_or("this node does not sync queue/agent-groups/")?;
    let target = env.home.join(AGENT_GROUPS_KEY);
    fs::create_dir_all(&target).map_err(|e| e.to_string())?;
    let mut reader = MergedReader::new(
        File::open(merged).map_err(|e| e.to_string())?,
        MergedLimits::default(),
    );
    let (mut updated, mut errors) = (0, Vec::new());
    while let Some(record) = reader.next_record().map_err(|e| e.to_string())? {
        match write_if_newer(&target, &record, item.permissions) {
            Ok(true) => updated += 1,
            Ok(false) => {}
            Err(e) => errors.push(format!("{AGENT_GROUPS_KEY}{}: {e}", record.name)),
        }
    }
    Ok((updated, errors))
}

/// Writes the record unless the local file is newer; the file takes the record's mtime.
fn write_if_newer(dir: &Path, record: &MergedRecord, mode: u32) -> std::io::Result<bool> {
    let dest = dir.join(&record.name);
    let theirs: SystemTime =
        chrono::DateTime::<chrono::Utc>::from_naive_utc_and_offset(record.mtime, chrono::Utc)
            .into();
    if let Ok(local) = fs::symlink_metadata(&dest) {
        if local.file_type().is_symlink() || local.modified().is_ok_and(|m| m > theirs) {
            return Ok(false);
        }
    }
    let tmp = dir.join(format!(".{}.tmp", record.name));
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    file.write_all(&record.content)?;
    file.sync_all()?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.set_modified(theirs)?;
    fs::rename(&tmp, &dest)?;
    Ok(true)
}
