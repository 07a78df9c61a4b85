//! The webhook receiver: one axum route that verifies, parses and stores deliveries.
//!
//! Each request to the webhook path goes through these steps, and each step that fails
//! responds at once, after a delivery-log row is written:
//!
//! 1. method (405) and `Content-Encoding` (415);
//! 2. size: `Content-Length` over the limit is 413 before any body is read, and a body
//!    that grows past it while streaming (chunked) is 413 too;
//! 3. HTTP Basic auth, then the HMAC signature of the raw bytes (401), both in constant
//!    time, before any JSON work;
//! 4. parsing (400 with the reason) and the optional payload age (400);
//! 5. storage through the group-commit writer: 200 only after the commit, 503 when the
//!    disk cannot take it, so the sender retries.
//!
//! [`router`] is the only thing served, on loopback and through the tunnel alike.

mod handler;
mod log_limit;
pub mod server;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::any;
use axum::Router;

use crate::config::Config;
use crate::secret::Secret;
pub use crate::store::writer::Via;
use crate::store::WriterHandle;
use verify::BasicCredentials;

/// The destination of verified deliveries.
#[derive(Clone)]
pub enum Sink {
    /// The store: respond only after the commit.
    Store(WriterHandle),
    /// Nowhere: verify and parse only. Used to measure the receiver's ceiling.
    Discard,
}

/// Connection facts the server attaches to every request.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo {
    pub remote: std::net::SocketAddr,
    pub via: Via,
}

/// Settings and shared state of the webhook route.
pub struct Receiver {
    path: String,
    max_body_bytes: usize,
    body_timeout: Duration,
    secrets: Vec<Secret>,
    basic: Option<BasicCredentials>,
    max_payload_age: Option<Duration>,
    sink: Sink,
    rejection_log: log_limit::LogLimit,
}

impl Receiver {
    pub fn new(config: &Config, sink: Sink) -> Self {
        let basic = match (&config.basic_user, &config.basic_password) {
            (Some(user), Some(password)) => Some(BasicCredentials::new(user, password)),
            _ => None,
        };
        Self {
            path: config.path.clone(),
            max_body_bytes: config.max_body_bytes,
            body_timeout: config.body_timeout(),
            secrets: config.webhook_secrets.clone(),
            basic,
            max_payload_age: (config.max_payload_age_secs > 0)
                .then(|| Duration::from_secs(config.max_payload_age_secs)),
            sink,
            rejection_log: log_limit::LogLimit::new(20, Duration::from_secs(60)),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Describes which checks are on, for the start-up log; never includes a secret.
    pub fn describe_checks(&self) -> String {
        let mut checks = Vec::new();
        if self.basic.is_some() {
            checks.push("basic auth".to_owned());
        }
        if !self.secrets.is_empty() {
            checks.push(format!("signature ({} secret(s))", self.secrets.len()));
        }
        if let Some(age) = self.max_payload_age {
            checks.push(format!("payload age <= {}s", age.as_secs()));
        }
        if checks.is_empty() {
            "none".to_owned()
        } else {
            checks.join(", ")
        }
    }

    pub fn is_authenticated(&self) -> bool {
        self.basic.is_some() || !self.secrets.is_empty()
    }
}

/// Builds the router: the webhook route and a 404 for everything else.
pub fn router(receiver: Arc<Receiver>) -> Router {
    let path = receiver.path.clone();
    Router::new()
        .route(&path, any(handler::handle))
        .fallback(handler::not_found)
        .with_state(receiver)
}
