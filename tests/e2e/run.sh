#!/usr/bin/env bash
# Runs the desktop end-to-end tests against a real window: Xvfb for the display, a private
# D-Bus session, dunst as the notification daemon, tauri-driver with WebKitWebDriver, and
# pytest with Selenium as the WebDriver client. Exits with pytest's status.
#
# Needs the Debian packages from scripts/install-deps.sh (xvfb, dbus, dunst,
# webkit2gtk-driver, python3-venv). Installs what else is missing: tauri-driver with
# `cargo install tauri-driver --locked`, and tests/e2e/requirements.txt with pip, into
# target/e2e-venv when the system Python rejects pip installs (PEP 668). Needs no
# display and runs as root. Extra arguments go to pytest.
#
# Environment: ALERT_INBOX_APP (app binary to test; built when unset),
# ALERT_INBOX_DRIVER_PORT (tauri-driver port, default 4444), ALERT_INBOX_E2E_SCRIPT
# (a Python script to run in place of pytest, given the extra arguments), and
# CARGO_TARGET_DIR (used in place of target/).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"

log() {
    printf 'e2e: %s\n' "$*" >&2
}

# Selects a Python with pytest, pytest-timeout and Selenium, installing them if missing.
find_python() {
    local venv="$target/e2e-venv"
    if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import pytest, pytest_timeout, selenium' 2>/dev/null; then
        echo "$venv/bin/python"
        return
    fi
    if python3 -c 'import pytest, pytest_timeout, selenium' 2>/dev/null; then
        echo python3
        return
    fi
    log "installing tests/e2e/requirements.txt with pip"
    if python3 -m pip install --quiet -r "$here/requirements.txt" >&2; then
        echo python3
        return
    fi
    log "system pip failed; installing into $venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" >&2
    echo "$venv/bin/python"
}

if [[ -z "${ALERT_INBOX_E2E_SESSION:-}" ]]; then
    export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
    for tool in Xvfb dbus-run-session dunst dunstctl WebKitWebDriver; do
        if ! command -v "$tool" >/dev/null; then
            log "$tool not found: install the Debian packages with scripts/install-deps.sh"
            exit 2
        fi
    done
    if ! command -v tauri-driver >/dev/null; then
        log "tauri-driver not found; installing it with cargo"
        cargo install tauri-driver --locked
    fi
    ALERT_INBOX_E2E_PYTHON="$(find_python)"
    export ALERT_INBOX_E2E_PYTHON

    if [[ -z "${ALERT_INBOX_APP:-}" ]]; then
        (cd "$root" && cargo build --bin alert-inbox)
        # A private copy, so a headless build into the same target dir cannot replace it.
        mkdir -p "$target/e2e-app"
        cp "$target/debug/alert-inbox" "$target/e2e-app/alert-inbox"
        export ALERT_INBOX_APP="$target/e2e-app/alert-inbox"
    fi
    export ALERT_INBOX_E2E_SESSION=1
    exec dbus-run-session -- bash "${BASH_SOURCE[0]}" "$@"
fi

# Inside the private D-Bus session from here on.

pids=()
# Lists `pid` and all its descendants, children first.
descendants() {
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        descendants "$child"
    done
    echo "$1"
}
cleanup() {
    local pid all=()
    for pid in "${pids[@]}"; do
        mapfile -t -O "${#all[@]}" all < <(descendants "$pid")
    done
    if ((${#all[@]} > 0)); then
        kill "${all[@]}" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A display number that no X server uses yet.
display=99
while [[ -e "/tmp/.X11-unix/X$display" || -e "/tmp/.X$display-lock" ]]; do
    display=$((display - 1))
done
Xvfb ":$display" -screen 0 1400x900x24 -nolisten tcp >/dev/null 2>&1 &
pids+=($!)
export DISPLAY=":$display"
# GTK would pick a Wayland compositor of the calling session over Xvfb.
unset WAYLAND_DISPLAY
export GDK_BACKEND=x11
for _ in $(seq 1 50); do
    [[ -e "/tmp/.X11-unix/X$display" ]] && break
    sleep 0.1
done
if [[ ! -e "/tmp/.X11-unix/X$display" ]]; then
    log "Xvfb did not start on display :$display"
    exit 2
fi

# WebKitGTK stalls looking for an accessibility bus without this. Compositing stays on:
# with WEBKIT_DISABLE_COMPOSITING_MODE=1 (WebKitGTK 2.50), WebKitWebDriver's screenshot
# waits for the next paint, so a screenshot of a page that does not change never returns.
export NO_AT_BRIDGE=1
# Without a desktop environment, xdg-open hands URLs to $BROWSER: the stub records them.
export ALERT_INBOX_E2E_OPENED="${ALERT_INBOX_E2E_OPENED:-$(mktemp -t alert-inbox-opened.XXXXXX)}"
export BROWSER="$here/stub-browser.sh"
unset XDG_CURRENT_DESKTOP DESKTOP_SESSION GNOME_DESKTOP_SESSION_ID KDE_FULL_SESSION
# Services that D-Bus starts on demand (the desktop portal) need the display too.
dbus-update-activation-environment DISPLAY NO_AT_BRIDGE BROWSER ALERT_INBOX_E2E_OPENED 2>/dev/null || true

logs="$target/e2e-logs"
mkdir -p "$logs"
dunst -config "$here/dunstrc" >"$logs/dunst.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
    dunstctl count displayed >/dev/null 2>&1 && break
    sleep 0.1
done

driver_port="${ALERT_INBOX_DRIVER_PORT:-4444}"
tauri-driver --port "$driver_port" --native-port "$((driver_port + 1))" \
    >"$logs/tauri-driver.log" 2>&1 &
pids+=($!)
export ALERT_INBOX_DRIVER_URL="http://127.0.0.1:$driver_port"
driver_up=false
for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$driver_port") 2>/dev/null; then
        driver_up=true
        break
    fi
    sleep 0.1
done
if [[ "$driver_up" != true ]]; then
    log "tauri-driver did not listen on port $driver_port; see $logs/tauri-driver.log"
    exit 2
fi

cd "$root"
python="${ALERT_INBOX_E2E_PYTHON:-python3}"
status=0
if [[ -n "${ALERT_INBOX_E2E_SCRIPT:-}" ]]; then
    "$python" "$ALERT_INBOX_E2E_SCRIPT" "$@" || status=$?
else
    "$python" -m pytest -v "$here" "$@" || status=$?
fi
exit "$status"
