//! The master's distributed API (PROTOCOL.md §4.5): requests from its local clients and from
//! workers (`dapi <local id> <request>`) wait in one bounded queue and run at most
//! [`RUNNING_MAX`] at a time, off the event loop. A `distributed_master` request is split by the
//! nodes that hold its data (the agents' nodes from the database, the named nodes, or every node
//! when broadcasting); the master runs its own share, sends the others as `dapi <uuid> <share>`
//! (`from_cluster` true), and merges the answers. Every request ends with exactly one answer, in
//! time: a worker that disconnects or does not answer within `timeout_dapi_request` fails its
//! share at once with an error naming it.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::dapi::{
    checked, local_answer, log_refused_answer, refusal_text, refused_function, send_answer,
    split_id, Answer, QUEUED,
};
use super::local::LocalDelivery;
use super::master::Master;
use super::{ConnId, Ctx, Purpose};
use crate::metrics::{FailureReason, Metrics};
use crate::proto::command::Command;
use crate::proto::dapi::encode::{Affected, FailedItem};
use crate::proto::dapi::job::{QUEUE_MAX, RUNNING_MAX};
use crate::proto::dapi::scope::scope;
use crate::proto::dapi::{DapiJob, DapiOutcome, DapiRequest, Execution, Native, RequestType};
use crate::proto::jobs::{Job, JobId, JobOutcome, JobResult};
use crate::proto::wazuh_error::WazuhError;
use crate::{clog_debug, clog_error, clog_info};

/// Who asked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// A client of the master's local socket.
    Local { conn: ConnId, client: u32 },
    /// Local client `client` of worker `conn`.
    Worker { conn: ConnId, client: String },
}

struct Task {
    origin: Origin,
    request: DapiRequest,
    execution: Execution,
    /// `None`: `wait_for_complete`.
    deadline: Option<Instant>,
    /// Each node's answer, once in; empty until the request is split.
    parts: Vec<Option<Bytes>>,
    started: bool,
}

/// What a job of ours is doing.
enum Step {
    Solve,
    Share(usize),
    Merge,
}

/// A share sent to a worker.
struct Share {
    task: u64,
    part: usize,
    conn: ConnId,
    node: String,
}

/// A local `dapi_fwd` waiting for the worker's answer.
struct Forward {
    local: ConnId,
    worker: ConnId,
    deadline: Instant,
}

#[derive(Default)]
pub(super) struct MasterDapi {
    tasks: HashMap<u64, Task>,
    next_task: u64,
    queue: VecDeque<u64>,
    running: usize,
    jobs: HashMap<JobId, (u64, Step)>,
    shares: HashMap<String, Share>,
    /// By the local client id the worker answers with.
    forwards: HashMap<u32, Forward>,
}

impl Origin {
    fn describe(&self, master: &Master) -> String {
        match self {
            Origin::Local { client, .. } => client.to_string(),
            Origin::Worker { conn, client } => {
                let name = master.workers.get(conn).map_or("", |p| p.name());
                format!("{name} ({client})")
            }
        }
    }
}

