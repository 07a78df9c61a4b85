#!/usr/bin/env bash
# Builds and starts the Alert Inbox desktop app. Extra arguments go to the app, so
# `scripts/run.sh serve` runs the headless receiver instead.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$#" -eq 0 ] && [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
    echo "error: no display (DISPLAY and WAYLAND_DISPLAY are unset); run this from a desktop session," >&2
    echo "or run the receiver without a window: scripts/run.sh serve" >&2
    exit 2
fi

echo "Building Alert Inbox (release; the first build takes a few minutes)..."
cargo build --release --locked
exec target/release/alert-inbox "$@"
