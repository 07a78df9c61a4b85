#!/usr/bin/env bash
# Runs every check and test of Alert Inbox: formatting, lints on both builds, unit and
# integration tests, the receiver conformance cases when ../shared is present, and the
# end-to-end tests of the real window under Xvfb (SKIP_E2E=1 skips those).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "clippy, headless build"
cargo clippy --locked --all-targets --no-default-features -- -D warnings
step "clippy, desktop build"
cargo clippy --locked --all-targets -- -D warnings

step "cargo deny: licences, bans, sources"
# The advisory check needs the RustSec database from GitHub, which CI cannot reach.
command -v cargo-deny >/dev/null || cargo install cargo-deny --locked
cargo deny check licenses bans sources

step "front end: syntax of every module, unit tests"
for module in ui/*.js; do
    node --check "$module"
done
node --test tests/ui/

step "tests, headless build"
cargo test --locked --no-default-features
step "tests, desktop build"
cargo test --locked

if [ -f ../shared/conformance/run.py ]; then
    step "receiver conformance cases"
    python3 ../shared/conformance/run.py --bin target/debug/alert-inbox
fi

if [ "${SKIP_E2E:-0}" = "1" ]; then
    step "end-to-end tests skipped (SKIP_E2E=1)"
else
    step "end-to-end tests of the desktop app"
    bash tests/e2e/run.sh
fi

step "all checks passed"
