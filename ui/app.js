// The inbox window: state, the virtualised alert list, facets, keyboard and live events.
//
// State lives in the `state` object below and nowhere else. The list keeps the rows
// loaded so far (keyset pages of PAGE_SIZE) and renders only the rows in view.

import { api, on, errorMessage } from "./api.js";
import { el, clear, toast } from "./dom.js";
import { relativeTime, levelClass, quoteValue, splitTerms } from "./format.js";
import { showDetail, clearDetail, currentDetailId, setTriageHandler } from "./detail.js";
import { initPanels, refreshStatus, showView, refreshDeliveries } from "./panels.js";

const PAGE_SIZE = 200;
const ROW_HEIGHT = 64;
const OVERSCAN = 8;
const FACET_LABELS = {
  level: "Level",
  category: "Category",
  cluster: "Cluster",
  namespace: "Namespace",
  state: "State",
  objectType: "Object type",
  status: "Triage",
};
const FACET_KEYS = {
  level: "level",
  category: "category",
  cluster: "cluster",
  namespace: "ns",
  state: "state",
  objectType: "type",
};
const LEVEL_ORDER = ["critical", "high", "medium", "low"];
const TIME_RANGES = [
  ["1 h", "@age<1h"],
  ["24 h", "@age<24h"],
  ["7 d", "@age<7d"],
];

export const state = {
  /** The filter query as typed. */
  query: "",
  /** @type {import("./api.js").AlertSummary[]} */
  rows: [],
  /** Alerts matching `totalQuery`, which the facets bring after the first page. */
  total: 0,
  /** The query `total` was counted for, or null before the first count. */
  totalQuery: null,
  /** @type {import("./api.js").Cursor|null} */
  nextCursor: null,
  loading: false,
  /** Index of the keyboard cursor in `rows`, or -1. */
  cursor: -1,
  /** Ids selected for bulk actions. */
  selected: new Set(),
  /** Increases with each reload, so stale responses are dropped. */
  generation: 0,
};

const list = document.getElementById("alert-list");
const spacer = document.getElementById("alert-list-spacer");
const queryInput = document.getElementById("query");

// ---- Loading -------------------------------------------------------------------------

/** Loads the first page for the current query and refreshes the facets. */
export async function reload({ keepScroll = false } = {}) {
  const generation = ++state.generation;
  let page;
  try {
    page = await api.listAlerts(state.query, null, PAGE_SIZE);
  } catch (error) {
    // While the store opens, the list waits for the runtime-changed event. A store that
    // failed to open is explained by the banner, not by the filter box.
    if (error?.code === "starting") showEmpty("Opening the alert store…");
    else if (error?.code === "unavailable") showEmpty(errorMessage(error));
    else showQueryError(error);
    return;
  }
  if (generation !== state.generation) return;
  showQueryError(null);
  document.getElementById("empty-list").textContent = state.query.trim()
    ? "No alerts match this filter."
    : "No alerts yet. Connect RealTheory, or send a test alert, under Settings.";
  const currentId = state.rows[state.cursor]?.id;
  state.rows = page.alerts;
  state.nextCursor = page.nextCursor;
  state.cursor = currentId ? state.rows.findIndex((row) => row.id === currentId) : -1;
  if (!keepScroll) list.scrollTop = 0;
  render();
  loadFacets();
  // The end-to-end measurements read this mark for the time from launch to a filled inbox.
  if (performance.getEntriesByName("inbox-ready").length === 0) performance.mark("inbox-ready");
}

/** Shows `text` in place of the list, with no count, while there is no list to show. */
function showEmpty(text) {
  const empty = document.getElementById("empty-list");
  empty.textContent = text;
  empty.hidden = false;
  document.getElementById("result-count").textContent = "";
}

/** Merges the newest page into the loaded rows, so new and updated alerts move to the top. */
async function refreshTop() {
  const generation = state.generation;
  let page;
  try {
    page = await api.listAlerts(state.query, null, PAGE_SIZE);
  } catch {
    return;
  }
  if (generation !== state.generation) return;
  const top = page.alerts;
  const topIds = new Set(top.map((row) => row.id));
  const last = top[top.length - 1];
  const rest = state.rows.filter(
    (row) =>
      !topIds.has(row.id) &&
      (!last ||
        row.lastReceivedMs < last.lastReceivedMs ||
        (row.lastReceivedMs === last.lastReceivedMs && row.seq < last.seq)),
  );
  const currentId = state.rows[state.cursor]?.id;
  state.rows = top.concat(rest);
  if (rest.length === 0) state.nextCursor = page.nextCursor;
  state.cursor = currentId ? state.rows.findIndex((row) => row.id === currentId) : state.cursor;
  render();
  loadFacets();
}

