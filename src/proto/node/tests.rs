//! Deterministic simulation: one master and several workers wired by in-memory links, virtual clock.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::*;
use crate::proto::connection::ConnLimits;

const KEY: &str = "c98b62a9b6169ac5f67dae55ae4a9088";

fn settings(name: &str, master: bool, cluster: &str, version: &str, key: &str) -> NodeSettings {
    NodeSettings {
        is_master: master,
        cluster_name: cluster.into(),
        node_name: name.into(),
        version: version.into(),
        master_host: "127.0.0.1".into(),
        port: 1516,
        cluster_key: key.into(),
        get_config: json!({"name": cluster}),
        runtime_info: json!({"io_driver": "none"}),
        timers: Timers {
            keep_alive: Duration::from_secs(2),
            connection_retry: Duration::from_secs(3),
            max_failed_keepalive_attempts: 2,
            check_worker_lastkeepalive: Duration::from_secs(1),
            max_allowed_time_without_keepalive: Duration::from_secs(6),
            timeout_cluster_request: Duration::from_secs(5),
            timeout_dapi_request: Duration::from_secs(10),
        },
        sync: SyncSettings {
            sync_integrity: Duration::from_secs(2),
            recalculate_integrity: Duration::from_secs(1),
            timeout_receiving_file: Duration::from_secs(10),
            ..SyncSettings::defaults(if version.starts_with("4.3") {
                Dialect::V4_3
            } else {
                Dialect::V4_14
            })
        },
        agents: AgentSettings::default(),
        connections_per_ip_max: 10,
        distributed_api: true,
        limits: ConnLimits::default(),
    }
}

/// Size of the fake master package: more than one frame, so transfers take several chunks.
const PACKAGE_BYTES: usize = 6 * 1024 * 1024 + 7;

/// Which end of an in-memory link a connection id is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum End {
    Master(ConnId),
    Worker(usize, ConnId),
}

struct Sim {
    start: Instant,
    elapsed: Duration,
    master: Option<Node>,
    workers: Vec<Node>,
    peer_of: HashMap<End, End>,
    /// Workers whose traffic to the master is silently dropped (keepalives never arrive).
    muted: Vec<usize>,
    /// Frames for connections that are not links (local clients), by node and connection.
    unrouted: Vec<(Option<usize>, ConnId, bytes::Bytes)>,
    /// Every node's files, by (node, path relative to its install root).
    disk: HashMap<(Option<usize>, String), Vec<u8>>,
    /// Packages applied per worker (by node name).
    applied: HashMap<String, usize>,
    /// Comparisons the master ran per worker, and how many found it in sync.
    compared: HashMap<String, (usize, usize)>,
    /// Extra-valid packages the master received.
    extra_valid_received: usize,
    /// Each node's agent database (in memory), created on first use.
    agent_envs: HashMap<Option<usize>, std::sync::Arc<crate::pool::AgentEnv>>,
    /// The agents of each node's `etc/client.keys`, by node name (none: no file).
    client_keys: HashMap<String, crate::proto::jobs::AgentKeys>,
    /// Nodes whose agent jobs are held (a slow database, a flow caught mid-round) until
    /// `release_jobs`.
    hold_agent_jobs: Vec<Option<usize>>,
    held_jobs: Vec<(Option<usize>, JobId, Job)>,
}

impl Sim {
    fn new(master: NodeSettings, workers: Vec<NodeSettings>) -> Sim {
        let start = Instant::now();
        let now = Now {
            mono: start,
            wall: SystemTime::UNIX_EPOCH,
        };
        Sim {
            start,
            elapsed: Duration::ZERO,
            master: Some(Node::new(master, 1, now).unwrap()),
            workers: workers
                .into_iter()
                .enumerate()
                .map(|(i, s)| Node::new(s, 100 + i as u64, now).unwrap())
                .collect(),
            peer_of: HashMap::new(),
            muted: Vec::new(),
            unrouted: Vec::new(),
            disk: HashMap::new(),
            applied: HashMap::new(),
            compared: HashMap::new(),
            extra_valid_received: 0,
            agent_envs: HashMap::new(),
            client_keys: HashMap::new(),
            hold_agent_jobs: Vec::new(),
            held_jobs: Vec::new(),
        }
    }

