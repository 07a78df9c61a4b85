"""Measure the desktop app: launch time, resident memory and notification latency.

Run inside the end-to-end session, which provides Xvfb, D-Bus, dunst and tauri-driver:

    ALERT_INBOX_E2E_SCRIPT=tests/e2e/measure.py bash tests/e2e/run.sh [--runs N] [--data-dir DIR]

With --data-dir, the app opens that existing data directory (for example one filled by
`alert-inbox-bench query`); otherwise each run starts from an empty one. Prints one line
per run and the medians as JSON.

- Window: from the app process's start time (/proc/PID/stat) to the window's
  `window-ready` performance mark, which the UI sets once it is wired up and shows the
  receiver's state, before the store is open.
- Launch: from the same start to the `inbox-ready` mark, which the UI sets after its first
  list loads. A schema upgrade of the store runs between the two.
- Memory: 5 s after ready, the sum of VmRSS and of Pss (smaps_rollup) over the app
  process and its descendants (the WebKit web and network processes). RSS counts shared
  pages once per process, so the RSS sum overstates what the processes use together.
- Notification: from just before a signed POST to dunst's receive timestamp of the
  notification, both on CLOCK_MONOTONIC; `dunstctl history` reports the timestamp once
  the notification is closed.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from conftest import App, alert_payload, running_app_pids, wait_until

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
IDLE_SETTLE_S = 5
NOTIFICATIONS_PER_RUN = 5


def boot_time_s():
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    raise RuntimeError("btime missing from /proc/stat")


def process_start_epoch_s(pid):
    # Field 22 of /proc/PID/stat, counted after the parenthesised command name.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return boot_time_s() + int(fields[19]) / CLOCK_TICKS


def children(pid):
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def process_tree(pid):
    pids = [pid]
    for child in children(pid):
        pids.extend(process_tree(child))
    return pids


def app_pid():
    """Returns the pid of the app under test, the newest if several run."""
    pids = running_app_pids()
    if not pids:
        raise RuntimeError(f"no running process found for {os.environ['ALERT_INBOX_APP']}")
    return max(pids, key=process_start_epoch_s)


def memory_kib(pids):
    """Returns the summed VmRSS and Pss of `pids`, in KiB."""
    rss = pss = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss, pss


def dunst_entries():
    output = subprocess.run(["dunstctl", "history"], check=True, capture_output=True, text=True).stdout
    return json.loads(output)["data"][0]


def displayed_count():
    output = subprocess.run(["dunstctl", "count", "displayed"], capture_output=True, text=True).stdout
    return int(output.strip() or 0)


def notification_latency_ms(app, title):
    """Posts one new alert; returns the time from the POST to dunst receiving its notice."""
    subprocess.run(["dunstctl", "close-all"], check=True)
    wait_until(lambda: displayed_count() == 0, message="dunst to close its notifications")
    posted = time.monotonic()
    app.post(alert_payload(title))
    wait_until(lambda: displayed_count() == 1, interval=0.01, message=f"the notification for {title!r}")
    subprocess.run(["dunstctl", "close-all"], check=True)
    entry = wait_until(
        lambda: next((e for e in dunst_entries() if e["summary"]["data"].endswith(title)), None),
        message="the notification in dunst's history",
    )
    # dunst stores g_get_monotonic_time() in microseconds, the clock of time.monotonic().
    return entry["timestamp"]["data"] / 1000 - posted * 1000


def mark_epoch_ms(app, name):
    """Returns when the window set the performance mark `name`, in ms since the epoch."""
    return app.driver.execute_script(
        "const mark = performance.getEntriesByName(arguments[0])[0];"
        "return mark ? performance.timeOrigin + mark.startTime : null",
        name,
    )


def measure_run(index, data_dir):
    directory = Path(tempfile.mkdtemp(prefix="alert-inbox-measure-"))
    app = App(directory)
    if data_dir:
        app.config_path.write_text(app.config_path.read_text().replace(str(app.data_dir), str(data_dir)))
    app.launch(listen_timeout=600)
    try:
        pid = app_pid()
        started_ms = process_start_epoch_s(pid) * 1000
        window_ms = mark_epoch_ms(app, "window-ready") - started_ms
        # A schema upgrade delays the inbox, not the window.
        wait_until(lambda: mark_epoch_ms(app, "inbox-ready"), timeout=600, message="the inbox to load")
        launch_ms = mark_epoch_ms(app, "inbox-ready") - started_ms
        # The count comes with the facets, after the first rows.
        total = wait_until(
            lambda: app.driver.execute_script(
                "const text = document.getElementById('result-count').textContent;"
                "return text === 'Counting…' ? null : text"
            ),
            timeout=60,
            message="the count of alerts",
        )

        time.sleep(IDLE_SETTLE_S)
        rss_kib, pss_kib = memory_kib(process_tree(pid))

        latencies = [notification_latency_ms(app, f"Measure {index}-{n}") for n in range(NOTIFICATIONS_PER_RUN)]
    finally:
        app.quit()
        shutil.rmtree(directory, ignore_errors=True)
    result = {
        "window_ms": round(window_ms),
        "launch_ms": round(launch_ms),
        "rss_mib": round(rss_kib / 1024, 1),
        "pss_mib": round(pss_kib / 1024, 1),
        "notify_ms": round(statistics.median(latencies), 1),
        "inbox": total,
    }
    print(json.dumps({"run": index, **result}), flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="app launches to measure")
    parser.add_argument("--data-dir", type=Path, help="existing data directory to open")
    args = parser.parse_args()

    results = [measure_run(index, args.data_dir) for index in range(args.runs)]
    medians = {key: statistics.median(r[key] for r in results) for key in ("window_ms", "launch_ms", "rss_mib", "pss_mib", "notify_ms")}
    print(json.dumps({"app": os.environ["ALERT_INBOX_APP"], "runs": args.runs, "median": medians}), flush=True)


if __name__ == "__main__":
    main()
