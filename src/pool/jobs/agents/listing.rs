//! Agent listings from the database: pages for `cluster_control -a` and active agents per node
//! for `get_health`.

use super::AgentEnv;
use crate::proto::jobs::AgentOutcome;

/// One page of the agent listing; `query` is the request JSON.
pub(super) fn page(_env: &AgentEnv, _query: &[u8]) -> Result<AgentOutcome, String> {
    Err("the agent listing is not available yet".into())
}

/// Active agents per node.
pub(super) fn count_active(_env: &AgentEnv) -> Result<AgentOutcome, String> {
    Err("active-agent counts are not available yet".into())
}
