#!/usr/bin/env python3
"""Capacity model of Glimpse observability (docs/capacity.md).

1. Series bound: the maximum number of series one service instance can
   expose on /metrics, exact per metric, from the metric catalogue
   (src/metrics/names.rs), the crate's cardinality caps (`label_cap`,
   default read from src/config.rs) and bucket lists (src/metrics/mod.rs),
   and a service profile (deploy/tools/capacity/*.json) that declares what
   only the application knows: its route templates with the statuses each
   can answer, and how many distinct values it passes to each caller-fed
   label (null: unbounded, e.g. taken from requests).
2. Load model: for a stated load (deploy/tools/capacity/load.json: services,
   replicas, requests/s, log lines per request and their size, spans per
   request, the retention rules of deploy/logging and deploy/production)
   the storage per day and at full retention for logs, metrics and traces,
   and what each backend must be sized at.

  python3 deploy/tools/capacity.py series [--profile P.json] [--label-cap N] [--json]
  python3 deploy/tools/capacity.py load [--load L.json]
  python3 deploy/tools/capacity.py report      # the generated part of docs/capacity.md
  python3 deploy/tools/capacity.py --self-check  # run by .ci/ops-check.sh

Series of a histogram: one per bucket, +Inf, _sum and _count. Every handle
the crate registers is rendered (at 0 until used), so a label value the
crate admitted yields all the series of its handle set at once (a payment
provider/currency pair registers both statuses, a WebSocket channel its
eight close classes).
"""
import argparse
import json
import math
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROFILES = DEPLOY / "tools/capacity"
DOC = ROOT / "docs/capacity.md"
BEGIN = "<!-- BEGIN capacity.py report (generated: python3 deploy/tools/capacity.py report) -->"
END = "<!-- END capacity.py report -->"


# ------------------------------------------------------------------ the crate
def crate_facts():
    """Constants of the crate the bound depends on, read from its source."""
    names_rs = (ROOT / "src/metrics/names.rs").read_text()
    consts = dict(re.findall(r'pub const (\w+): &str = "([^"]+)";', names_rs))

    def slice_of(name):
        m = re.search(r"pub const " + name + r": &\[&str\] = &\[(.*?)\];", names_rs, re.S)
        return [i.strip('"') if i.startswith('"') else consts[i] for i in re.findall(r'"[^"]*"|\w+', m.group(1))]

    mod_rs = (ROOT / "src/metrics/mod.rs").read_text()

    def buckets(name):
        m = re.search(r"pub const " + name + r": &\[f64\] = &\[(.*?)\];", mod_rs, re.S)
        return [float(x) for x in re.findall(r"[\d.]+", m.group(1))]

    config_rs = (ROOT / "src/config.rs").read_text()
    cap = int(re.search(r"DEFAULT_LABEL_CAP: usize = (\d+);", config_rs).group(1))
    methods = re.search(r"METHODS: \[&str; (\d+)\]", (ROOT / "src/http/route_metrics.rs").read_text())
    ws_rs = (ROOT / "src/metrics/ws.rs").read_text()
    closes = re.search(r"const ALL: \[CloseClass; (\d+)\]", ws_rs)
    return {
        "all": slice_of("ALL"),
        "process": slice_of("PROCESS"),
        "label_cap": cap,
        "http_buckets": buckets("HTTP_BUCKETS"),
        "latency_buckets": buckets("LATENCY_BUCKETS"),
        "connection_buckets": buckets("CONNECTION_BUCKETS"),
        "body_buckets": buckets("BODY_SIZE_BUCKETS"),
        "methods": int(methods.group(1)),
        "close_classes": int(closes.group(1)),
        "log_levels": 5,        # LevelCounters: TRACE DEBUG INFO WARN ERROR (src/logging/layer.rs)
        "dropped_signals": 4,   # glimpse_obs_dropped_total{signal="logs"|"spans"|"metrics_otlp"|"logs_otlp"}
    }


