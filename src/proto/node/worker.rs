//! The worker's link to its master (PROTOCOL.md §2.3–§2.4): connect, `hello`, keepalives,
//! reconnection, and relaying local `get_nodes` / `get_health` requests. The integrity flows that run
//! over the link live in `worker_sync.rs`.

use std::time::{Duration, Instant};

use super::agent_info::WorkerAgentInfo;
use super::dapi_worker::WorkerDapi;
use super::file_send::FileSends;
use super::groups::WorkerGroups;
use super::local::{relay_failure, stray_reply, unknown_command, LocalDelivery};
use super::reasons::{worker_side, SILENT_REFUSAL};
use super::relay_table::RelayTable;
use super::ruleset::ReloadFlag;
use super::strings_out::StringSends;
use super::worker_sync::WorkerSync;
use super::{
    expire_received, flush_conn, ConnId, Ctx, NodeSettings, Now, Output, PeerConn, Purpose,
};
use crate::metrics::Metrics;
use crate::proto::command::Command;
use crate::proto::connection::Event;
use crate::proto::wazuh_error::WazuhError;
use crate::{clog_debug, clog_error, clog_info};

/// The `node` label a worker's metrics give its master.
pub(super) const MASTER_LABEL: &str = "master";

/// Where the link to the master stands; each state names what it waits for.
pub(super) enum Link {
    /// Waiting until `retry_at` to connect.
    Idle { retry_at: Instant },
    /// TCP connect under way.
    Connecting { conn: ConnId },
    /// `hello` sent, waiting for the master's verdict.
    AwaitHelloReply { conn: ConnId, peer: Box<PeerConn> },
    /// Accepted: keepalives and syncs flow.
    Connected {
        conn: ConnId,
        peer: Box<PeerConn>,
        next_keepalive: Instant,
        failed_keepalives: u32,
    },
}

pub(super) struct Worker {
    pub(super) link: Link,
    pub(super) sync: WorkerSync,
    pub(super) agent_info: WorkerAgentInfo,
    pub(super) groups: WorkerGroups,
    pub(super) sendsync: RelayTable,
    pub(super) dapi: WorkerDapi,
    /// Long strings being sent to the master (agent-info).
    pub(super) strings: StringSends,
    /// Messages for local clients produced by the flows, delivered by the node.
    pub(super) deliveries: Vec<LocalDelivery>,
    /// The ruleset reload `sendrreload` asked for.
    pub(super) reload: ReloadFlag,
    /// Local `send_file` transfers to the master.
    pub(super) file_sends: FileSends,
}

/// Seconds as stock logs print them: whole numbers without decimals.
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

impl Worker {
    pub(super) fn new(now: Instant) -> Worker {
        Worker {
            link: Link::Idle { retry_at: now },
            sync: WorkerSync::new(now),
            agent_info: WorkerAgentInfo::default(),
            groups: WorkerGroups::default(),
            sendsync: RelayTable::default(),
            dapi: WorkerDapi::default(),
            strings: StringSends::default(),
            deliveries: Vec::new(),
            reload: ReloadFlag::default(),
            file_sends: FileSends::default(),
        }
    }

    pub(super) fn tag(settings: &NodeSettings) -> String {
        format!("Worker {}", settings.node_name)
    }

    /// The accepted link's connection, if any.
    pub(super) fn connected_peer(&mut self) -> Option<(ConnId, &mut PeerConn)> {
        match &mut self.link {
            Link::Connected { conn, peer, .. } => Some((*conn, peer)),
            _ => None,
        }
    }

    /// The link is over: forget it, fail what was relayed through it, and plan the next attempt.
    fn reset(&mut self, ctx: &mut Ctx) -> Vec<LocalDelivery> {
        let old = std::mem::replace(
            &mut self.link,
            Link::Idle {
                retry_at: ctx.now.mono + ctx.settings.timers.connection_retry,
            },
        );
        self.sync.reset(ctx);
        self.agents_reset(ctx);
        if matches!(old, Link::Connected { .. }) {
            Metrics::global().node_disconnected(MASTER_LABEL);
        }
        Metrics::global().set_ready(false, "not connected to the master");
        let mut failed = Vec::new();
        if let Link::AwaitHelloReply { conn, mut peer, .. }
        | Link::Connected { conn, mut peer, .. } = old
        {
            // What the master sent or we built for it does not outlive the link (§4.1.9).
            peer.release_received_files();
            flush_conn(ctx.outputs, conn, &mut peer);
            ctx.scratch.conn_closed(conn, ctx.outputs);
            for purpose in peer.abandon_requests() {
                if let Purpose::ForwardToLocal { local } = purpose {
                    failed.push(relay_failure(local, &WazuhError::new(3023)));
                }
            }
        }
        failed
    }

