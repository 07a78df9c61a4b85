// Views other than the list: the delivery log, settings with the setup panel, and the
// receiver and tunnel status with its notices.

import { api, errorMessage } from "./api.js";
import { el, toast } from "./dom.js";
import { localTime, clockTime, receiverStatusText } from "./format.js";

let hooks = { onDeliveriesShown: () => {} };
let info = null;
let tunnel = null;

/** Wires tabs, the settings form and the setup panel. */
export function initPanels(options) {
  hooks = options;
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => showView(tab.dataset.view));
  }
  document.getElementById("refresh-deliveries").addEventListener("click", refreshDeliveries);
  document.getElementById("settings-form").addEventListener("submit", saveSettings);
  document.getElementById("generate-secret").addEventListener("click", generateSecret);
  document.getElementById("send-test").addEventListener("click", sendTest);
  document.getElementById("toggle-pause").addEventListener("click", async () => {
    await api.setPaused(!info?.pausedUntilMs);
    refreshStatus();
  });
}

/** Shows one of the views: `inbox`, `deliveries` or `settings`. */
export function showView(name) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.classList.toggle("active", tab.dataset.view === name);
  }
  for (const view of ["inbox", "deliveries", "settings"]) {
    document.getElementById(`view-${view}`).hidden = view !== name;
  }
  if (name === "deliveries") hooks.onDeliveriesShown();
  if (name === "settings") loadSettings();
}

// ---- Delivery log --------------------------------------------------------------------

export async function refreshDeliveries() {
  let rows;
  try {
    rows = await api.deliveries();
  } catch (error) {
    toast(errorMessage(error), true);
    return;
  }
  const body = document.querySelector("#delivery-table tbody");
  body.replaceChildren(
    ...rows.map((row) =>
      el("tr", {}, [
        el("td", { text: localTime(row.receivedMs) }),
        el("td", { class: `outcome outcome-${row.outcome}`, text: row.outcome }),
        el("td", { text: String(row.status) }),
        el("td", { text: row.via }),
        el("td", { text: row.remoteAddr }),
        el("td", { class: "mono", text: row.alertId || "" }),
        el("td", { text: `${row.bodySize} B` }),
        el("td", { text: row.reason }),
      ]),
    ),
  );
}

// ---- Status and notices --------------------------------------------------------------

/** Reloads the receiver and tunnel state and redraws the status bar and notices. */
let pendingTimer;

export async function refreshStatus() {
  try {
    info = await api.appInfo();
    tunnel = info.running ? await api.tunnelInfo() : null;
  } catch (error) {
    toast(errorMessage(error), true);
    return;
  }
  renderStatus();
}

function publicUrl() {
  const status = tunnel?.status;
  return status && status.state === "online" ? status.url + webhookPath() : null;
}

function webhookPath() {
  if (!info?.localUrl) return "";
  return new URL(info.localUrl).pathname;
}

function renderStatus() {
  const unread = document.getElementById("unread-count");
  unread.textContent = info.unread > 0 ? String(info.unread) : "";

  const receiver = document.getElementById("receiver-status");
  receiver.replaceChildren(
    el("span", { class: `dot ${info.running ? "ok" : info.starting ? "busy" : "bad"}` }),
    el("span", { text: receiverStatusText(info) }),
  );
  // A backlog shrinks without new alerts when its last deliveries are rejections or duplicates.
  clearTimeout(pendingTimer);
  if (info.pending > 0) pendingTimer = setTimeout(refreshStatus, 1000);

  const banners = [];
  if (info.upgrade) {
    const { from, to } = info.upgrade;
    banners.push(
      el("div", { class: "banner info" }, [
        el("strong", { text: `Upgrading the alert store from schema ${from} to ${to}. ` }),
        "This runs once after an update and takes up to about 20 seconds on a store of a million alerts. The receiver starts when it is done.",
      ]),
    );
  }
  if (info.startError) {
    banners.push(el("div", { class: "banner error" }, [el("strong", { text: "The receiver did not start: " }), info.startError]));
  }
  if (info.tunnelError) {
    banners.push(el("div", { class: "banner warn" }, [el("strong", { text: "The public tunnel did not start: " }), info.tunnelError]));
  }
  const status = tunnel?.status;
  if (status && status.state === "online" && status.urlChanged) {
    const url = publicUrl();
    const copy = el("button", { class: "primary", text: "Copy new URL", attrs: { type: "button" } });
    copy.addEventListener("click", () => copyText(url));
    const done = el("button", { class: "secondary", text: "I updated RealTheory", attrs: { type: "button" } });
    done.addEventListener("click", async () => {
      await api.markUrlGiven(status.url);
      refreshStatus();
    });
    banners.push(
      el("div", { class: "banner urgent" }, [
        el("strong", { text: "The public URL changed. " }),
        "RealTheory still sends to ",
        el("code", { text: status.previousUrl || "the old URL" }),
        ". Paste the new URL into RealTheory: ",
        el("code", { text: url }),
        copy,
        done,
      ]),
    );
  }
  for (const outage of (tunnel?.outages || []).slice(0, 3)) {
    const text = outage.endedMs
      ? `Offline from ${clockTime(outage.startedMs)} to ${clockTime(outage.endedMs)}: alerts sent then may be missing.`
      : `Offline since ${clockTime(outage.startedMs)}: alerts sent now may be missing.`;
    banners.push(el("div", { class: "banner warn", title: outage.reason }, [text]));
  }
  if (info.pausedUntilMs) {
    banners.push(el("div", { class: "banner info" }, [`Notifications paused until ${clockTime(info.pausedUntilMs)}.`]));
  }
  document.getElementById("banners").replaceChildren(...banners);
  document.getElementById("toggle-pause").textContent = info.pausedUntilMs ? "Resume notifications" : "Pause notifications for 1 hour";

  const bar = document.getElementById("statusbar");
  const parts = [el("span", { text: `Data: ${info.dataDir || "?"}` })];
  parts.push(el("span", { text: `Tunnel: ${describeTunnel(status)}` }));
  if (status && status.state !== "online" && status.state !== "off") {
    const retry = el("button", { class: "link", text: "Retry now", attrs: { type: "button" } });
    retry.addEventListener("click", () => api.retryTunnel());
    parts.push(retry);
  }
  bar.replaceChildren(...parts);
  renderSetup();
}

