//! The custom ruleset on the local socket: `get_hash` (both roles: this node's ruleset digests,
//! which the API compares with the master's for `GET /cluster/ruleset/synchronization`) and, on a
//! 4.14 worker, `sendrreload` (the API asks for the ruleset to be reloaded once the next integrity
//! result is in: analysisd is then asked over its socket, as Wazuh 4.13+ workers do).

use std::collections::HashMap;

use serde_json::Value;

use super::worker::Worker;
use super::{ConnId, Ctx, Node, Role};
use crate::config::Dialect;
use crate::proto::jobs::{Job, JobId, JobOutcome, JobResult, RulesetReload};
use crate::proto::wazuh_error::WazuhError;
use crate::sync::pyjson;
use crate::{clog_error, clog_info, clog_warn};

/// `get_hash` requests waiting for their job at most; more are refused at once.
const HASH_ASKS_MAX: usize = 64;

/// Local `get_hash` requests waiting for the ruleset walk: job → (client, counter).
#[derive(Default)]
pub(super) struct HashAsks {
    waiting: HashMap<JobId, (ConnId, u32)>,
}

/// A worker's pending ruleset reload (`sendrreload`).
#[derive(Default)]
pub(super) struct ReloadFlag {
    /// Reload after the next integrity result.
    wanted: bool,
    /// The reload job under way.
    job: Option<JobId>,
}

impl Node {
    /// Local `get_hash`: answered when the walk is done (`None`), or refused at once.
    pub(super) fn get_hash_local(
        &mut self,
        conn: ConnId,
        counter: u32,
    ) -> Option<(&'static str, Vec<u8>)> {
        if self.hash_asks.waiting.len() >= HASH_ASKS_MAX {
            return Some((
                "err",
                WazuhError::with_extra(
                    1000,
                    format!("{HASH_ASKS_MAX} get_hash requests are already waiting"),
                )
                .to_payload(),
            ));
        }
        let id = self.ids.next();
        self.outputs.push(super::Output::Job {
            id,
            job: Job::RulesetHashes,
        });
        self.hash_asks.waiting.insert(id, (conn, counter));
        None
    }

    /// Answers the `get_hash` request whose job this is; `false` when it is not one.
    pub(super) fn hash_job_done(&mut self, id: JobId, result: &JobResult) -> bool {
        let Some((conn, counter)) = self.hash_asks.waiting.remove(&id) else {
            return false;
        };
        let (command, payload) = match result {
            Ok(JobOutcome::RulesetHashes(hashes)) => {
                let object: serde_json::Map<String, Value> = hashes
                    .iter()
                    .map(|(rel, digest)| (rel.clone(), Value::String(digest.clone())))
                    .collect();
                ("ok", pyjson::to_vec(&Value::Object(object)))
            }
            Ok(other) => (
                "err",
                WazuhError::with_extra(1000, format!("unexpected job result {other:?}"))
                    .to_payload(),
            ),
            Err(e) => ("err", WazuhError::with_extra(1000, e.clone()).to_payload()),
        };
        if let Some(peer) = self.locals.get_mut(&conn) {
            if let Err(e) = peer.conn.reply(counter, command, &payload) {
                clog_error!("Local Server", "Main", "Could not answer 'get_hash': {e}");
            }
        }
        true
    }

    /// Local `sendrreload` (4.14 worker only; `None` elsewhere, which makes it unknown).
    pub(super) fn sendrreload_local(&mut self) -> Option<(&'static str, Vec<u8>)> {
        if self.settings.sync.dialect != Dialect::V4_14 {
            return None;
        }
        let Role::Worker(worker) = &mut self.role else {
            return None;
        };
        if worker.connected_peer().is_none() {
            return Some(("err", WazuhError::new(3023).to_payload()));
        }
        worker.reload.wanted = true;
        Some(("ok", br#"{"success": true}"#.to_vec()))
    }
}

impl Worker {
    /// An integrity result arrived (no sync needed, or the master's files applied): the reload
    /// asked for with `sendrreload` runs now.
    pub(super) fn reload_after_integrity(&mut self, ctx: &mut Ctx) {
        if !self.reload.wanted || self.reload.job.is_some() {
            return;
        }
        self.reload.wanted = false;
        self.reload.job = Some(ctx.job(Job::ReloadRuleset));
    }

    /// Logs the outcome of the reload job; `false` when `id` is not that job.
    pub(super) fn reload_job_done(&mut self, id: JobId, result: &JobResult, ctx: &Ctx) -> bool {
        if self.reload.job != Some(id) {
            return false;
        }
        self.reload.job = None;
        let tag = Self::tag(ctx.settings);
        match result {
            Ok(JobOutcome::RulesetReload(RulesetReload::Done { warnings })) if warnings.is_empty() => {
                clog_info!(tag, "Main", "Ruleset reload triggered by cluster integrity check: reload message sent successfully.")
            }
            Ok(JobOutcome::RulesetReload(RulesetReload::Done { warnings })) => clog_warn!(
                tag,
                "Main",
                "Ruleset reloaded with warnings after cluster integrity check: {}",
                warnings.join(", ")
            ),
            Ok(JobOutcome::RulesetReload(RulesetReload::Failed { errors })) => clog_error!(
                tag,
                "Main",
                "Ruleset reload failed after cluster integrity check: {}",
                errors.join(", ")
            ),
            Ok(JobOutcome::RulesetReload(RulesetReload::NoAnalysisd)) => clog_warn!(
                tag,
                "Main",
                "Ruleset reload not sent after cluster integrity check: there is no analysisd socket (queue/sockets/analysis) on this node."
            ),
            Ok(other) => clog_error!(tag, "Main", "Ruleset reload: unexpected job result {other:?}"),
            Err(e) => clog_error!(tag, "Main", "Ruleset reload failed after cluster integrity check: {e}"),
        }
        true
    }
}
