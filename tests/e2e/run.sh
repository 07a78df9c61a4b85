#!/usr/bin/env bash
# Runs the desktop end-to-end tests against a real window: Xvfb for the display, a private
# D-Bus session, dunst as the notification daemon, tauri-driver with WebKitWebDriver, and
# pytest with Selenium as the WebDriver client.
#
# Needs: xvfb, dbus, dunst, webkit2gtk-driver (Debian), `cargo install tauri-driver
# --locked`, and `pip install -r tests/e2e/requirements.txt`. Extra arguments go to pytest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [[ -z "${ALERT_INBOX_E2E_SESSION:-}" ]]; then
    if [[ -z "${ALERT_INBOX_APP:-}" ]]; then
        (cd "$root" && cargo build --bin alert-inbox)
        # A private copy, so a headless build into the same target dir cannot replace it.
        mkdir -p "$root/target/e2e-app"
        cp "$root/target/debug/alert-inbox" "$root/target/e2e-app/alert-inbox"
        export ALERT_INBOX_APP="$root/target/e2e-app/alert-inbox"
    fi
    export ALERT_INBOX_E2E_SESSION=1
    exec dbus-run-session -- "$0" "$@"
fi

pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# A display number that no X server uses yet.
display=99
while [[ -e "/tmp/.X11-unix/X$display" || -e "/tmp/.X$display-lock" ]]; do
    display=$((display - 1))
done
Xvfb ":$display" -screen 0 1400x900x24 -nolisten tcp >/dev/null 2>&1 &
pids+=($!)
export DISPLAY=":$display"
for _ in $(seq 1 50); do
    [[ -e "/tmp/.X11-unix/X$display" ]] && break
    sleep 0.1
done

# WebKitGTK renders a blank window on some versions without this, and stalls looking for
# an accessibility bus without the second.
export WEBKIT_DISABLE_COMPOSITING_MODE=1
export NO_AT_BRIDGE=1
# Without a desktop environment, xdg-open hands URLs to $BROWSER: the stub records them.
export ALERT_INBOX_E2E_OPENED="${ALERT_INBOX_E2E_OPENED:-$(mktemp -t alert-inbox-opened.XXXXXX)}"
export BROWSER="$here/stub-browser.sh"
unset XDG_CURRENT_DESKTOP DESKTOP_SESSION GNOME_DESKTOP_SESSION_ID KDE_FULL_SESSION

dunst -config "$here/dunstrc" >/tmp/alert-inbox-e2e-dunst.log 2>&1 &
pids+=($!)

driver_port="${ALERT_INBOX_DRIVER_PORT:-4444}"
tauri-driver --port "$driver_port" --native-port "$((driver_port + 1))" \
    >/tmp/alert-inbox-e2e-driver.log 2>&1 &
pids+=($!)
export ALERT_INBOX_DRIVER_URL="http://127.0.0.1:$driver_port"
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$driver_port") 2>/dev/null && break
    sleep 0.1
done

cd "$root"
if [[ -n "${ALERT_INBOX_E2E_SCRIPT:-}" ]]; then python3 "$ALERT_INBOX_E2E_SCRIPT"; exit; fi
python3 -m pytest -v -p no:cacheprovider "$here" "$@"
