//! Runs the engine's jobs on the pinned pool. The shared state a job needs (the master's snapshot,
//! the integrity caches) lives here, behind locks held only by the job that uses it; results go back
//! to the event loop as plain data.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use futures_channel::mpsc::UnboundedSender;

use crate::metrics;

use super::apply::ApplyPolicy;
use super::integrity::IntegrityCache;
use super::jobs;
use super::jobs::agents::AgentEnv;
use super::jobs::dapi::DapiEnv;
use super::jobs::ruleset::RulesetSource;
use super::threads::Observed;
use super::threads::{JobError, Pool};
use crate::config::{Dialect, FilesTable};
use crate::proto::jobs::{Job, JobId, JobOutcome, JobResult, JobRunner};
use crate::store::WazuhDb;
use crate::sync::{HashKind, Metadata};

/// Everything about this node the jobs need, fixed at start.
#[derive(Debug, Clone)]
pub struct SyncEnv {
    pub home: PathBuf,
    pub node_name: String,
    pub files: FilesTable,
    pub dialect: Dialect,
    pub compress_level: u32,
    pub max_zip_size: u64,
    pub policy: ApplyPolicy,
}

impl SyncEnv {
    pub fn hash(&self) -> HashKind {
        HashKind::of(self.dialect)
    }
}

/// State shared by the jobs of one node.
pub(super) struct Shared {
    pub(super) env: SyncEnv,
    /// The master's last local-integrity result, compared against every worker.
    pub(super) snapshot: RwLock<Arc<Metadata>>,
    /// Cache of the master's local integrity.
    pub(super) master_cache: Mutex<IntegrityCache>,
    /// Cache of this node's own metadata (what a worker sends).
    pub(super) own_cache: Mutex<IntegrityCache>,
    /// Cache of the custom ruleset's digests (`get_hash`).
    pub(super) ruleset_cache: Mutex<IntegrityCache>,
    /// Digest of the `client.keys` content whose agents the master last reported (outer `None`:
    /// none reported yet), so the file is parsed only when it changes.
    pub(super) client_keys_read: Mutex<Option<Option<String>>>,
    /// The agent database, once the agent threads are added: the 4.3 master asks it which
    /// agents exist before it requests their agent-group files.
    pub(super) agents_db: OnceLock<Arc<dyn WazuhDb>>,
}

/// The pool, fed with engine jobs.
pub struct PoolRunner {
    pool: Pool<JobOutcome>,
    shared: Arc<Shared>,
    results: UnboundedSender<(JobId, JobResult)>,
    /// Agent-database jobs run on threads of their own, so a slow database never queues behind
    /// (or holds up) hashing and packaging.
    agents: Option<(Pool<JobOutcome>, Arc<AgentEnv>)>,
    /// Distributed-API requests run on threads of their own too: a slow API call never holds up
    /// the agent flows, and at most as many run at once as there are threads.
    dapi: Option<(Pool<JobOutcome>, Arc<DapiEnv>)>,
}

impl PoolRunner {
    /// `threads` = 0: one per core. Results are sent on `results`.
    pub fn new(
        env: SyncEnv,
        threads: usize,
        queue_capacity: usize,
        results: UnboundedSender<(JobId, JobResult)>,
    ) -> io::Result<PoolRunner> {
        let pool = Pool::observed(
            threads,
            queue_capacity,
            deliverer(results.clone()),
            Some(Observed {
                queue: Some(metrics::Queue::Pool),
                pool: metrics::Pool::Files,
            }),
        )?;
        let shared = Arc::new(Shared {
            env,
            snapshot: RwLock::new(Arc::new(Metadata::new())),
            master_cache: Mutex::new(IntegrityCache::default()),
            own_cache: Mutex::new(IntegrityCache::default()),
            ruleset_cache: Mutex::new(IntegrityCache::default()),
            client_keys_read: Mutex::new(None),
            agents_db: OnceLock::new(),
        });
        Ok(PoolRunner {
            pool,
            shared,
            results,
            agents: None,
            dapi: None,
        })
    }

