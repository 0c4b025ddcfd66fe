#!/usr/bin/env bash
# Runs every test of glimpse_obs on a fresh Debian machine: installs the real
# tools the checks need (promtool, amtool, Prometheus, the Python OpenTelemetry
# peer), then the Rust tests (unit, integration, doc), the ops-asset checks
# and the end-to-end run of the example service under a real Prometheus.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing test tools"
bash .ci/install-tools.sh
bash tests/peers/setup.sh
# The peer is installed: tests that need it fail rather than skip.
export GLIMPSE_REQUIRE_PEERS=1

step "cargo test (unit, integration, doc tests, examples built)"
cargo test --all-features --all-targets --no-fail-fast
cargo test --all-features --doc

step "ops assets: promtool, amtool, compose, metric names, runbooks"
bash .ci/ops-check.sh

step "end to end: example service under load, scraped by a real Prometheus"
bash .ci/e2e.sh
