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

impl End {
    /// The node this end belongs to (`None`: the master).
    fn node(self) -> Option<usize> {
        match self {
            End::Master(_) => None,
            End::Worker(i, _) => Some(i),
        }
    }
}

thread_local! {
    /// The time the simulated databases see (Unix seconds): the virtual clock of the node whose
    /// job or query runs, so a seed replays exactly.
    static DB_NOW: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

fn db_clock() -> i64 {
    DB_NOW.with(|now| now.get())
}

/// A fake package: `gen <n>` (or `gen none`) then filler up to `len` bytes.
fn fake_package(generation: Option<u64>, filler: u8, len: usize) -> Vec<u8> {
    let mut bytes = match generation {
        Some(g) => format!("gen {g}\n"),
        None => "gen none\n".to_string(),
    }
    .into_bytes();
    bytes.resize(len, filler);
    bytes
}

/// The generation a fake package carries, if it is one whole and unchanged.
fn package_generation(bytes: &[u8], filler: u8, len: usize) -> Option<Option<u64>> {
    let line = bytes.split(|b| *b == b'\n').next()?;
    let generation = match std::str::from_utf8(line).ok()?.strip_prefix("gen ")? {
        "none" => None,
        n => Some(n.parse().ok()?),
    };
    (fake_package(generation, filler, len) == bytes).then_some(generation)
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
    /// The faulty network and slow pool of the seeded runs (none: frames arrive at once, in
    /// order, and jobs finish at once).
    net: Option<FaultyNet>,
    /// Each link's id, by both its ends: frames still travelling on a closed link are lost.
    link_of: HashMap<End, u64>,
    next_link: u64,
    /// Each node's start count (restarts): jobs and local clients of an earlier run are lost.
    incarnation: HashMap<Option<usize>, u64>,
    /// Wall-clock offsets of nodes whose clock jumped, in seconds.
    skew: HashMap<Option<usize>, i64>,
    wall_base: SystemTime,
    /// Which version of its files the master holds, and which each worker applied last (by
    /// name): the fake packages carry these numbers, so the comparison is fed by the transfers.
    generation: u64,
    worker_generation: HashMap<String, u64>,
    /// Size of the master's fake package.
    package_bytes: usize,
    /// The master's listener refuses every connection.
    refuse: bool,
    /// Local clients' requests and their answers.
    asks: Vec<Ask>,
    /// The nodes' install roots on disk, for what the agent jobs keep there across restarts.
    homes: tempfile::TempDir,
}

/// A local client's request (`cluster_control`, the API) and what it got back.
struct Ask {
    node: Option<usize>,
    conn: ConnId,
    client: Connection<()>,
    /// When it was asked (virtual time).
    asked: Duration,
    command: String,
    answer: Option<Vec<u8>>,
    answered_at: Option<Duration>,
    /// The node restarted before answering: the client saw its socket close.
    lost: bool,
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
            net: None,
            link_of: HashMap::new(),
            next_link: 0,
            incarnation: HashMap::new(),
            skew: HashMap::new(),
            // A real date: the databases compare it with registration dates, and clock jumps
            // backwards stay after 1970.
            wall_base: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000),
            generation: 0,
            worker_generation: HashMap::new(),
            package_bytes: PACKAGE_BYTES,
            refuse: false,
            asks: Vec::new(),
            homes: tempfile::tempdir().unwrap(),
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
        for (on, id, job) in std::mem::take(&mut self.held_jobs) {
            let result = match failure {
                Some(e) => Err(e.to_string()),
                None => self.run_job(on, job),
            };
            let now = self.now_of(on);
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
            wall: self.wall_base + self.elapsed,
        }
    }

    /// Points the databases' clock at `node`'s wall clock.
    fn set_db_clock(&self, node: Option<usize>) {
        let wall = self.now_of(node).wall;
        let secs = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        DB_NOW.with(|now| now.set(secs.as_secs() as i64));
    }

    /// The time as `node` sees it: the monotonic clock is shared, the wall clock may have jumped.
    fn now_of(&self, node: Option<usize>) -> Now {
        let now = self.now();
        let skew = self.skew.get(&node).copied().unwrap_or(0);
        let by = Duration::from_secs(skew.unsigned_abs());
        let wall = if skew >= 0 {
            now.wall + by
        } else {
            now.wall.checked_sub(by).unwrap_or(SystemTime::UNIX_EPOCH)
        };
        Now { wall, ..now }
    }

    fn master(&mut self) -> &mut Node {
        self.master.as_mut().unwrap()
    }

    /// Delivers every output until the network is quiet.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            if let Some(m) = self.master.as_mut() {
                for out in m.take_outputs() {
                    moved = true;
                    self.apply(None, out);
                }
            }
            for i in 0..self.workers.len() {
                for out in self.workers[i].take_outputs() {
                    moved = true;
                    self.apply(Some(i), out);
                }
            }
            moved |= self.deliver_due();
            if !moved {
                return;
            }
        }
        panic!("the simulation does not settle");
    }

    fn apply(&mut self, from: Option<usize>, out: Output) {
        let end = |conn| match from {
            None => End::Master(conn),
            Some(i) => End::Worker(i, conn),
        };
        let now = self.now_of(from);
        match out {
            Output::Connect { conn, .. } => {
                let i = from.unwrap();
                let master_now = self.now_of(None);
                let accepted = match self.master.as_mut() {
                    Some(m) if !self.refuse => m.accept_cluster(
                        IpAddr::V4(Ipv4Addr::LOCALHOST),
                        40000 + conn as u16,
                        master_now,
                    ),
                    _ => None,
                };
                match accepted {
                    Some(mconn) => {
                        let (w, m) = (End::Worker(i, conn), End::Master(mconn));
                        self.peer_of.insert(w, m);
                        self.peer_of.insert(m, w);
                        self.next_link += 1;
                        self.link_of.insert(w, self.next_link);
                        self.link_of.insert(m, self.next_link);
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
                if let Some(net) = self.net.as_mut() {
                    let link = self.link_of[&end(conn)];
                    let worker = from.or(to.node()).unwrap();
                    return net.send(link, worker, to, frames, self.elapsed);
                }
                for f in frames {
                    self.deliver(to, &f);
                }
            }
            Output::Close { conn } => {
                let Some(to) = self.peer_of.remove(&end(conn)) else {
                    return;
                };
                let link = self.link_of.remove(&end(conn));
                if let (Some(net), Some(link)) = (self.net.as_mut(), link) {
                    // The other end hears of it after what is still on its way.
                    let worker = from.or(to.node()).unwrap();
                    return net.close(link, worker, to, self.elapsed);
                }
                self.closed_end(to);
            }
            Output::CreateDir { .. } => {}
            Output::WriteFile { write, .. } => {
                self.check_scratch_path(&write.rel);
                let file = self.disk.entry((from, write.rel)).or_default();
                if write.truncate {
                    file.clear();
                }
                file.extend_from_slice(&write.data);
            }
            Output::RemoveFile { rel } => {
                self.check_scratch_path(&rel);
                self.disk.remove(&(from, rel));
            }
            Output::RemoveEmptyDir { rel } => self.check_scratch_path(&rel),
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
                if let Some(net) = self.net.as_mut() {
                    let run = self.incarnation.get(&from).copied().unwrap_or(0);
                    return net.queue_job(from, run, id, job, self.elapsed);
                }
                let result = self.run_job(from, job);
                self.node(from).job_done(id, result, now);
            }
        }
    }

    /// The node at `to` sees its connection closed by the other end.
    fn closed_end(&mut self, to: End) {
        self.peer_of.remove(&to);
        self.link_of.remove(&to);
        let now = self.now_of(to.node());
        match to {
            End::Master(c) => self.master().closed(c, now),
            End::Worker(i, c) => self.workers[i].closed(c, now),
        }
    }

    /// Hands a frame to the node at `to`, at that node's time.
    fn deliver(&mut self, to: End, frame: &[u8]) {
        let now = self.now_of(to.node());
        match to {
            End::Master(c) => self.master().receive(c, frame, now),
            End::Worker(i, c) => self.workers[i].receive(c, frame, now),
        }
    }

    /// Delivers the frames and finishes the jobs of the faulty network that are due; whether
    /// anything moved.
    fn deliver_due(&mut self) -> bool {
        let Some(net) = self.net.as_mut() else {
            return false;
        };
        let (arrivals, jobs) = net.due(self.elapsed);
        let moved = !arrivals.is_empty() || !jobs.is_empty();
        for (to, link, arrival) in arrivals {
            if self.link_of.get(&to) != Some(&link) {
                continue;
            }
            match arrival {
                Arrival::Frame(frame) => self.deliver(to, &frame),
                Arrival::Closed => self.closed_end(to),
            }
        }
        for (on, run, id, job) in jobs {
            if self.incarnation.get(&on).copied().unwrap_or(0) != run {
                continue;
            }
            let result = self.run_job(on, job);
            let now = self.now_of(on);
            self.node(on).job_done(id, result, now);
        }
        moved
    }

    /// Every file a node writes or removes is scratch under `queue/cluster/` (the fake jobs
    /// stand for everything else): a path anywhere else is a fault.
    fn check_scratch_path(&self, rel: &str) {
        assert!(
            rel.starts_with("queue/cluster/") && !rel.split('/').any(|p| p == ".." || p.is_empty()),
            "a node touched {rel:?}, outside its transfer directory"
        );
    }

    /// Both ends of `worker`'s links (every link: `None`) see them break, as after a crash or a
    /// network cut.
    fn cut(&mut self, worker: Option<usize>) {
        let mut links: Vec<End> = self
            .peer_of
            .keys()
            .copied()
            .filter(|e| worker.is_none() || e.node() == worker || self.peer_of[e].node() == worker)
            .collect();
        links.sort_by_key(|e| format!("{e:?}"));
        for end in links {
            self.peer_of.remove(&end);
            self.link_of.remove(&end);
            let now = self.now_of(end.node());
            match end {
                End::Worker(i, c) => self.workers[i].closed(c, now),
                End::Master(c) => {
                    if let Some(m) = self.master.as_mut() {
                        m.closed(c, now)
                    }
                }
            }
        }
    }

    /// The node's process dies and starts again: its links break, its jobs and local clients
    /// are lost, its scratch files are removed at start-up (as the daemon does), its database
    /// and synced files stay.
    fn restart(&mut self, node: Option<usize>) {
        self.cut(node);
        *self.incarnation.entry(node).or_default() += 1;
        let run = self.incarnation[&node];
        for ask in self
            .asks
            .iter_mut()
            .filter(|a| a.node == node && a.answer.is_none())
        {
            ask.lost = true;
        }
        self.disk
            .retain(|(n, rel), _| *n != node || !rel.starts_with("queue/cluster/"));
        let now = self.now_of(node);
        let seed = 1000 * run + node.map_or(1, |i| 100 + i as u64);
        match node {
            None => {
                let settings = self.master.as_ref().unwrap().settings.clone();
                self.master = Some(Node::new(settings, seed, now).unwrap());
            }
            Some(i) => {
                let settings = self.workers[i].settings.clone();
                self.workers[i] = Node::new(settings, seed, now).unwrap();
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
                let name = &self.workers[on.unwrap()].settings.node_name;
                let generation = self.worker_generation.get(name).copied();
                self.disk
                    .insert((on, rel.clone()), fake_package(generation, b'm', 1000));
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
                let received = self.disk.remove(&(on, rel.clone())).unwrap_or_default();
                let reported = package_generation(&received, b'm', 1000);
                let reported = reported.unwrap_or_else(|| panic!("worker package {rel} damaged"));
                let worker_client_keys = self.client_keys(worker.clone()).digest;
                let in_sync = reported == Some(self.generation);
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
                let package = fake_package(Some(self.generation), b'p', self.package_bytes);
                self.disk.insert((on, out_rel.clone()), package);
                let counts = SyncCounts {
                    missing: 2,
                    shared: 1,
                    extra: 1,
                    extra_valid: 1,
                };
                let package = Some(Package {
                    rel: out_rel,
                    bytes: self.package_bytes as u64,
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
                let received = self.disk.remove(&(on, rel.clone())).unwrap_or_default();
                let generation = package_generation(&received, b'p', self.package_bytes);
                let Some(Some(generation)) = generation else {
                    panic!("package {rel} damaged ({} bytes)", received.len());
                };
                let name = rel.split('/').nth(2).unwrap().to_string();
                *self.applied.entry(name.clone()).or_default() += 1;
                self.worker_generation.insert(name, generation);
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
            let db = crate::store::EmbeddedDb::in_memory()
                .unwrap()
                .with_clock(db_clock);
            db.set_worker_node(on.is_some());
            std::sync::Arc::new(crate::pool::AgentEnv {
                db: std::sync::Arc::new(db),
                daemons: None,
                dialect: settings.sync.dialect,
                node_name: settings.node_name.clone(),
                home: self
                    .homes
                    .path()
                    .join(on.map_or("master".to_string(), |i| format!("worker-{i}"))),
            })
        })
    }

    /// Agent-database jobs of the simulated nodes run for real against their databases, at the
    /// node's time.
    fn agent_job(&mut self, on: Option<usize>, job: AgentJob) -> JobResult {
        self.set_db_clock(on);
        let env = self.agent_env(on);
        crate::pool::jobs::agents::run(env, job).map(crate::proto::jobs::JobOutcome::Agents)
    }

    /// Advances the virtual clock in small steps, ticking every node.
    fn run_for(&mut self, d: Duration) {
        let step = Duration::from_millis(100);
        let end = self.elapsed + d;
        while self.elapsed < end {
            self.elapsed += step;
            let now = self.now_of(None);
            if let Some(m) = self.master.as_mut() {
                m.tick(now);
            }
            for i in 0..self.workers.len() {
                let now = self.now_of(Some(i));
                self.workers[i].tick(now);
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

    /// Asks a node's local server, answering relayed results like `cluster_control` does, and
    /// waits for the answer without moving the clock.
    fn local_call(&mut self, node: Option<usize>, command: &str, payload: &[u8]) -> Value {
        let ask = self.ask(node, command, payload);
        for _ in 0..50 {
            self.settle();
            self.poll_asks();
            if self.asks[ask].answer.is_some() {
                break;
            }
        }
        let answer = self.asks.remove(ask).answer.expect("no answer");
        serde_json::from_slice(&answer).unwrap()
    }

    /// A local client connects to `node` and sends one request; returns its index in `asks`.
    fn ask(&mut self, node: Option<usize>, command: &str, payload: &[u8]) -> usize {
        let now = self.now_of(node);
        let mut client: Connection<()> = Connection::new(Cipher::Plain, ConnLimits::default(), 7);
        client
            .request(command, payload, (), now.mono, Duration::from_secs(5))
            .unwrap();
        let conn = self.node(node).accept_local(now);
        for f in client.take_outbox() {
            self.node(node).receive(conn, &f, now);
        }
        self.asks.push(Ask {
            node,
            conn,
            client,
            asked: self.elapsed,
            command: command.to_string(),
            answer: None,
            answered_at: None,
            lost: false,
        });
        self.asks.len() - 1
    }

    /// Hands the local clients what their nodes sent them; a client that has its answer
    /// disconnects.
    fn poll_asks(&mut self) {
        let now = self.now();
        for i in 0..self.asks.len() {
            let ask = &mut self.asks[i];
            if ask.answer.is_some() || ask.lost {
                continue;
            }
            let (node, conn) = (ask.node, ask.conn);
            let mut events = Vec::new();
            let mut kept = Vec::new();
            for (n, c, f) in std::mem::take(&mut self.unrouted) {
                if n == node && c == conn {
                    ask.client.receive(&f, now.mono, &mut events).unwrap();
                } else {
                    kept.push((n, c, f));
                }
            }
            self.unrouted = kept;
            for e in events {
                match e {
                    Event::Reply { payload, .. } if payload != b"Sent request to master node" => {
                        ask.answer = Some(payload)
                    }
                    // A relayed result, or the error that ended the relay.
                    Event::Request {
                        payload, command, ..
                    } => {
                        use crate::proto::command::Command;
                        assert!(
                            matches!(command, Command::ControlRes | Command::Err),
                            "{command:?} {}",
                            String::from_utf8_lossy(&payload)
                        );
                        ask.answer = Some(payload)
                    }
                    _ => {}
                }
            }
            if ask.answer.is_some() {
                ask.answered_at = Some(self.elapsed);
                let now = self.now_of(node);
                self.node(node).closed(conn, now);
            }
        }
    }
}

use crate::config::Dialect;
use crate::proto::connection::{Connection, Event};
use crate::proto::crypto::Cipher;
use crate::proto::jobs::{AgentJob, Job, JobId, JobResult};
use faulty_net::{Arrival, FaultyNet};

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
    sim.cut(None);
    sim.run_for(Duration::from_secs(15));
    assert_eq!(sim.applied.get("w1"), Some(&1));
    assert!(sim.compared["w1"].1 >= 1);
}

mod agent_info;
mod chaos;
mod faulty_net;
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
