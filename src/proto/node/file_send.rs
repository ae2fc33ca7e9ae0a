//! Local `send_file <path> <node>` (seed 000's file-protocol test command, PROTOCOL.md §7): a
//! file under this node's `queue/cluster/` goes to a peer with the file protocol (`new_file`,
//! `file_upd`, `file_end`). On a worker the node name is ignored (the file goes to the master);
//! on the master it names a connected worker (`err` 3022 otherwise). The client gets `ok
//! Forwarding file to master node` at once (the text of both stock roles) and, when the transfer
//! is over, a `send_f_res` request carrying the bytes sent, or an `err` request saying why not.
//!
//! At most [`LOCAL_FILE_SENDS_MAX`] run at once; each runs beside the integrity sync on the same
//! connection, with its own purpose and chunk reader, and ends when the peer stops answering.

use std::time::Instant;

use super::local::LocalDelivery;
use super::master::WorkerPeer;
use super::worker::Link;
use super::{ChunkReader, ConnId, Ctx, Node, Output, PeerConn, Purpose, Role};
use crate::proto::jobs::{Job, JobId, JobOutcome, JobResult};
use crate::proto::transfer::{OutgoingFile, Step};
use crate::proto::wazuh_error::WazuhError;
use crate::{clog_error, clog_info};

/// Local file transfers under way at most.
pub(super) const LOCAL_FILE_SENDS_MAX: usize = 4;

enum Stage {
    /// The pool checks the path and reads the size.
    Checking {
        job: JobId,
    },
    Sending(OutgoingFile),
}

struct LocalFileSend {
    token: u64,
    /// The peer connection the file goes to.
    peer: ConnId,
    /// The peer's name, for the logs.
    node: String,
    /// The local client that asked.
    local: ConnId,
    stage: Stage,
    /// Last answer from the peer or the pool: a transfer without progress for
    /// `timeout_cluster_request` fails.
    progress: Instant,
}

/// The local file transfers of one node.
#[derive(Default)]
pub(super) struct FileSends {
    sends: Vec<LocalFileSend>,
    next_token: u64,
}

/// The peer connections a role holds, by connection id.
pub(super) trait PeerConns {
    fn peer(&mut self, conn: ConnId) -> Option<&mut PeerConn>;
}

impl PeerConns for std::collections::BTreeMap<ConnId, WorkerPeer> {
    fn peer(&mut self, conn: ConnId) -> Option<&mut PeerConn> {
        self.get_mut(&conn).map(|w| &mut w.conn)
    }
}

impl PeerConns for Link {
    fn peer(&mut self, conn: ConnId) -> Option<&mut PeerConn> {
        match self {
            Link::Connected { conn: c, peer, .. } if *c == conn => Some(peer),
            _ => None,
        }
    }
}

fn failure(local: ConnId, why: &str) -> LocalDelivery {
    LocalDelivery::request(
        local,
        "err",
        WazuhError::with_extra(3034, why.to_string()).to_payload(),
    )
}

impl FileSends {
    fn position(&self, token: u64) -> Option<usize> {
        self.sends.iter().position(|s| s.token == token)
    }

    /// Carries out `step` of transfer `i`; a finished or failed transfer is removed.
    fn drive(
        &mut self,
        i: usize,
        step: Step,
        peers: &mut dyn PeerConns,
        ctx: &mut Ctx,
        deliveries: &mut Vec<LocalDelivery>,
    ) {
        let send = &mut self.sends[i];
        let Stage::Sending(transfer) = &mut send.stage else {
            return;
        };
        match step {
            Step::Request { command, payload } => {
                let timeout = ctx.settings.timers.timeout_cluster_request;
                let sent = peers.peer(send.peer).map(|conn| {
                    conn.request(
                        command,
                        &payload,
                        Purpose::LocalFile { token: send.token },
                        ctx.now.mono,
                        timeout,
                    )
                });
                match sent {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => self.fail(i, &e.to_string(), deliveries),
                    None => self.fail(i, "the connection is gone", deliveries),
                }
            }
            Step::Read { offset, len } => ctx.outputs.push(Output::ReadChunk {
                conn: send.peer,
                rel: transfer.rel.clone(),
                offset,
                len,
                reader: ChunkReader::LocalFile(send.token),
            }),
            Step::Done => {
                let send = self.sends.swap_remove(i);
                if let Stage::Sending(transfer) = send.stage {
                    clog_info!(
                        "Local Server",
                        "Main",
                        "Sent {} to {} ({} bytes).",
                        transfer.rel,
                        send.node,
                        transfer.size()
                    );
                    deliveries.push(LocalDelivery::request(
                        send.local,
                        "send_f_res",
                        transfer.size().to_string().into_bytes(),
                    ));
                }
            }
        }
    }

