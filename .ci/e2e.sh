#!/usr/bin/env bash
# End-to-end test of the ops assets against the real thing:
#   1. build and start the example service (examples/service.rs) on loopback;
#   2. start a real Prometheus (Debian's `prometheus`) scraping it every second
#      and evaluating every rule file of deploy/prometheus/rules every second;
#   3. drive load through every route of DESIGN.md section 7 for ~35 s
#      (deploy/tools/e2e_load.py: HTTP + WebSocket, loopback only, bounded);
#   4. run every dashboard query on the crate's metrics through Prometheus'
#      HTTP API and require data; check the rules loaded and evaluated with
#      health ok, and that the alerts the load provokes are pending;
#   4b. exemplars: Prometheus runs with --enable-feature=exemplar-storage and
#      scrapes OpenMetrics; /api/v1/query_exemplars for the HTTP histogram
#      must return exemplars whose trace_id values are the traceId of access
#      lines in the service's stdout (checked after shutdown, step 5);
#   5. SIGTERM the service: /health/ready answers 503 through the drain
#      (GLIMPSE_SHUTDOWN_DRAIN_MS) while /health/live stays 200; it must then
#      exit 0 with valid JSON log lines;
#   6. the series bound of deploy/tools/capacity.py on a fresh, flooded
#      instance of the same binary (.ci/series-bound.sh).
# Prints one line per check and `e2e: N passed, M failed`; exit 1 on failure.
# Everything it started is killed on exit. Bounded: about 1 minute after the build.
#
#   bash .ci/install-tools.sh && bash .ci/e2e.sh
# Env: E2E_LOAD_SECONDS (35), E2E_APP_PORT (3000), E2E_METRICS_PORT (9464),
#      E2E_PROM_PORT (9090); a busy port is replaced by a free one.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DEPLOY="$ROOT/deploy"
TMP="$(mktemp -d)"
SERVICE="glimpse-example"
ENVNAME="development"
LOAD_SECONDS="${E2E_LOAD_SECONDS:-35}"
SVC_PID=""
PROM_PID=""
LOAD_PID=""

stop() { # stop PID: TERM, then KILL after 10 s
    local pid="$1"
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}
cleanup() {
    stop "$LOAD_PID"; stop "$PROM_PID"; stop "$SVC_PID"
    if [ -n "${E2E_KEEP:-}" ]; then echo "# kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass=0
fail=0
ok()  { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; [ -n "${2:-}" ] && [ -f "$2" ] && tail -n 30 "$2" | sed 's/^/    /'; return 0; }
finish() { echo "e2e: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

if ! command -v prometheus >/dev/null || ! command -v curl >/dev/null || ! /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
    echo "# tools missing: running .ci/install-tools.sh"
    bash "$ROOT/.ci/install-tools.sh" >"$TMP/install.log" 2>&1 || cat "$TMP/install.log"
fi
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

free_port() { # free_port PREFERRED -> PREFERRED if free on 127.0.0.1, else a free one
    "$PY" - "$1" <<'PYEOF'
import socket, sys
p = int(sys.argv[1])
s = socket.socket()
try:
    s.bind(("127.0.0.1", p))
except OSError:
    s.close(); s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1]); s.close()
PYEOF
}
APP_PORT="$(free_port "${E2E_APP_PORT:-3000}")"
METRICS_PORT="$(free_port "${E2E_METRICS_PORT:-9464}")"
[ "$METRICS_PORT" = "$APP_PORT" ] && METRICS_PORT="$(free_port 0)"
PROM_PORT="$(free_port "${E2E_PROM_PORT:-9090}")"
echo "# service 127.0.0.1:$APP_PORT, metrics 127.0.0.1:$METRICS_PORT, prometheus 127.0.0.1:$PROM_PORT"

wait_http() { # wait_http URL SECONDS
    local deadline=$((SECONDS + $2))
    while [ "$SECONDS" -lt "$deadline" ]; do
        curl -fs -o /dev/null --max-time 2 "$1" && return 0
        sleep 0.3
    done
    return 1
}

# ------------------------------------------------------------ 1. the service
if timeout 1500 cargo build --example service >"$TMP/build.log" 2>&1; then
    ok "cargo build --example service"
else
    bad "cargo build --example service" "$TMP/build.log"
    finish
