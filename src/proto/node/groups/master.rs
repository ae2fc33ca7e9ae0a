//! The master's side of agent groups (PROTOCOL.md §4.3): the `Local agent-groups` loop reads the
//! group changes from the database every `sync_agent_groups`, and every accepted worker gets them
//! (`Agent-groups send`), or everything when it asks (`syn_w_g_c`, `Agent-groups send full`).
//!
//! Unlike stock masters, which hand every round to every worker at once:
//! - one database read runs at a time, so rounds reach each worker in the order they were read and
//!   a full read is shared by every worker waiting for one;
//! - each worker has at most one send in flight, awaiting its `syn_w_g_e`; rounds read meanwhile
//!   wait in its backlog and go out merged in one send (nothing read is dropped);
//! - records of agents whose key the worker does not hold yet are held back for it until its
//!   integrity metadata shows the key file that has them (see `keys.rs`);
//! - splitting rounds per worker and writing its string run as a job, not on the event loop.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::keys::{KeyHistory, WorkerKeys};
use super::{is_v4_14, secs, subtag};
use crate::proto::agent_jobs::{GroupRecord, GroupsHash, GROUPS_HELD_MAX};
use crate::proto::command::Command;
use crate::proto::jobs::{AgentJob, AgentKeys, AgentOutcome, Job, JobId, JobOutcome, JobResult};
use crate::proto::node::master::Master;
use crate::proto::node::strings_out::Then;
use crate::proto::node::{ConnId, Ctx, Purpose};
use crate::proto::wazuh_error::WazuhError;
use crate::sync::pyjson::repr_list;
use crate::{clog_debug, clog_error, clog_info, clog_warn};

/// Rounds waiting for one worker; past that the worker is far behind, and the backlog gives way to
/// one full send once the worker holds the master's keys.
const BACKLOG_ROUNDS_MAX: usize = 32;

/// Dates and chunk count of a worker's last send, for `get_health` (PROTOCOL.md §7.4).
#[derive(Debug, Clone, Copy, Default)]
pub(in crate::proto::node) struct SendHealth {
    pub(in crate::proto::node) date_start: Option<SystemTime>,
    pub(in crate::proto::node) date_end: Option<SystemTime>,
    pub(in crate::proto::node) n_synced_chunks: u64,
}

/// `last_sync_agentgroup` and `last_sync_full_agentgroup` of one worker.
#[derive(Debug, Clone, Copy, Default)]
pub(in crate::proto::node) struct GroupsHealth {
    pub(in crate::proto::node) periodic: SendHealth,
    pub(in crate::proto::node) full: SendHealth,
}

/// One read of the database, shared by every worker it goes to.
#[derive(Debug, Clone)]
struct Round {
    records: Arc<Vec<GroupRecord>>,
    /// The global hash it ended with (`None`: none, as in full reads).
    hash: Option<GroupsHash>,
    full: bool,
}

/// Where the periodic loop stands.
#[derive(Debug, Clone, Copy, Default)]
enum Loop {
    /// Before the first tick: the start delay is not running yet.
    #[default]
    NotStarted,
    Sleeping {
        until: Instant,
    },
    /// The period elapsed; the read starts when no other read runs.
    Due,
    Reading,
}

/// The read in flight.
struct Reading {
    job: JobId,
    full: bool,
    started: Instant,
}

/// What one worker's send waits for.
enum SendState {
    Idle,
    /// Its string is being written (the inputs are kept to be restored if the job fails).
    Building {
        job: JobId,
        full: bool,
        started: (Instant, SystemTime),
        pending: Arc<Vec<GroupRecord>>,
        rounds: Vec<Round>,
    },
    /// The string and `syn_g_m_w[_c]` are on their way, then the worker's `syn_w_g_e`/`syn_wgc_e`.
    Sending {
        full: bool,
        started: (Instant, SystemTime),
        /// The records sent: they go back to the backlog if the send fails.
        sent: Arc<Vec<GroupRecord>>,
        /// When the worker accepted the string.
        answered: Option<Instant>,
    },
}

