//! The node engine: every connection of one node (cluster links and local clients) driven as state
//! machines. Inputs are calls (`accept_*`, `receive`, `closed`, `tick`, ...) with the time passed in;
//! outputs are [`Output`] values the transport carries out. No IO, no clock, no runtime here.

mod agent_info;
mod agent_listing;
mod agents;
mod dapi;
mod dapi_master;
mod dapi_worker;
mod file_send;
mod groups;
mod listing;
mod local;
mod master;
mod master_sync;
mod reasons;
mod relay_table;
mod ruleset;
mod scratch;
mod sendsync;
mod settings;
mod strings_out;
mod worker;
mod worker_sync;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use settings::{AgentSettings, NodeSettings, SyncSettings, Timers};

use self::local::{LocalDelivery, LocalPeer};
use self::master::Master;
use self::scratch::{Holder, Scratch};
use self::worker::Worker;
use super::connection::{ConnLimits, Connection};
use super::crypto::{Cipher, CryptoError};
use super::files::{FileOp, FileWrite};
use super::jobs::{Job, JobId, JobResult};

/// Identifies one connection of this node.
pub type ConnId = u64;

/// The two clocks the engine needs: monotonic for timeouts, wall for the dates it reports.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl Now {
    pub fn system() -> Now {
        Now {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// What the transport must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write these frames, in order, after everything queued before on that connection.
    Send { conn: ConnId, frames: Vec<Bytes> },
    /// Close the connection (after the frames already queued are written).
    Close { conn: ConnId },
    /// Open a TCP connection to the master; report with `connected` or `connect_failed`.
    Connect {
        conn: ConnId,
        host: String,
        port: u16,
    },
    /// Make sure a directory below the install root exists.
    CreateDir { rel: String },
    /// Write received file bytes; report a failure with `file_write_failed`.
    WriteFile { conn: ConnId, write: FileWrite },
    /// Delete a scratch file below `queue/cluster/` (its transfer or task is over); a missing file
    /// is fine. Ordered with the writes before it.
    RemoveFile { rel: String },
    /// Delete a peer's directory below `queue/cluster/` if it is empty (its connection is over).
    RemoveEmptyDir { rel: String },
    /// Run a job on the worker pool; report with `job_done`.
    Job { id: JobId, job: Job },
    /// Read part of a file being sent on `conn`; report with `chunk_read`, passing `reader` back.
    ReadChunk {
        conn: ConnId,
        rel: String,
        offset: u64,
        len: usize,
        reader: ChunkReader,
    },
}

/// Which transfer on a connection asked for a chunk: the integrity sync's, or a local
/// `send_file` (by token); both may be under way on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkReader {
    Sync,
    LocalFile(u64),
}

/// What a reply to one of our requests is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Purpose {
    Hello,
    Keepalive,
    /// A local client's request relayed to the master; the answer goes back to that client.
    ForwardToLocal {
        local: ConnId,
    },
    /// `echo-m` sent to a worker whose name another connection claims.
    Probe,
    /// Worker: `syn_i_w_m_p`, answered `True` or `False`.
    Permission,
    /// The peer's task id for a file we are about to send (`syn_i_w_m`, `syn_m_c`, `syn_e_w_m`).
    SyncTaskId,
    /// A step of a file transfer (`new_file`, `file_upd`, `file_end`).
    FileStep,
    /// Master: `syn_m_c_e`; an `err` answer (the worker could not take the package) is logged.
    SyncEnd,
    /// A step of a long string we send (`new_str`, `str_upd`); `token` names the transfer.
    StringStep {
        token: u64,
    },
    /// Agent-info sync (§4.2): the worker's `syn_a_w_m_p` and `syn_a_w_m`, the master's result.
    AgentInfo,
    /// Agent-groups send (§4.3): `syn_g_m_w`/`syn_g_m_w_c` and the worker's `syn_w_g_*` results.
    AgentGroups {
        full: bool,
    },
    /// sendsync (§4.4): the master's `sendsyn_res`/`sendsyn_err`, the worker's relayed request;
    /// `client` is the worker's id of the local client the request came from.
    SendSync {
        client: u32,
    },
    /// DAPI (§4.5): a worker's relay of a local client's request to the master (`client` is the
    /// local client's id); an `err` reply fails the request at once.
    DapiRelay {
        client: u32,
    },
    /// DAPI: the master's share of a `distributed_master` request sent to a worker as
    /// `dapi <uuid> <request>`; an `err` reply fails that share.
    DapiShare {
        uuid: String,
    },
    /// DAPI: a master's local `dapi_fwd` sent on to a worker; an `err` reply goes to the client.
    DapiForward {
        local: ConnId,
    },
    /// DAPI: a result (`dapi_res` after its long string) or a `dapi_err` we sent; `id` is the
    /// request id it answers, for the log.
    DapiAnswer {
        id: String,
    },
    /// A step of a local `send_file` transfer (`token` names it).
    LocalFile {
        token: u64,
    },
    /// Nothing to do with the reply.
    Ignore,
}

