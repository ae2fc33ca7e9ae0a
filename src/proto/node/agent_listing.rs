//! The agent listing behind `cluster_control -a` (local command `get_agents`, an extension: stock
//! nodes list agents through the distributed API) and the active-agent counts of `get_health`
//! (PROTOCOL.md §7.4). Both read the master's agent database in jobs; the answer to a listing comes
//! when its job is done, to a local client (`local_replies`) or on the asking worker's connection.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::local::LocalReply;
use super::master::Master;
use super::{ConnId, Ctx};
use crate::clog_debug;
use crate::proto::agent_jobs::AGENT_STATUSES;
use crate::proto::jobs::{AgentJob, AgentOutcome, Job, JobId, JobOutcome, JobResult};
use crate::proto::wazuh_error::WazuhError;

/// Agents per `get_agents` answer at most, and when the request names no limit.
pub const AGENTS_LIMIT_MAX: u64 = 1000;
const AGENTS_LIMIT_DEFAULT: u64 = 500;

/// Names a filter may list.
const FILTER_NAMES_MAX: usize = 1000;

/// Listings running at once; more are refused rather than queued behind a slow database.
const LISTINGS_MAX: usize = 16;

/// How often the master recounts the active agents of each node.
const COUNT_PERIOD: Duration = Duration::from_secs(5);

/// Who waits for a listing.
#[derive(Debug, Clone, Copy)]
enum Asker {
    Local { local: ConnId, counter: u32 },
    Worker { conn: ConnId, counter: u32 },
}

/// The master's listings in progress and its cached active-agent counts.
#[derive(Default)]
pub(super) struct MasterListing {
    pending: HashMap<JobId, Asker>,
    active: HashMap<String, u64>,
    counting: Option<JobId>,
    next_count: Option<Instant>,
}

impl Master {
    /// `get_agents` from worker `conn`: `None` when the answer comes later.
    pub(super) fn listing_from_worker(
        &mut self,
        conn: ConnId,
        counter: u32,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> Option<(&'static str, Vec<u8>)> {
        if !self.workers.get(&conn).is_some_and(|p| p.accepted) {
            let error = WazuhError::with_extra(3000, "send hello first");
            return Some(("err", error.to_payload()));
        }
        let asker = Asker::Worker { conn, counter };
        self.listing_start(asker, payload, ctx)
            .err()
            .map(|e| ("err", e.to_payload()))
    }

    /// `get_agents` from a client of the master's local socket; answered later when `Ok`.
    pub(super) fn listing_from_local(
        &mut self,
        local: ConnId,
        counter: u32,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> Result<(), WazuhError> {
        self.listing_start(Asker::Local { local, counter }, payload, ctx)
    }

    fn listing_start(
        &mut self,
        asker: Asker,
        payload: &[u8],
        ctx: &mut Ctx,
    ) -> Result<(), WazuhError> {
        let job = listing_job(payload)?;
        let listing = &mut self.sendsync.listing;
        if listing.pending.len() >= LISTINGS_MAX {
            return Err(WazuhError::with_extra(
                3000,
                format!("{LISTINGS_MAX} agent listings are already running; try again later"),
            ));
        }
        let id = ctx.job(Job::Agents(job));
        listing.pending.insert(id, asker);
        Ok(())
    }

    /// A job finished; false when it is neither a listing nor a count.
    pub(super) fn listing_job_done(
        &mut self,
        id: JobId,
        result: &JobResult,
        _ctx: &mut Ctx,
    ) -> bool {
        let listing = &mut self.sendsync.listing;
        if listing.counting == Some(id) {
            listing.counting = None;
            match result {
                Ok(JobOutcome::Agents(AgentOutcome::ActiveAgents { per_node })) => {
                    listing.active = per_node.iter().cloned().collect();
                }
                Ok(other) => clog_debug!(
                    "Master",
                    "Main",
                    "Unexpected outcome of the active-agent count: {other:?}"
                ),
                Err(e) => clog_debug!("Master", "Main", "Could not count the active agents: {e}"),
            }
            return true;
        }
        let Some(asker) = listing.pending.remove(&id) else {
            return false;
        };
        let (command, payload) = match result {
            Ok(JobOutcome::Agents(AgentOutcome::Agents { page })) => {
                ("ok", page.clone().into_bytes())
            }
            Ok(other) => {
                let error = format!("unexpected outcome of the agent listing: {other:?}");
                ("err", WazuhError::with_extra(2007, error).to_payload())
            }
            Err(e) => ("err", WazuhError::with_extra(2007, e.clone()).to_payload()),
        };
        match asker {
            Asker::Local { local, counter } => self.local_replies.push(LocalReply {
                local,
                counter,
                command,
                payload,
            }),
            Asker::Worker { conn, counter } => match self.workers.get_mut(&conn) {
                Some(peer) => {
                    if let Err(e) = peer.conn.reply(counter, command, &payload) {
                        clog_debug!(peer.tag(), "Main", "Could not answer get_agents: {e}");
                    }
                }
                None => clog_debug!(
                    "Master",
                    "Main",
                    "Dropping an agent listing: its worker is gone."
                ),
            },
        }
        true
    }

    /// Recounts the active agents every few seconds, one count at a time.
    pub(super) fn listing_tick(&mut self, ctx: &mut Ctx) {
        let listing = &mut self.sendsync.listing;
        if listing.counting.is_some() || listing.next_count.is_some_and(|at| ctx.now.mono < at) {
            return;
        }
        listing.next_count = Some(ctx.now.mono + COUNT_PERIOD);
        listing.counting = Some(ctx.job(Job::Agents(AgentJob::CountActive)));
    }

    /// Agents last counted active on `node` (0 before the first count).
    pub(super) fn active_agents(&self, node: &str) -> u64 {
        self.sendsync.listing.active.get(node).copied().unwrap_or(0)
    }
}

/// Validates `{"offset", "limit", "filter_node", "filter_status"}` into the listing job; errors
/// are Wazuh's for the same mistakes in the API.
fn listing_job(payload: &[u8]) -> Result<AgentJob, WazuhError> {
    let args: Value = if payload.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(payload).map_err(|e| WazuhError::with_extra(3036, e.to_string()))?
    };
    let Some(args) = args.as_object() else {
        return Err(WazuhError::with_extra(
            3036,
            "the get_agents arguments must be a JSON object",
        ));
    };
    let offset = match args.get("offset") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            WazuhError::with_extra(
                1400,
                format!("offset must be a non-negative integer, got {v}"),
            )
        })?,
    };
    let limit = match args.get("limit") {
        None | Some(Value::Null) => AGENTS_LIMIT_DEFAULT,
        Some(v) => v.as_u64().ok_or_else(|| {
            WazuhError::with_extra(1401, format!("limit must be a positive integer, got {v}"))
        })?,
    };
    if limit == 0 {
        return Err(WazuhError::new(1406));
    }
    if limit > AGENTS_LIMIT_MAX {
        return Err(WazuhError::with_extra(
            1405,
            format!("{limit} agents asked, at most {AGENTS_LIMIT_MAX} per request"),
        ));
    }
    let nodes = names(args.get("filter_node"), "filter_node")?;
    let statuses = names(args.get("filter_status"), "filter_status")?;
    if let Some(bad) = statuses
        .iter()
        .flatten()
        .find(|s| !AGENT_STATUSES.contains(&s.as_str()))
    {
        return Err(WazuhError::with_extra(
            1407,
            format!(
                "unknown agent status '{bad}' (valid: {})",
                AGENT_STATUSES.join(", ")
            ),
        ));
    }
    Ok(AgentJob::ListAgents {
        offset,
        limit,
        nodes,
        statuses,
    })
}

