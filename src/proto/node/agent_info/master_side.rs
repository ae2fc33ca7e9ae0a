//! The master's side of agent-info sync (PROTOCOL.md §4.2): one task per worker (`syn_a_w_m_p`
//! answers whether it is free), the string applied by a job off the loop, the result sent back with
//! `syn_m_a_e` (or `syn_m_a_err`), and what `get_health` shows of it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use serde_json::json;

use super::super::master::Master;
use super::super::{ConnId, Ctx, Purpose};
use super::SUBTAG;
use crate::config::Dialect;
use crate::proto::command::Command;
use crate::proto::jobs::{AgentJob, AgentOutcome, Job, JobId, JobOutcome, JobResult};
use crate::proto::wazuh_error::WazuhError;
use crate::sync::pyjson;
use crate::sync::pyjson::repr_bytes;
use crate::{clog_debug, clog_error, clog_info, clog_warn};

/// Where the master's agent-info task for one worker stands (the stock "agent-info free" flag is
/// `Free`).
#[derive(Default, Clone, Copy)]
enum Task {
    #[default]
    Free,
    /// The apply job runs.
    Applying {
        job: JobId,
        started: Instant,
        started_wall: SystemTime,
    },
    /// `syn_m_a_e` sent; the worker's answer is awaited.
    AwaitAck {
        started: Instant,
        started_wall: SystemTime,
        updated_chunks: usize,
    },
}

/// What `get_health` shows of one worker's agent-info sync.
#[derive(Debug, Clone, Default)]
pub(in crate::proto::node) struct AgentInfoHealth {
    pub(in crate::proto::node) busy: bool,
    pub(in crate::proto::node) start: Option<SystemTime>,
    pub(in crate::proto::node) end: Option<SystemTime>,
    pub(in crate::proto::node) synced_chunks: usize,
}

#[derive(Default)]
struct PeerAgentInfo {
    task: Task,
    last: AgentInfoHealth,
}

/// The master's agent-info state, for all workers.
#[derive(Default)]
pub(in crate::proto::node) struct MasterAgentInfo {
    peers: BTreeMap<ConnId, PeerAgentInfo>,
    /// Apply jobs in flight and their worker connection. A job whose task timed out or whose
    /// worker left stays here until it returns, so its late result is recognised and dropped.
    jobs: HashMap<JobId, ConnId>,
}

impl MasterAgentInfo {
    /// The `get_health` view of worker `conn`.
    pub(in crate::proto::node) fn health(&self, conn: ConnId) -> AgentInfoHealth {
        self.peers
            .get(&conn)
            .map_or_else(AgentInfoHealth::default, |p| AgentInfoHealth {
                busy: !matches!(p.task, Task::Free),
                ..p.last.clone()
            })
    }
}

