//! Agent-info sync, worker → master (PROTOCOL.md §4.2), both dialects: the worker's periodic task
//! (permission, reading its database off the loop, sending the string, awaiting the result) and
//! the master's side (the single agent-info slot per worker, applying the string off the loop, the
//! `syn_m_a_e`/`syn_m_a_err` result).

use super::master::Master;
use super::worker::Worker;
use super::{ConnId, Ctx};
use crate::proto::command::Command;
use crate::proto::jobs::{JobId, JobResult};

/// The worker's agent-info task.
#[derive(Default)]
pub(super) struct WorkerAgentInfo {}

/// The master's agent-info state, for all workers.
#[derive(Default)]
pub(super) struct MasterAgentInfo {}

impl Worker {
    /// Time passed on an accepted link.
    pub(super) fn agent_info_tick(&mut self, _ctx: &mut Ctx) {}

    /// The link came up or went down.
    pub(super) fn agent_info_reset(&mut self, _ctx: &mut Ctx) {}

    /// A reply to one of our agent-info requests (or a failed string transfer).
    pub(super) fn agent_info_reply(
        &mut self,
        _command: Command,
        _payload: Vec<u8>,
        _ctx: &mut Ctx,
    ) {
    }

    /// Agent-info requests from the master; `None` when `command` is not one.
    pub(super) fn agent_info_request(
        &mut self,
        _command: &Command,
        _payload: &[u8],
        _ctx: &mut Ctx,
    ) -> Option<(&'static str, Vec<u8>)> {
        None
    }

    /// A job finished; false when it is not one of ours.
    pub(super) fn agent_info_job_done(
        &mut self,
        _id: JobId,
        _result: &JobResult,
        _ctx: &mut Ctx,
    ) -> bool {
        false
    }
}

impl Master {
    /// Agent-info requests from worker `conn`; `None` when `command` is not one.
    pub(super) fn agent_info_request(
        &mut self,
        _conn: ConnId,
        _command: &Command,
        _payload: &[u8],
        _ctx: &mut Ctx,
    ) -> Option<(&'static str, Vec<u8>)> {
        None
    }

    /// A reply to one of our agent-info requests to `conn`.
    pub(super) fn agent_info_reply(
        &mut self,
        _conn: ConnId,
        _command: Command,
        _payload: Vec<u8>,
        _ctx: &mut Ctx,
    ) {
    }

    /// A job finished; false when it is not one of ours.
    pub(super) fn agent_info_job_done(
        &mut self,
        _id: JobId,
        _result: &JobResult,
        _ctx: &mut Ctx,
    ) -> bool {
        false
    }

    pub(super) fn agent_info_tick(&mut self, _ctx: &mut Ctx) {}

    /// Worker `conn` is gone.
    pub(super) fn agent_info_closed(&mut self, _conn: ConnId, _ctx: &mut Ctx) {}
}
