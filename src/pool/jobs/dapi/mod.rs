//! Distributed-API jobs (PROTOCOL.md §4.5) on the pool's DAPI threads: a checked request runs
//! natively (agent database) or in the framework executor, the master finds the nodes of the
//! agents a request names, and merges the answers of several nodes.

mod agents;
mod ruleset;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::pool::framework::{Framework, FrameworkError};
use crate::pool::jobs::agents::AgentEnv;
use crate::pool::jobs::ruleset::RulesetSource;
use crate::proto::dapi::{merge, DapiJob, DapiOutcome, DapiRequest, Execution, Native, Refusal};
use crate::proto::wazuh_error::WazuhError;

/// A request run with `wait_for_complete` still ends after this long.
const WAIT_FOR_COMPLETE_MAX: Duration = Duration::from_secs(3600);

/// What DAPI jobs need, fixed at start.
pub struct DapiEnv {
    pub agents: Arc<AgentEnv>,
    /// The framework executor, or why this node has none.
    pub framework: Result<Framework, String>,
    /// `timeout_dapi_request`.
    pub timeout: Duration,
    /// This node's custom ruleset digests (set by the pool runner; `None` in simulations).
    pub ruleset: Option<RulesetSource>,
}

/// Runs one DAPI job.
pub(crate) fn run(env: &DapiEnv, job: DapiJob) -> DapiOutcome {
    match job {
        DapiJob::Run { request, execution } => {
            DapiOutcome::Ran(run_request(env, &request, execution))
        }
        DapiJob::Solve { agents } => DapiOutcome::Solved(
            agents::solve(&env.agents, agents.as_deref()).map_err(|e| e.to_string()),
        ),
        DapiJob::Merge { parts, kwargs } => DapiOutcome::Merged(merged(env, &parts, &kwargs)),
    }
}

fn run_request(env: &DapiEnv, request: &[u8], execution: Execution) -> Result<Bytes, String> {
    let parsed = DapiRequest::parse(request).map_err(|e| e.to_string())?;
    let body: Map<String, Value> = serde_json::from_slice(request).map_err(|e| e.to_string())?;
    let answer = match execution {
        Execution::Native(native) => native_answer(env, native, &body),
        Execution::Framework => {
            let framework = env.framework.as_ref().map_err(|why| {
                Refusal::NeedsFramework {
                    function: parsed.f.path(),
                    why: why.clone(),
                }
                .to_string()
            })?;
            let timeout = if parsed.wait_for_complete {
                WAIT_FOR_COMPLETE_MAX
            } else {
                env.timeout
            };
            let text = String::from_utf8_lossy(request);
            return match framework.run(&text, timeout) {
                Ok(answer) => Ok(Bytes::from(answer)),
                Err(FrameworkError::Timeout(_)) => Ok(encoded(&WazuhError::new(3021))),
                Err(e) => Err(e.to_string()),
            };
        }
    };
    Ok(match answer {
        Ok(value) => Bytes::from(value.to_string()),
        Err(error) => encoded(&error),
    })
}

fn native_answer(
    env: &DapiEnv,
    native: Native,
    body: &Map<String, Value>,
) -> Result<Value, WazuhError> {
    match native {
        Native::AgentsOverview => agents::overview(&env.agents, body),
        Native::GetAgents => agents::get_agents(&env.agents, body),
        Native::AgentsSummaryStatus => agents::summary_status(&env.agents, body),
        Native::NodeRulesetIntegrity => ruleset::integrity(env.ruleset.as_ref()),
        Native::RulesetSyncStatus => ruleset::sync_status(env.ruleset.as_ref(), body),
        Native::NodesInfo | Native::HealthNodes => Err(WazuhError::with_extra(
            1000,
            "cluster functions run on the master's event loop, not on the pool",
        )),
    }
}

/// An error as the answer of a request (the API turns it into its error response).
fn encoded(error: &WazuhError) -> Bytes {
    Bytes::from(error.to_payload())
}

fn merged(env: &DapiEnv, parts: &[Bytes], kwargs: &[u8]) -> Bytes {
    if let Ok(framework) = &env.framework {
        let texts: Vec<String> = parts
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        if let Ok(answer) = framework.merge(&texts, env.timeout) {
            return Bytes::from(answer);
        }
    }
    let values: Vec<Value> = parts
        .iter()
        .map(|p| serde_json::from_slice(p).unwrap_or(Value::Null))
        .collect();
    let kwargs: Map<String, Value> = serde_json::from_slice(kwargs).unwrap_or_default();
    Bytes::from(merge::merge(values, &kwargs).to_string())
}
