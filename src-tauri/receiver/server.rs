//! Serving the router on a listener: connection cap, header timeout, graceful shutdown.
//!
//! Connections are served with hyper directly rather than `axum::serve`, so that the same
//! code serves loopback sockets and tunnel connections, and so that the header read
//! timeout and the connection cap apply to both.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use super::{ConnectionInfo, Via};

/// How long shutdown waits for in-flight requests before closing their connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Limits applied to every connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// Serves connections of one listener and tracks them for a graceful shutdown.
pub struct ConnectionServer {
    router: Router,
    limits: ConnectionLimits,
    slots: Arc<Semaphore>,
    graceful: GracefulShutdown,
}

impl ConnectionServer {
    pub fn new(router: Router, limits: ConnectionLimits) -> Self {
        Self {
            router,
            limits,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            graceful: GracefulShutdown::new(),
        }
    }

    /// Waits for a free connection slot.
    pub async fn reserve(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed")
    }

    /// Serves one connection on a task of its own; `slot` is released when it closes.
    pub fn serve<IO>(&self, io: IO, remote: SocketAddr, via: Via, slot: OwnedSemaphorePermit)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let info = ConnectionInfo { remote, via };
        let service = self
            .router
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(info);
                request
            });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        let connection = self.graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %remote, "connection ended with an error");
            }
            drop(slot);
        });
    }

    /// Lets in-flight requests finish, for at most [`SHUTDOWN_GRACE`].
    pub async fn shutdown(self) {
        if tokio::time::timeout(SHUTDOWN_GRACE, self.graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "closed connections that were still busy after {} s",
                SHUTDOWN_GRACE.as_secs()
            );
        }
    }
}

/// Accepts loopback connections until `shutdown` completes, then drains them.
pub async fn serve_listener(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let server = ConnectionServer::new(router, limits);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = server.reserve() => slot,
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                server.serve(stream, remote, Via::Loopback, slot);
            }
            Err(error) => {
                // Out of file descriptors and similar: wait instead of spinning.
                tracing::warn!(%error, "failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    server.shutdown().await;
}
