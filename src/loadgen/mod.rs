//! The agent simulator behind `cluster-load agents`: many agents registered through one node and
//! reported into its agent database, as the manager daemons of that node would do it.
//!
//! A real deployment puts a node under load from two sides: authd on the node forwards every
//! registration to the master (`sendsync` on the local socket, PROTOCOL.md §4.4), and remoted writes
//! connections, keepalives and status changes of its agents into the node's agent database
//! (PROTOCOL.md §6.1), from where the agent-info sync carries them to the master. The simulator plays
//! both roles against a running node, so the cluster flows can be measured and tested without a
//! single real agent:
//!
//! - [`node`]: what the tool learns about the node and the checks that it is up;
//! - [`register`]: registration through the local socket, with the retries Wazuh's daemons make;
//! - [`agents`]: the connection, keepalive and status reports in the agent database;
//! - [`commands`]: the database command texts and the simulated operating systems;
//! - [`parallel`]: the threads every phase runs on, with progress and a stop on repeated failure;
//! - [`report`]: progress and summary lines, failures grouped by reason.
//!
//! [`dapi`] puts the distributed API under load: agent listings on a node's local socket.

pub mod agents;
pub mod commands;
pub mod dapi;
#[cfg(test)]
mod fake_node;
pub mod node;
pub mod parallel;
pub mod register;
pub mod report;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use node::NodeFacts;
pub use register::Registered;
pub use report::Summary;

/// Most agents one run registers: far above the largest deployments, small enough that the list
/// of registered agents the tool keeps stays a few megabytes.
pub const COUNT_MAX: usize = 1_000_000;
/// Most concurrent connections to the local socket.
pub const CONCURRENCY_MAX: usize = 256;
/// Most concurrent connections to the agent database. The embedded database serves 64 at once
/// (and refuses the rest), and more writers than this only queue on its lock.
pub const DB_CONNECTIONS_MAX: usize = 32;
/// Longest agent name authd accepts.
const NAME_CHARS_MAX: usize = 128;
/// Longest group name (a directory name).
const GROUP_CHARS_MAX: usize = 255;

/// What `cluster-load agents` was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentsOptions {
    /// Install root of the node the agents register through and report to.
    pub home: PathBuf,
    /// Agents to register.
    pub count: usize,
    /// Time between two keepalive rounds.
    pub keepalive_interval: Duration,
    /// How long keepalives are reported after the agents connected; zero stops after connecting.
    pub duration: Duration,
    /// Concurrent connections (one thread each).
    pub concurrency: usize,
    /// Agent names are `<prefix>-<i>`; `None` means `<node name>-agent`.
    pub name_prefix: Option<String>,
    /// Comma-separated groups given at registration.
    pub groups: String,
    /// How long one registration or database command may take.
    pub request_timeout: Duration,
}

/// Why a run could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// An option out of range; the text names it.
    #[error("{0}")]
    Option(String),
    /// The node's configuration is missing, unreadable or has no enabled cluster.
    #[error("{0}")]
    Config(String),
    /// The cluster daemon of the node cannot be reached on its local socket.
    #[error("{0}")]
    Daemon(String),
    /// The node's agent database cannot be reached.
    #[error("{0}")]
    Database(String),
    /// Writing the progress lines failed (a closed pipe).
    #[error("cannot write the progress lines: {0}")]
    Output(#[from] std::io::Error),
}

/// Whether `c` may appear in an agent or group name.
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

impl AgentsOptions {
    /// Checks the options that do not depend on the node; `count` digits are added to the prefix.
    pub fn check(&self) -> Result<(), LoadError> {
        let fail = |text: String| Err(LoadError::Option(text));
        if self.count == 0 || self.count > COUNT_MAX {
            return fail(format!(
                "--count must be between 1 and {COUNT_MAX}, not {}",
                self.count
            ));
        }
        if self.concurrency == 0 || self.concurrency > CONCURRENCY_MAX {
            return fail(format!(
                "--concurrency must be between 1 and {CONCURRENCY_MAX}, not {}",
                self.concurrency
            ));
        }
        if self.keepalive_interval.is_zero() {
            return fail("--keepalive-interval must be at least 1 second".into());
        }
        if self.request_timeout.is_zero() {
            return fail("--request-timeout must be at least 1 second".into());
        }
        if let Some(prefix) = &self.name_prefix {
            check_prefix(prefix, self.count, "--name-prefix")?;
        }
        check_groups(&self.groups)
    }

    /// The name prefix to use on the node named `node_name`.
    pub fn prefix_for(&self, node_name: &str) -> Result<String, LoadError> {
        match &self.name_prefix {
            Some(prefix) => Ok(prefix.clone()),
            None => {
                let prefix = format!("{node_name}-agent");
                check_prefix(
                    &prefix,
                    self.count,
                    "the default prefix (node name + \"-agent\")",
                )
                .map_err(|e| LoadError::Option(format!("{e}; choose one with --name-prefix")))?;
                Ok(prefix)
            }
        }
    }
}

