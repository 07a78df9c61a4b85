//! The public URL: an ngrok HTTP endpoint serving the same router as the loopback listener.
//!
//! # Reconnects
//! ngrok 0.19 reconnects by itself with a backoff that reaches about 104 minutes, far too
//! long after a laptop wakes. The session here is built with a connector that cancels the
//! crate's own reconnect, so a dropped session ends, and [`supervise`] starts a new one on
//! its own schedule ([`backoff`], at most 30 s), at once after a detected wake (the wall
//! clock jumps ahead of the monotonic clock), when the default route changes, or when the
//! user asks ([`TunnelHandle::retry_now`]).
//!
//! # Honesty
//! The status is a [`TunnelStatus`] on a watch channel, shown by the window, the tray and
//! `serve`'s log. Every period without a tunnel is stored as an outage, so the inbox can
//! say when alerts may be missing.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use futures_util::TryStreamExt;
use ngrok::prelude::*;
use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::receiver::server::{ConnectionLimits, ConnectionServer};
use crate::receiver::Via;
use crate::secret::Secret;
use crate::store::{now_ms, outages, Store};

/// Maximum wait for a session to connect before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest pause between reconnect attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(
        "refusing to open a public tunnel without authentication: set a webhook secret \
         (ALERT_INBOX_WEBHOOK_SECRET or webhook_secrets in the config file) or Basic \
         credentials (ALERT_INBOX_BASIC_USER and ALERT_INBOX_BASIC_PASSWORD) first"
    )]
    Unauthenticated,
}

/// The tunnel's state, as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum TunnelStatus {
    Off,
    #[serde(rename_all = "camelCase")]
    Connecting {
        attempt: u32,
    },
    #[serde(rename_all = "camelCase")]
    Online {
        url: String,
        /// The URL differs from the one RealTheory was last given.
        url_changed: bool,
        previous_url: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Reconnecting {
        attempt: u32,
        /// When the next attempt starts, in milliseconds since the epoch.
        next_try_ms: i64,
        error: String,
    },
    #[serde(rename_all = "camelCase")]
    Failed {
        /// ngrok's error code, such as `ERR_NGROK_105`, when it sent one.
        code: Option<String>,
        message: String,
        /// The action that fixes it, for the user.
        hint: String,
    },
}

impl std::fmt::Display for TunnelStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Connecting { attempt } => write!(f, "connecting (attempt {attempt})"),
            Self::Online { url, .. } => write!(f, "online at {url}"),
            Self::Reconnecting { attempt, error, .. } => {
                write!(f, "reconnecting (attempt {attempt}) after: {error}")
            }
            Self::Failed {
                code,
                message,
                hint,
            } => match code {
                Some(code) => write!(f, "failed: {message} ({code}); {hint}"),
                None => write!(f, "failed: {message}; {hint}"),
            },
        }
    }
}

/// The ngrok settings a session is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSettings {
    pub authtoken: Option<Secret>,
    pub domain: Option<String>,
    pub server_addr: Option<String>,
}

