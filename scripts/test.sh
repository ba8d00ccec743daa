#!/usr/bin/env bash
# The whole test suite. Installs what the tests need (PostgreSQL's server
# binaries, Chromium and chromedriver) when missing; the tests start their own
# servers and browser on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL's server binaries, and Chromium with its WebDriver for the
# console's browser tests; each only when missing.
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
# What reads deploy/ and the operator conventions (crates/cli/tests/deploy.rs):
# promtool and Prometheus, docker-compose to validate the compose files (no
# Docker engine: without recommends), systemd-analyze for the units, man for
# the manual pages, zsh and fish for the completion scripts.
lean=()
command -v promtool >/dev/null || lean+=(prometheus)
command -v docker-compose >/dev/null || lean+=(docker-compose)
command -v systemd-analyze >/dev/null || lean+=(systemd)
command -v man >/dev/null || lean+=(man-db)
command -v zsh >/dev/null || lean+=(zsh)
command -v fish >/dev/null || lean+=(fish)
if [ $((${#missing[@]} + ${#lean[@]})) -gt 0 ]; then
    echo "installing ${missing[*]} ${lean[*]} (the tests start their own servers and browser)" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    if [ ${#missing[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if [ ${#lean[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
    fi
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --quiet
