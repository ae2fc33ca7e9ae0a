//! Master: compare a worker's metadata with the snapshot and build the package that fixes the worker
//! (PROTOCOL.md §4.1.3–§4.1.5).

use std::collections::HashSet;
use std::fs::File;

use super::files::{
    create_package, remove_transfer, transfer_path, unpack, write_merged, MetadataOnly,
    PackageWriter,
};
use crate::config::Dialect;
use crate::pool::jobs::agents::rows::lookup;
use crate::pool::runner::Shared;
use crate::proto::jobs::{JobOutcome, Package, SyncCounts};
use crate::sync::classify::{classify, merged_shared_path, Classification, AGENT_GROUPS_KEY};
use crate::sync::metadata::{self, Metadata};
use crate::sync::package::AddOutcome;

pub(crate) fn compare(
    shared: &Shared,
    worker: &str,
    rel: &str,
    out_rel: &str,
    zip_limit: u64,
) -> Result<JobOutcome, String> {
    let env = &shared.env;
    let received = transfer_path(&env.home, rel)?;
    let unpacked = unpack(env.dialect, &received, env.max_zip_size, &mut MetadataOnly);
    remove_transfer(&env.home, rel)?;
    let theirs = metadata::parse(&unpacked?.metadata, env.hash()).map_err(|e| e.to_string())?;
    // Which agents the worker can authenticate: its agent groups are limited to them.
    let worker_client_keys = theirs.get("etc/client.keys").map(|m| m.digest.clone());
    let ours = shared
        .snapshot
        .read()
        .map_err(|_| "the snapshot is poisoned".to_string())?
        .clone();
    let (mut warnings, mut notes) = (Vec::new(), Vec::new());
    let known = known_agents(shared, &ours, &theirs, &mut warnings, &mut notes);
    let mut class = classify(&ours, &theirs, &env.files, env.dialect, &|id| {
        known.as_ref().is_none_or(|k| k.contains(id))
    });
    if class.is_empty() {
        return Ok(JobOutcome::Compare {
            received_files: theirs.len(),
            counts: SyncCounts::default(),
            package: None,
            warnings,
            notes,
            worker_client_keys,
        });
    }
    if !class.shared_to_merge.is_empty() {
        write_merged_shared(shared, worker, &class)?;
        class.insert_merged_shared(worker);
    }
    let package = build(shared, &mut class, out_rel, zip_limit, &mut warnings);
    let _ = std::fs::remove_file(env.home.join(merged_shared_path(worker)));
    let counts = class.counts();
    let counts = SyncCounts {
        missing: counts.missing,
        shared: counts.shared,
        extra: counts.extra,
        extra_valid: counts.extra_valid,
    };
    Ok(JobOutcome::Compare {
        received_files: theirs.len(),
        counts,
        package: Some(package?),
        warnings,
        notes,
        worker_client_keys,
    })
}

/// Ids per lookup of existing agents: rows of `{"id":n}` are ~12 bytes.
const KNOWN_IDS_PER_LOOKUP: usize = 2_000;

/// Agent-group files named in a note, at most.
const NAMED_FILES_MAX: usize = 10;

/// Characters of a worker-supplied file name quoted in a note, at most.
const NAME_CHARS_MAX: usize = 64;