/// The agent-groups state of one worker connection.
struct PeerGroups {
    keys: WorkerKeys,
    backlog: VecDeque<Round>,
    /// Records held back until the worker holds their agents' keys, by id.
    pending: Arc<Vec<GroupRecord>>,
    /// A full send waits for the next full read.
    full_wanted: bool,
    /// Too much was held back or queued: send everything once the worker holds the master's keys.
    full_after_keys: bool,
    /// The full send in progress began then (its `Starting.` was logged).
    full_started: Option<(Instant, SystemTime)>,
    state: SendState,
    /// After a failed send, the next attempt waits until then.
    retry_at: Option<Instant>,
    health: GroupsHealth,
}

impl PeerGroups {
    fn new() -> PeerGroups {
        PeerGroups {
            keys: WorkerKeys::default(),
            backlog: VecDeque::new(),
            pending: Arc::default(),
            full_wanted: false,
            full_after_keys: false,
            full_started: None,
            state: SendState::Idle,
            retry_at: None,
            health: GroupsHealth::default(),
        }
    }

    fn sending_full(&self) -> bool {
        matches!(
            self.state,
            SendState::Building { full: true, .. } | SendState::Sending { full: true, .. }
        )
    }

    /// Queues a round; a backlog over its bound is dropped for a full send later.
    fn queue(&mut self, round: Round, tag: &str) {
        if self.backlog.len() < BACKLOG_ROUNDS_MAX {
            self.backlog.push_back(round);
            return;
        }
        clog_warn!(
            tag,
            subtag(true, false),
            "{BACKLOG_ROUNDS_MAX} rounds are waiting for this worker: they are dropped, and all agent groups will be sent once it holds the master's agent keys."
        );
        self.backlog.clear();
        self.pending = Arc::default();
        self.full_after_keys = true;
    }
}

/// The master's agent-groups loop and per-worker sends.
#[derive(Default)]
pub(in crate::proto::node) struct MasterGroups {
    state: Loop,
    reading: Option<Reading>,
    keys: KeyHistory,
    peers: BTreeMap<ConnId, PeerGroups>,
    /// String-building jobs in flight, by worker connection.
    building: HashMap<JobId, ConnId>,
}

