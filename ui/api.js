// Every call into Rust goes through this module. Command names and argument shapes match
// src-tauri/desktop/commands.rs; events match src-tauri/desktop/events.rs.

/**
 * @typedef {{code: string, message: string, position: number|null}} CommandError
 * @typedef {{lastReceivedMs: number, seq: number}} Cursor
 * @typedef {{seq: number, id: string, title: string, level: string, category: string,
 *   state: string, objectType: string, objectName: string, cluster: string,
 *   namespace: string, consoleUrl: string|null, deliveryCount: number,
 *   firstReceivedMs: number, lastReceivedMs: number, read: boolean, acknowledged: boolean,
 *   snoozedUntilMs: number|null, archived: boolean, note: string}} AlertSummary
 * @typedef {{alerts: AlertSummary[], nextCursor: Cursor|null}} AlertPage
 * @typedef {{field: string, values: [string, number][]}} Facet
 * @typedef {{total: number, facets: Facet[]}} FacetSummary
 * @typedef {{action: string, untilMs?: number, note?: string}} TriageAction
 */

const tauri = window.__TAURI__;

/** @returns {Promise<any>} */
function invoke(command, args = {}) {
  return tauri.core.invoke(command, args);
}

export const api = {
  appInfo: () => invoke("app_info"),
  /** @returns {Promise<AlertPage>} */
  listAlerts: (query, after, limit) => invoke("list_alerts", { query, after, limit }),
  /** @returns {Promise<FacetSummary>} */
  facets: (query) => invoke("alert_facets", { query }),
  alertDetail: (id) => invoke("alert_detail", { id }),
  /** @param {string[]} ids @param {TriageAction} action */
  triage: (ids, action) => invoke("apply_triage", { ids, action }),
  openConsole: (id) => invoke("open_console", { id }),
  deliveries: () => invoke("list_deliveries"),
  tunnelInfo: () => invoke("tunnel_info"),
  markUrlGiven: (url) => invoke("mark_url_given", { url }),
  retryTunnel: () => invoke("retry_tunnel"),
  getSettings: () => invoke("get_settings"),
  saveSettings: (settings) => invoke("save_settings", { settings }),
  generateSecret: () => invoke("generate_secret"),
  sendTestAlert: (level) => invoke("send_test_alert", { level }),
  savedFilters: () => invoke("list_saved_filters"),
  saveFilter: (name, query) => invoke("save_filter", { name, query }),
  deleteFilter: (name) => invoke("delete_filter", { name }),
  setPaused: (paused) => invoke("set_paused", { paused }),
  copyText: (text) => invoke("copy_text", { text }),
};

/** Subscribes `handler` to an app event; the handler receives the payload. */
export function on(event, handler) {
  return tauri.event.listen(event, (message) => handler(message.payload));
}

/** Returns a readable message for a rejected command. */
export function errorMessage(error) {
  if (error && typeof error === "object" && "message" in error) return String(error.message);
  return String(error);
}