/// Agent names `<prefix>-<i>` must be what authd accepts: 2 to 128 letters, digits, `-`, `_`, `.`.
fn check_prefix(prefix: &str, count: usize, what: &str) -> Result<(), LoadError> {
    if prefix.is_empty() {
        return Err(LoadError::Option(format!("{what} is empty")));
    }
    if let Some(bad) = prefix.chars().find(|c| !name_char(*c)) {
        return Err(LoadError::Option(format!(
            "{what} '{prefix}' has the character '{bad}'; agent names take only letters, digits, '-', '_' and '.'"
        )));
    }
    let longest = prefix.len() + 1 + count.to_string().len();
    if longest > NAME_CHARS_MAX {
        return Err(LoadError::Option(format!(
            "{what} '{prefix}' is too long: agent names would have {longest} characters, at most {NAME_CHARS_MAX} are accepted"
        )));
    }
    Ok(())
}

/// Groups as authd accepts them: comma-separated names of letters, digits, `-`, `_`, `.`.
fn check_groups(groups: &str) -> Result<(), LoadError> {
    for group in groups.split(',') {
        let bad = group.is_empty()
            || group == "."
            || group == ".."
            || group.len() > GROUP_CHARS_MAX
            || !group.chars().all(name_char);
        if bad {
            return Err(LoadError::Option(format!(
                "--groups '{groups}': '{group}' is not a valid group name (1 to {GROUP_CHARS_MAX} letters, digits, '-', '_', '.')"
            )));
        }
    }
    Ok(())
}

/// Runs the whole simulation against the node, printing progress to `out`; the summary says
/// whether every agent registered, connected and reported.
pub fn run_agents(options: &AgentsOptions, out: &mut dyn Write) -> Result<Summary, LoadError> {
    options.check()?;
    let started = Instant::now();
    let node = NodeFacts::discover(&options.home, options.request_timeout)?;
    let prefix = options.prefix_for(&node.node_name)?;
    writeln!(out, "{}", node.describe(options.count, options.concurrency))?;
    let registration = register::register_all(options, &node, &prefix, out)?;
    let mut summary = Summary::new(options.count);
    summary.registered = registration.agents.len();
    summary.registration_failures = registration.failures;
    // Phases with no agent to work on are skipped: their lines would only say nothing happened.
    if registration.agents.is_empty() {
        return finish(summary, started, out);
    }
    let connection = agents::connect_all(options, &node, &registration.agents, out)?;
    summary.connected = connection.connected.len();
    summary.connection_failures = connection.failures;
    if !options.duration.is_zero() && !connection.connected.is_empty() {
        let keepalives = agents::keepalive_rounds(options, &node, &connection.connected, out)?;
        summary.keepalives = keepalives.keepalives;
        summary.report_failures = keepalives.failures;
    }
    finish(summary, started, out)
}

fn finish(
    mut summary: Summary,
    started: Instant,
    out: &mut dyn Write,
) -> Result<Summary, LoadError> {
    summary.elapsed = started.elapsed();
    summary.print(out)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> AgentsOptions {
        AgentsOptions {
            home: PathBuf::from("/nonexistent"),
            count: 10,
            keepalive_interval: Duration::from_secs(10),
            duration: Duration::ZERO,
            concurrency: 32,
            name_prefix: None,
            groups: "default".into(),
            request_timeout: Duration::from_secs(30),
        }
    }

    fn refused(options: &AgentsOptions) -> String {
        options.check().expect_err("refused").to_string()
    }

    #[test]
    fn defaults_are_accepted() {
        options().check().expect("valid");
        let mut groups = options();
        groups.groups = "default,web-servers,db_1.eu".into();
        groups.check().expect("valid groups");
    }

    #[test]
    fn counts_and_concurrency_are_bounded() {
        let mut o = options();
        o.count = 0;
        assert!(refused(&o).contains("--count must be between 1 and"));
        o.count = COUNT_MAX + 1;
        assert!(refused(&o).contains("--count"));
        let mut o = options();
        o.concurrency = 0;
        assert!(refused(&o).contains("--concurrency must be between 1"));
        o.concurrency = CONCURRENCY_MAX + 1;
        assert!(refused(&o).contains("--concurrency"));
        let mut o = options();
        o.keepalive_interval = Duration::ZERO;
        assert!(refused(&o).contains("--keepalive-interval"));
    }

    #[test]
    fn prefixes_must_make_valid_agent_names() {
        let mut o = options();
        o.name_prefix = Some("web server".into());
        assert!(refused(&o).contains("has the character ' '"));
        o.name_prefix = Some(String::new());
        assert!(refused(&o).contains("is empty"));
        o.name_prefix = Some("a".repeat(NAME_CHARS_MAX - 2));
        assert!(refused(&o).contains("too long"), "{}", refused(&o));
        o.name_prefix = Some("a".repeat(NAME_CHARS_MAX - 3));
        o.check().expect("128 characters with '-10'");
        o.name_prefix = Some("lab.eu_1".into());
        assert_eq!(o.prefix_for("worker1").expect("given"), "lab.eu_1");
    }

    #[test]
    fn default_prefix_comes_from_the_node_name() {
        let o = options();
        assert_eq!(o.prefix_for("worker1").expect("valid"), "worker1-agent");
        let error = o.prefix_for("node#2").expect_err("invalid").to_string();
        assert!(error.contains("--name-prefix"), "{error}");
    }

    #[test]
    fn groups_are_checked() {
        for bad in ["", "a,,b", "..", "web servers", "a/b"] {
            let mut o = options();
            o.groups = bad.into();
            assert!(
                refused(&o).contains("is not a valid group name"),
                "{bad}: {}",
                refused(&o)
            );
        }
    }
}