# Caller-fed labels: the profile's `domains` key, the metric whose guard caps
# it (its name in glimpse_obs_label_overflow_total{metric}), and what it feeds.
DOMAINS = {
    "registration_method": "glimpse_user_registrations_total",
    "message_kind": "glimpse_messages_sent_total",
    "payment_provider": "glimpse_payments_total",
    "payment_currency": "glimpse_payments_total",
    "feature": "glimpse_feature_usage_total",
    "conversion_pair": "glimpse_conversions_total",
    "auth_reason": "glimpse_auth_failures_total",
    "api_key_id": "glimpse_api_key_requests_total",
    "admin_action": "glimpse_admin_actions_total",
    "cache": "cache_requests_total",
    "ws_channel": "websocket_connections_active",
    "db_operation": "db_query_duration_seconds",
    "db_pool": "db_pool_connections",
}


def admitted(n, cap):
    """Label values a guard lets through for a domain of n values (None:
    unbounded): up to `cap` values, plus `other` once the domain exceeds it."""
    if n is None:
        return cap + 1
    return min(n, cap) + (1 if n > cap else 0)


def series_bound(profile, facts, label_cap=None):
    """[(metric, type, label sets, series per set, series, formula)] for one instance."""
    cap = label_cap or profile.get("label_cap") or facts["label_cap"]
    dom = profile["domains"]
    missing = set(DOMAINS) - set(dom)
    if missing:
        raise SystemExit(f"profile {profile['name']}: domains missing {sorted(missing)}")
    v = {k: admitted(dom[k], cap) for k in DOMAINS}
    h_http = len(facts["http_buckets"]) + 3
    h_lat = len(facts["latency_buckets"]) + 3
    h_conn = len(facts["connection_buckets"]) + 3
    m = facts["methods"]
    routes = profile["routes"]
    status_pairs = sum(len(r["statuses"]) for r in routes) + len(profile["unmatched_statuses"])
    route_labels = len(routes) + 1
    uses = profile.get("uses", {})
    used = lambda k: uses.get(k, True)  # noqa: E731
    ch, op, pool = v["ws_channel"], v["db_operation"], v["db_pool"]
    cur, prov = v["payment_currency"], v["payment_provider"]
    # Outbound calls (glimpse_obs::client): optional "client": {"peers": n or
    # null, "methods": k, "statuses": s} in a profile; none: no outbound calls.
    cl = profile.get("client")
    if cl:
        peers = admitted(cl["peers"], cap)
        client_sets = peers * cl["methods"] * (cl["statuses"] + 3)
        client_why = (f"{peers} peer hosts x {cl['methods']} methods x "
                      f"({cl['statuses']} status codes + timeout/error/cancelled)")
    else:
        client_sets, client_why = 0, "no outbound calls in this profile"
    overflowing = sorted({DOMAINS[k] for k in DOMAINS if dom[k] is None or dom[k] > cap})
    rows = [
        ("http_server_request_duration_seconds", "histogram", m * status_pairs, h_http,
         f"{m} methods x {status_pairs} (route, status) pairs"),
        ("http_server_active_requests", "gauge", m * route_labels, 1, f"{m} methods x {route_labels} routes (incl. unmatched)"),
        ("http_client_request_duration_seconds", "histogram", client_sets, h_lat, client_why),
        ("http_server_panics_total", "counter", route_labels, 1, f"{route_labels} routes (incl. unmatched)"),
        ("http_server_request_body_size_bytes", "histogram", m * route_labels if profile.get("body_sizes") else 0,
         len(facts["body_buckets"]) + 3, "methods x routes, when ObsLayer::body_sizes(true) (profile body_sizes)"),
        ("http_server_response_body_size_bytes", "histogram", m * route_labels if profile.get("body_sizes") else 0,
         len(facts["body_buckets"]) + 3, "methods x routes, when ObsLayer::body_sizes(true) (profile body_sizes)"),
        ("websocket_connections_active", "gauge", ch if used("ws") else 0, 1, "channels"),
        ("websocket_messages_total", "counter", 2 * ch if used("ws") else 0, 1, "channels x 2 directions"),
        ("websocket_connection_duration_seconds", "histogram", ch if used("ws") else 0, h_conn, "channels"),
        ("websocket_message_latency_seconds", "histogram", ch if used("ws") else 0, h_lat, "channels"),
        ("websocket_closes_total", "counter", facts["close_classes"] * ch if used("ws") else 0, 1,
         f"channels x {facts['close_classes']} close classes"),
        ("db_query_duration_seconds", "histogram", 3 * op if used("db") else 0, h_lat, "operations x 3 outcomes"),
        ("db_slow_queries_total", "counter", op if used("db") else 0, 1, "operations"),
        ("db_pool_connections", "gauge", 2 * pool if used("db_pool") else 0, 1, "pools x 2 states"),
        ("db_pool_connections_max", "gauge", pool if used("db_pool") else 0, 1, "pools"),
        ("glimpse_user_registrations_total", "counter", v["registration_method"] if used("registrations") else 0, 1, "methods"),
        ("glimpse_matches_created_total", "counter", 1 if used("matches") else 0, 1, "no label"),
        ("glimpse_messages_sent_total", "counter", v["message_kind"] if used("messages") else 0, 1, "kinds"),
        ("glimpse_payments_total", "counter", 2 * prov * cur if used("payments") else 0, 1,
         "2 statuses x providers x currencies (capped separately)"),
        ("glimpse_payment_amount_total", "counter", cur if used("payments") else 0, 1, "currencies"),
        ("glimpse_payment_amount_rejected_total", "counter", 1 if used("payments") else 0, 1, "no label"),
        ("glimpse_feature_usage_total", "counter", v["feature"] if used("features") else 0, 1, "features"),
        ("glimpse_conversions_total", "counter", v["conversion_pair"] if used("conversions") else 0, 1,
         "(funnel, step) pairs, capped together"),
        ("glimpse_auth_failures_total", "counter", v["auth_reason"] if used("auth_failures") else 0, 1, "reasons"),
        ("glimpse_api_key_requests_total", "counter", v["api_key_id"] if used("api_keys") else 0, 1, "key IDs"),
        ("glimpse_admin_actions_total", "counter", v["admin_action"] if used("admin_actions") else 0, 1, "actions"),
        ("cache_requests_total", "counter", 2 * v["cache"] if used("cache") else 0, 1, "caches x hit/miss"),
        ("log_events_total", "counter", facts["log_levels"], 1, "levels"),
        ("glimpse_obs_dropped_total", "counter", facts["dropped_signals"], 1, "signals logs/spans/metrics_otlp/logs_otlp"),
        ("glimpse_obs_label_overflow_total", "counter", len(overflowing), 1,
         "guarded metrics whose domain exceeds the cap: " + (", ".join(overflowing) or "none")),
        ("glimpse_build_info", "gauge", 1, 1, "one"),
    ]
    if profile.get("runtime_metrics", True):
        workers = profile.get("runtime_workers", 8)
        rows += [
            ("tokio_workers", "gauge", 1, 1, "one"),
            ("tokio_alive_tasks", "gauge", 1, 1, "one"),
            ("tokio_global_queue_depth", "gauge", 1, 1, "one"),
            ("tokio_busy_ratio", "gauge", 1, 1, "one"),
            ("tokio_worker_busy_ratio", "gauge", workers, 1, f"{workers} runtime workers (profile runtime_workers)"),
            ("tokio_worker_parks_total", "counter", 1, 1, "one"),
        ]
    checks = profile.get("health_checks", 1)
    rows += [
        ("glimpse_health_check_status", "gauge", checks, 1, f"{checks} readiness checks (profile health_checks)"),
        ("glimpse_health_check_duration_seconds", "histogram", checks, h_lat, "readiness checks"),
    ]
    if profile.get("process_metrics", True):
        rows += [(p, "counter" if p.endswith("_total") else "gauge", 1, 1, "metrics-process") for p in facts["process"]]
    return [(n, t, sets, per, sets * per, why) for n, t, sets, per, why in rows], cap