    fn fail(&mut self, i: usize, why: &str, deliveries: &mut Vec<LocalDelivery>) {
        let send = self.sends.swap_remove(i);
        let what = match &send.stage {
            Stage::Sending(transfer) => transfer.rel.clone(),
            Stage::Checking { .. } => "a file".to_string(),
        };
        clog_error!(
            "Local Server",
            "Main",
            "Could not send {what} to {}: {why}",
            send.node
        );
        deliveries.push(failure(send.local, why));
    }

    /// The pool checked a file: its transfer starts; `false` when `id` is not such a job.
    pub(super) fn job_done(
        &mut self,
        id: JobId,
        result: &JobResult,
        peers: &mut dyn PeerConns,
        ctx: &mut Ctx,
        deliveries: &mut Vec<LocalDelivery>,
    ) -> bool {
        let Some(i) = self
            .sends
            .iter()
            .position(|s| matches!(s.stage, Stage::Checking { job } if job == id))
        else {
            return false;
        };
        match result {
            Ok(JobOutcome::LocalFile { rel, bytes }) => {
                let (transfer, step) =
                    OutgoingFile::start(rel, *bytes, ctx.settings.limits.chunk_bytes);
                self.sends[i].stage = Stage::Sending(transfer);
                self.sends[i].progress = ctx.now.mono;
                self.drive(i, step, peers, ctx, deliveries);
            }
            Ok(other) => self.fail(i, &format!("unexpected job result {other:?}"), deliveries),
            Err(e) => self.fail(i, e, deliveries),
        }
        true
    }

    /// The peer answered a step of transfer `token`.
    pub(super) fn replied(
        &mut self,
        token: u64,
        peers: &mut dyn PeerConns,
        ctx: &mut Ctx,
        deliveries: &mut Vec<LocalDelivery>,
    ) {
        let Some(i) = self.position(token) else {
            return;
        };
        self.sends[i].progress = ctx.now.mono;
        let Stage::Sending(transfer) = &mut self.sends[i].stage else {
            return;
        };
        let step = transfer.replied(false);
        self.drive(i, step, peers, ctx, deliveries);
    }

    /// The transport read a chunk of transfer `token`.
    pub(super) fn chunk_read(
        &mut self,
        token: u64,
        data: Result<Vec<u8>, String>,
        peers: &mut dyn PeerConns,
        ctx: &mut Ctx,
        deliveries: &mut Vec<LocalDelivery>,
    ) {
        let Some(i) = self.position(token) else {
            return;
        };
        let Stage::Sending(transfer) = &mut self.sends[i].stage else {
            return;
        };
        match data {
            Ok(bytes) => {
                let step = transfer.chunk_read(&bytes);
                self.drive(i, step, peers, ctx, deliveries);
            }
            Err(e) => self.fail(i, &e, deliveries),
        }
    }

    /// The connection to `peer` is gone: its transfers fail.
    pub(super) fn peer_closed(&mut self, peer: ConnId, deliveries: &mut Vec<LocalDelivery>) {
        while let Some(i) = self.sends.iter().position(|s| s.peer == peer) {
            self.fail(i, "the connection to the node closed", deliveries);
        }
    }

    /// The worker's link went down or came up again: every transfer fails.
    pub(super) fn all_closed(&mut self, deliveries: &mut Vec<LocalDelivery>) {
        while !self.sends.is_empty() {
            self.fail(0, "the connection to the master closed", deliveries);
        }
    }

    /// Transfers without progress for `timeout_cluster_request` fail.
    pub(super) fn tick(&mut self, ctx: &Ctx, deliveries: &mut Vec<LocalDelivery>) {
        let timeout = ctx.settings.timers.timeout_cluster_request;
        while let Some(i) = self
            .sends
            .iter()
            .position(|s| ctx.now.mono.saturating_duration_since(s.progress) > timeout)
        {
            self.fail(i, "the node did not answer in time", deliveries);
        }
    }
}

