//! Forwarding the runtime's broadcasts to the window, the notifier and the tray.

use std::time::Duration;

use tauri::async_runtime::JoinHandle;
use tauri::{AppHandle, Emitter, Manager};
use tokio::sync::broadcast::error::RecvError;

use super::state::AppState;
use super::{notifier, tray};
use crate::runtime::Runtime;
use crate::store::now_ms;

/// Event carrying one [`crate::store::AlertEvent`] after its commit.
pub const ALERT_EVENT: &str = "alert-event";
/// Event telling the window to reload its list, because events were missed.
pub const RELOAD_EVENT: &str = "alerts-reload";
/// Event carrying the tunnel's [`crate::tunnel::TunnelStatus`].
pub const TUNNEL_EVENT: &str = "tunnel-status";

/// How often held storm notifications are checked for their summary.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Starts the tasks that forward alert events and tunnel status from `runtime`.
pub fn spawn_forwarders(app: AppHandle, runtime: &Runtime) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let mut alerts = runtime.subscribe();
    let alert_app = app.clone();
    tasks.push(tauri::async_runtime::spawn(async move {
        loop {
            match alerts.recv().await {
                Ok(event) => {
                    let _ = alert_app.emit(ALERT_EVENT, &event);
                    let notice = {
                        let state = alert_app.state::<AppState>();
                        let mut gate = state.gate.lock().expect("notification gate lock poisoned");
                        gate.offer(&event, now_ms())
                    };
                    if let Some(notice) = notice {
                        notifier::show(&alert_app, notice);
                    }
                    tray::refresh(&alert_app);
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "window missed alert events; reloading the list");
                    let _ = alert_app.emit(RELOAD_EVENT, missed);
                    tray::refresh(&alert_app);
                }
                Err(RecvError::Closed) => break,
            }
        }
    }));

    if let Some(tunnel) = runtime.tunnel() {
        let mut status = tunnel.watch();
        tasks.push(tauri::async_runtime::spawn(async move {
            loop {
                let current = status.borrow_and_update().clone();
                let _ = app.emit(TUNNEL_EVENT, &current);
                tray::set_tunnel_status(&app, &current);
                if status.changed().await.is_err() {
                    break;
                }
            }
        }));
    }
    tasks
}

/// Starts the timer that shows a storm's summary once its window has ended.
pub fn spawn_flush_timer(app: AppHandle) {
    tauri::async_runtime::spawn(async move {
        let mut interval = tokio::time::interval(FLUSH_INTERVAL);
        loop {
            interval.tick().await;
            let notice = {
                let state = app.state::<AppState>();
                let mut gate = state.gate.lock().expect("notification gate lock poisoned");
                gate.flush(now_ms())
            };
            if let Some(notice) = notice {
                notifier::show(&app, notice);
            }
            tray::refresh(&app);
        }
    });
}
