//! The master's side of membership (PROTOCOL.md §2.3–§2.4): accepting workers, `hello`, keepalive
//! checking, and the node listing every `get_nodes`/`get_health` is answered from. The integrity
//! flows of each worker live in `master_sync.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::agent_info::MasterAgentInfo;
use super::dapi_master::MasterDapi;
use super::file_send::FileSends;
use super::groups::MasterGroups;
use super::listing::{self, NodeEntry, WorkerStatus};
use super::local::{stray_reply, unknown_command};
use super::local::{LocalDelivery, LocalReply};
use super::master_sync::{LocalIntegrity, PeerSync};
use super::reasons::{master_side, valid_node_name};
use super::sendsync::MasterSendSync;
use super::strings_out::StringSends;
use super::{
    expire_received, flush_conn, silent_peers, ConnId, Ctx, NodeSettings, Now, Output, PeerConn,
    Purpose,
};
use crate::metrics::{Metrics, RefuseReason};
use crate::proto::command::Command;
use crate::proto::connection::{ConnError, Event};
use crate::proto::jobs::JobId;
use crate::proto::wazuh_error::WazuhError;
use crate::{clog_debug, clog_error, clog_info, clog_warn};

/// A connection on the cluster port.
pub(super) struct WorkerPeer {
    pub(super) conn: PeerConn,
    ip: IpAddr,
    port: u16,
    /// Set by `hello` (even a refused one holds its name until the connection closes).
    pub(super) name: Option<String>,
    version: String,
    /// `hello` succeeded: the worker is listed.
    pub(super) accepted: bool,
    last_keepalive: Instant,
    last_keepalive_wall: SystemTime,
    /// An `echo-m` liveness probe is in flight (another connection claimed this name).
    probing: bool,
    pub(super) sync: PeerSync,
    /// Long strings being sent to this worker (agent groups, sendsync answers).
    pub(super) strings: StringSends,
}

impl WorkerPeer {
    pub(super) fn tag(&self) -> String {
        match &self.name {
            Some(name) => format!("Worker {name}"),
            None => "Master".to_string(),
        }
    }

    fn address(&self) -> String {
        format!("('{}', {})", self.ip, self.port)
    }

    /// The worker's name; only called once `hello` succeeded.
    pub(super) fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

/// Every cluster connection of the master, in connection order, and the master-wide sync state.
pub(super) struct Master {
    pub(super) workers: BTreeMap<ConnId, WorkerPeer>,
    names: HashMap<String, ConnId>,
    pub(super) local: LocalIntegrity,
    /// Workers granted an integrity check since the last local-integrity calculation.
    pub(super) granted: HashSet<String>,
    /// Jobs run on behalf of a connection.
    pub(super) jobs: HashMap<JobId, ConnId>,
    pub(super) agent_info: MasterAgentInfo,
    pub(super) groups: MasterGroups,
    pub(super) sendsync: MasterSendSync,
    pub(super) dapi: Box<MasterDapi>,
    /// Answers for local clients, delivered by the node (the master does not own them).
    pub(super) local_replies: Vec<LocalReply>,
    /// New requests for local clients (sendsync answers), delivered by the node.
    pub(super) deliveries: Vec<LocalDelivery>,
    /// Local `send_file` transfers to workers.
    pub(super) file_sends: FileSends,
}

impl Master {
    pub(super) fn new(now: Instant) -> Master {
        Master {
            workers: BTreeMap::new(),
            names: HashMap::new(),
            local: LocalIntegrity::new(now),
            granted: HashSet::new(),
            jobs: HashMap::new(),
            agent_info: MasterAgentInfo::default(),
            groups: MasterGroups::default(),
            sendsync: MasterSendSync::default(),
            dapi: Box::default(),
            local_replies: Vec::new(),
            deliveries: Vec::new(),
            file_sends: FileSends::default(),
        }
    }

    pub(super) fn accept(
        &mut self,
        id: ConnId,
        conn: PeerConn,
        ip: IpAddr,
        port: u16,
        settings: &NodeSettings,
        now: Now,
    ) -> bool {
        let from_ip = self.workers.values().filter(|w| w.ip == ip).count();
        if from_ip >= settings.connections_per_ip_max {
            clog_warn!(
                "Master",
                "Main",
                "Too many connections from {ip} ({}), rejecting.",
                from_ip + 1
            );
            Metrics::global().connection_refused(RefuseReason::PerIpLimit);
            return false;
        }
        let mut conn = conn;
        // A peer writes files only once its hello gave it a directory.
        conn.refuse_received_files();
        let peer = WorkerPeer {
            conn,
            ip,
            port,
            name: None,
            version: String::new(),
            accepted: false,
            last_keepalive: now.mono,
            last_keepalive_wall: now.wall,
            probing: false,
            sync: PeerSync::new(settings.sync.max_zip_size),
            strings: StringSends::default(),
        };
        clog_info!("Master", "Main", "Connection from {}", peer.address());
        self.workers.insert(id, peer);
        true
    }

