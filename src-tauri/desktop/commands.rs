//! The commands the window calls. Each one translates its arguments, delegates to the
//! store, filter, runtime or tray, and returns serialisable data or a [`CommandError`].
//!
//! Database work runs on the blocking pool, on the one connection in [`AppState::db`].

use std::sync::Arc;

use rusqlite::Connection;
use serde::Serialize;
use tauri::{AppHandle, Emitter, State};

use super::notifier::TRIAGE_EVENT;
use super::saved_filters::{self, SavedFilter};
use super::state::{self, AppState, RuntimeInfo};
use super::tray;
use crate::config::Config;
use crate::model::safe_console_url;
use crate::secret::Secret;
use crate::store::deliveries::{self, DeliveryRow};
use crate::store::query::{self, Cursor, FacetSummary};
use crate::store::triage::{self, TriageAction};
use crate::store::{now_ms, outages, AlertSummary, StoreError};
use crate::tunnel::TunnelStatus;

/// Largest page of alerts one call returns.
const MAX_PAGE: usize = 500;
/// Deliveries shown in the delivery log view and per alert.
const DELIVERY_LIMIT: usize = 500;

/// Lists every command, so nothing else is callable from the window.
pub fn handler() -> impl Fn(tauri::ipc::Invoke) -> bool + Send + Sync + 'static {
    tauri::generate_handler![
        app_info,
        list_alerts,
        alert_facets,
        alert_detail,
        apply_triage,
        open_console,
        list_deliveries,
        tunnel_info,
        mark_url_given,
        retry_tunnel,
        get_settings,
        save_settings,
        generate_secret,
        send_test_alert,
        list_saved_filters,
        save_filter,
        delete_filter,
        set_paused,
        copy_text,
    ]
}

/// A failed command, as the window receives it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandError {
    /// `filter`, `invalid`, `notFound`, `starting`, `unavailable` or `internal`.
    pub code: &'static str,
    pub message: String,
    /// For `filter` errors, the byte offset of the bad term in the query.
    pub position: Option<usize>,
}

impl CommandError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            position: None,
        }
    }
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(_) => Self::new("notFound", error.to_string()),
            error => {
                tracing::error!(%error, "store error in a window command");
                Self::new("internal", error.to_string())
            }
        }
    }
}

impl From<crate::filter::FilterError> for CommandError {
    fn from(error: crate::filter::FilterError) -> Self {
        Self {
            code: "filter",
            position: Some(error.position),
            message: error.to_string(),
        }
    }
}

type CommandResult<T> = Result<T, CommandError>;

/// Runs `work` on the blocking pool with the window's database connection.
async fn with_db<T, F>(state: &AppState, work: F) -> CommandResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> CommandResult<T> + Send + 'static,
{
    let db = Arc::clone(&state.db);
    let starting = state.info().starting;
    let joined = tauri::async_runtime::spawn_blocking(move || {
        let mut guard = db.lock().expect("database lock poisoned");
        let connection = guard.as_mut().ok_or_else(|| {
            if starting {
                CommandError::new(
                    "starting",
                    "the alert database is still opening; the inbox loads when it is open",
                )
            } else {
                CommandError::new(
                    "unavailable",
                    "the alert database is not open; see the error at the top of the window",
                )
            }
        })?;
        work(connection)
    })
    .await;
    joined
        .map_err(|error| CommandError::new("internal", format!("database task failed: {error}")))?
}

/// The receiver's state and the notification pause.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    #[serde(flatten)]
    runtime: RuntimeInfo,
    paused_until_ms: Option<i64>,
    unread: i64,
    /// Deliveries acknowledged but not yet in the inbox, such as during a storm.
    pending: i64,
}

#[tauri::command]
async fn app_info(app: AppHandle, state: State<'_, AppState>) -> CommandResult<AppInfo> {
    let runtime = state.info();
    let data_dir = runtime.data_dir.clone();
    let pending = tauri::async_runtime::spawn_blocking(move || {
        data_dir.map_or(0, |dir| {
            crate::store::Store::pending(std::path::Path::new(&dir)).unwrap_or_else(|error| {
                tracing::debug!(%error, "failed to count pending deliveries");
                0
            })
        })
    })
    .await
    .unwrap_or(0);
    Ok(AppInfo {
        runtime,
        paused_until_ms: tray::paused_until(&app),
        unread: tray::unread_count(&app).unwrap_or(0),
        pending,
    })
}

/// One page of the inbox list. The number of matching alerts comes with the facets
/// ([`alert_facets`]), so counting a broad filter does not hold up its first rows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertPage {
    alerts: Vec<AlertSummary>,
    /// Start of the next page; `None` after the last page.
    next_cursor: Option<Cursor>,
}