    /// Held agent jobs of one flow (several flows run at once on a node).
    fn held_where(&self, flow: fn(&AgentJob) -> bool) -> usize {
        self.held_jobs
            .iter()
            .filter(|(_, _, job)| matches!(job, Job::Agents(j) if flow(j)))
            .count()
    }

    /// Held agent-info jobs.
    fn held_info(&self) -> usize {
        self.held_where(|j| matches!(j, AgentJob::InfoRead { .. } | AgentJob::InfoApply { .. }))
    }

    /// Held agent-groups jobs.
    fn held_groups(&self) -> usize {
        self.held_where(|j| {
            matches!(
                j,
                AgentJob::GroupsCollect { .. }
                    | AgentJob::GroupsApply { .. }
                    | AgentJob::GroupsEnvelope { .. }
            )
        })
    }

    /// Runs the held jobs now and delivers their results (`failure`: fails them instead).
    fn release_jobs(&mut self, failure: Option<&str>) {
        let now = self.now();
        for (on, id, job) in std::mem::take(&mut self.held_jobs) {
            let result = match failure {
                Some(e) => Err(e.to_string()),
                None => self.run_job(on, job),
            };
            self.node(on).job_done(id, result, now);
        }
        self.settle();
    }

    /// What the fake integrity jobs report of a node's `etc/client.keys`.
    fn client_keys(&self, node: String) -> crate::proto::jobs::AgentKeys {
        self.client_keys
            .get(&node)
            .cloned()
            .unwrap_or(crate::proto::jobs::AgentKeys {
                digest: None,
                ids: Default::default(),
            })
    }

    fn now(&self) -> Now {
        Now {
            mono: self.start + self.elapsed,
            wall: SystemTime::UNIX_EPOCH + self.elapsed,
        }
    }

    fn master(&mut self) -> &mut Node {
        self.master.as_mut().unwrap()
    }

