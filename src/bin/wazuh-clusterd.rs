//! `wazuh-clusterd`: the cluster daemon, with the flags of the stock one plus our own settings.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use clusterd::config::{IoDriverChoice, SettingsOverrides};
use clusterd::daemon::{run, DaemonArgs};

#[derive(Parser, Debug)]
#[command(
    name = "wazuh-clusterd",
    disable_version_flag = true,
    about = "Wazuh cluster daemon"
)]
struct Args {
    /// Run in the foreground (log lines are also written to standard error).
    #[arg(short = 'f')]
    foreground: bool,
    /// Raise the log level (-d debug, -dd debug2).
    #[arg(short = 'd', action = clap::ArgAction::Count)]
    debug: u8,
    /// Check the configuration and exit (0: valid, 1: invalid).
    #[arg(short = 't')]
    test_config: bool,
    /// Print the version and exit.
    #[arg(short = 'V')]
    version: bool,
    /// Run as root (accepted for compatibility; the daemon runs as the invoking user).
    #[arg(short = 'r')]
    root: bool,
    /// Wazuh install root.
    #[arg(long, env = "WAZUH_HOME", default_value = "/var/ossec")]
    home: PathBuf,
    /// Wazuh version announced to peers; selects the protocol dialect (4.3.x or 4.13+/4.14.x).
    #[arg(long)]
    wazuh_version: Option<String>,
    /// IO driver of the event loop.
    #[arg(long, value_enum)]
    io_driver: Option<IoDriverChoice>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.version {
        let version = args.wazuh_version.as_deref().unwrap_or("4.3.11");
        println!("Wazuh v{version} - clusterd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let overrides = SettingsOverrides {
        wazuh_version: args.wazuh_version,
        io_driver: args.io_driver,
    };
    let daemon_args = DaemonArgs {
        home: args.home,
        foreground: args.foreground,
        debug_level: args.debug.min(2),
        test_config: args.test_config,
        overrides,
    };
    match run(daemon_args) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("wazuh-clusterd: {e}");
            ExitCode::FAILURE
        }
    }
}
