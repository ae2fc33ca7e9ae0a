//! Registration through the node's local socket, as authd on that node forwards it to the master:
//! one `sendsync` at a time per connection, each waiting for the master's answer.
//!
//! Retries follow the daemons' own helper (up to ten attempts, one second apart) for what a retry can
//! cure: the node or its link to the master failing (`err` answers, a broken connection) and authd
//! errors that depend on the moment (an internal error, a key that could not be made, the agent
//! limit). Answers that a retry cannot change (a duplicate or invalid name, an invalid group) fail
//! at once, and so does a request that got no answer in time: it may have been carried out, and a
//! retry would then only report a duplicate.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::commands::add_request;
use super::parallel::{self, Outcome, Phase, Tally};
use super::report::Failures;
use super::{AgentsOptions, LoadError, NodeFacts};
use crate::control::client::{ControlError, LocalClient};

/// Attempts per registration, as the daemons' helper makes them.
pub const ATTEMPTS: usize = 10;
/// Pause between two attempts.
pub const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// A local connection is replaced after this long: the node drops local clients that send no
/// keepalive for two minutes, and opening a connection costs far less than losing one mid-request.
const CONNECTION_AGE_MAX: Duration = Duration::from_secs(60);
/// Longest part of an unexpected answer quoted in a failure reason.
const QUOTE_CHARS_MAX: usize = 120;

/// An agent the master registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub id: u32,
    pub name: String,
}

/// What registering one agent came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Done(Registered),
    /// Worth another attempt.
    Retry(String),
    /// Final.
    Failed(String),
}

/// authd codes a second attempt cannot change: the request itself is at fault, or the name is taken.
fn definitive(code: i64) -> bool {
    matches!(code, 9002..=9008 | 9010 | 9011 | 9014)
}

/// Reads authd's answer to `add`: `{"error":0,"data":{"id":"001","name":..,"key":..}}` or
/// `{"error":<code>,"message":<text>}`.
pub fn parse_add_answer(answer: &str, name: &str) -> Attempt {
    let Ok(value) = serde_json::from_str::<Value>(answer) else {
        return Attempt::Failed(format!("answer is not JSON: '{}'", quote(answer)));
    };
    let Some(code) = value.get("error").and_then(Value::as_i64) else {
        return Attempt::Failed(format!("answer has no error code: '{}'", quote(answer)));
    };
    if code != 0 {
        let message = value["message"].as_str().unwrap_or("(no message)");
        let reason = format!("authd error {code}: {message}");
        return if definitive(code) {
            Attempt::Failed(reason)
        } else {
            Attempt::Retry(reason)
        };
    }
    let data = &value["data"];
    let id = match &data["id"] {
        Value::String(text) => text.parse::<u32>().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    };
    let Some(id) = id.filter(|id| *id > 0) else {
        return Attempt::Failed(format!("answer has no valid agent id: '{}'", quote(answer)));
    };
    if data["key"].as_str().is_none_or(str::is_empty) {
        return Attempt::Failed(format!("answer has no agent key: '{}'", quote(answer)));
    }
    let name = data["name"].as_str().unwrap_or(name).to_owned();
    Attempt::Done(Registered { id, name })
}

/// The start of `text`, short enough for a failure line.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS_MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// The reason text of a local-socket failure, with the error code a node sent when there is one.
fn control_reason(error: &ControlError) -> String {
    match error {
        // Plain-text errors (a daemon's own words) come wrapped in code 3000: show just the words.
        ControlError::Remote(e) if e.code == 3000 => {
            e.extra.clone().unwrap_or_else(|| e.to_string())
        }
        other => other.to_string(),
    }
}

/// One thread's connection to the node's local socket, opened on demand.
pub struct Session {
    home: std::path::PathBuf,
    timeout: Duration,
    client: Option<(LocalClient, Instant)>,
}

impl Session {
    pub fn new(home: &std::path::Path, timeout: Duration) -> Session {
        Session {
            home: home.to_path_buf(),
            timeout,
            client: None,
        }
    }