def load_profile(path):
    p = json.loads(pathlib.Path(path).read_text())
    p.setdefault("name", pathlib.Path(path).stem)
    return p


def series_table(profile, facts, label_cap=None):
    rows, cap = series_bound(profile, facts, label_cap)
    total = sum(r[4] for r in rows)
    out = [f"Series bound of one instance, profile `{profile['name']}`, label_cap {cap}: **{total:,}**", "",
           "| metric | type | label sets | series per set | series | label sets from |", "|---|---|---:|---:|---:|---|"]
    for n, t, sets, per, s, why in rows:
        out.append(f"| `{n}` | {t} | {sets:,} | {per} | {s:,} | {why} |")
    out.append(f"| **total** | | | | **{total:,}** | |")
    return "\n".join(out), total


# ------------------------------------------------------------------ load model
def sampling_rules():
    """threshold_ms and sampling_percentage of the production sampling file."""
    import yaml
    cfg = yaml.safe_load((DEPLOY / "production/08-otel-collector/config/sampling.yaml").read_text())
    ts = cfg["processors"]["tail_sampling"]
    out = {"decision_wait_s": float(str(ts["decision_wait"]).rstrip("s")), "num_traces": ts["num_traces"]}
    for p in ts["policies"]:
        if p["type"] == "latency":
            out["threshold_ms"] = p["latency"]["threshold_ms"]
        if p["type"] == "probabilistic":
            out["percentage"] = float(p["probabilistic"]["sampling_percentage"])
    return out