    /// The link's connection id, for the scratch files its tasks hold (0 when there is no link:
    /// such files are then released with their task).
    pub(super) fn link_conn(&self) -> ConnId {
        self.current_conn().unwrap_or(0)
    }

    /// Deletes every file the master is sending or sent us and no task took (its sync task ended
    /// without it).
    pub(super) fn drop_received_files(&mut self) {
        if let Some((_, peer)) = self.connected_peer() {
            peer.release_received_files();
        }
    }

    fn current_conn(&self) -> Option<ConnId> {
        match &self.link {
            Link::Idle { .. } => None,
            Link::Connecting { conn }
            | Link::AwaitHelloReply { conn, .. }
            | Link::Connected { conn, .. } => Some(*conn),
        }
    }

    pub(super) fn connected(&mut self, conn: ConnId, mut peer: PeerConn, ctx: &mut Ctx) {
        if !matches!(self.link, Link::Connecting { conn: c } if c == conn) {
            ctx.outputs.push(Output::Close { conn });
            return;
        }
        let s = ctx.settings;
        let hello = format!("{} {} worker {}", s.node_name, s.cluster_name, s.version);
        if let Err(e) = peer.request(
            "hello",
            hello.as_bytes(),
            Purpose::Hello,
            ctx.now.mono,
            s.timers.timeout_cluster_request,
        ) {
            clog_error!(Self::tag(s), "Main", "Could not send hello: {e}");
        }
        // The master sends its packages only into this node's own directory.
        peer.confine_received_files(&format!("queue/cluster/{}/", s.node_name));
        flush_conn(ctx.outputs, conn, &mut peer);
        self.link = Link::AwaitHelloReply {
            conn,
            peer: Box::new(peer),
        };
    }

    pub(super) fn connect_failed(&mut self, conn: ConnId, error: &str, ctx: &mut Ctx) {
        if self.current_conn() != Some(conn) {
            return;
        }
        let tag = Self::tag(ctx.settings);
        clog_debug!(tag, "Main", "Could not connect to master: {error}.");
        clog_error!(
            tag,
            "Main",
            "Could not connect to master. Trying again in {} seconds.",
            secs(ctx.settings.timers.connection_retry)
        );
        self.reset(ctx);
    }

