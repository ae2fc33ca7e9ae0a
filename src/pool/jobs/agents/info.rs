//! Agent-info jobs (PROTOCOL.md §4.2): the worker's read of its pending agents and the master's
//! application of a worker's report, with the stale-report rule.

use super::AgentEnv;
use crate::proto::jobs::AgentOutcome;

/// Worker: reads the pending agents and builds the string `syn_a_w_m` carries.
pub(super) fn read(_env: &AgentEnv) -> Result<AgentOutcome, String> {
    Err("agent-info reading is not available yet".into())
}

/// Master: applies a worker's agent-info string.
pub(super) fn apply(
    _env: &AgentEnv,
    _worker: &str,
    _payload: &[u8],
) -> Result<AgentOutcome, String> {
    Err("agent-info application is not available yet".into())
}
