//! The worker's side of the integrity sync (PROTOCOL.md §4.1): every `sync_integrity` it asks for
//! permission, sends its metadata, and then either hears it is in sync or receives and applies the
//! master's package; in the 4.3 dialect it then sends the extra-valid files the master asked for.

use std::time::{Duration, Instant};

use super::local::LocalDelivery;
use super::master_sync::package_name;
use super::worker::Worker;
use super::{Ctx, Purpose};
use crate::config::Dialect;
use crate::metrics::{Metrics, Task};
use crate::proto::command::Command;
use crate::proto::jobs::{Job, JobId, JobOutcome, JobResult, Package};
use crate::proto::transfer::{OutgoingFile, Step};
use crate::proto::wazuh_error::WazuhError;
use crate::{clog_error, clog_info, clog_warn};

/// Which command closes a file we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// `syn_i_w_m_e`: our metadata.
    Integrity,
    /// `syn_e_w_m_e`: extra-valid files (4.3).
    ExtraValid,
}

/// What the integrity loop waits for.
enum SyncState {
    Idle,
    AwaitPermission,
    /// Our package is being built (4.14: before asking for a task id; 4.3: after).
    Building {
        job: JobId,
        task_id: Option<String>,
    },
    /// Waiting for the master's task id for a file we will send.
    AwaitTaskId {
        package: Option<Package>,
        closing: Closing,
    },
    Sending {
        task_id: String,
        transfer: OutgoingFile,
        closing: Closing,
    },
    /// Our metadata is in; the master compares (`syn_m_c_ok` or `syn_m_c` comes next).
    AwaitVerdict {
        since: Instant,
    },
    /// `syn_m_c` answered; the package and its `syn_m_c_e` are on their way.
    Receiving {
        task_id: String,
        since: Instant,
    },
    Applying {
        job: JobId,
    },
}

pub(super) struct WorkerSync {
    state: SyncState,
    next_at: Instant,
    /// When the current check started, for `Finished in`.
    started: Instant,
    sync_started: Instant,
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

impl WorkerSync {
    pub(super) fn new(now: Instant) -> WorkerSync {
        WorkerSync {
            state: SyncState::Idle,
            next_at: now,
            started: now,
            sync_started: now,
        }
    }

    /// The link came up: the first check waits one interval, as stock workers do.
    pub(super) fn connected(&mut self, ctx: &mut Ctx) {
        self.state = SyncState::Idle;
        self.next_at = ctx.now.mono + ctx.settings.sync.sync_integrity;
    }

    /// The task is over (the link went down, or sending failed): delete the package we were
    /// about to send or sending. A package still being built goes when its job ends.
    pub(super) fn reset(&mut self, ctx: &mut Ctx) {
        match std::mem::replace(&mut self.state, SyncState::Idle) {
            SyncState::Sending { transfer, .. } => ctx.release(&transfer.rel),
            SyncState::AwaitTaskId {
                package: Some(package),
                ..
            } => ctx.release(&package.rel),
            _ => {}
        }
    }

    fn idle(&mut self, ctx: &Ctx) {
        self.state = SyncState::Idle;
        self.next_at = ctx.now.mono + ctx.settings.sync.sync_integrity;
    }
}

impl Worker {
    /// Sends `command` to the master; false if there is no accepted link.
    fn send(&mut self, command: &str, payload: &[u8], purpose: Purpose, ctx: &mut Ctx) -> bool {
        let timeout = ctx.settings.timers.timeout_cluster_request;
        match self.connected_peer() {
            Some((_, peer)) => peer
                .request(command, payload, purpose, ctx.now.mono, timeout)
                .is_ok(),
            None => false,
        }
    }

    /// Tells the master this node failed, so it frees the integrity lock at once.
    fn report_failure(&mut self, error: &WazuhError, ctx: &mut Ctx) {
        let payload = format!("None {}", error.to_json());
        self.send("syn_i_w_m_r", payload.as_bytes(), Purpose::Ignore, ctx);
    }