    pub(super) fn receive(
        &mut self,
        conn: ConnId,
        bytes: &[u8],
        ctx: &mut Ctx,
    ) -> Vec<LocalDelivery> {
        if self.current_conn() != Some(conn) {
            return Vec::new();
        }
        let tag = Self::tag(ctx.settings);
        let mut events = Vec::new();
        let received = match &mut self.link {
            Link::AwaitHelloReply { peer, .. } | Link::Connected { peer, .. } => {
                peer.receive(bytes, ctx.now.mono, &mut events)
            }
            _ => Ok(()),
        };
        if let Err(e) = received {
            clog_error!(tag, "Main", "Closing the connection with the master: {e}.");
            return self.close(conn, ctx);
        }
        let mut deliveries = Vec::new();
        for event in events {
            match event {
                Event::Reply {
                    purpose: Purpose::Hello,
                    command,
                    payload,
                } => {
                    if command == Command::Ok {
                        clog_info!(tag, "Main", "Successfully connected to master.");
                        Metrics::global().node_connected(MASTER_LABEL);
                        Metrics::global()
                            .set_ready(false, "connected; waiting for the first integrity sync");
                        ctx.outputs.push(Output::CreateDir {
                            rel: format!("queue/cluster/{}", ctx.settings.node_name),
                        });
                        let old = std::mem::replace(
                            &mut self.link,
                            Link::Idle {
                                retry_at: ctx.now.mono,
                            },
                        );
                        if let Link::AwaitHelloReply { conn, peer } = old {
                            let next_keepalive = ctx.now.mono + ctx.settings.timers.keep_alive;
                            self.link = Link::Connected {
                                conn,
                                peer,
                                next_keepalive,
                                failed_keepalives: 0,
                            };
                        }
                        self.sync.connected(ctx);
                        self.agents_reset(ctx);
                    } else {
                        let s = ctx.settings;
                        let mut error = WazuhError::from_payload(&payload);
                        if error.extra.is_none() {
                            error.extra =
                                worker_side(error.code, &s.node_name, &s.cluster_name, &s.version);
                        }
                        clog_error!(tag, "Main", "Could not connect to master: {error}.");
                        deliveries.extend(self.close(conn, ctx));
                        return deliveries;
                    }
                }
                Event::Reply {
                    purpose: Purpose::Keepalive,
                    command,
                    payload,
                } => {
                    if command == Command::OkM {
                        Metrics::global().keepalive(MASTER_LABEL);
                        clog_info!(
                            tag,
                            "Keep Alive",
                            "Successful response from master: {}",
                            crate::proto::quote::quote_bytes(&payload)
                        );
                        if let Link::Connected {
                            failed_keepalives, ..
                        } = &mut self.link
                        {
                            *failed_keepalives = 0;
                        }
                    } else {
                        deliveries.extend(
                            self.keepalive_failed(&WazuhError::from_payload(&payload), ctx),
                        );
                    }
                }
                Event::Reply {
                    purpose: Purpose::ForwardToLocal { local },
                    command,
                    payload,
                } => {
                    let command = if command == Command::Ok {
                        "control_res"
                    } else {
                        "err"
                    };
                    deliveries.push(LocalDelivery {
                        local,
                        command,
                        payload,
                        long: false,
                    });
                }
                Event::Reply {
                    purpose: Purpose::LocalFile { token },
                    ..
                } => self
                    .file_sends
                    .replied(token, &mut self.link, ctx, &mut deliveries),
                Event::Reply {
                    purpose,
                    command,
                    payload,
                } => {
                    if let Some((purpose, command, payload)) =
                        self.agents_reply(purpose, command, payload, ctx)
                    {
                        self.sync_reply(purpose, command, payload, ctx);
                    }
                }
                Event::Request {
                    counter, command, ..
                } if command.is_reply() => stray_reply(conn, counter, &command),
                Event::Request {
                    counter,
                    command,
                    payload,
                } => {
                    let (reply, body) = match &command {
                        Command::EchoM => ("ok-c", payload),
                        other => match self.sync_request(other, &payload, ctx) {
                            Some(reply) => reply,
                            None => self
                                .agents_request(other, &payload, ctx)
                                .unwrap_or_else(|| ("err", unknown_command(other))),
                        },
                    };
                    if let Link::AwaitHelloReply { peer, .. } | Link::Connected { peer, .. } =
                        &mut self.link
                    {
                        if let Err(e) = peer.reply(counter, reply, &body) {
                            clog_error!(tag, "Main", "Could not answer '{command}': {e}");
                        }
                    }
                }
                Event::Cancelled { error, .. } => {
                    clog_error!(tag, "Main", "The task was canceled due to the following error on the remote node: {error}");
                }
            }
        }
        self.flush(ctx.outputs);
        deliveries
    }

    fn keepalive_failed(&mut self, error: &WazuhError, ctx: &mut Ctx) -> Vec<LocalDelivery> {
        let tag = Self::tag(ctx.settings);
        clog_error!(tag, "Keep Alive", "Error sending keep alive: {error}");
        let Link::Connected {
            conn,
            failed_keepalives,
            ..
        } = &mut self.link
        else {
            return Vec::new();
        };
        *failed_keepalives += 1;
        if *failed_keepalives < ctx.settings.timers.max_failed_keepalive_attempts {
            return Vec::new();
        }
        let conn = *conn;
        clog_error!(
            tag,
            "Keep Alive",
            "Maximum number of failed keep alives reached. Disconnecting."
        );
        self.close(conn, ctx)
    }

    /// We end the link.
    fn close(&mut self, conn: ConnId, ctx: &mut Ctx) -> Vec<LocalDelivery> {
        self.flush(ctx.outputs);
        ctx.outputs.push(Output::Close { conn });
        let retry = secs(ctx.settings.timers.connection_retry);
        clog_info!(
            Self::tag(ctx.settings),
            "Main",
            "The connection has been closed. Reconnecting in {retry} seconds."
        );
        self.reset(ctx)
    }

    /// The master (or the network) ended the link.
    pub(super) fn closed(&mut self, conn: ConnId, ctx: &mut Ctx) -> Vec<LocalDelivery> {
        if self.current_conn() != Some(conn) {
            return Vec::new();
        }
        let tag = Self::tag(ctx.settings);
        match &self.link {
            Link::AwaitHelloReply { .. } => clog_error!(
                tag,
                "Main",
                "Could not connect to master: {SILENT_REFUSAL}."
            ),
            Link::Connected { .. } => clog_info!(tag, "Main", "The master closed the connection"),
            _ => {}
        }
        let retry = secs(ctx.settings.timers.connection_retry);
        clog_info!(
            tag,
            "Main",
            "The connection has been closed. Reconnecting in {retry} seconds."
        );
        self.reset(ctx)
    }

