#!/usr/bin/env python3
"""Generates the four provisioned Grafana dashboards of the monitoring guide
into deploy/grafana/dashboards/*.json (Application Overview, Business Metrics,
Infrastructure, Logs Analysis).

    python3 deploy/grafana/generate.py          # rewrite the JSON files
    python3 deploy/grafana/generate.py --check  # fail if one is stale

Every Prometheus query filters on the dashboard's `service` and `env`
variables. The metric names are the crate's (src/metrics/names.rs), the SLO
recording rules (deploy/prometheus/rules/glimpse-slo.yml) or a named
exporter's (node-exporter, cAdvisor, redis-exporter, Prometheus' own `up`);
.ci/ops-check.sh and tests/ops_assets.rs check that, and .ci/e2e.sh runs every
query on the crate's metrics against a real Prometheus scraping the example
service.
"""
import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parent / "dashboards"

PROM = {"type": "prometheus", "uid": "prometheus"}
ES = {"type": "elasticsearch", "uid": "elasticsearch"}
SEL = 'service=~"$service",env=~"$env"'
RI = "$__rate_interval"
HTTP = "http_server_request_duration_seconds"
CLIENT = "http_client_request_duration_seconds"
# Histograms whose buckets carry exemplars (trace_id, span_id): their latency
# panels show them as points linked to the trace in Jaeger (the Prometheus
# datasource's exemplarTraceIdDestinations).
EXEMPLAR_METRICS = (HTTP, "db_query_duration_seconds", "websocket_message_latency_seconds",
                    "http_client_request_duration_seconds")


def var(name, query, label):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": PROM,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-var", "qryType": 1},
        "refresh": 2,
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }


class Dash:
    def __init__(self, uid, title, tags, service_metric, description):
        self.uid, self.title, self.tags = uid, title, tags
        self.description = description
        self.panels = []
        self.y = 0
        self.x = 0
        self.row_h = 0
        self.next_id = 1
        self.templating = [
            var("service", f"label_values({service_metric}, service)", "Service"),
            var("env", f'label_values({service_metric}{{service=~"$service"}}, env)', "Environment"),
        ]

    def _place(self, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title):
        if self.x:
            self.y += self.row_h
            self.x, self.row_h = 0, 0
        self.panels.append({
            "id": self._id(), "type": "row", "title": title, "collapsed": False,
            "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}, "panels": [],
        })
        self.y += 1

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def prom(self, title, targets, unit="short", kind="timeseries", w=12, h=8,
             description="", stack=False, fmt=None, extra=None):
        """targets: list of (expr, legend)."""
        panel = {
            "id": self._id(),
            "type": kind,
            "title": title,
            "description": description,
            "datasource": PROM,
            "gridPos": self._place(w, h),
            "targets": [],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
        }
        if kind == "timeseries":
            panel["fieldConfig"]["defaults"]["custom"] = {
                "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            }
            panel["options"] = {"legend": {"displayMode": "table", "placement": "bottom",
                                           "calcs": ["mean", "max", "lastNotNull"]},
                                "tooltip": {"mode": "multi", "sort": "desc"}}
        elif kind == "stat":
            panel["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                                "colorMode": "value", "graphMode": "area", "textMode": "auto"}
        elif kind == "piechart":
            panel["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                                "pieType": "donut", "legend": {"displayMode": "table", "placement": "right",
                                                               "values": ["value", "percent"]}}
        elif kind == "heatmap":
            panel["options"] = {"calculate": False, "yAxis": {"unit": "s"},
                                "cellGap": 1, "color": {"mode": "scheme", "scheme": "Oranges"}}
        elif kind == "table":
            panel["options"] = {"showHeader": True}
        for i, (expr, legend) in enumerate(targets):
            t = {"refId": chr(ord("A") + i), "datasource": PROM, "expr": expr,
                 "legendFormat": legend, "range": kind != "table", "instant": kind == "table"}
            if fmt:
                t["format"] = fmt
            if "histogram_quantile" in expr and any(f"{m}_bucket" in expr for m in EXEMPLAR_METRICS):
                t["exemplar"] = True
            panel["targets"].append(t)
        if extra:
            panel.update(extra)
        self.panels.append(panel)

    def es(self, title, query, kind, w=12, h=8, bucket_aggs=None, metrics=None, description=""):
        panel = {
            "id": self._id(),
            "type": kind,
            "title": title,
            "description": description,
            "datasource": ES,
            "gridPos": self._place(w, h),
            "targets": [{
                "refId": "A",
                "datasource": ES,
                "query": query,
                "queryType": "lucene",
                "alias": "",
                "timeField": "@timestamp",
                "metrics": metrics or [{"id": "1", "type": "count"}],
                "bucketAggs": bucket_aggs or [],
            }],
            "fieldConfig": {"defaults": {}, "overrides": []},
            "options": {},
        }
        if kind == "logs":
            panel["options"] = {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending",
                                "enableLogDetails": True, "dedupStrategy": "none"}
        self.panels.append(panel)

    def json(self):
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["glimpse"] + self.tags,
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": 39,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-6h", "to": "now"},
            "timepicker": {},
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts", "type": "dashboard",
            }]},
            "links": [{"title": "Glimpse", "type": "dashboards", "tags": ["glimpse"],
                       "asDropdown": True, "includeVars": True, "keepTime": True}],
            "templating": {"list": self.templating},
            "panels": self.panels,
        }


