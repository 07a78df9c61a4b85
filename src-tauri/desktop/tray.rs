//! The tray icon: the unread count in its tooltip and title, and a menu to show the inbox,
//! pause notifications, copy the webhook URL and quit.

use tauri::menu::{CheckMenuItem, Menu, MenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Emitter, Manager, Wry};
use tauri_plugin_clipboard_manager::ClipboardExt;

use super::state::AppState;
use crate::store::{now_ms, query, AlertFilter, Condition, Field};

const TRAY_ID: &str = "main";
const PAUSE_ITEM: &str = "pause";
/// Length of a pause started from the tray, in milliseconds.
const PAUSE_MS: i64 = 60 * 60 * 1000;
/// Event telling the window that the notification pause changed.
pub const PAUSE_EVENT: &str = "pause-changed";

/// The menu's pause item, kept to show whether notifications are paused.
struct PauseItem(CheckMenuItem<Wry>);

/// Creates the tray icon and its menu.
pub fn create(app: &AppHandle) -> tauri::Result<()> {
    let show = MenuItem::with_id(app, "show", "Show inbox", true, None::<&str>)?;
    let pause = CheckMenuItem::with_id(
        app,
        PAUSE_ITEM,
        "Pause notifications for 1 hour",
        true,
        false,
        None::<&str>,
    )?;
    let copy = MenuItem::with_id(app, "copy-url", "Copy webhook URL", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&show, &pause, &copy, &quit])?;
    app.manage(PauseItem(pause));

    let mut builder = TrayIconBuilder::with_id(TRAY_ID)
        .menu(&menu)
        .tooltip("Alert Inbox")
        .on_menu_event(|app, event| match event.id.as_ref() {
            "show" => super::show_main_window(app),
            PAUSE_ITEM => toggle_pause(app),
            "copy-url" => copy_webhook_url(app),
            "quit" => app.exit(0),
            _ => {}
        });
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    builder.build(app)?;
    Ok(())
}

/// Pauses notifications for an hour, or resumes them; returns the pause end, if paused.
pub fn set_paused(app: &AppHandle, paused: bool) -> Option<i64> {
    let state = app.state::<AppState>();
    let until = paused.then(|| now_ms() + PAUSE_MS);
    state
        .gate
        .lock()
        .expect("notification gate lock poisoned")
        .pause_until(until);
    if let Some(item) = app.try_state::<PauseItem>() {
        let _ = item.0.set_checked(paused);
    }
    let _ = app.emit(PAUSE_EVENT, until);
    until
}

/// Returns the end of the notification pause, if notifications are paused.
pub fn paused_until(app: &AppHandle) -> Option<i64> {
    let state = app.state::<AppState>();
    let gate = state.gate.lock().expect("notification gate lock poisoned");
    gate.paused_until(now_ms())
}

fn toggle_pause(app: &AppHandle) {
    let paused = paused_until(app).is_none();
    set_paused(app, paused);
}

fn copy_webhook_url(app: &AppHandle) {
    let Some(url) = app.state::<AppState>().info().local_url else {
        return;
    };
    if let Err(error) = app.clipboard().write_text(url) {
        tracing::warn!(%error, "failed to copy the webhook URL");
    }
}

/// Counts unread alerts that are not archived.
pub fn unread_count(app: &AppHandle) -> Option<i64> {
    let state = app.state::<AppState>();
    let db = state.db.lock().expect("database lock poisoned");
    let filter = AlertFilter {
        conditions: vec![
            Condition {
                field: Field::Status,
                negate: false,
                values: vec!["unread".to_owned()],
            },
            Condition {
                field: Field::Status,
                negate: true,
                values: vec!["archived".to_owned()],
            },
        ],
        ..AlertFilter::default()
    };
    query::count(db.as_ref()?, &filter).ok()
}

/// Shows the unread count in the tray's tooltip and title.
pub fn refresh(app: &AppHandle) {
    let Some(tray) = app.tray_by_id(TRAY_ID) else {
        return;
    };
    let unread = unread_count(app).unwrap_or(0);
    let tooltip = match unread {
        0 => "Alert Inbox: no unread alerts".to_owned(),
        1 => "Alert Inbox: 1 unread alert".to_owned(),
        n => format!("Alert Inbox: {n} unread alerts"),
    };
    let _ = tray.set_tooltip(Some(&tooltip));
    let _ = tray.set_title((unread > 0).then(|| unread.to_string()));
}