def retention():
    """Days in Elasticsearch (ILM delete) and in the archive (SLM expiry), by log_type, production."""
    es = DEPLOY / "logging/elasticsearch"
    days = lambda s: int(re.match(r"(\d+)d", s).group(1))  # noqa: E731
    out = {}
    for t in ("payment", "user_activity", "system", "debug"):
        ilm = json.loads((es / f"ilm/glimpse-production-{t}.json").read_text())["policy"]["phases"]
        slm = es / f"slm/glimpse-archive-{t}.json"
        out[t] = {"es_days": days(ilm["delete"]["min_age"]),
                  "warm_after_days": days(ilm["warm"]["min_age"]) if "warm" in ilm else None,
                  "archive_days": days(json.loads(slm.read_text())["retention"]["expire_after"]) if slm.exists() else 0}
    return out


def trace_deployment():
    """(days of traces: the index cleaner's argument, gateway replicas) from deploy/production."""
    import yaml
    docs = list(yaml.safe_load_all((DEPLOY / "production/07-jaeger/jaeger.yaml").read_text()))
    cron = next(d for d in docs if d["kind"] == "CronJob")
    days = int(cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][0])
    docs = list(yaml.safe_load_all((DEPLOY / "production/08-otel-collector/otel-collector.yaml").read_text()))
    gw = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "otel-gateway")
    return days, gw["spec"]["replicas"]


def mimir_retention_days():
    text = (DEPLOY / "production/01-mimir/config/mimir.yaml").read_text()
    return int(re.search(r"compactor_blocks_retention_period:\s*(\d+)d", text).group(1))


def gb(b):
    return b / 1e9


def tb(b):
    return b / 1e12