impl Master {
    /// A local client's `dapi`.
    pub(super) fn dapi_local(
        &mut self,
        conn: ConnId,
        client: u32,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> (&'static str, Vec<u8>) {
        match self.dapi_enqueue(Origin::Local { conn, client }, payload, ctx) {
            Ok(()) => ("ok", QUEUED.to_vec()),
            Err(e) => ("err", e.to_payload()),
        }
    }

    /// A local client's `dapi_fwd <node> <request>`: sent on to that worker as
    /// `dapi <client id> <request>`; the worker's answer comes back to the client.
    pub(super) fn dapi_forward_local(
        &mut self,
        local: ConnId,
        client: u32,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> (&'static str, Vec<u8>) {
        let Some((node, request)) = split_id(payload) else {
            let e = WazuhError::with_extra(3000, "dapi_fwd needs '<node name> <request JSON>'");
            return ("err", e.to_payload());
        };
        Metrics::global().dapi_request();
        if let Err(refusal) = checked(request) {
            Metrics::global().dapi_failure(FailureReason::Refused);
            clog_error!(
                "Master",
                "D API",
                "Refused a request for {node} (function {}): {refusal}",
                refused_function(request)
            );
            return ("err", refusal_text(&refusal));
        }
        let Some(worker) = self.connected_worker(&node) else {
            return ("err", WazuhError::with_extra(3022, node).to_payload());
        };
        if self.dapi.forwards.len() >= QUEUE_MAX {
            Metrics::global().dapi_failure(FailureReason::QueueFull);
            let e = WazuhError::with_extra(3000, format!("{QUEUE_MAX} forwarded API requests already wait for their workers; try again later"));
            return ("err", e.to_payload());
        }
        let mut body = client.to_string().into_bytes();
        body.push(b' ');
        body.extend_from_slice(request);
        let Some(peer) = self.workers.get_mut(&worker) else {
            return ("err", WazuhError::with_extra(3022, node).to_payload());
        };
        let sent = peer.conn.request(
            "dapi",
            &body,
            Purpose::DapiForward { local },
            ctx.now.mono,
            ctx.settings.timers.timeout_cluster_request,
        );
        if let Err(e) = sent {
            return (
                "err",
                WazuhError::with_extra(3018, e.to_string()).to_payload(),
            );
        }
        let deadline = ctx.now.mono + ctx.settings.timers.timeout_dapi_request;
        self.dapi.forwards.insert(
            client,
            Forward {
                local,
                worker,
                deadline,
            },
        );
        ("ok", b"Request forwarded to worker node".to_vec())
    }

    /// `dapi`, `dapi_res` and `dapi_err` from worker `conn`; `None` when `command` is none of them.
    pub(super) fn dapi_request(
        &mut self,
        conn: ConnId,
        command: &Command,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> Option<(&'static str, Vec<u8>)> {
        if !matches!(command, Command::Dapi | Command::DapiRes | Command::DapiErr) {
            return None;
        }
        if !self.workers.get(&conn).is_some_and(|p| p.accepted) {
            return Some((
                "err",
                WazuhError::with_extra(3000, "send hello first").to_payload(),
            ));
        }
        let Some((id, rest)) = split_id(payload) else {
            let e = WazuhError::with_extra(3000, format!("{command} needs '<request id> <data>'"));
            return Some(("err", e.to_payload()));
        };
        Some(match command {
            Command::Dapi => {
                match self.dapi_enqueue(Origin::Worker { conn, client: id }, rest, ctx) {
                    Ok(()) => ("ok", QUEUED.to_vec()),
                    Err(e) => ("err", e.to_payload()),
                }
            }
            Command::DapiRes => {
                let sid = String::from_utf8_lossy(rest).trim().to_string();
                let taken = self
                    .workers
                    .get_mut(&conn)
                    .map(|peer| peer.conn.take_string(&sid).map_err(|e| e.to_string()));
                let answer = match taken {
                    Some(Ok(answer)) => answer,
                    other => {
                        let why = other.and_then(Result::err).unwrap_or_default();
                        let e = WazuhError::with_extra(3035, format!("string {sid}: {why}"));
                        self.dapi_remote_answer(&id, Err(e.to_payload()), ctx);
                        return Some(("err", e.to_payload()));
                    }
                };
                match self.dapi_remote_answer(&id, Ok(Bytes::from(answer)), ctx) {
                    Some(reply) => ("ok", reply.to_vec()),
                    None => ("err", WazuhError::with_extra(3032, id).to_payload()),
                }
            }
            _ => match self.dapi_remote_answer(&id, Err(rest.to_vec()), ctx) {
                Some(_) => ("ok", b"DAPI error forwarded to worker".to_vec()),
                None => ("err", WazuhError::with_extra(3032, id).to_payload()),
            },
        })
    }

    /// A worker's answer for request `id`: a share of ours, or a forwarded local request. The
    /// reply text for the worker; `None` when nobody waits for `id`.
    fn dapi_remote_answer(
        &mut self,
        id: &str,
        answer: Answer,
        ctx: &mut Ctx,
    ) -> Option<&'static [u8]> {
        if let Some(share) = self.dapi.shares.remove(id) {
            let part = match answer {
                Ok(bytes) => bytes,
                Err(text) => node_error(1000, &share.node, &String::from_utf8_lossy(&text)),
            };
            self.dapi_part_done(share.task, share.part, part, ctx);
            return Some(b"Forwarded response");
        }
        let client: u32 = id.parse().ok()?;
        let forward = self.dapi.forwards.remove(&client)?;
        self.deliveries.push(local_answer(forward.local, answer));
        Some(b"Response forwarded to worker")
    }

    /// A reply to one of our DAPI requests; `false` when `purpose` is not ours.
    pub(super) fn dapi_reply(
        &mut self,
        conn: ConnId,
        purpose: &Purpose,
        command: &Command,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> bool {
        match purpose {
            Purpose::DapiShare { uuid } => {
                if *command != Command::Ok {
                    if let Some(share) = self.dapi.shares.remove(uuid) {
                        let error = WazuhError::from_payload(payload);
                        let part = node_error(error.code, &share.node, &error.to_string());
                        self.dapi_part_done(share.task, share.part, part, ctx);
                    }
                }
                true
            }
            Purpose::DapiForward { local } => {
                if *command != Command::Ok {
                    self.dapi
                        .forwards
                        .retain(|_, f| f.local != *local || f.worker != conn);
                    self.deliveries.push(LocalDelivery::request(
                        *local,
                        "dapi_err",
                        payload.to_vec(),
                    ));
                }
                true
            }
            Purpose::DapiAnswer { id } => {
                let name = self.workers.get(&conn).map_or("", |p| p.name());
                log_refused_answer("Master", id, name, command, payload);
                true
            }
            _ => false,
        }
    }

    /// A job finished; false when it is not one of ours.
    pub(super) fn dapi_job_done(&mut self, id: JobId, result: &JobResult, ctx: &mut Ctx) -> bool {
        let Some((task, step)) = self.dapi.jobs.remove(&id) else {
            return false;
        };
        let outcome = match result {
            Ok(JobOutcome::Dapi(outcome)) => Ok(outcome.clone()),
            Ok(other) => Err(format!("unexpected outcome of a DAPI job: {other:?}")),
            Err(e) => Err(e.clone()),
        };
        match (step, outcome) {
            (Step::Share(part), Ok(DapiOutcome::Ran(Ok(answer)))) => {
                self.dapi_part_done(task, part, answer, ctx)
            }
            (Step::Share(part), Ok(DapiOutcome::Ran(Err(why)))) | (Step::Share(part), Err(why)) => {
                if self
                    .dapi
                    .tasks
                    .get(&task)
                    .is_some_and(|t| t.parts.len() == 1)
                {
                    self.dapi_finish(
                        task,
                        Err(WazuhError::with_extra(1000, why).to_payload()),
                        ctx,
                    );
                } else {
                    let own = ctx.settings.node_name.clone();
                    self.dapi_part_done(task, part, node_error(1000, &own, &why), ctx);
                }
            }
            (Step::Solve, Ok(DapiOutcome::Solved(Ok(nodes)))) => {
                let shares = nodes
                    .into_iter()
                    .map(|(node, ids)| (node, Some(ids)))
                    .collect();
                let keep_agents = self
                    .dapi
                    .tasks
                    .get(&task)
                    .is_some_and(|t| names_agents(&t.request));
                self.dapi_split(task, shares, keep_agents, ctx);
            }
            (Step::Merge, Ok(DapiOutcome::Merged(answer))) => {
                self.dapi_finish(task, Ok(answer), ctx)
            }
            (_, Ok(DapiOutcome::Solved(Err(why)))) | (_, Err(why)) => self.dapi_finish(
                task,
                Ok(Bytes::from(WazuhError::with_extra(1000, why).to_payload())),
                ctx,
            ),
            (_, Ok(other)) => {
                let why = format!("unexpected outcome of a DAPI job: {other:?}");
                self.dapi_finish(
                    task,
                    Err(WazuhError::with_extra(1000, why).to_payload()),
                    ctx,
                )
            }
        }
        true
    }

    /// Time passed: requests past their time are answered with error 3021.
    pub(super) fn dapi_tick(&mut self, ctx: &mut Ctx) {
        let now = ctx.now.mono;
        let late: Vec<u64> = self
            .dapi
            .tasks
            .iter()
            .filter(|(_, t)| t.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(task) = self.dapi.tasks.get(&id) {
                clog_error!(
                    "Master",
                    "D API",
                    "Timeout executing API request ({})",
                    task.request.f.name
                );
            }
            Metrics::global().dapi_failure(FailureReason::Timeout);
            self.dapi_finish(id, Ok(Bytes::from(WazuhError::new(3021).to_payload())), ctx);
        }
        let late: Vec<u32> = self
            .dapi
            .forwards
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(c, _)| *c)
            .collect();
        for client in late {
            if let Some(f) = self.dapi.forwards.remove(&client) {
                Metrics::global().dapi_failure(FailureReason::Timeout);
                self.deliveries.push(LocalDelivery::request(
                    f.local,
                    "dapi_err",
                    WazuhError::new(3021).to_payload(),
                ));
            }
        }
    }

    /// Worker `conn` is gone: its shares fail now, its own requests are dropped, and local
    /// clients waiting on it hear so.
    pub(super) fn dapi_closed(&mut self, conn: ConnId, ctx: &mut Ctx) {
        let lost: Vec<String> = self
            .dapi
            .shares
            .iter()
            .filter(|(_, s)| s.conn == conn)
            .map(|(u, _)| u.clone())
            .collect();
        for uuid in lost {
            if let Some(share) = self.dapi.shares.remove(&uuid) {
                Metrics::global().dapi_failure(FailureReason::PeerLost);
                let why = format!("{} disconnected before answering", share.node);
                self.dapi_part_done(
                    share.task,
                    share.part,
                    node_error(3023, &share.node, &why),
                    ctx,
                );
            }
        }
        let gone: Vec<u64> = self
            .dapi
            .tasks
            .iter()
            .filter(|(_, t)| matches!(t.origin, Origin::Worker { conn: c, .. } if c == conn))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            let queued = self.dapi.queue.iter().position(|q| *q == id);
            if let Some(at) = queued {
                self.dapi.queue.remove(at);
                self.dapi.tasks.remove(&id);
            }
        }
        let waiting: Vec<u32> = self
            .dapi
            .forwards
            .iter()
            .filter(|(_, f)| f.worker == conn)
            .map(|(c, _)| *c)
            .collect();
        for client in waiting {
            if let Some(f) = self.dapi.forwards.remove(&client) {
                Metrics::global().dapi_failure(FailureReason::PeerLost);
                let e = WazuhError::with_extra(3023, "the worker disconnected before answering");
                self.deliveries
                    .push(LocalDelivery::request(f.local, "dapi_err", e.to_payload()));
            }
        }
    }

    /// Queues a request; a refused one is answered (`dapi_err`) at once.
    fn dapi_enqueue(
        &mut self,
        origin: Origin,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> Result<(), WazuhError> {
        Metrics::global().dapi_request();
        if self.dapi.queue.len() >= QUEUE_MAX {
            Metrics::global().dapi_failure(FailureReason::QueueFull);
            return Err(WazuhError::with_extra(
                3000,
                format!(
                    "the API requests queue is full ({QUEUE_MAX} requests wait); try again later"
                ),
            ));
        }
        let from = origin.describe(self);
        let (request, execution) = match checked(payload) {
            Ok(checked) => checked,
            Err(refusal) => {
                Metrics::global().dapi_failure(FailureReason::Refused);
                clog_error!(
                    "Master",
                    "D API",
                    "Refused request: {} from {from}: {refusal}",
                    refused_function(payload)
                );
                self.dapi_deliver(&origin, Err(refusal_text(&refusal)), ctx);
                return Ok(());
            }
        };
        clog_info!(
            "Master",
            "D API",
            "Receiving request: {} from {from}",
            request.f.name
        );
        let deadline = (!request.wait_for_complete)
            .then(|| ctx.now.mono + ctx.settings.timers.timeout_dapi_request);
        self.dapi.next_task += 1;
        let id = self.dapi.next_task;
        self.dapi.tasks.insert(
            id,
            Task {
                origin,
                request,
                execution,
                deadline,
                parts: Vec::new(),
                started: false,
            },
        );
        self.dapi.queue.push_back(id);
        Metrics::global().queue_depth(crate::metrics::Queue::Dapi, self.dapi.queue.len());
        self.dapi_dispatch(ctx);
        Ok(())
    }

    fn dapi_dispatch(&mut self, ctx: &mut Ctx) {
        while self.dapi.running < RUNNING_MAX {
            let Some(id) = self.dapi.queue.pop_front() else {
                return;
            };
            Metrics::global().queue_depth(crate::metrics::Queue::Dapi, self.dapi.queue.len());
            if let Some(task) = self.dapi.tasks.get_mut(&id) {
                task.started = true;
                self.dapi.running += 1;
                self.dapi_start(id, ctx);
            }
        }
    }

    /// Runs a request here, or splits it by node.
    fn dapi_start(&mut self, id: u64, ctx: &mut Ctx) {
        let Some(task) = self.dapi.tasks.get(&id) else {
            return;
        };
        let r = &task.request;
        let own = ctx.settings.node_name.clone();
        if r.request_type != RequestType::DistributedMaster
            || r.from_cluster
            || !ctx.settings.distributed_api
        {
            let bytes = Bytes::from(r.to_bytes());
            task_parts(&mut self.dapi, id, 1);
            self.dapi_run_here(id, 0, bytes, ctx);
            return;
        }
        let kwargs = r.kwargs();
        let agents = agent_args(&kwargs);
        let nodes = node_args(&kwargs);
        if agents.is_some() || (nodes.is_none() && !r.broadcasting) {
            let job = ctx.job(Job::Dapi(DapiJob::Solve { agents }));
            self.dapi.jobs.insert(job, (id, Step::Solve));
            return;
        }
        let shares = match nodes {
            Some(nodes) => nodes.into_iter().map(|n| (n, None)).collect(),
            None => std::iter::once(own)
                .chain(
                    self.workers
                        .values()
                        .filter(|w| w.accepted)
                        .map(|w| w.name().to_string()),
                )
                .map(|n| (n, None))
                .collect(),
        };
        self.dapi_split(id, shares, false, ctx);
    }

    /// Sends each node its share; ids of unknown agents (and agents of no node) are the master's.
    fn dapi_split(
        &mut self,
        id: u64,
        shares: Vec<(String, Option<Vec<String>>)>,
        keep_agents: bool,
        ctx: &mut Ctx,
    ) {
        let own = ctx.settings.node_name.clone();
        let mut merged: Vec<(String, Option<Vec<String>>)> = Vec::new();
        for (node, agents) in shares {
            let node = if node.is_empty() || node == "unknown" {
                own.clone()
            } else {
                node
            };
            let agents = agents.filter(|_| keep_agents);
            match merged.iter_mut().find(|(n, _)| *n == node) {
                Some((_, Some(list))) => list.extend(agents.unwrap_or_default()),
                Some(_) => {}
                None => merged.push((node, agents)),
            }
        }
        if merged.is_empty() {
            merged.push((own.clone(), None));
        }
        let Some(task) = self.dapi.tasks.get(&id) else {
            return;
        };
        let bodies: Vec<Bytes> = merged
            .iter()
            .map(|(_, agents)| Bytes::from(task.request.forwarded(agents.as_deref())))
            .collect();
        task_parts(&mut self.dapi, id, merged.len());
        for (part, ((node, _), body)) in merged.into_iter().zip(bodies).enumerate() {
            if node == own {
                self.dapi_run_here(id, part, body, ctx);
                continue;
            }
            let Some(conn) = self.connected_worker(&node) else {
                let why = format!("{node} is not connected to the master");
                self.dapi_part_done(id, part, node_error(3022, &node, &why), ctx);
                continue;
            };
            let uuid = ctx.uuid();
            let mut payload = uuid.clone().into_bytes();
            payload.push(b' ');
            payload.extend_from_slice(&body);
            let timeout = ctx.settings.timers.timeout_cluster_request;
            let sent = self.workers.get_mut(&conn).map(|peer| {
                peer.conn.request(
                    "dapi",
                    &payload,
                    Purpose::DapiShare { uuid: uuid.clone() },
                    ctx.now.mono,
                    timeout,
                )
            });
            match sent {
                Some(Ok(_)) => {
                    clog_debug!("Master", "D API", "Sending request {uuid} to {node}");
                    self.dapi.shares.insert(
                        uuid,
                        Share {
                            task: id,
                            part,
                            conn,
                            node,
                        },
                    );
                }
                _ => {
                    let why = format!("could not send the request to {node}");
                    self.dapi_part_done(id, part, node_error(3018, &node, &why), ctx);
                }
            }
        }
    }

    /// Runs one share on this node: cluster functions from the master's state, the others on the pool.
    fn dapi_run_here(&mut self, id: u64, part: usize, body: Bytes, ctx: &mut Ctx) {
        let Some(task) = self.dapi.tasks.get(&id) else {
            return;
        };
        match task.execution {
            Execution::Native(native) if native.reads_cluster_state() => {
                let body: Map<String, Value> = serde_json::from_slice(&body).unwrap_or_default();
                let answer = match self.cluster_function(native, &body, ctx) {
                    Ok(value) => value.to_string(),
                    Err(e) => e.to_json().to_string(),
                };
                self.dapi_part_done(id, part, Bytes::from(answer), ctx);
            }
            execution => {
                let job = ctx.job(Job::Dapi(DapiJob::Run {
                    request: body,
                    execution,
                }));
                self.dapi.jobs.insert(job, (id, Step::Share(part)));
            }
        }
    }

    fn dapi_part_done(&mut self, id: u64, part: usize, answer: Bytes, ctx: &mut Ctx) {
        let Some(task) = self.dapi.tasks.get_mut(&id) else {
            return;
        };
        if let Some(slot) = task.parts.get_mut(part) {
            *slot = Some(answer);
        }
        if task.parts.iter().any(Option::is_none) {
            return;
        }
        let mut parts: Vec<Bytes> = task.parts.iter_mut().filter_map(Option::take).collect();
        if parts.len() == 1 {
            let answer = parts.remove(0);
            self.dapi_finish(id, Ok(answer), ctx);
            return;
        }
        let kwargs = Bytes::from(Value::Object(task.request.kwargs()).to_string());
        let job = ctx.job(Job::Dapi(DapiJob::Merge { parts, kwargs }));
        self.dapi.jobs.insert(job, (id, Step::Merge));
    }

    /// The request is over: its answer goes to whoever asked, and the next one may run.
    fn dapi_finish(&mut self, id: u64, answer: Answer, ctx: &mut Ctx) {
        let Some(task) = self.dapi.tasks.remove(&id) else {
            return;
        };
        self.dapi.shares.retain(|_, s| s.task != id);
        self.dapi.jobs.retain(|_, (t, _)| *t != id);
        self.dapi.queue.retain(|q| *q != id);
        if task.started {
            self.dapi.running = self.dapi.running.saturating_sub(1);
        }
        self.dapi_deliver(&task.origin, answer, ctx);
        self.dapi_dispatch(ctx);
    }

    fn dapi_deliver(&mut self, origin: &Origin, answer: Answer, ctx: &mut Ctx) {
        match origin {
            Origin::Local { conn, .. } => self.deliveries.push(local_answer(*conn, answer)),
            Origin::Worker { conn, client } => {
                let timeout = ctx.settings.timers.timeout_cluster_request;
                let Some(peer) = self.workers.get_mut(conn) else {
                    clog_debug!(
                        "Master",
                        "D API",
                        "Dropping the answer of request {client}: its worker is gone."
                    );
                    return;
                };
                let sent = send_answer(
                    &mut peer.strings,
                    &mut peer.conn,
                    client,
                    answer,
                    ctx.now.mono,
                    timeout,
                );
                if let Err(e) = sent {
                    clog_error!(
                        peer.tag(),
                        "D API",
                        "Could not send the answer of request {client}: {e}"
                    );
                }
            }
        }
    }

    /// The connection of the accepted worker called `name`.
    pub(super) fn connected_worker(&self, name: &str) -> Option<ConnId> {
        self.workers
            .iter()
            .find(|(_, w)| w.accepted && w.name() == name)
            .map(|(id, _)| *id)
    }

    /// `get_nodes_info` and `get_health_nodes`, from the master's own view of the cluster.
    fn cluster_function(
        &self,
        native: Native,
        request: &Map<String, Value>,
        ctx: &Ctx,
    ) -> Result<Value, WazuhError> {
        let kwargs = request
            .get("f_kwargs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let permitted = scope(request, "cluster:read", "node:id:")?;
        let all = self.control(&Command::GetNodes, b"{}", ctx.settings)?;
        let known: Vec<String> = all["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["name"].as_str().map(str::to_string))
            .collect();
        let asked: Vec<String> = match kwargs.get("filter_node") {
            Some(Value::String(s)) => s.split(',').map(str::to_string).collect(),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => known.clone(),
        };
        let mut failed = Vec::new();
        let mut names = Vec::new();
        for name in asked {
            if !known.contains(&name) {
                failed.push(FailedItem {
                    class: "WazuhResourceNotFound",
                    code: 1730,
                    title: "Resource Not Found",
                    message: None,
                    id: name,
                });
            } else if !permitted.allows(&name) {
                failed.push(FailedItem {
                    class: "WazuhPermissionError",
                    code: 4000,
                    title: "Permission Denied",
                    message: None,
                    id: name,
                });
            } else {
                names.push(name);
            }
        }
        let (mut result, items, total) = match native {
            Native::NodesInfo => {
                let mut args = kwargs.clone();
                args.insert("filter_node".into(), json!(names));
                let nodes = self.control(
                    &Command::GetNodes,
                    Value::Object(args).to_string().as_bytes(),
                    ctx.settings,
                )?;
                let items = nodes["items"].as_array().cloned().unwrap_or_default();
                let total = nodes["totalItems"].as_u64().unwrap_or(items.len() as u64);
                let r = Affected::new([
                    "All selected nodes information was returned",
                    "Some nodes information was not returned",
                    "No information was returned",
                ]);
                (r, items, total)
            }
            _ => {
                let health = self.control(
                    &Command::GetHealth,
                    json!(names).to_string().as_bytes(),
                    ctx.settings,
                )?;
                let mut items: Vec<Value> = health["nodes"]
                    .as_object()
                    .map(|m| m.values().cloned().collect())
                    .unwrap_or_default();
                items.sort_by(|a, b| a["info"]["name"].as_str().cmp(&b["info"]["name"].as_str()));
                let total = items.len() as u64;
                let r = Affected::new([
                    "All selected nodes healthcheck information was returned",
                    "Some nodes healthcheck information was not returned",
                    "No healthcheck information was returned",
                ]);
                (r, items, total)
            }
        };
        result.items = items;
        result.total = total;
        result.failed = failed;
        Ok(result.encode())
    }
}

fn task_parts(state: &mut MasterDapi, id: u64, n: usize) {
    if let Some(task) = state.tasks.get_mut(&id) {
        task.parts = vec![None; n];
    }
}

/// The agents a request names (`agent_list` / `agent_id`, not `*`).
fn agent_args(kwargs: &Map<String, Value>) -> Option<Vec<String>> {
    let value = kwargs
        .get("agent_list")
        .or_else(|| kwargs.get("agent_id"))?;
    let list: Vec<String> = match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Value::String(s) if s == "*" => return None,
        Value::String(s) => vec![s.clone()],
        _ => return None,
    };
    (!list.iter().any(|a| a == "*")).then_some(list)
}

fn names_agents(request: &DapiRequest) -> bool {
    agent_args(&request.kwargs()).is_some()
}

/// The nodes a request names (`node_list` / `node_id`, not `*`).
fn node_args(kwargs: &Map<String, Value>) -> Option<Vec<String>> {
    let value = kwargs.get("node_list").or_else(|| kwargs.get("node_id"))?;
    match value {
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        Value::String(s) if s == "*" => None,
        Value::String(s) => Some(s.split(',').map(str::to_string).collect()),
        _ => None,
    }
}

/// The answer of a node that could not answer: an error naming the node, which the merge turns
/// into a failed item of that node (as stock does with an unknown node).
fn node_error(code: u32, node: &str, why: &str) -> Bytes {
    let mut error = WazuhError::with_extra(code, why).to_json();
    error["__wazuh_exception__"]["__class__"] = json!("WazuhError");
    error["__wazuh_exception__"]["__object__"]["ids"] = json!([node]);
    Bytes::from(error.to_string())
}
