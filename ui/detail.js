// The detail pane: every field of one alert, its triage, delivery history and raw JSON.

import { api, errorMessage } from "./api.js";
import { el, toast } from "./dom.js";
import { localTime, levelClass } from "./format.js";

const pane = document.getElementById("detail");
let shownId = null;
let triageHandler = async () => {};

/** Sets the function that applies triage, so the list refreshes after it. */
export function setTriageHandler(handler) {
  triageHandler = handler;
}

/** Returns the id of the alert in the pane, or null. */
export function currentDetailId() {
  return shownId;
}

export function clearDetail() {
  shownId = null;
  pane.replaceChildren(el("p", { class: "empty", text: "Select an alert to see its details." }));
}

/** Loads alert `id` and shows it. */
export async function showDetail(id, { keepScroll = false } = {}) {
  let detail;
  try {
    detail = await api.alertDetail(id);
  } catch (error) {
    toast(errorMessage(error), true);
    return;
  }
  const scroll = pane.scrollTop;
  shownId = id;
  pane.replaceChildren(...renderDetail(detail.alert, detail.deliveries));
  pane.scrollTop = keepScroll ? scroll : 0;
}

function field(label, value) {
  if (value === null || value === undefined || value === "") return null;
  return [el("dt", { text: label }), el("dd", { text: String(value) })];
}

function renderDetail(alert, deliveries) {
  const metadata = alert.metadata && typeof alert.metadata === "object" ? alert.metadata : {};
  const rawUrl = latestRawConsoleUrl(deliveries);

  const header = el("header", { class: "detail-header" }, [
    el("span", { class: `level ${levelClass(alert.level)}`, text: alert.level || "?" }),
    el("h2", { class: "detail-title", text: alert.title || "(no title)" }),
  ]);

  const actions = renderActions(alert, rawUrl);

  const texts = [];
  if (alert.message) texts.push(el("p", { class: "message", text: alert.message }));
  if (alert.details) texts.push(el("pre", { class: "details", text: String(alert.details) }));

  const facts = [
    field("State", alert.state),
    field("Category", alert.category),
    field("Type", alert.type),
    field("Source", alert.source),
    field("Key", alert.key),
    field("Id", alert.id),
    field("Created", localTime(alert.created)),
    field("Updated", localTime(alert.updated)),
    field("Expires", localTime(alert.expires)),
    field("Postponed until", localTime(alert.postponedUntil)),
    field("First received", localTime(alert.firstReceived)),
    field("Last received", localTime(alert.lastReceived)),
    field("Deliveries", alert.deliveryCount),
    field("Snoozed until", localTime(alert.snoozedUntil)),
  ].filter(Boolean).flat();

  const metadataRows = Object.entries(metadata).flatMap(([name, value]) =>
    field(name, typeof value === "object" && value !== null ? JSON.stringify(value) : value) || [],
  );

  const deliveryRows = deliveries.map((delivery) =>
    el("tr", {}, [
      el("td", { text: localTime(delivery.receivedMs) }),
      el("td", { text: delivery.outcome, class: `outcome outcome-${delivery.outcome}` }),
      el("td", { text: String(delivery.status) }),
      el("td", { text: delivery.via }),
      el("td", { text: delivery.reason }),
    ]),
  );

  return [
    header,
    actions,
    ...texts,
    el("h3", { text: "Fields" }),
    el("dl", { class: "facts" }, facts),
    el("h3", { text: "Metadata" }),
    metadataRows.length ? el("dl", { class: "facts" }, metadataRows) : el("p", { class: "muted", text: "No metadata." }),
    renderNote(alert),
    el("h3", { text: `Delivery history (${deliveries.length})` }),
    el("table", { class: "deliveries-mini" }, [
      el("thead", {}, [el("tr", {}, ["Received", "Outcome", "Status", "Via", "Reason"].map((name) => el("th", { text: name })))]),
      el("tbody", {}, deliveryRows),
    ]),
    el("details", { class: "raw" }, [
      el("summary", { text: "Raw JSON" }),
      el("pre", { class: "raw-json", text: JSON.stringify(alert, null, 2) }),
    ]),
  ];
}

/** Returns the consoleUrl as sent in the newest delivery body, safe or not. */
function latestRawConsoleUrl(deliveries) {
  for (const delivery of deliveries) {
    if (!delivery.body) continue;
    try {
      const url = JSON.parse(delivery.body).consoleUrl;
      if (typeof url === "string") return url;
    } catch {
      // A body that is not JSON carries no URL.
    }
  }
  return "";
}

function button(label, onClick, className = "secondary") {
  const node = el("button", { class: className, text: label, attrs: { type: "button" } });
  node.addEventListener("click", onClick);
  return node;
}

function renderActions(alert, rawUrl) {
  const ids = [alert.id];
  const items = [];
  if (alert.consoleUrl) {
    items.push(
      button(
        "Open in RealTheory",
        async () => {
          try {
            const outcome = await api.openConsole(alert.id);
            toast(outcome.opened ? "Opened in RealTheory" : `Not opened: ${outcome.url}`, !outcome.opened);
          } catch (error) {
            toast(errorMessage(error), true);
          }
        },
        "primary",
      ),
    );
  }
  items.push(
    button(alert.read ? "Mark unread" : "Mark read", () => triageHandler(ids, { action: alert.read ? "markUnread" : "markRead" })),
    button(alert.acknowledged ? "Unacknowledge" : "Acknowledge", () =>
      triageHandler(ids, { action: alert.acknowledged ? "unacknowledge" : "acknowledge" }),
    ),
    button(alert.archived ? "Unarchive" : "Archive", () => triageHandler(ids, { action: alert.archived ? "unarchive" : "archive" })),
  );

  const snoozeInput = el("input", { attrs: { type: "datetime-local", "aria-label": "Snooze until" } });
  const inAnHour = new Date(Date.now() + 3600e3);
  inAnHour.setSeconds(0, 0);
  snoozeInput.value = new Date(inAnHour.getTime() - inAnHour.getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
  const snooze = el("span", { class: "snooze" }, [
    snoozeInput,
    button("Snooze", () => {
      const until = new Date(snoozeInput.value).getTime();
      if (Number.isNaN(until) || until <= Date.now()) {
        toast("Choose a snooze time in the future", true);
        return;
      }
      triageHandler(ids, { action: "snooze", untilMs: until });
    }),
  ]);
  if (alert.snoozedUntil) snooze.append(button("Unsnooze", () => triageHandler(ids, { action: "unsnooze" })));
  items.push(snooze);

  const children = [el("div", { class: "actions" }, items)];
  if (!alert.consoleUrl && rawUrl) {
    children.push(
      el("p", { class: "unsafe-url" }, [
        "consoleUrl is not a web link and is not opened: ",
        el("code", { text: rawUrl }),
      ]),
    );
  }
  return el("div", {}, children);
}

function renderNote(alert) {
  const area = el("textarea", { class: "note", attrs: { rows: "3", placeholder: "Add a note", "aria-label": "Note" } });
  area.value = alert.note || "";
  return el("div", { class: "note-box" }, [
    el("h3", { text: "Note" }),
    area,
    button("Save note", () => triageHandler([alert.id], { action: "setNote", note: area.value })),
  ]);
}