def load_model(load, facts):
    L = load
    inst = L["services"] * L["replicas"]
    rps = inst * L["rps_per_instance"]
    day = 86400
    out = {"instances": inst, "rps": rps}

    # Logs.
    lines_s = rps * (L["logs"]["access_lines_per_request"] * L["logs"]["access_sample"]
                     + L["logs"]["other_lines_per_request"])
    raw_day = lines_s * L["logs"]["avg_line_bytes"] * day
    ret = retention()
    es_factor = L["logs"]["es_bytes_per_raw_byte"]
    copies = 1 + L["logs"]["es_replicas"]
    logs = {}
    for t, share in L["logs"]["log_type_share"].items():
        primary_day = raw_day * share * es_factor
        logs[t] = {"raw_day": raw_day * share, "primary_day": primary_day,
                   "es_total": primary_day * copies * ret[t]["es_days"],
                   "es_hot": primary_day * copies * min(ret[t]["warm_after_days"] or ret[t]["es_days"], ret[t]["es_days"]),
                   "archive_total": primary_day * ret[t]["archive_days"], **ret[t]}
    out["logs"] = {"lines_s": lines_s, "raw_day": raw_day, "by_type": logs,
                   "es_total": sum(x["es_total"] for x in logs.values()),
                   "es_hot": sum(x["es_hot"] for x in logs.values()),
                   "archive_total": sum(x["archive_total"] for x in logs.values()),
                   "ingest_bytes_s": raw_day / day}

    # Metrics.
    prof = load_profile(PROFILES / L["metrics"]["profile"])
    rows, cap = series_bound(prof, facts)
    ceiling = sum(r[4] for r in rows)
    fill = L["metrics"]["expected_methods_per_route"] / facts["methods"]
    http = next(r[4] for r in rows if r[0] == "http_server_request_duration_seconds")
    expected = ceiling - http + http * fill
    scrape = L["metrics"]["scrape_interval_s"]
    rday = mimir_retention_days()
    met = {"profile": prof["name"], "label_cap": cap, "per_instance_ceiling": ceiling,
           "per_instance_expected": expected, "scrape_interval_s": scrape, "retention_days": rday}
    for k, per in (("ceiling", ceiling), ("expected", expected)):
        series = per * inst
        samples_s = series / scrape
        met[k] = {"series": series, "samples_s": samples_s,
                  "blocks_day": series * day / scrape * L["metrics"]["bytes_per_sample"],
                  "blocks_total": series * day / scrape * L["metrics"]["bytes_per_sample"] * rday,
                  "ingester_series": series * L["metrics"]["replication_factor"],
                  "prometheus_mem": series * L["metrics"]["prometheus_bytes_per_series"]}
    out["metrics"] = met

    # Traces.
    s = sampling_rules()
    spans_s = rps * L["traces"]["spans_per_request"]
    traces_s = rps / L["traces"]["requests_per_trace"]
    share_err = L["traces"]["error_share"]
    share_slow = L["traces"]["slow_share"]
    kept = min(1.0, share_err + share_slow + (1 - share_err - share_slow) * s["percentage"] / 100)
    kept_spans_s = spans_s * kept
    span_day = kept_spans_s * L["traces"]["es_bytes_per_span"] * day
    tr_days, gw = trace_deployment()
    per_gw_traces = traces_s / gw * s["decision_wait_s"]
    out["traces"] = {"spans_s": spans_s, "traces_s": traces_s, "kept_share": kept, "kept_spans_s": kept_spans_s,
                     "primary_day": span_day, "es_total": span_day * copies * tr_days, "retention_days": tr_days,
                     "sampling": s, "gateways": gw, "traces_in_memory_per_gateway": per_gw_traces,
                     "gateway_mem": per_gw_traces * L["traces"]["spans_per_request"] * L["traces"]["requests_per_trace"]
                     * L["traces"]["gateway_bytes_per_span"],
                     "gateway_cores": spans_s / L["traces"]["spans_s_per_gateway_core"]}
    return out


