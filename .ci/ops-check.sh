#!/usr/bin/env bash
# Checks the ops assets under deploy/ with the real tools (promtool, amtool,
# Alertmanager, docker-compose, kubernetes-validate) and the static checks of
# deploy/tools/check_assets.py, deploy/tools/check_production.py (the
# Kubernetes manifests of deploy/production) and deploy/tools/capacity.py
# --self-check (the capacity model against the crate). One line per check; the last line is
# `ops: N passed, M failed`; exit status 1 on any failure. Bounded: < 1 minute.
#
#   bash .ci/install-tools.sh   # once, on a fresh Debian machine (root)
#   bash .ci/ops-check.sh
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DEPLOY="$ROOT/deploy"
TMP="$(mktemp -d)"
AM_PID=""
cleanup() {
    if [ -n "$AM_PID" ]; then kill "$AM_PID" 2>/dev/null; wait "$AM_PID" 2>/dev/null; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

pass=0
fail=0
ok()   { pass=$((pass + 1)); echo "ok - $1"; }
bad()  { fail=$((fail + 1)); echo "FAIL - $1"; [ -n "${2:-}" ] && sed 's/^/    /' "$2" | head -40; return 0; }
# run NAME CMD...: one check, passing when CMD exits 0 (its output shown on failure).
run() {
    local name="$1"; shift
    if "$@" >"$TMP/out" 2>&1; then ok "$name"; else bad "$name" "$TMP/out"; fi
}

if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null || ! command -v docker-compose >/dev/null \
   || ! /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
    echo "# tools missing: running .ci/install-tools.sh"
    bash "$ROOT/.ci/install-tools.sh" >"$TMP/install.log" 2>&1 || { cat "$TMP/install.log"; }
fi
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

# --------------------------------------------------------------- Prometheus
run "promtool check config deploy/prometheus/prometheus.yml (with its rule files)" \
    promtool check config "$DEPLOY/prometheus/prometheus.yml"
run "promtool check rules deploy/prometheus/rules/*.yml" \
    promtool check rules "$DEPLOY"/prometheus/rules/*.yml
for t in "$DEPLOY"/prometheus/tests/*.yml; do
    run "promtool test rules deploy/prometheus/tests/$(basename "$t")" promtool test rules "$t"
done

# --------------------------------------------------------------- Alertmanager
AMCFG="$DEPLOY/alertmanager/alertmanager.yml"
run "amtool check-config deploy/alertmanager/alertmanager.yml" amtool check-config "$AMCFG"
route() { # route EXPECTED LABELS...
    local want="$1"; shift
    run "amtool route: $* -> $want" \
        amtool config routes test --config.file="$AMCFG" --verify.receivers="$want" "$@"
}
route pagerduty severity=critical alertname=HighErrorRate service=api
route pagerduty severity=critical alertname=SLOBurnRateAvailability burn=page
route slack-notifications severity=warning alertname=HighResponseTime service=api
route slack-notifications severity=warning category=security alertname=ManyFailedLogins
route slack-notifications alertname=Unlabelled

# A real Alertmanager with the same config (secret files pointing to a closed
# loopback port) to check the inhibition rules.
AMBIN="$(command -v prometheus-alertmanager || command -v alertmanager || true)"
if [ -n "$AMBIN" ]; then
    mkdir -p "$TMP/secrets" "$TMP/am-data"
    echo "0123456789abcdef0123456789abcdef" >"$TMP/secrets/pagerduty_routing_key"
    echo "http://127.0.0.1:9/slack" >"$TMP/secrets/slack_webhook_url"
    sed "s|/etc/alertmanager/secrets/|$TMP/secrets/|" "$AMCFG" >"$TMP/alertmanager.yml"
    AM_PORT=$((20000 + RANDOM % 20000))
    "$AMBIN" --config.file="$TMP/alertmanager.yml" --storage.path="$TMP/am-data" \
        --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= \
        >"$TMP/am.log" 2>&1 &
    AM_PID=$!
    for _ in $(seq 1 50); do
        curl -fs "http://127.0.0.1:$AM_PORT/-/ready" >/dev/null 2>&1 && break
        sleep 0.2
    done
    if curl -fs "http://127.0.0.1:$AM_PORT/-/ready" >/dev/null 2>&1; then
        ok "Alertmanager starts with deploy/alertmanager/alertmanager.yml"
        "$PY" "$DEPLOY/tools/am_inhibit_test.py" "http://127.0.0.1:$AM_PORT" >"$TMP/inhibit" 2>&1
        while IFS= read -r line; do
            case "$line" in
                "ok - "*) ok "${line#ok - }" ;;
                "FAIL - "*) bad "${line#FAIL - }" ;;
                *) echo "    $line" ;;
            esac
        done <"$TMP/inhibit"
    else
        bad "Alertmanager starts with deploy/alertmanager/alertmanager.yml" "$TMP/am.log"
    fi
    kill "$AM_PID" 2>/dev/null; wait "$AM_PID" 2>/dev/null; AM_PID=""
else
    bad "Alertmanager binary (prometheus-alertmanager) found"
fi

# --------------------------------------------------------------- docker compose
# docker-compose (v1) parses the file, interpolates it and validates it
# against the compose-spec JSON schema; no Docker engine is needed.
COMPOSE="$DEPLOY/docker-compose.yml"
run "docker-compose config: deploy/docker-compose.yml is a valid compose file" \
    env GRAFANA_ADMIN_USER=admin GRAFANA_ADMIN_PASSWORD=check docker-compose -f "$COMPOSE" config -q
env GRAFANA_ADMIN_USER=admin GRAFANA_ADMIN_PASSWORD=check docker-compose -f "$COMPOSE" config \
    >"$TMP/compose.yml" 2>"$TMP/compose.err" || true
if env -u GRAFANA_ADMIN_PASSWORD docker-compose -f "$COMPOSE" config -q >"$TMP/out" 2>&1; then
    bad "docker-compose refuses to start Grafana without GRAFANA_ADMIN_PASSWORD"
else
    ok "docker-compose refuses to start Grafana without GRAFANA_ADMIN_PASSWORD"
fi

# --------------------------------------------------------------- static checks
"$PY" "$DEPLOY/tools/check_assets.py" "$TMP/compose.yml" >"$TMP/assets" 2>&1
assets_rc=$?
while IFS= read -r line; do
    case "$line" in
        "ok - "*) ok "${line#ok - }" ;;
        "FAIL - "*) bad "${line#FAIL - }" ;;
        *) echo "    $line" ;;
    esac
done <"$TMP/assets"
if [ "$assets_rc" -ne 0 ] && ! grep -q '^FAIL' "$TMP/assets"; then
    bad "deploy/tools/check_assets.py ran" "$TMP/assets"
fi

# --------------------------------------------------------------- production
# deploy/production: Kubernetes schemas (kubernetes-validate), promtool and
# amtool on the files inside the ConfigMaps, the collector pipelines, wiring,
# secrets (deploy/tools/check_production.py).
if [ ! -x "$ROOT/.ci/k8s/.venv/bin/kubernetes-validate" ] && [ -z "${KUBERNETES_VALIDATE:-}" ]; then
    echo "# kubernetes-validate missing: running .ci/install-tools.sh"
    bash "$ROOT/.ci/install-tools.sh" >"$TMP/install2.log" 2>&1 || cat "$TMP/install2.log"
fi
"$PY" "$DEPLOY/tools/check_production.py" >"$TMP/prod" 2>&1
prod_rc=$?
while IFS= read -r line; do
    case "$line" in
        "ok - "*) ok "${line#ok - }" ;;
        "FAIL - "*) bad "${line#FAIL - }" ;;
        *) echo "    $line" ;;
    esac
done <"$TMP/prod"
if [ "$prod_rc" -ne 0 ] && ! grep -q '^FAIL' "$TMP/prod"; then
    bad "deploy/tools/check_production.py ran" "$TMP/prod"
fi

# --------------------------------------------------------------- capacity model
# deploy/tools/capacity.py: its series catalogue matches src/metrics/names.rs
# and the caps/buckets of the crate, and docs/capacity.md shows its current output.
"$PY" "$DEPLOY/tools/capacity.py" --self-check >"$TMP/cap" 2>&1
cap_rc=$?
while IFS= read -r line; do
    case "$line" in
        "ok - "*) ok "${line#ok - }" ;;
        "FAIL - "*) bad "${line#FAIL - }" ;;
        *) echo "    $line" ;;
    esac
done <"$TMP/cap"
if [ "$cap_rc" -ne 0 ] && ! grep -q '^FAIL' "$TMP/cap"; then
    bad "deploy/tools/capacity.py --self-check ran" "$TMP/cap"
fi

echo "ops: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