fi
BIN="$(cargo metadata --format-version 1 --no-deps 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/examples/service"
[ -x "$BIN" ] || BIN="$ROOT/target/debug/examples/service"
mkdir -p "$TMP/svc"
(
    cd "$TMP/svc" || exit 1
    unset OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    exec env OTEL_SERVICE_NAME="$SERVICE" GLIMPSE_ENV="$ENVNAME" RUST_LOG=info GLIMPSE_LOG_FORMAT=json \
        GLIMPSE_ADDR="127.0.0.1:$APP_PORT" GLIMPSE_METRICS_ADDR="127.0.0.1:$METRICS_PORT" \
        GLIMPSE_DATABASE_URL="sqlite://$TMP/svc/glimpse.db" GLIMPSE_SHUTDOWN_DRAIN_MS=2000 \
        "$BIN" >"$TMP/service.log" 2>"$TMP/service.err"
) &
SVC_PID=$!
if wait_http "http://127.0.0.1:$APP_PORT/health" 30 && wait_http "http://127.0.0.1:$METRICS_PORT/metrics" 10; then
    ok "example service answers /health and serves /metrics"
else
    bad "example service answers /health and serves /metrics" "$TMP/service.err"
    finish
fi

ready_json() { # ready_json BASE -> status code and body of BASE/health/ready
    curl -s -o "$TMP/ready.json" -w '%{http_code}' --max-time 5 "$1/health/ready"
}
for base in "http://127.0.0.1:$APP_PORT" "http://127.0.0.1:$METRICS_PORT"; do
    code="$(ready_json "$base")"
    if [ "$code" = "200" ] && grep -q '"name":"sqlite","status":"up"' "$TMP/ready.json" \
        && curl -fs -o /dev/null --max-time 5 "$base/health/live"; then
        ok "$base: /health/live 200, /health/ready 200 with the SQLite check up"
    else
        bad "$base: /health/live 200, /health/ready 200 with the SQLite check up (got $code: $(cat "$TMP/ready.json"))"
    fi
done

# ------------------------------------------------------------ 2. Prometheus
cat >"$TMP/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $DEPLOY/prometheus/rules/*.yml
scrape_configs:
  - job_name: glimpse
    honor_labels: true
    static_configs:
      - targets: ["127.0.0.1:$METRICS_PORT"]
        labels:
          service: $SERVICE
          env: $ENVNAME
YAML
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/tsdb" \
    --enable-feature=exemplar-storage \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
if wait_http "http://127.0.0.1:$PROM_PORT/-/ready" 30; then
    ok "Prometheus starts with the rule files of deploy/prometheus/rules"
else
    bad "Prometheus starts with the rule files of deploy/prometheus/rules" "$TMP/prometheus.log"
    finish
fi

# ------------------------------------------------------------ 3. load
echo "# driving load for ${LOAD_SECONDS}s"
timeout $((LOAD_SECONDS + 60)) "$PY" "$DEPLOY/tools/e2e_load.py" "http://127.0.0.1:$APP_PORT" "$LOAD_SECONDS" \
    >"$TMP/load.log" 2>&1 &
LOAD_PID=$!
wait "$LOAD_PID"
load_rc=$?
LOAD_PID=""
sed 's/^/    /' "$TMP/load.log"
if [ "$load_rc" -eq 0 ]; then ok "load reached every route (HTTP and WebSocket)"; else bad "load reached every route (HTTP and WebSocket)"; fi
sleep 3   # a few more scrapes and rule evaluations

# ------------------------------------------------------------ 4. queries
"$PY" "$DEPLOY/tools/e2e_queries.py" "http://127.0.0.1:$PROM_PORT" "$SERVICE" "$ENVNAME" >"$TMP/queries" 2>&1
q_rc=$?
while IFS= read -r line; do
    case "$line" in
        "ok - "*) ok "${line#ok - }" ;;
        "FAIL - "*) bad "${line#FAIL - }" ;;
        *) echo "    $line" ;;
    esac
done <"$TMP/queries"
if [ "$q_rc" -ne 0 ] && ! grep -q '^FAIL' "$TMP/queries"; then bad "deploy/tools/e2e_queries.py ran" "$TMP/queries"; fi

# ------------------------------------------------------------ 4b. exemplars
# The last few minutes of exemplars of the HTTP histogram, as Grafana asks.
now="$(date +%s)"
if curl -fsS --max-time 10 -G "http://127.0.0.1:$PROM_PORT/api/v1/query_exemplars" \
    --data-urlencode "query=http_server_request_duration_seconds_bucket{service=\"$SERVICE\"}" \
    --data-urlencode "start=$((now - 600))" --data-urlencode "end=$((now + 60))" \
    >"$TMP/exemplars.json" 2>"$TMP/exemplars.err"; then
    ok "Prometheus answers /api/v1/query_exemplars for http_server_request_duration_seconds"