def quantile(q, metric, by, sel=SEL):
    inner = f"sum by ({by}) (rate({metric}_bucket{{{sel}}}[{RI}]))"
    return f"histogram_quantile({q}, {inner})"


# ---------------------------------------------------------------- overview
def overview():
    d = Dash("glimpse-overview", "Glimpse / Application Overview", ["overview"],
             f"{HTTP}_count",
             "Request rate and latency, error rate trends, active users, system health and SLOs.")
    d.row("Traffic and latency")
    d.prom("Request rate by route", [(f"sum by (route) (rate({HTTP}_count{{{SEL}}}[{RI}]))", "{{route}}")],
           unit="reqps", stack=True)
    d.prom("Response time percentiles", [
        (quantile(0.5, HTTP, "le"), "p50"),
        (quantile(0.95, HTTP, "le"), "p95"),
        (quantile(0.99, HTTP, "le"), "p99"),
    ], unit="s", description="KPI: p50 < 200ms, p95 < 500ms (alert: p95 > 1s for 5m).")
    d.prom("p95 response time by route", [(quantile(0.95, HTTP, "le, route"), "{{route}}")], unit="s")
    d.prom("Requests in flight", [(f"sum by (route) (http_server_active_requests{{{SEL}}})", "{{route}}")])
    d.row("Errors")
    d.prom("Error rate (5xx share)", [(
        f'sum(rate({HTTP}_count{{{SEL},status=~"5.."}}[{RI}])) / sum(rate({HTTP}_count{{{SEL}}}[{RI}]))',
        "5xx share")], unit="percentunit",
        description="KPI: < 1%. Critical alert HighErrorRate above 5% for 5 minutes.")
    d.prom("Status code distribution", [(f"sum by (status) (rate({HTTP}_count{{{SEL}}}[{RI}]))", "{{status}}")],
           unit="reqps", stack=True)
    d.prom("5xx by route", [(f'sum by (route, status) (rate({HTTP}_count{{{SEL},status=~"5.."}}[{RI}]))',
                            "{{route}} {{status}}")], unit="reqps")
    d.prom("Error log lines", [(f'sum by (level) (rate(log_events_total{{{SEL},level=~"ERROR|WARN"}}[{RI}]))',
                               "{{level}}")], unit="cps")
    d.prom("Handler panics", [(f"sum by (route) (increase(http_server_panics_total{{{SEL}}}[{RI}]))",
                               "{{route}}")],
           description="Panics answered with a 500 (warning alert HandlerPanics on any). "
                       "Kibana: panic.message:* for the message and location.")
    d.row("Users and WebSocket")
    d.prom("Active users (open chat connections)",
           [(f"sum by (channel) (websocket_connections_active{{{SEL}}})", "{{channel}}")], w=8,
           description="Users connected over WebSocket right now.")
    d.prom("WebSocket messages", [(f"sum by (direction) (rate(websocket_messages_total{{{SEL}}}[{RI}]))",
                                   "{{direction}}")], unit="cps", w=8)
    d.prom("WebSocket message latency p95",
           [(quantile(0.95, "websocket_message_latency_seconds", "le, channel"), "{{channel}}")], unit="s", w=8,
           description="KPI: < 100ms.")
    d.prom("WebSocket connection duration p50 / p95", [
        (quantile(0.5, "websocket_connection_duration_seconds", "le"), "p50"),
        (quantile(0.95, "websocket_connection_duration_seconds", "le"), "p95"),
    ], unit="s", w=12)
    d.prom("WebSocket closes by class", [(f"sum by (class) (rate(websocket_closes_total{{{SEL}}}[{RI}]))",
                                          "{{class}}")], unit="cps", w=12)
    d.row("System health and SLOs")
    d.prom("Targets up", [(f'up{{job="glimpse",{SEL}}}', "{{instance}}")], kind="stat", w=6,
           extra={"fieldConfig": {"defaults": {"unit": "short", "mappings": [
               {"type": "value", "options": {"0": {"text": "DOWN", "color": "red"},
                                             "1": {"text": "UP", "color": "green"}}}]}, "overrides": []}})
    d.prom("Build", [(f"glimpse_build_info{{{SEL}}}", "{{version}} ({{rustc}})")], kind="table", w=6,
           fmt="table")
    d.prom("Process CPU", [(f"sum by (instance) (rate(process_cpu_seconds_total{{{SEL}}}[{RI}]))",
                            "{{instance}}")], unit="percentunit", w=6)
    d.prom("Process memory (RSS)", [(f"sum by (instance) (process_resident_memory_bytes{{{SEL}}})",
                                     "{{instance}}")], unit="bytes", w=6)
    d.prom("SLO: bad-event ratio over 1h", [(f"slo:sli_error:ratio_rate1h{{{SEL}}}", "{{slo}}")],
           unit="percentunit", w=12,
           description="From the SLO recording rules: share of requests that were errors "
                       "(availability, error_rate) or slower than the KPI (latency_p50, latency_p95, "
                       "websocket_latency). Budgets: 0.1%, 1%, 50%, 5%, 1%.")
    d.prom("Availability (non-5xx) over 1d", [(f'1 - slo:sli_error:ratio_rate1d{{{SEL},slo="availability"}}',
                                               "{{service}}")], unit="percentunit", kind="stat", w=6,
           description="KPI: 99.9%.")
    d.prom("Requests faster than 500ms over 1d",
           [(f'1 - slo:sli_error:ratio_rate1d{{{SEL},slo="latency_p95"}}', "{{service}}")],
           unit="percentunit", kind="stat", w=6, description="KPI: p95 < 500ms means at least 95%.")
    d.row("Security")
    d.prom("Authentication failures by reason",
           [(f"sum by (reason) (rate(glimpse_auth_failures_total{{{SEL}}}[{RI}]))", "{{reason}}")],
           unit="cps", w=8)
    d.prom("API key requests by key", [(f"sum by (key_id) (rate(glimpse_api_key_requests_total{{{SEL}}}[{RI}]))",
                                        "{{key_id}}")], unit="reqps", w=8)
    d.prom("Admin actions", [(f"sum by (action) (rate(glimpse_admin_actions_total{{{SEL}}}[{RI}]))",
                              "{{action}}")], unit="cps", w=8)
    # Outbound calls through glimpse_obs::client: the guide's "check external
    # service status" (runbook HighErrorRate).
    d.row("External calls")
    d.prom("External call rate by peer",
           [(f"sum by (server_address, method) (rate({CLIENT}_count{{{SEL}}}[{RI}]))",
             "{{server_address}} {{method}}")], unit="reqps", w=8,
           description="Outbound HTTP calls per second through glimpse_obs::client, by peer host and method.")
    d.prom("External call errors by peer",
           # `or … * 0`: a peer without failures shows 0, not "no data".
           [(f'(sum by (server_address) (rate({CLIENT}_count{{{SEL},status=~"5..|timeout|error"}}[{RI}]))'
             f" or sum by (server_address) (rate({CLIENT}_count{{{SEL}}}[{RI}])) * 0)"
             f" / sum by (server_address) (rate({CLIENT}_count{{{SEL}}}[{RI}]))", "{{server_address}}")],
           unit="percentunit", w=8,
           description="Share of outbound calls answered 5xx or without an answer (timeout, error), by peer host.")
    d.prom("External call p95 by peer", [(quantile(0.95, CLIENT, "le, server_address"), "{{server_address}}")],
           unit="s", w=8, description="95th percentile duration of outbound calls, by peer host.")
    return d