    /// A sync request of ours got no answer within `timeout_cluster_request` (lost on the way, or
    /// a master that stalls): the round ends with an error, the master is told so it frees our
    /// lock, and the next round starts after `sync_integrity`. False if `purpose` is not the
    /// integrity sync's.
    pub(super) fn sync_expired(&mut self, purpose: &Purpose, ctx: &mut Ctx) -> bool {
        let waited = match (purpose, &self.sync.state) {
            (Purpose::Permission, SyncState::AwaitPermission) => "permission",
            (Purpose::SyncTaskId, SyncState::AwaitTaskId { .. }) => "a task id",
            (Purpose::FileStep, SyncState::Sending { .. }) => "the file transfer",
            (Purpose::Permission | Purpose::SyncTaskId | Purpose::FileStep, _) => return true,
            _ => return false,
        };
        let error = WazuhError::new(3020);
        clog_error!(
            Self::tag(ctx.settings),
            "Integrity check",
            "Error synchronizing integrity: the master did not answer in time ({waited}): {error}"
        );
        if *purpose != Purpose::Permission {
            self.report_failure(&error, ctx);
        }
        self.sync.reset(ctx);
        self.sync.idle(ctx);
        true
    }

    pub(super) fn sync_tick(&mut self, ctx: &mut Ctx) {
        let tag = Self::tag(ctx.settings);
        let now = ctx.now.mono;
        let receive_timeout = ctx.settings.sync.timeout_receiving_file;
        let due = matches!(self.sync.state, SyncState::Idle) && now >= self.sync.next_at;
        if due && self.send("syn_i_w_m_p", b"", Purpose::Permission, ctx) {
            self.sync.state = SyncState::AwaitPermission;
            return;
        }
        match &self.sync.state {
            SyncState::AwaitVerdict { since }
                if now.saturating_duration_since(*since) > receive_timeout =>
            {
                clog_error!(tag, "Integrity check", "Error synchronizing integrity: the master did not answer the integrity check in time.");
                self.sync.idle(ctx);
            }
            SyncState::Receiving { task_id, since }
                if now.saturating_duration_since(*since) > receive_timeout =>
            {
                let error = WazuhError::new(3039);
                clog_error!(tag, "Integrity sync", "Error synchronizing files: {error}");
                // A 4.3 master knows no `cancel_task`: a 4.3 worker reports the timeout with
                // `syn_i_w_m_r`, naming itself, as its lock's owner.
                let (command, payload) = match ctx.settings.sync.dialect {
                    Dialect::V4_3 => {
                        let error = WazuhError::with_extra(
                            3039,
                            format!("Integrity sync at {}", ctx.settings.node_name),
                        );
                        ("syn_i_w_m_r", format!("None {}", error.to_json()))
                    }
                    Dialect::V4_14 => ("cancel_task", format!("{task_id} {}", error.to_json())),
                };
                self.send(command, payload.as_bytes(), Purpose::Ignore, ctx);
                self.drop_received_files();
                self.sync.idle(ctx);
            }
            _ => {}
        }
    }

