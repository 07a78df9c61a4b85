//! The app's shared state and the start, stop and restart of the runtime behind it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde::Serialize;
use tauri::async_runtime::JoinHandle;
use tauri::{AppHandle, Emitter, Manager};

use super::{events, tray};
use crate::config::Config;
use crate::notify_rules::{Gate, Rules};
use crate::runtime::{Runtime, StartError};
use crate::store::facet_index::FacetIndex;
use crate::store::query::{self, AlertFilter, FacetSummary};
use crate::store::Store;

/// Event sent to the window when the runtime started, stopped or restarted.
pub const RUNTIME_EVENT: &str = "runtime-changed";

/// Everything the commands, the tray and the notifier share.
pub struct AppState {
    pub config_path: PathBuf,
    running: tokio::sync::Mutex<Option<Running>>,
    /// Read-write connection for the window's reads and triage; `None` before start-up.
    pub db: Arc<Mutex<Option<Connection>>>,
    pub gate: Arc<Mutex<Gate>>,
    pub info: RwLock<RuntimeInfo>,
    /// The in-memory copy of the facet columns that the window's facet counts read.
    pub facets: Arc<Mutex<FacetCopy>>,
}

/// The facet copy of the open store ([`FacetIndex`]), once it is built.
#[derive(Default)]
pub struct FacetCopy {
    store: Option<Store>,
    index: Option<FacetIndex>,
    building: bool,
    /// Counts starts of the runtime and builds, so a build learns whether it is still wanted.
    generation: u64,
    /// When the last build failed.
    failed_at: Option<Instant>,
}

/// A started runtime and the tasks that forward its events.
struct Running {
    runtime: Runtime,
    tasks: Vec<JoinHandle<()>>,
}

/// Receiver state, as the window shows it.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeInfo {
    pub running: bool,
    /// Loopback webhook URL, such as `http://127.0.0.1:8787/webhook`.
    pub local_url: Option<String>,
    pub data_dir: Option<String>,
    pub config_path: String,
    /// Reason the receiver did not start.
    pub start_error: Option<String>,
    /// Reason the tunnel did not start while the receiver did.
    pub tunnel_error: Option<String>,
    pub tunnel_enabled: bool,
    /// Whether the store is still opening, before the receiver starts.
    pub starting: bool,
    /// The schema upgrade that runs while the store opens, if any.
    pub upgrade: Option<SchemaUpgrade>,
}

/// A schema upgrade of the store, from one version to another.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SchemaUpgrade {
    pub from: u32,
    pub to: u32,
}

impl AppState {
    pub fn new(config_path: PathBuf) -> Self {
        Self {
            // Setup starts the runtime in the background, so the window first reads it as starting.
            info: RwLock::new(RuntimeInfo {
                config_path: config_path.display().to_string(),
                starting: true,
                ..RuntimeInfo::default()
            }),
            config_path,
            running: tokio::sync::Mutex::new(None),
            db: Arc::new(Mutex::new(None)),
            facets: Arc::default(),
            gate: Arc::new(Mutex::new(Gate::new(Rules::from_config(
                &crate::config::NotificationConfig::default(),
            )))),
        }
    }

    pub fn info(&self) -> RuntimeInfo {
        self.info
            .read()
            .expect("runtime info lock poisoned")
            .clone()
    }

    /// Loads the effective config: defaults, the file, then the environment.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let (config, _) = crate::cli::load_config(Some(self.config_path.clone()))?;
        Ok(config)
    }

    /// Returns the tunnel's status watch, when a tunnel runs.
    pub async fn tunnel_watch(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<crate::tunnel::TunnelStatus>> {
        let running = self.running.lock().await;
        running
            .as_ref()
            .and_then(|running| running.runtime.tunnel())
            .map(crate::tunnel::TunnelHandle::watch)
    }

    /// Asks the tunnel to reconnect now instead of after its backoff.
    pub async fn retry_tunnel(&self) -> bool {
        let running = self.running.lock().await;
        match running
            .as_ref()
            .and_then(|running| running.runtime.tunnel())
        {
            Some(tunnel) => {
                tunnel.retry_now();
                true
            }
            None => false,
        }
    }
}