# ---------------------------------------------------------------- business
def business():
    d = Dash("glimpse-business", "Glimpse / Business Metrics", ["business"],
             "glimpse_build_info",
             "User activity, revenue, feature usage and conversion.")
    d.row("User activity")
    d.prom("Registrations", [(f"sum by (method) (rate(glimpse_user_registrations_total{{{SEL}}}[{RI}]))",
                              "{{method}}")], unit="cps", w=8)
    d.prom("Matches created", [(f"sum(rate(glimpse_matches_created_total{{{SEL}}}[{RI}]))", "matches")],
           unit="cps", w=8)
    d.prom("Messages sent", [(f"sum by (kind) (rate(glimpse_messages_sent_total{{{SEL}}}[{RI}]))",
                              "{{kind}}")], unit="cps", w=8)
    d.prom("Registrations in range", [(f"sum(increase(glimpse_user_registrations_total{{{SEL}}}[$__range]))",
                                       "registrations")], kind="stat", w=6)
    d.prom("Matches in range", [(f"sum(increase(glimpse_matches_created_total{{{SEL}}}[$__range]))",
                                 "matches")], kind="stat", w=6)
    d.prom("Messages in range", [(f"sum(increase(glimpse_messages_sent_total{{{SEL}}}[$__range]))",
                                  "messages")], kind="stat", w=6)
    d.prom("Chat connections", [(f"sum(websocket_connections_active{{{SEL}}})", "open")], kind="stat", w=6)
    d.row("Revenue")
    d.prom("Payments by status", [(f"sum by (status) (rate(glimpse_payments_total{{{SEL}}}[{RI}]))",
                                   "{{status}}")], unit="cps", stack=True)
    d.prom("Payment failure rate", [(
        f'sum(rate(glimpse_payments_total{{{SEL},status="failed"}}[{RI}])) '
        f"/ sum(rate(glimpse_payments_total{{{SEL}}}[{RI}]))", "failed share")],
        unit="percentunit", description="Critical alert PaymentFailuresHigh above 10%.")
    d.prom("Revenue rate by currency (major units per second)",
           [(f"sum by (currency) (rate(glimpse_payment_amount_total{{{SEL}}}[{RI}]))", "{{currency}}")])
    d.prom("Revenue in range by currency",
           [(f"sum by (currency) (increase(glimpse_payment_amount_total{{{SEL}}}[$__range]))", "{{currency}}")],
           kind="stat")
    d.prom("Payments by provider", [(f"sum by (provider, status) (rate(glimpse_payments_total{{{SEL}}}[{RI}]))",
                                     "{{provider}} {{status}}")], unit="cps")
    d.prom("Payments in range", [(f"sum by (status) (increase(glimpse_payments_total{{{SEL}}}[$__range]))",
                                  "{{status}}")], kind="piechart")
    d.row("Feature usage and conversion")
    d.prom("Feature usage", [(f"sum by (feature) (rate(glimpse_feature_usage_total{{{SEL}}}[{RI}]))",
                              "{{feature}}")], unit="cps")
    d.prom("Top features in range",
           [(f"topk(10, sum by (feature) (increase(glimpse_feature_usage_total{{{SEL}}}[$__range])))",
             "{{feature}}")], kind="piechart")
    d.prom("Conversion funnel steps in range",
           [(f"sum by (funnel, step) (increase(glimpse_conversions_total{{{SEL}}}[$__range]))",
             "{{funnel}} / {{step}}")], kind="table", fmt="table")
    d.prom("Conversions", [(f"sum by (funnel, step) (rate(glimpse_conversions_total{{{SEL}}}[{RI}]))",
                            "{{funnel}} / {{step}}")], unit="cps")
    return d