    /// Adds the agent threads and what their jobs need; without them agent jobs fail.
    pub fn with_agents(
        mut self,
        env: AgentEnv,
        threads: usize,
        queue_capacity: usize,
    ) -> io::Result<PoolRunner> {
        let pool = Pool::observed(
            threads.max(1),
            queue_capacity,
            deliverer(self.results.clone()),
            Some(Observed {
                queue: Some(metrics::Queue::Agents),
                pool: metrics::Pool::Agents,
            }),
        )?;
        let _ = self.shared.agents_db.set(env.db.clone());
        self.agents = Some((pool, Arc::new(env)));
        Ok(self)
    }

    /// Adds the distributed-API threads; without them DAPI jobs fail.
    pub fn with_dapi(
        mut self,
        mut env: DapiEnv,
        threads: usize,
        queue_capacity: usize,
    ) -> io::Result<PoolRunner> {
        let pool = Pool::observed(
            threads.max(1),
            queue_capacity,
            deliverer(self.results.clone()),
            Some(Observed {
                queue: None,
                pool: metrics::Pool::Dapi,
            }),
        )?;
        env.ruleset = Some(RulesetSource::new(self.shared.clone()));
        self.dapi = Some((pool, Arc::new(env)));
        Ok(self)
    }

    /// The agent environment, shared with the distributed-API jobs.
    pub fn agent_env(&self) -> Option<Arc<AgentEnv>> {
        self.agents.as_ref().map(|(_, env)| env.clone())
    }

    pub fn threads(&self) -> usize {
        self.pool.threads()
    }
}

/// Sends a job's result to the event loop.
fn deliverer(
    results: UnboundedSender<(JobId, JobResult)>,
) -> impl Fn(JobId, Result<JobOutcome, JobError>) + Send + Sync + 'static {
    move |id, result| {
        let _ = results.unbounded_send((id, result.map_err(|e| e.to_string())));
    }
}

impl JobRunner for PoolRunner {
    fn submit(&self, id: JobId, job: Job) -> Result<(), String> {
        if let Job::Agents(job) = job {
            let Some((pool, env)) = &self.agents else {
                return Err("this node has no agent database".into());
            };
            let env = env.clone();
            return pool
                .submit(id, move || {
                    jobs::agents::run(&env, job)
                        .map(JobOutcome::Agents)
                        .map_err(JobError::Failed)
                })
                .map_err(|e| format!("the agent threads cannot take the job: {e}"));
        }
        if let Job::Dapi(job) = job {
            let Some((pool, env)) = &self.dapi else {
                return Err("this node runs no distributed-API threads".into());
            };
            let env = env.clone();
            return pool
                .submit(id, move || Ok(JobOutcome::Dapi(jobs::dapi::run(&env, job))))
                .map_err(|e| format!("the distributed-API threads cannot take the job: {e}"));
        }
        let shared = self.shared.clone();
        self.pool
            .submit(id, move || run(&shared, job).map_err(JobError::Failed))
            .map_err(|e| format!("the worker pool cannot take the job: {e}"))
    }
}

fn run(shared: &Shared, job: Job) -> Result<JobOutcome, String> {
    match job {
        Job::LocalIntegrity => jobs::integrity::local(shared),
        Job::WorkerPackage { rel } => jobs::integrity::worker_package(shared, &rel),
        Job::Compare {
            worker,
            rel,
            out_rel,
            zip_limit_bytes,
        } => jobs::compare::compare(shared, &worker, &rel, &out_rel, zip_limit_bytes),
        Job::Apply {
            rel,
            extra_valid_rel,
        } => jobs::apply_package::apply_package(shared, &rel, &extra_valid_rel),
        Job::ExtraValid { worker, rel } => jobs::extra_valid::receive(shared, &worker, &rel),
        Job::Agents(_) => Err("agent jobs run on the agent threads".into()),
        Job::Dapi(_) => Err("distributed-API jobs run on their own threads".into()),
        Job::LocalFile { path } => jobs::files::local_file(&shared.env.home, &path)
            .map(|(rel, bytes)| JobOutcome::LocalFile { rel, bytes }),
        Job::RulesetHashes => jobs::ruleset::hashes(shared).map(JobOutcome::RulesetHashes),
        Job::ReloadRuleset => {
            jobs::ruleset::reload(&shared.env.home).map(JobOutcome::RulesetReload)
        }
    }
}
