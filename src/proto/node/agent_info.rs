//! Agent-info sync, worker → master (PROTOCOL.md §4.2), both dialects: the worker's periodic task
//! (permission, reading its database off the loop, sending the string, awaiting the result) here,
//! the master's side (the single agent-info slot per worker, applying the string off the loop, the
//! `syn_m_a_e`/`syn_m_a_err` result) in [`master_side`].
//!
//! Reading marks the agents synced in the worker's database, so a round that fails afterwards
//! (string refused, master error, link lost, no result) would lose their changes. The worker keeps
//! the string of such a round and hands it to the next read job, which sends it again merged with
//! newer changes; only the master's `syn_m_a_e` releases it. The read job also keeps the string
//! on disk, for the next daemon if this one dies before the master confirmed it.

use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;

use super::strings_out::Then;
use super::worker::{Link, Worker};
use super::{Ctx, Purpose};
use crate::config::Dialect;
use crate::proto::command::Command;
use crate::proto::jobs::{AgentJob, AgentOutcome, Job, JobId, JobOutcome, JobResult};
use crate::proto::wazuh_error::WazuhError;
use crate::{clog_debug, clog_error, clog_info};

const SUBTAG: &str = "Agent-info sync";

/// Where the worker's round stands; each state names what it waits for.
#[derive(Default)]
enum Round {
    /// Waiting for the next period.
    #[default]
    Idle,
    /// `syn_a_w_m_p` sent.
    AwaitPermission,
    /// The read job runs; `started` is when the master granted the round.
    Reading { job: JobId, started: Instant },
    /// The string and then `syn_a_w_m` are on their way; the master's `ok <sid>` is awaited.
    Sending { started: Instant },
    /// The master took the string (`since`); its `syn_m_a_e` or `syn_m_a_err` is awaited.
    AwaitResult { started: Instant, since: Instant },
}

/// The worker's agent-info task.
#[derive(Default)]
pub(super) struct WorkerAgentInfo {
    round: Round,
    /// When the next round starts; `None` until the link is accepted.
    next_at: Option<Instant>,
    /// The string of the last round the master has not confirmed. At most one record per agent
    /// and kind (the read job merges), so it is bounded by the agents, not by failed rounds.
    unsent: Option<Bytes>,
    /// A read job whose round ended with the link: its string still has to be kept. No round
    /// starts before it is back, so two reads never race for `unsent`.
    orphan_read: Option<JobId>,
    /// When the last round started, to time a result that arrives after its round was given up.
    last_start: Option<Instant>,
    /// When the current round asked for permission: rounds start a period apart, however long
    /// one takes, so a change waits at most two periods.
    asked_at: Option<Instant>,
    /// A read succeeded since this daemon started: the string an earlier daemon kept on disk
    /// has been taken up.
    recovered: bool,
}

impl Worker {
    /// Time passed on an accepted link.
    pub(super) fn agent_info_tick(&mut self, ctx: &mut Ctx) {
        let now = ctx.now.mono;
        let interval = ctx.settings.agents.sync_agent_info;
        let info = &mut self.agent_info;
        match info.round {
            Round::Idle => {
                let next = *info.next_at.get_or_insert(now + interval);
                if now >= next && info.orphan_read.is_none() {
                    self.agent_info_ask(ctx);
                }
            }
            Round::AwaitResult { since, .. } => {
                let limit = ctx.settings.agents.timeout_agent_info
                    + ctx.settings.timers.timeout_cluster_request;
                if now.saturating_duration_since(since) > limit {
                    clog_error!(
                        Self::tag(ctx.settings),
                        SUBTAG,
                        "Error synchronizing agent info: no result from the master in {}s; the changes will be sent again.",
                        limit.as_secs()
                    );
                    self.agent_info_end(ctx);
                }
            }
            _ => {}
        }
    }

