//! Forwarding daemon requests (PROTOCOL.md §4.4): a worker's local `sendsync`/`sendasync` relayed to
//! the master, the master's bounded queue handed to the pool in batches, and the answer sent back
//! as a long string (`sendsyn_res`) or an error (`sendsyn_err`) to the local client that asked. The
//! agent listing and the active-agent counts live in `agent_listing.rs`.
//!
//! Every request gets exactly one outcome at its local client: the daemon's answer as a request
//! `ok`, or a request `err` (the daemon failed, the master refused or lost the request, the link
//! went down, or no answer came in time). Stock workers stay silent in most of those cases and leave
//! Wazuh's C daemons waiting until their own timeout; answering at once lets them retry at once.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use super::agent_listing::MasterListing;
use super::local::LocalDelivery;
use super::master::Master;
use super::strings_out::Then;
use super::worker::Worker;
use super::{ConnId, Ctx, Node, Now, Purpose, Role};
use crate::metrics::{FailureReason, Metrics};
use crate::proto::agent_jobs::{SENDSYNC_BATCH_MAX, SENDSYNC_REQUEST_BYTES_MAX};
use crate::proto::command::Command;
use crate::proto::jobs::{AgentJob, AgentOutcome, Job, JobId, JobOutcome, JobResult};
use crate::proto::wazuh_error::WazuhError;
use crate::{clog_debug, clog_error};

/// Requests a worker relayed and still waits an answer for, over all its local clients.
const WORKER_WAITING_MAX: usize = 10_000;

/// How long a worker waits for the master's answer to a relayed request: as long as Wazuh's C
/// daemons wait for theirs.
const ANSWER_WAIT_MAX: Duration = Duration::from_secs(600);

/// How often the worker looks for requests that waited too long.
const SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// Requests waiting on the master for a batch.
const QUEUE_MAX: usize = 10_000;

/// Requests of one worker the master holds (queued, in a batch or being answered): a worker that
/// stops reading its answers only ever blocks itself.
const WORKER_OUTSTANDING_MAX: usize = 10_000;

/// Answers being sent to one worker at once (each a long string plus `sendsyn_res`, or a
/// `sendsyn_err`): each holds one of the worker's receive buffers for strings until `sendsyn_res`
/// consumes it, and a receiver keeps only a few dozen (our nodes 64) per connection.
const ANSWERS_IN_FLIGHT_MAX: usize = 32;

const QUEUED: &[u8] = b"Added request to SendSync requests queue";
const ASYNC_QUEUED: &[u8] = b"Added request to sendsync requests queue";
const ANSWER_FORWARDED: &[u8] = b"Response forwarded to worker";
const ERROR_FORWARDED: &[u8] = b"SendSync error forwarded to worker";

/// Who sent a request the master queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Local client `client` of worker `conn`.
    Worker { conn: ConnId, client: u32 },
    /// Client `client` of the master's own local socket, on `conn`.
    Local { conn: ConnId, client: u32 },
}

struct Queued {
    origin: Origin,
    request: Bytes,
}

/// The batch the pool is running.
struct Batch {
    job: JobId,
    requests: Vec<Queued>,
}

/// Answers on their way to one worker.
#[derive(Default)]
struct Outgoing {
    waiting: VecDeque<(u32, Result<String, String>)>,
    in_flight: usize,
}

/// The master's sendsync queue and batch, and the agent listing.
#[derive(Default)]
pub(super) struct MasterSendSync {
    queue: VecDeque<Queued>,
    batch: Option<Batch>,
    outgoing: HashMap<ConnId, Outgoing>,
    /// Requests each worker has with us, whatever their stage.
    outstanding: HashMap<ConnId, usize>,
    pub(super) listing: MasterListing,
}