function describeTunnel(status) {
  if (!info.tunnelEnabled) return "off (set it up in Settings)";
  if (!status) return "not running";
  switch (status.state) {
    case "online":
      return `online at ${status.url}`;
    case "connecting":
      return `connecting (attempt ${status.attempt})`;
    case "reconnecting":
      return `reconnecting (attempt ${status.attempt}): ${status.error}`;
    case "failed":
      return `failed: ${status.message}. ${status.hint}`;
    default:
      return status.state;
  }
}

async function copyText(text) {
  try {
    await api.copyText(text);
    toast("Copied");
  } catch (error) {
    toast(errorMessage(error), true);
  }
}

// ---- Settings and setup --------------------------------------------------------------

let settings = null;

async function loadSettings() {
  try {
    settings = await api.getSettings();
  } catch (error) {
    toast(errorMessage(error), true);
    return;
  }
  const form = document.getElementById("settings-form");
  for (const input of form.querySelectorAll("[name]")) {
    const value = input.name.split(".").reduce((object, key) => object?.[key], settings);
    if (input.type === "checkbox") input.checked = Boolean(value);
    else if (Array.isArray(value)) input.value = value.join(input.tagName === "TEXTAREA" ? "\n" : ", ");
    else input.value = value ?? "";
  }
  renderSetup();
}

function renderSetup() {
  const container = document.getElementById("setup-values");
  if (!info) return;
  const url = publicUrl() || info.localUrl || "(receiver not running)";
  const secret = settings?.webhook_secrets?.[0] || "";
  const values = [
    ["Webhook URL", url],
    ["Signature header", "X-Hub-Signature-256 (HMAC-SHA256 of the body)"],
    ["Secret", secret || "(none: generate one below)"],
    ["Basic auth user", settings?.basic_user || "(none)"],
    ["Basic auth password", settings?.basic_password || "(none)"],
  ];
  const nodes = values.flatMap(([label, value]) => {
    const copy = el("button", { class: "link", text: "Copy", attrs: { type: "button" } });
    copy.addEventListener("click", () => copyText(value));
    return [el("dt", { text: label }), el("dd", {}, [el("code", { text: value }), copy])];
  });
  if (!publicUrl()) {
    nodes.push(el("dt", { text: "Note" }), el("dd", { text: "RealTheory cannot reach a loopback URL: turn on the ngrok tunnel below for a public URL." }));
  }
  container.replaceChildren(...nodes);
}

function readForm() {
  const form = document.getElementById("settings-form");
  const next = structuredClone(settings);
  for (const input of form.querySelectorAll("[name]")) {
    const path = input.name.split(".");
    const key = path.pop();
    const target = path.reduce((object, part) => object[part], next);
    let value;
    if (input.type === "checkbox") value = input.checked;
    else if (input.type === "number") value = Number(input.value);
    else if (key === "webhook_secrets") value = input.value.split("\n").map((s) => s.trim()).filter(Boolean);
    else if (key === "muted_clusters" || key === "muted_namespaces") value = input.value.split(",").map((s) => s.trim()).filter(Boolean);
    else value = input.value.trim() === "" && (key === "basic_user" || key === "basic_password" || key === "authtoken" || key === "domain") ? null : input.value.trim();
    target[key] = value;
  }
  return next;
}

async function saveSettings(event) {
  event.preventDefault();
  const result = document.getElementById("settings-result");
  result.textContent = "Saving…";
  try {
    await api.saveSettings(readForm());
    result.textContent = "Saved; the receiver restarted.";
    await loadSettings();
    await refreshStatus();
  } catch (error) {
    result.textContent = errorMessage(error);
  }
}

async function generateSecret() {
  const secret = await api.generateSecret();
  const area = document.querySelector('[name="webhook_secrets"]');
  area.value = area.value.trim() ? `${secret}\n${area.value.trim()}` : secret;
  toast("Generated a secret; save to use it, then paste it into RealTheory");
}

async function sendTest() {
  const result = document.getElementById("send-test-result");
  result.textContent = "Sending…";
  try {
    const level = document.getElementById("test-level").value;
    result.textContent = await api.sendTestAlert(level);
  } catch (error) {
    result.textContent = errorMessage(error);
  }
}