    /// Replies to our sync requests.
    pub(super) fn sync_reply(
        &mut self,
        purpose: Purpose,
        command: Command,
        payload: Vec<u8>,
        ctx: &mut Ctx,
    ) {
        let tag = Self::tag(ctx.settings);
        let text = String::from_utf8_lossy(&payload).trim().to_string();
        match (purpose, &mut self.sync.state) {
            (Purpose::Permission, SyncState::AwaitPermission) => {
                if command != Command::Ok || text != "True" {
                    if command != Command::Ok {
                        clog_error!(
                            tag,
                            "Integrity check",
                            "Error asking for permission: {}",
                            WazuhError::from_payload(&payload)
                        );
                    }
                    return self.sync.idle(ctx);
                }
                clog_info!(tag, "Integrity check", "Starting.");
                self.sync.started = ctx.now.mono;
                match ctx.settings.sync.dialect {
                    Dialect::V4_14 => {
                        let job = self.build_package(ctx);
                        self.sync.state = SyncState::Building { job, task_id: None };
                    }
                    Dialect::V4_3 => {
                        self.sync.state = SyncState::AwaitTaskId {
                            package: None,
                            closing: Closing::Integrity,
                        };
                        if !self.send("syn_i_w_m", b"", Purpose::SyncTaskId, ctx) {
                            self.sync.idle(ctx);
                        }
                    }
                }
            }
            (Purpose::SyncTaskId, SyncState::AwaitTaskId { package, closing }) => {
                if command != Command::Ok {
                    let error = WazuhError::from_payload(&payload);
                    clog_error!(
                        tag,
                        "Integrity check",
                        "Error synchronizing integrity: {error}"
                    );
                    if let Some(p) = package.take() {
                        ctx.release(&p.rel);
                    }
                    return self.sync.idle(ctx);
                }
                let closing = *closing;
                match package.take() {
                    Some(package) => self.start_sending(text, package, closing, ctx),
                    None => {
                        let job = self.build_package(ctx);
                        self.sync.state = SyncState::Building {
                            job,
                            task_id: Some(text),
                        };
                    }
                }
            }
            (Purpose::FileStep, SyncState::Sending { task_id, .. }) => {
                let task_id = task_id.clone();
                let Some(cancelled) = self
                    .connected_peer()
                    .map(|(_, peer)| peer.is_interrupted(&task_id))
                else {
                    return;
                };
                let SyncState::Sending { transfer, .. } = &mut self.sync.state else {
                    return;
                };
                let step = transfer.replied(cancelled);
                self.drive(step, ctx);
            }
            _ => {}
        }
    }

    /// Starts the job that writes this node's metadata package (the link's until it is sent).
    fn build_package(&mut self, ctx: &mut Ctx) -> JobId {
        let rel = package_name(&ctx.settings.node_name, ctx);
        let conn = self.link_conn();
        let files = [rel.as_str()];
        ctx.scratch_job(Job::WorkerPackage { rel: rel.clone() }, conn, &files)
    }

    fn start_sending(
        &mut self,
        task_id: String,
        package: Package,
        closing: Closing,
        ctx: &mut Ctx,
    ) {
        let (transfer, step) =
            OutgoingFile::start(&package.rel, package.bytes, ctx.settings.limits.chunk_bytes);
        self.sync.state = SyncState::Sending {
            task_id,
            transfer,
            closing,
        };
        self.drive(step, ctx);
    }

    /// Carries out what our outgoing file needs next.
    fn drive(&mut self, step: Step, ctx: &mut Ctx) {
        let tag = Self::tag(ctx.settings);
        match step {
            Step::Request { command, payload } => {
                if !self.send(command, &payload, Purpose::FileStep, ctx) {
                    clog_error!(
                        tag,
                        "Integrity check",
                        "Error sending zip file: the connection with the master is gone."
                    );
                    self.sync.reset(ctx);
                }
            }
            Step::Read { offset, len } => {
                let SyncState::Sending { transfer, .. } = &self.sync.state else {
                    return;
                };
                let rel = transfer.rel.clone();
                if let Some((conn, _)) = self.connected_peer() {
                    ctx.outputs.push(super::Output::ReadChunk {
                        conn,
                        rel,
                        offset,
                        len,
                        reader: super::ChunkReader::Sync,
                    });
                }
            }
            Step::Done => {
                let SyncState::Sending {
                    task_id,
                    transfer,
                    closing,
                } = std::mem::replace(&mut self.sync.state, SyncState::Idle)
                else {
                    return;
                };
                let command = match closing {
                    Closing::Integrity => "syn_i_w_m_e",
                    Closing::ExtraValid => "syn_e_w_m_e",
                };
                self.send(
                    command,
                    format!("{task_id} {}", transfer.rel).as_bytes(),
                    Purpose::Ignore,
                    ctx,
                );
                ctx.release(&transfer.rel);
                match closing {
                    Closing::Integrity => {
                        self.sync.state = SyncState::AwaitVerdict {
                            since: ctx.now.mono,
                        }
                    }
                    Closing::ExtraValid => self.sync.idle(ctx),
                }
            }
        }
    }