impl Master {
    /// `syn_w_g_c` and the worker's results; `None` when `command` is none of them.
    pub(in crate::proto::node) fn groups_request(
        &mut self,
        conn: ConnId,
        command: &Command,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> Option<(&'static str, Vec<u8>)> {
        if !matches!(
            command,
            Command::SynWGC
                | Command::SynWGE
                | Command::SynWGCE
                | Command::SynWGErr
                | Command::SynWGCErr
        ) || !is_v4_14(ctx)
        {
            return None;
        }
        if !self.workers.get(&conn).is_some_and(|p| p.accepted) {
            let error = WazuhError::with_extra(3000, "send hello first");
            return Some(("err", error.to_payload()));
        }
        Some(match command {
            Command::SynWGC => {
                self.groups_full_wanted(conn, ctx);
                self.groups_read_next(ctx);
                ("ok", b"Sending all agent-groups information.".to_vec())
            }
            Command::SynWGE | Command::SynWGCE => {
                self.groups_result(conn, *command == Command::SynWGCE, payload, ctx)
            }
            _ => {
                let full = *command == Command::SynWGCErr;
                let text = crate::proto::quote::quote_bytes(payload);
                if let Some(peer) = self.workers.get(&conn) {
                    clog_error!(
                        peer.tag(),
                        subtag(true, full),
                        "There was an error while processing agent-groups on the peer: {text}"
                    );
                }
                self.groups_send_failed(conn, full, None, ctx);
                ("ok", b"Thanks".to_vec())
            }
        })
    }

    /// A reply to `syn_g_m_w`/`syn_g_m_w_c` (or the failure of its string) from `conn`.
    pub(in crate::proto::node) fn groups_reply(
        &mut self,
        conn: ConnId,
        full: bool,
        command: Command,
        payload: Vec<u8>,
        ctx: &mut Ctx,
    ) {
        let Some(groups) = self.groups.peers.get_mut(&conn) else {
            return;
        };
        let SendState::Sending {
            full: sending_full,
            answered,
            ..
        } = &mut groups.state
        else {
            return;
        };
        if *sending_full != full || answered.is_some() {
            return;
        }
        if command == Command::Ok {
            *answered = Some(ctx.now.mono);
            return;
        }
        let reason = WazuhError::from_payload(&payload).to_string();
        self.groups_send_failed(conn, full, Some(reason), ctx);
    }

    /// A job finished; false when it is not one of ours.
    pub(in crate::proto::node) fn groups_job_done(
        &mut self,
        id: JobId,
        result: &JobResult,
        ctx: &mut Ctx,
    ) -> bool {
        if self.groups.reading.as_ref().is_some_and(|r| r.job == id) {
            self.groups_read_done(result, ctx);
            return true;
        }
        let Some(conn) = self.groups.building.remove(&id) else {
            return false;
        };
        self.groups_built(conn, id, result, ctx);
        true
    }

    /// The loop's schedule, overdue sends, and full sends waiting for a worker's keys.
    pub(in crate::proto::node) fn groups_tick(&mut self, ctx: &mut Ctx) {
        if !is_v4_14(ctx) {
            return;
        }
        let now = ctx.now.mono;
        let agents = ctx.settings.agents;
        match self.groups.state {
            Loop::NotStarted => {
                clog_info!(
                    "Master",
                    "Local agent-groups",
                    "Sleeping {}s before starting the agent-groups task, waiting for the workers connection.",
                    whole_secs(agents.agent_group_start_delay)
                );
                self.groups.state = Loop::Sleeping {
                    until: now + agents.agent_group_start_delay,
                };
            }
            Loop::Sleeping { until } if now >= until => self.groups.state = Loop::Due,
            _ => {}
        }
        let result_limit =
            agents.timeout_agent_groups + ctx.settings.timers.timeout_cluster_request;
        let mut overdue = Vec::new();
        let mut caught_up = Vec::new();
        for (conn, groups) in &self.groups.peers {
            if let SendState::Sending {
                full,
                answered: Some(at),
                ..
            } = groups.state
            {
                if now.saturating_duration_since(at) > result_limit {
                    overdue.push((*conn, full));
                }
            }
            if groups.full_after_keys && self.groups.keys.is_current(&groups.keys.digest) {
                caught_up.push(*conn);
            }
        }
        for (conn, full) in overdue {
            let reason = format!(
                "the worker did not report the result within {}s",
                whole_secs(result_limit)
            );
            self.groups_send_failed(conn, full, Some(reason), ctx);
        }
        for conn in caught_up {
            if let Some(groups) = self.groups.peers.get_mut(&conn) {
                groups.full_after_keys = false;
            }
            self.groups_full_wanted(conn, ctx);
        }
        self.groups_read_next(ctx);
        let idle: Vec<ConnId> = self.groups.peers.keys().copied().collect();
        for conn in idle {
            self.groups_pump(conn, ctx);
        }
    }

    /// Worker `conn` is gone, and everything kept for it.
    pub(in crate::proto::node) fn groups_closed(&mut self, conn: ConnId, _ctx: &mut Ctx) {
        self.groups.peers.remove(&conn);
        self.groups.building.retain(|_, owner| *owner != conn);
    }

    /// A new local-integrity snapshot: the master's `client.keys` digest and, when it changed, its
    /// agents.
    pub(in crate::proto::node) fn groups_master_keys(
        &mut self,
        digest: Option<String>,
        agents: Option<&AgentKeys>,
    ) {
        self.groups.keys.snapshot(digest, agents);
    }

    /// A worker's integrity metadata was compared: the digest of its `client.keys`.
    pub(in crate::proto::node) fn groups_worker_keys(
        &mut self,
        conn: ConnId,
        digest: Option<String>,
    ) {
        let history = &self.groups.keys;
        let groups = self
            .groups
            .peers
            .entry(conn)
            .or_insert_with(PeerGroups::new);
        if groups.keys.reported(digest, history) {
            if let Some(peer) = self.workers.get(&conn) {
                clog_debug!(
                    peer.tag(),
                    subtag(true, false),
                    "The worker holds the keys of {} agents.",
                    groups.keys.agents.len()
                );
            }
        }
    }

    /// `get_health` figures of worker `conn`.
    pub(in crate::proto::node) fn groups_health(&self, conn: ConnId) -> GroupsHealth {
        self.groups
            .peers
            .get(&conn)
            .map(|g| g.health)
            .unwrap_or_default()
    }

    /// Worker `conn` needs everything: log the start and wait for the next full read.
    fn groups_full_wanted(&mut self, conn: ConnId, ctx: &mut Ctx) {
        let Some(peer) = self.workers.get(&conn) else {
            return;
        };
        let groups = self
            .groups
            .peers
            .entry(conn)
            .or_insert_with(PeerGroups::new);
        if groups.full_wanted || groups.sending_full() {
            return;
        }
        clog_info!(peer.tag(), subtag(true, true), "Starting.");
        groups.full_wanted = true;
        groups.full_after_keys = false;
        groups.full_started = Some((ctx.now.mono, ctx.now.wall));
        groups.health.full.date_start = Some(ctx.now.wall);
    }

    /// Starts the next database read when none runs: a due periodic round first, then a full read
    /// for every worker waiting for one.
    fn groups_read_next(&mut self, ctx: &mut Ctx) {
        if self.groups.reading.is_some() {
            return;
        }
        if matches!(self.groups.state, Loop::Due) {
            clog_info!("Master", "Local agent-groups", "Starting.");
            if !self.workers.values().any(|w| w.accepted) {
                clog_info!(
                    "Master",
                    "Local agent-groups",
                    "No clients connected. Skipping."
                );
                self.groups.state = Loop::Sleeping {
                    until: ctx.now.mono + ctx.settings.agents.sync_agent_groups,
                };
            } else {
                self.groups_read(false, ctx);
                self.groups.state = Loop::Reading;
                return;
            }
        }
        if self.groups.peers.values().any(|g| g.full_wanted) {
            self.groups_read(true, ctx);
        }
    }

    fn groups_read(&mut self, full: bool, ctx: &mut Ctx) {
        let job = ctx.job(Job::Agents(AgentJob::GroupsCollect { full }));
        self.groups.reading = Some(Reading {
            job,
            full,
            started: ctx.now.mono,
        });
    }

    /// A read ended: its round goes to every accepted worker (periodic) or to those waiting for a
    /// full send, replacing what they had queued.
    fn groups_read_done(&mut self, result: &JobResult, ctx: &mut Ctx) {
        let Some(reading) = self.groups.reading.take() else {
            return;
        };
        let took = ctx.now.mono.saturating_duration_since(reading.started);
        let (round, warnings, error) = match result {
            Ok(JobOutcome::Agents(AgentOutcome::GroupsCollected {
                records,
                hash,
                warnings,
                error,
            })) => (
                Round {
                    records: records.clone(),
                    hash: if reading.full { None } else { hash.clone() },
                    full: reading.full,
                },
                warnings.clone(),
                error.clone(),
            ),
            other => {
                let error = match other {
                    Err(e) => e.clone(),
                    Ok(_) => "the agent-groups read gave an unexpected result".into(),
                };
                let round = Round {
                    records: Arc::default(),
                    hash: None,
                    full: reading.full,
                };
                (round, Vec::new(), Some(error))
            }
        };
        if reading.full {
            self.groups_full_read(round, &warnings, error.as_deref());
        } else {
            for w in &warnings {
                clog_warn!("Master", "Local agent-groups", "{w}");
            }
            if let Some(e) = &error {
                clog_error!(
                    "Master",
                    "Local agent-groups",
                    "Error getting agent-groups from WDB: {e}"
                );
            }
            clog_info!(
                "Master",
                "Local agent-groups",
                "Finished in {}s.",
                secs(took)
            );
            self.groups.state = Loop::Sleeping {
                until: ctx.now.mono + ctx.settings.agents.sync_agent_groups,
            };
            // A failed read with nothing in it has nothing to tell anyone (stock masters send
            // nothing either); one with records goes out, or they would be lost.
            let empty = round.records.is_empty() && round.hash.is_none();
            let accepted: Vec<(ConnId, String)> = self
                .workers
                .iter()
                .filter(|(_, w)| w.accepted && !empty)
                .map(|(c, w)| (*c, w.tag()))
                .collect();
            for (conn, tag) in accepted {
                let groups = self
                    .groups
                    .peers
                    .entry(conn)
                    .or_insert_with(PeerGroups::new);
                groups.queue(round.clone(), &tag);
            }
        }
        let conns: Vec<ConnId> = self.groups.peers.keys().copied().collect();
        for conn in conns {
            self.groups_pump(conn, ctx);
        }
        self.groups_read_next(ctx);
    }

    /// A full read: it supersedes everything queued or held for the workers that wanted it. One
    /// that failed part-way supersedes nothing: what it read is queued behind the rest.
    fn groups_full_read(&mut self, round: Round, warnings: &[String], error: Option<&str>) {
        for (conn, groups) in self.groups.peers.iter_mut() {
            if !groups.full_wanted {
                continue;
            }
            let tag = self
                .workers
                .get(conn)
                .map_or_else(|| "Master".to_string(), |p| p.tag());
            for w in warnings {
                clog_warn!(tag, subtag(true, true), "{w}");
            }
            if let Some(e) = error {
                clog_error!(
                    tag,
                    subtag(true, true),
                    "Could not obtain data from wazuh-db: {e}"
                );
            }
            groups.full_wanted = false;
            if error.is_none() {
                groups.backlog.clear();
                groups.backlog.push_back(round.clone());
                groups.pending = Arc::default();
            } else if !round.records.is_empty() {
                groups.queue(round.clone(), &tag);
            } else {
                groups.full_started = None;
            }
        }
    }

    /// Starts writing worker `conn`'s string when it is idle and has rounds waiting.
    fn groups_pump(&mut self, conn: ConnId, ctx: &mut Ctx) {
        let Some(peer) = self.workers.get(&conn) else {
            return;
        };
        let Some(groups) = self.groups.peers.get_mut(&conn) else {
            return;
        };
        if !matches!(groups.state, SendState::Idle)
            || groups.backlog.is_empty()
            || groups.retry_at.is_some_and(|at| ctx.now.mono < at)
        {
            return;
        }
        groups.retry_at = None;
        let rounds: Vec<Round> = groups.backlog.drain(..).collect();
        let full = rounds.iter().any(|r| r.full);
        let hash = if full {
            None
        } else {
            rounds.last().and_then(|r| r.hash.clone())
        };
        let now = (ctx.now.mono, ctx.now.wall);
        let started = if full {
            *groups.full_started.get_or_insert_with(|| {
                clog_info!(peer.tag(), subtag(true, true), "Starting.");
                now
            })
        } else {
            clog_info!(peer.tag(), subtag(true, false), "Starting.");
            now
        };
        let health = if full {
            &mut groups.health.full
        } else {
            &mut groups.health.periodic
        };
        health.date_start = Some(started.1);
        let pending = groups.pending.clone();
        let job = ctx.job(Job::Agents(AgentJob::GroupsEnvelope {
            pending: pending.clone(),
            rounds: rounds.iter().map(|r| r.records.clone()).collect(),
            keys: groups.keys.agents.clone(),
            hash,
        }));
        groups.state = SendState::Building {
            job,
            full,
            started,
            pending,
            rounds,
        };
        self.groups.building.insert(job, conn);
    }

    /// Worker `conn`'s string is written: send it.
    fn groups_built(&mut self, conn: ConnId, id: JobId, result: &JobResult, ctx: &mut Ctx) {
        let Some(peer) = self.workers.get_mut(&conn) else {
            return;
        };
        let Some(groups) = self.groups.peers.get_mut(&conn) else {
            return;
        };
        let state = std::mem::replace(&mut groups.state, SendState::Idle);
        let SendState::Building {
            job,
            full,
            started,
            pending,
            rounds,
        } = state
        else {
            groups.state = state;
            return;
        };
        if job != id {
            groups.state = SendState::Building {
                job,
                full,
                started,
                pending,
                rounds,
            };
            return;
        }
        let tag = peer.tag();
        let subtag = subtag(true, full);
        let Ok(JobOutcome::Agents(AgentOutcome::GroupsEnvelope {
            payload,
            chunks,
            sent,
            held,
            overflow,
        })) = result
        else {
            let error = match result {
                Err(e) => e.clone(),
                Ok(_) => "the string job gave an unexpected result".into(),
            };
            clog_error!(
                tag,
                subtag,
                "Error sending agent-groups information to {}: {error}",
                peer.name()
            );
            // Nothing was sent: everything waits for the next attempt.
            groups.pending = pending;
            for round in rounds.into_iter().rev() {
                groups.backlog.push_front(round);
            }
            groups.retry_at = Some(ctx.now.mono + ctx.settings.agents.sync_agent_groups);
            return;
        };
        groups.pending = held.clone();
        if *overflow {
            clog_warn!(
                tag,
                subtag,
                "More than {} agent-group records wait for this worker to hold their agents' keys: they are dropped, and all agent groups will be sent once it holds the master's agent keys.",
                GROUPS_HELD_MAX
            );
            groups.full_after_keys = true;
        } else if !held.is_empty() {
            clog_debug!(
                tag,
                subtag,
                "{} agent-group records wait for this worker to hold their agents' keys.",
                held.len()
            );
        }
        let Some(payload) = payload else {
            clog_info!(
                tag,
                subtag,
                "Finished in {}s. Updated 0 chunks.",
                secs(ctx.now.mono.saturating_duration_since(started.0))
            );
            groups_finished(groups, full, 0, ctx.now.wall);
            return self.groups_pump(conn, ctx);
        };
        let then = Then {
            command: if full { "syn_g_m_w_c" } else { "syn_g_m_w" },
            prefix: String::new(),
            purpose: Purpose::AgentGroups { full },
        };
        let timeout = ctx.settings.timers.timeout_cluster_request;
        clog_debug!(tag, subtag, "Sending {chunks} chunks.");
        let started_send =
            peer.strings
                .start(&mut peer.conn, payload.clone(), then, ctx.now.mono, timeout);
        groups.state = SendState::Sending {
            full,
            started,
            sent: sent.clone(),
            answered: None,
        };
        if let Err(e) = started_send {
            self.groups_send_failed(conn, full, Some(e), ctx);
        }
    }

    /// `syn_w_g_e` / `syn_wgc_e <result>`: the worker stored what we sent.
    fn groups_result(
        &mut self,
        conn: ConnId,
        full: bool,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> (&'static str, Vec<u8>) {
        let Some(peer) = self.workers.get(&conn) else {
            return ("err", Vec::new());
        };
        let tag = peer.tag();
        let subtag = subtag(true, full);
        let report = match WorkerReport::parse(payload) {
            Ok(report) => report,
            Err(e) => {
                let error = WazuhError::with_extra(3036, e);
                clog_error!(tag, subtag, "{error}");
                return ("err", error.to_payload());
            }
        };
        let groups = self
            .groups
            .peers
            .entry(conn)
            .or_insert_with(PeerGroups::new);
        let ours = matches!(groups.state, SendState::Sending { full: f, .. } if f == full);
        let started = match &groups.state {
            SendState::Sending { started, .. } if ours => Some(started.0),
            _ => None,
        };
        let took = match started {
            Some(at) => ctx.now.mono.saturating_duration_since(at),
            // A result for no send of ours (one we gave up on): timed from its last start.
            None => {
                let health = if full {
                    groups.health.full
                } else {
                    groups.health.periodic
                };
                health
                    .date_start
                    .and_then(|d| ctx.now.wall.duration_since(d).ok())
                    .unwrap_or_default()
            }
        };
        if let Some(peer) = self.workers.get(&conn) {
            crate::metrics::Metrics::global().round(
                crate::metrics::Task::AgentGroups,
                peer.name(),
                took,
            );
        }
        let line = format!(
            "Finished in {}s. Updated {} chunks.",
            secs(took),
            report.updated_chunks
        );
        if report.error_messages.is_empty() {
            clog_info!(tag, subtag, "{line}");
        } else {
            clog_error!(
                tag,
                subtag,
                "{line} There were {} chunks with errors: {}",
                report.error_messages.len(),
                repr_list(&report.error_messages)
            );
        }
        if ours {
            groups.state = SendState::Idle;
            groups_finished(groups, full, report.updated_chunks, ctx.now.wall);
            self.groups_pump(conn, ctx);
        }
        ("ok", b"Thanks".to_vec())
    }

    /// The send to `conn` failed (`reason`: log it): its records go back to the front of the
    /// backlog and the next attempt waits a period.
    fn groups_send_failed(
        &mut self,
        conn: ConnId,
        full: bool,
        reason: Option<String>,
        ctx: &mut Ctx,
    ) {
        let Some(peer) = self.workers.get(&conn) else {
            return;
        };
        let Some(groups) = self.groups.peers.get_mut(&conn) else {
            return;
        };
        let SendState::Sending {
            full: sending_full,
            sent,
            ..
        } = &groups.state
        else {
            return;
        };
        if *sending_full != full {
            return;
        }
        if let Some(reason) = reason {
            clog_error!(
                peer.tag(),
                subtag(true, full),
                "Error sending agent-groups information to {}: {reason}",
                peer.name()
            );
        }
        let round = Round {
            records: sent.clone(),
            hash: None,
            full,
        };
        groups.backlog.push_front(round);
        groups.state = SendState::Idle;
        if full {
            groups.full_started = None;
        }
        groups.retry_at = Some(ctx.now.mono + ctx.settings.agents.sync_agent_groups);
    }
}

/// Records a finished send for `get_health`.
fn groups_finished(groups: &mut PeerGroups, full: bool, chunks: u64, at: SystemTime) {
    let health = if full {
        groups.full_started = None;
        &mut groups.health.full
    } else {
        &mut groups.health.periodic
    };
    health.date_end = Some(at);
    health.n_synced_chunks = chunks;
}

/// The result JSON of `syn_w_g_e`/`syn_wgc_e`.
struct WorkerReport {
    updated_chunks: u64,
    error_messages: Vec<String>,
}

impl WorkerReport {
    fn parse(payload: &[u8]) -> Result<WorkerReport, String> {
        let value: Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        let updated_chunks = value
            .get("updated_chunks")
            .and_then(Value::as_u64)
            .ok_or("the result has no 'updated_chunks' count")?;
        let error_messages = value
            .get("error_messages")
            .and_then(Value::as_array)
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok(WorkerReport {
            updated_chunks,
            error_messages,
        })
    }
}

/// Seconds as stock logs print configured intervals: whole numbers without decimals.
fn whole_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lists_print_like_python() {
        assert_eq!(repr_list(&[]), "[]");
        assert_eq!(
            repr_list(&["Error 2003 - a".into(), "it's".into(), "x'\"y".into()]),
            r#"['Error 2003 - a', "it's", 'x\'"y']"#
        );
    }

    #[test]
    fn worker_reports_parse() {
        let r = WorkerReport::parse(
            br#"{"updated_chunks": 3, "error_messages": ["e1"], "time_spent": 0.5}"#,
        )
        .unwrap();
        assert_eq!(
            (r.updated_chunks, r.error_messages),
            (3, vec!["e1".to_string()])
        );
        assert!(WorkerReport::parse(b"{").is_err());
        assert!(WorkerReport::parse(br#"{"error_messages": []}"#).is_err());
    }
}