    /// One attempt at registering `name`.
    pub fn attempt(&mut self, request: &[u8], name: &str) -> Attempt {
        if self
            .client
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() >= CONNECTION_AGE_MAX)
        {
            self.client = None;
        }
        let client = match &mut self.client {
            Some((client, _)) => client,
            None => match LocalClient::connect(&self.home, self.timeout) {
                Ok(client) => &mut self.client.insert((client, Instant::now())).0,
                Err(e) => return Attempt::Retry(e.to_string()),
            },
        };
        match client.sendsync(request) {
            Ok(answer) => parse_add_answer(&answer, name),
            // The node answered: the connection is in step.
            Err(e @ ControlError::Remote(_)) => Attempt::Retry(control_reason(&e)),
            Err(e @ ControlError::Timeout(_)) => {
                self.client = None;
                Attempt::Failed(format!(
                    "{e} (not retried: the request may have been carried out)"
                ))
            }
            Err(e) => {
                self.client = None;
                Attempt::Retry(e.to_string())
            }
        }
    }

    /// Registers `name`, retrying as the daemons do; the reason of the last attempt on failure.
    pub fn register(
        &mut self,
        name: &str,
        groups: &str,
        tally: &Tally,
    ) -> Result<Registered, String> {
        let request = add_request(name, groups);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match self.attempt(&request, name) {
                Attempt::Done(agent) => return Ok(agent),
                Attempt::Failed(reason) => return Err(reason),
                Attempt::Retry(reason) => last = reason,
            }
            if attempt < ATTEMPTS {
                if tally.stopping() {
                    return Err(format!("{last} (retries abandoned: the run is stopping)"));
                }
                thread::sleep(RETRY_PAUSE);
            }
        }
        Err(format!("{last} (after {ATTEMPTS} attempts)"))
    }
}

/// The agents registered and the failures.
pub struct Registration {
    /// In name order (`<prefix>-1` first).
    pub agents: Vec<Registered>,
    pub failures: Failures,
}

