//! What remoted reports for its agents into the node's agent database: each agent's connection,
//! then rounds of keepalives with a few agents dropping off and coming back.
//!
//! Everything goes through the database's socket (`queue/db/wdb`) exactly as remoted's commands do,
//! so the node's agent-info sync sees the same `syncreq`, `syncreq_keepalive` and `syncreq_status`
//! marks it would see in production.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::commands::{self, Reporter};
use super::parallel::{self, Outcome, Phase, Tally};
use super::register::Registered;
use super::report::Failures;
use super::{AgentsOptions, LoadError, NodeFacts, DB_CONNECTIONS_MAX};
use crate::store::{query_ok, DbError, WdbSocket};

/// Share of the agents that disconnect in each keepalive round (they come back the round after).
pub const DISCONNECT_PERCENT: usize = 1;

/// Database connections used: one per thread, as many as asked up to [`DB_CONNECTIONS_MAX`].
fn db_threads(options: &AgentsOptions) -> usize {
    options.concurrency.min(DB_CONNECTIONS_MAX)
}

/// Failures in a row that stop a database phase: the database is gone or refuses everything.
fn db_failures_max(options: &AgentsOptions) -> usize {
    parallel::failures_in_a_row_max(db_threads(options))
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs one command; `Err(reason)` says which command failed and why.
fn run(db: &WdbSocket, command: &str) -> Result<(), String> {
    query_ok(db, command).map(drop).map_err(|e| {
        let name = command.split(' ').nth(1).unwrap_or(command);
        format!("{name}: {}", reason(&e))
    })
}

fn reason(error: &DbError) -> String {
    match error {
        DbError::Wdb(text) => format!("err {text}"),
        other => other.to_string(),
    }
}

/// The agents reported connected, and the failures.
pub struct Connection {
    pub connected: Vec<Registered>,
    pub failures: Failures,
}

/// Reports every registered agent connected: its row (created unless it exists) and its data.
pub fn connect_all(
    options: &AgentsOptions,
    node: &NodeFacts,
    agents: &[Registered],
    out: &mut dyn Write,
) -> Result<Connection, LoadError> {
    let reporter = node.reporter();
    let total = agents.len();
    let line = move |tally: &Tally, elapsed: Duration| {
        parallel::progress_text("connected", total, tally, elapsed)
    };
    let phase = Phase {
        threads: db_threads(options),
        consecutive_failures_max: db_failures_max(options),
        progress: Some(&line),
    };
    let result = parallel::run(
        &phase,
        agents,
        |agent| agent.name.clone(),
        || node.database(options.request_timeout),
        |db, agent, _| {
            let insert = commands::insert_agent(agent.id, &agent.name, now_s());
            match query_ok(db, &insert) {
                Ok(_) => {}
                Err(DbError::Wdb(text)) if commands::already_inserted(&text) => {}
                Err(e) => return Outcome::Failed(format!("insert-agent: {}", reason(&e))),
            }
            match run(db, &reporter.update_agent_data(agent.id, &agent.name)) {
                Ok(()) => Outcome::Done(agent.clone()),
                Err(reason) => Outcome::Failed(reason),
            }
        },
        out,
    )?;
    Ok(Connection {
        connected: result.results,
        failures: result.failures,
    })
}

/// What one agent reports in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Keepalive,
    Disconnect,
    /// Back after a disconnection: its startup (`pending`), then its first keepalive, which
    /// carries the agent's whole data as after any startup.
    Reconnect,
}

/// The reports of round `round` (1, 2, ...) for agents whose state is `disconnected` (updated):
/// those disconnected come back; a window of [`DISCONNECT_PERCENT`] of the agents, moving each
/// round, disconnects; the others send a keepalive.
pub fn plan_round(disconnected: &mut [bool], round: usize) -> Vec<Report> {
    let n = disconnected.len();
    if n == 0 {
        return Vec::new();
    }
    let share = n.div_ceil(100 / DISCONNECT_PERCENT);
    let start = (round.saturating_sub(1) * share) % n;
    let in_window = |i: usize| (i + n - start) % n < share;
    disconnected
        .iter_mut()
        .enumerate()
        .map(|(i, down)| {
            if *down {
                *down = false;
                Report::Reconnect
            } else if in_window(i) {
                *down = true;
                Report::Disconnect
            } else {
                Report::Keepalive
            }
        })
        .collect()
}

/// Counts of the keepalive phase.
pub struct Keepalives {
    pub rounds: usize,
    pub keepalives: usize,
    pub failures: Failures,
}