impl TunnelSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            authtoken: config
                .tunnel
                .authtoken
                .clone()
                .filter(|token| !token.is_empty()),
            domain: config
                .tunnel
                .domain
                .clone()
                .filter(|domain| !domain.trim().is_empty()),
            server_addr: config.tunnel.server_addr.clone(),
        }
    }

    /// Builds the session builder, or the failed status that explains why it cannot be.
    pub fn session_builder(&self) -> Result<ngrok::session::SessionBuilder, TunnelStatus> {
        let Some(token) = &self.authtoken else {
            return Err(TunnelStatus::Failed {
                code: None,
                message: "no ngrok authtoken is set".to_owned(),
                hint: "set NGROK_AUTHTOKEN, or the authtoken in Settings (tunnel.authtoken in \
                       the config file); get one from https://dashboard.ngrok.com/get-started/your-authtoken"
                    .to_owned(),
            });
        };
        let mut builder = ngrok::Session::builder();
        builder.authtoken(token.expose());
        // A reconnect request from the crate is refused, so a dropped session ends and
        // `supervise` rebuilds it on its own schedule.
        builder.connector(
            |host: String,
             port: u16,
             tls: Arc<rustls::ClientConfig>,
             error: Option<ngrok::tunnel::AcceptError>| async move {
                if error.is_some() {
                    return Err(ngrok::session::ConnectError::Canceled);
                }
                ngrok::session::default_connect(host, port, tls, None).await
            },
        );
        if let Some(address) = &self.server_addr {
            builder
                .server_addr(address)
                .map_err(|error| TunnelStatus::Failed {
                    code: None,
                    message: format!("invalid ngrok server address {address:?}: {error}"),
                    hint: "fix tunnel.server_addr in the config file or remove it".to_owned(),
                })?;
        }
        Ok(builder)
    }
}

/// Returns the pause before reconnect attempt `attempt` (1-based): 1, 2, 4, 8, 16, then 30 s.
pub fn backoff(attempt: u32) -> Duration {
    let seconds = 1u64 << attempt.saturating_sub(1).min(5);
    Duration::from_secs(seconds).min(MAX_BACKOFF)
}

/// Classifies a connect or listen failure: the status to show and whether to retry.
fn classify(code: Option<&str>, message: String, domain: Option<&str>) -> (TunnelStatus, bool) {
    let failed = |hint: &str| TunnelStatus::Failed {
        code: code.map(str::to_owned),
        message: message.clone(),
        hint: hint.to_owned(),
    };
    match code {
        Some("ERR_NGROK_105" | "ERR_NGROK_106" | "ERR_NGROK_107" | "ERR_NGROK_4018") => (
            failed("the ngrok authtoken is missing, invalid or revoked: copy a valid one from https://dashboard.ngrok.com/get-started/your-authtoken into Settings or NGROK_AUTHTOKEN"),
            false,
        ),
        Some("ERR_NGROK_334") => (
            failed(&format!(
                "the domain {} is already online in another ngrok session: stop that agent, or choose another domain",
                domain.unwrap_or("(none)")
            )),
            false,
        ),
        Some("ERR_NGROK_313" | "ERR_NGROK_320" | "ERR_NGROK_326") => (
            failed("this ngrok account cannot use that domain: reserve it in the ngrok dashboard, or clear the domain setting"),
            false,
        ),
        _ => (
            failed("check the network connection; Alert Inbox keeps retrying"),
            true,
        ),
    }
}

/// A running tunnel supervisor.
pub struct TunnelHandle {
    status: watch::Receiver<TunnelStatus>,
    retry: Arc<Notify>,
    task: JoinHandle<()>,
}

impl TunnelHandle {
    /// Starts the supervisor. Fails only when the receiver has no authentication at all;
    /// every other problem shows in the status and the loopback receiver keeps working.
    pub fn start(
        config: &Config,
        router: Router,
        limits: ConnectionLimits,
        stopped: watch::Receiver<bool>,
        store: Option<Store>,
    ) -> Result<Self, TunnelError> {
        if !config.is_authenticated() {
            return Err(TunnelError::Unauthenticated);
        }
        let settings = TunnelSettings::from_config(config);
        let (status_sender, status) = watch::channel(TunnelStatus::Off);
        let retry = Arc::new(Notify::new());
        let task = tokio::spawn(supervise(
            settings,
            ConnectionServer::new(router, limits),
            status_sender,
            Arc::clone(&retry),
            stopped,
            store,
        ));
        Ok(Self {
            status,
            retry,
            task,
        })
    }

