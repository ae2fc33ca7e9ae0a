//! Forwarding daemon requests (PROTOCOL.md §4.4): a worker's local `sendsync`/`sendasync` relayed to
//! the master, the master's bounded queue handed to the pool in batches, and the answer sent back
//! as a long string (`sendsyn_res`) or an error (`sendsyn_err`) to the local client that asked. Also
//! the agent listing for `cluster_control -a` and the active-agent counts of `get_health`.

use super::master::Master;
use super::worker::Worker;
use super::{ConnId, Ctx, Node, Now};
use crate::proto::command::Command;
use crate::proto::jobs::{JobId, JobResult};

/// The worker's relayed requests.
#[derive(Default)]
pub(super) struct WorkerSendSync {}

/// The master's sendsync queue and batch.
#[derive(Default)]
pub(super) struct MasterSendSync {}

impl Worker {
    /// Time passed on an accepted link.
    pub(super) fn sendsync_tick(&mut self, _ctx: &mut Ctx) {}

    /// The link came up or went down.
    pub(super) fn sendsync_reset(&mut self, _ctx: &mut Ctx) {}

    /// A reply to one of our sendsync requests (or a failed string transfer).
    pub(super) fn sendsync_reply(&mut self, _command: Command, _payload: Vec<u8>, _ctx: &mut Ctx) {}

    /// Requests of this flow from the master; `None` when `command` is not one.
    pub(super) fn sendsync_request(
        &mut self,
        _command: &Command,
        _payload: &[u8],
        _ctx: &mut Ctx,
    ) -> Option<(&'static str, Vec<u8>)> {
        None
    }

    /// A job finished; false when it is not one of ours.
    pub(super) fn sendsync_job_done(
        &mut self,
        _id: JobId,
        _result: &JobResult,
        _ctx: &mut Ctx,
    ) -> bool {
        false
    }
}

impl Master {
    /// Requests of this flow from worker `conn`; `None` when `command` is not one, `Some(None)` when
    /// the answer comes later (with the same counter).
    pub(super) fn sendsync_request(
        &mut self,
        _conn: ConnId,
        _counter: u32,
        _command: &Command,
        _payload: &[u8],
        _ctx: &mut Ctx,
    ) -> Option<Option<(&'static str, Vec<u8>)>> {
        None
    }

    /// A reply to one of our sendsync requests to `conn`.
    pub(super) fn sendsync_reply(
        &mut self,
        _conn: ConnId,
        _command: Command,
        _payload: Vec<u8>,
        _ctx: &mut Ctx,
    ) {
    }

    /// A job finished; false when it is not one of ours.
    pub(super) fn sendsync_job_done(
        &mut self,
        _id: JobId,
        _result: &JobResult,
        _ctx: &mut Ctx,
    ) -> bool {
        false
    }

    pub(super) fn sendsync_tick(&mut self, _ctx: &mut Ctx) {}

    /// Worker `conn` is gone.
    pub(super) fn sendsync_closed(&mut self, _conn: ConnId, _ctx: &mut Ctx) {}
}

impl Node {
    /// Local-socket requests of this module (`sendsync`, `sendasync`, the agent listing): `None` when
    /// `command` is not one; `Some(None)` when the answer comes later.
    pub(super) fn sendsync_local_request(
        &mut self,
        _conn: ConnId,
        _counter: u32,
        _command: &Command,
        _payload: &[u8],
        _now: Now,
    ) -> Option<Option<(&'static str, Vec<u8>)>> {
        None
    }
}