impl Node {
    /// Whether job `id` checks the file of a local transfer.
    pub(super) fn file_send_waits_for(&self, id: JobId) -> bool {
        let sends = match &self.role {
            Role::Master(m) => &m.file_sends,
            Role::Worker(w) => &w.file_sends,
        };
        sends
            .sends
            .iter()
            .any(|s| matches!(s.stage, Stage::Checking { job } if job == id))
    }

    /// Local `send_file <absolute path> <node>`.
    pub(super) fn send_file_local(
        &mut self,
        local: ConnId,
        payload: &[u8],
        now: super::Now,
    ) -> (&'static str, Vec<u8>) {
        let text = String::from_utf8_lossy(payload);
        let Some((path, node)) = text
            .rsplit_once(' ')
            .filter(|(p, n)| !p.is_empty() && !n.is_empty())
        else {
            return (
                "err",
                WazuhError::with_extra(1000, "send_file takes '<absolute path> <node name>'")
                    .to_payload(),
            );
        };
        let (sends, peer, name) = match &mut self.role {
            Role::Master(master) => match master.connected_worker(node) {
                Some(conn) => (&mut master.file_sends, conn, node.to_string()),
                None => return ("err", WazuhError::new(3022).to_payload()),
            },
            Role::Worker(worker) => match worker.connected_peer() {
                Some((conn, _)) => (&mut worker.file_sends, conn, "master".to_string()),
                None => return ("err", WazuhError::new(3023).to_payload()),
            },
        };
        if sends.sends.len() >= LOCAL_FILE_SENDS_MAX {
            return (
                "err",
                WazuhError::with_extra(
                    1000,
                    format!("{LOCAL_FILE_SENDS_MAX} local file transfers are already under way"),
                )
                .to_payload(),
            );
        }
        let job = self.ids.next();
        self.outputs.push(Output::Job {
            id: job,
            job: Job::LocalFile {
                path: path.to_string(),
            },
        });
        sends.next_token += 1;
        sends.sends.push(LocalFileSend {
            token: sends.next_token,
            peer,
            node: name,
            local,
            stage: Stage::Checking { job },
            progress: now.mono,
        });
        ("ok", b"Forwarding file to master node".to_vec())
    }

    /// Runs `f` on the role's transfers with its peer connections, then delivers what it produced
    /// to the local clients.
    fn with_file_sends<R>(
        &mut self,
        now: super::Now,
        f: impl FnOnce(&mut FileSends, &mut dyn PeerConns, &mut Ctx, &mut Vec<LocalDelivery>) -> R,
    ) -> R {
        let mut ctx = Ctx {
            settings: &self.settings,
            now,
            outputs: &mut self.outputs,
            ids: &mut self.ids,
            rng: &mut self.rng,
            scratch: &mut self.scratch,
        };
        let mut deliveries = Vec::new();
        let result = match &mut self.role {
            Role::Master(m) => f(&mut m.file_sends, &mut m.workers, &mut ctx, &mut deliveries),
            Role::Worker(w) => f(&mut w.file_sends, &mut w.link, &mut ctx, &mut deliveries),
        };
        self.deliver_to_locals(deliveries, now);
        self.flush_all();
        result
    }

    /// A chunk a local transfer asked for was read.
    pub(super) fn file_send_chunk(
        &mut self,
        token: u64,
        data: Result<Vec<u8>, String>,
        now: super::Now,
    ) {
        self.with_file_sends(now, |sends, peers, ctx, out| {
            sends.chunk_read(token, data, peers, ctx, out)
        });
    }

    /// A job of a local transfer finished.
    pub(super) fn file_send_job_done(&mut self, id: JobId, result: &JobResult, now: super::Now) {
        self.with_file_sends(now, |sends, peers, ctx, out| {
            sends.job_done(id, result, peers, ctx, out)
        });
    }

    pub(super) fn file_send_tick(&mut self, now: super::Now) {
        self.with_file_sends(now, |sends, _, ctx, out| sends.tick(ctx, out));
    }
}