#[tauri::command]
async fn list_alerts(
    state: State<'_, AppState>,
    query: String,
    after: Option<Cursor>,
    limit: usize,
) -> CommandResult<AlertPage> {
    let filter = crate::filter::parse(&query, now_ms())?;
    let limit = limit.clamp(1, MAX_PAGE);
    with_db(&state, move |connection| {
        let alerts = query::list(connection, &filter, after, limit)?;
        let next_cursor = (alerts.len() == limit).then(|| {
            let last = &alerts[alerts.len() - 1];
            Cursor {
                last_received_ms: last.last_received_ms,
                seq: last.seq,
            }
        });
        Ok(AlertPage {
            alerts,
            next_cursor,
        })
    })
    .await
}

#[tauri::command]
async fn alert_facets(state: State<'_, AppState>, query: String) -> CommandResult<FacetSummary> {
    let filter = crate::filter::parse(&query, now_ms())?;
    let copy = Arc::clone(&state.facets);
    with_db(&state, move |connection| {
        Ok(state::facet_summary(&copy, connection, &filter)?)
    })
    .await
}

/// Everything the detail pane shows about one alert.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertDetail {
    /// The alert's fields, triage and delivery counts, as [`query::alert_json`] builds them.
    alert: serde_json::Value,
    deliveries: Vec<DeliveryRow>,
}

#[tauri::command]
async fn alert_detail(state: State<'_, AppState>, id: String) -> CommandResult<AlertDetail> {
    with_db(&state, move |connection| {
        let alert = query::alert_json(connection, &id)?
            .ok_or_else(|| CommandError::new("notFound", format!("alert {id:?} not found")))?;
        let deliveries = deliveries::list(connection, Some(&id), DELIVERY_LIMIT)?;
        Ok(AlertDetail { alert, deliveries })
    })
    .await
}

#[tauri::command]
async fn apply_triage(
    app: AppHandle,
    state: State<'_, AppState>,
    ids: Vec<String>,
    action: TriageAction,
) -> CommandResult<usize> {
    let changed_ids = ids.clone();
    let changed = with_db(&state, move |connection| {
        Ok(triage::apply(connection, &ids, &action)?)
    })
    .await?;
    let _ = app.emit(TRIAGE_EVENT, changed_ids);
    tray::refresh(&app);
    Ok(changed)
}

/// Result of "Open in RealTheory".
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenOutcome {
    opened: bool,
    /// The stored consoleUrl when it was not opened, to show as text.
    url: String,
}

/// Opens the stored consoleUrl of alert `id` in the default browser, if it is an http(s)
/// URL. The URL is read from the store, never taken from the window.
#[tauri::command]
async fn open_console(state: State<'_, AppState>, id: String) -> CommandResult<OpenOutcome> {
    let url = with_db(&state, move |connection| {
        let alert = query::alert_json(connection, &id)?
            .ok_or_else(|| CommandError::new("notFound", format!("alert {id:?} not found")))?;
        let url = alert
            .get("consoleUrl")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(url)
    })
    .await?;

    let Some(safe) = safe_console_url(&url) else {
        return Ok(OpenOutcome { opened: false, url });
    };
    let target = safe.to_owned();
    let opened = tauri::async_runtime::spawn_blocking(move || open::that(&target))
        .await
        .map_err(|error| CommandError::new("internal", error.to_string()))?;
    opened.map_err(|error| {
        CommandError::new(
            "internal",
            format!("failed to open {url} in the browser: {error}"),
        )
    })?;
    Ok(OpenOutcome { opened: true, url })
}

#[tauri::command]
async fn list_deliveries(state: State<'_, AppState>) -> CommandResult<Vec<DeliveryRow>> {
    with_db(&state, |connection| {
        Ok(deliveries::list(connection, None, DELIVERY_LIMIT)?)
    })
    .await
}

/// The tunnel's state and history for the status bar.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelInfo {
    status: Option<TunnelStatus>,
    outages: Vec<outages::Outage>,
    given_url: Option<String>,
}

/// How far back the window lists tunnel outages.
const OUTAGE_HISTORY_MS: i64 = 7 * 24 * 60 * 60 * 1000;

#[tauri::command]
async fn tunnel_info(state: State<'_, AppState>) -> CommandResult<TunnelInfo> {
    let status = state
        .tunnel_watch()
        .await
        .map(|watch| watch.borrow().clone());
    with_db(&state, move |connection| {
        Ok(TunnelInfo {
            status,
            outages: outages::list(connection, now_ms() - OUTAGE_HISTORY_MS)?,
            given_url: outages::given_url(connection)?,
        })
    })
    .await
}