/// Sends keepalive rounds every `options.keepalive_interval` for `options.duration`, one line per
/// round: `keepalive round 3 at 1732280000.123: 10000 keepalives, 100 disconnected, 100 reconnected`.
pub fn keepalive_rounds(
    options: &AgentsOptions,
    node: &NodeFacts,
    agents: &[Registered],
    out: &mut dyn Write,
) -> Result<Keepalives, LoadError> {
    let mut totals = Keepalives {
        rounds: 0,
        keepalives: 0,
        failures: Failures::default(),
    };
    let reporter = node.reporter();
    let started = Instant::now();
    let mut disconnected = vec![false; agents.len()];
    loop {
        let rounds = u32::try_from(totals.rounds + 1).unwrap_or(u32::MAX);
        let due = options.keepalive_interval.checked_mul(rounds);
        let Some(due) = due.filter(|due| *due <= options.duration) else {
            break;
        };
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            thread::sleep(wait);
        }
        totals.rounds += 1;
        let plan = plan_round(&mut disconnected, totals.rounds);
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let round = one_round(options, node, &reporter, agents, &plan, out)?;
        totals.keepalives += round.keepalives;
        let mut line = format!(
            "keepalive round {} at {at:.3}: {} keepalives, {} disconnected, {} reconnected",
            totals.rounds, round.keepalives, round.disconnected, round.reconnected
        );
        if round.failures.count() > 0 {
            line.push_str(&format!(", {} failed", round.failures.count()));
        }
        writeln!(out, "{line}")?;
        totals.failures.merge(round.failures);
    }
    Ok(totals)
}

/// Counts of one round.
struct Round {
    keepalives: usize,
    disconnected: usize,
    reconnected: usize,
    failures: Failures,
}