# ---------------------------------------------------------------- infrastructure
def infrastructure():
    d = Dash("glimpse-infrastructure", "Glimpse / Infrastructure", ["infrastructure"],
             "process_resident_memory_bytes",
             "Resource utilization, container health, database performance, cache hit rates.")
    d.row("Service processes")
    d.prom("CPU", [(f"sum by (instance) (rate(process_cpu_seconds_total{{{SEL}}}[{RI}]))", "{{instance}}")],
           unit="percentunit", w=8)
    d.prom("Resident memory", [(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")], unit="bytes", w=8)
    d.prom("Virtual memory", [(f"process_virtual_memory_bytes{{{SEL}}}", "{{instance}}")], unit="bytes", w=8)
    d.prom("Open file descriptors", [
        (f"process_open_fds{{{SEL}}}", "open {{instance}}"),
        (f"process_max_fds{{{SEL}}}", "max {{instance}}"),
    ], w=8)
    d.prom("Threads", [(f"process_threads{{{SEL}}}", "{{instance}}")], w=8)
    d.prom("Uptime", [(f"time() - process_start_time_seconds{{{SEL}}}", "{{instance}}")], unit="s",
           kind="stat", w=8)
    d.row("Runtime")
    d.prom("Busy ratio per worker", [
        (f"max by (instance) (tokio_busy_ratio{{{SEL}}})", "{{instance}} all workers"),
        (f"max by (instance, worker) (tokio_worker_busy_ratio{{{SEL}}})", "{{instance}} worker {{worker}}"),
    ], unit="percentunit", w=8,
        description="Share of time the tokio workers ran tasks (sampled every 5 s). Warning alert "
                    "RuntimeSaturated above 90% for 5m; one worker pinned at 100% is a task that does not yield.")
    d.prom("Global queue depth", [(f"sum by (instance) (tokio_global_queue_depth{{{SEL}}})", "{{instance}}")],
           w=8, description="Tasks waiting for a worker in the runtime's global queue.")
    d.prom("Alive tasks", [(f"sum by (instance) (tokio_alive_tasks{{{SEL}}})", "{{instance}}")], w=8,
           description="Tasks spawned and not yet finished; steady growth means leaked or stuck tasks.")
    d.prom("Readiness checks", [(f"min by (check) (glimpse_health_check_status{{{SEL}}})", "{{check}}")],
           kind="stat", w=12,
           description="Last result of each /health/ready check: 1 up, 0 down (glimpse_obs::health).")
    d.prom("Readiness check p95", [(quantile(0.95, "glimpse_health_check_duration_seconds", "le, check"),
                                    "{{check}}")], unit="s", w=12)
    d.row("Database")
    d.prom("Pool connections by state", [(f"sum by (pool, state) (db_pool_connections{{{SEL}}})",
                                          "{{pool}} {{state}}")], stack=True, w=8)
    d.prom("Pool usage", [(
        f'sum by (pool) (db_pool_connections{{{SEL},state="in_use"}}) '
        f"/ max by (pool) (db_pool_connections_max{{{SEL}}})", "{{pool}}")], unit="percentunit", w=8,
        description="Critical alert DatabaseConnectionsExhausted above 80%.")
    d.prom("Query rate by operation", [(f"sum by (operation, outcome) (rate(db_query_duration_seconds_count{{{SEL}}}[{RI}]))",
                                        "{{operation}} {{outcome}}")], unit="ops", w=8)
    d.prom("Query p95 by operation", [(quantile(0.95, "db_query_duration_seconds", "le, operation"),
                                       "{{operation}}")], unit="s",
           description="Warning alert SlowQueries above 500ms for 5m.")
    d.prom("Slow queries (> GLIMPSE_SLOW_QUERY_MS)",
           [(f"sum by (operation) (rate(db_slow_queries_total{{{SEL}}}[{RI}]))", "{{operation}}")], unit="ops")
    d.row("Cache")
    d.prom("Cache hit rate", [(
        f'sum by (cache) (rate(cache_requests_total{{{SEL},result="hit"}}[{RI}])) '
        f"/ sum by (cache) (rate(cache_requests_total{{{SEL}}}[{RI}]))", "{{cache}}")], unit="percentunit")
    d.prom("Cache look-ups", [(f"sum by (cache, result) (rate(cache_requests_total{{{SEL}}}[{RI}]))",
                               "{{cache}} {{result}}")], unit="ops")
    d.prom("Redis memory used", [
        ("redis_memory_used_bytes / redis_memory_max_bytes", "{{instance}}"),
    ], unit="percentunit", w=8, description="Warning alert RedisMemoryHigh above 80%.")
    d.prom("Redis hit rate", [(
        "rate(redis_keyspace_hits_total[$__rate_interval]) / "
        "(rate(redis_keyspace_hits_total[$__rate_interval]) + rate(redis_keyspace_misses_total[$__rate_interval]))",
        "{{instance}}")], unit="percentunit", w=8)
    d.prom("Redis clients", [("redis_connected_clients", "{{instance}}")], w=8)
    d.row("Hosts (node-exporter)")
    d.prom("CPU busy", [('1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[$__rate_interval]))',
                         "{{instance}}")], unit="percentunit", w=8)
    d.prom("Memory used", [("1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes", "{{instance}}")],
           unit="percentunit", w=8, description="Warning alert MemoryUsageHigh above 85% for 5m.")
    d.prom("Disk free", [(
        'node_filesystem_avail_bytes{fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs|fuse.lxcfs"} '
        '/ node_filesystem_size_bytes{fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs|fuse.lxcfs"}',
        "{{instance}} {{mountpoint}}")], unit="percentunit", w=8,
        description="Critical alert DiskSpaceLow under 15%.")
    d.prom("Disk I/O", [
        ("sum by (instance) (rate(node_disk_read_bytes_total[$__rate_interval]))", "read {{instance}}"),
        ("sum by (instance) (rate(node_disk_written_bytes_total[$__rate_interval]))", "write {{instance}}"),
    ], unit="Bps")
    d.prom("Network traffic", [
        ('sum by (instance) (rate(node_network_receive_bytes_total{device!="lo"}[$__rate_interval]))',
         "in {{instance}}"),
        ('sum by (instance) (rate(node_network_transmit_bytes_total{device!="lo"}[$__rate_interval]))',
         "out {{instance}}"),
    ], unit="Bps")
    d.row("Containers (cAdvisor)")
    d.prom("Container CPU", [('sum by (name) (rate(container_cpu_usage_seconds_total{name!=""}[$__rate_interval]))',
                              "{{name}}")], unit="percentunit", w=8)
    d.prom("Container memory (working set)", [('sum by (name) (container_memory_working_set_bytes{name!=""})',
                                               "{{name}}")], unit="bytes", w=8)
    d.prom("Container network in", [(
        'sum by (name) (rate(container_network_receive_bytes_total{name!=""}[$__rate_interval]))', "{{name}}")],
        unit="Bps", w=8)
    d.prom("Scrape targets up", [("up", "{{job}} {{instance}}")], kind="table", w=12, fmt="table")
    d.prom("Telemetry dropped / label overflow", [
        (f"sum by (signal) (rate(glimpse_obs_dropped_total{{{SEL}}}[{RI}]))", "dropped {{signal}}"),
        (f"sum by (metric) (rate(glimpse_obs_label_overflow_total{{{SEL}}}[{RI}]))", "overflow {{metric}}"),
    ], unit="cps", w=12,
        description="Self-monitoring of glimpse_obs: log lines/spans dropped under overload, label values folded into `other`.")
    return d


# ---------------------------------------------------------------- logs
def logs():
    d = Dash("glimpse-logs", "Glimpse / Logs Analysis", ["logs"],
             "log_events_total",
             "Error frequency, top error messages, service log distribution, response time analysis.")
    d.row("Error frequency")
    d.prom("Error and warning lines per second",
           [(f'sum by (level) (rate(log_events_total{{{SEL},level=~"ERROR|WARN"}}[{RI}]))', "{{level}}")],
           unit="cps", w=16)
    d.prom("Error lines in range", [(f'sum(increase(log_events_total{{{SEL},level="ERROR"}}[$__range]))',
                                     "errors")], kind="stat", w=8)
    d.prom("Errors per service", [(f'sum by (service) (rate(log_events_total{{{SEL},level="ERROR"}}[{RI}]))',
                                   "{{service}}")], unit="cps")
    d.prom("Error share of all lines", [(
        f'sum(rate(log_events_total{{{SEL},level="ERROR"}}[{RI}])) / sum(rate(log_events_total{{{SEL}}}[{RI}]))',
        "ERROR share")], unit="percentunit")
    d.row("Top error messages (Elasticsearch)")
    d.es("Top error messages", 'log_level:ERROR AND service:${service:lucene}', "table", w=12, h=10,
         bucket_aggs=[{"id": "2", "type": "terms", "field": "message.keyword",
                       "settings": {"size": "10", "order": "desc", "orderBy": "_count", "min_doc_count": "1"}}],
         description="Most frequent `message` of ERROR lines (Logstash derives log_level from level).")
    d.es("Recent errors", 'log_level:ERROR AND service:${service:lucene}', "logs", w=12, h=10,
         metrics=[{"id": "1", "type": "logs"}])
    d.row("Service log distribution")
    d.prom("Log lines by service", [(f"sum by (service) (increase(log_events_total{{{SEL}}}[$__range]))",
                                     "{{service}}")], kind="piechart")
    d.prom("Log lines by level", [(f"sum by (level) (rate(log_events_total{{{SEL}}}[{RI}]))", "{{level}}")],
           unit="cps", stack=True)
    d.es("Log lines by log_type", 'service:${service:lucene}', "piechart",
         bucket_aggs=[{"id": "2", "type": "terms", "field": "log_type",
                       "settings": {"size": "10", "order": "desc", "orderBy": "_count", "min_doc_count": "1"}}],
         description="Retention classes: payment 7y, user_activity 1y, system 90d, debug 7d.")
    d.prom("Log lines dropped under overload",
           [(f'sum(rate(glimpse_obs_dropped_total{{{SEL},signal="logs"}}[{RI}]))', "dropped")], unit="cps")
    d.row("Response time analysis")
    d.prom("Response time distribution", [(
        f"sum by (le) (increase({HTTP}_bucket{{{SEL}}}[{RI}]))", "{{le}}")],
        kind="heatmap", fmt="heatmap", w=12)
    d.prom("Response time p50 / p95 / p99", [
        (quantile(0.5, HTTP, "le"), "p50"),
        (quantile(0.95, HTTP, "le"), "p95"),
        (quantile(0.99, HTTP, "le"), "p99"),
    ], unit="s", w=12)
    d.prom("Mean response time by route", [(
        f"sum by (route) (rate({HTTP}_sum{{{SEL}}}[{RI}])) / sum by (route) (rate({HTTP}_count{{{SEL}}}[{RI}]))",
        "{{route}}")], unit="s", w=12)
    d.es("Slow successful requests (response_time > 1000 ms)",
         'response_time:>1000 AND http_status:200 AND service:${service:lucene}', "logs", w=12,
         metrics=[{"id": "1", "type": "logs"}])
    return d


def main():
    files = {}
    for name, build in (("application-overview", overview), ("business-metrics", business),
                        ("infrastructure", infrastructure), ("logs-analysis", logs)):
        files[OUT / f"{name}.json"] = json.dumps(build().json(), indent=2) + "\n"
    if "--check" in sys.argv:
        stale = [p for p, t in files.items() if (p.read_text() if p.exists() else "") != t]
        for p in stale:
            print(f"{p} is stale: run python3 deploy/grafana/generate.py", file=sys.stderr)
        sys.exit(1 if stale else 0)
    OUT.mkdir(exist_ok=True)
    for p, t in files.items():
        p.write_text(t)


if __name__ == "__main__":
    main()