    pub fn status(&self) -> TunnelStatus {
        self.status.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<TunnelStatus> {
        self.status.clone()
    }

    /// Starts the next attempt now instead of after the backoff.
    pub fn retry_now(&self) {
        self.retry.notify_one();
    }

    pub async fn join(self) {
        let _ = self.task.await;
    }
}

async fn supervise(
    settings: TunnelSettings,
    server: ConnectionServer,
    status: watch::Sender<TunnelStatus>,
    retry: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
    store: Option<Store>,
) {
    let outages = OutageLog::new(store);
    let mut attempt: u32 = 0;

    while !*stopped.borrow() {
        attempt += 1;
        let previous = status.borrow().clone();
        let announce = match previous {
            TunnelStatus::Reconnecting { .. } | TunnelStatus::Online { .. } => None,
            _ => Some(TunnelStatus::Connecting { attempt }),
        };
        if let Some(connecting) = announce {
            publish(&status, connecting);
        }

        let builder = match settings.session_builder() {
            Ok(builder) => builder,
            Err(failed) => {
                publish(&status, failed);
                // Nothing changes without new settings, which restart the supervisor.
                let _ = stopped.changed().await;
                break;
            }
        };

        let outcome = tokio::select! {
            outcome = run_session(&builder, &settings, &server, &status, &outages) => outcome,
            _ = stopped.changed() => break,
        };
        let (failed, retry_allowed) = match outcome {
            SessionEnd::Dropped(error) => {
                // It was online: start counting again.
                attempt = 1;
                (
                    TunnelStatus::Failed {
                        code: None,
                        message: error,
                        hint: String::new(),
                    },
                    true,
                )
            }
            SessionEnd::Failed { code, message } => {
                classify(code.as_deref(), message, settings.domain.as_deref())
            }
        };
        if !retry_allowed {
            tracing::error!(status = %failed, "ngrok tunnel failed");
            publish(&status, failed);
            tokio::select! {
                () = retry.notified() => { attempt = 0; continue; }
                _ = stopped.changed() => break,
            }
        }

        let pause = backoff(attempt);
        let error = match &failed {
            TunnelStatus::Failed { message, .. } => message.clone(),
            other => other.to_string(),
        };
        tracing::warn!(attempt, retry_in_s = pause.as_secs(), %error, "ngrok tunnel down; retrying");
        publish(
            &status,
            TunnelStatus::Reconnecting {
                attempt,
                next_try_ms: now_ms() + pause.as_millis() as i64,
                error,
            },
        );
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = retry.notified() => {}
            () = wake_detected() => tracing::info!("machine woke from sleep; reconnecting now"),
            () = default_route_changed() => tracing::info!("network changed; reconnecting now"),
            _ = stopped.changed() => break,
        }
    }

    outages.end();
    publish(&status, TunnelStatus::Off);
    server.shutdown().await;
}

enum SessionEnd {
    /// The session was online and then went away.
    Dropped(String),
    /// Connecting or listening failed.
    Failed {
        code: Option<String>,
        message: String,
    },
}