def sizing(model, load):
    """What each backend must be sized at (rules of thumb named in docs/capacity.md)."""
    L = load
    m, lg, tr = model["metrics"], model["logs"], model["traces"]
    ex, ce = m["expected"], m["ceiling"]
    hot_per_node = L["elasticsearch"]["node_ram_gb"] * L["elasticsearch"]["hot_ram_to_disk"] * 1e9
    warm_per_node = L["elasticsearch"]["node_ram_gb"] * L["elasticsearch"]["warm_ram_to_disk"] * 1e9
    es_hot = lg["es_hot"] + tr["es_total"]
    es_warm = lg["es_total"] - lg["es_hot"]
    hot_nodes = max(3, math.ceil(es_hot * 1.25 / hot_per_node))
    warm_nodes = math.ceil(es_warm * 1.25 / warm_per_node) if es_warm else 0
    return [
        ("Prometheus HA pair (each replica)", f"{gb(ex['prometheus_mem']):,.0f} GB memory expected, "
         f"{gb(ce['prometheus_mem']):,.0f} GB at the series ceiling; above ~50 GB, shard the scrape over "
         f"more HA pairs (`hashmod` relabelling, one `cluster` label each)"),
        ("Mimir distributors", f"{ex['samples_s'] / 25000:,.0f} cores / {ex['samples_s'] / 25000:,.0f} GB "
         f"({ex['samples_s']:,.0f} samples/s; 1 core + 1 GB per 25,000 samples/s)"),
        ("Mimir ingesters", f"{ex['ingester_series'] / 300000:,.0f} cores, {ex['ingester_series'] / 300000 * 2.5:,.0f} GB, "
         f"{ex['ingester_series'] / 300000 * 5:,.0f} GB disk ({ex['ingester_series']:,.0f} in-memory series with replication "
         f"factor 3; ceiling {ce['ingester_series']:,.0f}); per 300,000 series: 1 core, 2.5 GB, 5 GB disk"),
        ("Mimir object storage", f"{tb(ex['blocks_total']):,.1f} TB at {m['retention_days']} days "
         f"({gb(ex['blocks_day']):,.0f} GB/day; ceiling {tb(ce['blocks_total']):,.1f} TB)"),
        ("Mimir `max_global_series_per_user`", f">= {ce['series']:,.0f} (the ceiling: a limit below it can reject "
         f"series a correct service emits)"),
        ("Elasticsearch hot (logs < warm age + traces)", f"{tb(es_hot):,.1f} TB with replicas -> {hot_nodes} nodes of "
         f"{L['elasticsearch']['node_ram_gb']} GB RAM at 1:{L['elasticsearch']['hot_ram_to_disk']} RAM:disk, +25 %"),
        ("Elasticsearch warm (logs after the ILM warm phase)", f"{tb(es_warm):,.1f} TB with replicas -> {warm_nodes} nodes "
         f"at 1:{L['elasticsearch']['warm_ram_to_disk']}"),
        ("S3 log archive (snapshots)", f"{tb(lg['archive_total']):,.1f} TB at full retention"),
        ("Logstash", f"{lg['ingest_bytes_s'] / 1e6:,.0f} MB/s, {lg['lines_s']:,.0f} events/s -> "
         f"{max(2, math.ceil(lg['lines_s'] / L['logstash']['events_s_per_replica']))} replicas at "
         f"{L['logstash']['events_s_per_replica']:,} events/s each; persisted queue >= "
         f"{lg['ingest_bytes_s'] * L['logstash']['queue_minutes'] * 60 / max(2, math.ceil(lg['lines_s'] / L['logstash']['events_s_per_replica'])) / 1e9:,.0f} GB "
         f"per replica for {L['logstash']['queue_minutes']} min of Elasticsearch outage"),
        ("OpenTelemetry gateways", f"{tr['gateway_cores']:,.0f} cores in total ({tr['spans_s']:,.0f} spans/s at "
         f"{L['traces']['spans_s_per_gateway_core']:,} per core); with {tr['gateways']} replicas "
         f"{tr['traces_in_memory_per_gateway']:,.0f} traces and {gb(tr['gateway_mem']):,.1f} GB of spans held per "
         f"replica during decision_wait (num_traces = {tr['sampling']['num_traces']:,})"),
    ]


