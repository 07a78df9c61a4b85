//! The command line. With no subcommand the desktop app starts; every subcommand runs
//! headless and works while the app or `serve` is running.

mod alerts;
mod config_cmd;
pub mod send_test;
mod serve;
mod tunnel_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, Environment};

#[derive(Debug, Parser)]
#[command(
    name = "alert-inbox",
    version,
    about = "Receives, stores and shows RealTheory system alerts"
)]
pub struct Cli {
    /// Config file [default: the platform config dir, or ALERT_INBOX_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the webhook receiver without a window
    Serve(serve::ServeArgs),
    /// List stored alerts, newest first
    Alerts(alerts::AlertsArgs),
    /// List the delivery log, newest first
    Deliveries(alerts::DeliveriesArgs),
    /// Send a signed example alert to a receiver, as RealTheory would
    SendTest(send_test::SendTestArgs),
    /// Show or create the config file
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Show the public URL and outages, or record the URL RealTheory was given
    #[command(subcommand)]
    Tunnel(tunnel_cmd::TunnelCommand),
}

/// Parses the command line and runs it; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();

    let result = match cli.command {
        Some(Command::Serve(args)) => serve::run(cli.config, args),
        Some(Command::Alerts(args)) => alerts::run_alerts(cli.config, args),
        Some(Command::Deliveries(args)) => alerts::run_deliveries(cli.config, args),
        Some(Command::SendTest(args)) => send_test::run(cli.config, args),
        Some(Command::Config(command)) => config_cmd::run(cli.config, command),
        Some(Command::Tunnel(command)) => tunnel_cmd::run(cli.config, command),
        None => run_desktop(cli.config),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "desktop")]
fn run_desktop(config_path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    crate::desktop::run(config_path)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "desktop"))]
fn run_desktop(_config_path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    eprintln!(
        "this build has no window (built without the `desktop` feature); \
         run `alert-inbox serve` for the receiver or `alert-inbox --help` for the commands"
    );
    Ok(ExitCode::from(2))
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,ngrok=warn,muxado=warn,tao=warn,wry=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Loads the config: defaults, the file, then the environment. The caller applies its
/// own flags on top.
pub(crate) fn load_config(config_path: Option<PathBuf>) -> anyhow::Result<(Config, PathBuf)> {
    let path = match config_path {
        Some(path) => path,
        None => config::default_config_path()?,
    };
    let mut config = Config::load_file(&path)?;
    config.apply_environment(&Environment::from_process());
    Ok((config, path))
}