async function loadMore() {
  if (state.loading || !state.nextCursor) return;
  state.loading = true;
  const generation = state.generation;
  try {
    const page = await api.listAlerts(state.query, state.nextCursor, PAGE_SIZE);
    if (generation === state.generation) {
      state.rows = state.rows.concat(page.alerts);
      state.nextCursor = page.nextCursor;
      render();
    }
  } catch (error) {
    toast(errorMessage(error), true);
  } finally {
    state.loading = false;
  }
}

function showQueryError(error) {
  const node = document.getElementById("query-error");
  if (!error) {
    node.hidden = true;
    queryInput.removeAttribute("aria-invalid");
    return;
  }
  node.textContent = errorMessage(error);
  node.hidden = false;
  queryInput.setAttribute("aria-invalid", "true");
}

// ---- Rendering the list --------------------------------------------------------------

function render() {
  spacer.style.height = `${state.rows.length * ROW_HEIGHT}px`;
  document.getElementById("empty-list").hidden = state.rows.length > 0;
  renderCount();
  renderRows();
  renderSelection();
}

function renderRows() {
  const first = Math.max(0, Math.floor(list.scrollTop / ROW_HEIGHT) - OVERSCAN);
  const visible = Math.ceil(list.clientHeight / ROW_HEIGHT) + 2 * OVERSCAN;
  const last = Math.min(state.rows.length, first + visible);
  const nodes = [];
  for (let index = first; index < last; index++) {
    nodes.push(renderRow(state.rows[index], index));
  }
  spacer.replaceChildren(...nodes);
  if (last >= state.rows.length - OVERSCAN) loadMore();
}

function renderRow(alert, index) {
  const classes = ["alert-row"];
  if (!alert.read) classes.push("unread");
  if (index === state.cursor) classes.push("current");
  if (state.selected.has(alert.id)) classes.push("selected");
  if (alert.archived) classes.push("archived");

  const marks = [];
  if (alert.acknowledged) marks.push(el("span", { class: "mark ack", text: "Ack", title: "Acknowledged" }));
  if (alert.snoozedUntilMs && alert.snoozedUntilMs > Date.now()) {
    marks.push(el("span", { class: "mark snoozed", text: "Snoozed", title: "Snoozed" }));
  }
  if (alert.archived) marks.push(el("span", { class: "mark archived", text: "Archived" }));
  if (alert.deliveryCount > 1) {
    marks.push(el("span", { class: "mark count", text: `×${alert.deliveryCount}`, title: `${alert.deliveryCount} deliveries` }));
  }

  const object = [alert.objectType, alert.objectName].filter(Boolean).join(" ");
  const place = [alert.cluster, alert.namespace].filter(Boolean).join(" / ");
  const row = el(
    "div",
    {
      class: classes.join(" "),
      attrs: {
        role: "option",
        "data-id": alert.id,
        "data-index": String(index),
        "aria-selected": String(index === state.cursor),
      },
    },
    [
      el("span", { class: "unread-dot", title: alert.read ? "Read" : "Unread" }),
      el("span", { class: `level ${levelClass(alert.level)}`, text: alert.level || "?" }),
      el("div", { class: "main" }, [
        el("div", { class: "title", text: alert.title || "(no title)" }),
        el("div", { class: "sub", text: [object, place, alert.state].filter(Boolean).join("  ·  ") }),
      ]),
      el("div", { class: "side" }, [
        el("time", { class: "time", text: relativeTime(alert.lastReceivedMs), title: new Date(alert.lastReceivedMs).toLocaleString() }),
        el("div", { class: "marks" }, marks),
      ]),
    ],
  );
  row.style.top = `${index * ROW_HEIGHT}px`;
  return row;
}

function renderSelection() {
  const bar = document.getElementById("bulk-actions");
  bar.hidden = state.selected.size === 0;
  document.getElementById("selection-count").textContent = `${state.selected.size} selected`;
}

// ---- Facets --------------------------------------------------------------------------

let facetGeneration = 0;

/** Shows the number of matching alerts, or that it is being counted for a new query. */
function renderCount() {
  const count = document.getElementById("result-count");
  count.textContent =
    state.totalQuery === state.query
      ? `${state.total.toLocaleString()} alert${state.total === 1 ? "" : "s"}`
      : "Counting…";
}

