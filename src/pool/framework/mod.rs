//! The framework executor: distributed-API functions that are not answered natively run in the
//! Wazuh framework's own Python, in a few long-lived helper processes this daemon starts
//! (`helper.py`, sent to the interpreter with `-c`), feeds one JSON line per request and restarts
//! when they die. At most `helpers` requests run at once (others wait for a free helper within
//! their own timeout); a helper that overruns its timeout is killed, so a stuck function costs one
//! helper for one timeout, never a hang; memory is capped per helper with `RLIMIT_AS`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::{json, Value};

/// The helper program.
const HELPER: &str = include_str!("helper.py");

/// Where the framework is and how its helpers are bounded.
#[derive(Debug, Clone)]
pub struct FrameworkConfig {
    /// The framework's interpreter (`HOME/framework/python/bin/python3` on a Wazuh server).
    pub python: PathBuf,
    /// The directory holding the `wazuh` package (`HOME/framework`).
    pub framework_dir: PathBuf,
    /// Helper processes, hence requests running at once.
    pub helpers: usize,
    /// Address space of one helper (0: unlimited).
    pub memory_bytes: u64,
    /// Largest answer read from a helper.
    pub answer_bytes_max: usize,
}

/// Why a framework call gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameworkError {
    #[error("no answer from the framework within {0:?}")]
    Timeout(Duration),
    #[error("could not start the framework helper {python}: {why}")]
    Spawn { python: String, why: String },
    #[error("the framework helper died while running the request ({0}); it is restarted")]
    Died(String),
    #[error("the framework could not run the request: {0}")]
    Failed(String),
}

struct Helper {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Result<Vec<u8>, String>>,
}

impl Helper {
    fn kill(mut self) -> String {
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        }
    }
}

#[derive(Default)]
struct Slots {
    idle: Vec<Helper>,
    busy: usize,
}

/// The helpers of one node.
pub struct Framework {
    config: FrameworkConfig,
    slots: Mutex<Slots>,
    freed: Condvar,
}

impl Framework {
    /// The executor, when the interpreter exists; `Err` says why there is none.
    pub fn find(config: FrameworkConfig) -> Result<Framework, String> {
        if !config.python.is_file() {
            return Err(format!(
                "no Wazuh framework interpreter at {}",
                config.python.display()
            ));
        }
        Ok(Framework {
            config: FrameworkConfig {
                helpers: config.helpers.max(1),
                ..config
            },
            slots: Mutex::new(Slots::default()),
            freed: Condvar::new(),
        })
    }

    pub fn config(&self) -> &FrameworkConfig {
        &self.config
    }

    /// Runs a request (its JSON text) and returns the framework's encoded answer.
    pub fn run(&self, request: &str, timeout: Duration) -> Result<String, FrameworkError> {
        self.call(&json!({"op": "run", "request": request}), timeout)
    }

    /// Merges encoded answers with the framework's own result merging.
    pub fn merge(&self, parts: &[String], timeout: Duration) -> Result<String, FrameworkError> {
        self.call(&json!({"op": "merge", "parts": parts}), timeout)
    }

    fn call(&self, message: &Value, timeout: Duration) -> Result<String, FrameworkError> {
        let deadline = Instant::now() + timeout;
        let mut helper = match self.acquire(deadline) {
            Some(Some(helper)) => helper,
            Some(None) => match self.spawn() {
                Ok(helper) => helper,
                Err(e) => {
                    self.release(None);
                    return Err(e);
                }
            },
            None => return Err(FrameworkError::Timeout(timeout)),
        };
        let mut line = message.to_string().into_bytes();
        line.push(b'\n');
        if let Err(e) = helper
            .stdin
            .write_all(&line)
            .and_then(|()| helper.stdin.flush())
        {
            let status = helper.kill();
            self.release(None);
            return Err(FrameworkError::Died(format!("{e}; {status}")));
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match helper.lines.recv_timeout(wait) {
            Ok(Ok(answer)) => {
                self.release(Some(helper));
                let reply: Value = serde_json::from_slice(&answer).map_err(|e| {
                    FrameworkError::Failed(format!("unreadable helper answer: {e}"))
                })?;
                match (reply.get("ok").and_then(Value::as_str), reply.get("error")) {
                    (Some(ok), _) => Ok(ok.to_string()),
                    (None, Some(error)) => Err(FrameworkError::Failed(
                        error.as_str().unwrap_or_default().to_string(),
                    )),
                    _ => Err(FrameworkError::Failed("empty helper answer".into())),
                }
            }
            Ok(Err(why)) => {
                let status = helper.kill();
                self.release(None);
                Err(FrameworkError::Died(format!("{why}; {status}")))
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                helper.kill();
                self.release(None);
                Err(FrameworkError::Timeout(timeout))
            }
        }
    }

    /// An idle helper (`Some(Some)`), room to start one (`Some(None)`), or `None` when every
    /// helper stayed busy until `deadline`.
    fn acquire(&self, deadline: Instant) -> Option<Option<Helper>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(helper) = slots.idle.pop() {
                slots.busy += 1;
                return Some(Some(helper));
            }
            if slots.busy + slots.idle.len() < self.config.helpers {
                slots.busy += 1;
                return Some(None);
            }
            let wait = deadline.checked_duration_since(Instant::now())?;
            slots = self
                .freed
                .wait_timeout(slots, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn release(&self, helper: Option<Helper>) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.busy = slots.busy.saturating_sub(1);
        if let Some(helper) = helper {
            slots.idle.push(helper);
        }
        drop(slots);
        self.freed.notify_one();
    }

    fn spawn(&self) -> Result<Helper, FrameworkError> {
        let c = &self.config;
        let spawn_error = |why: String| FrameworkError::Spawn {
            python: c.python.display().to_string(),
            why,
        };
        let mut child = Command::new(&c.python)
            .arg("-c")
            .arg(HELPER)
            .arg(c.memory_bytes.to_string())
            .arg(&c.framework_dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| spawn_error(e.to_string()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(spawn_error("no pipes to the helper".into()));
        };
        let (tx, lines) = crossbeam_channel::bounded(1);
        let limit = c.answer_bytes_max;
        std::thread::Builder::new()
            .name("framework-helper".into())
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                loop {
                    let mut line = Vec::new();
                    let read = (&mut reader)
                        .take(limit as u64 + 1)
                        .read_until(b'\n', &mut line);
                    let outcome = match read {
                        Ok(0) => Err("the helper exited".to_string()),
                        Ok(_) if line.last() == Some(&b'\n') => Ok(line),
                        Ok(_) => Err(format!("an answer larger than {limit} bytes")),
                        Err(e) => Err(e.to_string()),
                    };
                    let last = outcome.is_err();
                    if tx.send(outcome).is_err() || last {
                        return;
                    }
                }
            })
            .map_err(|e| spawn_error(e.to_string()))?;
        Ok(Helper {
            child,
            stdin,
            lines,
        })
    }
}

impl Drop for Framework {
    fn drop(&mut self) {
        let slots = self.slots.get_mut().unwrap_or_else(|p| p.into_inner());
        for helper in slots.idle.drain(..) {
            helper.kill();
        }
    }
}
