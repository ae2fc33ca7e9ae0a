//! Agent groups, master → workers (PROTOCOL.md §4.3, 4.14 dialect): the master's `Local agent-groups`
//! loop and `Agent-groups send` to every worker, the worker's application and checksum check, and
//! the full resync (`syn_w_g_c`, `syn_g_m_w_c`, `syn_wgc_e`). Keys before groups: a worker is never
//! sent the groups of an agent whose key it does not hold yet.

use super::master::Master;
use super::worker::Worker;
use super::{ConnId, Ctx};
use crate::proto::command::Command;
use crate::proto::jobs::{JobId, JobResult};

/// The worker's agent-groups state.
#[derive(Default)]
pub(super) struct WorkerGroups {}

/// The master's agent-groups loop and per-worker sends.
#[derive(Default)]
pub(super) struct MasterGroups {}

impl Worker {
    /// Time passed on an accepted link.
    pub(super) fn groups_tick(&mut self, _ctx: &mut Ctx) {}

    /// The link came up or went down.
    pub(super) fn groups_reset(&mut self, _ctx: &mut Ctx) {}

    /// A reply to one of our agent-groups requests (or a failed string transfer).
    pub(super) fn groups_reply(
        &mut self,
        _full: bool,
        _command: Command,
        _payload: Vec<u8>,
        _ctx: &mut Ctx,
    ) {
    }

    /// Requests of this flow from the master; `None` when `command` is not one.
    pub(super) fn groups_request(
        &mut self,
        _command: &Command,
        _payload: &[u8],
        _ctx: &mut Ctx,
    ) -> Option<(&'static str, Vec<u8>)> {
        None
    }

    /// A job finished; false when it is not one of ours.
    pub(super) fn groups_job_done(
        &mut self,
        _id: JobId,
        _result: &JobResult,
        _ctx: &mut Ctx,
    ) -> bool {
        false
    }
}

impl Master {
    /// Requests of this flow from worker `conn`; `None` when `command` is not one.
    pub(super) fn groups_request(
        &mut self,
        _conn: ConnId,
        _command: &Command,
        _payload: &[u8],
        _ctx: &mut Ctx,
    ) -> Option<(&'static str, Vec<u8>)> {
        None
    }

    /// A reply to one of our agent-groups requests to `conn`.
    pub(super) fn groups_reply(
        &mut self,
        _conn: ConnId,
        _full: bool,
        _command: Command,
        _payload: Vec<u8>,
        _ctx: &mut Ctx,
    ) {
    }

    /// A job finished; false when it is not one of ours.
    pub(super) fn groups_job_done(
        &mut self,
        _id: JobId,
        _result: &JobResult,
        _ctx: &mut Ctx,
    ) -> bool {
        false
    }

    pub(super) fn groups_tick(&mut self, _ctx: &mut Ctx) {}

    /// Worker `conn` is gone.
    pub(super) fn groups_closed(&mut self, _conn: ConnId, _ctx: &mut Ctx) {}
}
