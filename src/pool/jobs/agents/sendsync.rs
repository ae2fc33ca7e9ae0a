//! The master's sendsync job (PROTOCOL.md §4.4): one batch of daemon requests.
//!
//! Requests that cannot reach a daemon (empty, oversized, not the `{"daemon_name", "message"}`
//! JSON) are answered here with a precise error, so the daemon router only ever sees well-formed
//! requests and one bad request never fails the others of its batch.

use bytes::Bytes;
use serde_json::Value;

use super::AgentEnv;
use crate::proto::agent_jobs::{SENDSYNC_BATCH_MAX, SENDSYNC_REQUEST_BYTES_MAX};
use crate::proto::jobs::AgentOutcome;
use crate::proto::wazuh_error::WazuhError;

/// Forwards a batch of requests to their daemons; one answer per request, in order.
pub(super) fn forward(env: &AgentEnv, requests: &[Bytes]) -> Result<AgentOutcome, String> {
    if requests.len() > SENDSYNC_BATCH_MAX {
        return Err(format!(
            "a SendSync batch holds at most {SENDSYNC_BATCH_MAX} requests, got {}",
            requests.len()
        ));
    }
    let Some(daemons) = &env.daemons else {
        return Err("this node has no route to the daemons (authd, wazuh-db, remoted, task-manager) of the master".into());
    };
    let mut answers: Vec<Option<Result<String, String>>> = Vec::with_capacity(requests.len());
    let mut valid = Vec::new();
    for request in requests {
        match check(request) {
            Ok(()) => {
                valid.push(request.to_vec());
                answers.push(None);
            }
            Err(e) => answers.push(Some(Err(e.to_string()))),
        }
    }
    let mut forwarded = if valid.is_empty() {
        Vec::new()
    } else {
        daemons.forward_batch(&valid)
    }
    .into_iter();
    let answers = answers
        .into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| {
                forwarded.next().unwrap_or_else(|| {
                    Err(WazuhError::with_extra(
                        1000,
                        "the daemon router returned fewer answers than requests",
                    )
                    .to_string())
                })
            })
        })
        .collect();
    Ok(AgentOutcome::SendSync { answers })
}

/// A request the daemon router can take: a JSON object naming its daemon and carrying a message.
fn check(request: &[u8]) -> Result<(), WazuhError> {
    if request.len() > SENDSYNC_REQUEST_BYTES_MAX {
        return Err(WazuhError::with_extra(
            3050,
            format!(
                "the request has {} bytes, at most {SENDSYNC_REQUEST_BYTES_MAX} are accepted",
                request.len()
            ),
        ));
    }
    if request.iter().all(u8::is_ascii_whitespace) {
        return Err(WazuhError::with_extra(3036, "the request is empty"));
    }
    let value: Value = serde_json::from_slice(request)
        .map_err(|e| WazuhError::with_extra(3036, format!("the request is not JSON: {e}")))?;
    let has_daemon = value.get("daemon_name").is_some_and(Value::is_string);
    if !has_daemon || value.get("message").is_none() {
        return Err(WazuhError::with_extra(
            3036,
            "the request must be an object with \"daemon_name\" (a string) and \"message\"",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::config::Dialect;
    use crate::pool::DaemonForwarder;
    use crate::store::EmbeddedDb;

    /// Answers like authd and remembers the batches it saw.
    #[derive(Default)]
    struct Echo {
        batches: Mutex<Vec<usize>>,
    }

    impl DaemonForwarder for Echo {
        fn forward_batch(&self, requests: &[Vec<u8>]) -> Vec<Result<String, String>> {
            self.batches.lock().unwrap().push(requests.len());
            requests
                .iter()
                .map(|r| Ok(format!("answer to {}", r.len())))
                .collect()
        }
    }

    fn env(daemons: Option<Arc<dyn DaemonForwarder>>) -> AgentEnv {
        AgentEnv {
            db: Arc::new(EmbeddedDb::in_memory().unwrap()),
            daemons,
            dialect: Dialect::V4_14,
            node_name: "master".into(),
            home: PathBuf::from("/nonexistent"),
        }
    }

    #[test]
    fn bad_requests_are_answered_in_place_and_the_rest_forwarded_in_order() {
        let echo = Arc::new(Echo::default());
        let env = env(Some(echo.clone()));
        let good = Bytes::from_static(br#"{"daemon_name":"authd","message":{"function":"add"}}"#);
        let requests = vec![
            good.clone(),
            Bytes::new(),
            Bytes::from(vec![b' '; SENDSYNC_REQUEST_BYTES_MAX + 1]),
            Bytes::from_static(b"{nope"),
            Bytes::from_static(br#"{"message":"x"}"#),
            good.clone(),
        ];
        let Ok(AgentOutcome::SendSync { answers }) = forward(&env, &requests) else {
            panic!("the batch runs");
        };
        let expected_ok = Ok(format!("answer to {}", good.len()));
        assert_eq!(answers[0], expected_ok);
        assert_eq!(
            answers[1],
            Err("Error 3036 - JSON couldn't be loaded: the request is empty".into())
        );
        assert_eq!(
            answers[2],
            Err(format!(
                "Error 3050 - Payload size exceeds maximum allowed limit: the request has {} bytes, at most 1000000 are accepted",
                SENDSYNC_REQUEST_BYTES_MAX + 1
            ))
        );
        assert!(answers[3]
            .as_ref()
            .unwrap_err()
            .starts_with("Error 3036 - JSON couldn't be loaded: the request is not JSON"));
        assert!(answers[4].as_ref().unwrap_err().contains("daemon_name"));
        assert_eq!(answers[5], expected_ok);
        assert_eq!(*echo.batches.lock().unwrap(), vec![2]);
    }

    #[test]
    fn without_a_router_or_with_too_many_requests_the_job_fails() {
        let none = env(None);
        assert!(forward(&none, &[Bytes::from_static(b"{}")])
            .unwrap_err()
            .contains("no route"));
        let some = env(Some(Arc::new(Echo::default())));
        let many = vec![Bytes::from_static(b"{}"); SENDSYNC_BATCH_MAX + 1];
        assert!(forward(&some, &many).unwrap_err().contains("at most 512"));
        let Ok(AgentOutcome::SendSync { answers }) = forward(&some, &[]) else {
            panic!("an empty batch is answered");
        };
        assert!(answers.is_empty());
    }
}