    /// The transport read the chunk our transfer asked for (or could not).
    pub(super) fn chunk_read(
        &mut self,
        _conn: super::ConnId,
        data: Result<Vec<u8>, String>,
        ctx: &mut Ctx,
    ) -> Vec<LocalDelivery> {
        let SyncState::Sending { transfer, .. } = &mut self.sync.state else {
            return Vec::new();
        };
        match data {
            Ok(bytes) => {
                let step = transfer.chunk_read(&bytes);
                self.drive(step, ctx);
            }
            Err(e) => {
                let error = WazuhError::with_extra(3001, e);
                clog_error!(
                    Self::tag(ctx.settings),
                    "Integrity check",
                    "Error sending zip file: {error}"
                );
                self.report_failure(&error, ctx);
                self.sync.reset(ctx);
                self.sync.idle(ctx);
            }
        }
        Vec::new()
    }

    /// An integrity check answered: its round, from the metadata package to the master's verdict.
    fn observe_check(&self, ctx: &Ctx) {
        let took = ctx.now.mono.saturating_duration_since(self.sync.started);
        Metrics::global().round(Task::IntegrityCheck, &ctx.settings.node_name, took);
    }

    /// Sync requests from the master; `None` when `command` is not one.
    pub(super) fn sync_request(
        &mut self,
        command: &Command,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> Option<(&'static str, Vec<u8>)> {
        let tag = Self::tag(ctx.settings);
        let took = secs(ctx.now.mono.saturating_duration_since(self.sync.started));
        Some(match command {
            Command::SynMCOk => {
                clog_info!(
                    tag,
                    "Integrity check",
                    "Finished in {took}s. Sync not required."
                );
                self.observe_check(ctx);
                Metrics::global().set_ready(true, "");
                self.reload_after_integrity(ctx);
                self.sync.idle(ctx);
                ("ok", b"Thanks".to_vec())
            }
            Command::SynMC => {
                clog_info!(
                    tag,
                    "Integrity check",
                    "Finished in {took}s. Sync required."
                );
                self.observe_check(ctx);
                let task_id = ctx.uuid();
                self.sync.state = SyncState::Receiving {
                    task_id: task_id.clone(),
                    since: ctx.now.mono,
                };
                ("ok", task_id.into_bytes())
            }
            Command::SynMCE => self.package_announced(payload, ctx),
            Command::SynMCR => {
                let text = String::from_utf8_lossy(payload);
                let (_, error) = text.split_once(' ').unwrap_or(("None", &text));
                clog_error!(
                    tag,
                    "Integrity sync",
                    "Error synchronizing files: {}",
                    WazuhError::from_payload(error.as_bytes())
                );
                // The package the master was sending will never be referenced (§4.1.9).
                self.drop_received_files();
                self.sync.idle(ctx);
                ("ok", b"Error received".to_vec())
            }
            _ => return None,
        })
    }

    /// `syn_m_c_e <task> <rel>`: the master's package is here; apply it.
    fn package_announced(&mut self, payload: &[u8], ctx: &mut Ctx) -> (&'static str, Vec<u8>) {
        let tag = Self::tag(ctx.settings);
        let own_dir = format!("queue/cluster/{}/", ctx.settings.node_name);
        let text = String::from_utf8_lossy(payload).into_owned();
        let expected = match &self.sync.state {
            SyncState::Receiving { task_id, .. } => Some(task_id.clone()),
            _ => None,
        };
        let Some((_, rel)) = text
            .split_once(' ')
            .filter(|(t, r)| expected.as_deref() == Some(*t) && r.starts_with(&own_dir))
        else {
            return ("err", WazuhError::new(3027).to_payload());
        };
        let rel = rel.trim().to_string();
        let intact = self
            .connected_peer()
            .and_then(|(_, peer)| peer.take_received_file(&rel))
            == Some(true);
        if !intact {
            let error = WazuhError::with_extra(
                3040,
                format!("{} did not arrive intact", crate::proto::quote::quote(&rel)),
            );
            clog_error!(tag, "Integrity sync", "Error synchronizing files: {error}");
            // The receive table deleted it already (or never had it).
            self.sync.idle(ctx);
            return (
                "err",
                error.in_dialect(ctx.settings.sync.dialect).to_payload(),
            );
        }
        clog_info!(tag, "Integrity sync", "Starting.");
        self.sync.sync_started = ctx.now.mono;
        let extra_valid_rel = package_name(&ctx.settings.node_name, ctx);
        let conn = self.link_conn();
        let files = [rel.as_str(), extra_valid_rel.as_str()];
        let job = Job::Apply {
            rel: rel.clone(),
            extra_valid_rel: extra_valid_rel.clone(),
        };
        let job = ctx.scratch_job(job, conn, &files);
        self.sync.state = SyncState::Applying { job };
        ("ok", b"File correctly received".to_vec())
    }

    /// A job of the integrity loop finished.
    pub(super) fn job_done(
        &mut self,
        id: JobId,
        result: JobResult,
        ctx: &mut Ctx,
    ) -> Vec<LocalDelivery> {
        let tag = Self::tag(ctx.settings);
        match (&mut self.sync.state, result) {
            (
                SyncState::Building { job, task_id },
                Ok(JobOutcome::WorkerPackage { package, .. }),
            ) if *job == id => match task_id.take() {
                Some(task_id) => {
                    ctx.hold_for_sending(&package.rel, self.link_conn());
                    self.start_sending(task_id, package, Closing::Integrity, ctx)
                }
                None => {
                    ctx.hold_for_sending(&package.rel, self.link_conn());
                    self.sync.state = SyncState::AwaitTaskId {
                        package: Some(package),
                        closing: Closing::Integrity,
                    };
                    if !self.send("syn_i_w_m", b"", Purpose::SyncTaskId, ctx) {
                        self.sync.reset(ctx);
                    }
                }
            },
            (SyncState::Building { job, .. }, Err(e)) if *job == id => {
                let error = WazuhError::with_extra(3001, e);
                clog_error!(
                    tag,
                    "Integrity check",
                    "Error synchronizing integrity: {error}"
                );
                self.report_failure(&error, ctx);
                self.sync.idle(ctx);
            }
            (SyncState::Applying { job }, result) if *job == id => self.applied(result, ctx),
            _ => {}
        }
        Vec::new()
    }

    fn applied(&mut self, result: JobResult, ctx: &mut Ctx) {
        let tag = Self::tag(ctx.settings);
        let outcome = match result {
            Ok(JobOutcome::Apply {
                created,
                updated,
                deleted,
                extra_valid_files,
                extra_valid,
                errors,
                warnings,
            }) => {
                let mut line = format!("Files to create: {created} | Files to update: {updated} | Files to delete: {deleted}");
                if ctx.settings.sync.dialect == Dialect::V4_3 {
                    line.push_str(&format!(" | Files to send: {extra_valid_files}"));
                }
                clog_info!(tag, "Integrity sync", "{line}");
                for w in warnings {
                    clog_warn!(tag, "Integrity sync", "{w}");
                }
                if !errors.is_empty() {
                    clog_error!(tag, "Integrity sync", "Found errors: {}", errors.join("; "));
                }
                self.reload_after_integrity(ctx);
                extra_valid
            }
            Ok(_) => None,
            Err(e) => {
                let error = WazuhError::with_extra(3000, e);
                clog_error!(tag, "Integrity sync", "Error synchronizing files: {error}");
                self.report_failure(&error, ctx);
                None
            }
        };
        let took = secs(
            ctx.now
                .mono
                .saturating_duration_since(self.sync.sync_started),
        );
        clog_info!(tag, "Integrity sync", "Finished in {took}s.");
        let applied = ctx
            .now
            .mono
            .saturating_duration_since(self.sync.sync_started);
        Metrics::global().round(Task::IntegritySync, &ctx.settings.node_name, applied);
        Metrics::global().set_ready(true, "");
        match outcome {
            Some(package) => {
                ctx.hold_for_sending(&package.rel, self.link_conn());
                self.sync.state = SyncState::AwaitTaskId {
                    package: Some(package),
                    closing: Closing::ExtraValid,
                };
                if !self.send("syn_e_w_m", b"", Purpose::SyncTaskId, ctx) {
                    self.sync.reset(ctx);
                }
            }
            None => self.sync.idle(ctx),
        }
    }
}
