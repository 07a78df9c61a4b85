//! The desktop app: one window (the inbox), a tray icon and native notifications on top
//! of the same [`Runtime`] that `alert-inbox serve` runs.
//!
//! The window reads through the commands in [`commands`] and is pushed changes as Tauri
//! events ([`events`]); it never talks HTTP. Closing the window hides it, and the receiver
//! keeps running until "Quit" in the tray. A second launch focuses the first instance
//! (tauri-plugin-single-instance).

mod commands;
mod events;
mod notifier;
mod saved_filters;
mod state;
mod tray;

use std::path::PathBuf;

use tauri::{Manager, RunEvent, WindowEvent};

use state::AppState;

/// Label of the inbox window in `tauri.conf.json`.
const MAIN_WINDOW: &str = "main";

/// Starts the receiver, opens the inbox and runs until the user quits.
pub fn run(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config_path = match config_path {
        Some(path) => path,
        None => crate::config::default_config_path()?,
    };

    let app = tauri::Builder::default()
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            tracing::info!("second launch: focusing the running instance");
            show_main_window(app);
        }))
        .plugin(tauri_plugin_clipboard_manager::init())
        .manage(AppState::new(config_path))
        .invoke_handler(commands::handler())
        .setup(|app| {
            let handle = app.handle().clone();
            tray::create(&handle)?;
            // The window paints while the store opens, which a schema upgrade makes take
            // seconds; it shows the progress until the runtime-changed event.
            let starting = handle.clone();
            tauri::async_runtime::spawn(async move { state::start_runtime(&starting).await });
            events::spawn_flush_timer(handle);
            Ok(())
        })
        .on_window_event(|window, event| {
            // The receiver outlives the window: closing only hides it.
            if let WindowEvent::CloseRequested { api, .. } = event {
                if window.label() == MAIN_WINDOW {
                    api.prevent_close();
                    let _ = window.hide();
                }
            }
        })
        .build(tauri::generate_context!())?;

    app.run(|handle, event| match event {
        RunEvent::ExitRequested { api, code, .. } if code.is_none() => {
            // The last window closing is not a quit; "Quit" in the tray exits with a code.
            api.prevent_exit();
        }
        RunEvent::Exit => {
            tauri::async_runtime::block_on(state::stop_runtime(handle));
        }
        _ => {}
    });
    Ok(())
}

/// Shows, unminimises and focuses the inbox window.
pub(crate) fn show_main_window(app: &tauri::AppHandle) {
    if let Some(window) = app.get_webview_window(MAIN_WINDOW) {
        let _ = window.show();
        let _ = window.unminimize();
        let _ = window.set_focus();
    }
}