type PeerConn = Connection<Purpose>;

enum Role {
    Master(Master),
    Worker(Worker),
}

/// One node: its role, its local clients and the outputs waiting for the transport.
pub struct Node {
    settings: NodeSettings,
    role: Role,
    locals: BTreeMap<ConnId, LocalPeer>,
    rng: StdRng,
    ids: Ids,
    outputs: Vec<Output>,
    cipher: Cipher,
    next_keepalive_check: Instant,
    /// The daemon is stopping: connections closing now are not reconnected or reported.
    stopping: bool,
    /// Local `get_hash` requests waiting for their job.
    hash_asks: ruleset::HashAsks,
    /// Who holds each file of `queue/cluster/` this node's tasks use.
    scratch: Scratch,
}

impl Node {
    /// A node starting now. `seed` drives counters and ids (random in production).
    pub fn new(settings: NodeSettings, seed: u64, now: Now) -> Result<Node, CryptoError> {
        let cipher = Cipher::from_cluster_key(&settings.cluster_key)?;
        let role = if settings.is_master {
            Role::Master(Master::new(now.mono))
        } else {
            Role::Worker(Worker::new(now.mono))
        };
        let next_keepalive_check = now.mono + settings.timers.check_worker_lastkeepalive;
        Ok(Node {
            settings,
            role,
            locals: BTreeMap::new(),
            rng: StdRng::seed_from_u64(seed),
            ids: Ids::default(),
            outputs: Vec::new(),
            cipher,
            next_keepalive_check,
            stopping: false,
            hash_asks: ruleset::HashAsks::default(),
            scratch: Scratch::default(),
        })
    }

    pub fn is_master(&self) -> bool {
        matches!(self.role, Role::Master(_))
    }