    /// Delivers every output until the network is quiet.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            let now = self.now();
            if let Some(m) = self.master.as_mut() {
                for out in m.take_outputs() {
                    moved = true;
                    self.apply(None, out, now);
                }
            }
            for i in 0..self.workers.len() {
                for out in self.workers[i].take_outputs() {
                    moved = true;
                    self.apply(Some(i), out, now);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the simulation does not settle");
    }

    fn apply(&mut self, from: Option<usize>, out: Output, now: Now) {
        let end = |conn| match from {
            None => End::Master(conn),
            Some(i) => End::Worker(i, conn),
        };
        match out {
            Output::Connect { conn, .. } => {
                let i = from.unwrap();
                match self.master.as_mut().and_then(|m| {
                    m.accept_cluster(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000 + conn as u16, now)
                }) {
                    Some(mconn) => {
                        self.peer_of
                            .insert(End::Worker(i, conn), End::Master(mconn));
                        self.peer_of
                            .insert(End::Master(mconn), End::Worker(i, conn));
                        self.workers[i].connected(conn, now);
                    }
                    None => self.workers[i].connect_failed(conn, "Connection refused", now),
                }
            }
            Output::Send { conn, frames } => {
                let Some(to) = self.peer_of.get(&end(conn)).copied() else {
                    self.unrouted
                        .extend(frames.into_iter().map(|f| (from, conn, f)));
                    return;
                };
                // Muting silences the link only: local clients still hear from the node.
                if from.is_some_and(|i| self.muted.contains(&i)) {
                    return;
                }
                for f in frames {
                    match to {
                        End::Master(c) => self.master().receive(c, &f, now),
                        End::Worker(i, c) => self.workers[i].receive(c, &f, now),
                    }
                }
            }
            Output::Close { conn } => {
                if let Some(to) = self.peer_of.remove(&end(conn)) {
                    self.peer_of.remove(&to);
                    match to {
                        End::Master(c) => self.master().closed(c, now),
                        End::Worker(i, c) => self.workers[i].closed(c, now),
                    }
                }
            }
            Output::CreateDir { .. } => {}
            Output::WriteFile { write, .. } => {
                let file = self.disk.entry((from, write.rel)).or_default();
                if write.truncate {
                    file.clear();
                }
                file.extend_from_slice(&write.data);
            }
            Output::RemoveFile { rel } => {
                self.disk.remove(&(from, rel));
            }
            Output::RemoveEmptyDir { .. } => {}
            Output::ReadChunk {
                conn,
                rel,
                offset,
                len,
                reader,
            } => {
                let data = self.disk.get(&(from, rel.clone())).map(|f| {
                    let start = (offset as usize).min(f.len());
                    f[start..(start + len).min(f.len())].to_vec()
                });
                let data = data.ok_or_else(|| format!("{rel} not found"));
                self.node(from).chunk_read(conn, reader, data, now);
            }
            Output::Job { id, job } => {
                if matches!(job, Job::Agents(_)) && self.hold_agent_jobs.contains(&from) {
                    return self.held_jobs.push((from, id, job));
                }
                let result = self.run_job(from, job);
                self.node(from).job_done(id, result, now);
            }
        }
    }

    fn node(&mut self, which: Option<usize>) -> &mut Node {
        match which {
            None => self.master(),
            Some(i) => &mut self.workers[i],
        }
    }

    /// The pool, faked: packages are filler bytes; a worker is out of sync until it applied once.
    fn run_job(&mut self, on: Option<usize>, job: Job) -> JobResult {
        use crate::proto::jobs::{JobOutcome, Package, SyncCounts};
        match job {
            Job::LocalIntegrity => {
                let keys =
                    self.client_keys(self.master.as_ref().unwrap().settings.node_name.clone());
                Ok(JobOutcome::LocalIntegrity {
                    files: 3,
                    hashed: 3,
                    client_keys: keys.digest.clone(),
                    agent_keys: Some(keys),
                })
            }
            Job::WorkerPackage { rel } => {
                self.disk.insert((on, rel.clone()), vec![b'm'; 1000]);
                Ok(JobOutcome::WorkerPackage {
                    files: 3,
                    package: Package { rel, bytes: 1000 },
                })
            }
            Job::Compare {
                worker,
                rel,
                out_rel,
                ..
            } => {
                assert_eq!(
                    self.disk.remove(&(on, rel.clone())).map(|f| f.len()),
                    Some(1000),
                    "worker package {rel}"
                );
                let worker_client_keys = self.client_keys(worker.clone()).digest;
                let in_sync = self.applied.get(&worker).copied().unwrap_or(0) > 0;
                let entry = self.compared.entry(worker).or_default();
                entry.0 += 1;
                if in_sync {
                    entry.1 += 1;
                    return Ok(JobOutcome::Compare {
                        received_files: 3,
                        counts: SyncCounts::default(),
                        package: None,
                        warnings: vec![],
                        notes: vec![],
                        worker_client_keys,
                    });
                }
                self.disk
                    .insert((on, out_rel.clone()), vec![b'p'; PACKAGE_BYTES]);
                let counts = SyncCounts {
                    missing: 2,
                    shared: 1,
                    extra: 1,
                    extra_valid: 1,
                };
                let package = Some(Package {
                    rel: out_rel,
                    bytes: PACKAGE_BYTES as u64,
                });
                Ok(JobOutcome::Compare {
                    received_files: 3,
                    counts,
                    package,
                    warnings: vec![],
                    notes: vec![],
                    worker_client_keys,
                })
            }
            Job::Apply {
                rel,
                extra_valid_rel,
            } => {
                assert_eq!(
                    self.disk.remove(&(on, rel.clone())),
                    Some(vec![b'p'; PACKAGE_BYTES]),
                    "package {rel}"
                );
                let name = rel.split('/').nth(2).unwrap().to_string();
                *self.applied.entry(name).or_default() += 1;
                let v43 = self.workers[on.unwrap()].settings.sync.dialect == Dialect::V4_3;
                let extra_valid = v43.then(|| {
                    self.disk
                        .insert((on, extra_valid_rel.clone()), vec![b'e'; 300]);
                    Package {
                        rel: extra_valid_rel,
                        bytes: 300,
                    }
                });
                Ok(JobOutcome::Apply {
                    created: 2,
                    updated: 1,
                    deleted: 1,
                    extra_valid_files: usize::from(v43),
                    extra_valid,
                    errors: vec![],
                    warnings: vec![],
                })
            }
            Job::ExtraValid { rel, .. } => {
                assert_eq!(
                    self.disk.remove(&(on, rel.clone())).map(|f| f.len()),
                    Some(300)
                );
                self.extra_valid_received += 1;
                Ok(JobOutcome::ExtraValid {
                    updated: 1,
                    errors: vec![],
                })
            }
            Job::Agents(job) => self.agent_job(on, job),
            Job::RulesetHashes => Ok(JobOutcome::RulesetHashes(Default::default())),
            Job::LocalFile { path } => Err(format!("the simulation sends no local file ({path})")),
            Job::ReloadRuleset => Ok(JobOutcome::RulesetReload(
                crate::proto::jobs::RulesetReload::NoAnalysisd,
            )),
            Job::Dapi(job) => {
                let env = crate::pool::DapiEnv {
                    agents: self.agent_env(on).clone(),
                    framework: Err("the simulation has no framework".into()),
                    timeout: Duration::from_secs(10),
                    ruleset: None,
                };
                Ok(JobOutcome::Dapi(crate::pool::jobs::dapi::run(&env, job)))
            }
        }
    }

    /// The agent database of a node: a real embedded database, in memory.
    fn agent_env(&mut self, on: Option<usize>) -> &std::sync::Arc<crate::pool::AgentEnv> {
        let settings = match on {
            None => self.master.as_ref().unwrap().settings.clone(),
            Some(i) => self.workers[i].settings.clone(),
        };
        self.agent_envs.entry(on).or_insert_with(|| {
            let db = crate::store::EmbeddedDb::in_memory().unwrap();
            db.set_worker_node(on.is_some());
            std::sync::Arc::new(crate::pool::AgentEnv {
                db: std::sync::Arc::new(db),
                daemons: None,
                dialect: settings.sync.dialect,
                node_name: settings.node_name.clone(),
                home: std::path::PathBuf::from("/nonexistent"),
            })
        })
    }

    /// Agent-database jobs of the simulated nodes run for real against their databases.
    fn agent_job(&mut self, on: Option<usize>, job: AgentJob) -> JobResult {
        let env = self.agent_env(on);
        crate::pool::jobs::agents::run(env, job).map(crate::proto::jobs::JobOutcome::Agents)
    }

    /// Advances the virtual clock in small steps, ticking every node.
    fn run_for(&mut self, d: Duration) {
        let step = Duration::from_millis(100);
        let end = self.elapsed + d;
        while self.elapsed < end {
            self.elapsed += step;
            let now = self.now();
            if let Some(m) = self.master.as_mut() {
                m.tick(now);
            }
            for w in self.workers.iter_mut() {
                w.tick(now);
            }
            self.settle();
        }
    }

    /// The master's `get_nodes` names, asked as a local client would.
    fn listed(&mut self) -> Vec<String> {
        let json = self.local_call(None, "get_nodes", b"{}");
        json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Asks a node's local server, answering relayed results like `cluster_control` does.
    fn local_call(&mut self, node: Option<usize>, command: &str, payload: &[u8]) -> Value {
        let now = self.now();
        let mut client: Connection<()> = Connection::new(Cipher::Plain, ConnLimits::default(), 7);
        client
            .request(command, payload, (), now.mono, Duration::from_secs(5))
            .unwrap();
        fn target(sim: &mut Sim, node: Option<usize>) -> &mut Node {
            match node {
                None => sim.master(),
                Some(i) => &mut sim.workers[i],
            }
        }
        let conn = target(self, node).accept_local(now);
        for f in client.take_outbox() {
            target(self, node).receive(conn, &f, now);
        }
        let mut answer = None;
        for _ in 0..50 {
            for out in target(self, node).take_outputs() {
                self.apply(node, out, now);
            }
            let mut events = Vec::new();
            let mine: Vec<bytes::Bytes> = self
                .unrouted
                .iter()
                .filter(|(n, c, _)| *n == node && *c == conn)
                .map(|(_, _, f)| f.clone())
                .collect();
            self.unrouted
                .retain(|(n, c, _)| !(*n == node && *c == conn));
            for f in mine {
                client.receive(&f, now.mono, &mut events).unwrap();
            }
            for e in events {
                match e {
                    Event::Reply { payload, .. } if payload != b"Sent request to master node" => {
                        answer = Some(payload)
                    }
                    Event::Request {
                        payload, command, ..
                    } => {
                        assert_eq!(
                            command,
                            crate::proto::command::Command::ControlRes,
                            "{}",
                            String::from_utf8_lossy(&payload)
                        );
                        answer = Some(payload)
                    }
                    _ => {}
                }
            }
            if answer.is_some() {
                break;
            }
            self.settle();
        }
        target(self, node).closed(conn, now);
        serde_json::from_slice(&answer.expect("no answer")).unwrap()
    }
}

use crate::config::Dialect;
use crate::proto::connection::{Connection, Event};
use crate::proto::crypto::Cipher;
use crate::proto::jobs::{AgentJob, Job, JobId, JobResult};

fn good(name: &str) -> NodeSettings {
    settings(name, false, "wazuh", "4.3.11", KEY)
}

fn good14(name: &str) -> NodeSettings {
    settings(name, false, "wazuh", "4.14.7", KEY)
}

#[test]
fn three_workers_join_and_are_listed_in_connection_order() {
    let mut sim = Sim::new(
        settings("master", true, "wazuh", "4.3.11", KEY),
        vec![good("w1"), good("w2"), good("w3")],
    );
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.listed(), ["master", "w1", "w2", "w3"]);
    // A worker's local socket shows the same list, relayed from the master.
    let from_worker = sim.local_call(Some(1), "get_nodes", b"{}");
    assert_eq!(from_worker["totalItems"], 4);
    let health = sim.local_call(None, "get_health", b"null");
    assert_eq!(health["n_connected_nodes"], 3);
}

#[test]
fn refused_workers_stay_out_and_keep_retrying() {
    let mut sim = Sim::new(
        settings("master", true, "wazuh", "4.3.11", KEY),
        vec![
            good("w1"),
            settings("w2", false, "other", "4.3.11", KEY),
            settings("w3", false, "wazuh", "4.14.7", KEY),
            good("w1"),
            settings(
                "w5",
                false,
                "wazuh",
                "4.3.11",
                "00000000000000000000000000000000",
            ),
            good("master"),
            good("bad/name"),
        ],
    );
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.listed(), ["master", "w1"]);
}