async fn run_session(
    builder: &ngrok::session::SessionBuilder,
    settings: &TunnelSettings,
    server: &ConnectionServer,
    status: &watch::Sender<TunnelStatus>,
    outages: &OutageLog,
) -> SessionEnd {
    let session = match tokio::time::timeout(CONNECT_TIMEOUT, builder.connect()).await {
        Err(_) => {
            return SessionEnd::Failed {
                code: None,
                message: format!(
                    "no answer from the ngrok service within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ),
            }
        }
        Ok(Err(error)) => {
            outages.begin("tunnel could not connect");
            return SessionEnd::Failed {
                code: error.error_code().map(str::to_owned),
                message: describe(&error),
            };
        }
        Ok(Ok(session)) => session,
    };

    let mut endpoint = session.http_endpoint();
    if let Some(domain) = &settings.domain {
        endpoint.domain(domain);
    }
    let mut tunnel = match endpoint.listen().await {
        Ok(tunnel) => tunnel,
        Err(error) => {
            outages.begin("tunnel could not listen");
            return SessionEnd::Failed {
                code: error.error_code().map(str::to_owned),
                message: describe(&error),
            };
        }
    };

    let url = tunnel.url().to_owned();
    let previous_url = outages.remember_url(&url);
    let url_changed = previous_url
        .as_deref()
        .is_some_and(|previous| previous != url);
    tracing::info!(%url, url_changed, "ngrok tunnel online");
    if url_changed {
        tracing::warn!(
            %url,
            given = previous_url.as_deref().unwrap_or_default(),
            "the public URL changed: update the webhook URL in RealTheory, then run `alert-inbox tunnel given`"
        );
    }
    outages.end();
    publish(
        status,
        TunnelStatus::Online {
            url,
            url_changed,
            previous_url,
        },
    );

    loop {
        let slot = server.reserve().await;
        match tunnel.try_next().await {
            Ok(Some(connection)) => {
                let remote = connection.remote_addr();
                server.serve(connection, remote, Via::Tunnel, slot);
            }
            Ok(None) => {
                outages.begin("tunnel closed");
                return SessionEnd::Dropped("the ngrok session closed".to_owned());
            }
            Err(error) => {
                outages.begin("tunnel connection lost");
                return SessionEnd::Dropped(format!("the ngrok session was lost: {error}"));
            }
        }
    }
}

/// Formats an error with its causes, which carry the useful part ("connection refused").
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn publish(sender: &watch::Sender<TunnelStatus>, status: TunnelStatus) {
    sender.send_if_modified(|current| {
        if *current == status {
            false
        } else {
            *current = status;
            true
        }
    });
}

/// Resolves when the wall clock runs ahead of the monotonic clock, which is what a
/// suspended machine looks like after it resumes.
async fn wake_detected() {
    const TICK: Duration = Duration::from_secs(2);
    const JUMP_MS: i64 = 5_000;
    loop {
        let wall_before = now_ms();
        tokio::time::sleep(TICK).await;
        let elapsed_wall = now_ms() - wall_before;
        if elapsed_wall - TICK.as_millis() as i64 > JUMP_MS {
            return;
        }
    }
}

/// Resolves when the set of interfaces with a default route changes, which is what a
/// returning network looks like. Reads Linux's `/proc/net/route`; elsewhere it never
/// resolves and the backoff alone paces reconnects.
async fn default_route_changed() {
    const TICK: Duration = Duration::from_secs(2);
    let initial = default_routes();
    if initial.is_none() {
        return std::future::pending().await;
    }
    loop {
        tokio::time::sleep(TICK).await;
        if default_routes() != initial {
            return;
        }
    }
}

/// Interfaces that have a default route, from `/proc/net/route`; `None` if unreadable.
fn default_routes() -> Option<Vec<String>> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    Some(parse_default_routes(&table))
}

fn parse_default_routes(table: &str) -> Vec<String> {
    let mut interfaces: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let interface = fields.next()?;
            let destination = fields.next()?;
            (destination == "00000000").then(|| interface.to_owned())
        })
        .collect();
    interfaces.sort();
    interfaces
}

/// Records outages and the last public URL in the store, when there is one.
struct OutageLog {
    connection: Option<std::sync::Mutex<rusqlite::Connection>>,
    open: std::sync::atomic::AtomicBool,
}

impl OutageLog {
    fn new(store: Option<Store>) -> Self {
        let connection = store.and_then(|store| match store.open_connection() {
            Ok(connection) => Some(std::sync::Mutex::new(connection)),
            Err(error) => {
                tracing::warn!(%error, "failed to open the store for tunnel outages");
                None
            }
        });
        Self {
            connection,
            open: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn with_connection(
        &self,
        action: impl FnOnce(&rusqlite::Connection) -> Result<(), crate::store::StoreError>,
    ) {
        if let Some(connection) = &self.connection {
            let connection = connection
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Err(error) = action(&connection) {
                tracing::warn!(%error, "failed to record tunnel outage");
            }
        }
    }

    fn begin(&self, reason: &str) {
        if !self.open.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.with_connection(|connection| outages::begin(connection, reason));
        }
    }

    fn end(&self) {
        if self.open.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.with_connection(outages::end);
        }
    }