async function loadFacets() {
  const generation = ++facetGeneration;
  const query = state.query;
  let facets;
  try {
    const summary = await api.facets(query);
    facets = summary.facets;
    if (generation !== facetGeneration) return;
    state.total = summary.total;
    state.totalQuery = query;
  } catch {
    // Without facets there is no count either, so "Counting…" would stay forever.
    if (generation === facetGeneration) document.getElementById("result-count").textContent = "";
    return;
  }
  renderCount();
  const container = document.getElementById("facet-list");
  const terms = new Set(splitTerms(state.query));
  const groups = facets.map((facet) => {
    const values = facet.field === "level" ? bySeverity(facet.values) : facet.values;
    const items = values.slice(0, 30).map(([value, count]) => {
      const term = facet.field === "status" ? `is:${value}` : `${FACET_KEYS[facet.field]}=${quoteValue(value)}`;
      const active = terms.has(term);
      const button = el(
        "button",
        { class: `facet${active ? " active" : ""}`, attrs: { type: "button", "data-term": term, "aria-pressed": String(active) } },
        [
          el("span", { class: `facet-name ${facet.field === "level" ? levelClass(value) + "-text" : ""}`, text: value || "(none)" }),
          el("span", { class: "facet-count", text: count.toLocaleString() }),
        ],
      );
      button.addEventListener("click", () => toggleTerm(term));
      return button;
    });
    return el("div", { class: "facet-group" }, [el("h3", { text: FACET_LABELS[facet.field] || facet.field }), ...items]);
  });
  container.replaceChildren(...groups);
  renderTimeRange(terms);
}

/** Orders level facet values from Critical down to Low, then unknown levels by count. */
function bySeverity(values) {
  const rank = (value) => {
    const index = LEVEL_ORDER.indexOf(String(value).toLowerCase());
    return index < 0 ? LEVEL_ORDER.length : index;
  };
  return [...values].sort((a, b) => rank(a[0]) - rank(b[0]) || b[1] - a[1]);
}

function renderTimeRange(terms) {
  const container = document.getElementById("time-range");
  const chips = TIME_RANGES.map(([label, term]) => {
    const active = terms.has(term);
    const chip = el("button", { class: `chip${active ? " active" : ""}`, text: label, attrs: { type: "button", "aria-pressed": String(active) } });
    chip.addEventListener("click", () => {
      const others = TIME_RANGES.map(([, t]) => t).filter((t) => t !== term);
      let next = splitTerms(state.query).filter((t) => !others.includes(t));
      next = active ? next.filter((t) => t !== term) : next.concat(terms.has(term) ? [] : [term]);
      setQuery(next.join(" "));
    });
    return chip;
  });
  container.replaceChildren(...chips);
}

/** Adds `term` to the query, or removes it when present. */
function toggleTerm(term) {
  const terms = splitTerms(state.query);
  const next = terms.includes(term) ? terms.filter((t) => t !== term) : terms.concat(term);
  setQuery(next.join(" "));
}

/** Sets the query, in the input too, and reloads. */
export function setQuery(query) {
  state.query = query;
  queryInput.value = query;
  state.selected.clear();
  reload();
}

// ---- Cursor, selection and triage ----------------------------------------------------

function moveCursor(index) {
  if (state.rows.length === 0) return;
  state.cursor = Math.max(0, Math.min(state.rows.length - 1, index));
  const top = state.cursor * ROW_HEIGHT;
  if (top < list.scrollTop) list.scrollTop = top;
  else if (top + ROW_HEIGHT > list.scrollTop + list.clientHeight) {
    list.scrollTop = top + ROW_HEIGHT - list.clientHeight;
  }
  renderRows();
  openCurrent(false);
}

/** Shows the alert under the cursor; with `markRead`, also marks it read. */
async function openCurrent(markRead) {
  const alert = state.rows[state.cursor];
  if (!alert) return;
  await showDetail(alert.id);
  if (markRead && !alert.read) await triage([alert.id], { action: "markRead" });
}

/** Applies a triage action and refreshes the list and detail. */
export async function triage(ids, action) {
  if (ids.length === 0) return;
  try {
    await api.triage(ids, action);
  } catch (error) {
    toast(errorMessage(error), true);
    return;
  }
  await afterTriage(ids);
}

async function afterTriage(ids) {
  await reload({ keepScroll: true });
  const detailId = currentDetailId();
  if (detailId && ids.includes(detailId)) showDetail(detailId);
  refreshStatus();
}

function selectedOrCurrent() {
  if (state.selected.size > 0) return [...state.selected];
  const alert = state.rows[state.cursor];
  return alert ? [alert.id] : [];
}

function toggleSelected(id) {
  if (state.selected.has(id)) state.selected.delete(id);
  else state.selected.add(id);
  renderRows();
  renderSelection();
}

async function openInPortal() {
  const alert = state.rows[state.cursor];
  if (!alert) return;
  try {
    const outcome = await api.openConsole(alert.id);
    if (outcome.opened) toast("Opened in RealTheory");
    else toast(outcome.url ? `Not opened: ${outcome.url} is not a web link` : "This alert has no RealTheory link", true);
  } catch (error) {
    toast(errorMessage(error), true);
  }
}

// ---- Wiring --------------------------------------------------------------------------

