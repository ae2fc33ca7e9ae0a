//! A worker's distributed API (PROTOCOL.md §4.5): its local clients' `local_master` and
//! `distributed_master` requests are relayed to the master as `dapi <local id> <request>` and the
//! answer (`dapi_res <local id> <string id>` after the long string, or `dapi_err`) goes back to the
//! client; `local_any` requests and the shares the master sends (`dapi <uuid> <request>`) run
//! here, off the event loop, and the latter are answered to the master the same way. A relayed
//! request whose link goes down, or that gets no answer in time, is answered `dapi_err` at once.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use super::dapi::{
    checked, local_answer, log_refused_answer, refusal_text, refused_function, send_answer,
    split_id, Answer, QUEUED, RELAY_MARGIN_SECS,
};
use super::local::LocalDelivery;
use super::relay_table::RelayTable;
use super::worker::{Link, Worker};
use super::{ConnId, Ctx, Purpose};
use crate::metrics::{FailureReason, Metrics};
use crate::proto::command::Command;
use crate::proto::dapi::job::{QUEUE_MAX, RUNNING_MAX};
use crate::proto::dapi::{DapiJob, DapiOutcome, Execution, RequestType};
use crate::proto::jobs::{Job, JobId, JobOutcome, JobResult};
use crate::proto::wazuh_error::WazuhError;
use crate::{clog_debug, clog_error, clog_info};

/// Where the answer of a request run here goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AnswerTo {
    /// The master, for its request `id`.
    Master {
        id: String,
    },
    Local {
        conn: ConnId,
    },
    /// The link it came on is gone.
    Nobody,
}

#[derive(Default)]
pub(super) struct WorkerDapi {
    relayed: RelayTable,
    queue: VecDeque<(AnswerTo, Bytes, Execution)>,
    runs: HashMap<JobId, AnswerTo>,
}

