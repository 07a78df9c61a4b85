//! `alert-inbox config`: the config file's path and contents, and creating it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;

use crate::config::{Config, ENV_WEBHOOK_SECRET};
use crate::secret::Secret;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the config file's path
    Path,
    /// Print the settings in effect (file and environment), secrets redacted
    Show,
    /// Write a config file with the defaults and a new random webhook secret (mode 0600)
    Init {
        /// Replace an existing file
        #[arg(long)]
        force: bool,
    },
    /// Print a new random webhook secret
    GenerateSecret,
}

pub fn run(config_path: Option<PathBuf>, command: ConfigCommand) -> anyhow::Result<ExitCode> {
    let (config, path) = super::load_config(config_path)?;
    match command {
        ConfigCommand::Path => println!("{}", path.display()),
        ConfigCommand::Show => print!("{}", redacted_toml(&config)?),
        ConfigCommand::Init { force } => {
            if path.exists() && !force {
                bail!(
                    "{} already exists; pass --force to replace it",
                    path.display()
                );
            }
            let config = Config {
                webhook_secrets: vec![Secret::generate()],
                ..Config::default()
            };
            config.save(&path)?;
            println!("Wrote {} with a new webhook secret.", path.display());
            println!(
                "Paste the secret into RealTheory's webhook configuration: it is the \
                 `webhook_secrets` entry in that file (or set {ENV_WEBHOOK_SECRET})."
            );
        }
        ConfigCommand::GenerateSecret => println!("{}", Secret::generate().expose()),
    }
    Ok(ExitCode::SUCCESS)
}

fn redacted_toml(config: &Config) -> anyhow::Result<String> {
    let mut shown = config.clone();
    let redact = |secret: &Secret| Secret::new(secret.to_string());
    shown.webhook_secrets = shown.webhook_secrets.iter().map(redact).collect();
    shown.basic_password = shown.basic_password.as_ref().map(redact);
    shown.tunnel.authtoken = shown.tunnel.authtoken.as_ref().map(redact);
    Ok(toml::to_string_pretty(&shown)?)
}