    pub(super) fn receive(&mut self, conn: ConnId, bytes: &[u8], ctx: &mut Ctx) {
        let Some(peer) = self.workers.get_mut(&conn) else {
            return;
        };
        let mut events = Vec::new();
        if let Err(e) = peer.conn.receive(bytes, ctx.now.mono, &mut events) {
            if !peer.accepted {
                Metrics::global().connection_refused(match e {
                    ConnError::Decrypt(_) => RefuseReason::BadKey,
                    _ => RefuseReason::Protocol,
                });
            }
            match e {
                ConnError::Decrypt(_) => clog_error!(
                    peer.tag(),
                    "Main",
                    "Could not decrypt message from {}: the node's cluster key does not match the master's. Closing connection.",
                    peer.address()
                ),
                other => clog_warn!(peer.tag(), "Main", "Closing connection with {}: {other}.", peer.address()),
            }
            self.drop_peer(conn, ctx);
            return;
        }
        for event in events {
            match event {
                Event::Request {
                    counter,
                    command,
                    payload,
                } => self.request(conn, counter, command, payload, ctx),
                Event::Reply {
                    purpose: Purpose::Probe,
                    ..
                } => {
                    if let Some(peer) = self.workers.get_mut(&conn) {
                        peer.probing = false;
                        clog_debug!(
                            peer.tag(),
                            "Main",
                            "Answered the liveness probe: the session is alive."
                        );
                    }
                }
                Event::Reply {
                    purpose: Purpose::LocalFile { token },
                    ..
                } => self
                    .file_sends
                    .replied(token, &mut self.workers, ctx, &mut self.deliveries),
                Event::Reply {
                    purpose,
                    command,
                    payload,
                } => {
                    if let Some((purpose, command, payload)) =
                        self.agents_reply(conn, purpose, command, payload, ctx)
                    {
                        self.sync_reply(conn, purpose, command, payload, ctx);
                    }
                }
                Event::Cancelled { error, .. } => {
                    if let Some(peer) = self.workers.get(&conn) {
                        clog_error!(peer.tag(), "Main", "The task was canceled due to the following error on the remote node: {error}");
                    }
                }
            }
        }
        self.flush(ctx.outputs);
    }

    fn request(
        &mut self,
        conn: ConnId,
        counter: u32,
        command: Command,
        payload: Vec<u8>,
        ctx: &mut Ctx,
    ) {
        if command.is_reply() {
            return stray_reply(conn, counter, &command);
        }
        let reply: (&str, Vec<u8>) = match &command {
            Command::Hello => return self.hello(conn, counter, &payload, ctx),
            Command::EchoC => {
                if let Some(peer) = self.workers.get_mut(&conn) {
                    peer.last_keepalive = ctx.now.mono;
                    peer.last_keepalive_wall = ctx.now.wall;
                    if peer.accepted {
                        Metrics::global().keepalive(peer.name());
                    }
                }
                ("ok-m ", payload)
            }
            Command::GetNodes | Command::GetHealth => {
                match self.control(&command, &payload, ctx.settings) {
                    Ok(json) => ("ok", json.to_string().into_bytes()),
                    Err(e) => ("err", e.to_payload()),
                }
            }
            other => match self.sync_request(conn, other, &payload, ctx) {
                Some(reply) => reply,
                None => match self.agents_request(conn, counter, other, &payload, ctx) {
                    Some(Some(reply)) => reply,
                    // Answered later, when the job behind it is done.
                    Some(None) => return,
                    None => ("err", unknown_command(other)),
                },
            },
        };
        if let Some(peer) = self.workers.get_mut(&conn) {
            if let Err(e) = peer.conn.reply(counter, reply.0, &reply.1) {
                clog_error!(peer.tag(), "Main", "Could not answer '{command}': {e}");
            }
        }
    }