/// Starts the receiver (and the tunnel when configured) and records what happened.
///
/// The window shows that the store is opening meanwhile, and which schema upgrade runs
/// when there is one. A tunnel that refuses to start because no secret or Basic
/// credentials are set does not stop the receiver: it starts without the tunnel, and the
/// window shows the reason.
pub async fn start_runtime(app: &AppHandle) {
    let state = app.state::<AppState>();
    // Held until the runtime is stored, so a restart waits for a start still under way.
    let mut running = state.running.lock().await;
    let mut info = RuntimeInfo {
        config_path: state.config_path.display().to_string(),
        starting: true,
        ..RuntimeInfo::default()
    };
    publish(app, &info);

    let started = match state.load_config() {
        Ok(mut config) => {
            info.tunnel_enabled = config.tunnel.enabled;
            state
                .gate
                .lock()
                .expect("notification gate lock poisoned")
                .set_rules(Rules::from_config(&config.notifications));
            let data_dir = config.resolve_data_dir().ok();
            info.data_dir = data_dir.as_ref().map(|dir| dir.display().to_string());
            let upgrade = data_dir.and_then(|data_dir| {
                Store::pending_upgrade(&data_dir).unwrap_or_else(|error| {
                    // If the error lasts, opening the store below reports it.
                    tracing::debug!(%error, "failed to read the store's schema version");
                    None
                })
            });
            if let Some((from, to)) = upgrade {
                info.upgrade = Some(SchemaUpgrade { from, to });
            }
            publish(app, &info);
            match Runtime::start(&config).await {
                Err(StartError::Tunnel(error)) => {
                    tracing::warn!(%error, "starting without the tunnel");
                    info.tunnel_error = Some(error.to_string());
                    config.tunnel.enabled = false;
                    Runtime::start(&config)
                        .await
                        .map_err(|error| (error.to_string(), Some(config)))
                }
                result => result.map_err(|error| (error.to_string(), Some(config))),
            }
        }
        Err(error) => Err((format!("{error:#}"), None)),
    };

    match started {
        Ok(runtime) => {
            info.running = true;
            info.local_url = Some(runtime.local_url());
            info.data_dir = Some(runtime.data_dir().display().to_string());
            let connection = runtime.store().open_inbox_connection();
            set_connection(&state, connection.map_err(|error| error.to_string()));
            copy_facets_of(&state.facets, Some(runtime.store().clone()));
            let tasks = events::spawn_forwarders(app.clone(), &runtime);
            *running = Some(Running { runtime, tasks });
        }
        Err((error, config)) => {
            tracing::error!(%error, "receiver did not start");
            info.start_error = Some(error);
            // Stored alerts stay readable even when the listener cannot bind.
            if let Some(data_dir) = config.and_then(|config| config.resolve_data_dir().ok()) {
                info.data_dir = Some(data_dir.display().to_string());
                let store = Store::open(&data_dir).map(|(store, _)| store);
                let connection = store.as_ref().map_err(|error| error.to_string());
                set_connection(
                    &state,
                    connection.and_then(|store| {
                        store
                            .open_inbox_connection()
                            .map_err(|error| error.to_string())
                    }),
                );
                copy_facets_of(&state.facets, store.ok());
            }
        }
    }

    info.starting = false;
    info.upgrade = None;
    publish(app, &info);
}

/// Records `info` as the runtime's state and sends it to the window and the tray.
fn publish(app: &AppHandle, info: &RuntimeInfo) {
    let state = app.state::<AppState>();
    *state.info.write().expect("runtime info lock poisoned") = info.clone();
    if !info.starting {
        tray::refresh(app);
    }
    let _ = app.emit(RUNTIME_EVENT, info);
}

/// Stops the receiver and tunnel, finishing deliveries in flight.
pub async fn stop_runtime(app: &AppHandle) {
    let state = app.state::<AppState>();
    let running = state.running.lock().await.take();
    if let Some(running) = running {
        for task in running.tasks {
            task.abort();
        }
        running.runtime.shutdown().await;
    }
    *state.db.lock().expect("database lock poisoned") = None;
    copy_facets_of(&state.facets, None);
    state
        .info
        .write()
        .expect("runtime info lock poisoned")
        .running = false;
}