#[test]
fn a_silent_worker_is_dropped_and_comes_back() {
    let mut sim = Sim::new(
        settings("master", true, "wazuh", "4.3.11", KEY),
        vec![good("w1"), good("w2")],
    );
    sim.run_for(Duration::from_secs(1));
    sim.muted.push(1);
    sim.run_for(Duration::from_secs(8));
    assert_eq!(sim.listed(), ["master", "w1"]);
    sim.muted.clear();
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.listed(), ["master", "w1", "w2"]);
}

#[test]
fn workers_rejoin_a_restarted_master_within_the_retry_interval() {
    let mut sim = Sim::new(
        settings("master", true, "wazuh", "4.3.11", KEY),
        vec![good("w1"), good("w2"), good("w3")],
    );
    sim.run_for(Duration::from_secs(1));
    // The master dies: every link breaks.
    let links: Vec<End> = sim.peer_of.keys().copied().collect();
    let now = sim.now();
    for end in links {
        if let End::Worker(i, c) = end {
            sim.workers[i].closed(c, now);
        }
    }
    sim.peer_of.clear();
    sim.master = None;
    sim.run_for(Duration::from_secs(5));
    sim.master = Some(
        Node::new(
            settings("master", true, "wazuh", "4.3.11", KEY),
            9,
            sim.now(),
        )
        .unwrap(),
    );
    sim.run_for(Duration::from_secs(3) + Duration::from_millis(500));
    assert_eq!(sim.listed(), ["master", "w1", "w2", "w3"]);
}