fn one_round(
    options: &AgentsOptions,
    node: &NodeFacts,
    reporter: &Reporter,
    agents: &[Registered],
    plan: &[Report],
    out: &mut dyn Write,
) -> Result<Round, LoadError> {
    let phase = Phase {
        threads: db_threads(options),
        consecutive_failures_max: db_failures_max(options),
        progress: None,
    };
    let work: Vec<(&Registered, Report)> = agents.iter().zip(plan.iter().copied()).collect();
    let result = parallel::run(
        &phase,
        &work,
        |(agent, _)| agent.name.clone(),
        || node.database(options.request_timeout),
        |db, (agent, report), _| {
            let sent = match report {
                Report::Keepalive => run(db, &reporter.keepalive(agent.id)),
                Report::Disconnect => run(db, &reporter.shutdown(agent.id)),
                Report::Reconnect => run(db, &reporter.startup(agent.id))
                    .and_then(|()| run(db, &reporter.update_agent_data(agent.id, &agent.name))),
            };
            match sent {
                Ok(()) => Outcome::Done(*report),
                Err(reason) => Outcome::Failed(reason),
            }
        },
        out,
    )?;
    let count = |kind: Report| result.results.iter().filter(|r| **r == kind).count();
    let reconnected = count(Report::Reconnect);
    Ok(Round {
        keepalives: count(Report::Keepalive) + reconnected,
        disconnected: count(Report::Disconnect),
        reconnected,
        failures: result.failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeType;
    use crate::store::backend::WDB_SOCKET;
    use crate::store::{EmbeddedDb, ServerLimits, WazuhDb, WdbServer};
    use std::path::PathBuf;
    use std::sync::Arc;

    /// A node home whose agent database is an embedded one served on `queue/db/wdb`.
    fn node_with_database(dir: &std::path::Path) -> (NodeFacts, Arc<EmbeddedDb>, WdbServer) {
        std::fs::create_dir_all(dir.join("queue/db")).expect("mkdir");
        let db = Arc::new(EmbeddedDb::in_memory().expect("db"));
        db.set_worker_node(true);
        let shared: Arc<dyn WazuhDb> = db.clone();
        let server = WdbServer::start(&dir.join(WDB_SOCKET), shared, ServerLimits::default())
            .expect("serve");
        let node = NodeFacts {
            home: dir.to_path_buf(),
            node_name: "worker1".into(),
            node_type: NodeType::Worker,
            wazuh_version: "4.14.7".into(),
            dialect: crate::config::Dialect::V4_14,
            manager_host: "host1".into(),
            agents_before: Some(0),
        };
        (node, db, server)
    }

    fn options(home: PathBuf) -> AgentsOptions {
        AgentsOptions {
            home,
            count: 150,
            keepalive_interval: Duration::from_millis(200),
            duration: Duration::from_millis(500),
            concurrency: 4,
            name_prefix: None,
            groups: "default".into(),
            request_timeout: Duration::from_secs(5),
        }
    }

    fn sql(db: &EmbeddedDb, query: &str) -> serde_json::Value {
        let reply = db.query(&format!("global sql {query}")).expect("query");
        serde_json::from_str(&reply.payload).expect("json")
    }

    #[test]
    fn agents_are_connected_then_keep_alive_in_the_database() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (node, db, server) = node_with_database(dir.path());
        let options = options(dir.path().to_path_buf());
        let agents: Vec<Registered> = (1..=150)
            .map(|id| Registered {
                id,
                name: format!("worker1-agent-{id}"),
            })
            .collect();
        // One row exists already, as the agent-groups sync would have created it.
        db.query(r#"global insert-agent {"id":5,"name":"worker1-agent-5","date_add":1}"#)
            .expect("insert");
        let mut out = Vec::new();
        let connection = connect_all(&options, &node, &agents, &mut out).expect("connect");
        assert_eq!(connection.connected.len(), 150);
        assert_eq!(connection.failures.count(), 0);
        let text = String::from_utf8(out).expect("text");
        assert!(text.contains("connected 150/150 agents ("), "{text}");
        let rows = sql(
            &db,
            "SELECT COUNT(*) AS n FROM agent WHERE id > 0 AND node_name = 'worker1' AND connection_status = 'active' AND sync_status = 'syncreq' AND version = 'Wazuh v4.14.7'",
        );
        assert_eq!(rows[0]["n"], 150);
        // The agent-info sync takes the connections (and marks the agents synced).
        let (code, _) = db.http("GET", "/v1/agents/sync", b"").expect("sync get");
        assert_eq!(code, 200);

        let mut out = Vec::new();
        let keepalives =
            keepalive_rounds(&options, &node, &connection.connected, &mut out).expect("rounds");
        let text = String::from_utf8(out).expect("text");
        assert_eq!(keepalives.rounds, 2, "{text}");
        assert_eq!(keepalives.keepalives, 2 * 148, "{text}");
        assert_eq!(keepalives.failures.count(), 0, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("keepalive round 1 at "), "{text}");
        assert!(
            lines[0].ends_with(": 148 keepalives, 2 disconnected, 0 reconnected"),
            "{text}"
        );
        assert!(
            lines[1].ends_with(": 148 keepalives, 2 disconnected, 2 reconnected"),
            "{text}"
        );
        let down = sql(
            &db,
            "SELECT COUNT(*) AS n FROM agent WHERE connection_status = 'disconnected' AND disconnection_time > 0",
        );
        assert_eq!(down[0]["n"], 2);
        // What the next agent-info sync carries: the shutdowns as status changes, the agents back
        // from a startup whole (keepalive included), the others their keepalive only.
        let marks = sql(
            &db,
            "SELECT sync_status, connection_status, COUNT(*) AS n FROM agent WHERE id > 0 \
             GROUP BY sync_status, connection_status ORDER BY sync_status",
        );
        assert_eq!(
            marks,
            serde_json::json!([
                {"sync_status": "syncreq", "connection_status": "active", "n": 2},
                {"sync_status": "syncreq_keepalive", "connection_status": "active", "n": 146},
                {"sync_status": "syncreq_status", "connection_status": "disconnected", "n": 2},
            ])
        );
        server.stop();
    }

    #[test]
    fn a_database_that_refuses_everything_stops_the_phase() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (node, _db, server) = node_with_database(dir.path());
        let options = options(dir.path().to_path_buf());
        let agents: Vec<Registered> = (1..=500)
            .map(|id| Registered {
                id,
                name: format!("a-{id}"),
            })
            .collect();
        // The database goes away before the agents connect.
        server.stop();
        let connection = connect_all(&options, &node, &agents, &mut Vec::new()).expect("run");
        assert!(connection.connected.is_empty());
        assert_eq!(connection.failures.count(), 500);
        let text = connection.failures.describe("connection");
        assert!(text.contains("cannot connect"), "{text}");
        assert!(
            text.contains("not attempted: stopped after 10 failures in a row"),
            "{text}"
        );
    }

    fn tally(plan: &[Report]) -> (usize, usize, usize) {
        let count = |kind: Report| plan.iter().filter(|r| **r == kind).count();
        (
            count(Report::Keepalive),
            count(Report::Disconnect),
            count(Report::Reconnect),
        )
    }

    #[test]
    fn one_percent_disconnects_and_comes_back_next_round() {
        let mut down = vec![false; 300];
        let first = plan_round(&mut down, 1);
        assert_eq!(tally(&first), (297, 3, 0));
        let second = plan_round(&mut down, 2);
        assert_eq!(tally(&second), (294, 3, 3));
        // The window moves: round 2 disconnects others than round 1 did.
        for (a, b) in first.iter().zip(&second) {
            assert!(!(*a == Report::Disconnect && *b == Report::Disconnect));
            if *a == Report::Disconnect {
                assert_eq!(*b, Report::Reconnect);
            }
        }
    }

    #[test]
    fn small_fleets_still_see_status_changes() {
        let mut down = vec![false; 1];
        assert_eq!(plan_round(&mut down, 1), [Report::Disconnect]);
        assert_eq!(plan_round(&mut down, 2), [Report::Reconnect]);
        assert_eq!(plan_round(&mut down, 3), [Report::Disconnect]);
        let mut down = vec![false; 10_000];
        assert_eq!(tally(&plan_round(&mut down, 7)), (9_900, 100, 0));
        assert!(plan_round(&mut [], 1).is_empty());
    }

    #[test]
    fn the_window_wraps_around() {
        let mut down = vec![false; 250];
        for round in 1..=200 {
            let (keep, gone, back) = tally(&plan_round(&mut down, round));
            assert_eq!(keep + gone + back, 250);
            assert_eq!(gone, 3, "round {round}");
        }
    }
}
