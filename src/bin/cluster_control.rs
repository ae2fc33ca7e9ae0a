//! `cluster_control`: the operator's view of the cluster, through the local socket.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, CommandFactory, Parser};
use clusterd::control::client::{ControlError, LocalClient};
use clusterd::control::format;
use clusterd::daemon::pidfile::{is_clusterd, running_daemon};
use clusterd::proto::wazuh_error::WazuhError;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(
    name = "cluster_control",
    about = "Wazuh cluster control",
    group(ArgGroup::new("action").args(["agents", "list", "health", "usage"]).multiple(false))
)]
struct Args {
    /// Wazuh install root.
    #[arg(long, env = "WAZUH_HOME", default_value = "/var/ossec")]
    home: PathBuf,
    /// Print what is sent to the daemon and what it answers (on standard error).
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// Filter by node name (-fn).
    #[arg(long = "filter-node", num_args = 0..)]
    filter_node: Vec<String>,
    /// Filter agents by status (-fs).
    #[arg(long = "filter-agent-status", alias = "filter-agents-status", num_args = 0..)]
    filter_status: Vec<String>,
    /// List agents (through the distributed API; from a clusterd master's database directly).
    #[arg(short = 'a', long = "list-agents")]
    agents: bool,
    /// List the cluster's nodes.
    #[arg(short = 'l', long = "list-nodes", alias = "list")]
    list: bool,
    /// Cluster health; `-i more` for details.
    #[arg(short = 'i', long = "health", num_args = 0..=1, default_missing_value = "health")]
    health: Option<String>,
    /// Show usage examples.
    #[arg(short = 'u', long = "usage")]
    usage: bool,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// Accepts Wazuh's two-letter short options (`-fn`, `-fs`).
fn normalized_args() -> Vec<String> {
    std::env::args()
        .map(|a| match a.as_str() {
            "-fn" => "--filter-node".to_string(),
            "-fs" => "--filter-agent-status".to_string(),
            _ => a,
        })
        .collect()
}

/// `-u`: what each form of the tool does.
const USAGE: &str = "
cluster_control [-h] [-d] [-fn [NODE ...]] [-fs [STATUS ...]] [-a | -l | -i [more] | -u]

Examples:
    -l                          list every node of the cluster
    -l -fn <node>...            list the named nodes
    -a                          list every agent of the cluster
    -a -fn <node>...            list the agents reporting to the named nodes
    -a -fs <status>...          list the agents in the named statuses
    -a -fn <node> -fs <status>  both filters at once
    -i                          cluster health: last synchronizations of each worker
    -i more                     cluster health in detail
    -i -fn <node>...            health of the named nodes

Options:
    -l, --list-nodes   -a, --list-agents   -i, --health   -u, --usage
    -fn, --filter-node   -fs, --filter-agent-status   -d, --debug   -h, --help
";

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("ERROR: {message}");
    ExitCode::FAILURE
}

/// Agents asked for per `get_agents` request (the most a node answers at once).
const AGENTS_PER_REQUEST: u64 = 1000;

/// Requests at most for one listing: 100 million agents.
const AGENT_PAGES_MAX: usize = 100_000;

/// `-d`: one line on standard error.
fn debug(args: &Args, message: impl std::fmt::Display) {
    if args.debug {
        eprintln!("DEBUG: {message}");
    }
}

fn remote_failure(e: ControlError) -> ExitCode {
    match e {
        ControlError::Remote(err) => fail(err),
        other => fail(other),
    }
}

/// `-a` through the distributed API, as Wazuh's tool asks it (filters joined with commas, `all`
/// when none): works under any master. The answer is a `WazuhResult` in the stock encoding, or an
/// encoded exception.
fn agents_by_dapi(client: &mut LocalClient, args: &Args) -> Result<Vec<Value>, ExitCode> {
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
    debug(args, format_args!("Sending dapi {request}"));
    let answer = client
        .dapi(request.to_string().as_bytes())
        .map_err(remote_failure)?;
    debug(
        args,
        format_args!("Received a dapi answer of {} bytes", answer.len()),
    );
    let result: Value = serde_json::from_slice(&answer)
        .map_err(|e| fail(format!("the distributed API answered no JSON: {e}")))?;
    if result.get("__wazuh_exception__").is_some() {
        return Err(fail(WazuhError::from_payload(&answer)));
    }
    let dikt = result
        .pointer("/__wazuh_result__/__object__/result")
        .unwrap_or(&result);
    match dikt["items"].as_array() {
        Some(items) => Ok(items.clone()),
        None => Err(fail(format!("unexpected agents overview: {result}"))),
    }
}

