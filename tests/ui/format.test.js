// Unit tests of the inbox's pure formatting helpers, run with Node's test runner.
import { test } from "node:test";
import assert from "node:assert/strict";

import { levelClass, quoteValue, receiverStatusText, relativeTime, splitTerms } from "../../ui/format.js";

test("relative time counts back from now", () => {
  const now = Date.UTC(2026, 0, 1, 12, 0, 0);
  assert.match(relativeTime(now - 5 * 60e3, now), /5 minutes ago|5 min/);
  assert.match(relativeTime(now - 2 * 3600e3, now), /2 hours ago|2 hr/);
});

test("level class is neutral for unknown levels", () => {
  assert.notEqual(levelClass("High"), levelClass("Apocalyptic"));
  assert.equal(levelClass("Apocalyptic"), levelClass("Nonsense"));
});

test("filter values with spaces, quotes or commas are quoted", () => {
  assert.equal(quoteValue("prod-eu"), "prod-eu");
  assert.equal(quoteValue("prod eu"), '"prod eu"');
  assert.equal(quoteValue("a,b"), '"a,b"');
  assert.equal(quoteValue(""), '""');
});

test("query terms split on spaces outside quotes", () => {
  assert.deepEqual(splitTerms('level=High  cluster="prod eu" pod'), [
    "level=High",
    'cluster="prod eu"',
    "pod",
  ]);
  assert.deepEqual(splitTerms("   "), []);
});

test("receiver status names the backlog still being added", () => {
  const running = { running: true, localUrl: "http://127.0.0.1:8787/webhook" };
  assert.equal(receiverStatusText({ ...running, pending: 0 }), "Receiving on http://127.0.0.1:8787/webhook");
  assert.match(receiverStatusText({ ...running, pending: 1 }), /adding 1 received alert to the inbox/);
  assert.match(receiverStatusText({ ...running, pending: 12345 }), /adding 12,345 received alerts/);
  assert.equal(receiverStatusText({ running: false, pending: 3 }), "Receiver stopped");
});

test("receiver status says while the store opens or upgrades", () => {
  assert.equal(receiverStatusText({ running: false, starting: true, pending: 0 }), "Opening the alert store…");
  assert.equal(
    receiverStatusText({ running: false, starting: true, upgrade: { from: 4, to: 5 }, pending: 0 }),
    "Upgrading the alert store…",
  );
});
