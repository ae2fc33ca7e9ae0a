//! `wazuh-clusterd`: the cluster daemon, with the flags of the stock one plus our own settings.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use clusterd::config::{IoDriverChoice, Settings, SettingsOverrides, SETTINGS_TOML};
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
    /// Raise the log level by one (-d debug, -dd debug2), over `wazuh_clusterd.debug` of the
    /// internal options files.
    #[arg(short = 'd', action = clap::ArgAction::Count)]
    debug: u8,
    /// Check the configuration and exit (0: valid, 1: invalid).
    #[arg(short = 't')]
    test_config: bool,
    /// Print the version (the Wazuh release this node speaks, then ours) and exit.
    #[arg(short = 'V')]
    version: bool,
    /// Keep running as root (started as root, the daemon otherwise drops to the `wazuh` user).
    #[arg(short = 'r')]
    root: bool,
    /// The ossec.conf to read (default: HOME/etc/ossec.conf).
    #[arg(short = 'c', value_name = "config")]
    config_file: Option<PathBuf>,
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

/// `-V`: the version line of the Wazuh release this node speaks (as the stock daemon prints it),
/// then ours and the licence.
fn version(home: &Path, overrides: &SettingsOverrides) -> ExitCode {
    let settings = match Settings::load(&home.join(SETTINGS_TOML), overrides) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("wazuh-clusterd: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "\nWazuh {} - Wazuh Inc\n\nclusterd {} (a reimplementation of the Wazuh cluster daemon)\n\n\
         This program is free software; you can redistribute it and/or modify it under the terms\n\
         of the GNU General Public License version 2 as published by the Free Software Foundation.\n",
        settings.wazuh_version,
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args = Args::parse();
    let overrides = SettingsOverrides {
        wazuh_version: args.wazuh_version,
        io_driver: args.io_driver,
    };
    if args.version {
        return version(&args.home, &overrides);
    }
    let daemon_args = DaemonArgs {
        home: args.home,
        foreground: args.foreground,
        debug_flags: args.debug.min(2),
        test_config: args.test_config,
        keep_root: args.root,
        ossec_conf: args.config_file,
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