else
    bad "Prometheus answers /api/v1/query_exemplars for http_server_request_duration_seconds" "$TMP/exemplars.err"
fi

# ------------------------------------------------------------ 5. shutdown and logs
kill -TERM "$SVC_PID" 2>/dev/null
sleep 0.3
code="$(ready_json "http://127.0.0.1:$APP_PORT")"
live="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$APP_PORT/health/live")"
if [ "$code" = "503" ] && grep -q '"status":"draining"' "$TMP/ready.json" && [ "$live" = "200" ]; then
    ok "after SIGTERM: /health/ready 503 (draining) while /health/live 200, still serving"
else
    bad "after SIGTERM: /health/ready 503 (draining) while /health/live 200 (ready $code, live $live)"
fi
svc_rc=""
for _ in $(seq 1 50); do
    if ! kill -0 "$SVC_PID" 2>/dev/null; then wait "$SVC_PID"; svc_rc=$?; break; fi
    sleep 0.2
done
if [ "$svc_rc" = "0" ]; then
    ok "service exits 0 within 10 s of SIGTERM"
    SVC_PID=""
else
    bad "service exits 0 within 10 s of SIGTERM (exit: ${svc_rc:-still running})" "$TMP/service.err"
fi
if "$PY" - "$TMP/service.log" >"$TMP/logcheck" 2>&1 <<'PYEOF'
import json, sys
lines = open(sys.argv[1], encoding="utf-8", errors="strict").read().splitlines()
assert len(lines) > 100, f"only {len(lines)} log lines"
levels, types = set(), set()
for n, l in enumerate(lines, 1):
    o = json.loads(l)
    for k in ("timestamp", "level", "service", "message", "target", "log_type"):
        assert k in o, f"line {n} lacks {k}: {l[:200]}"
    levels.add(o["level"]); types.add(o["log_type"])
assert {"INFO", "WARN", "ERROR"} <= levels, levels
assert {"payment", "user_activity", "system"} <= types, types
print(f"{len(lines)} lines, levels {sorted(levels)}, log_types {sorted(types)}")
PYEOF
then
    ok "service log: every line JSON with the schema's keys ($(cat "$TMP/logcheck"))"
else
    bad "service log: every line JSON with the schema's keys" "$TMP/logcheck"
fi
if "$PY" - "$TMP/exemplars.json" "$TMP/service.log" >"$TMP/exemplarcheck" 2>&1 <<'PYEOF'
import json, sys
data = json.load(open(sys.argv[1]))
assert data.get("status") == "success", data
# Access lines of /health are sampled out of the log (GLIMPSE_LOG_SAMPLE's
# default): its exemplars have no line to match.
traces = {e["labels"]["trace_id"] for s in data["data"] for e in s["exemplars"]
          if s["seriesLabels"].get("route") != "/health"}
assert traces, f"no exemplar stored: {data}"
access = set()
for l in open(sys.argv[2], encoding="utf-8"):
    o = json.loads(l)
    if o.get("target") == "glimpse_obs::access" and "traceId" in o:
        access.add(o["traceId"])
matched = traces & access
assert matched == traces, f"{len(traces - matched)} of {len(traces)} exemplar trace IDs on no access line: {sorted(traces - matched)[:5]}"
print(f"{len(traces)} exemplar trace IDs, {len(matched)} found as traceId on access lines")
PYEOF
then
    ok "exemplars' trace_id values are traceId of access lines ($(cat "$TMP/exemplarcheck"))"
else
    bad "exemplars' trace_id values are traceId of access lines" "$TMP/exemplarcheck"
fi
if [ -n "${E2E_LOG_COPY:-}" ]; then cp "$TMP/service.log" "$E2E_LOG_COPY"; fi

# ------------------------------------------------------------ 6. series bound
# A fresh instance of the same binary, flooded with random caller-fed label
# values, paths and methods: its series on /metrics must stay within the
# bound of deploy/tools/capacity.py (.ci/series-bound.sh).
bash "$ROOT/.ci/series-bound.sh" "$BIN" >"$TMP/series" 2>&1
sb_rc=$?
while IFS= read -r line; do
    case "$line" in
        "ok - "*) ok "${line#ok - }" ;;
        "FAIL - "*) bad "${line#FAIL - }" ;;
        "series-bound: "*) ;;
        *) echo "$line" ;;
    esac
done <"$TMP/series"
if [ "$sb_rc" -ne 0 ] && ! grep -q '^FAIL' "$TMP/series"; then bad ".ci/series-bound.sh ran" "$TMP/series"; fi

finish
