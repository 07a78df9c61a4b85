//! Starting and stopping the receiver, store writer and tunnel as one unit.
//!
//! Both `alert-inbox serve` and the desktop app run exactly this; the app adds a window,
//! a tray and notifications on top of the events it publishes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::receiver::server::{self, ConnectionLimits};
use crate::receiver::{self, Receiver, Sink};
use crate::store::writer::Retention;
use crate::store::{AlertEvent, Store, StoreError, WriterHandle};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tunnel(#[from] crate::tunnel::TunnelError),
    #[error("start-up was cancelled while the store was opening")]
    Cancelled,
    #[error("failed to listen on {address}: {source}; choose another address with --listen or `listen` in the config file")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// A running receiver. Dropping it does not stop it; call [`Runtime::shutdown`].
pub struct Runtime {
    local_addr: SocketAddr,
    path: String,
    data_dir: PathBuf,
    store: Store,
    writer: WriterHandle,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    writer_thread: std::thread::JoinHandle<()>,
    tunnel: Option<crate::tunnel::TunnelHandle>,
}

impl Runtime {
    /// Opens the store, binds the loopback listener and starts serving.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        config.validate()?;
        let data_dir = config.resolve_data_dir()?;
        // A schema upgrade rebuilds indexes for seconds, so it runs off the async threads.
        let (store, connection) = {
            let (data_dir, max_pages) = (data_dir.clone(), config.max_database_pages);
            tokio::task::spawn_blocking(move || Store::open_with_max_pages(&data_dir, max_pages))
                .await
                .map_err(|error| match error.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(_) => StartError::Cancelled,
                })??
        };
        let retention = Retention {
            max_age: Duration::from_secs(u64::from(config.delivery_retention_days) * 86_400),
            max_rows: config.delivery_retention_rows,
        };
        let (writer, writer_thread) = WriterHandle::spawn(&store, connection, retention)?;

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    address: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            address: config.listen,
            source,
        })?;

        let receiver = Arc::new(Receiver::new(config, Sink::Store(writer.clone())));
        tracing::info!(
            listen = %local_addr,
            path = receiver.path(),
            checks = %receiver.describe_checks(),
            data_dir = %data_dir.display(),
            "receiver started"
        );
        if !receiver.is_authenticated() {
            tracing::warn!(
                "no webhook secret and no Basic credentials are set: anyone who can reach the \
                 receiver can post alerts; set ALERT_INBOX_WEBHOOK_SECRET or webhook_secrets"
            );
        }

        let router = receiver::router(Arc::clone(&receiver));
        let limits = ConnectionLimits {
            header_timeout: config.header_timeout(),
            max_connections: config.max_connections,
        };
        let (stop, stopped) = watch::channel(false);
        let tunnel = if config.tunnel.enabled {
            Some(crate::tunnel::TunnelHandle::start(
                config,
                router.clone(),
                limits,
                stopped.clone(),
                Some(store.clone()),
            )?)
        } else {
            None
        };
        let shutdown = wait_for_stop(stopped);
        let server = tokio::spawn(server::serve_listener(listener, router, limits, shutdown));

        Ok(Self {
            local_addr,
            path: config.path.clone(),
            data_dir,
            store,
            writer,
            stop,
            server,
            writer_thread,
            tunnel,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Returns the loopback webhook URL, such as `http://127.0.0.1:8787/webhook`.
    pub fn local_url(&self) -> String {
        format!("http://{}{}", self.local_addr, self.path)
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.writer.subscribe()
    }

    pub fn tunnel(&self) -> Option<&crate::tunnel::TunnelHandle> {
        self.tunnel.as_ref()
    }

    /// Stops accepting, finishes in-flight deliveries, then stops the writer.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.server.await {
            tracing::error!(%error, "receiver task failed");
        }
        if let Some(tunnel) = self.tunnel {
            tunnel.join().await;
        }
        drop(self.writer);
        // The writer ends once the last handle (held by the router) is gone.
        let join = tokio::task::spawn_blocking(move || self.writer_thread.join());
        if tokio::time::timeout(Duration::from_secs(10), join)
            .await
            .is_err()
        {
            tracing::warn!("store writer did not stop within 10 s");
        }
        tracing::info!("receiver stopped");
    }
}

async fn wait_for_stop(mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow_and_update() {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}