/// Records that the user gave RealTheory `url`, which clears the "URL changed" notice.
#[tauri::command]
async fn mark_url_given(state: State<'_, AppState>, url: String) -> CommandResult<()> {
    with_db(&state, move |connection| {
        Ok(outages::set_given_url(connection, &url)?)
    })
    .await
}

#[tauri::command]
async fn retry_tunnel(state: State<'_, AppState>) -> CommandResult<bool> {
    Ok(state.retry_tunnel().await)
}

/// Returns the config file's settings, without environment overrides, for editing.
#[tauri::command]
async fn get_settings(state: State<'_, AppState>) -> CommandResult<Config> {
    Config::load_file(&state.config_path)
        .map_err(|error| CommandError::new("invalid", error.to_string()))
}

/// Validates and writes the settings (mode 0600), then restarts the runtime with them.
#[tauri::command]
async fn save_settings(
    app: AppHandle,
    state: State<'_, AppState>,
    settings: Config,
) -> CommandResult<RuntimeInfo> {
    settings
        .validate()
        .map_err(|error| CommandError::new("invalid", error.to_string()))?;
    if crate::model::Level::parse(&settings.notifications.min_level).is_none() {
        return Err(CommandError::new(
            "invalid",
            format!(
                "invalid minimum level {:?}: use Low, Medium, High or Critical",
                settings.notifications.min_level
            ),
        ));
    }
    settings
        .save(&state.config_path)
        .map_err(|error| CommandError::new("internal", error.to_string()))?;
    tracing::info!(path = %state.config_path.display(), "settings saved; restarting the receiver");
    state::restart_runtime(&app).await;
    Ok(state.info())
}

#[tauri::command]
fn generate_secret() -> String {
    Secret::generate().expose().to_owned()
}

/// Posts a signed example alert to the app's own loopback receiver, as RealTheory would.
#[tauri::command]
async fn send_test_alert(state: State<'_, AppState>, level: String) -> CommandResult<String> {
    let info = state.info();
    let url = info.local_url.ok_or_else(|| {
        if info.starting {
            CommandError::new(
                "starting",
                "the receiver is still starting; send the test alert once it runs",
            )
        } else {
            CommandError::new(
                "unavailable",
                "the receiver is not running; fix the error shown at the top",
            )
        }
    })?;
    let config = state
        .load_config()
        .map_err(|error| CommandError::new("invalid", format!("{error:#}")))?;
    let url = reqwest::Url::parse(&url)
        .map_err(|error| CommandError::new("internal", error.to_string()))?;
    let level = crate::cli::send_test::parse_level(&level)
        .map_err(|message| CommandError::new("invalid", message))?;
    let body = crate::cli::send_test::example_payload(level);
    let response = crate::cli::send_test::build_request(&config, url.clone(), body)
        .send()
        .await
        .map_err(|error| {
            CommandError::new(
                "unavailable",
                format!("failed to send the test alert to {url}: {error}"),
            )
        })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(format!("{url} returned {status}"))
    } else {
        Err(CommandError::new(
            "invalid",
            format!("{url} returned {status}: {}", text.trim()),
        ))
    }
}

#[tauri::command]
async fn list_saved_filters(state: State<'_, AppState>) -> CommandResult<Vec<SavedFilter>> {
    with_db(&state, |connection| Ok(saved_filters::list(connection)?)).await
}

#[tauri::command]
async fn save_filter(state: State<'_, AppState>, name: String, query: String) -> CommandResult<()> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > saved_filters::MAX_NAME_CHARS {
        return Err(CommandError::new(
            "invalid",
            format!(
                "a filter name needs 1 to {} characters",
                saved_filters::MAX_NAME_CHARS
            ),
        ));
    }
    crate::filter::parse(&query, now_ms())?;
    with_db(&state, move |connection| {
        Ok(saved_filters::save(
            connection,
            &SavedFilter { name, query },
        )?)
    })
    .await
}

#[tauri::command]
async fn delete_filter(state: State<'_, AppState>, name: String) -> CommandResult<()> {
    with_db(&state, move |connection| {
        Ok(saved_filters::delete(connection, &name)?)
    })
    .await
}

#[tauri::command]
fn set_paused(app: AppHandle, paused: bool) -> Option<i64> {
    tray::set_paused(&app, paused)
}

/// Copies `text` to the clipboard; the window uses it for URLs and credentials.
#[tauri::command]
fn copy_text(app: AppHandle, text: String) -> CommandResult<()> {
    use tauri_plugin_clipboard_manager::ClipboardExt;
    app.clipboard()
        .write_text(text)
        .map_err(|error| CommandError::new("internal", format!("failed to copy: {error}")))
}
