//! `alert-inbox tunnel`: the public URL RealTheory was given, and the outage record.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use chrono::{DateTime, Local, Utc};
use clap::Subcommand;

use crate::store::{outages, Store};

#[derive(Debug, Subcommand)]
pub enum TunnelCommand {
    /// Show the current and the given public URL, and recent periods without a tunnel
    Status {
        /// Directory of the alert database [default: the platform's app data dir]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Record that RealTheory now has the current public URL (or URL), so it is not
    /// reported as changed any more
    Given {
        /// The URL RealTheory was given [default: the current public URL]
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Directory of the alert database [default: the platform's app data dir]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

pub fn run(config_path: Option<PathBuf>, command: TunnelCommand) -> anyhow::Result<ExitCode> {
    let (mut config, _) = super::load_config(config_path)?;
    let data_dir = match &command {
        TunnelCommand::Status { data_dir } | TunnelCommand::Given { data_dir, .. } => {
            data_dir.clone()
        }
    };
    if let Some(dir) = data_dir {
        config.data_dir = Some(dir);
    }
    let (_, connection) = Store::open(&config.resolve_data_dir()?)?;
    let current = outages::current_url(&connection)?;
    let given = outages::given_url(&connection)?;

    match command {
        TunnelCommand::Status { .. } => {
            println!(
                "current public URL: {}",
                current.as_deref().unwrap_or("(none yet)")
            );
            println!(
                "given to RealTheory: {}",
                given.as_deref().unwrap_or("(none yet)")
            );
            if current.is_some() && current != given {
                println!(
                    "The public URL changed: update the webhook URL in RealTheory, then run \
                     `alert-inbox tunnel given`."
                );
            }
            let week_ago = Utc::now().timestamp_millis() - 7 * 86_400_000;
            for outage in outages::list(&connection, week_ago)? {
                let end = outage.ended_ms.map_or("now".to_owned(), local_time);
                println!(
                    "offline from {} to {end} ({}): alerts sent then may be missing",
                    local_time(outage.started_ms),
                    outage.reason
                );
            }
        }
        TunnelCommand::Given { url, .. } => {
            let Some(url) = url.or(current) else {
                bail!("no public URL is known yet; start the tunnel first, or pass --url");
            };
            outages::set_given_url(&connection, &url)?;
            println!("Recorded {url} as the URL RealTheory uses.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn local_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|time| {
            time.with_timezone(&Local)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}
