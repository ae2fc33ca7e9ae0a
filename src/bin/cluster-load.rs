//! `cluster-load`: the demo and load tool. `demo` starts a master and workers as real `wazuh-clusterd`
//! processes on loopback, shows the cluster, and stops it. `agents` registers and runs simulated
//! agents through a running node.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use clusterd::control::client::LocalClient;
use clusterd::harness::{free_port, sibling_binary, wait_until, Daemon, NodeSpec};
use clusterd::loadgen::dapi::{run_dapi, DapiOptions};
use clusterd::loadgen::{self, AgentsOptions};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(name = "cluster-load", about = "clusterd demo and load tool")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start a master and workers on loopback, list them, stop them.
    Demo {
        /// Number of workers.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// IO driver of every node (auto, io_uring, epoll).
        #[arg(long, default_value = "auto")]
        io_driver: String,
        /// Wazuh version the nodes announce.
        #[arg(long, default_value = "4.3.11")]
        wazuh_version: String,
    },
    /// Register simulated agents through a running node and report them into its agent database.
    ///
    /// Plays the node's authd and remoted: registers N agents named P-1 ... P-N with `sendsync` on
    /// the node's local socket (queue/cluster/c-internal.sock; the master registers them), then
    /// stores in the node's agent database (queue/db/wdb) that each one connected, and sends a
    /// keepalive round every --keepalive-interval seconds for --duration seconds, with 1% of the
    /// agents disconnecting each round and coming back the next. Prints progress lines, one line
    /// per keepalive round with its start time in Unix seconds, and a summary. Exits 0 when every
    /// agent registered, connected and had its reports stored, 1 otherwise.
    #[command(verbatim_doc_comment)]
    Agents {
        /// Install root of the node (a worker, normally) the agents register through.
        #[arg(long, value_name = "WORKER_HOME")]
        home: PathBuf,
        /// Agents to register.
        #[arg(long, value_name = "N")]
        count: usize,
        /// Seconds between two keepalive rounds.
        #[arg(long, value_name = "S", default_value_t = 10)]
        keepalive_interval: u64,
        /// Seconds of keepalive rounds after the agents connected (0: stop once connected).
        #[arg(long, value_name = "S", default_value_t = 0)]
        duration: u64,
        /// Concurrent connections, each on its own thread (at most 32 of them to the database).
        #[arg(long, value_name = "C", default_value_t = 32)]
        concurrency: usize,
        /// Agent names are P-1 ... P-N [default: <node name>-agent].
        #[arg(long, value_name = "P")]
        name_prefix: Option<String>,
        /// Comma-separated groups the agents register with.
        #[arg(long, value_name = "G", default_value = "default")]
        groups: String,
        /// Seconds one registration or database request may take.
        #[arg(long, value_name = "S", default_value_t = 30)]
        request_timeout: u64,
    },
    /// Send distributed-API agent listings (`get_agents_overview`, as `cluster_control -a` asks
    /// it, paged) to a node's local socket, one connection per request as the Wazuh API does, and
    /// print one summary line (requests, failures, total seconds, mean/p50/p99 ms). Every answer
    /// is checked to hold the page it should. Exits 1 when a request failed.
    #[command(verbatim_doc_comment)]
    Dapi {
        /// Install root of the node whose local socket is asked.
        #[arg(long)]
        home: PathBuf,
        /// Requests in all.
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// Agents per page (`limit`).
        #[arg(long, default_value_t = 500)]
        limit: u64,
        /// Seconds one request may take.
        #[arg(long, default_value_t = 60)]
        request_timeout: u64,
    },
}

/// Makes sure the daemon and `cluster_control` exist next to this binary, building them when run
/// through cargo (so `cargo run --bin cluster-load -- demo` works from a fresh clone).
fn binaries() -> Result<(PathBuf, PathBuf)> {
    let daemon = sibling_binary("wazuh-clusterd")?;
    let control = sibling_binary("cluster_control")?;
    if let Ok(cargo) = std::env::var("CARGO") {
        let exe = std::env::current_exe()?;
        let release = exe.parent().is_some_and(|d| d.ends_with("release"));
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "--quiet",
            "--bin",
            "wazuh-clusterd",
            "--bin",
            "cluster_control",
        ]);
        if release {
            build.arg("--release");
        }
        if let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") {
            build.current_dir(dir);
        }
        let status = build.status().context("running cargo build")?;
        if !status.success() {
            bail!("building wazuh-clusterd and cluster_control failed");
        }
    }
    for bin in [&daemon, &control] {
        if !bin.exists() {
            bail!(
                "{} is missing: build it with `cargo build --release --bins`",
                bin.display()
            );
        }
    }
    Ok((daemon, control))
}