/// Registers `options.count` agents `<prefix>-1` … `<prefix>-<count>` on `options.concurrency`
/// connections, printing `registered 5000/10000 agents (1234.5/s)` every two seconds.
pub fn register_all(
    options: &AgentsOptions,
    node: &NodeFacts,
    prefix: &str,
    out: &mut dyn Write,
) -> Result<Registration, LoadError> {
    let total = options.count;
    let line = move |tally: &Tally, elapsed: Duration| {
        parallel::progress_text("registered", total, tally, elapsed)
    };
    let phase = Phase {
        threads: options.concurrency,
        consecutive_failures_max: parallel::failures_in_a_row_max(options.concurrency),
        progress: Some(&line),
    };
    let indices: Vec<usize> = (1..=total).collect();
    let name = |i: &usize| format!("{prefix}-{i}");
    let result = parallel::run(
        &phase,
        &indices,
        name,
        || Session::new(&node.home, options.request_timeout),
        |session, i, tally| match session.register(&name(i), &options.groups, tally) {
            Ok(agent) => Outcome::Done(agent),
            Err(reason) => Outcome::Failed(reason),
        },
        out,
    )?;
    Ok(Registration {
        agents: result.results,
        failures: result.failures,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fake_node;
    use super::*;

    #[test]
    fn a_registered_agent_is_read() {
        let answer =
            r#"{"error":0,"data":{"id":"001","name":"w1-agent-1","ip":"any","key":"abc"}}"#;
        assert_eq!(
            parse_add_answer(answer, "w1-agent-1"),
            Attempt::Done(Registered {
                id: 1,
                name: "w1-agent-1".into()
            })
        );
        let numeric = r#"{"error":0,"data":{"id":1042,"key":"abc"}}"#;
        assert_eq!(
            parse_add_answer(numeric, "w1-agent-9"),
            Attempt::Done(Registered {
                id: 1042,
                name: "w1-agent-9".into()
            })
        );
    }

    #[test]
    fn authd_errors_are_retried_only_when_a_retry_can_help() {
        let duplicate = r#"{"error":9008,"message":"Duplicate name"}"#;
        assert_eq!(
            parse_add_answer(duplicate, "a"),
            Attempt::Failed("authd error 9008: Duplicate name".into())
        );
        let internal = r#"{"error":9001,"message":"Internal error"}"#;
        assert_eq!(
            parse_add_answer(internal, "a"),
            Attempt::Retry("authd error 9001: Internal error".into())
        );
        let limit = r#"{"error":9013,"message":"Maximum number of agents reached"}"#;
        assert!(matches!(parse_add_answer(limit, "a"), Attempt::Retry(_)));
        let group = r#"{"error":9014,"message":"Invalid Group(s) Name(s)"}"#;
        assert!(matches!(parse_add_answer(group, "a"), Attempt::Failed(_)));
    }

    #[test]
    fn malformed_answers_fail_with_a_quote() {
        let cases = [
            (
                "Error 1013 - Unable to connect with socket: auth",
                "answer is not JSON",
            ),
            (r#"{"data":{"id":"001"}}"#, "answer has no error code"),
            (
                r#"{"error":0,"data":{"id":"abc","key":"k"}}"#,
                "no valid agent id",
            ),
            (
                r#"{"error":0,"data":{"id":"000","key":"k"}}"#,
                "no valid agent id",
            ),
            (
                r#"{"error":0,"data":{"id":"002"}}"#,
                "answer has no agent key",
            ),
            (
                r#"{"error":0,"data":"Agent deleted successfully."}"#,
                "no valid agent id",
            ),
        ];
        for (answer, expected) in cases {
            match parse_add_answer(answer, "a") {
                Attempt::Failed(reason) => {
                    assert!(reason.contains(expected), "{answer}: {reason}")
                }
                other => panic!("{answer}: {other:?}"),
            }
        }
        let long = format!("x{}", "y".repeat(500));
        let Attempt::Failed(reason) = parse_add_answer(&long, "a") else {
            panic!("not failed");
        };
        assert!(reason.len() < 200 && reason.ends_with("...'"), "{reason}");
    }

    #[test]
    fn plain_text_errors_are_shown_as_sent() {
        let plain = ControlError::Remote(crate::proto::wazuh_error::WazuhError::from_payload(
            b"Error 1013 - Unable to connect with socket: auth",
        ));
        assert_eq!(
            control_reason(&plain),
            "Error 1013 - Unable to connect with socket: auth"
        );
        let coded = ControlError::Remote(crate::proto::wazuh_error::WazuhError::new(3023));
        assert_eq!(
            control_reason(&coded),
            "Error 3023 - Worker node is not connected to master"
        );
    }

    #[test]
    fn an_err_answer_is_retried_and_every_answer_acknowledged() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ok = r#"{"error":0,"data":{"id":"007","name":"w-1","ip":"any","key":"k"}}"#;
        let node = fake_node::serve(
            dir.path(),
            vec![
                (
                    "err",
                    "Error 1013 - Unable to connect with socket: auth".into(),
                ),
                ("ok", ok.into()),
            ],
        );
        let mut session = Session::new(dir.path(), Duration::from_secs(5));
        let started = Instant::now();
        let agent = session.register("w-1", "default", &Tally::new(10));
        assert_eq!(
            agent,
            Ok(Registered {
                id: 7,
                name: "w-1".into()
            })
        );
        assert!(started.elapsed() >= RETRY_PAUSE);
        drop(session);
        let seen = node.join().expect("fake node");
        let request = String::from_utf8(add_request("w-1", "default")).expect("text");
        assert_eq!(seen.requests, [request.clone(), request]);
        assert_eq!(
            seen.acknowledgements,
            [
                "ok Error response received",
                "ok Sendsync response received"
            ]
        );
    }

    #[test]
    fn a_duplicate_name_fails_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let duplicate = r#"{"error":9008,"message":"Duplicate name"}"#;
        let node = fake_node::serve(dir.path(), vec![("ok", duplicate.into())]);
        let mut session = Session::new(dir.path(), Duration::from_secs(5));
        let outcome = session.register("w-1", "default", &Tally::new(10));
        assert_eq!(outcome, Err("authd error 9008: Duplicate name".to_string()));
        drop(session);
        assert_eq!(node.join().expect("fake node").requests.len(), 1);
    }

    #[test]
    fn a_request_without_answer_times_out_and_is_not_retried() {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = fake_node::serve(dir.path(), Vec::new());
        let mut session = Session::new(dir.path(), Duration::from_millis(500));
        let outcome = session.register("w-1", "default", &Tally::new(10));
        let reason = outcome.expect_err("timed out");
        assert!(reason.starts_with("no answer within 500ms"), "{reason}");
        assert!(reason.contains("not retried"), "{reason}");
        drop(session);
        assert_eq!(node.join().expect("fake node").requests.len(), 1);
    }

    #[test]
    fn a_missing_socket_is_retried_then_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut session = Session::new(dir.path(), Duration::from_secs(1));
        match session.attempt(b"{}", "a") {
            Attempt::Retry(reason) => assert!(reason.contains("could not connect"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