    /// The link came up or went down: the round ends; a read in flight is still awaited.
    pub(super) fn agent_info_reset(&mut self, ctx: &mut Ctx) {
        let connected = matches!(self.link, Link::Connected { .. });
        let info = &mut self.agent_info;
        if let Round::Reading { job, .. } = info.round {
            info.orphan_read = Some(job);
        }
        info.round = Round::Idle;
        info.next_at = connected.then(|| ctx.now.mono + ctx.settings.agents.sync_agent_info);
    }

    /// A reply to one of our agent-info requests (or a failed string transfer).
    pub(super) fn agent_info_reply(&mut self, command: Command, payload: Vec<u8>, ctx: &mut Ctx) {
        let tag = Self::tag(ctx.settings);
        match std::mem::take(&mut self.agent_info.round) {
            Round::AwaitPermission if command != Command::Ok => {
                let error = WazuhError::from_payload(&payload);
                clog_error!(tag, SUBTAG, "Error asking for permission: {error}");
                self.agent_info_end(ctx);
            }
            Round::AwaitPermission if payload != b"True" => {
                clog_debug!(
                    tag,
                    SUBTAG,
                    "Master didn't grant permission to start a new synchronization: {}",
                    repr_bytes(&payload)
                );
                self.agent_info_end(ctx);
            }
            Round::AwaitPermission => {
                clog_info!(tag, SUBTAG, "Starting.");
                let started = ctx.now.mono;
                self.agent_info.last_start = Some(started);
                let carry = self.agent_info.unsent.clone();
                let recover = !self.agent_info.recovered;
                let job = ctx.job(Job::Agents(AgentJob::InfoRead { carry, recover }));
                self.agent_info.round = Round::Reading { job, started };
            }
            Round::Sending { started } if command == Command::Ok => {
                clog_debug!(tag, SUBTAG, "Sending chunks.");
                self.agent_info.round = Round::AwaitResult {
                    started,
                    since: ctx.now.mono,
                };
            }
            Round::Sending { .. } => {
                let error = WazuhError::with_extra(
                    3016,
                    format!(
                        "String with agents information could not be sent to the master node: {}",
                        reason(&payload)
                    ),
                );
                clog_error!(tag, SUBTAG, "Error synchronizing agent info: {error}");
                self.agent_info_end(ctx);
            }
            // A late reply to a round that already ended.
            other => self.agent_info.round = other,
        }
    }