def load_report(load, facts):
    mdl = load_model(load, facts)
    L, lg, m, tr = load, mdl["logs"], mdl["metrics"], mdl["traces"]
    o = [f"Load: {L['services']} services x {L['replicas']} replicas x {L['rps_per_instance']} req/s = "
         f"**{mdl['rps']:,} req/s** ({mdl['instances']} instances).", ""]
    o += ["**Logs** "
          f"({L['logs']['access_lines_per_request']} access line x sampling {L['logs']['access_sample']} + "
          f"{L['logs']['other_lines_per_request']} other lines per request, {L['logs']['avg_line_bytes']} bytes a line; "
          f"{lg['lines_s']:,.0f} lines/s, {tb(lg['raw_day']):,.2f} TB/day raw; Elasticsearch stores "
          f"{L['logs']['es_bytes_per_raw_byte']} byte per raw byte, {L['logs']['es_replicas']} replica):", "",
          "| log_type | share | raw/day | ES primary/day | days in ES | ES total (with replica) | archive days | archive total |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for t, x in lg["by_type"].items():
        o.append(f"| {t} | {L['logs']['log_type_share'][t]:.0%} | {gb(x['raw_day']):,.0f} GB | {gb(x['primary_day']):,.0f} GB | "
                 f"{x['es_days']} | {tb(x['es_total']):,.1f} TB | {x['archive_days']} | {tb(x['archive_total']):,.1f} TB |")
    o.append(f"| **total** | | {gb(lg['raw_day']):,.0f} GB | | | **{tb(lg['es_total']):,.1f} TB** | | "
             f"**{tb(lg['archive_total']):,.1f} TB** |")
    o += ["", f"**Metrics** (profile `{m['profile']}`, label_cap {m['label_cap']}, scrape every {m['scrape_interval_s']} s, "
          f"{L['metrics']['bytes_per_sample']} bytes a sample in Mimir's blocks, {m['retention_days']} days):", "",
          "| | series per instance | series | samples/s | blocks/day | at full retention |", "|---|---:|---:|---:|---:|---:|"]
    for k, per in (("ceiling", m["per_instance_ceiling"]), ("expected", m["per_instance_expected"])):
        x = m[k]
        o.append(f"| {k} | {per:,.0f} | {x['series']:,.0f} | {x['samples_s']:,.0f} | {gb(x['blocks_day']):,.1f} GB | "
                 f"{tb(x['blocks_total']):,.2f} TB |")
    o += ["", f"(*ceiling*: every instance at its series bound; *expected*: the same, with "
          f"{L['metrics']['expected_methods_per_route']} of the {facts['methods']} method labels seen per route)", ""]
    o += [f"**Traces** ({L['traces']['spans_per_request']} spans a request, {L['traces']['requests_per_trace']} requests a trace; "
          f"kept: errors ({L['traces']['error_share']:.0%}) + slower than {tr['sampling']['threshold_ms']} ms "
          f"({L['traces']['slow_share']:.0%}) + {tr['sampling']['percentage']:g} % of the rest = "
          f"**{tr['kept_share']:.1%}**): {tr['spans_s']:,.0f} spans/s in, {tr['kept_spans_s']:,.0f} kept, "
          f"{gb(tr['primary_day']):,.0f} GB/day in Elasticsearch (primary, {L['traces']['es_bytes_per_span']} bytes a span), "
          f"**{tb(tr['es_total']):,.1f} TB** with the replica at {tr['retention_days']} days.", ""]
    o += ["**Backend sizing** for this load:", "", "| backend | size |", "|---|---|"]
    o += [f"| {a} | {b} |" for a, b in sizing(mdl, L)]
    return "\n".join(o), mdl


def report(facts):
    load = json.loads((PROFILES / "load.json").read_text())
    parts = []
    for name in ("example-service.json", load["metrics"]["profile"]):
        t, _ = series_table(load_profile(PROFILES / name), facts)
        parts.append(t)
    lr, _ = load_report(load, facts)
    parts.append(lr)
    return "\n\n".join(parts) + "\n"


# ------------------------------------------------------------------ self-check
def self_check(facts):
    res = []

    def check(name, ok, why=""):
        res.append(bool(ok))
        print(f"ok - {name}" if ok else f"FAIL - {name}: {why}")

    prof = load_profile(PROFILES / "example-service.json")
    rows, _ = series_bound(prof, facts)
    covered = {r[0] for r in rows}
    want = set(facts["all"]) | set(facts["process"])
    check("capacity.py: its series catalogue is exactly src/metrics/names.rs (ALL + PROCESS)",
          covered == want, f"missing {sorted(want - covered)}, extra {sorted(covered - want)}")
    src = (ROOT / "examples/service.rs").read_text()
    routes = re.findall(r'\.route\("([^"]+)"', src)
    check("capacity.py: the example-service profile has exactly the routes of examples/service.rs",
          sorted(r["template"] for r in prof["routes"]) == sorted(routes), routes)
    unused = [k for k in DOMAINS if prof["domains"][k] == 0 and prof.get("uses", {}).get(k, True)]
    check("capacity.py: profiles parse, every caller-fed label has a declared domain", not unused, unused)
    if DOC.exists():
        text = DOC.read_text()
        cur = text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip() if BEGIN in text and END in text else None
        check("docs/capacity.md shows the current output of capacity.py report",
              cur == report(facts).strip(), "run: python3 deploy/tools/capacity.py report --write")
    else:
        check("docs/capacity.md exists", False)
    load = json.loads((PROFILES / "load.json").read_text())
    mdl = load_model(load, facts)
    mimir = (DEPLOY / "production/01-mimir/config/mimir.yaml").read_text()
    limit = int(re.search(r"max_global_series_per_user:\s*(\d+)", mimir).group(1))
    check("Mimir's max_global_series_per_user admits the series ceiling of the stated load",
          limit >= mdl["metrics"]["ceiling"]["series"], f"{limit} < {mdl['metrics']['ceiling']['series']:,.0f}")
    tr = mdl["traces"]
    check("the gateways' tail_sampling num_traces holds decision_wait of traces with 50 % headroom",
          tr["sampling"]["num_traces"] >= 1.5 * tr["traces_in_memory_per_gateway"],
          f"{tr['sampling']['num_traces']} < 1.5 x {tr['traces_in_memory_per_gateway']:,.0f}")
    return 0 if all(res) else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", nargs="?", choices=["series", "load", "report"], default="report")
    ap.add_argument("--profile", default=str(PROFILES / "example-service.json"))
    ap.add_argument("--load", default=str(PROFILES / "load.json"))
    ap.add_argument("--label-cap", type=int)
    ap.add_argument("--json", action="store_true", help="series: per-metric bounds as JSON")
    ap.add_argument("--write", action="store_true", help="report: rewrite the generated part of docs/capacity.md")
    ap.add_argument("--self-check", action="store_true")
    a = ap.parse_args()
    facts = crate_facts()
    if a.self_check:
        return self_check(facts)
    if a.command == "series":
        prof = load_profile(a.profile)
        if a.json:
            rows, cap = series_bound(prof, facts, a.label_cap)
            print(json.dumps({"profile": prof["name"], "label_cap": cap, "total": sum(r[4] for r in rows),
                              "metrics": {r[0]: r[4] for r in rows}}, indent=1))
        else:
            print(series_table(prof, facts, a.label_cap)[0])
    elif a.command == "load":
        print(load_report(json.loads(pathlib.Path(a.load).read_text()), facts)[0])
    else:
        text = report(facts)
        if a.write:
            doc = DOC.read_text()
            doc = doc[:doc.index(BEGIN) + len(BEGIN)] + "\n" + text + doc[doc.index(END):]
            DOC.write_text(doc)
            print(f"wrote {DOC.relative_to(ROOT)}")
        else:
            print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
