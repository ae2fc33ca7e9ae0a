//! The master's sendsync job (PROTOCOL.md §4.4): one batch of daemon requests.

use bytes::Bytes;

use super::AgentEnv;
use crate::proto::jobs::AgentOutcome;

/// Forwards a batch of requests to their daemons, answers in order.
pub(super) fn forward(env: &AgentEnv, requests: &[Bytes]) -> Result<AgentOutcome, String> {
    let Some(daemons) = &env.daemons else {
        return Err("this node forwards no daemon requests".into());
    };
    let requests: Vec<Vec<u8>> = requests.iter().map(|r| r.to_vec()).collect();
    Ok(AgentOutcome::SendSync {
        answers: daemons.forward_batch(&requests),
    })
}
