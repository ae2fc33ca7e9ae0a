//! Agent groups, master → workers (PROTOCOL.md §4.3, 4.14 dialect): the master's `Local agent-groups`
//! loop and `Agent-groups send` to every worker, the worker's application and checksum check, and
//! the full resync (`syn_w_g_c`, `syn_g_m_w_c`, `syn_wgc_e`). Keys before groups: a worker is never
//! sent the groups of an agent whose key it does not hold yet.
//!
//! This file is the worker's side; the master's is in `groups/master.rs`, and what the master knows
//! of each worker's keys in `groups/keys.rs`. In the 4.3 dialect agent groups travel as extra-valid
//! files instead, and nothing here runs.

mod keys;
mod master;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

pub(super) use self::master::{GroupsHealth, MasterGroups};
use super::worker::Worker;
use super::{Ctx, Purpose};
use crate::config::Dialect;
use crate::proto::command::Command;
use crate::proto::jobs::{AgentJob, AgentOutcome, Job, JobId, JobOutcome, JobResult};
use crate::proto::wazuh_error::WazuhError;
use crate::{clog_debug, clog_error, clog_info, clog_warn};

/// Updates received while another one is being stored. Our master sends one at a time; a master
/// that does not wait is told to slow down rather than let updates pile up in memory.
const QUEUED_UPDATES_MAX: usize = 4;

/// The log subtags of one direction of the flow.
fn subtag(master: bool, full: bool) -> &'static str {
    match (master, full) {
        (true, false) => "Agent-groups send",
        (true, true) => "Agent-groups send full",
        (false, false) => "Agent-groups recv",
        (false, true) => "Agent-groups recv full",
    }
}

/// Durations as the `Finished in` lines print them.
fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn is_v4_14(ctx: &Ctx) -> bool {
    ctx.settings.sync.dialect == Dialect::V4_14
}

/// An update being written to the local database.
struct Applying {
    job: JobId,
    full: bool,
    started: Instant,
}

/// The worker's agent-groups state.
#[derive(Default)]
pub(super) struct WorkerGroups {
    applying: Option<Applying>,
    /// An update that ran past `timeout_agent_groups`: its result was reported as a failure and
    /// will be ignored, but the next update waits for it so two never write at once.
    late: Option<JobId>,
    /// Updates received and not started yet, oldest first (`true`: a full one).
    queue: VecDeque<(Bytes, bool)>,
    /// Consecutive periodic updates after which our global hash differed from the master's.
    mismatches: u32,
}

impl Worker {
    /// Time passed on an accepted link: an update that takes too long is reported as failed.
    pub(super) fn groups_tick(&mut self, ctx: &mut Ctx) {
        let limit = ctx.settings.agents.timeout_agent_groups;
        let Some(applying) = &self.groups.applying else {
            return;
        };
        if ctx.now.mono.saturating_duration_since(applying.started) <= limit {
            return;
        }
        let full = applying.full;
        self.groups.late = Some(applying.job);
        self.groups.applying = None;
        let text = "Timeout while processing agent-groups chunks.";
        clog_error!(Self::tag(ctx.settings), subtag(false, full), "{text}");
        self.groups_send(error_command(full), text.as_bytes(), full, ctx);
    }

    /// The link came up or went down: the mismatch count starts over and queued updates are
    /// dropped (the master resends what it sends after a reconnection).
    pub(super) fn groups_reset(&mut self, _ctx: &mut Ctx) {
        let groups = &mut self.groups;
        groups.mismatches = 0;
        groups.queue.clear();
        if let Some(applying) = groups.applying.take() {
            groups.late = Some(applying.job);
        }
    }

    /// A reply to one of our agent-groups requests: only a refusal is worth a line.
    pub(super) fn groups_reply(
        &mut self,
        full: bool,
        command: Command,
        payload: Vec<u8>,
        ctx: &mut Ctx,
    ) {
        if command != Command::Ok {
            clog_error!(
                Self::tag(ctx.settings),
                subtag(false, full),
                "The master did not accept the agent-groups report: {}",
                WazuhError::from_payload(&payload)
            );
        }
    }

