//! What a start will do, decided from the configuration alone: the pool size and where it comes
//! from, and the report `wazuh-clusterd -t` prints, so an operator sees before a restart which
//! files are in force, at which log level and as which user the daemon will run. The report goes
//! to standard error: `wazuh-control` runs `-t` on every daemon before a start, and its `-j` form
//! answers the API with JSON on standard output, which must stay as empty as a stock node's.

use super::privileges::RunAs;
use crate::config::{Config, NodeType};

/// Threads of the file pool and why that many. `pool_threads` of `etc/clusterd.toml` wins; else a
/// master honours `process_pool_size` of `cluster.json` (stock masters size their process pool
/// with it), at most one per core; a worker (stock: one process, not configurable) takes one
/// thread per core.
pub fn pool_threads(config: &Config) -> (usize, String) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if config.settings.pool_threads > 0 {
        return (
            config.settings.pool_threads,
            "pool_threads of etc/clusterd.toml".to_string(),
        );
    }
    if config.cluster.node_type == NodeType::Master {
        let size = config.cluster_json.intervals.master.process_pool_size;
        let source = config
            .cluster_json_files
            .last()
            .map_or("the built-in cluster.json".to_string(), |p| {
                p.display().to_string()
            });
        return (
            size.min(cores),
            format!("process_pool_size {size} of {source}, at most one per core ({cores})"),
        );
    }
    (
        cores,
        "one per core; process_pool_size applies to masters".to_string(),
    )
}

/// The `-t` report, on standard error.
pub fn print_report(config: &Config, debug_flags: u8, keep_root: bool, run_as: Option<&RunAs>) {
    eprintln!(
        "Configuration OK: {} (node {}, {}, Wazuh {}).",
        config.ossec_conf.display(),
        config.cluster.node_name,
        if config.cluster.node_type == NodeType::Master {
            "master"
        } else {
            "worker"
        },
        config.settings.wazuh_version
    );
    if config.cluster_json_files.is_empty() {
        eprintln!(
            "cluster.json: the built-in table of Wazuh {}.",
            config.dialect
        );
    }
    for file in &config.cluster_json_files {
        eprintln!("cluster.json: {}", file.display());
    }
    let level = config.debug_level(debug_flags);
    match &config.debug_option {
        Some(option) => eprintln!(
            "Log level: {level} (wazuh_clusterd.debug {} of {}, {debug_flags} -d flags).",
            option.level,
            option.file.display()
        ),
        None => eprintln!("Log level: {level} ({debug_flags} -d flags)."),
    }
    let (threads, why) = pool_threads(config);
    eprintln!("Worker pool: {threads} threads ({why}).");
    match run_as {
        Some(run_as) => eprintln!(
            "Runs as: {}:{} (drops root after binding).",
            run_as.user, run_as.group
        ),
        None if keep_root => eprintln!("Runs as: the starting user (-r)."),
        None => eprintln!("Runs as: the starting user (not started as root)."),
    }
    match config.settings.metrics_listen {
        Some(addr) => eprintln!("Metrics: http://{addr}/metrics"),
        None => eprintln!("Metrics: off (metrics_listen in etc/clusterd.toml)."),
    }
    for warning in &config.warnings {
        eprintln!("WARNING: {warning}");
    }
}
