//! The daemon's main sequence.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use compio::net::{TcpListener, UnixListener};
use futures_util::future::{select, Either};
use serde_json::json;

use super::instance::{InstanceError, InstanceLock};
use super::pidfile::PidFile;
use super::privileges::{drops_root, PrivilegeError, RunAs};
use super::report::{pool_threads, print_report};
use super::startup::{clean_transfers, create_dirs, daemonize, LOCAL_SOCKET};
use crate::config::{Config, ConfigError, IoDriverChoice, SettingsOverrides};
use crate::pool::framework::{Framework, FrameworkConfig};
use crate::pool::{AgentEnv, ApplyPolicy, DaemonForwarder, DapiEnv, PoolRunner, SyncEnv};
use crate::proto::connection::ConnLimits;
use crate::proto::files::FileLimits;
use crate::proto::node::{AgentSettings, Node, NodeSettings, Now, SyncSettings, Timers};
use crate::store::{Backend, DaemonRouter, ManagerRow, Registrar};
use crate::transport::driver::{build_runtime, choose, DriverChoice, DriverError};
use crate::transport::event_loop::{job_channel, EventLoop, LoopLimits};
use crate::{clog_error, clog_info, clog_warn};

/// What the command line asked of the daemon.
#[derive(Debug, Clone)]
pub struct DaemonArgs {
    pub home: PathBuf,
    pub foreground: bool,
    /// `-d` flags given (each adds one to the internal options' level).
    pub debug_flags: u8,
    pub test_config: bool,
    /// `-r`: keep root instead of dropping to the configured user.
    pub keep_root: bool,
    /// `-c`: the `ossec.conf` to read instead of `HOME/etc/ossec.conf`.
    pub ossec_conf: Option<PathBuf>,
    pub overrides: SettingsOverrides,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("could not prepare {path}: {source}")]
    Prepare {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not listen on {what}: {source}")]
    Listen {
        what: String,
        source: std::io::Error,
    },
    #[error("invalid cluster key: {0}")]
    Key(#[from] crate::proto::crypto::CryptoError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Registration(#[from] crate::store::registration::RegistrationError),
    #[error(transparent)]
    Instance(#[from] InstanceError),
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
}

fn driver_choice(choice: IoDriverChoice) -> DriverChoice {
    match choice {
        IoDriverChoice::Auto => DriverChoice::Auto,
        IoDriverChoice::IoUring => DriverChoice::IoUring,
        IoDriverChoice::Epoll => DriverChoice::Epoll,
    }
}

fn node_settings(config: &Config, io_driver: &str) -> NodeSettings {
    let intervals = &config.cluster_json.intervals;
    let cluster = &config.cluster;
    NodeSettings {
        is_master: cluster.node_type == crate::config::NodeType::Master,
        cluster_name: cluster.name.clone(),
        node_name: cluster.node_name.clone(),
        version: config.settings.wazuh_version.clone(),
        master_host: cluster.master_address().to_string(),
        port: cluster.port,
        cluster_key: cluster.key.clone(),
        get_config: cluster.get_config_json(),
        runtime_info: json!({
            "io_driver": io_driver,
            "wazuh_version": config.settings.wazuh_version,
            "dialect": config.dialect.to_string(),
            "clusterd_version": env!("CARGO_PKG_VERSION"),
            "node_name": cluster.node_name,
            "node_type": if cluster.node_type == crate::config::NodeType::Master { "master" } else { "worker" },
        }),
        timers: Timers {
            keep_alive: intervals.worker.keep_alive,
            connection_retry: intervals.worker.connection_retry,
            max_failed_keepalive_attempts: intervals.worker.max_failed_keepalive_attempts,
            check_worker_lastkeepalive: intervals.master.check_worker_lastkeepalive,
            max_allowed_time_without_keepalive: intervals.master.max_allowed_time_without_keepalive,
            timeout_cluster_request: intervals.communication.timeout_cluster_request,
            timeout_dapi_request: intervals.communication.timeout_dapi_request,
        },
        sync: SyncSettings {
            dialect: config.dialect,
            sync_integrity: intervals.worker.sync_integrity,
            recalculate_integrity: intervals.master.recalculate_integrity,
            max_locked_integrity_time: intervals.master.max_locked_integrity_time,
            timeout_receiving_file: intervals.communication.timeout_receiving_file,
            timeout_extra_valid: intervals.master.timeout_extra_valid,
            max_zip_size: intervals.communication.max_zip_size,
            min_zip_size: intervals.communication.min_zip_size,
            zip_limit_tolerance: intervals.communication.zip_limit_tolerance,
        },
        agents: AgentSettings {
            sync_agent_info: intervals.worker.sync_agent_info,
            timeout_agent_info: intervals.master.timeout_agent_info,
            sync_agent_groups: intervals.master.sync_agent_groups,
            agent_group_start_delay: intervals.master.agent_group_start_delay,
            timeout_agent_groups: intervals.worker.timeout_agent_groups,
            agent_groups_mismatch_limit: intervals.worker.agent_groups_mismatch_limit,
        },
        connections_per_ip_max: config.settings.connections_per_ip_max,
        distributed_api: config.cluster_json.distributed_api_enabled,
        limits: ConnLimits {
            files: FileLimits {
                transfers_max: config.settings.peer_transfers_max,
                held_bytes_max: config.settings.peer_scratch_bytes_max,
                ..FileLimits::default()
            },
            ..ConnLimits::default()
        },
    }
}

/// Jobs waiting for a pool thread; past this the engine is told the pool is busy.
const JOB_QUEUE_MAX: usize = 4096;

/// Threads for agent-database jobs: the database serialises writes anyway, and two let a slow
/// listing run beside a sync.
const AGENT_THREADS: usize = 2;

/// Threads for distributed-API requests (each may wait on the framework or the database).
const DAPI_THREADS: usize = 4;

/// Adds the distributed-API threads: native functions on the agent database, the others in the
/// Wazuh framework when this install has one.
fn with_dapi(runner: PoolRunner, config: &Config, tag: &str) -> Result<PoolRunner, DaemonError> {
    let Some(agents) = runner.agent_env() else {
        return Ok(runner);
    };
    let python = config
        .settings
        .framework_python
        .clone()
        .unwrap_or_else(|| config.home.join("framework/python/bin/python3"));
    let framework = Framework::find(FrameworkConfig {
        python,
        framework_dir: config.home.join("framework"),
        helpers: config.settings.framework_helpers,
        memory_bytes: FRAMEWORK_HELPER_MEMORY,
        answer_bytes_max: FRAMEWORK_ANSWER_MAX,
    });
    match &framework {
        Ok(f) => clog_info!(
            tag,
            "Main",
            "Distributed API: framework functions run in {} helpers of {}.",
            f.config().helpers,
            f.config().python.display()
        ),
        Err(why) => clog_info!(
            tag,
            "Main",
            "Distributed API: native functions only ({why})."
        ),
    }
    let env = DapiEnv {
        agents,
        framework,
        timeout: config
            .cluster_json
            .intervals
            .communication
            .timeout_dapi_request,
        ruleset: None,
    };
    runner
        .with_dapi(env, DAPI_THREADS, JOB_QUEUE_MAX)
        .map_err(|source| DaemonError::Prepare {
            path: config.home.clone(),
            source,
        })
}

/// Address space of one framework helper.
const FRAMEWORK_HELPER_MEMORY: u64 = 2 << 30;

/// Largest answer a framework helper may give.
const FRAMEWORK_ANSWER_MAX: usize = 512 << 20;

/// What the pool's jobs need to know about this node.
fn sync_env(config: &Config) -> SyncEnv {
    let comm = &config.cluster_json.intervals.communication;
    SyncEnv {
        home: config.home.clone(),
        node_name: config.cluster.node_name.clone(),
        files: config.cluster_json.files.clone(),
        dialect: config.dialect,
        compress_level: comm.compress_level,
        max_zip_size: comm.max_zip_size,
        policy: ApplyPolicy {
            allow_client_keys_shrink: config.settings.allow_client_keys_shrink,
        },
    }
}

/// Runs the daemon until SIGTERM or SIGINT. Returns the process exit code.
///
/// The order matters: the instance lock comes before anything touches the install root (a second
/// daemon must leave the first one's files alone), root gives up its privileges once the port is
/// bound and before any thread, ring or file of the running daemon exists.
pub fn run(args: DaemonArgs) -> Result<i32, DaemonError> {
    let config = Config::load_with(&args.home, &args.overrides, args.ossec_conf.as_deref())?;
    let run_as = || -> Result<Option<RunAs>, PrivilegeError> {
        if !drops_root(args.keep_root) {
            return Ok(None);
        }
        RunAs::resolve(&config.settings.user, &config.settings.group).map(Some)
    };
    if args.test_config {
        print_report(
            &config,
            args.debug_flags,
            args.keep_root,
            run_as()?.as_ref(),
        );
        return Ok(0);
    }
    if config.cluster.disabled {
        eprintln!(
            "wazuh-clusterd: the cluster is disabled in {}; nothing to do.",
            config.ossec_conf.display()
        );
        return Ok(0);
    }
    let run_as = run_as()?;
    // Nothing the daemon creates is for other users (client.keys above all); files it creates
    // without an explicit mode get the group's access, as on a stock node.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o007));
    let prepare_failed = |source| DaemonError::Prepare {
        path: args.home.clone(),
        source,
    };
    let created = create_dirs(&args.home).map_err(prepare_failed)?;
    let mut lock = InstanceLock::acquire(&args.home)?;
    clean_transfers(&args.home).map_err(prepare_failed)?;
    let choice = choose(driver_choice(config.settings.io_driver))?;
    if !args.foreground {
        daemonize().map_err(|source| DaemonError::Prepare {
            path: args.home.clone(),
            source,
        })?;
    }
    let _log = crate::logging::init(
        &config.path("logs/cluster.log"),
        config.debug_level(args.debug_flags),
        args.foreground,
    )
    .map_err(|source| DaemonError::Prepare {
        path: config.path("logs/cluster.log"),
        source,
    })?;
    log_start(&config, &lock, args.debug_flags);
    match &choice.fallback_reason {
        Some(reason) => clog_warn!(
            "Cluster",
            "Main",
            "io_uring is not usable here ({reason}); using the epoll IO driver."
        ),
        None => clog_info!(
            "Cluster",
            "Main",
            "Using the {} IO driver.",
            choice.kind.name()
        ),
    }
    let listener = bind_cluster_port(&config)?;
    match &run_as {
        Some(run_as) => {
            hand_over(&config, run_as, &created)?;
            run_as.enter()?;
            clog_info!(
                "Cluster",
                "Main",
                "Running as {}:{}.",
                run_as.user,
                run_as.group
            );
        }
        None if args.keep_root && nix::unistd::Uid::effective().is_root() => {
            clog_info!("Cluster", "Main", "Running as root (-r).")
        }
        None => {}
    }
    let pid_file = PidFile::create(&args.home).map_err(|source| DaemonError::Prepare {
        path: config.path("var/run"),
        source,
    })?;
    if let Err(e) = lock.record_pid(pid_file.pid()) {
        clog_warn!(
            "Cluster",
            "Main",
            "Could not record the pid in {}: {e}",
            config.path(super::instance::LOCK_FILE).display()
        );
    }
    let _metrics = start_metrics(&config, choice.kind.name())?;
    let runtime = build_runtime(choice.kind)?;
    let settings = node_settings(&config, choice.kind.name());
    let result = runtime.block_on(serve(config, settings, listener));
    drop(pid_file);
    drop(lock);
    result.map(|()| 0)
}

/// The start-up lines of the configuration: warnings, where the log level and `cluster.json` come
/// from, pid files taken over.
fn log_start(config: &Config, lock: &InstanceLock, debug_flags: u8) {
    for warning in &config.warnings {
        clog_warn!("Cluster", "Main", "{warning}");
    }
    for (pid, path) in &lock.taken_over {
        clog_info!(
            "Cluster",
            "Main",
            "Removed {}: its daemon (pid {pid}) no longer runs.",
            path.display()
        );
    }
    if let Some(option) = &config.debug_option {
        clog_info!(
            "Cluster",
            "Main",
            "Log level {} (wazuh_clusterd.debug {} of {}, {debug_flags} -d flags).",
            config.debug_level(debug_flags),
            option.level,
            option.file.display()
        );
    }
    if config.cluster_json_files.is_empty() {
        clog_info!(
            "Cluster",
            "Main",
            "Using the built-in cluster.json of Wazuh {}.",
            config.dialect
        );
    }
    for file in &config.cluster_json_files {
        clog_info!("Cluster", "Main", "Using {}.", file.display());
    }
}

/// Labels the node's metrics and, when `metrics_listen` is set, serves them (as the daemon's user:
/// the endpoint starts after root is given up).
fn start_metrics(
    config: &Config,
    io_driver: &str,
) -> Result<Option<crate::metrics::ServerHandle>, DaemonError> {
    let metrics = crate::metrics::Metrics::global();
    let is_master = config.cluster.node_type == crate::config::NodeType::Master;
    metrics.set_info(crate::metrics::InfoLabels {
        version: env!("CARGO_PKG_VERSION").to_string(),
        wazuh_version: config.settings.wazuh_version.clone(),
        dialect: config.dialect.to_string(),
        node_name: config.cluster.node_name.clone(),
        node_type: if is_master { "master" } else { "worker" }.to_string(),
        io_driver: io_driver.to_string(),
    });
    metrics.set_ready(
        false,
        if is_master {
            "local integrity not computed yet"
        } else {
            "not connected to the master"
        },
    );
    let Some(addr) = config.settings.metrics_listen else {
        return Ok(None);
    };
    let server = crate::metrics::serve(addr).map_err(|source| DaemonError::Listen {
        what: format!("the metrics endpoint {addr}"),
        source,
    })?;
    clog_info!(
        "Cluster",
        "Main",
        "Metrics on http://{}/metrics (health: /healthz, /readyz).",
        server.local_addr()
    );
    Ok(Some(server))
}

/// How long a start waits for the cluster port to be free. A daemon that just died (SIGKILL, a
/// crash restarted by the service manager) may hold its listening socket for a moment: io_uring
/// releases a dead process's pending accepts asynchronously.
const PORT_IN_USE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The master's cluster port, bound while the daemon may still be root.
fn bind_cluster_port(config: &Config) -> Result<Option<std::net::TcpListener>, DaemonError> {
    if config.cluster.node_type != crate::config::NodeType::Master {
        return Ok(None);
    }
    let (bind_addr, port) = (config.cluster.bind_addr.as_str(), config.cluster.port);
    let deadline = std::time::Instant::now() + PORT_IN_USE_WAIT;
    let mut warned = false;
    loop {
        match std::net::TcpListener::bind((bind_addr, port)) {
            Ok(listener) => return Ok(Some(listener)),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                if !warned {
                    clog_warn!(
                        "Cluster",
                        "Main",
                        "{bind_addr}:{port} is in use; waiting up to {}s for it to be free.",
                        PORT_IN_USE_WAIT.as_secs()
                    );
                    warned = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(source) => {
                return Err(DaemonError::Listen {
                    what: format!("{bind_addr}:{port}"),
                    source,
                })
            }
        }
    }
}

/// Gives what root prepared to the user, with a stock node's modes: the directories it created
/// `0770`, `queue/cluster/` `0770`, `logs/cluster.log` `0660`, the lock file `0640`.
fn hand_over(config: &Config, run_as: &RunAs, created: &[PathBuf]) -> Result<(), PrivilegeError> {
    for dir in created {
        run_as.give(dir, 0o770)?;
    }
    for (rel, mode) in [
        ("queue/cluster", 0o770),
        ("logs/cluster.log", 0o660),
        (super::instance::LOCK_FILE, 0o640),
    ] {
        run_as.give(&config.path(rel), mode)?;
    }
    Ok(())
}

async fn serve(
    config: Config,
    settings: NodeSettings,
    listener: Option<std::net::TcpListener>,
) -> Result<(), DaemonError> {
    let is_master = settings.is_master;
    let tag = if is_master {
        "Master".to_string()
    } else {
        format!("Worker {}", settings.node_name)
    };
    let node = Node::new(settings, rand::random(), Now::system())?;
    let (results_tx, results) = job_channel();
    let (threads, why) = pool_threads(&config);
    let runner = PoolRunner::new(sync_env(&config), threads, JOB_QUEUE_MAX, results_tx).map_err(
        |source| DaemonError::Prepare {
            path: config.home.clone(),
            source,
        },
    )?;
    clog_info!(
        tag,
        "Main",
        "Worker pool of {} threads ({why}).",
        runner.threads()
    );
    let agent_db = crate::store::open(&config.home, !is_master)?;
    clog_info!(tag, "Main", "Agent database: {}.", agent_db.backend);
    if matches!(agent_db.backend, Backend::Embedded { .. }) {
        let row =
            ManagerRow::of_this_host(&config.cluster.node_name, &config.settings.wazuh_version);
        if let Err(e) = row.write(&*agent_db.db) {
            clog_warn!(
                tag,
                "Main",
                "Could not write the manager's row (agent 000): {e}"
            );
        }
    }
    // The master answers daemon requests forwarded by workers (registrations above all); the
    // embedded registration service stands in for authd whenever its socket does not answer.
    let daemons: Option<Arc<dyn DaemonForwarder>> = if is_master {
        let registrar = Registrar::open(&config.home, agent_db.db.clone())?;
        Some(Arc::new(DaemonRouter::new(
            config.home.clone(),
            agent_db.db.clone(),
            Some(registrar),
        )))
    } else {
        None
    };
    let runner = runner
        .with_agents(
            AgentEnv {
                db: agent_db.db.clone(),
                daemons,
                dialect: config.dialect,
                node_name: config.cluster.node_name.clone(),
                home: config.home.clone(),
            },
            AGENT_THREADS,
            JOB_QUEUE_MAX,
        )
        .map_err(|source| DaemonError::Prepare {
            path: config.home.clone(),
            source,
        })?;
    let runner = with_dapi(runner, &config, &tag)?;
    let event_loop = EventLoop::new(
        node,
        Box::new(runner),
        &config.home,
        LoopLimits::default(),
        &tag,
    );
    compio::runtime::spawn(event_loop.clone().run_job_results(results)).detach();

    let socket_path = config.path(&format!("queue/cluster/{LOCAL_SOCKET}"));
    let _ = std::fs::remove_file(&socket_path);
    let local = UnixListener::bind(&socket_path)
        .await
        .map_err(|source| DaemonError::Listen {
            what: socket_path.display().to_string(),
            source,
        })?;
    let _ = std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o660));
    clog_info!(
        "Local Server",
        "Main",
        "Serving on {}",
        socket_path.display()
    );
    compio::runtime::spawn(event_loop.clone().serve_local(local)).detach();

    if let Some(listener) = listener {
        let (bind_addr, port) = (&config.cluster.bind_addr, config.cluster.port);
        let listener = TcpListener::from_std(listener).map_err(|source| DaemonError::Listen {
            what: format!("{bind_addr}:{port}"),
            source,
        })?;
        clog_info!(tag, "Main", "Serving on ('{bind_addr}', {port})");
        compio::runtime::spawn(event_loop.clone().serve_cluster(listener)).detach();
    }
    compio::runtime::spawn(event_loop.clone().run_timers()).detach();

    let term = Box::pin(compio::signal::unix::signal(libc::SIGTERM));
    let int = Box::pin(compio::signal::unix::signal(libc::SIGINT));
    let signal = match select(term, int).await {
        Either::Left((r, _)) => r.map(|()| "SIGTERM"),
        Either::Right((r, _)) => r.map(|()| "SIGINT"),
    };
    match signal {
        Ok(name) => clog_info!(tag, "Main", "Received {name}: shutting down."),
        Err(e) => clog_error!(
            tag,
            "Main",
            "Could not wait for signals ({e}): shutting down."
        ),
    }
    event_loop.shutdown().await;
    agent_db.stop();
    let _ = std::fs::remove_file(&socket_path);
    clog_info!(tag, "Main", "Stopped.");
    Ok(())
}