fn listed_nodes(home: &Path) -> usize {
    LocalClient::connect(home, Duration::from_secs(5))
        .and_then(|mut c| c.call_json("get_nodes", b"{}"))
        .map(|v| v["totalItems"].as_u64().unwrap_or(0) as usize)
        .unwrap_or(0)
}

fn demo(workers: usize, io_driver: &str, wazuh_version: &str) -> Result<()> {
    let (daemon_bin, control_bin) = binaries()?;
    let root = tempfile::Builder::new()
        .prefix("clusterd-demo-")
        .tempdir()?;
    let port = free_port()?;
    let fast = json!({"intervals": {"worker": {"keep_alive": 2, "connection_retry": 2}}});
    let args = ["--io-driver", io_driver, "--wazuh-version", wazuh_version];
    println!(
        "Starting a master and {workers} workers on 127.0.0.1:{port} (install roots under {})",
        root.path().display()
    );
    let started = Instant::now();
    let master_home = root.path().join("master");
    NodeSpec::master(port)
        .with_cluster_json(fast.clone())
        .write(&master_home)?;
    let mut nodes = vec![Daemon::start(&daemon_bin, &master_home, &args)?];
    let socket = clusterd::control::client::socket_path(&master_home);
    if !wait_until(Duration::from_secs(15), || socket.exists()) {
        bail!(
            "the master did not start; see {}",
            master_home.join("stderr.log").display()
        );
    }
    for i in 1..=workers {
        let home = root.path().join(format!("worker{i}"));
        NodeSpec::worker(&format!("worker{i}"), port)
            .with_cluster_json(fast.clone())
            .write(&home)?;
        nodes.push(Daemon::start(&daemon_bin, &home, &args)?);
    }
    if !wait_until(Duration::from_secs(30), || {
        listed_nodes(&master_home) == workers + 1
    }) {
        bail!(
            "the workers did not all connect within 30 s; logs are under {}",
            root.path().display()
        );
    }
    println!(
        "All {workers} workers connected in {:.2}s.\n",
        started.elapsed().as_secs_f64()
    );
    let table = Command::new(&control_bin)
        .arg("--home")
        .arg(&master_home)
        .arg("-l")
        .output()?;
    print!(
        "$ cluster_control -l\n{}",
        String::from_utf8_lossy(&table.stdout)
    );
    let runtime = LocalClient::connect(&master_home, Duration::from_secs(5))?
        .call_json("get_runtime", b"")?;
    println!(
        "\nIO driver: {}",
        runtime["io_driver"].as_str().unwrap_or("unknown")
    );
    for node in nodes.iter_mut().rev() {
        node.stop();
    }
    println!("Nodes stopped.");
    Ok(())
}

/// Runs the agent simulator; `Ok(false)` when some agent did not make it through.
fn agents(options: &AgentsOptions) -> Result<bool> {
    let mut out = std::io::stdout();
    let summary = loadgen::run_agents(options, &mut out)?;
    Ok(summary.complete())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Cmd::Demo {
            workers,
            io_driver,
            wazuh_version,
        } => demo(workers, &io_driver, &wazuh_version),
        Cmd::Agents {
            home,
            count,
            keepalive_interval,
            duration,
            concurrency,
            name_prefix,
            groups,
            request_timeout,
        } => {
            let options = AgentsOptions {
                home,
                count,
                keepalive_interval: Duration::from_secs(keepalive_interval),
                duration: Duration::from_secs(duration),
                concurrency,
                name_prefix,
                groups,
                request_timeout: Duration::from_secs(request_timeout),
            };
            match agents(&options) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::FAILURE,
                Err(e) => Err(e),
            }
        }
        Cmd::Dapi {
            home,
            requests,
            clients,
            limit,
            request_timeout,
        } => {
            let options = DapiOptions {
                home,
                requests,
                clients,
                limit,
                timeout: Duration::from_secs(request_timeout),
            };
            match run_dapi(&options) {
                Ok(summary) => {
                    println!("{}", summary.line());
                    for failure in summary.failures.iter().take(5) {
                        eprintln!("failed: {failure}");
                    }
                    if !summary.failures.is_empty() {
                        return ExitCode::FAILURE;
                    }
                    Ok(())
                }
                Err(e) => Err(anyhow::anyhow!(e)),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
