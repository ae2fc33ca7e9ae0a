//! The master's side of the integrity sync (PROTOCOL.md §4.1, §5.1): the local-integrity schedule,
//! the per-worker permission and lock, receiving a worker's metadata, the comparison job, sending the
//! package back, and (4.3 dialect) receiving extra-valid files.

use std::time::{Duration, Instant, SystemTime};

use super::master::{Master, WorkerPeer};
use super::{ConnId, Ctx, Output, Purpose};
use crate::config::Dialect;
use crate::metrics::{Metrics, Task};
use crate::proto::command::Command;
use crate::proto::jobs::{Job, JobId, JobOutcome, JobResult, Package, SyncCounts};
use crate::proto::transfer::{OutgoingFile, Step};
use crate::proto::wazuh_error::WazuhError;
use crate::{clog_debug, clog_error, clog_info, clog_warn};

/// The master's local-integrity loop.
pub(super) struct LocalIntegrity {
    /// A snapshot exists: workers may be compared (before that, every worker file would look extra).
    pub(super) ready: bool,
    job: Option<(JobId, Instant)>,
    next_at: Instant,
}

impl LocalIntegrity {
    pub(super) fn new(now: Instant) -> LocalIntegrity {
        LocalIntegrity {
            ready: false,
            job: None,
            next_at: now,
        }
    }
}

/// Dates and counts of a worker's last integrity check and sync, for `get_health`.
#[derive(Debug, Clone, Default)]
pub(super) struct SyncHealth {
    pub(super) free: bool,
    pub(super) check_start: Option<SystemTime>,
    pub(super) check_end: Option<SystemTime>,
    pub(super) sync_start: Option<SystemTime>,
    pub(super) sync_end: Option<SystemTime>,
    pub(super) counts: SyncCounts,
}

/// A file the worker announced (`syn_i_w_m`, `syn_e_w_m`) and must reference with `*_e` in time.
struct ReceiveTask {
    task_id: String,
    extra_valid: bool,
    since: Instant,
}

/// The master's package on its way to the worker.
struct SendTask {
    /// The worker's task id, known once it answered `syn_m_c`.
    task_id: Option<String>,
    package: Package,
    transfer: Option<OutgoingFile>,
    started: Instant,
}

/// Integrity state of one worker connection.
pub(super) struct PeerSync {
    /// The integrity lock: busy since when.
    lock_since: Option<Instant>,
    receive: Option<ReceiveTask>,
    /// When the current check started (monotonic), for `Finished in`.
    check_started: Option<Instant>,
    comparing: Option<JobId>,
    send: Option<SendTask>,
    /// 4.3: the package asked for extra-valid files; they must arrive by this time.
    extra_valid_deadline: Option<Instant>,
    /// Adaptive package limit (§4.1.5).
    zip_limit: u64,
    health: SyncHealth,
}

impl PeerSync {
    pub(super) fn new(max_zip_size: u64) -> PeerSync {
        PeerSync {
            lock_since: None,
            receive: None,
            check_started: None,
            comparing: None,
            send: None,
            extra_valid_deadline: None,
            zip_limit: max_zip_size,
            health: SyncHealth {
                free: true,
                ..SyncHealth::default()
            },
        }
    }

    pub(super) fn health(&self) -> SyncHealth {
        SyncHealth {
            free: self.lock_since.is_none(),
            ..self.health.clone()
        }
    }

    fn release(&mut self) {
        self.lock_since = None;
        self.receive = None;
        self.comparing = None;
        self.send = None;
        self.extra_valid_deadline = None;
    }

    /// The connection is gone: forget the tasks (the scratch ledger deletes their files).
    pub(super) fn abandon(mut self) {
        self.release();
    }
}