    fn hello(&mut self, conn: ConnId, counter: u32, payload: &[u8], ctx: &mut Ctx) {
        let text = String::from_utf8_lossy(payload).into_owned();
        let fields: Vec<&str> = text.split(' ').collect();
        let outcome = match fields[..] {
            [name, cluster, _node_type, version] => self.admit(conn, name, cluster, version, ctx),
            _ => Err(WazuhError::with_extra(
                1000,
                format!(
                    "hello needs 4 space-separated fields, got '{}'",
                    crate::proto::quote::quote(&text)
                ),
            )),
        };
        let Some(peer) = self.workers.get_mut(&conn) else {
            return;
        };
        let result = match &outcome {
            Ok(name) => {
                Metrics::global().node_connected(name);
                clog_info!(
                    peer.tag(),
                    "Main",
                    "Worker {name} ({}) connected from {}.",
                    peer.version,
                    peer.ip
                );
                ctx.outputs.push(Output::CreateDir {
                    rel: format!("queue/cluster/{name}"),
                });
                // A worker sends files only into its own directory.
                peer.conn
                    .confine_received_files(&format!("queue/cluster/{name}/"));
                peer.conn
                    .reply(counter, "ok", format!("Client {name} added").as_bytes())
            }
            Err(e) => {
                Metrics::global().connection_refused(match e.code {
                    3028 => RefuseReason::NameInUse,
                    3029 | 3060 => RefuseReason::BadName,
                    3030 => RefuseReason::OtherCluster,
                    3031 => RefuseReason::OtherVersion,
                    _ => RefuseReason::Protocol,
                });
                clog_warn!(
                    peer.tag(),
                    "Main",
                    "Refused connection from {}: {e}",
                    peer.address()
                );
                let e = e.clone().in_dialect(ctx.settings.sync.dialect);
                peer.conn.reply(counter, "err", &e.to_payload())
            }
        };
        if let Err(e) = result {
            clog_error!(peer.tag(), "Main", "Could not answer hello: {e}");
        }
        if outcome.is_err() {
            // A refused worker closes the connection itself; closing here too frees its name at once.
            flush_conn(ctx.outputs, conn, &mut peer.conn);
            self.drop_peer(conn, ctx);
        }
    }

    /// The checks of a `hello`, in the stock order. Returns the admitted name.
    fn admit(
        &mut self,
        conn: ConnId,
        name: &str,
        cluster: &str,
        version: &str,
        ctx: &mut Ctx,
    ) -> Result<String, WazuhError> {
        let settings = ctx.settings;
        let refuse = |code| {
            WazuhError::with_extra(
                code,
                master_side(
                    code,
                    name,
                    cluster,
                    &settings.cluster_name,
                    version,
                    &settings.version,
                ),
            )
        };
        if !valid_node_name(name) {
            return Err(refuse(3060));
        }
        if let Some(&holder) = self.names.get(name) {
            if holder != conn {
                self.probe(holder, ctx);
                return Err(refuse(3028));
            }
        }
        if name == settings.node_name {
            return Err(refuse(3029));
        }
        self.names.insert(name.to_string(), conn);
        if let Some(peer) = self.workers.get_mut(&conn) {
            peer.name = Some(name.to_string());
            peer.version = version.to_string();
        }
        if cluster != settings.cluster_name {
            return Err(refuse(3030));
        }
        if version != settings.version {
            return Err(refuse(3031));
        }
        if let Some(peer) = self.workers.get_mut(&conn) {
            peer.accepted = true;
        }
        Ok(name.to_string())
    }

    /// Asks a worker whose name another connection claims whether it is still there, so a stale
    /// session (a host that vanished without closing its socket) never blocks the worker's return.
    fn probe(&mut self, holder: ConnId, ctx: &mut Ctx) {
        let Some(peer) = self.workers.get_mut(&holder) else {
            return;
        };
        if peer.probing {
            return;
        }
        let timeout = ctx
            .settings
            .timers
            .timeout_cluster_request
            .min(Duration::from_secs(10));
        if peer
            .conn
            .request(
                "echo-m",
                b"keepalive",
                Purpose::Probe,
                ctx.now.mono,
                timeout,
            )
            .is_ok()
        {
            peer.probing = true;
        }
    }

    /// The worker closed the connection.
    pub(super) fn closed(&mut self, conn: ConnId, ctx: &mut Ctx) {
        self.remove_peer(conn, ctx);
    }

    /// We close the connection.
    pub(super) fn drop_peer(&mut self, conn: ConnId, ctx: &mut Ctx) {
        self.remove_peer(conn, ctx);
        ctx.outputs.push(Output::Close { conn });
    }

    /// Forgets a connection, frees its name if it held it, and abandons its sync tasks.
    fn remove_peer(&mut self, conn: ConnId, ctx: &mut Ctx) {
        let Some(mut peer) = self.workers.remove(&conn) else {
            return;
        };
        // Nothing the worker sent or we built for it outlives the connection (PROTOCOL.md §4.1.9).
        peer.conn.release_received_files();
        flush_conn(ctx.outputs, conn, &mut peer.conn);
        ctx.scratch.conn_closed(conn, ctx.outputs);
        if let (true, Some(name)) = (peer.accepted, &peer.name) {
            // Its next connection creates it again at hello.
            ctx.outputs.push(Output::RemoveEmptyDir {
                rel: format!("queue/cluster/{name}"),
            });
        }
        if let Some(name) = &peer.name {
            if self.names.get(name) == Some(&conn) {
                self.names.remove(name);
            }
        }
        self.jobs.retain(|_, owner| *owner != conn);
        self.agents_closed(conn, ctx);
        self.file_sends.peer_closed(conn, &mut self.deliveries);
        if peer.accepted {
            Metrics::global().node_disconnected(peer.name());
            clog_info!(peer.tag(), "Main", "Cancelling pending tasks.");
            peer.sync.abandon();
        } else {
            clog_debug!(
                peer.tag(),
                "Main",
                "Connection from {} closed.",
                peer.address()
            );
        }
    }