/// Stops and starts the runtime, so saved settings take effect.
pub async fn restart_runtime(app: &AppHandle) {
    stop_runtime(app).await;
    start_runtime(app).await;
}

fn set_connection(state: &AppState, connection: Result<Connection, String>) {
    let connection = match connection {
        Ok(connection) => Some(connection),
        Err(error) => {
            tracing::error!(%error, "failed to open the alert database for the window");
            None
        }
    };
    *state.db.lock().expect("database lock poisoned") = connection;
}

/// Drops the facet copy, and starts building one of `store` if there is one.
fn copy_facets_of(copy: &Arc<Mutex<FacetCopy>>, store: Option<Store>) {
    {
        let mut guard = copy.lock().expect("facet copy lock poisoned");
        let generation = guard.generation + 1;
        *guard = FacetCopy {
            store,
            generation,
            ..FacetCopy::default()
        };
    }
    build_facet_copy(copy);
}

/// How long after a failed build of the facet copy the next one starts.
const FACET_COPY_RETRY: Duration = Duration::from_secs(60);

/// Builds the facet copy on the blocking pool, through a connection of its own, so the
/// window's reads go on meanwhile. A million alerts take 0.6–0.8 s. Does nothing while a
/// build runs or within [`FACET_COPY_RETRY`] of a failed one.
fn build_facet_copy(copy: &Arc<Mutex<FacetCopy>>) {
    let (store, generation) = {
        let mut guard = copy.lock().expect("facet copy lock poisoned");
        let retry_due = guard
            .failed_at
            .is_none_or(|failed| failed.elapsed() >= FACET_COPY_RETRY);
        let Some(store) = guard.store.clone() else {
            return;
        };
        if guard.building || guard.index.is_some() || !retry_due {
            return;
        }
        guard.building = true;
        // A build started before this one, for an earlier start of the runtime, is discarded.
        guard.generation += 1;
        (store, guard.generation)
    };
    let copy = Arc::clone(copy);
    tauri::async_runtime::spawn_blocking(move || {
        let started = Instant::now();
        let built = store
            .open_inbox_connection()
            .and_then(|connection| FacetIndex::build(&connection));
        let mut guard = copy.lock().expect("facet copy lock poisoned");
        if guard.generation != generation {
            return;
        }
        guard.building = false;
        match built {
            Ok(index) => {
                tracing::debug!(
                    alerts = index.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "built the in-memory facet copy"
                );
                guard.index = Some(index);
                guard.failed_at = None;
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    data_dir = %store.data_dir().display(),
                    "failed to build the in-memory facet copy; facet counts read the database \
                     and the build is tried again in a minute"
                );
                guard.failed_at = Some(Instant::now());
            }
        }
    });
}

/// Counts the facets of `filter` from the facet copy when it is built and has the
/// fields the filter tests, and through SQLite otherwise. Filters whose counts SQLite
/// reads from its counters, in under half a millisecond, skip the copy.
pub fn facet_summary(
    copy: &Arc<Mutex<FacetCopy>>,
    connection: &Connection,
    filter: &AlertFilter,
) -> Result<FacetSummary, crate::store::StoreError> {
    if query::reads_counters(filter) {
        return query::facet_summary(connection, filter);
    }
    let mut guard = copy.lock().expect("facet copy lock poisoned");
    if let Some(index) = guard
        .index
        .as_mut()
        .filter(|index| index.matches_database(connection))
    {
        match index.summary(connection, filter) {
            Ok(Some(summary)) => return Ok(summary),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "failed to count from the in-memory facet copy; counting through SQLite")
            }
        }
        if index.is_stale() {
            guard.index = None;
        }
    }
    drop(guard);
    // Builds a copy if there is none: the first, one that turned stale, or one that failed.
    build_facet_copy(copy);
    query::facet_summary(connection, filter)
}
