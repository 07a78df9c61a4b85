//! Showing a [`Notice`] as a native notification and acting on its click.
//!
//! On Linux the notification goes over D-Bus (notify-rust 4 with zbus), and a click on its
//! body is the action `"default"`. Each notice gets its own thread, which shows it and
//! waits for the click for at most [`CLICK_WAIT`], so a daemon that never reports a click
//! or a close cannot keep threads alive.

use std::time::Duration;

use notify_rust::{Notification, NotificationResponse};
use tauri::{AppHandle, Emitter, Manager};

use super::state::AppState;
use crate::model::safe_console_url;
use crate::notify_rules::{escape_markup, Notice};
use crate::store::triage::{self, TriageAction};

/// Maximum wait for a click on one notification.
const CLICK_WAIT: Duration = Duration::from_secs(10 * 60);
/// Event asking the window to select and show one alert; the payload is its id.
pub const FOCUS_EVENT: &str = "focus-alert";
/// Event telling the window that triage changed outside it; the payload is the ids.
pub const TRIAGE_EVENT: &str = "triage-changed";

/// Shows `notice` on a new thread and handles its click there.
pub fn show(app: &AppHandle, notice: Notice) {
    let app = app.clone();
    let spawned = std::thread::Builder::new()
        .name("notification".to_owned())
        .spawn(move || show_and_wait(&app, notice));
    if let Err(error) = spawned {
        tracing::error!(%error, "failed to start the notification thread");
    }
}

fn show_and_wait(app: &AppHandle, notice: Notice) {
    let handle = match Notification::new()
        .appname("Alert Inbox")
        .summary(&notice.title)
        .body(&escape_markup(&notice.body))
        .action("default", "Open")
        .show()
    {
        Ok(handle) => handle,
        Err(error) => {
            tracing::warn!(%error, alert_id = ?notice.alert_id, "failed to show a notification");
            return;
        }
    };
    tracing::info!(alert_id = ?notice.alert_id, id = handle.id(), "notification shown");

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "failed to start the notification timer");
            return;
        }
    };
    let mut clicked = false;
    let wait = handle.wait_for_action_async(|response| {
        clicked = matches!(response, NotificationResponse::Default);
    });
    let waited = runtime.block_on(async { tokio::time::timeout(CLICK_WAIT, wait).await });
    if waited.is_err() {
        tracing::debug!(id = handle.id(), "stopped waiting for a notification click");
        return;
    }
    if clicked {
        open_notice(app, &notice);
    }
}

/// Opens the alert's consoleUrl in the default browser, or shows it in the inbox when it
/// has no safe URL, and marks it read.
fn open_notice(app: &AppHandle, notice: &Notice) {
    let Some(alert_id) = &notice.alert_id else {
        super::show_main_window(app);
        return;
    };
    tracing::info!(alert_id, "notification clicked");

    mark_read(app, alert_id);
    match notice.console_url.as_deref().and_then(safe_console_url) {
        Some(url) => {
            if let Err(error) = open::that(url) {
                tracing::warn!(%error, alert_id, "failed to open consoleUrl; showing the alert");
                focus_alert(app, alert_id);
            }
        }
        None => focus_alert(app, alert_id),
    }
}

fn focus_alert(app: &AppHandle, alert_id: &str) {
    super::show_main_window(app);
    let _ = app.emit(FOCUS_EVENT, alert_id);
}

fn mark_read(app: &AppHandle, alert_id: &str) {
    let state = app.state::<AppState>();
    let mut db = state.db.lock().expect("database lock poisoned");
    let Some(connection) = db.as_mut() else {
        return;
    };
    let ids = [alert_id.to_owned()];
    match triage::apply(connection, &ids, &TriageAction::MarkRead) {
        Ok(_) => {
            drop(db);
            let _ = app.emit(TRIAGE_EVENT, ids);
            super::tray::refresh(app);
        }
        Err(error) => tracing::warn!(%error, alert_id, "failed to mark the alert read"),
    }
}
