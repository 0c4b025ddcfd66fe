#!/usr/bin/env bash
# The capacity model's series bound, proven on the example service: starts
# examples/service.rs on loopback, floods it with random caller-fed label
# values, paths, methods and bodies (deploy/tools/series_flood.py), then
# checks the series on /metrics against `deploy/tools/capacity.py series`
# for the example's profile (deploy/tools/capacity/example-service.json).
# Prints one `ok - ` / `FAIL - ` line per check and
# `series-bound: N passed, M failed`; exit 1 on failure. Called by .ci/e2e.sh
# with the binary it built; standalone it builds the example the same way.
#
#   bash .ci/series-bound.sh [PATH_TO_EXAMPLE_BINARY]
# Env: SERIES_FLOOD_REQUESTS (3000), SERIES_FLOOD_SEED (random, printed).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
TMP="$(mktemp -d)"
SVC_PID=""
cleanup() {
    if [ -n "$SVC_PID" ]; then
        kill "$SVC_PID" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$SVC_PID" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$SVC_PID" 2>/dev/null
        wait "$SVC_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass=0
fail=0
ok()  { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; [ -n "${2:-}" ] && [ -f "$2" ] && tail -n 30 "$2" | sed 's/^/    /'; return 0; }
finish() { echo "series-bound: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

BIN="${1:-}"
if [ -z "$BIN" ]; then
    if timeout 1500 cargo build --example service >"$TMP/build.log" 2>&1; then
        ok "cargo build --example service"
    else
        bad "cargo build --example service" "$TMP/build.log"; finish
    fi
    BIN="$(cargo metadata --format-version 1 --no-deps 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/examples/service"
fi
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
[ -x "$BIN" ] || { bad "example binary $BIN exists"; finish; }

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
APP_PORT="$(free_port)"
METRICS_PORT="$(free_port)"
while [ "$METRICS_PORT" = "$APP_PORT" ]; do METRICS_PORT="$(free_port)"; done
mkdir -p "$TMP/svc"
(
    cd "$TMP/svc" || exit 1
    unset OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    exec env OTEL_SERVICE_NAME=glimpse-series-bound GLIMPSE_ENV=development RUST_LOG=info GLIMPSE_LOG_FORMAT=json \
        GLIMPSE_ADDR="127.0.0.1:$APP_PORT" GLIMPSE_METRICS_ADDR="127.0.0.1:$METRICS_PORT" \
        GLIMPSE_DATABASE_URL="sqlite://$TMP/svc/glimpse.db" \
        "$BIN" >"$TMP/service.log" 2>"$TMP/service.err"
) &
SVC_PID=$!
up=""
for _ in $(seq 1 100); do
    if curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$APP_PORT/health" \
       && curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$METRICS_PORT/metrics"; then up=1; break; fi
    sleep 0.3
done
if [ -n "$up" ]; then ok "example service up (series-bound run)"; else bad "example service up (series-bound run)" "$TMP/service.err"; finish; fi

timeout 600 "$PY" "$ROOT/deploy/tools/series_flood.py" "http://127.0.0.1:$APP_PORT" \
    "http://127.0.0.1:$METRICS_PORT/metrics" "${SERIES_FLOOD_REQUESTS:-3000}" >"$TMP/flood" 2>&1
rc=$?
while IFS= read -r line; do
    case "$line" in
        "ok - "*) ok "${line#ok - }" ;;
        "FAIL - "*) bad "${line#FAIL - }" ;;
        *) echo "    $line" ;;
    esac
done <"$TMP/flood"
if [ "$rc" -ne 0 ] && ! grep -q '^FAIL' "$TMP/flood"; then bad "deploy/tools/series_flood.py ran" "$TMP/flood"; fi
# The measured average log line, for the capacity model's avg_line_bytes.
"$PY" - "$TMP/service.log" <<'PYEOF'
import sys
lines = open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines()
if lines:
    print(f"    # service log: {len(lines)} lines, {sum(len(l) + 1 for l in lines) / len(lines):.0f} bytes a line on average")
PYEOF
finish
