//! `cluster-load dapi`: distributed-API requests on a node's local socket, as the Wazuh API sends
//! them (one connection per request, as its local client does), timed one by one. Used by
//! `perf/dapi.sh` to compare a worker (which relays every request to its master and the answer
//! back) with the master's own socket.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::control::client::LocalClient;

/// Most requests one run sends.
pub const REQUESTS_MAX: usize = 1_000_000;
/// Most concurrent clients.
pub const CLIENTS_MAX: usize = 64;

#[derive(Debug, Clone)]
pub struct DapiOptions {
    pub home: PathBuf,
    pub requests: usize,
    pub clients: usize,
    /// `limit` of each `get_agents_overview` request; offsets walk through the agents.
    pub limit: u64,
    pub timeout: Duration,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct DapiSummary {
    pub requests: usize,
    pub failures: Vec<String>,
    pub total: Duration,
    /// Latency of each answered request, sorted.
    pub latencies: Vec<Duration>,
}

impl DapiSummary {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1000.0
    }

    /// One machine-readable line: `requests=N failures=F total_s=T mean_ms=M p50_ms=A p99_ms=B`.
    pub fn line(&self) -> String {
        let mean = if self.latencies.is_empty() {
            0.0
        } else {
            self.latencies
                .iter()
                .map(Duration::as_secs_f64)
                .sum::<f64>()
                * 1000.0
                / self.latencies.len() as f64
        };
        format!(
            "requests={} failures={} total_s={:.3} mean_ms={mean:.2} p50_ms={:.2} p99_ms={:.2}",
            self.requests,
            self.failures.len(),
            self.total.as_secs_f64(),
            self.percentile(0.5),
            self.percentile(0.99)
        )
    }
}

/// The request stock `cluster_control -a` sends, paged.
fn overview(limit: u64, offset: u64) -> Vec<u8> {
    json!({
        "f": {"__callable__": {"__name__": "get_agents_overview", "__module__": "wazuh.core.agent",
                               "__qualname__": "Agent.get_agents_overview", "__type__": "function"}},
        "f_kwargs": {"filters": {"status": "all", "node_name": "all"}, "limit": limit, "offset": offset,
                     "select": ["id", "ip", "name", "status", "node_name", "version"]},
        "from_cluster": false,
        "wait_for_complete": false
    })
    .to_string()
    .into_bytes()
}

/// One request: the number of agents the node holds, after checking the page has the items it
/// should.
fn ask(options: &DapiOptions, offset: u64) -> Result<u64, String> {
    let mut client =
        LocalClient::connect(&options.home, options.timeout).map_err(|e| e.to_string())?;
    let raw = client
        .dapi(&overview(options.limit, offset))
        .map_err(|e| e.to_string())?;
    let answer: Value =
        serde_json::from_slice(&raw).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let result = &answer["__wazuh_result__"]["__object__"]["result"];
    let (Some(items), Some(total)) = (result["items"].as_array(), result["totalItems"].as_u64())
    else {
        let text = answer.to_string();
        return Err(format!(
            "not an agents overview: {}",
            text.chars().take(200).collect::<String>()
        ));
    };
    let expected = options.limit.min(total.saturating_sub(offset));
    if items.len() as u64 != expected {
        return Err(format!(
            "{} items at offset {offset}, expected {expected}",
            items.len()
        ));
    }
    Ok(total)
}

/// Sends `options.requests` requests from `options.clients` threads.
pub fn run_dapi(options: &DapiOptions) -> Result<DapiSummary, String> {
    if options.requests == 0 || options.requests > REQUESTS_MAX {
        return Err(format!("--requests must be 1 to {REQUESTS_MAX}"));
    }
    if options.clients == 0 || options.clients > CLIENTS_MAX {
        return Err(format!("--clients must be 1 to {CLIENTS_MAX}"));
    }
    if options.limit == 0 {
        return Err("--limit must be at least 1".into());
    }
    // Not timed: how many agents there are, so that offsets stay inside them.
    let agents = ask(options, 0)?;
    let pages = agents.div_ceil(options.limit).max(1);
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let latencies = Mutex::new(Vec::with_capacity(options.requests));
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..options.clients {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= options.requests {
                    break;
                }
                let offset = (i as u64 % pages) * options.limit;
                let asked = Instant::now();
                match ask(options, offset) {
                    Ok(_) => latencies.lock().unwrap().push(asked.elapsed()),
                    Err(e) => failures.lock().unwrap().push(e),
                }
            });
        }
    });
    let total = started.elapsed();
    let mut latencies = latencies.into_inner().unwrap();
    latencies.sort();
    Ok(DapiSummary {
        requests: options.requests,
        failures: failures.into_inner().unwrap(),
        total,
        latencies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_reports_percentiles_of_the_answered_requests() {
        let summary = DapiSummary {
            requests: 4,
            failures: vec!["timed out".into()],
            total: Duration::from_millis(1500),
            latencies: [10, 20, 30].map(Duration::from_millis).to_vec(),
        };
        assert_eq!(
            summary.line(),
            "requests=4 failures=1 total_s=1.500 mean_ms=20.00 p50_ms=20.00 p99_ms=30.00"
        );
    }

    #[test]
    fn bad_options_are_refused_before_any_request() {
        let options = DapiOptions {
            home: PathBuf::from("/nonexistent"),
            requests: 0,
            clients: 1,
            limit: 500,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            run_dapi(&options).unwrap_err(),
            format!("--requests must be 1 to {REQUESTS_MAX}")
        );
        let options = DapiOptions {
            requests: 1,
            clients: CLIENTS_MAX + 1,
            ..options
        };
        assert!(run_dapi(&options).unwrap_err().starts_with("--clients"));
    }
}