impl Master {
    /// Agent-info requests from worker `conn`; `None` when `command` is not one, `Some(None)`
    /// when it was answered here.
    pub(in crate::proto::node) fn agent_info_request(
        &mut self,
        conn: ConnId,
        counter: u32,
        command: &Command,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> Option<Option<(&'static str, Vec<u8>)>> {
        match command {
            Command::SynAWMP => {
                let free = self
                    .agent_info
                    .peers
                    .get(&conn)
                    .is_none_or(|p| matches!(p.task, Task::Free));
                let answer = if free { "True" } else { "False" };
                Some(Some(("ok", answer.as_bytes().to_vec())))
            }
            Command::SynAWM => {
                self.agent_info_start(conn, counter, payload, ctx);
                Some(None)
            }
            _ => None,
        }
    }

    /// `syn_a_w_m <sid>`: answer `ok <sid>` at once, then apply the string off the loop.
    fn agent_info_start(&mut self, conn: ConnId, counter: u32, payload: &[u8], ctx: &mut Ctx) {
        let Some(peer) = self.workers.get_mut(&conn) else {
            return;
        };
        let tag = peer.tag();
        let sid = String::from_utf8_lossy(payload).trim().to_owned();
        let state = self.agent_info.peers.entry(conn).or_default();
        if !matches!(state.task, Task::Free) {
            // Stock workers ask first and never get here; one task per worker keeps one apply
            // job per worker, and the worker keeps the string for its next round.
            let _ = peer.conn.take_string(&sid);
            clog_warn!(
                tag,
                SUBTAG,
                "Refused agent-info string {sid}: the previous one is still being processed."
            );
            let error = WazuhError::with_extra(
                1000,
                "an agent-info task is already running for this worker",
            );
            if let Err(e) = peer.conn.reply(counter, "err", &error.to_payload()) {
                clog_error!(tag, "Main", "Could not answer 'syn_a_w_m': {e}");
            }
            return;
        }
        if let Err(e) = peer.conn.reply(counter, "ok", sid.as_bytes()) {
            clog_error!(tag, "Main", "Could not answer 'syn_a_w_m': {e}");
        }
        match ctx.settings.sync.dialect {
            Dialect::V4_3 => clog_info!(tag, SUBTAG, "Starting"),
            Dialect::V4_14 => clog_info!(tag, SUBTAG, "Starting."),
        }
        let string = match peer.conn.take_string(&sid) {
            Ok(string) => string,
            Err(_) => {
                let sid = repr_bytes(sid.as_bytes());
                let text = format!("error while trying to access string under task_id {sid}.");
                let error = WazuhError::with_extra(
                    3035,
                    format!("it should be under task_id {sid}, but it's empty."),
                );
                self.agent_info_fail(conn, &text, &error, ctx);
                return;
            }
        };
        let job = ctx.job(Job::Agents(AgentJob::InfoApply {
            worker: peer.name().to_owned(),
            payload: Bytes::from(string),
        }));
        self.agent_info.jobs.insert(job, conn);
        state.task = Task::Applying {
            job,
            started: ctx.now.mono,
            started_wall: ctx.now.wall,
        };
    }

    /// A reply to one of our agent-info requests to `conn`: the worker's answer to `syn_m_a_e`
    /// ends the task (answers to `syn_m_a_err` find it free and are ignored).
    pub(in crate::proto::node) fn agent_info_reply(
        &mut self,
        conn: ConnId,
        command: Command,
        payload: Vec<u8>,
        ctx: &mut Ctx,
    ) {
        let Some(state) = self.agent_info.peers.get_mut(&conn) else {
            return;
        };
        let Task::AwaitAck {
            started,
            started_wall,
            updated_chunks,
        } = state.task
        else {
            return;
        };
        state.task = Task::Free;
        let tag = self
            .workers
            .get(&conn)
            .map_or_else(String::new, |p| p.tag());
        if command != Command::Ok {
            let error = WazuhError::from_payload(&payload);
            clog_error!(tag, SUBTAG, "{error}");
            return;
        }
        state.last = AgentInfoHealth {
            busy: false,
            start: Some(started_wall),
            end: Some(ctx.now.wall),
            synced_chunks: updated_chunks,
        };
        if let Some(peer) = self.workers.get(&conn) {
            crate::metrics::Metrics::global().round(
                crate::metrics::Task::AgentInfo,
                peer.name(),
                ctx.now.mono.saturating_duration_since(started),
            );
        }
        clog_info!(
            tag,
            SUBTAG,
            "Finished in {:.3}s. Updated {updated_chunks} chunks.",
            secs_since(started, ctx)
        );
    }

    /// A job finished; false when it is not one of ours.
    pub(in crate::proto::node) fn agent_info_job_done(
        &mut self,
        id: JobId,
        result: &JobResult,
        ctx: &mut Ctx,
    ) -> bool {
        let Some(conn) = self.agent_info.jobs.remove(&id) else {
            return false;
        };
        let current = self
            .agent_info
            .peers
            .get(&conn)
            .is_some_and(|p| matches!(p.task, Task::Applying { job, .. } if job == id));
        let tag = match self.workers.get(&conn) {
            Some(peer) if current => peer.tag(),
            _ => {
                clog_debug!(
                    "Master",
                    SUBTAG,
                    "Dropped the result of an agent-info job whose task already ended."
                );
                return true;
            }
        };
        match result {
            Ok(JobOutcome::Agents(AgentOutcome::InfoApplied {
                updated_chunks,
                error_messages,
                stale_skipped,
                failure,
                warnings,
            })) => {
                for warning in warnings {
                    clog_warn!(tag, SUBTAG, "{warning}");
                }
                if let Some(failure) = failure {
                    // Nothing (or not all) was stored: the worker must hear an error, as from a
                    // stock master whose database raised, so it keeps its records.
                    let text =
                        format!("error processing agent-info chunks in process pool: {failure}");
                    let error = WazuhError::with_extra(3037, failure.clone());
                    self.agent_info_fail(conn, &text, &error, ctx);
                    return true;
                }
                for error in error_messages {
                    clog_error!(
                        tag,
                        SUBTAG,
                        "Wazuh-db response for a chunk was not \"ok\": {error}"
                    );
                }
                if *stale_skipped > 0 {
                    clog_debug!(
                        tag,
                        SUBTAG,
                        "Skipped {stale_skipped} stale agent records: those agents report to another node now."
                    );
                }
                self.agent_info_send_result(conn, *updated_chunks, error_messages, ctx);
            }
            Ok(JobOutcome::Agents(AgentOutcome::InfoUnreadable { reason })) => {
                let text = format!("error while trying to load JSON: {reason}");
                self.agent_info_fail(
                    conn,
                    &text,
                    &WazuhError::with_extra(3036, reason.clone()),
                    ctx,
                );
            }
            Err(e) => {
                let text = format!("error processing agent-info chunks in process pool: {e}");
                self.agent_info_fail(conn, &text, &WazuhError::with_extra(3037, e.clone()), ctx);
            }
            Ok(other) => {
                let e = format!("unexpected job result {other:?}");
                let text = format!("error processing agent-info chunks in process pool: {e}");
                self.agent_info_fail(conn, &text, &WazuhError::with_extra(3037, e), ctx);
            }
        }
        true
    }

    /// Apply jobs that overran `timeout_agent_info`: the worker hears of 0 updated chunks, as from
    /// a stock master, and the job's late result is dropped.
    pub(in crate::proto::node) fn agent_info_tick(&mut self, ctx: &mut Ctx) {
        let limit = ctx.settings.agents.timeout_agent_info;
        let overdue: Vec<ConnId> = self
            .agent_info
            .peers
            .iter()
            .filter(|(_, p)| {
                matches!(p.task, Task::Applying { started, .. }
                    if ctx.now.mono.saturating_duration_since(started) > limit)
            })
            .map(|(conn, _)| *conn)
            .collect();
        for conn in overdue {
            let tag = self
                .workers
                .get(&conn)
                .map_or_else(String::new, |p| p.tag());
            clog_error!(tag, SUBTAG, "Timeout while processing agent-info chunks.");
            self.agent_info_send_result(conn, 0, &[], ctx);
        }
    }

    /// Worker `conn` is gone.
    pub(in crate::proto::node) fn agent_info_closed(&mut self, conn: ConnId, _ctx: &mut Ctx) {
        self.agent_info.peers.remove(&conn);
    }

    /// Sends `syn_m_a_e` with the result and waits for the worker's answer.
    fn agent_info_send_result(
        &mut self,
        conn: ConnId,
        updated_chunks: usize,
        error_messages: &[String],
        ctx: &mut Ctx,
    ) {
        let (Some(state), Some(peer)) = (
            self.agent_info.peers.get_mut(&conn),
            self.workers.get_mut(&conn),
        ) else {
            return;
        };
        let Task::Applying {
            started,
            started_wall,
            ..
        } = state.task
        else {
            return;
        };
        let result = json!({
            "updated_chunks": updated_chunks,
            "error_messages": error_messages,
            "time_spent": secs_since(started, ctx),
        });
        let timeout = ctx.settings.timers.timeout_cluster_request;
        match peer.conn.request(
            "syn_m_a_e",
            &pyjson::to_vec(&result),
            Purpose::AgentInfo,
            ctx.now.mono,
            timeout,
        ) {
            Ok(_) => {
                state.task = Task::AwaitAck {
                    started,
                    started_wall,
                    updated_chunks,
                }
            }
            Err(e) => {
                clog_error!(peer.tag(), SUBTAG, "Could not send 'syn_m_a_e': {e}");
                state.task = Task::Free;
            }
        }
    }

    /// The string could not be applied: `syn_m_a_err` to the worker, the error in our log, and
    /// the task ends.
    fn agent_info_fail(&mut self, conn: ConnId, text: &str, error: &WazuhError, ctx: &mut Ctx) {
        if let Some(state) = self.agent_info.peers.get_mut(&conn) {
            state.task = Task::Free;
        }
        let Some(peer) = self.workers.get_mut(&conn) else {
            return;
        };
        let timeout = ctx.settings.timers.timeout_cluster_request;
        if let Err(e) = peer.conn.request(
            "syn_m_a_err",
            text.as_bytes(),
            Purpose::AgentInfo,
            ctx.now.mono,
            timeout,
        ) {
            clog_error!(peer.tag(), SUBTAG, "Could not send 'syn_m_a_err': {e}");
        }
        clog_error!(peer.tag(), SUBTAG, "{error}");
    }
}

fn secs_since(start: Instant, ctx: &Ctx) -> f64 {
    ctx.now.mono.saturating_duration_since(start).as_secs_f64()
}