/// A filter: `null`, a name or a list of names; `None` (no filter) also when it is empty or holds
/// `all`, as in the agents overview.
fn names(value: Option<&Value>, key: &str) -> Result<Option<Vec<String>>, WazuhError> {
    let wrong = || {
        WazuhError::with_extra(
            1407,
            format!("{key} must be null, a string or a list of strings"),
        )
    };
    let list: Vec<String> = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(wrong))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(wrong()),
    };
    if list.len() > FILTER_NAMES_MAX {
        return Err(WazuhError::with_extra(
            1407,
            format!(
                "{key} lists {} names, at most {FILTER_NAMES_MAX}",
                list.len()
            ),
        ));
    }
    if let Some(bad) = list.iter().find(|n| n.chars().any(char::is_control)) {
        return Err(WazuhError::with_extra(
            1407,
            format!("invalid name {bad:?} in {key}"),
        ));
    }
    if list.is_empty() || list.iter().any(|n| n == "all") {
        return Ok(None);
    }
    Ok(Some(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(args: &str) -> Result<AgentJob, u32> {
        listing_job(args.as_bytes()).map_err(|e| e.code)
    }

    #[test]
    fn arguments_become_the_listing_job() {
        assert_eq!(
            job(""),
            Ok(AgentJob::ListAgents {
                offset: 0,
                limit: 500,
                nodes: None,
                statuses: None
            })
        );
        assert_eq!(
            job(
                r#"{"offset": 1000, "limit": 1000, "filter_node": ["w1", "w2"], "filter_status": "active"}"#
            ),
            Ok(AgentJob::ListAgents {
                offset: 1000,
                limit: 1000,
                nodes: Some(vec!["w1".into(), "w2".into()]),
                statuses: Some(vec!["active".into()])
            })
        );
        assert_eq!(
            job(r#"{"filter_node": ["all"], "filter_status": [], "limit": null}"#),
            job("{}")
        );
    }

    #[test]
    fn invalid_arguments_have_wazuh_error_codes() {
        assert_eq!(job("{nope"), Err(3036));
        assert_eq!(job("[]"), Err(3036));
        assert_eq!(job(r#"{"offset": -1}"#), Err(1400));
        assert_eq!(job(r#"{"limit": "ten"}"#), Err(1401));
        assert_eq!(job(r#"{"limit": 0}"#), Err(1406));
        assert_eq!(job(r#"{"limit": 1001}"#), Err(1405));
        assert_eq!(job(r#"{"filter_status": ["sleepy"]}"#), Err(1407));
        assert_eq!(job(r#"{"filter_node": 3}"#), Err(1407));
        assert_eq!(job(r#"{"filter_node": ["a\u0000b"]}"#), Err(1407));
    }
}
