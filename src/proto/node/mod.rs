//! The node engine: every connection of one node (cluster links and local clients) driven as state
//! machines. Inputs are calls (`accept_*`, `receive`, `closed`, `tick`, ...) with the time passed in;
//! outputs are [`Output`] values the transport carries out. No IO, no clock, no runtime here.

mod listing;
mod local;
mod master;
mod reasons;
mod settings;
mod worker;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use settings::{NodeSettings, Timers};

use self::local::LocalPeer;
use self::master::Master;
use self::worker::Worker;
use super::connection::{ConnLimits, Connection};
use super::crypto::{Cipher, CryptoError};
use super::files::FileWrite;

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
}

impl Node {
    /// A node starting now. `seed` drives counters and ids (random in production).
    pub fn new(settings: NodeSettings, seed: u64, now: Now) -> Result<Node, CryptoError> {
        let cipher = Cipher::from_cluster_key(&settings.cluster_key)?;
        let role = if settings.is_master {
            Role::Master(Master::new())
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
        let client_id = self.rng.random_range(0..1u32 << 20);
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
        if let Role::Worker(worker) = &mut self.role {
            worker.connected(conn, peer, &self.settings, now, &mut self.outputs);
        }
    }

    /// The TCP connection to the master could not be opened (worker only).
    pub fn connect_failed(&mut self, conn: ConnId, error: &str, now: Now) {
        if let Role::Worker(worker) = &mut self.role {
            worker.connect_failed(conn, error, &self.settings, now);
        }
    }

    /// Bytes arrived on a connection.
    pub fn receive(&mut self, conn: ConnId, bytes: &[u8], now: Now) {
        if self.locals.contains_key(&conn) {
            self.receive_local(conn, bytes, now);
            return;
        }
        match &mut self.role {
            Role::Master(master) => {
                master.receive(conn, bytes, &self.settings, now, &mut self.outputs)
            }
            Role::Worker(worker) => {
                let replies = worker.receive(conn, bytes, &self.settings, now, &mut self.outputs);
                self.deliver_to_locals(replies, now);
            }
        }
    }

    /// The peer closed the connection, or reading from it failed.
    pub fn closed(&mut self, conn: ConnId, now: Now) {
        if let Some(peer) = self.locals.remove(&conn) {
            peer.log_closed();
            return;
        }
        match &mut self.role {
            Role::Master(master) => master.closed(conn),
            Role::Worker(worker) => {
                let replies = worker.closed(conn, &self.settings, now);
                self.deliver_to_locals(replies, now);
            }
        }
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
            if let Role::Master(master) = &mut self.role {
                master.check_keepalives(&self.settings, now, &mut self.outputs);
            }
        }
        self.expire_local_requests(now);
        match &mut self.role {
            Role::Master(master) => master.tick(&self.settings, now, &mut self.outputs),
            Role::Worker(worker) => {
                let replies = worker.tick(&mut self.ids, &self.settings, now, &mut self.outputs);
                self.deliver_to_locals(replies, now);
            }
        }
        self.flush_all();
    }

    /// Closes every connection (the daemon is stopping).
    pub fn shutdown(&mut self) {
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

/// Allocates connection ids; they grow, so id order is connection order.
#[derive(Debug)]
struct Ids {
    next: ConnId,
}

impl Default for Ids {
    fn default() -> Self {
        Ids { next: 1 }
    }
}

impl Ids {
    fn next(&mut self) -> ConnId {
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

/// Moves a connection's pending frames and received file bytes to the outputs.
fn flush_conn(outputs: &mut Vec<Output>, conn: ConnId, peer: &mut PeerConn) {
    for write in peer.take_file_writes() {
        outputs.push(Output::WriteFile { conn, write });
    }
    let frames = peer.take_outbox();
    if !frames.is_empty() {
        outputs.push(Output::Send { conn, frames });
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
