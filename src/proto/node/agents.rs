//! Routing of the agent flows (agent-info, agent groups, sendsync) on both roles: requests, replies,
//! jobs, time and disconnections are offered to each flow in turn, so `master.rs` and `worker.rs`
//! stay about membership.

use std::time::{Duration, Instant};

use super::master::Master;
use super::strings_out::{Failed, StringSends};
use super::worker::{Link, Worker};
use super::{ConnId, Ctx, PeerConn, Purpose};
use crate::proto::command::Command;
use crate::proto::jobs::{JobId, JobResult};

impl Master {
    /// Requests of the agent flows from worker `conn`; `None` when `command` is none of them.
    pub(super) fn agents_request(
        &mut self,
        conn: ConnId,
        counter: u32,
        command: &Command,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> Option<Option<(&'static str, Vec<u8>)>> {
        if let Some(reply) = self.agent_info_request(conn, counter, command, payload, ctx) {
            return Some(reply);
        }
        if let Some(reply) = self.groups_request(conn, command, payload, ctx) {
            return Some(Some(reply));
        }
        if let Some(reply) = self.dapi_request(conn, command, payload, ctx) {
            return Some(Some(reply));
        }
        self.sendsync_request(conn, counter, command, payload, ctx)
    }

    /// A reply from worker `conn` to one of the agent flows; gives other purposes back.
    pub(super) fn agents_reply(
        &mut self,
        conn: ConnId,
        purpose: Purpose,
        command: Command,
        payload: Vec<u8>,
        ctx: &mut Ctx,
    ) -> Option<(Purpose, Command, Vec<u8>)> {
        match purpose {
            Purpose::StringStep { token } => {
                let timeout = ctx.settings.timers.timeout_cluster_request;
                let peer = self.workers.get_mut(&conn)?;
                let failed = peer.strings.replied(
                    &mut peer.conn,
                    token,
                    command,
                    payload,
                    ctx.now.mono,
                    timeout,
                )?;
                self.agents_reply(conn, failed.purpose, failed.command, failed.payload, ctx)
            }
            Purpose::AgentInfo => {
                self.agent_info_reply(conn, command, payload, ctx);
                None
            }
            Purpose::AgentGroups { full } => {
                self.groups_reply(conn, full, command, payload, ctx);
                None
            }
            Purpose::SendSync { client } => {
                self.sendsync_reply(conn, client, command, payload, ctx);
                None
            }
            other if self.dapi_reply(conn, &other, &command, &payload, ctx) => None,
            other => Some((other, command, payload)),
        }
    }

    /// Requests to `conn` that timed out: string steps move on or fail their transfer.
    pub(super) fn agents_expired(&mut self, conn: ConnId, purposes: Vec<Purpose>, ctx: &mut Ctx) {
        let timeout = ctx.settings.timers.timeout_cluster_request;
        for purpose in purposes {
            let sends = self
                .workers
                .get_mut(&conn)
                .map(|peer| (&mut peer.strings, &mut peer.conn));
            if let Some(f) = expiry(purpose, sends, "worker", ctx.now.mono, timeout) {
                self.agents_reply(conn, f.purpose, f.command, f.payload, ctx);
            }
        }
    }

    /// A job finished; false when no agent flow owns it.
    pub(super) fn agents_job_done(&mut self, id: JobId, result: &JobResult, ctx: &mut Ctx) -> bool {
        self.agent_info_job_done(id, result, ctx)
            || self.groups_job_done(id, result, ctx)
            || self.sendsync_job_done(id, result, ctx)
            || self.dapi_job_done(id, result, ctx)
    }

    pub(super) fn agents_tick(&mut self, ctx: &mut Ctx) {
        self.agent_info_tick(ctx);
        self.groups_tick(ctx);
        self.sendsync_tick(ctx);
        self.dapi_tick(ctx);
    }

    /// Worker `conn` is gone.
    pub(super) fn agents_closed(&mut self, conn: ConnId, ctx: &mut Ctx) {
        self.agent_info_closed(conn, ctx);
        self.groups_closed(conn, ctx);
        self.sendsync_closed(conn, ctx);
        self.dapi_closed(conn, ctx);
    }
}

impl Worker {
    /// Requests of the agent flows from the master; `None` when `command` is none of them.
    pub(super) fn agents_request(
        &mut self,
        command: &Command,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> Option<(&'static str, Vec<u8>)> {
        if let Some(reply) = self.agent_info_request(command, payload, ctx) {
            return Some(reply);
        }
        if let Some(reply) = self.groups_request(command, payload, ctx) {
            return Some(reply);
        }
        if let Some(reply) = self.dapi_request(command, payload, ctx) {
            return Some(reply);
        }
        self.sendsync_request(command, payload, ctx)
    }

    /// A reply from the master to one of the agent flows; gives other purposes back.
    pub(super) fn agents_reply(
        &mut self,
        purpose: Purpose,
        command: Command,
        payload: Vec<u8>,
        ctx: &mut Ctx,
    ) -> Option<(Purpose, Command, Vec<u8>)> {
        match purpose {
            Purpose::StringStep { token } => {
                let timeout = ctx.settings.timers.timeout_cluster_request;
                let Link::Connected { peer, .. } = &mut self.link else {
                    return None;
                };
                let failed =
                    self.strings
                        .replied(peer, token, command, payload, ctx.now.mono, timeout)?;
                self.agents_reply(failed.purpose, failed.command, failed.payload, ctx)
            }
            Purpose::AgentInfo => {
                self.agent_info_reply(command, payload, ctx);
                None
            }
            Purpose::AgentGroups { full } => {
                self.groups_reply(full, command, payload, ctx);
                None
            }
            Purpose::SendSync { client } => {
                self.sendsync_reply(client, command, payload, ctx);
                None
            }
            other if self.dapi_reply(&other, &command, &payload, ctx) => None,
            other => Some((other, command, payload)),
        }
    }

    /// Requests to the master that timed out: string steps move on or fail their transfer; the
    /// flows hear of their own requests' timeouts as `err` replies.
    pub(super) fn agents_expired(&mut self, purposes: Vec<Purpose>, ctx: &mut Ctx) {
        let timeout = ctx.settings.timers.timeout_cluster_request;
        for purpose in purposes {
            let sends = match &mut self.link {
                Link::Connected { peer, .. } => Some((&mut self.strings, peer.as_mut())),
                _ => None,
            };
            if let Some(f) = expiry(purpose, sends, "master", ctx.now.mono, timeout) {
                self.agents_reply(f.purpose, f.command, f.payload, ctx);
            }
        }
    }

    /// A job finished; false when no agent flow owns it.
    pub(super) fn agents_job_done(&mut self, id: JobId, result: &JobResult, ctx: &mut Ctx) -> bool {
        self.agent_info_job_done(id, result, ctx)
            || self.groups_job_done(id, result, ctx)
            || self.sendsync_job_done(id, result, ctx)
            || self.dapi_job_done(id, result, ctx)
    }

    /// Time passed on an accepted link.
    pub(super) fn agents_tick(&mut self, ctx: &mut Ctx) {
        self.agent_info_tick(ctx);
        self.groups_tick(ctx);
        self.sendsync_tick(ctx);
        self.dapi_tick(ctx);
    }

    /// The link came up or went down: string transfers end with it.
    pub(super) fn agents_reset(&mut self, ctx: &mut Ctx) {
        self.strings.clear();
        self.agent_info_reset(ctx);
        self.groups_reset(ctx);
        self.sendsync_reset(ctx);
        self.dapi_reset(ctx);
        self.file_sends.all_closed(&mut self.deliveries);
    }
}

/// What a timed-out request of the agent flows becomes, on either role: a string step moves on (or
/// fails its transfer) on the connection's `sends`, a flow's own request comes back as an `err`
/// reply saying that the `peer` did not answer. Other purposes are not the agent flows' business.
fn expiry(
    purpose: Purpose,
    sends: Option<(&mut StringSends, &mut PeerConn)>,
    peer: &str,
    now: Instant,
    timeout: Duration,
) -> Option<Failed> {
    match purpose {
        Purpose::StringStep { token } => {
            let (strings, conn) = sends?;
            strings.timed_out(conn, token, now, timeout)
        }
        Purpose::AgentInfo
        | Purpose::AgentGroups { .. }
        | Purpose::SendSync { .. }
        | Purpose::DapiRelay { .. }
        | Purpose::DapiShare { .. }
        | Purpose::DapiForward { .. }
        | Purpose::DapiAnswer { .. } => Some(Failed {
            purpose,
            command: Command::Err,
            payload: format!("the {peer} did not answer in time").into_bytes(),
        }),
        _ => None,
    }
}