    /// Takes everything the transport must do, in order.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    fn new_peer_conn(&mut self, encrypted: bool) -> PeerConn {
        let cipher = if encrypted {
            self.cipher.clone()
        } else {
            Cipher::Plain
        };
        let limits: ConnLimits = self.settings.limits;
        Connection::new(cipher, limits, self.rng.random())
    }

    /// A local client connected to `queue/cluster/c-internal.sock`.
    pub fn accept_local(&mut self, now: Now) -> ConnId {
        let id = self.ids.next();
        let conn = self.new_peer_conn(false);
        // Unique among the connected clients (answers relayed by the master are routed by it); a
        // few draws suffice while clients use a small part of the 2^20 ids.
        let mut client_id = self.rng.random_range(0..1u32 << 20);
        for _ in 0..32 {
            if !self.locals.values().any(|p| p.client_id() == client_id) {
                break;
            }
            client_id = self.rng.random_range(0..1u32 << 20);
        }
        self.locals.insert(id, LocalPeer::new(conn, client_id, now));
        id
    }

    /// A TCP connection was accepted on the cluster port (master only). `None`: refuse it (close now).
    pub fn accept_cluster(&mut self, ip: IpAddr, port: u16, now: Now) -> Option<ConnId> {
        let id = self.ids.next();
        let conn = self.new_peer_conn(true);
        let Role::Master(master) = &mut self.role else {
            return None;
        };
        master
            .accept(id, conn, ip, port, &self.settings, now)
            .then_some(id)
    }

    /// The TCP connection to the master is established (worker only).
    pub fn connected(&mut self, conn: ConnId, now: Now) {
        let peer = self.new_peer_conn(true);
        self.with_role(
            now,
            |_, _| {},
            |w, ctx| {
                w.connected(conn, peer, ctx);
                Vec::new()
            },
        );
    }

    /// The TCP connection to the master could not be opened (worker only).
    pub fn connect_failed(&mut self, conn: ConnId, error: &str, now: Now) {
        self.with_role(
            now,
            |_, _| {},
            |w, ctx| {
                w.connect_failed(conn, error, ctx);
                Vec::new()
            },
        );
    }

    /// Runs `f` on the role with a context; relayed answers go to local clients.
    fn with_role(
        &mut self,
        now: Now,
        on_master: impl FnOnce(&mut Master, &mut Ctx),
        on_worker: impl FnOnce(&mut Worker, &mut Ctx) -> Vec<LocalDelivery>,
    ) {
        let mut ctx = Ctx {
            settings: &self.settings,
            now,
            outputs: &mut self.outputs,
            ids: &mut self.ids,
            rng: &mut self.rng,
            scratch: &mut self.scratch,
        };
        let (deliveries, replies) = match &mut self.role {
            Role::Master(master) => {
                on_master(master, &mut ctx);
                (
                    std::mem::take(&mut master.deliveries),
                    std::mem::take(&mut master.local_replies),
                )
            }
            Role::Worker(worker) => {
                let mut deliveries = on_worker(worker, &mut ctx);
                deliveries.append(&mut worker.deliveries);
                (deliveries, Vec::new())
            }
        };
        self.deliver_to_locals(deliveries, now);
        self.reply_to_locals(replies);
    }

    /// Bytes arrived on a connection.
    pub fn receive(&mut self, conn: ConnId, bytes: &[u8], now: Now) {
        if self.locals.contains_key(&conn) {
            self.receive_local(conn, bytes, now);
            return;
        }
        self.with_role(
            now,
            |m, ctx| m.receive(conn, bytes, ctx),
            |w, ctx| w.receive(conn, bytes, ctx),
        );
    }

    /// The peer closed the connection, or reading from it failed.
    pub fn closed(&mut self, conn: ConnId, now: Now) {
        if self.stopping {
            return;
        }
        if let Some(mut peer) = self.locals.remove(&conn) {
            peer.conn.release_received_files();
            flush_conn(&mut self.outputs, conn, &mut peer.conn);
            peer.log_closed();
            self.sendsync_local_closed(conn, peer.client_id());
            return;
        }
        self.with_role(
            now,
            |m, ctx| m.closed(conn, ctx),
            |w, ctx| w.closed(conn, ctx),
        );
    }

    /// A job ran on the pool. Whatever scratch file it held that its flow did not take is deleted.
    pub fn job_done(&mut self, id: JobId, result: JobResult, now: Now) {
        self.dispatch_job_result(id, result, now);
        self.scratch.job_finished(id, &mut self.outputs);
    }

    fn dispatch_job_result(&mut self, id: JobId, result: JobResult, now: Now) {
        if self.hash_job_done(id, &result) {
            self.flush_all();
            return;
        }
        if self.file_send_waits_for(id) {
            self.file_send_job_done(id, &result, now);
            return;
        }
        self.with_role(
            now,
            |m, ctx| {
                if !m.agents_job_done(id, &result, ctx) {
                    m.job_done(id, result.clone(), ctx)
                }
            },
            |w, ctx| {
                if w.agents_job_done(id, &result, ctx) || w.reload_job_done(id, &result, ctx) {
                    Vec::new()
                } else {
                    w.job_done(id, result.clone(), ctx)
                }
            },
        );
        self.flush_all();
    }

    /// The transport read the chunk a transfer on `conn` asked for.
    pub fn chunk_read(
        &mut self,
        conn: ConnId,
        reader: ChunkReader,
        data: Result<Vec<u8>, String>,
        now: Now,
    ) {
        if let ChunkReader::LocalFile(token) = reader {
            self.file_send_chunk(token, data, now);
            return;
        }
        self.with_role(
            now,
            |m, ctx| m.chunk_read(conn, data.clone(), ctx),
            |w, ctx| w.chunk_read(conn, data.clone(), ctx),
        );
        self.flush_all();
    }

    /// The transport could not write a received file.
    pub fn file_write_failed(&mut self, conn: ConnId, rel: &str, reason: &str) {
        if let Some(peer) = self.locals.get_mut(&conn) {
            peer.conn.file_write_failed(rel, reason);
            return;
        }
        let peer = match &mut self.role {
            Role::Master(master) => master.conn_mut(conn),
            Role::Worker(worker) => worker.conn_mut(conn),
        };
        if let Some(peer) = peer {
            peer.file_write_failed(rel, reason);
        }
    }

    /// Time passed: timeouts, keepalives, reconnections.
    pub fn tick(&mut self, now: Now) {
        if now.mono >= self.next_keepalive_check {
            self.next_keepalive_check = now.mono + self.settings.timers.check_worker_lastkeepalive;
            self.check_local_keepalives(now);
            self.with_role(now, |m, ctx| m.check_keepalives(ctx), |_, _| Vec::new());
        }
        self.expire_local_requests(now);
        self.expire_local_files(now);
        self.file_send_tick(now);
        self.with_role(now, |m, ctx| m.tick(ctx), |w, ctx| w.tick(ctx));
        self.flush_all();
    }

    /// Closes every connection (the daemon is stopping).
    pub fn shutdown(&mut self) {
        self.stopping = true;
        let locals: Vec<ConnId> = self.locals.keys().copied().collect();
        for conn in locals {
            self.outputs.push(Output::Close { conn });
        }
        match &mut self.role {
            Role::Master(master) => master.shutdown(&mut self.outputs),
            Role::Worker(worker) => worker.shutdown(&mut self.outputs),
        }
    }

    /// Moves every connection's pending frames to the outputs.
    fn flush_all(&mut self) {
        for (id, peer) in self.locals.iter_mut() {
            flush_conn(&mut self.outputs, *id, &mut peer.conn);
        }
        match &mut self.role {
            Role::Master(master) => master.flush(&mut self.outputs),
            Role::Worker(worker) => worker.flush(&mut self.outputs),
        }
    }
}

