//! `cluster_control`: the operator's view of the cluster, through the local socket.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clusterd::control::client::{ControlError, LocalClient};
use clusterd::control::format;
use clusterd::daemon::pidfile::{is_clusterd, running_daemon};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(name = "cluster_control", about = "Wazuh cluster control")]
struct Args {
    /// Wazuh install root.
    #[arg(long, env = "WAZUH_HOME", default_value = "/var/ossec")]
    home: PathBuf,
    /// List the connected nodes.
    #[arg(short = 'l', long = "list")]
    list: bool,
    /// Cluster health; `-i more` for details.
    #[arg(short = 'i', long = "health", num_args = 0..=1, default_missing_value = "")]
    health: Option<String>,
    /// List agents (from the master's agent database; on a worker, through the master).
    #[arg(short = 'a', long = "list-agents")]
    agents: bool,
    /// Filter by node name (-fn).
    #[arg(long = "filter-node", num_args = 1..)]
    filter_node: Vec<String>,
    /// Filter agents by status (-fs).
    #[arg(long = "filter-agents-status", num_args = 1..)]
    filter_status: Vec<String>,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// Accepts Wazuh's two-letter short options (`-fn`, `-fs`).
fn normalized_args() -> Vec<String> {
    std::env::args()
        .map(|a| match a.as_str() {
            "-fn" => "--filter-node".to_string(),
            "-fs" => "--filter-agents-status".to_string(),
            _ => a,
        })
        .collect()
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("ERROR: {message}");
    ExitCode::FAILURE
}

/// The local daemon's socket, and whether that daemon is clusterd (and so answers our own commands,
/// such as `get_runtime`) rather than Wazuh's.
fn connect(home: &Path, timeout: u64) -> Result<(LocalClient, bool), ExitCode> {
    let Some(pid) = running_daemon(home) else {
        return Err(fail("Cluster is not running."));
    };
    let client = LocalClient::connect(home, Duration::from_secs(timeout))
        .map_err(|e| fail(format!("Cluster is not running ({e}).")))?;
    Ok((client, is_clusterd(pid)))
}

/// Agents asked for per `get_agents` request (the most a node answers at once).
const AGENTS_PER_REQUEST: u64 = 1000;

/// Requests at most for one listing: 100 million agents.
const AGENT_PAGES_MAX: usize = 100_000;

/// `-a` on Wazuh's daemon: the agents overview through the distributed API, as Wazuh's tool asks
/// it (filters joined with commas, `all` when none). Absent values print as `unknown`.
fn print_agents_by_dapi(client: &mut LocalClient, args: &Args) -> Result<(), ExitCode> {
    let joined = |names: &Vec<String>| match names.is_empty() {
        true => "all".to_owned(),
        false => names.join(","),
    };
    let request = json!({
        "f": {"__callable__": {"__name__": "get_agents_overview", "__module__": "wazuh.core.agent",
                               "__qualname__": "Agent.get_agents_overview", "__type__": "function"}},
        "f_kwargs": {"filters": {"status": joined(&args.filter_status), "node_name": joined(&args.filter_node)},
                     "limit": null, "select": ["id", "ip", "name", "status", "node_name", "version"]},
        "from_cluster": false,
        "wait_for_complete": false
    });
    let answer = client
        .dapi(request.to_string().as_bytes())
        .map_err(|e| match e {
            ControlError::Remote(err) => fail(err),
            other => fail(other),
        })?;
    let result: serde_json::Value = serde_json::from_slice(&answer)
        .map_err(|e| fail(format!("the distributed API answered no JSON: {e}")))?;
    let Some(items) = result["items"].as_array() else {
        return Err(fail(format!("unexpected agents overview: {result}")));
    };
    print!("{}", format::agents_table(items));
    Ok(())
}

/// `-a`: every agent, read page after page so that each request answers well within its timeout.
fn print_agents(client: &mut LocalClient, args: &Args) -> Result<(), ExitCode> {
    let list = |names: &Vec<String>| {
        if names.is_empty() {
            serde_json::Value::Null
        } else {
            json!(names)
        }
    };
    let (filter_node, filter_status) = (list(&args.filter_node), list(&args.filter_status));
    let mut items = Vec::new();
    for _ in 0..AGENT_PAGES_MAX {
        let request = json!({"offset": items.len(), "limit": AGENTS_PER_REQUEST,
                             "filter_node": filter_node, "filter_status": filter_status});
        let page = client
            .call_json("get_agents", request.to_string().as_bytes())
            .map_err(|e| match e {
                // A clusterd worker relays `get_agents` to its master; a stock master does not
                // know it and lists agents only through the distributed API.
                ControlError::Remote(err)
                    if err.code == 3000
                        && err.extra.as_deref().is_some_and(|x| x.contains("'b'get_agents''")) =>
                {
                    fail(format!(
                        "{err}. The master is a Wazuh node: it lists agents through the distributed API, \
                         which this worker does not relay; run cluster_control -a on the master."
                    ))
                }
                ControlError::Remote(err) => fail(err),
                other => fail(other),
            })?;
        let (Some(total), Some(rows)) = (page["totalItems"].as_u64(), page["items"].as_array())
        else {
            return Err(fail(format!("unexpected get_agents answer: {page}")));
        };
        if rows.is_empty() {
            break;
        }
        items.extend(rows.iter().cloned());
        if items.len() as u64 >= total {
            break;
        }
    }
    print!("{}", format::agents_table(&items));
    Ok(())
}

fn run(args: Args) -> Result<(), ExitCode> {
    if !args.filter_status.is_empty() && !args.agents {
        return Err(fail("Wrong arguments."));
    }
    let (mut client, clusterd) = connect(&args.home, args.timeout)?;
    let filter = if args.filter_node.is_empty() {
        serde_json::Value::Null
    } else {
        json!(args.filter_node)
    };
    // The arguments every Wazuh master takes: 4.3 refuses `distinct`, later releases default it.
    let nodes_args = json!({"filter_node": filter, "offset": 0, "limit": 500, "sort": null, "search": null,
                            "select": null, "filter_type": "all"});
    let get = |client: &mut LocalClient,
               command: &str,
               payload: &[u8]|
     -> Result<serde_json::Value, ExitCode> {
        client.call_json(command, payload).map_err(|e| match e {
            ControlError::Remote(err) => fail(err),
            other => fail(other),
        })
    };
    if args.list {
        let nodes = get(&mut client, "get_nodes", nodes_args.to_string().as_bytes())?;
        print!("{}", format::nodes_table(&nodes).map_err(fail)?);
        return Ok(());
    }
    if let Some(more) = &args.health {
        // As Wazuh's tool: the health of the named nodes, or of every node `get_nodes` lists.
        let names = if args.filter_node.is_empty() {
            let nodes = get(&mut client, "get_nodes", nodes_args.to_string().as_bytes())?;
            let names: Vec<serde_json::Value> = nodes["items"]
                .as_array()
                .map(|a| a.iter().map(|i| i["name"].clone()).collect())
                .unwrap_or_default();
            json!(names)
        } else {
            filter
        };
        let health = get(&mut client, "get_health", names.to_string().as_bytes())?;
        let config = get(&mut client, "get_config", b"")?;
        let cluster_name = config["name"].as_str().unwrap_or("wazuh");
        print!(
            "{}",
            format::health_text(&health, cluster_name, more == "more").map_err(fail)?
        );
        // Ours only: a Wazuh daemon is never asked, and a daemon that cannot say is passed over.
        if clusterd {
            if let Ok(runtime) = client.call_json("get_runtime", b"") {
                if let Some(driver) = runtime["io_driver"].as_str() {
                    println!("IO driver: {driver}");
                }
            }
        }
        return Ok(());
    }
    if args.agents {
        // `get_agents` is ours; Wazuh's daemon lists agents through the distributed API.
        if !clusterd {
            return print_agents_by_dapi(&mut client, &args);
        }
        return print_agents(&mut client, &args);
    }
    Err(fail("Nothing to do: use -l, -i or -a (see --help)."))
}

fn main() -> ExitCode {
    match Args::try_parse_from(normalized_args()) {
        Ok(args) => match run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(code) => code,
        },
        Err(e) => {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { 2 } else { 0 })
        }
    }
}
