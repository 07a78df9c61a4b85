#!/usr/bin/env bash
# Installs what building and testing Alert Inbox needs on Debian or Ubuntu: the WebKitGTK
# and tray libraries Tauri links against, and Xvfb, D-Bus, dunst and WebKitWebDriver for
# the end-to-end tests. Safe to run again: it installs only what is missing.
set -euo pipefail

packages=(
    build-essential pkg-config curl ca-certificates python3 python3-venv nodejs
    libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev libssl-dev
    xvfb xauth dbus dbus-x11 dunst libnotify-bin xdg-utils webkit2gtk-driver imagemagick
)

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "Installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "Installing the Rust toolchain with rustup (https://rustup.rs)"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
fi