/// What role code needs besides its own state: settings, the time, where outputs go, id sources.
pub(super) struct Ctx<'a> {
    pub(super) settings: &'a NodeSettings,
    pub(super) now: Now,
    pub(super) outputs: &'a mut Vec<Output>,
    pub(super) ids: &'a mut Ids,
    pub(super) rng: &'a mut StdRng,
    pub(super) scratch: &'a mut Scratch,
}

impl Ctx<'_> {
    /// Queues a job for the pool and returns its id.
    pub(super) fn job(&mut self, job: Job) -> JobId {
        let id = self.ids.next();
        self.outputs.push(Output::Job { id, job });
        id
    }

    /// Queues a job that uses scratch files of `conn` (`files`: what it opens or builds); they
    /// are its until it ends.
    pub(super) fn scratch_job(&mut self, job: Job, conn: ConnId, files: &[&str]) -> JobId {
        let id = self.job(job);
        for rel in files {
            self.scratch.hold(rel, conn, Holder::Job(id));
        }
        id
    }

    /// A package of `conn` is kept to be sent (taken from the job that built it).
    pub(super) fn hold_for_sending(&mut self, rel: &str, conn: ConnId) {
        self.scratch.hold(rel, conn, Holder::Sending);
    }

    /// A scratch file's task is over: delete it.
    pub(super) fn release(&mut self, rel: &str) {
        self.scratch.release(rel, self.outputs);
    }

    /// A random UUID4 task id, as stock nodes use.
    pub(super) fn uuid(&mut self) -> String {
        let bytes: [u8; 16] = self.rng.random();
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

/// Allocates connection ids; they grow, so id order is connection order.
#[derive(Debug)]
pub(super) struct Ids {
    next: ConnId,
}

impl Default for Ids {
    fn default() -> Self {
        Ids { next: 1 }
    }
}

impl Ids {
    pub(super) fn next(&mut self) -> ConnId {
        let id = self.next;
        self.next += 1;
        id
    }
}

/// The connections whose last keepalive is older than `limit`.
fn silent_peers<'a, T: 'a>(
    peers: impl Iterator<Item = (&'a ConnId, &'a T)>,
    last_keepalive: impl Fn(&T) -> Instant,
    limit: std::time::Duration,
    now: Now,
) -> Vec<ConnId> {
    peers
        .filter(|(_, p)| now.mono.saturating_duration_since(last_keepalive(p)) > limit)
        .map(|(id, _)| *id)
        .collect()
}

/// Moves a connection's pending frames and received-file operations to the outputs.
fn flush_conn(outputs: &mut Vec<Output>, conn: ConnId, peer: &mut PeerConn) {
    for op in peer.take_file_ops() {
        outputs.push(match op {
            FileOp::Write(write) => Output::WriteFile { conn, write },
            FileOp::Remove { rel } => Output::RemoveFile { rel },
        });
    }
    let frames = peer.take_outbox();
    if !frames.is_empty() {
        outputs.push(Output::Send { conn, frames });
    }
}

/// Deletes a connection's received files that waited longer than `timeout_receiving_file` (open
/// with no chunk since, or finished and never referenced), with a log line naming them.
fn expire_received(peer: &mut PeerConn, tag: &str, settings: &NodeSettings, now: Now) {
    let max_age = settings.sync.timeout_receiving_file;
    for rel in peer.expire_received_files(now.mono, max_age) {
        crate::clog_warn!(
            tag,
            "Main",
            "Removed {rel}: no chunk or reference came for it in {}s.",
            max_age.as_secs()
        );
    }
}

/// Dates as Wazuh reports them: `YYYY-MM-DDTHH:MM:SS.ffffffZ`, UTC.
pub fn wazuh_date(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

#[cfg(test)]
mod tests;