    /// Agent-info requests from the master; `None` when `command` is not one.
    pub(super) fn agent_info_request(
        &mut self,
        command: &Command,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> Option<(&'static str, Vec<u8>)> {
        let tag = Self::tag(ctx.settings);
        let in_round = matches!(
            self.agent_info.round,
            Round::Sending { .. } | Round::AwaitResult { .. }
        );
        match command {
            Command::SynMAE => Some(self.agent_info_result(payload, in_round, ctx)),
            Command::SynMAErr => {
                let peer = match ctx.settings.sync.dialect {
                    Dialect::V4_3 => "master",
                    Dialect::V4_14 => "peer",
                };
                clog_error!(
                    tag,
                    SUBTAG,
                    "There was an error while processing agent-info on the {peer}: {}",
                    quote_bytes(payload)
                );
                if in_round {
                    self.agent_info_end(ctx);
                }
                Some(("ok", b"Thanks".to_vec()))
            }
            _ => None,
        }
    }

    /// `syn_m_a_e`: the master stored the string; the round is over and its changes delivered.
    fn agent_info_result(
        &mut self,
        payload: &[u8],
        in_round: bool,
        ctx: &mut Ctx,
    ) -> (&'static str, Vec<u8>) {
        let tag = Self::tag(ctx.settings);
        let Some((updated, errors)) = parse_result(payload) else {
            clog_error!(
                tag,
                SUBTAG,
                "Error synchronizing agent info: the master's result is not valid: {}",
                quote_bytes(payload)
            );
            if in_round {
                self.agent_info_end(ctx);
            }
            let error = WazuhError::with_extra(1000, "the agent-info result is not valid JSON");
            return ("err", error.to_payload());
        };
        let started = match self.agent_info.round {
            Round::Sending { started } | Round::AwaitResult { started, .. } => Some(started),
            _ => self.agent_info.last_start,
        };
        let round = started.map_or(std::time::Duration::ZERO, |s| {
            ctx.now.mono.saturating_duration_since(s)
        });
        crate::metrics::Metrics::global().round(
            crate::metrics::Task::AgentInfo,
            &ctx.settings.node_name,
            round,
        );
        let elapsed = round.as_secs_f64();
        let message = match ctx.settings.sync.dialect {
            Dialect::V4_3 => format!("Finished in {elapsed:.3}s ({updated} chunks updated)."),
            Dialect::V4_14 => format!("Finished in {elapsed:.3}s. Updated {updated} chunks."),
        };
        if errors.is_empty() {
            clog_info!(tag, SUBTAG, "{message}");
        } else {
            clog_error!(
                tag,
                SUBTAG,
                "{message} There were {} chunks with errors: {}",
                errors.len(),
                repr_list(&errors)
            );
        }
        if in_round {
            // Chunks the master could not store are sent again with the next round's changes
            // (a newer record of the same agent replaces its older one).
            if errors.is_empty() {
                self.agent_info.unsent = None;
            }
            self.agent_info_end(ctx);
        }
        ("ok", b"Thanks".to_vec())
    }

    /// A job finished; false when it is not one of ours.
    pub(super) fn agent_info_job_done(
        &mut self,
        id: JobId,
        result: &JobResult,
        ctx: &mut Ctx,
    ) -> bool {
        let tag = Self::tag(ctx.settings);
        if self.agent_info.orphan_read == Some(id) {
            self.agent_info.orphan_read = None;
            match result {
                Ok(JobOutcome::Agents(AgentOutcome::InfoRead { payload, error, .. })) => {
                    self.agent_info.recovered = true;
                    if let Some(e) = error {
                        clog_error!(tag, SUBTAG, "Error synchronizing agent info: {e}");
                    }
                    if let Some(payload) = payload {
                        self.agent_info.unsent = Some(payload.clone());
                    }
                }
                Err(e) => clog_error!(tag, SUBTAG, "Error synchronizing agent info: {e}"),
                Ok(_) => {}
            }
            return true;
        }
        let Round::Reading { job, started } = self.agent_info.round else {
            return false;
        };
        if job != id {
            return false;
        }
        let (payload, agents) = match result {
            Ok(JobOutcome::Agents(AgentOutcome::InfoRead {
                payload,
                agents,
                error,
            })) => {
                self.agent_info.recovered = true;
                if let Some(e) = error {
                    clog_error!(tag, SUBTAG, "Error synchronizing agent info: {e}");
                }
                (payload.clone(), *agents)
            }
            Err(e) => {
                clog_error!(tag, SUBTAG, "Error synchronizing agent info: {e}");
                self.agent_info_end(ctx);
                return true;
            }
            Ok(other) => {
                clog_error!(
                    tag,
                    SUBTAG,
                    "Error synchronizing agent info: unexpected job result {other:?}"
                );
                self.agent_info_end(ctx);
                return true;
            }
        };
        let Some(payload) = payload else {
            // Nothing read, and nothing left from earlier rounds (the job would have returned it).
            self.agent_info.unsent = None;
            match ctx.settings.sync.dialect {
                Dialect::V4_3 => {
                    let elapsed = ctx.now.mono.saturating_duration_since(started);
                    clog_info!(
                        tag,
                        SUBTAG,
                        "Finished in {:.3}s (0 chunks sent).",
                        elapsed.as_secs_f64()
                    );
                }
                Dialect::V4_14 => {
                    clog_info!(tag, SUBTAG, "No synchronization required, skipping.")
                }
            }
            self.agent_info_end(ctx);
            return true;
        };
        clog_debug!(
            tag,
            SUBTAG,
            "Obtained {agents} agent records ({} bytes).",
            payload.len()
        );
        // From now on the records are only here: kept until the master confirms them.
        self.agent_info.unsent = Some(payload.clone());
        let timeout = ctx.settings.timers.timeout_cluster_request;
        let Link::Connected { peer, .. } = &mut self.link else {
            self.agent_info_end(ctx);
            return true;
        };
        let then = Then {
            command: "syn_a_w_m",
            prefix: String::new(),
            purpose: Purpose::AgentInfo,
        };
        match self
            .strings
            .start(peer, payload, then, ctx.now.mono, timeout)
        {
            Ok(()) => self.agent_info.round = Round::Sending { started },
            Err(e) => {
                clog_error!(tag, SUBTAG, "Error synchronizing agent info: {e}");
                self.agent_info_end(ctx);
            }
        }
        true
    }

    /// Sends `syn_a_w_m_p`.
    fn agent_info_ask(&mut self, ctx: &mut Ctx) {
        let timeout = ctx.settings.timers.timeout_cluster_request;
        let Link::Connected { peer, .. } = &mut self.link else {
            return;
        };
        match peer.request(
            "syn_a_w_m_p",
            b"",
            Purpose::AgentInfo,
            ctx.now.mono,
            timeout,
        ) {
            Ok(_) => {
                self.agent_info.round = Round::AwaitPermission;
                self.agent_info.asked_at = Some(ctx.now.mono);
            }
            Err(e) => {
                clog_error!(
                    Self::tag(ctx.settings),
                    SUBTAG,
                    "Error asking for permission: {e}"
                );
                self.agent_info_end(ctx);
            }
        }
    }

    /// The round is over, whatever its outcome; the next one starts a period after this one did
    /// (at once if this one took longer). A kept string larger than any long string the master
    /// accepts could never be sent: it is dropped, loudly.
    fn agent_info_end(&mut self, ctx: &mut Ctx) {
        let info = &mut self.agent_info;
        info.round = Round::Idle;
        let now = ctx.now.mono;
        let interval = ctx.settings.agents.sync_agent_info;
        info.next_at = Some(
            info.asked_at
                .map_or(now + interval, |at| (at + interval).max(now)),
        );
        let limit = ctx.settings.limits.strings.string_bytes_max;
        if info.unsent.as_ref().is_some_and(|u| u.len() > limit) {
            let bytes = info.unsent.take().map_or(0, |u| u.len());
            clog_error!(
                Self::tag(ctx.settings),
                SUBTAG,
                "Dropping {bytes} bytes of unsent agent-info: more than a long string may hold ({limit} bytes)."
            );
        }
    }
}

/// `updated_chunks` and `error_messages` of a `syn_m_a_e` payload.
fn parse_result(payload: &[u8]) -> Option<(u64, Vec<String>)> {
    let result: Value = serde_json::from_slice(payload).ok()?;
    let updated = result.get("updated_chunks")?.as_u64()?;
    let errors = result
        .get("error_messages")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Some((updated, errors))
}

/// An error reply's text: the exception a JSON payload encodes, else the text itself.
fn reason(payload: &[u8]) -> String {
    if serde_json::from_slice::<Value>(payload).is_ok() {
        WazuhError::from_payload(payload).to_string()
    } else {
        quote_bytes(payload)
    }
}

use crate::proto::quote::quote_bytes;
use crate::sync::pyjson::{repr_bytes, repr_list};

mod master_side;

pub(super) use master_side::{AgentInfoHealth, MasterAgentInfo};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_parse() {
        let (n, errors) = parse_result(
            br#"{"updated_chunks": 2, "error_messages": ["Error 2003 - x"], "time_spent": 0.5}"#,
        )
        .unwrap();
        assert_eq!((n, errors), (2, vec!["Error 2003 - x".to_string()]));
        assert!(parse_result(b"{}").is_none());
        assert!(parse_result(b"nope").is_none());
    }
}
