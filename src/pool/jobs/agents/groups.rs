//! Agent-groups jobs (PROTOCOL.md §4.3): the master's collection of group changes and the
//! worker's application of what it receives, with the checksum comparison.

use super::AgentEnv;
use crate::proto::jobs::AgentOutcome;

/// Master: collects group changes (`full`: every agent).
pub(super) fn collect(_env: &AgentEnv, _full: bool) -> Result<AgentOutcome, String> {
    Err("agent-groups collection is not available yet".into())
}

/// Worker: applies an agent-groups string from the master.
pub(super) fn apply(_env: &AgentEnv, _payload: &[u8], _full: bool) -> Result<AgentOutcome, String> {
    Err("agent-groups application is not available yet".into())
}
