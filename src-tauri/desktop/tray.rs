//! The tray icon: the unread count in its tooltip and title, and a menu to show the inbox,
//! pause notifications, copy the webhook URL and quit.

use tauri::menu::{CheckMenuItem, Menu, MenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Emitter, Manager, Wry};
use tauri_plugin_clipboard_manager::ClipboardExt;

use super::state::AppState;
use crate::store::{now_ms, query};

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
    app.manage(TrayTunnel::default());

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
    query::unread_in_inbox(db.as_ref()?).ok()
}

/// The tunnel's status as the tray shows it, kept between refreshes.
#[derive(Default)]
pub struct TrayTunnel(std::sync::Mutex<Option<String>>);

/// Minimum time between two unread counts, so an alert storm does not count per alert.
const REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(900);

/// Records the tunnel status for the tooltip and refreshes the tray.
pub fn set_tunnel_status(app: &AppHandle, status: &crate::tunnel::TunnelStatus) {
    let line = match status {
        crate::tunnel::TunnelStatus::Off => None,
        other => Some(format!("Tunnel: {other}")),
    };
    if let Some(tunnel) = app.try_state::<TrayTunnel>() {
        *tunnel
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = line;
    }
    refresh_now(app);
}

/// Shows the unread count in the tray's tooltip and title, at most about once a second;
/// the window's one-second timer calls it again, so the last change always shows.
pub fn refresh(app: &AppHandle) {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    {
        let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_some_and(|at| at.elapsed() < REFRESH_INTERVAL) {
            return;
        }
        *last = Some(std::time::Instant::now());
    }
    refresh_now(app);
}

fn refresh_now(app: &AppHandle) {
    let Some(tray) = app.tray_by_id(TRAY_ID) else {
        return;
    };
    let unread = unread_count(app).unwrap_or(0);
    let mut tooltip = match unread {
        0 => "Alert Inbox: no unread alerts".to_owned(),
        1 => "Alert Inbox: 1 unread alert".to_owned(),
        n => format!("Alert Inbox: {n} unread alerts"),
    };
    if let Some(tunnel) = app.try_state::<TrayTunnel>() {
        if let Some(line) = tunnel
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
        {
            tooltip.push('\n');
            tooltip.push_str(line);
        }
    }
    let _ = tray.set_tooltip(Some(&tooltip));
    let _ = tray.set_title((unread > 0).then(|| unread.to_string()));
}