    /// `syn_g_m_w <sid>` / `syn_g_m_w_c <sid>`: take the string and queue it for the database.
    pub(super) fn groups_request(
        &mut self,
        command: &Command,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> Option<(&'static str, Vec<u8>)> {
        let full = match command {
            Command::SynGMW => false,
            Command::SynGMWC => true,
            _ => return None,
        };
        if !is_v4_14(ctx) {
            return None;
        }
        let tag = Self::tag(ctx.settings);
        let sid = String::from_utf8_lossy(payload).trim().to_string();
        let taken = self
            .connected_peer()
            .map(|(_, peer)| peer.take_string(&sid));
        let Some(Ok(data)) = taken else {
            clog_info!(tag, subtag(false, full), "Starting.");
            let text = format!("error while trying to access string under task_id {sid}.");
            clog_error!(
                tag,
                subtag(false, full),
                "{}",
                WazuhError::with_extra(
                    3035,
                    format!("it should be under task_id {sid}, but it's empty.")
                )
            );
            self.groups_send(error_command(full), text.as_bytes(), full, ctx);
            return Some(("ok", sid.into_bytes()));
        };
        if self.groups.queue.len() >= QUEUED_UPDATES_MAX {
            let error = WazuhError::with_extra(
                3000,
                format!(
                    "{QUEUED_UPDATES_MAX} agent-groups updates are already waiting to be stored"
                ),
            );
            clog_error!(tag, subtag(false, full), "Update refused: {error}");
            return Some(("err", error.to_payload()));
        }
        self.groups.queue.push_back((Bytes::from(data), full));
        self.groups_start_next(ctx);
        Some(("ok", sid.into_bytes()))
    }

    /// Starts storing the oldest queued update when nothing else writes.
    fn groups_start_next(&mut self, ctx: &mut Ctx) {
        let groups = &mut self.groups;
        if groups.applying.is_some() || groups.late.is_some() {
            return;
        }
        let Some((payload, full)) = groups.queue.pop_front() else {
            return;
        };
        clog_info!(Self::tag(ctx.settings), subtag(false, full), "Starting.");
        let job = ctx.job(Job::Agents(AgentJob::GroupsApply { payload, full }));
        groups.applying = Some(Applying {
            job,
            full,
            started: ctx.now.mono,
        });
    }

    /// A job finished; false when it is not one of ours.
    pub(super) fn groups_job_done(&mut self, id: JobId, result: &JobResult, ctx: &mut Ctx) -> bool {
        let tag = Self::tag(ctx.settings);
        if self.groups.late == Some(id) {
            self.groups.late = None;
            clog_debug!(
                tag,
                "Agent-groups recv",
                "An update that ran out of time has ended; its result is not reported."
            );
            self.groups_start_next(ctx);
            return true;
        }
        let Some(applying) = self.groups.applying.take_if(|a| a.job == id) else {
            return false;
        };
        let full = applying.full;
        let subtag = subtag(false, full);
        let took = ctx.now.mono.saturating_duration_since(applying.started);
        match result {
            Ok(JobOutcome::Agents(AgentOutcome::GroupsApplied {
                updated_chunks,
                error_messages,
                checksum_matches,
                warnings,
            })) => {
                for w in warnings {
                    clog_warn!(tag, subtag, "{w}");
                }
                for e in error_messages {
                    clog_error!(tag, subtag, "Wazuh-db response was not \"ok\": {e}");
                }
                let report = result_json(*updated_chunks, error_messages, took);
                self.groups_send(end_command(full), report.as_bytes(), full, ctx);
                if let Some(matches) = checksum_matches {
                    self.groups_checksum(*matches, ctx);
                }
                crate::metrics::Metrics::global().round(
                    crate::metrics::Task::AgentGroups,
                    &ctx.settings.node_name,
                    took,
                );
                clog_info!(
                    tag,
                    subtag,
                    "Finished in {}s. Updated {updated_chunks} chunks.",
                    secs(took)
                );
            }
            other => {
                let text = match other {
                    Err(e) => e.clone(),
                    Ok(_) => "the agent-groups job gave an unexpected result".to_string(),
                };
                clog_error!(tag, subtag, "{text}");
                self.groups_send(error_command(full), text.as_bytes(), full, ctx);
            }
        }
        self.groups_start_next(ctx);
        true
    }

    /// Counts consecutive mismatches; at the limit, asks the master for everything.
    fn groups_checksum(&mut self, matches: bool, ctx: &mut Ctx) {
        let tag = Self::tag(ctx.settings);
        let limit = ctx.settings.agents.agent_groups_mismatch_limit;
        if matches {
            clog_debug!(
                tag,
                "Agent-groups recv",
                "The checksum of both databases match."
            );
            self.groups.mismatches = 0;
            return;
        }
        self.groups.mismatches += 1;
        clog_debug!(
            tag,
            "Agent-groups recv",
            "Checksum comparison failed ({}/{limit}).",
            self.groups.mismatches
        );
        if self.groups.mismatches >= limit {
            self.groups.mismatches = 0;
            self.groups_send("syn_w_g_c", b"", true, ctx);
            clog_info!(
                tag,
                "Agent-groups recv",
                "Sent request to obtain all agent-groups information from the master node."
            );
        }
    }

    /// Sends a request of this flow to the master, if the link is up.
    fn groups_send(&mut self, command: &str, payload: &[u8], full: bool, ctx: &mut Ctx) {
        let timeout = ctx.settings.timers.timeout_cluster_request;
        let tag = Self::tag(ctx.settings);
        let Some((_, peer)) = self.connected_peer() else {
            return;
        };
        let purpose = Purpose::AgentGroups { full };
        if let Err(e) = peer.request(command, payload, purpose, ctx.now.mono, timeout) {
            clog_error!(tag, subtag(false, full), "Could not send '{command}': {e}");
        }
    }
}

fn end_command(full: bool) -> &'static str {
    if full {
        "syn_wgc_e"
    } else {
        "syn_w_g_e"
    }
}

fn error_command(full: bool) -> &'static str {
    if full {
        "syn_wgc_err"
    } else {
        "syn_w_g_err"
    }
}

/// `{"updated_chunks": n, "error_messages": [...], "time_spent": s}`, laid out as stock nodes write it.
fn result_json(updated: usize, errors: &[String], took: Duration) -> String {
    let errors: Vec<String> = errors
        .iter()
        .map(|e| Value::from(e.as_str()).to_string())
        .collect();
    format!(
        r#"{{"updated_chunks": {updated}, "error_messages": [{}], "time_spent": {}}}"#,
        errors.join(", "),
        Value::from(took.as_secs_f64())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_json_has_the_stock_layout() {
        let text = result_json(
            2,
            &["Error 2003 - x \"y\"".into()],
            Duration::from_millis(1500),
        );
        assert_eq!(
            text,
            r#"{"updated_chunks": 2, "error_messages": ["Error 2003 - x \"y\""], "time_spent": 1.5}"#
        );
        let parsed: Value = serde_json::from_str(&result_json(0, &[], Duration::ZERO)).unwrap();
        assert_eq!(parsed["time_spent"], 0.0);
        assert_eq!(parsed["error_messages"], serde_json::json!([]));
    }
}