impl Worker {
    /// Time passed on an accepted link: requests that waited too long are answered `err`.
    pub(super) fn sendsync_tick(&mut self, ctx: &mut Ctx) {
        let now = ctx.now.mono;
        if self.sendsync.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        self.sendsync.next_sweep = Some(now + SWEEP_PERIOD);
        let Some(limit) = now.checked_sub(ANSWER_WAIT_MAX) else {
            return;
        };
        let expired = self.sendsync.expired(limit);
        if expired.is_empty() {
            return;
        }
        clog_error!(
            Self::tag(ctx.settings),
            "Main",
            "No answer from the master to {} sendsync requests within {}s.",
            expired.len(),
            ANSWER_WAIT_MAX.as_secs()
        );
        let error = WazuhError::with_extra(
            3020,
            format!(
                "the master did not answer the request within {}s",
                ANSWER_WAIT_MAX.as_secs()
            ),
        );
        for local in expired {
            Metrics::global().sendsync_failure(FailureReason::Timeout);
            self.deliveries.push(local_error(local, &error));
        }
    }

    /// The link came up or went down: the master forgot what it had not answered.
    pub(super) fn sendsync_reset(&mut self, _ctx: &mut Ctx) {
        let lost = self.sendsync.drain();
        let error = WazuhError::with_extra(
            3023,
            "the connection to the master ended before it answered",
        );
        for local in lost {
            Metrics::global().sendsync_failure(FailureReason::PeerLost);
            self.deliveries.push(local_error(local, &error));
        }
    }

    /// The master's reply to a relayed request: `ok` only says it was queued; anything else (or
    /// a timeout) is the request's outcome.
    pub(super) fn sendsync_reply(
        &mut self,
        client: u32,
        command: Command,
        payload: Vec<u8>,
        ctx: &mut Ctx,
    ) {
        if command == Command::Ok {
            return;
        }
        let error = WazuhError::from_payload(&payload);
        clog_error!(
            Self::tag(ctx.settings),
            "Main",
            "The master did not take the sendsync request of local client {client}: {error}"
        );
        if let Some(local) = self.sendsync.answered(client) {
            self.deliveries.push(local_error(local, &error));
        }
    }