fn task_and_rel(payload: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (task, rel) = text.split_once(' ')?;
    Some((task.to_string(), rel.trim().to_string()))
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

impl Master {
    /// Sync commands from a worker; `None` when `command` is not one.
    pub(super) fn sync_request(
        &mut self,
        conn: ConnId,
        command: &Command,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> Option<(&'static str, Vec<u8>)> {
        let is_sync = matches!(
            command,
            Command::SynIWMP
                | Command::SynIWM
                | Command::SynIWME
                | Command::SynIWMR
                | Command::SynEWM
                | Command::SynEWME
        );
        if !is_sync {
            return None;
        }
        let accepted = self.workers.get(&conn).is_some_and(|p| p.accepted);
        if !accepted {
            return Some((
                "err",
                WazuhError::with_extra(3000, "send hello first").to_payload(),
            ));
        }
        Some(match command {
            Command::SynIWMP => ("ok", self.permission(conn, ctx).as_bytes().to_vec()),
            Command::SynIWM | Command::SynEWM => {
                self.open_receive(conn, *command == Command::SynEWM, ctx)
            }
            Command::SynIWME | Command::SynEWME => self.file_announced(conn, payload, ctx),
            _ => self.worker_error(conn, payload),
        })
    }

    /// `syn_i_w_m_p`: one grant per worker per local-integrity cycle, and only while its lock is free.
    fn permission(&mut self, conn: ConnId, ctx: &mut Ctx) -> &'static str {
        if !self.local.ready {
            return "False";
        }
        let Some(peer) = self.workers.get_mut(&conn) else {
            return "False";
        };
        let name = peer.name().to_string();
        if !self.granted.insert(name) {
            return "False";
        }
        let max = ctx.settings.sync.max_locked_integrity_time;
        if let Some(since) = peer.sync.lock_since {
            if ctx.now.mono.saturating_duration_since(since) > max {
                clog_warn!(
                    peer.tag(),
                    "Main",
                    "Automatically releasing Integrity check permissions flag (b'syn_i_w_m_p') after being locked out for more than {}s.",
                    max.as_secs()
                );
                peer.sync.release();
            }
        }
        if peer.sync.lock_since.is_none() {
            "True"
        } else {
            "False"
        }
    }

    /// `syn_i_w_m` / `syn_e_w_m`: the worker is about to send a file; hand it a task id.
    fn open_receive(
        &mut self,
        conn: ConnId,
        extra_valid: bool,
        ctx: &mut Ctx,
    ) -> (&'static str, Vec<u8>) {
        let task_id = ctx.uuid();
        let Some(peer) = self.workers.get_mut(&conn) else {
            return ("err", Vec::new());
        };
        if !extra_valid {
            peer.sync.lock_since = Some(ctx.now.mono);
            peer.sync.check_started = Some(ctx.now.mono);
            peer.sync.health.check_start = Some(ctx.now.wall);
            clog_info!(peer.tag(), "Integrity check", "Starting.");
        }
        peer.sync.receive = Some(ReceiveTask {
            task_id: task_id.clone(),
            extra_valid,
            since: ctx.now.mono,
        });
        ("ok", task_id.into_bytes())
    }

    /// `syn_i_w_m_e` / `syn_e_w_m_e <task> <rel>`: the file is here; start working on it.
    fn file_announced(
        &mut self,
        conn: ConnId,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> (&'static str, Vec<u8>) {
        let Some(peer) = self.workers.get_mut(&conn) else {
            return ("err", Vec::new());
        };
        let own_dir = format!("queue/cluster/{}/", peer.name());
        let task = peer.sync.receive.as_ref();
        let Some((task_id, rel)) = task_and_rel(payload)
            .filter(|(t, r)| task.is_some_and(|k| &k.task_id == t) && r.starts_with(&own_dir))
        else {
            return ("err", WazuhError::new(3027).to_payload());
        };
        let extra_valid = task.is_some_and(|t| t.extra_valid);
        peer.sync.receive = None;
        if peer.conn.take_received_file(&rel) != Some(true) {
            let error = WazuhError::with_extra(
                3040,
                format!("{} did not arrive intact", crate::proto::quote::quote(&rel)),
            );
            clog_error!(
                peer.tag(),
                "Integrity check",
                "Error receiving the worker's file: {error}"
            );
            // The receive table deleted it already (or never had it).
            peer.sync.release();
            return (
                "err",
                error.in_dialect(ctx.settings.sync.dialect).to_payload(),
            );
        }
        let name = peer.name().to_string();
        let id = if extra_valid {
            let files = [rel.as_str()];
            ctx.scratch_job(
                Job::ExtraValid {
                    worker: name,
                    rel: rel.clone(),
                },
                conn,
                &files,
            )
        } else {
            let out_rel = package_name(&name, ctx);
            let files = [rel.as_str(), out_rel.as_str()];
            let job = Job::Compare {
                worker: name,
                rel: rel.clone(),
                out_rel: out_rel.clone(),
                zip_limit_bytes: peer.sync.zip_limit,
            };
            ctx.scratch_job(job, conn, &files)
        };
        peer.sync.comparing = Some(id);
        self.jobs.insert(id, conn);
        let _ = task_id;
        ("ok", b"File correctly received".to_vec())
    }

    /// `syn_i_w_m_r <task|None> <error>`: the worker failed; free its lock.
    fn worker_error(&mut self, conn: ConnId, payload: &[u8]) -> (&'static str, Vec<u8>) {
        if let Some(peer) = self.workers.get_mut(&conn) {
            let text = String::from_utf8_lossy(payload);
            let (_, error) = text.split_once(' ').unwrap_or(("None", &text));
            clog_error!(
                peer.tag(),
                "Integrity check",
                "Error in synchronization process: {}",
                WazuhError::from_payload(error.as_bytes())
            );
            peer.sync.release();
        }
        ("ok", b"Error received".to_vec())
    }

    /// A job finished.
    pub(super) fn job_done(&mut self, id: JobId, result: JobResult, ctx: &mut Ctx) {
        if self.local.job.is_some_and(|(job, _)| job == id) {
            return self.local_integrity_done(result, ctx);
        }
        let Some(conn) = self.jobs.remove(&id) else {
            return;
        };
        let Some(peer) = self.workers.get_mut(&conn) else {
            return;
        };
        let tag = peer.tag();
        match result {
            Ok(JobOutcome::Compare {
                received_files,
                counts,
                package,
                warnings,
                notes,
                worker_client_keys,
            }) => {
                for w in warnings {
                    clog_warn!(tag, "Integrity sync", "{w}");
                }
                for n in notes {
                    clog_info!(tag, "Integrity sync", "{n}");
                }
                self.groups_worker_keys(conn, worker_client_keys);
                self.compared(conn, received_files, counts, package, ctx);
            }
            Ok(JobOutcome::ExtraValid { updated, errors }) => {
                for e in &errors {
                    clog_error!(
                        tag,
                        "Integrity sync",
                        "Error processing extra-valid files: {e}"
                    );
                }
                clog_debug!(
                    tag,
                    "Integrity sync",
                    "Received {updated} extra-valid files."
                );
                let started = peer
                    .sync
                    .send
                    .as_ref()
                    .map(|s| s.started)
                    .or(peer.sync.check_started)
                    .unwrap_or(ctx.now.mono);
                let took = ctx.now.mono.saturating_duration_since(started);
                Metrics::global().round(Task::IntegritySync, peer.name(), took);
                clog_info!(tag, "Integrity sync", "Finished in {}s.", secs(took));
                peer.sync.health.sync_end = Some(ctx.now.wall);
                peer.sync.release();
            }
            Ok(_) => {}
            Err(e) => {
                clog_error!(tag, "Integrity check", "Error synchronizing integrity: {e}");
                abort_send(peer, None, &WazuhError::with_extra(3001, e), ctx);
            }
        }
    }

    fn local_integrity_done(&mut self, result: JobResult, ctx: &mut Ctx) {
        let started = self.local.job.take().map_or(ctx.now.mono, |(_, at)| at);
        match result {
            Ok(JobOutcome::LocalIntegrity {
                files,
                client_keys,
                agent_keys,
                ..
            }) => {
                self.groups_master_keys(client_keys, agent_keys.as_ref());
                clog_info!(
                    "Master",
                    "Local integrity",
                    "Finished in {}s. Calculated metadata of {files} files.",
                    secs(ctx.now.mono.saturating_duration_since(started))
                );
                self.local.ready = true;
                Metrics::global().set_ready(true, "");
            }
            Ok(_) => {}
            Err(e) => clog_error!(
                "Master",
                "Local integrity",
                "Error calculating local file integrity: {e}"
            ),
        }
        self.granted.clear();
        self.local.next_at = ctx.now.mono + ctx.settings.sync.recalculate_integrity;
    }

    /// The comparison is done: tell the worker it is in sync, or send it the package.
    fn compared(
        &mut self,
        conn: ConnId,
        received: usize,
        counts: SyncCounts,
        package: Option<Package>,
        ctx: &mut Ctx,
    ) {
        let Some(peer) = self.workers.get_mut(&conn) else {
            return;
        };
        let tag = peer.tag();
        let took = peer.sync.check_started.map_or(Duration::ZERO, |s| {
            ctx.now.mono.saturating_duration_since(s)
        });
        let timeout = ctx.settings.timers.timeout_cluster_request;
        peer.sync.health.check_end = Some(ctx.now.wall);
        Metrics::global().round(Task::IntegrityCheck, peer.name(), took);
        if counts.in_sync() {
            clog_info!(
                tag,
                "Integrity check",
                "Finished in {}s. Received metadata of {received} files. Sync not required.",
                secs(took)
            );
            let _ = peer
                .conn
                .request("syn_m_c_ok", b"", Purpose::Ignore, ctx.now.mono, timeout);
            peer.sync.release();
            return;
        }
        clog_info!(
            tag,
            "Integrity check",
            "Finished in {}s. Received metadata of {received} files. Sync required.",
            secs(took)
        );
        clog_info!(tag, "Integrity sync", "Starting.");
        peer.sync.health.sync_start = Some(ctx.now.wall);
        peer.sync.health.counts = counts;
        let mut line = format!(
            "Files to create in worker: {} | Files to update in worker: {} | Files to delete in worker: {}",
            counts.missing, counts.shared, counts.extra
        );
        if ctx.settings.sync.dialect == Dialect::V4_3 {
            line.push_str(&format!(" | Files to receive: {}", counts.extra_valid));
        }
        clog_info!(tag, "Integrity sync", "{line}");
        let Some(package) = package else {
            peer.sync.release();
            return;
        };
        if ctx.settings.sync.dialect == Dialect::V4_3 && counts.extra_valid > 0 {
            peer.sync.extra_valid_deadline =
                Some(ctx.now.mono + ctx.settings.sync.timeout_extra_valid);
        }
        match peer
            .conn
            .request("syn_m_c", b"", Purpose::SyncTaskId, ctx.now.mono, timeout)
        {
            Ok(_) => {
                ctx.hold_for_sending(&package.rel, conn);
                peer.sync.send = Some(SendTask {
                    task_id: None,
                    package,
                    transfer: None,
                    started: ctx.now.mono,
                })
            }
            Err(e) => {
                // Not taken: the ledger deletes the package when the job's result is handled.
                clog_error!(tag, "Integrity sync", "Error sending zip file: {e}");
                peer.sync.release();
            }
        }
    }

    /// Replies to our sync requests.
    pub(super) fn sync_reply(
        &mut self,
        conn: ConnId,
        purpose: Purpose,
        command: Command,
        payload: Vec<u8>,
        ctx: &mut Ctx,
    ) {
        let Some(peer) = self.workers.get_mut(&conn) else {
            return;
        };
        let tag = peer.tag();
        if purpose == Purpose::SyncEnd {
            if command == Command::Err {
                clog_error!(
                    tag,
                    "Integrity sync",
                    "The worker could not take the package: {}",
                    WazuhError::from_payload(&payload)
                );
            }
            return;
        }
        let step = match (purpose, peer.sync.send.as_mut()) {
            (Purpose::SyncTaskId, Some(send)) if command == Command::Ok => {
                send.task_id = Some(String::from_utf8_lossy(&payload).trim().to_string());
                let (transfer, step) = OutgoingFile::start(
                    &send.package.rel,
                    send.package.bytes,
                    ctx.settings.limits.chunk_bytes,
                );
                send.transfer = Some(transfer);
                step
            }
            (Purpose::SyncTaskId, Some(_)) => {
                let error = WazuhError::from_payload(&payload);
                return send_failed(peer, &error, ctx);
            }
            (
                Purpose::FileStep,
                Some(SendTask {
                    task_id: Some(task),
                    transfer: Some(t),
                    ..
                }),
            ) => {
                let cancelled = peer.conn.is_interrupted(task);
                t.replied(cancelled)
            }
            _ => return,
        };
        self.drive(conn, step, ctx);
    }

    /// A sync request of ours to worker `conn` got no answer within `timeout_cluster_request`:
    /// the package send ends and the worker is told (`syn_m_c_r`); an unanswered
    /// `syn_m_c_e` is only logged. False if `purpose` is not the integrity sync's.
    pub(super) fn sync_expired(&mut self, conn: ConnId, purpose: &Purpose, ctx: &mut Ctx) -> bool {
        if !matches!(
            purpose,
            Purpose::SyncTaskId | Purpose::FileStep | Purpose::SyncEnd
        ) {
            return false;
        }
        let Some(peer) = self.workers.get_mut(&conn) else {
            return true;
        };
        let error = WazuhError::new(3020);
        if *purpose == Purpose::SyncEnd {
            clog_error!(
                peer.tag(),
                "Integrity sync",
                "The worker did not confirm the package: {error}"
            );
        } else if let Some(send) = peer.sync.send.as_ref() {
            clog_error!(
                peer.tag(),
                "Integrity sync",
                "Error sending zip file: {error}"
            );
            let task = send.task_id.clone();
            abort_send(peer, task.as_deref(), &error, ctx);
        }
        true
    }

    /// The transport read the chunk the transfer asked for (or could not).
    pub(super) fn chunk_read(
        &mut self,
        conn: ConnId,
        data: Result<Vec<u8>, String>,
        ctx: &mut Ctx,
    ) {
        let Some(peer) = self.workers.get_mut(&conn) else {
            return;
        };
        let tag = peer.tag();
        let Some(send) = peer.sync.send.as_mut() else {
            return;
        };
        let Some(transfer) = send.transfer.as_mut() else {
            return;
        };
        let step = match data {
            Ok(bytes) => transfer.chunk_read(&bytes),
            Err(e) => {
                let error = WazuhError::with_extra(3001, e);
                clog_error!(tag, "Integrity sync", "Error sending zip file: {error}");
                let task = send.task_id.clone();
                abort_send(peer, task.as_deref(), &error, ctx);
                return;
            }
        };
        self.drive(conn, step, ctx);
    }

    /// Carries out what the package transfer needs next.
    fn drive(&mut self, conn: ConnId, step: Step, ctx: &mut Ctx) {
        let Some(peer) = self.workers.get_mut(&conn) else {
            return;
        };
        let node = peer.name().to_string();
        let Some(send) = peer.sync.send.as_mut() else {
            return;
        };
        let timeout = ctx.settings.timers.timeout_cluster_request;
        match step {
            Step::Request { command, payload } => {
                if let Err(e) =
                    peer.conn
                        .request(command, &payload, Purpose::FileStep, ctx.now.mono, timeout)
                {
                    send_failed(peer, &e, ctx);
                }
            }
            Step::Read { offset, len } => {
                ctx.outputs.push(Output::ReadChunk {
                    conn,
                    rel: send.package.rel.clone(),
                    offset,
                    len,
                    reader: super::ChunkReader::Sync,
                });
            }
            Step::Done => {
                let task = send.task_id.clone().unwrap_or_default();
                let sent = send.transfer.as_ref().map_or(0, |t| t.bytes_sent());
                let cancelled = peer.conn.is_interrupted(&task);
                let took = ctx.now.mono.saturating_duration_since(send.started);
                let rel = send.package.rel.clone();
                let _ = peer.conn.request(
                    "syn_m_c_e",
                    format!("{task} {rel}").as_bytes(),
                    Purpose::SyncEnd,
                    ctx.now.mono,
                    timeout,
                );
                adapt_zip_limit(&mut peer.sync.zip_limit, cancelled, sent, took, ctx);
                if !cancelled {
                    let counts = &peer.sync.health.counts;
                    let files = (counts.missing + counts.shared) as u64;
                    Metrics::global().files_sent(&node, files, sent);
                }
                ctx.release(&rel);
                if peer.sync.extra_valid_deadline.is_some() {
                    // 4.3: the sync ends when the worker's extra-valid files are in.
                    peer.sync.send = None;
                    return;
                }
                let started = peer.sync.check_started.unwrap_or(send.started);
                let took = ctx.now.mono.saturating_duration_since(started);
                Metrics::global().round(Task::IntegritySync, peer.name(), took);
                clog_info!(peer.tag(), "Integrity sync", "Finished in {}s.", secs(took));
                peer.sync.health.sync_end = Some(ctx.now.wall);
                peer.sync.release();
            }
        }
    }

    /// Local-integrity schedule and per-worker deadlines.
    pub(super) fn sync_tick(&mut self, ctx: &mut Ctx) {
        if self.local.job.is_none() && ctx.now.mono >= self.local.next_at {
            clog_info!("Master", "Local integrity", "Starting.");
            let id = ctx.job(Job::LocalIntegrity);
            self.local.job = Some((id, ctx.now.mono));
        }
        let receive_timeout = ctx.settings.sync.timeout_receiving_file;
        let request_timeout = ctx.settings.timers.timeout_cluster_request;
        for peer in self.workers.values_mut() {
            if let Some(task) = peer
                .sync
                .receive
                .as_ref()
                .filter(|t| ctx.now.mono.saturating_duration_since(t.since) > receive_timeout)
            {
                let error = WazuhError::new(3039);
                clog_error!(peer.tag(), "Integrity check", "{error}");
                // 4.14 tells the worker to stop sending; a 4.3 master only frees the lock (its
                // workers know no `cancel_task`).
                if ctx.settings.sync.dialect == Dialect::V4_14 {
                    let payload = format!("{} {}", task.task_id, error.to_json());
                    let _ = peer.conn.request(
                        "cancel_task",
                        payload.as_bytes(),
                        Purpose::Ignore,
                        ctx.now.mono,
                        request_timeout,
                    );
                }
                peer.sync.release();
            }
            if peer.sync.send.is_none()
                && peer
                    .sync
                    .extra_valid_deadline
                    .is_some_and(|d| ctx.now.mono > d)
            {
                clog_error!(
                    peer.tag(),
                    "Integrity sync",
                    "{}",
                    WazuhError::with_extra(
                        3038,
                        "the worker's extra-valid files did not arrive in time"
                    )
                );
                peer.sync.release();
            }
        }
    }
}

/// Tells the worker the master's side of the sync failed (`syn_m_c_r`), frees the lock and deletes the
/// package being sent, if any.
fn abort_send(peer: &mut WorkerPeer, task: Option<&str>, error: &WazuhError, ctx: &mut Ctx) {
    let payload = format!("{} {}", task.unwrap_or("None"), error.to_json());
    let timeout = ctx.settings.timers.timeout_cluster_request;
    let _ = peer.conn.request(
        "syn_m_c_r",
        payload.as_bytes(),
        Purpose::Ignore,
        ctx.now.mono,
        timeout,
    );
    if let Some(send) = peer.sync.send.take() {
        ctx.release(&send.package.rel);
    }
    peer.sync.release();
}

/// §4.1.5: shrink the limit after a cancelled transfer, grow it back after fast ones.
fn adapt_zip_limit(limit: &mut u64, cancelled: bool, sent: u64, took: Duration, ctx: &Ctx) {
    let s = &ctx.settings.sync;
    let keep = 1.0 - s.zip_limit_tolerance;
    if cancelled {
        *limit = ((sent as f64 * keep) as u64).max(s.min_zip_size);
        clog_debug!(
            "Master",
            "Integrity sync",
            "Decreasing sync size limit to {:.2} MB.",
            *limit as f64 / (1024.0 * 1024.0)
        );
    } else if *limit < s.max_zip_size
        && took.as_secs_f64() < s.timeout_receiving_file.as_secs_f64() * keep
    {
        *limit = ((*limit as f64 / keep) as u64).min(s.max_zip_size);
        clog_debug!(
            "Master",
            "Integrity sync",
            "Increasing sync size limit to {:.2} MB.",
            *limit as f64 / (1024.0 * 1024.0)
        );
    }
}

/// `queue/cluster/<worker>/<worker>-<epoch>-<uuid hex>.zip`, the name stock nodes give packages.
pub(super) fn package_name(worker: &str, ctx: &mut Ctx) -> String {
    let epoch = ctx
        .now
        .wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let hex = ctx.uuid().replace('-', "");
    format!("queue/cluster/{worker}/{worker}-{epoch:.6}-{hex}.zip")
}

/// The package send to `peer` failed: logged, the worker's lock freed, the package deleted.
fn send_failed(peer: &mut WorkerPeer, error: &dyn std::fmt::Display, ctx: &mut Ctx) {
    clog_error!(
        peer.tag(),
        "Integrity sync",
        "Error sending zip file: {error}"
    );
    if let Some(send) = peer.sync.send.as_ref() {
        let rel = send.package.rel.clone();
        ctx.release(&rel);
    }
    peer.sync.release();
}