function wireList() {
  list.addEventListener("scroll", () => requestAnimationFrame(renderRows));
  window.addEventListener("resize", () => requestAnimationFrame(renderRows));
  list.addEventListener("click", (event) => {
    const row = event.target.closest(".alert-row");
    if (!row) return;
    const index = Number(row.dataset.index);
    if (event.ctrlKey || event.metaKey) {
      toggleSelected(row.dataset.id);
      return;
    }
    if (event.shiftKey && state.cursor >= 0) {
      const [from, to] = [Math.min(state.cursor, index), Math.max(state.cursor, index)];
      for (let i = from; i <= to; i++) state.selected.add(state.rows[i].id);
      renderSelection();
    }
    state.cursor = index;
    renderRows();
    openCurrent(true);
  });

  let typing;
  document.getElementById("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(typing);
    state.query = queryInput.value.trim();
    reload();
  });
  queryInput.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      state.query = queryInput.value.trim();
      reload();
    }, 250);
  });

  for (const button of document.querySelectorAll("[data-bulk]")) {
    button.addEventListener("click", () => {
      const kind = button.dataset.bulk;
      const ids = [...state.selected];
      if (kind === "clear") {
        state.selected.clear();
        renderRows();
        renderSelection();
        return;
      }
      const action = kind === "snooze" ? { action: "snooze", untilMs: Date.now() + 3600e3 } : { action: kind };
      triage(ids, action).then(() => {
        state.selected.clear();
        renderSelection();
      });
    });
  }

  document.getElementById("saved-filters").addEventListener("change", (event) => {
    const value = event.target.value;
    if (value) setQuery(value);
  });
  document.getElementById("save-filter").addEventListener("click", saveCurrentFilter);
}

async function saveCurrentFilter() {
  const name = window.prompt("Name for this filter", "");
  if (!name) return;
  try {
    await api.saveFilter(name, state.query);
    toast(`Saved filter "${name}"`);
    loadSavedFilters();
  } catch (error) {
    toast(errorMessage(error), true);
  }
}

async function loadSavedFilters() {
  const select = document.getElementById("saved-filters");
  let filters = [];
  try {
    filters = await api.savedFilters();
  } catch {
    return;
  }
  const options = filters.map((filter) => el("option", { text: filter.name, attrs: { value: filter.query } }));
  select.replaceChildren(el("option", { text: "Saved filters", attrs: { value: "" } }), ...options);
}

function wireKeyboard() {
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const editing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement;
    if (event.key === "Escape") {
      if (editing) target.blur();
      state.selected.clear();
      renderRows();
      renderSelection();
      return;
    }
    if (editing || event.ctrlKey || event.metaKey || event.altKey) return;
    if (document.getElementById("view-inbox").hidden) return;
    switch (event.key) {
      case "j":
      case "ArrowDown":
        moveCursor(state.cursor + 1);
        break;
      case "k":
      case "ArrowUp":
        moveCursor(state.cursor - 1);
        break;
      case "Enter":
        openCurrent(true);
        break;
      case "/":
        queryInput.focus();
        queryInput.select();
        break;
      case "a":
        triage(selectedOrCurrent(), { action: "acknowledge" });
        break;
      case "o":
        openInPortal();
        break;
      case "x": {
        const alert = state.rows[state.cursor];
        if (alert) toggleSelected(alert.id);
        break;
      }
      case "e":
        triage(selectedOrCurrent(), { action: "archive" });
        break;
      default:
        return;
    }
    event.preventDefault();
  });
}

let refreshTimer;
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    refreshTop();
    refreshStatus();
    const detailId = currentDetailId();
    if (detailId) showDetail(detailId, { keepScroll: true });
  }, 120);
}

async function wireEvents() {
  await on("alert-event", scheduleRefresh);
  await on("alerts-reload", () => reload({ keepScroll: true }));
  await on("triage-changed", () => {
    reload({ keepScroll: true });
    refreshStatus();
  });
  await on("focus-alert", async (id) => {
    showView("inbox");
    await reload();
    const index = state.rows.findIndex((row) => row.id === id);
    if (index >= 0) moveCursor(index);
    else showDetail(id);
  });
  await on("runtime-changed", async () => {
    await refreshStatus();
    reload();
  });
  await on("tunnel-status", () => refreshStatus());
  await on("pause-changed", () => refreshStatus());
}

async function main() {
  wireList();
  wireKeyboard();
  setTriageHandler(triage);
  initPanels({ onDeliveriesShown: refreshDeliveries, triage, openInPortal: (id) => api.openConsole(id) });
  await wireEvents();
  await refreshStatus();
  await reload();
  loadSavedFilters();
  // Relative times age while the window is open.
  setInterval(renderRows, 30_000);
  document.body.dataset.ready = "true";
  // The end-to-end measurements read this mark for the time from launch to a usable window.
  performance.mark("window-ready");
}

main().catch((error) => toast(errorMessage(error), true));

export { clearDetail };