/// The first `max` characters of `text`, with `...` when it was longer.
fn prefix(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// 4.3: which agents of the worker-only `queue/agent-groups/` files the master's agent database
/// knows, as those file names. A master only takes agent groups of its own agents (§4.1.10); the
/// others are named in a note (information, not a warning: a worker may keep such files for
/// long, and each round would say it again). `None` takes every file: not 4.3, nothing to ask,
/// or no answer from the database (then said in a warning, and nothing is lost: the worker keeps
/// its files).
fn known_agents(
    shared: &Shared,
    ours: &Metadata,
    theirs: &Metadata,
    warnings: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Option<HashSet<String>> {
    if shared.env.dialect != Dialect::V4_3 {
        return None;
    }
    let names: Vec<&str> = theirs
        .keys()
        .filter(|path| !ours.contains_key(*path))
        .filter_map(|path| path.strip_prefix(AGENT_GROUPS_KEY))
        .filter(|name| !name.contains('/'))
        .collect();
    if names.is_empty() {
        return None;
    }
    let Some(db) = shared.agents_db.get() else {
        warnings.push("Could not check which agents exist: this node has no agent database. Every extra-valid file is requested.".to_owned());
        return None;
    };
    let ids: Vec<i64> = names.iter().filter_map(|n| n.parse().ok()).collect();
    let rows = match lookup(db.as_ref(), ids, "id", KNOWN_IDS_PER_LOOKUP) {
        Ok(rows) => rows,
        Err(e) => {
            warnings.push(format!(
                "Error getting agent IDs while verifying which extra-valid files are required: {e}. Every extra-valid file is requested."
            ));
            return None;
        }
    };
    let (known, unknown): (Vec<&str>, Vec<&str>) = names
        .into_iter()
        .partition(|n| n.parse::<i64>().is_ok_and(|id| rows.contains_key(&id)));
    if !unknown.is_empty() {
        let shown: Vec<String> = unknown
            .iter()
            .take(NAMED_FILES_MAX)
            .map(|n| format!("{AGENT_GROUPS_KEY}{}", prefix(n, NAME_CHARS_MAX)))
            .collect();
        let more = match unknown.len().saturating_sub(NAMED_FILES_MAX) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        notes.push(format!(
            "Extra-valid files of agents this master does not know were not requested ({}): {}{more}.",
            unknown.len(),
            shown.join(", ")
        ));
    }
    Some(known.into_iter().map(str::to_owned).collect())
}

/// Packs `missing` and `shared`, dropping what does not fit or cannot be read (§4.1.5), then the
/// classification itself.
fn build(
    shared: &Shared,
    class: &mut Classification,
    out_rel: &str,
    limit: u64,
    warnings: &mut Vec<String>,
) -> Result<Package, String> {
    let env = &shared.env;
    let file = create_package(&env.home, out_rel)?;
    let mut writer = PackageWriter::new(env.dialect, file, env.compress_level, limit);
    let mut stored = 0u64;
    let mut full = false;
    let paths: Vec<String> = class.to_send().map(str::to_string).collect();
    for path in paths {
        let source = env.home.join(&path);
        let opened = File::open(&source).and_then(|f| f.metadata().map(|m| (f, m.len())));
        let (mut content, size) = match opened {
            Ok(found) => found,
            Err(_) => {
                class.drop_unsent(&path, false);
                continue;
            }
        };
        // The ZIP format of 4.3 has no limit of its own; the same rules are applied here.
        let outcome = if size > limit {
            AddOutcome::TooLarge
        } else if full || (env.dialect == Dialect::V4_3 && stored + size > limit) {
            AddOutcome::Deferred
        } else {
            writer.add_file(&path, size, &mut content)?
        };
        match outcome {
            AddOutcome::Added { stored_bytes } => stored += stored_bytes,
            AddOutcome::TooLarge => {
                warnings.push(format!("File too large to be synced: {path}"));
                class.drop_unsent(&path, true);
            }
            AddOutcome::Deferred => {
                if !full {
                    warnings.push("Maximum zip size exceeded. Not all files will be compressed during this sync.".into());
                    full = true;
                }
                class.drop_unsent(&path, true);
            }
            AddOutcome::Unreadable(e) => {
                warnings.push(format!("Could not read {path}: {e}"));
                class.drop_unsent(&path, false);
            }
            AddOutcome::BadName(e) => {
                warnings.push(format!("{path} cannot be sent: its name {e}"));
                class.drop_unsent(&path, true);
            }
        }
    }
    let json = class.to_json(env.hash(), env.dialect).to_string();
    let bytes = writer.finish(json.as_bytes())?;
    Ok(Package {
        rel: out_rel.to_string(),
        bytes,
    })
}

/// 4.3: the differing agent-group files, merged into one file the worker splits again.
fn write_merged_shared(
    shared: &Shared,
    worker: &str,
    class: &Classification,
) -> Result<(), String> {
    let env = &shared.env;
    let out = env.home.join(merged_shared_path(worker));
    write_merged(&env.home, env.dialect, &out, &class.shared_to_merge)
}

#[cfg(test)]
mod tests {
    use super::prefix;

    #[test]
    fn quoted_names_are_cut_at_a_character_count() {
        assert_eq!(prefix("042", 64), "042");
        assert_eq!(
            prefix(&"é".repeat(70), 64),
            format!("{}...", "é".repeat(64))
        );
    }
}
