//! `alert-inbox serve`: the receiver, store and optional tunnel without a window.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::runtime::Runtime;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, such as 127.0.0.1:8787 (port 0 picks a free port)
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Directory of the alert database [default: the platform's app data dir]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// URL path of the webhook route [default: /webhook]
    #[arg(long, value_name = "PATH")]
    path: Option<String>,
    /// Also open a public ngrok tunnel (needs NGROK_AUTHTOKEN and a secret or Basic credentials)
    #[arg(long)]
    tunnel: bool,
    /// Reserved ngrok domain for the tunnel, so its URL stays the same
    #[arg(long, value_name = "DOMAIN", requires = "tunnel")]
    domain: Option<String>,
}

pub fn run(config_path: Option<PathBuf>, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let (mut config, _) = super::load_config(config_path)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = Some(dir);
    }
    if let Some(path) = args.path {
        config.path = path;
    }
    if args.tunnel {
        config.tunnel.enabled = true;
    }
    if let Some(domain) = args.domain {
        config.tunnel.domain = Some(domain);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("receiver")
        .build()?;
    runtime.block_on(async move {
        // Installed before the URL is printed, so a signal sent right after it is handled.
        let signals = Signals::install()?;
        let running = Runtime::start(&config).await?;
        println!("Listening on {}", running.local_url());

        let tunnel_log = running
            .tunnel()
            .map(|tunnel| tokio::spawn(report_tunnel(tunnel.watch())));
        signals.wait().await;
        tracing::info!("stopping: finishing in-flight deliveries");
        if let Some(task) = tunnel_log {
            task.abort();
        }
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Prints each tunnel status change, so the public URL appears on stdout.
async fn report_tunnel(mut status: tokio::sync::watch::Receiver<crate::tunnel::TunnelStatus>) {
    loop {
        let current = status.borrow_and_update().clone();
        match &current {
            crate::tunnel::TunnelStatus::Online { url, .. } => println!("Public URL: {url}"),
            other => println!("Tunnel: {other}"),
        }
        if status.changed().await.is_err() {
            return;
        }
    }
}

/// SIGINT and SIGTERM, either of which stops `serve` cleanly.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