    /// `sendsyn_res <client> <string id>` and `sendsyn_err <client> <text>` from the master.
    pub(super) fn sendsync_request(
        &mut self,
        command: &Command,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> Option<(&'static str, Vec<u8>)> {
        let answered = match command {
            Command::SendSynRes => true,
            Command::SendSynErr => false,
            _ => return None,
        };
        let Some((client, rest)) = split_client(payload) else {
            let error = WazuhError::with_extra(
                3000,
                format!(
                    "{command} needs '<local client id> <{}>'",
                    if answered { "string id" } else { "error text" }
                ),
            );
            return Some(("err", error.to_payload()));
        };
        let tag = Self::tag(ctx.settings);
        let delivery = if answered {
            let sid = String::from_utf8_lossy(rest).trim().to_string();
            let taken = match self.connected_peer() {
                Some((_, peer)) => peer.take_string(&sid).map_err(|e| e.to_string()),
                None => Err("the link is not accepted".to_string()),
            };
            match taken {
                Ok(answer) => ("ok", answer),
                Err(e) => {
                    let error = WazuhError::with_extra(3035, format!("string {sid}: {e}"));
                    clog_error!(
                        tag,
                        "Main",
                        "Could not take the sendsync answer for local client {client}: {error}"
                    );
                    if let Some(local) = self.sendsync.answered(client) {
                        self.deliveries.push(local_error(local, &error));
                    }
                    return Some(("err", error.to_payload()));
                }
            }
        } else {
            ("err", rest.to_vec())
        };
        match self.sendsync.answered(client) {
            Some(local) => self.deliveries.push(LocalDelivery {
                local,
                command: delivery.0,
                payload: delivery.1,
                long: false,
            }),
            None => clog_debug!(
                tag,
                "Main",
                "Dropping a sendsync answer for local client {client}: it is no longer waiting."
            ),
        }
        Some((
            "ok",
            if answered {
                ANSWER_FORWARDED
            } else {
                ERROR_FORWARDED
            }
            .to_vec(),
        ))
    }

    /// A job finished; the worker runs none for this flow.
    pub(super) fn sendsync_job_done(
        &mut self,
        _id: JobId,
        _result: &JobResult,
        _ctx: &mut Ctx,
    ) -> bool {
        false
    }

    /// A local client's `sendsync`/`sendasync`: relayed to the master as `<client id> <request>`.
    fn sendsync_relay(
        &mut self,
        local: ConnId,
        client: u32,
        request: &[u8],
        ctx: &mut Ctx,
    ) -> Result<(), WazuhError> {
        Metrics::global().sendsync_request();
        check_size(request).map_err(|e| e.in_dialect(ctx.settings.sync.dialect))?;
        if self.sendsync.total >= WORKER_WAITING_MAX {
            Metrics::global().sendsync_failure(FailureReason::QueueFull);
            return Err(WazuhError::with_extra(
                3018,
                format!("{WORKER_WAITING_MAX} sendsync requests already wait for the master; try again later"),
            ));
        }
        let timeout = ctx.settings.timers.timeout_cluster_request;
        let Some((_, peer)) = self.connected_peer() else {
            Metrics::global().sendsync_failure(FailureReason::Refused);
            return Err(WazuhError::new(3023));
        };
        let mut body = Vec::with_capacity(request.len() + 8);
        body.extend_from_slice(client.to_string().as_bytes());
        body.push(b' ');
        body.extend_from_slice(request);
        peer.request(
            "sendsync",
            &body,
            Purpose::SendSync { client },
            ctx.now.mono,
            timeout,
        )
        .map_err(|e| WazuhError::with_extra(3018, e.to_string()))?;
        self.sendsync.add(client, local, ctx.now.mono);
        Ok(())
    }
}

impl Master {
    /// Requests of this flow from worker `conn`; `None` when `command` is not one, `Some(None)` when
    /// the answer comes later (with the same counter).
    pub(super) fn sendsync_request(
        &mut self,
        conn: ConnId,
        counter: u32,
        command: &Command,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> Option<Option<(&'static str, Vec<u8>)>> {
        match command {
            Command::SendSync => Some(Some(self.sendsync_from_worker(conn, payload, ctx))),
            Command::GetAgents => Some(self.listing_from_worker(conn, counter, payload, ctx)),
            _ => None,
        }
    }

    fn sendsync_from_worker(
        &mut self,
        conn: ConnId,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> (&'static str, Vec<u8>) {
        if !self.workers.get(&conn).is_some_and(|p| p.accepted) {
            return (
                "err",
                WazuhError::with_extra(3000, "send hello first").to_payload(),
            );
        }
        let Some((client, request)) = split_client(payload) else {
            let error =
                WazuhError::with_extra(3000, "sendsync needs '<local client id> <request JSON>'");
            return ("err", error.to_payload());
        };
        let origin = Origin::Worker { conn, client };
        match self.sendsync_enqueue(origin, Bytes::copy_from_slice(request), ctx) {
            Ok(()) => ("ok", QUEUED.to_vec()),
            Err(e) => ("err", e.to_payload()),
        }
    }

    /// Queues a request for the next batch.
    fn sendsync_enqueue(
        &mut self,
        origin: Origin,
        request: Bytes,
        ctx: &mut Ctx,
    ) -> Result<(), WazuhError> {
        Metrics::global().sendsync_request();
        check_size(&request).map_err(|e| e.in_dialect(ctx.settings.sync.dialect))?;
        let state = &mut self.sendsync;
        if state.queue.len() >= QUEUE_MAX {
            Metrics::global().sendsync_failure(FailureReason::QueueFull);
            return Err(WazuhError::with_extra(
                3000,
                format!("the SendSync requests queue is full ({QUEUE_MAX} requests wait); try again later"),
            ));
        }
        let from = match origin {
            Origin::Worker { conn, client } => {
                let held = state.outstanding.entry(conn).or_default();
                if *held >= WORKER_OUTSTANDING_MAX {
                    return Err(WazuhError::with_extra(
                        3000,
                        format!("{WORKER_OUTSTANDING_MAX} SendSync requests of this worker are still being processed; try again later"),
                    ));
                }
                *held += 1;
                let name = self.workers.get(&conn).map_or("", |p| p.name());
                format!("{name} ({client})")
            }
            Origin::Local { client, .. } => format!("local client {client}"),
        };
        clog_debug!(
            "Master",
            "SendSync",
            "Receiving SendSync request from {from}"
        );
        state.queue.push_back(Queued { origin, request });
        Metrics::global().queue_depth(crate::metrics::Queue::Sendsync, state.queue.len());
        self.sendsync_dispatch(ctx);
        Ok(())
    }

    /// Hands the queued requests to the pool, one batch at a time: requests that arrive while a
    /// batch runs wait together for the next one.
    fn sendsync_dispatch(&mut self, ctx: &mut Ctx) {
        let state = &mut self.sendsync;
        if state.batch.is_some() || state.queue.is_empty() {
            return;
        }
        let n = state.queue.len().min(SENDSYNC_BATCH_MAX);
        let requests: Vec<Queued> = state.queue.drain(..n).collect();
        Metrics::global().queue_depth(crate::metrics::Queue::Sendsync, state.queue.len());
        let job = ctx.job(Job::Agents(AgentJob::SendSync {
            requests: requests.iter().map(|q| q.request.clone()).collect(),
        }));
        state.batch = Some(Batch { job, requests });
    }

    /// A reply of worker `conn` to one of our answers (`sendsyn_res`/`sendsyn_err`), or the
    /// failure of its transfer.
    pub(super) fn sendsync_reply(
        &mut self,
        conn: ConnId,
        client: u32,
        command: Command,
        payload: Vec<u8>,
        ctx: &mut Ctx,
    ) {
        if let Some(out) = self.sendsync.outgoing.get_mut(&conn) {
            out.in_flight = out.in_flight.saturating_sub(1);
        }
        self.sendsync_finished(conn);
        if command != Command::Ok {
            let name = self.workers.get(&conn).map_or("", |p| p.name());
            clog_error!(
                "Master",
                "SendSync",
                "Could not deliver the SendSync answer for local client {client} of {name}: {}",
                WazuhError::from_payload(&payload)
            );
        }
        self.sendsync_pump(conn, ctx);
    }

    /// A job finished; false when it is not one of ours.
    pub(super) fn sendsync_job_done(
        &mut self,
        id: JobId,
        result: &JobResult,
        ctx: &mut Ctx,
    ) -> bool {
        if self.listing_job_done(id, result, ctx) {
            return true;
        }
        if self.sendsync.batch.as_ref().map(|b| b.job) != Some(id) {
            return false;
        }
        let Some(batch) = self.sendsync.batch.take() else {
            return false;
        };
        let answers = match result {
            Ok(JobOutcome::Agents(AgentOutcome::SendSync { answers })) => answers.clone(),
            Ok(other) => {
                let error = format!("unexpected outcome of the SendSync job: {other:?}");
                vec![Err(WazuhError::with_extra(1000, error).to_string()); batch.requests.len()]
            }
            Err(e) => {
                vec![Err(WazuhError::with_extra(1000, e.clone()).to_string()); batch.requests.len()]
            }
        };
        let mut answers = answers.into_iter();
        let mut workers = Vec::new();
        for queued in batch.requests {
            let answer = answers.next().unwrap_or_else(|| {
                Err(WazuhError::with_extra(1000, "the SendSync job gave no answer").to_string())
            });
            if let Err(text) = &answer {
                clog_error!(
                    "Master",
                    "SendSync",
                    "Error in SendSync (parameters {}): {text}",
                    crate::proto::quote::quote_bytes(&queued.request)
                );
            }
            if let Origin::Worker { conn, .. } = queued.origin {
                if !workers.contains(&conn) {
                    workers.push(conn);
                }
            }
            self.sendsync_route(queued.origin, answer);
        }
        for conn in workers {
            self.sendsync_pump(conn, ctx);
        }
        self.sendsync_dispatch(ctx);
        true
    }

    /// Sends an answer towards its client: straight to a local client, or queued for the worker.
    fn sendsync_route(&mut self, origin: Origin, answer: Result<String, String>) {
        match origin {
            Origin::Local { conn, .. } => {
                let (command, text) = match answer {
                    Ok(text) => ("ok", text),
                    Err(text) => ("err", text),
                };
                self.deliveries.push(LocalDelivery {
                    local: conn,
                    command,
                    payload: text.into_bytes(),
                    long: false,
                });
            }
            Origin::Worker { conn, client } => {
                if !self.workers.contains_key(&conn) {
                    clog_debug!(
                        "Master",
                        "SendSync",
                        "Dropping the answer for local client {client}: its worker is gone."
                    );
                    return;
                }
                self.sendsync
                    .outgoing
                    .entry(conn)
                    .or_default()
                    .waiting
                    .push_back((client, answer));
            }
        }
    }

    /// Starts sending the answers waiting for worker `conn`, up to the in-flight limit.
    fn sendsync_pump(&mut self, conn: ConnId, ctx: &mut Ctx) {
        let timeout = ctx.settings.timers.timeout_cluster_request;
        loop {
            let Some(out) = self.sendsync.outgoing.get_mut(&conn) else {
                return;
            };
            if out.in_flight >= ANSWERS_IN_FLIGHT_MAX {
                return;
            }
            let Some((client, answer)) = out.waiting.pop_front() else {
                return;
            };
            let Some(peer) = self.workers.get_mut(&conn) else {
                return;
            };
            let purpose = Purpose::SendSync { client };
            let started = match answer {
                Ok(text) => {
                    let then = Then {
                        command: "sendsyn_res",
                        prefix: format!("{client} "),
                        purpose,
                    };
                    peer.strings.start(
                        &mut peer.conn,
                        Bytes::from(text),
                        then,
                        ctx.now.mono,
                        timeout,
                    )
                }
                Err(text) => peer
                    .conn
                    .request(
                        "sendsyn_err",
                        format!("{client} {text}").as_bytes(),
                        purpose,
                        ctx.now.mono,
                        timeout,
                    )
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            match started {
                Ok(()) => out.in_flight += 1,
                Err(e) => {
                    clog_error!(
                        "Master",
                        "SendSync",
                        "Could not send the SendSync answer for local client {client} of {}: {e}",
                        peer.name()
                    );
                    self.sendsync_finished(conn);
                }
            }
        }
    }

    /// One request of worker `conn` is done with.
    fn sendsync_finished(&mut self, conn: ConnId) {
        if let Some(held) = self.sendsync.outstanding.get_mut(&conn) {
            *held = held.saturating_sub(1);
        }
    }

    /// Time passed: the active-agent counts are refreshed.
    pub(super) fn sendsync_tick(&mut self, ctx: &mut Ctx) {
        self.listing_tick(ctx);
        self.sendsync_dispatch(ctx);
    }

    /// Worker `conn` is gone: its queued requests are not run and its answers are dropped.
    pub(super) fn sendsync_closed(&mut self, conn: ConnId, _ctx: &mut Ctx) {
        let state = &mut self.sendsync;
        let before = state.queue.len();
        state
            .queue
            .retain(|q| !matches!(q.origin, Origin::Worker { conn: c, .. } if c == conn));
        let unsent = before - state.queue.len();
        let unanswered = state
            .outgoing
            .remove(&conn)
            .map_or(0, |out| out.waiting.len() + out.in_flight);
        state.outstanding.remove(&conn);
        if unsent + unanswered > 0 {
            clog_debug!(
                "Master",
                "SendSync",
                "Dropping {unsent} queued SendSync requests and {unanswered} answers of a worker that is gone."
            );
        }
    }
}

impl Node {
    /// Local-socket requests of this module (`sendsync`, `sendasync`, `get_agents`): `None` when
    /// `command` is not one; `Some(None)` when the answer comes later.
    pub(super) fn sendsync_local_request(
        &mut self,
        conn: ConnId,
        counter: u32,
        command: &Command,
        payload: &[u8],
        now: Now,
    ) -> Option<Option<(&'static str, Vec<u8>)>> {
        match command {
            Command::SendSync | Command::SendAsync => {
                Some(self.local_sendsync(conn, *command == Command::SendAsync, payload, now))
            }
            Command::GetAgents => Some(self.local_get_agents(conn, counter, payload, now)),
            _ => None,
        }
    }

    /// `sendsync` never answers the request itself: its outcome comes as a new request (`ok` or
    /// `err`), as Wazuh's C daemons expect. `sendasync` answers at once and the outcome follows.
    /// On the master (an extension: stock masters refuse both) the request joins the queue directly.
    fn local_sendsync(
        &mut self,
        conn: ConnId,
        asynchronous: bool,
        payload: &[u8],
        now: Now,
    ) -> Option<(&'static str, Vec<u8>)> {
        let client = self.locals.get(&conn)?.client_id();
        let mut on_master = None;
        let mut on_worker = None;
        self.with_role(
            now,
            |m, ctx| {
                let origin = Origin::Local { conn, client };
                on_master = Some(m.sendsync_enqueue(origin, Bytes::copy_from_slice(payload), ctx));
            },
            |w, ctx| {
                on_worker = Some(w.sendsync_relay(conn, client, payload, ctx));
                Vec::new()
            },
        );
        let outcome = on_master.or(on_worker).unwrap_or(Ok(()));
        match (outcome, asynchronous) {
            (Ok(()), true) => Some(("ok", ASYNC_QUEUED.to_vec())),
            (Ok(()), false) => None,
            (Err(e), true) => Some(("err", e.to_payload())),
            (Err(e), false) => {
                self.deliver_to_locals(vec![local_error(conn, &e)], now);
                None
            }
        }
    }

    /// `get_agents`: listed by the master (later, from its database), relayed by a worker.
    fn local_get_agents(
        &mut self,
        conn: ConnId,
        counter: u32,
        payload: &[u8],
        now: Now,
    ) -> Option<(&'static str, Vec<u8>)> {
        let mut answer = None;
        let mut relayed = None;
        self.with_role(
            now,
            |m, ctx| {
                if let Err(e) = m.listing_from_local(conn, counter, payload, ctx) {
                    answer = Some(("err", e.to_payload()));
                }
            },
            |w, ctx| {
                let purpose = Purpose::ForwardToLocal { local: conn };
                relayed =
                    Some(w.forward(&Command::GetAgents, payload, purpose, ctx.settings, ctx.now));
                Vec::new()
            },
        );
        match relayed {
            Some(Ok(())) => Some(("ok", b"Sent request to master node".to_vec())),
            Some(Err(e)) => Some(("err", e.to_payload())),
            None => answer,
        }
    }

    /// A local client disconnected: whatever it still waits for is dropped.
    pub(super) fn sendsync_local_closed(&mut self, conn: ConnId, client: u32) {
        if let Role::Worker(worker) = &mut self.role {
            worker.sendsync.forget(client, conn);
            worker.dapi_local_closed(conn, client);
        }
    }
}

/// Requests larger than the C helper sends are refused.
fn check_size(request: &[u8]) -> Result<(), WazuhError> {
    if request.len() > SENDSYNC_REQUEST_BYTES_MAX {
        return Err(WazuhError::with_extra(
            3050,
            format!(
                "the sendsync request has {} bytes, at most {SENDSYNC_REQUEST_BYTES_MAX} are accepted",
                request.len()
            ),
        ));
    }
    Ok(())
}

/// Splits `<local client id> SP <rest>`; `None` when the id is not a decimal number.
fn split_client(payload: &[u8]) -> Option<(u32, &[u8])> {
    let space = payload.iter().position(|b| *b == b' ')?;
    let id = std::str::from_utf8(&payload[..space]).ok()?.parse().ok()?;
    Some((id, &payload[space + 1..]))
}

/// An `err` request for a local client.
fn local_error(local: ConnId, error: &WazuhError) -> LocalDelivery {
    super::local::relay_failure(local, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_decimal_and_precede_the_first_space() {
        assert_eq!(
            split_client(b"734211 {\"a\": 1}"),
            Some((734211, &b"{\"a\": 1}"[..]))
        );
        assert_eq!(split_client(b"x 1"), None);
        assert_eq!(split_client(b"12"), None);
    }
}