    pub(super) fn tick(&mut self, ctx: &mut Ctx) -> Vec<LocalDelivery> {
        let tag = Self::tag(ctx.settings);
        let mut deliveries = Vec::new();
        match &mut self.link {
            Link::Idle { retry_at } if ctx.now.mono >= *retry_at => {
                let conn = ctx.ids.next();
                ctx.outputs.push(Output::Connect {
                    conn,
                    host: ctx.settings.master_host.clone(),
                    port: ctx.settings.port,
                });
                self.link = Link::Connecting { conn };
            }
            Link::AwaitHelloReply { conn, peer } => {
                let conn = *conn;
                if peer.expire(ctx.now.mono).contains(&Purpose::Hello) {
                    let error = WazuhError::with_extra(3020, SILENT_REFUSAL);
                    clog_error!(tag, "Main", "Could not connect to master: {error}.");
                    deliveries.extend(self.close(conn, ctx));
                }
            }
            Link::Connected {
                conn,
                peer,
                next_keepalive,
                ..
            } => {
                let conn = *conn;
                expire_received(peer, &tag, ctx.settings, ctx.now);
                if peer.payload_overdue(ctx.now.mono) {
                    clog_error!(tag, "Main", "Closing connection: incomplete message payload not received within deadline.");
                    return self.close(conn, ctx);
                }
                let timeout = ctx.settings.timers.timeout_cluster_request;
                let mut keepalive_timeouts = 0;
                let mut expired = Vec::new();
                for purpose in peer.expire(ctx.now.mono) {
                    match purpose {
                        Purpose::Keepalive => keepalive_timeouts += 1,
                        Purpose::ForwardToLocal { local } => {
                            deliveries.push(relay_failure(local, &WazuhError::new(3020)))
                        }
                        other => expired.push(other),
                    }
                }
                if ctx.now.mono >= *next_keepalive {
                    *next_keepalive = ctx.now.mono + ctx.settings.timers.keep_alive;
                    if let Err(e) = peer.request(
                        "echo-c",
                        b"keepalive",
                        Purpose::Keepalive,
                        ctx.now.mono,
                        timeout,
                    ) {
                        clog_error!(tag, "Keep Alive", "Error sending keep alive: {e}");
                    }
                }
                for _ in 0..keepalive_timeouts {
                    deliveries.extend(self.keepalive_failed(&WazuhError::new(3020), ctx));
                }
                expired.retain(|p| !self.sync_expired(p, ctx));
                self.sync_tick(ctx);
                self.agents_expired(expired, ctx);
                self.agents_tick(ctx);
            }
            _ => {}
        }
        self.flush(ctx.outputs);
        deliveries
    }

    /// Relays a local client's request to the master.
    pub(super) fn forward(
        &mut self,
        command: &Command,
        payload: &[u8],
        purpose: Purpose,
        settings: &NodeSettings,
        now: Now,
    ) -> Result<(), WazuhError> {
        let Link::Connected { peer, .. } = &mut self.link else {
            return Err(WazuhError::new(3023));
        };
        peer.request(
            command.as_str(),
            payload,
            purpose,
            now.mono,
            settings.timers.timeout_cluster_request,
        )
        .map(|_| ())
        .map_err(|e| WazuhError::with_extra(3018, e.to_string()))
    }

    pub(super) fn conn_mut(&mut self, conn: ConnId) -> Option<&mut PeerConn> {
        match &mut self.link {
            Link::AwaitHelloReply { conn: c, peer } | Link::Connected { conn: c, peer, .. }
                if *c == conn =>
            {
                Some(peer)
            }
            _ => None,
        }
    }

    pub(super) fn flush(&mut self, outputs: &mut Vec<Output>) {
        if let Link::AwaitHelloReply { conn, peer } | Link::Connected { conn, peer, .. } =
            &mut self.link
        {
            flush_conn(outputs, *conn, peer);
        }
    }

    pub(super) fn shutdown(&mut self, outputs: &mut Vec<Output>) {
        self.flush(outputs);
        if let Some(conn) = self.current_conn() {
            outputs.push(Output::Close { conn });
        }
    }
}