impl Worker {
    /// A local client's `dapi`.
    pub(super) fn dapi_local(
        &mut self,
        local: ConnId,
        client: u32,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> (&'static str, Vec<u8>) {
        let tag = Self::tag(ctx.settings);
        Metrics::global().dapi_request();
        let (request, execution) = match checked(payload) {
            Ok(checked) => checked,
            Err(refusal) => {
                Metrics::global().dapi_failure(FailureReason::Refused);
                clog_error!(
                    tag,
                    "D API",
                    "Refused request: {} from local client {client}: {refusal}",
                    refused_function(payload)
                );
                self.deliveries.push(LocalDelivery::request(
                    local,
                    "dapi_err",
                    refusal_text(&refusal),
                ));
                return ("ok", QUEUED.to_vec());
            }
        };
        if request.request_type == RequestType::LocalAny || !ctx.settings.distributed_api {
            clog_info!(
                tag,
                "D API",
                "Receiving request: {} from {client}",
                request.f.name
            );
            return match self.dapi_queue(
                AnswerTo::Local { conn: local },
                Bytes::copy_from_slice(payload),
                execution,
                ctx,
            ) {
                Ok(()) => ("ok", QUEUED.to_vec()),
                Err(e) => ("err", e.to_payload()),
            };
        }
        if self.dapi.relayed.total >= QUEUE_MAX {
            Metrics::global().dapi_failure(FailureReason::QueueFull);
            let e = WazuhError::with_extra(
                3018,
                format!("{QUEUE_MAX} API requests already wait for the master; try again later"),
            );
            return ("err", e.to_payload());
        }
        let timeout = ctx.settings.timers.timeout_cluster_request;
        let Some((_, peer)) = self.connected_peer() else {
            Metrics::global().dapi_failure(FailureReason::Refused);
            return ("err", WazuhError::new(3023).to_payload());
        };
        let mut body = client.to_string().into_bytes();
        body.push(b' ');
        body.extend_from_slice(payload);
        if let Err(e) = peer.request(
            "dapi",
            &body,
            Purpose::DapiRelay { client },
            ctx.now.mono,
            timeout,
        ) {
            return (
                "err",
                WazuhError::with_extra(3018, e.to_string()).to_payload(),
            );
        }
        self.dapi.relayed.add(client, local, ctx.now.mono);
        ("ok", QUEUED.to_vec())
    }

    /// `dapi`, `dapi_res` and `dapi_err` from the master; `None` when `command` is none of them.
    pub(super) fn dapi_request(
        &mut self,
        command: &Command,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> Option<(&'static str, Vec<u8>)> {
        if !matches!(command, Command::Dapi | Command::DapiRes | Command::DapiErr) {
            return None;
        }
        let Some((id, rest)) = split_id(payload) else {
            let e = WazuhError::with_extra(3000, format!("{command} needs '<request id> <data>'"));
            return Some(("err", e.to_payload()));
        };
        let tag = Self::tag(ctx.settings);
        if matches!(command, Command::Dapi) {
            Metrics::global().dapi_request();
        }
        Some(match command {
            Command::Dapi => match checked(rest) {
                Ok((request, execution)) => {
                    clog_info!(
                        tag,
                        "D API",
                        "Receiving request: {} from master ({id})",
                        request.f.name
                    );
                    match self.dapi_queue(
                        AnswerTo::Master { id },
                        Bytes::copy_from_slice(rest),
                        execution,
                        ctx,
                    ) {
                        Ok(()) => ("ok", QUEUED.to_vec()),
                        Err(e) => ("err", e.to_payload()),
                    }
                }
                Err(refusal) => {
                    Metrics::global().dapi_failure(FailureReason::Refused);
                    clog_error!(
                        tag,
                        "D API",
                        "Refused request: {} from master ({id}): {refusal}",
                        refused_function(rest)
                    );
                    self.dapi_answer(AnswerTo::Master { id }, Err(refusal_text(&refusal)), ctx);
                    ("ok", QUEUED.to_vec())
                }
            },
            Command::DapiRes => {
                let sid = String::from_utf8_lossy(rest).trim().to_string();
                let taken = match self.connected_peer() {
                    Some((_, peer)) => peer.take_string(&sid).map_err(|e| e.to_string()),
                    None => Err("the link is not accepted".into()),
                };
                let answer = match taken {
                    Ok(answer) => Ok(Bytes::from(answer)),
                    Err(e) => {
                        Err(WazuhError::with_extra(3035, format!("string {sid}: {e}")).to_payload())
                    }
                };
                self.dapi_relayed_answer(&id, answer, ctx);
                ("ok", b"Response forwarded to worker".to_vec())
            }
            _ => {
                self.dapi_relayed_answer(&id, Err(rest.to_vec()), ctx);
                ("ok", b"DAPI error forwarded to worker".to_vec())
            }
        })
    }

    /// The master's answer for local client `id`.
    fn dapi_relayed_answer(&mut self, id: &str, answer: Answer, ctx: &mut Ctx) {
        let local = id
            .parse()
            .ok()
            .and_then(|client| self.dapi.relayed.answered(client));
        match local {
            Some(local) => self.deliveries.push(local_answer(local, answer)),
            None => clog_debug!(
                Self::tag(ctx.settings),
                "D API",
                "Dropping an answer for local client {id}: it no longer waits."
            ),
        }
    }

    /// A reply to one of our DAPI requests; `false` when `purpose` is not ours.
    pub(super) fn dapi_reply(
        &mut self,
        purpose: &Purpose,
        command: &Command,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> bool {
        match purpose {
            Purpose::DapiRelay { client } => {
                if *command != Command::Ok {
                    if let Some(local) = self.dapi.relayed.answered(*client) {
                        self.deliveries.push(LocalDelivery::request(
                            local,
                            "dapi_err",
                            payload.to_vec(),
                        ));
                    }
                }
                true
            }
            Purpose::DapiAnswer { id } => {
                log_refused_answer(&Self::tag(ctx.settings), id, "the master", command, payload);
                true
            }
            _ => false,
        }
    }

    /// A job finished; false when it is not one of ours.
    pub(super) fn dapi_job_done(&mut self, id: JobId, result: &JobResult, ctx: &mut Ctx) -> bool {
        let Some(to) = self.dapi.runs.remove(&id) else {
            return false;
        };
        let answer = match result {
            Ok(JobOutcome::Dapi(DapiOutcome::Ran(Ok(answer)))) => Ok(answer.clone()),
            Ok(JobOutcome::Dapi(DapiOutcome::Ran(Err(why)))) | Err(why) => {
                Err(WazuhError::with_extra(1000, why.clone()).to_payload())
            }
            Ok(other) => Err(WazuhError::with_extra(
                1000,
                format!("unexpected outcome of a DAPI job: {other:?}"),
            )
            .to_payload()),
        };
        self.dapi_answer(to, answer, ctx);
        self.dapi_dispatch(ctx);
        true
    }

    /// Time passed: relayed requests the master did not answer in time are answered 3021.
    pub(super) fn dapi_tick(&mut self, ctx: &mut Ctx) {
        let wait =
            ctx.settings.timers.timeout_dapi_request + Duration::from_secs(RELAY_MARGIN_SECS);
        let Some(limit) = ctx.now.mono.checked_sub(wait) else {
            return;
        };
        for local in self.dapi.relayed.expired(limit) {
            Metrics::global().dapi_failure(FailureReason::Timeout);
            self.deliveries.push(LocalDelivery::request(
                local,
                "dapi_err",
                WazuhError::new(3021).to_payload(),
            ));
        }
    }

    /// The link came up or went down: relayed requests are lost with it, and so are the answers
    /// of the master's requests still running.
    pub(super) fn dapi_reset(&mut self, _ctx: &mut Ctx) {
        let error = WazuhError::with_extra(
            3023,
            "the connection to the master ended before it answered",
        );
        for local in self.dapi.relayed.drain() {
            Metrics::global().dapi_failure(FailureReason::PeerLost);
            self.deliveries.push(LocalDelivery::request(
                local,
                "dapi_err",
                error.to_payload(),
            ));
        }
        for to in self.dapi.runs.values_mut() {
            if matches!(to, AnswerTo::Master { .. }) {
                *to = AnswerTo::Nobody;
            }
        }
        self.dapi
            .queue
            .retain(|(to, _, _)| !matches!(to, AnswerTo::Master { .. }));
    }

    /// A local client disconnected.
    pub(super) fn dapi_local_closed(&mut self, conn: ConnId, client: u32) {
        self.dapi.relayed.forget(client, conn);
    }

    fn dapi_queue(
        &mut self,
        to: AnswerTo,
        request: Bytes,
        execution: Execution,
        ctx: &mut Ctx,
    ) -> Result<(), WazuhError> {
        if self.dapi.queue.len() >= QUEUE_MAX {
            Metrics::global().dapi_failure(FailureReason::QueueFull);
            return Err(WazuhError::with_extra(
                3000,
                format!(
                    "the API requests queue is full ({QUEUE_MAX} requests wait); try again later"
                ),
            ));
        }
        if let Execution::Native(native) = execution {
            if native.reads_cluster_state() {
                let e = WazuhError::with_extra(1000, "cluster functions run on the master");
                self.dapi_answer(to, Ok(Bytes::from(e.to_payload())), ctx);
                return Ok(());
            }
        }
        self.dapi.queue.push_back((to, request, execution));
        Metrics::global().queue_depth(crate::metrics::Queue::Dapi, self.dapi.queue.len());
        self.dapi_dispatch(ctx);
        Ok(())
    }

    fn dapi_dispatch(&mut self, ctx: &mut Ctx) {
        while self.dapi.runs.len() < RUNNING_MAX {
            let Some((to, request, execution)) = self.dapi.queue.pop_front() else {
                return;
            };
            Metrics::global().queue_depth(crate::metrics::Queue::Dapi, self.dapi.queue.len());
            let job = ctx.job(Job::Dapi(DapiJob::Run { request, execution }));
            self.dapi.runs.insert(job, to);
        }
    }

    fn dapi_answer(&mut self, to: AnswerTo, answer: Answer, ctx: &mut Ctx) {
        let id = match to {
            AnswerTo::Local { conn } => {
                self.deliveries.push(local_answer(conn, answer));
                return;
            }
            AnswerTo::Nobody => return,
            AnswerTo::Master { id } => id,
        };
        let timeout = ctx.settings.timers.timeout_cluster_request;
        let tag = Self::tag(ctx.settings);
        let Link::Connected { peer, .. } = &mut self.link else {
            clog_debug!(
                tag,
                "D API",
                "Dropping the answer of request {id}: the link to the master is down."
            );
            return;
        };
        let sent = send_answer(&mut self.strings, peer, &id, answer, ctx.now.mono, timeout);
        if let Err(e) = sent {
            clog_error!(
                tag,
                "D API",
                "Could not send the answer of request {id} to the master: {e}"
            );
        }
    }
}