/// `-a` from a clusterd master's agent database (`get_agents`, ours), page after page so that each
/// request answers well within its timeout. `None` when the master is Wazuh's daemon, which
/// lists agents only through the distributed API (a clusterd worker relays `get_agents` to it).
fn agents_by_get_agents(
    client: &mut LocalClient,
    args: &Args,
) -> Result<Option<Vec<Value>>, ExitCode> {
    let list = |names: &Vec<String>| {
        if names.is_empty() {
            Value::Null
        } else {
            json!(names)
        }
    };
    let (filter_node, filter_status) = (list(&args.filter_node), list(&args.filter_status));
    let mut items = Vec::new();
    for _ in 0..AGENT_PAGES_MAX {
        let request = json!({"offset": items.len(), "limit": AGENTS_PER_REQUEST,
                             "filter_node": filter_node, "filter_status": filter_status});
        debug(args, format_args!("Sending get_agents {request}"));
        let page = match client.call_json("get_agents", request.to_string().as_bytes()) {
            Ok(page) => page,
            Err(ControlError::Remote(err))
                if err.code == 3000
                    && err
                        .extra
                        .as_deref()
                        .is_some_and(|x| x.contains("'b'get_agents''")) =>
            {
                debug(
                    args,
                    "The master does not know get_agents: asking the distributed API",
                );
                return Ok(None);
            }
            Err(e) => return Err(remote_failure(e)),
        };
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
    Ok(Some(items))
}

fn run(args: Args) -> Result<(), ExitCode> {
    // As Wazuh's tool: nothing is done, not even usage, while the daemon is down.
    let Some(pid) = running_daemon(&args.home) else {
        return Err(fail("Cluster is not running."));
    };
    if !args.filter_status.is_empty() && !args.agents {
        eprintln!("ERROR: Wrong arguments.");
        println!("{USAGE}");
        return Err(ExitCode::FAILURE);
    }
    if args.usage {
        println!("{USAGE}");
        return Ok(());
    }
    if !(args.agents || args.list || args.health.is_some()) {
        let _ = Args::command().print_help();
        return Ok(());
    }
    let clusterd = is_clusterd(pid);
    let mut client = LocalClient::connect(&args.home, Duration::from_secs(args.timeout))
        .map_err(|e| fail(format!("Cluster is not running ({e}).")))?;
    let filter = if args.filter_node.is_empty() {
        Value::Null
    } else {
        json!(args.filter_node)
    };
    // The arguments every Wazuh master takes: 4.3 refuses `distinct`, later releases default it.
    let nodes_args = json!({"filter_node": filter, "offset": 0, "limit": 500, "sort": null, "search": null,
                            "select": null, "filter_type": "all"});
    let get = |client: &mut LocalClient, command: &str, payload: &[u8]| {
        debug(
            &args,
            format_args!("Sending {command} {}", String::from_utf8_lossy(payload)),
        );
        let answer = client.call_json(command, payload).map_err(remote_failure);
        if let Ok(value) = &answer {
            debug(&args, format_args!("Received {value}"));
        }
        answer
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
            let names: Vec<Value> = nodes["items"]
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
            format::health_text(&health, cluster_name, more.eq_ignore_ascii_case("more"))
                .map_err(fail)?
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
    // -a: `get_agents` is ours and fast (paged, straight from the master's database); Wazuh's
    // daemons list agents through the distributed API.
    let fast = match clusterd {
        true => agents_by_get_agents(&mut client, &args)?,
        false => None,
    };
    let items = match fast {
        Some(items) => items,
        None => agents_by_dapi(&mut client, &args)?,
    };
    print!("{}", format::agents_table(&items));
    Ok(())
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