    /// Stores `url` as the current public URL; returns the URL RealTheory was last given.
    fn remember_url(&self, url: &str) -> Option<String> {
        let mut given = None;
        self.with_connection(|connection| {
            given = outages::given_url(connection)?;
            if given.is_none() {
                // The first URL ever is the one the user will paste into RealTheory.
                outages::set_given_url(connection, url)?;
            }
            outages::set_current_url(connection, url)
        });
        given
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_config() {
        let mut config = Config::default();
        config.tunnel.authtoken = Some(Secret::new("token"));
        config.tunnel.domain = Some("inbox.ngrok.app".to_owned());
        let settings = TunnelSettings::from_config(&config);
        assert_eq!(settings.authtoken, Some(Secret::new("token")));
        assert_eq!(settings.domain.as_deref(), Some("inbox.ngrok.app"));
        assert!(settings.session_builder().is_ok());
    }

    #[test]
    fn blank_settings_count_as_unset() {
        let mut config = Config::default();
        config.tunnel.authtoken = Some(Secret::new(""));
        config.tunnel.domain = Some("  ".to_owned());
        let settings = TunnelSettings::from_config(&config);
        assert_eq!(settings.authtoken, None);
        assert_eq!(settings.domain, None);
    }

    #[test]
    fn default_routes_parsed() {
        let table = "Iface\tDestination\tGateway\tFlags\n\
                     wlan0\t00000000\t0101A8C0\t0003\n\
                     wlan0\t0001A8C0\t00000000\t0001\n\
                     eth0\t00000000\t0100000A\t0003\n";
        assert_eq!(parse_default_routes(table), ["eth0", "wlan0"]);
        assert!(parse_default_routes("Iface\tDestination\n").is_empty());
    }

    #[test]
    fn backoff_is_capped() {
        let schedule: Vec<u64> = (1..=8).map(|attempt| backoff(attempt).as_secs()).collect();
        assert_eq!(schedule, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn missing_token_explains_fix() {
        let settings = TunnelSettings {
            authtoken: None,
            domain: None,
            server_addr: None,
        };
        let Err(TunnelStatus::Failed { hint, .. }) = settings.session_builder() else {
            panic!("expected a failed status");
        };
        assert!(hint.contains("NGROK_AUTHTOKEN"), "{hint}");
    }

    #[test]
    fn bad_token_not_retried() {
        let (status, retry) = classify(
            Some("ERR_NGROK_105"),
            "authentication failed".to_owned(),
            None,
        );
        assert!(!retry);
        let TunnelStatus::Failed { code, hint, .. } = status else {
            panic!("expected a failed status");
        };
        assert_eq!(code.as_deref(), Some("ERR_NGROK_105"));
        assert!(hint.contains("authtoken"), "{hint}");
    }

    #[test]
    fn taken_domain_names_domain() {
        let (status, retry) = classify(
            Some("ERR_NGROK_334"),
            "in use".to_owned(),
            Some("inbox.ngrok.app"),
        );
        assert!(!retry);
        assert!(status.to_string().contains("inbox.ngrok.app"), "{status}");
    }

    #[test]
    fn network_error_retried() {
        let (_, retry) = classify(None, "failed to establish tcp connection".to_owned(), None);
        assert!(retry);
    }

    #[test]
    fn status_serializes_with_state_tag() {
        let status = TunnelStatus::Online {
            url: "https://a.ngrok.app".to_owned(),
            url_changed: false,
            previous_url: None,
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["state"], "online");
        assert_eq!(json["url"], "https://a.ngrok.app");
    }
}
