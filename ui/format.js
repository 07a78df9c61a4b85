// Time and text formatting for the inbox.

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

const UNITS = [
  ["year", 365 * 86400e3],
  ["month", 30 * 86400e3],
  ["day", 86400e3],
  ["hour", 3600e3],
  ["minute", 60e3],
  ["second", 1e3],
];

/** Formats milliseconds since the epoch relative to now, such as "5 minutes ago". */
export function relativeTime(ms, now = Date.now()) {
  const delta = ms - now;
  for (const [unit, size] of UNITS) {
    if (Math.abs(delta) >= size || unit === "second") {
      return relative.format(Math.round(delta / size), unit);
    }
  }
  return "";
}

/** Formats an RFC 3339 string or milliseconds in local time; empty for null. */
export function localTime(value) {
  if (value === null || value === undefined || value === "") return "";
  const date = typeof value === "number" ? new Date(value) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return absolute.format(date);
}

/** Formats milliseconds as a local hour and minute, such as "02:10". */
export function clockTime(ms) {
  return clock.format(new Date(ms));
}

/** Returns the CSS class of a level, so unknown levels get a neutral colour. */
/** Describes the receiver's state for the status bar, with any backlog still being added. */
export function receiverStatusText(info) {
  if (info.starting) return info.upgrade ? "Upgrading the alert store…" : "Opening the alert store…";
  if (!info.running) return "Receiver stopped";
  const text = `Receiving on ${info.localUrl}`;
  if (!(info.pending > 0)) return text;
  const count = info.pending.toLocaleString("en-US");
  return `${text} · adding ${count} received ${info.pending === 1 ? "alert" : "alerts"} to the inbox…`;
}

export function levelClass(level) {
  const known = ["low", "medium", "high", "critical"];
  const name = String(level || "").toLowerCase();
  return known.includes(name) ? `level-${name}` : "level-unknown";
}

/** Quotes a filter value that contains spaces, quotes or commas. */
export function quoteValue(value) {
  if (value === "" || /[\s",]/.test(value)) return `"${value.replaceAll('"', "")}"`;
  return value;
}

/** Splits a filter query into terms on whitespace outside double quotes. */
export function splitTerms(query) {
  const terms = [];
  let current = "";
  let quoted = false;
  for (const character of query) {
    if (character === '"') quoted = !quoted;
    if (/\s/.test(character) && !quoted) {
      if (current) terms.push(current);
      current = "";
    } else {
      current += character;
    }
  }
  if (current) terms.push(current);
  return terms;
}