#[test]
fn a_stale_session_does_not_block_the_workers_return() {
    let mut sim = Sim::new(
        settings("master", true, "wazuh", "4.3.11", KEY),
        vec![good("w1")],
    );
    sim.run_for(Duration::from_secs(1));
    // The worker's host vanishes without closing: the master keeps a half-open session.
    let now = sim.now();
    let worker_end = *sim
        .peer_of
        .keys()
        .find(|e| matches!(e, End::Worker(..)))
        .unwrap();
    let End::Worker(_, c) = worker_end else {
        unreachable!()
    };
    sim.peer_of.remove(&worker_end);
    sim.workers[0].closed(c, now);
    // The restarted worker is refused once (name taken) but the probe clears the stale session.
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.listed(), ["master", "w1"]);
    assert_eq!(sim.peer_of.len(), 2);
}

fn integrity_converges(version: &str) {
    let good = |name: &str| settings(name, false, "wazuh", version, KEY);
    let mut sim = Sim::new(
        settings("master", true, "wazuh", version, KEY),
        vec![good("w1"), good("w2")],
    );
    sim.run_for(Duration::from_secs(12));
    for w in ["w1", "w2"] {
        assert_eq!(
            sim.applied.get(w),
            Some(&1),
            "{w} applied the master's package once"
        );
        let (checks, in_sync) = sim.compared[w];
        assert!(
            checks >= 2 && in_sync >= 1,
            "{w}: {checks} checks, {in_sync} in sync"
        );
    }
    if version.starts_with("4.3") {
        assert_eq!(
            sim.extra_valid_received, 2,
            "each worker sent its extra-valid files"
        );
    }
    // Transfer files are cleaned up on both sides once used.
    let left: Vec<_> = sim
        .disk
        .keys()
        .filter(|(_, rel)| rel.ends_with(".zip"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let health = sim.local_call(None, "get_health", b"null");
    let status = &health["nodes"]["w1"]["status"];
    assert_eq!(status["last_sync_integrity"]["total_files"]["missing"], 2);
    assert_ne!(status["last_sync_integrity"]["date_end_master"], "n/a");
    assert_eq!(status["sync_integrity_free"], true);
}

#[test]
fn integrity_converges_in_the_4_14_dialect() {
    integrity_converges("4.14.7");
}

#[test]
fn integrity_converges_in_the_4_3_dialect() {
    integrity_converges("4.3.11");
}

#[test]
fn a_worker_that_drops_mid_transfer_frees_its_lock_and_syncs_after_reconnecting() {
    let mut sim = Sim::new(
        settings("master", true, "wazuh", "4.14.7", KEY),
        vec![good14("w1")],
    );
    // Run until the master is sending its package, then cut the link.
    for _ in 0..200 {
        sim.run_for(Duration::from_millis(100));
        if sim.compared.get("w1").is_some_and(|c| c.0 == 1) {
            break;
        }
    }
    let now = sim.now();
    let links: Vec<End> = sim.peer_of.keys().copied().collect();
    for end in links {
        if let End::Worker(i, c) = end {
            sim.workers[i].closed(c, now);
        }
        if let End::Master(c) = end {
            sim.master().closed(c, now);
        }
    }
    sim.peer_of.clear();
    sim.run_for(Duration::from_secs(15));
    assert_eq!(sim.applied.get("w1"), Some(&1));
    assert!(sim.compared["w1"].1 >= 1);
}

mod agent_info;
mod groups;
mod sendsync;

/// Runs `f` and returns the `cluster.log` text it wrote (debug level 1).
fn logged(f: impl FnOnce()) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.log");
    let (subscriber, guard) = crate::logging::LogBuilder::new(&path)
        .debug_level(1)
        .subscriber()
        .unwrap();
    tracing::subscriber::with_default(subscriber, f);
    drop(guard);
    std::fs::read_to_string(&path).unwrap_or_default()
}
