//! Agent-database jobs (PROTOCOL.md §4.2–§4.4, §6): they run on the pool's agent threads, talk to
//! the agent database through [`WazuhDb`] (embedded SQLite or a real wazuh-db, the job cannot tell)
//! and return plain data to the engine.

mod groups;
mod info;
pub(crate) mod listing;
pub(crate) mod rows;
mod sendsync;

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Dialect;
use crate::proto::jobs::{AgentJob, AgentOutcome};
use crate::store::WazuhDb;

/// Where sendsync requests go on the master: authd (or the embedded registration service) and
/// the other daemons' sockets.
pub trait DaemonForwarder: Send + Sync {
    /// One answer per request, in order: the daemon's answer text, or an error text.
    fn forward_batch(&self, requests: &[Vec<u8>]) -> Vec<Result<String, String>>;
}

/// What agent jobs need, fixed at start.
pub struct AgentEnv {
    pub db: Arc<dyn WazuhDb>,
    /// Master only: the sendsync destinations.
    pub daemons: Option<Arc<dyn DaemonForwarder>>,
    pub dialect: Dialect,
    pub node_name: String,
    pub home: PathBuf,
}

/// Runs one agent job.
pub(crate) fn run(env: &AgentEnv, job: AgentJob) -> Result<AgentOutcome, String> {
    match job {
        AgentJob::InfoRead { carry, recover } => {
            // The string of an earlier daemon's round the master never confirmed.
            let carry = carry.or_else(|| recover.then(|| info::pending::load(&env.home)).flatten());
            let mut outcome = info::read(env, carry.as_deref());
            if let Ok(AgentOutcome::InfoRead { payload, error, .. }) = &mut outcome {
                if let Err(e) = info::pending::store(&env.home, payload.as_deref()) {
                    *error = Some(match error.take() {
                        Some(first) => format!("{first}; {e}"),
                        None => e,
                    });
                }
            }
            outcome
        }
        AgentJob::InfoApply { worker, payload } => info::apply(env, &worker, &payload),
        AgentJob::GroupsCollect { full } => groups::collect(env, full),
        AgentJob::GroupsEnvelope {
            pending,
            rounds,
            keys,
            hash,
        } => groups::envelope(&pending, &rounds, &keys, hash.as_ref()),
        AgentJob::GroupsApply { payload, full } => groups::apply(env, &payload, full),
        AgentJob::SendSync { requests } => sendsync::forward(env, &requests),
        AgentJob::ListAgents {
            offset,
            limit,
            nodes,
            statuses,
        } => listing::page(env, offset, limit, nodes.as_deref(), statuses.as_deref()),
        AgentJob::CountActive => listing::count_active(env),
    }
}

impl DaemonForwarder for crate::store::DaemonRouter {
    fn forward_batch(&self, requests: &[Vec<u8>]) -> Vec<Result<String, String>> {
        crate::store::DaemonRouter::forward_batch(self, requests)
    }
}