    pub(super) fn check_keepalives(&mut self, ctx: &mut Ctx) {
        let limit = ctx.settings.timers.max_allowed_time_without_keepalive;
        let silent = silent_peers(self.workers.iter(), |w| w.last_keepalive, limit, ctx.now);
        for conn in silent {
            if let Some(peer) = self.workers.get(&conn) {
                let name = peer.name.clone().unwrap_or_else(|| peer.address());
                clog_error!("Master", "Keep alive", "No keep alives have been received from {name} in the last minute. Disconnecting");
            }
            self.drop_peer(conn, ctx);
        }
    }

    pub(super) fn tick(&mut self, ctx: &mut Ctx) {
        let mut stale = Vec::new();
        let mut expired = Vec::new();
        for (id, peer) in self.workers.iter_mut() {
            let tag = peer.tag();
            expire_received(&mut peer.conn, &tag, ctx.settings, ctx.now);
            if peer.conn.payload_overdue(ctx.now.mono) {
                clog_warn!(
                    peer.tag(),
                    "Main",
                    "Closing connection: incomplete message payload not received within deadline."
                );
                stale.push(*id);
                continue;
            }
            let mut others = Vec::new();
            for purpose in peer.conn.expire(ctx.now.mono) {
                if purpose == Purpose::Probe {
                    clog_warn!(peer.tag(), "Main", "No answer to the liveness probe: closing the stale session so the worker can reconnect.");
                    stale.push(*id);
                } else {
                    others.push(purpose);
                }
            }
            if !others.is_empty() {
                expired.push((*id, others));
            }
        }
        for (conn, purposes) in expired {
            let purposes: Vec<Purpose> = purposes
                .into_iter()
                .filter(|p| !self.sync_expired(conn, p, ctx))
                .collect();
            self.agents_expired(conn, purposes, ctx);
        }
        for conn in stale {
            self.drop_peer(conn, ctx);
        }
        self.sync_tick(ctx);
        self.agents_tick(ctx);
        self.flush(ctx.outputs);
    }

    pub(super) fn shutdown(&mut self, outputs: &mut Vec<Output>) {
        for conn in self.workers.keys() {
            outputs.push(Output::Close { conn: *conn });
        }
    }

    pub(super) fn conn_mut(&mut self, conn: ConnId) -> Option<&mut PeerConn> {
        self.workers.get_mut(&conn).map(|w| &mut w.conn)
    }

    pub(super) fn flush(&mut self, outputs: &mut Vec<Output>) {
        for (id, peer) in self.workers.iter_mut() {
            flush_conn(outputs, *id, &mut peer.conn);
        }
    }

    /// The master and its accepted workers, in connection order.
    fn entries(&self, settings: &NodeSettings) -> Vec<NodeEntry> {
        let mut entries = vec![NodeEntry {
            name: settings.node_name.clone(),
            node_type: "master",
            version: settings.version.clone(),
            ip: settings.master_host.clone(),
            active_agents: self.active_agents(&settings.node_name),
            worker: None,
        }];
        entries.extend(
            self.workers
                .iter()
                .filter(|(_, w)| w.accepted)
                .map(|(id, w)| NodeEntry {
                    name: w.name.clone().unwrap_or_default(),
                    node_type: "worker",
                    version: w.version.clone(),
                    ip: w.ip.to_string(),
                    active_agents: self.active_agents(w.name()),
                    worker: Some(WorkerStatus {
                        last_keep_alive: w.last_keepalive_wall,
                        sync: w.sync.health(),
                        groups: self.groups_health(*id),
                        agent_info: self.agent_info.health(*id),
                    }),
                }),
        );
        entries
    }

    /// Answers `get_nodes` / `get_health`, from a local client or a worker.
    pub(super) fn control(
        &self,
        command: &Command,
        payload: &[u8],
        settings: &NodeSettings,
    ) -> Result<Value, WazuhError> {
        let entries = self.entries(settings);
        match command {
            Command::GetNodes => listing::nodes(&entries, payload),
            _ => listing::health(&entries, payload, settings.sync.dialect),
        }
    }
}
