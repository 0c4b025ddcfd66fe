#!/usr/bin/env python3
"""Static checks of the ops assets under deploy/ (run by .ci/ops-check.sh).

Prints one line per check, `ok - <check>` or `FAIL - <check>: <why>`, and
exits 1 if any check failed. The Rust test tests/ops_assets.rs repeats the two
central ones (metric names, runbook anchors) natively.

  a. every metric name in the alert/recording rules and in the dashboards is
     emitted by the crate (src/metrics/names.rs: ALL and PROCESS, histograms
     only with _bucket/_sum/_count), is a recording rule of ours, or belongs
     to a named external exporter;
  b. every alert has severity critical|warning, summary, description, and a
     runbook_url whose anchor is a heading of docs/runbooks.md;
  plus: every alert is exercised by a promtool test, the generated files are
  fresh, the dashboards have the service variable and the guide's panels,
  Alertmanager routes and takes its secrets from files, the logging assets
  carry the guide's retention and queries, the compose file has the guide's
  ports.
"""
import json
import pathlib
import re
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RUNBOOK_BASE = "https://github.com/glimpse/glimpse_obs/blob/main/docs/runbooks.md#"

# Metric-name prefixes of the external exporters the assets may use.
EXTERNAL = {
    "node_": "node-exporter",
    "container_": "cAdvisor",
    "machine_": "cAdvisor",
    "probe_": "blackbox exporter",
    "redis_": "redis-exporter",
    "alertmanager_": "Alertmanager",
    "prometheus_": "Prometheus",
}
EXTERNAL_EXACT = {"up": "Prometheus (scrape)", "ALERTS": "Prometheus (alerts)",
                  "ALERTS_FOR_STATE": "Prometheus (alerts)", "scrape_duration_seconds": "Prometheus (scrape)",
                  "scrape_samples_scraped": "Prometheus (scrape)"}
HIST_SUFFIXES = ("_bucket", "_sum", "_count")

results = []


def check(name, ok, why=""):
    results.append(ok)
    print(f"ok - {name}" if ok else f"FAIL - {name}: {why}")


# ------------------------------------------------------------ crate metric names
def crate_metrics():
    """(plain names, histogram names) from src/metrics/names.rs."""
    src = (ROOT / "src/metrics/names.rs").read_text()
    consts, hist = {}, set()
    doc = ""
    for line in src.splitlines():
        s = line.strip()
        if s.startswith("///"):
            doc += s[3:].strip() + " "
            continue
        m = re.match(r'pub const (\w+): &str = "([^"]+)";', s)
        if m:
            consts[m.group(1)] = m.group(2)
            if doc.lower().startswith("histogram"):
                hist.add(m.group(2))
        doc = ""

    def slice_of(name):
        m = re.search(r"pub const " + name + r": &\[&str\] = &\[(.*?)\];", src, re.S)
        if not m:
            raise SystemExit(f"names.rs: no {name} list")
        out = []
        for item in re.findall(r'"[^"]*"|\w+', m.group(1)):
            out.append(item.strip('"') if item.startswith('"') else consts[item])
        return out

    names = set(slice_of("ALL")) | set(slice_of("PROCESS"))
    return names, hist & names


# ------------------------------------------------------------ PromQL scanning
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset", "inf", "nan", "atan2"}


def metric_names(expr):
    """Metric names used in a PromQL expression (Grafana variables allowed)."""
    e = re.sub(r"\$\{[^}]*\}|\$\w+", "1m", expr)               # Grafana variables
    e = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', e)  # strings
    e = re.sub(r"\{[^}]*\}", "", e)                            # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                           # ranges / subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+-?\w+", " ", e)
    e = re.sub(r"(?<![\w:.])\d[\w.]*", " ", e)                  # numbers, durations
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        tok = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("("):                               # function / aggregation
            continue
        if tok.lower() in KEYWORDS:
            continue
        names.add(tok)
    return names


def classify(name, crate, hist, recorded):
    """None if the name is allowed, else why not."""
    if name in recorded:
        return None
    if name in crate:
        if name in hist:
            return "histogram used without _bucket/_sum/_count"
        return None
    for suf in HIST_SUFFIXES:
        if name.endswith(suf) and name[: -len(suf)] in hist:
            return None
    if name in EXTERNAL_EXACT:
        return None
    for p in EXTERNAL:
        if name.startswith(p):
            return None
    return "not emitted by the crate (src/metrics/names.rs) nor by a named exporter"


# ------------------------------------------------------------ loaders
def rule_files():
    return sorted((DEPLOY / "prometheus/rules").glob("*.yml"))


def load_rules():
    rules = []
    for f in rule_files():
        doc = yaml.safe_load(f.read_text())
        for g in doc["groups"]:
            for r in g["rules"]:
                rules.append((f.name, g["name"], r))
    return rules


def dashboards():
    return {f.name: json.loads(f.read_text()) for f in sorted((DEPLOY / "grafana/dashboards").glob("*.json"))}


def panels(d):
    for p in d.get("panels", []):
        yield p
        for q in p.get("panels", []) or []:
            yield q


def prom_queries(d):
    """(where, expr) for every Prometheus query of a dashboard, incl. variables."""
    out = []
    for v in d.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and q:
            m = re.match(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*$", q)
            out.append((f"variable {v['name']}", m.group(1) if m else q))
    for p in panels(d):
        ds = (p.get("datasource") or {}).get("type")
        for t in p.get("targets", []):
            tds = (t.get("datasource") or {}).get("type", ds)
            if tds == "prometheus" and t.get("expr"):
                out.append((f"panel '{p['title']}' {t.get('refId')}", t["expr"]))
    return out


def github_anchor(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


# ------------------------------------------------------------ checks
def main():
    crate, hist = crate_metrics()
    check("names.rs parsed (ALL, PROCESS, histograms)", len(crate) >= 30 and len(hist) >= 4,
          f"{len(crate)} names, {len(hist)} histograms")
    rules = load_rules()
    recorded = {r["record"] for _, _, r in rules if "record" in r}
    alerts = [(f, g, r) for f, g, r in rules if "alert" in r]

    # a. metric names
    bad = []
    for f, g, r in rules:
        for n in sorted(metric_names(r["expr"])):
            why = classify(n, crate, hist, recorded)
            if why:
                bad.append(f"{f} {r.get('alert') or r.get('record')}: {n} ({why})")
    check(f"metric names in {len(rules)} rules are emitted or external", not bad, "; ".join(bad))
    bad, count = [], 0
    for name, d in dashboards().items():
        for where, expr in prom_queries(d):
            count += 1
            for n in sorted(metric_names(expr)):
                why = classify(n, crate, hist, recorded)
                if why:
                    bad.append(f"{name} {where}: {n} ({why})")
    check(f"metric names in {count} dashboard queries are emitted or external", not bad, "; ".join(bad))

    # b. alerts: labels, annotations, runbook anchors
    runbooks = (ROOT / "docs/runbooks.md").read_text() if (ROOT / "docs/runbooks.md").exists() else ""
    anchors = {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", runbooks, re.M)}
    bad = []
    for f, g, r in alerts:
        a = r["alert"]
        labels, ann = r.get("labels", {}), r.get("annotations", {})
        if labels.get("severity") not in ("critical", "warning"):
            bad.append(f"{a}: severity {labels.get('severity')!r}")
        for k in ("summary", "description", "runbook_url"):
            if not ann.get(k):
                bad.append(f"{a}: no {k}")
    check(f"{len(alerts)} alerts have severity, summary, description, runbook_url", not bad, "; ".join(bad))
    bad = []
    for f, g, r in alerts:
        url = r.get("annotations", {}).get("runbook_url", "")
        if not url.startswith(RUNBOOK_BASE):
            bad.append(f"{r['alert']}: {url} is not under {RUNBOOK_BASE}")
        elif url[len(RUNBOOK_BASE):] not in anchors:
            bad.append(f"{r['alert']}: no heading with anchor #{url[len(RUNBOOK_BASE):]} in docs/runbooks.md")
    check("every alert's runbook_url anchor is a heading of docs/runbooks.md", not bad, "; ".join(bad))

    names = {r["alert"] for _, _, r in alerts}
    guide = {"ServiceDown", "HighErrorRate", "DatabaseConnectionsExhausted", "DiskSpaceLow",
             "PaymentFailuresHigh", "HighResponseTime", "MemoryUsageHigh", "SlowQueries",
             "SSLCertificateExpiry", "RedisMemoryHigh", "ManyFailedLogins", "UnusualTrafficPattern",
             "SuspiciousAPIKeyUsage", "DataAccessAnomaly"}
    check("every alert of the guide exists", guide <= names, ", ".join(sorted(guide - names)))
    slos = {r["labels"].get("slo") for _, _, r in alerts if r["alert"].startswith("SLOBurnRate")}
    sev = {(r["labels"].get("slo"), r["labels"]["severity"]) for _, _, r in alerts if r["alert"].startswith("SLOBurnRate")}
    want = {"availability", "error_rate", "latency_p50", "latency_p95", "websocket_latency"}
    check("page (critical) and ticket (warning) burn-rate alerts for the five SLOs",
          slos == want and len(sev) == 10, f"slos {sorted(s for s in slos if s)}, {len(sev)} variants")

    tests = "\n".join(f.read_text() for f in sorted((DEPLOY / "prometheus/tests").glob("*.yml")))
    untested = sorted(n for n in names if not re.search(
        r"alertname:\s*" + re.escape(n) + r"\s*$|alertname=\\?\"" + re.escape(n) + r"\\?\"", tests, re.M))
    check("every alert is exercised by a promtool test", not untested, ", ".join(untested))
    test_rule_files = set()
    for f in sorted((DEPLOY / "prometheus/tests").glob("*.yml")):
        for rf in yaml.safe_load(f.read_text()).get("rule_files", []):
            test_rule_files.add((f.parent / rf).resolve())
    missing = [f.name for f in rule_files() if f.resolve() not in test_rule_files]
    check("every rule file is loaded by a promtool test file", not missing, ", ".join(missing))

    for gen in ("deploy/prometheus/slo/generate.py", "deploy/grafana/generate.py"):
        p = subprocess.run([sys.executable, str(ROOT / gen), "--check"], capture_output=True, text=True)
        check(f"{gen} output is fresh", p.returncode == 0, p.stderr.strip())

    # dashboards
    ds = dashboards()
    titles = {d["title"] for d in ds.values()}
    want = {"Glimpse / Application Overview", "Glimpse / Business Metrics", "Glimpse / Infrastructure",
            "Glimpse / Logs Analysis"}
    check("the four dashboards of the guide", want <= titles, f"have {sorted(titles)}")
    bad = []
    for name, d in ds.items():
        vars_ = {v["name"]: v for v in d["templating"]["list"]}
        q = vars_.get("service", {}).get("query", {})
        q = q.get("query") if isinstance(q, dict) else q
        if not q or not re.match(r"label_values\(.*,\s*service\)$", q):
            bad.append(f"{name}: no service variable from label_values(..., service)")
        for where, expr in prom_queries(d):
            if where.startswith("variable"):
                continue
            uses_crate = any(classify(n, crate, hist, set()) is None and not any(
                n.startswith(p) for p in EXTERNAL) and n not in EXTERNAL_EXACT for n in metric_names(expr)) \
                or "slo:" in expr
            if uses_crate and "$service" not in expr:
                bad.append(f"{name} {where}: crate metric query without $service")
        ids = [p["id"] for p in panels(d)]
        if len(ids) != len(set(ids)):
            bad.append(f"{name}: duplicate panel ids")
    check("dashboards have a service variable and filter crate queries on $service", not bad, "; ".join(bad))
    logs = next((d for d in ds.values() if d["title"].endswith("Logs Analysis")), None)
    ok = logs is not None
    why = ""
    if ok:
        exprs = " ".join(e for _, e in prom_queries(logs))
        es_panels = [p for p in panels(logs) if (p.get("datasource") or {}).get("type") == "elasticsearch"]
        top = [p for p in es_panels if "message" in json.dumps(p.get("targets", []))]
        ok = "log_events_total" in exprs and "by (service)" in exprs and bool(top)
        why = "needs log_events_total (error frequency, by service) and an Elasticsearch top-messages panel"
    check("Logs Analysis: log_events_total and an Elasticsearch top error messages panel", ok, why)
    infra = next((d for d in ds.values() if d["title"].endswith("Infrastructure")), {})
    iexprs = " ".join(e for _, e in prom_queries(infra))
    need = ["process_cpu_seconds_total", "process_resident_memory_bytes", "db_pool_connections",
            "cache_requests_total", "node_", "container_", "redis_",
            "tokio_busy_ratio", "tokio_global_queue_depth", "tokio_alive_tasks"]
    check("Infrastructure: process, runtime, db pool, cache, node, cAdvisor, redis panels",
          all(n in iexprs for n in need), ", ".join(n for n in need if n not in iexprs))

    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/datasources.yml").read_text())
    uids = {d["uid"]: d["type"] for d in prov["datasources"]}
    used = set()
    for d in ds.values():
        for p in panels(d):
            if p.get("datasource"):
                used.add((p["datasource"]["uid"], p["datasource"]["type"]))
    check("provisioned datasources: Prometheus, Elasticsearch, Jaeger; dashboards use only those",
          {"prometheus", "elasticsearch", "jaeger"} <= set(uids.values())
          and all(uids.get(u) == t for u, t in used), f"provisioned {uids}, used {sorted(used)}")

    # alertmanager
    am_text = (DEPLOY / "alertmanager/alertmanager.yml").read_text()
    am = yaml.safe_load(am_text)
    recv = {r["name"]: r for r in am["receivers"]}
    pd = [c for r in recv.values() for c in r.get("pagerduty_configs", [])]
    sl = [c for r in recv.values() for c in r.get("slack_configs", [])]
    ok = (pd and all(("routing_key_file" in c or "service_key_file" in c)
                     and "routing_key" not in c and "service_key" not in c for c in pd)
          and sl and all("api_url_file" in c and "api_url" not in c for c in sl)
          and "api_url:" not in am_text.replace("api_url_file:", "")
          and not re.search(r"hooks\.slack\.com|events\.pagerduty", am_text))
    check("Alertmanager secrets only from files (routing_key_file / api_url_file)", bool(ok),
          "inline secret or missing *_file")
    check("Slack: channel #alerts, title 'Glimpse Alert'",
          any(c.get("channel") == "#alerts" and c.get("title") == "Glimpse Alert" for c in sl), str(sl))
    inh = am.get("inhibit_rules", [])
    check("inhibition: critical mutes matching warnings",
          any("severity=\"critical\"" in " ".join(i.get("source_matchers", []))
              and "severity=\"warning\"" in " ".join(i.get("target_matchers", [])) and i.get("equal")
              for i in inh), str(inh))
    gi = (DEPLOY / "alertmanager/.gitignore")
    check("alertmanager secrets directory is git-ignored", gi.exists() and "secrets/" in gi.read_text(), "")

    # logging
    pipe = (DEPLOY / "logging/logstash/pipeline/glimpse.conf").read_text()
    check("Logstash derives log_level from level and routes by log_type",
          re.search(r'copy\s*=>\s*\{\s*"level"\s*=>\s*"log_level"', pipe) is not None
          and "glimpse.%{log_type}" in pipe and "data_stream" in pipe
          and pipe.count("{") == pipe.count("}"), "")
    fb = yaml.safe_load((DEPLOY / "logging/filebeat/filebeat.yml").read_text())
    check("Filebeat inputs decode ndjson",
          all(any("ndjson" in p for p in i.get("parsers", [])) for i in fb["filebeat.inputs"]), "")
    es = DEPLOY / "logging/elasticsearch"

    def delete_age(name):
        pol = json.loads((es / "ilm" / f"{name}.json").read_text())["policy"]["phases"]
        return pol["delete"]["min_age"]

    ages = {n: delete_age(n) for n in ("glimpse-production-payment", "glimpse-production-user_activity",
                                       "glimpse-production-system", "glimpse-production-debug",
                                       "glimpse-development")}
    slm = {n: json.loads((es / "slm" / f"glimpse-archive-{n}.json").read_text())["retention"]["expire_after"]
           for n in ("payment", "user_activity", "system")}
    ok = (ages["glimpse-production-payment"] == ages["glimpse-production-user_activity"]
          == ages["glimpse-production-system"] == "30d" and ages["glimpse-production-debug"] == "7d"
          and ages["glimpse-development"] == "7d"
          and int(slm["payment"][:-1]) >= 7 * 365 and int(slm["user_activity"][:-1]) >= 365
          and int(slm["system"][:-1]) >= 90)
    check("ILM/SLM retention: prod 30d, dev 7d, debug 7d; archives payment 7y, user_activity 1y, system 90d",
          ok, f"{ages} {slm}")
    bad = []
    for f in sorted((es / "index-templates").glob("*.json")):
        t = json.loads(f.read_text())
        pol = t["template"]["settings"]["index"]["lifecycle"]["name"]
        if not (es / "ilm" / f"{pol}.json").exists():
            bad.append(f"{f.name}: ILM policy {pol} missing")
        for c in t["composed_of"]:
            if not (es / "component-templates" / f"{c}.json").exists():
                bad.append(f"{f.name}: component {c} missing")
    for f in sorted((es / "ilm").glob("*.json")):
        for ph in json.loads(f.read_text())["policy"]["phases"].values():
            w = ph["actions"].get("wait_for_snapshot")
            if w and not (es / "slm" / f"{w['policy']}.json").exists():
                bad.append(f"{f.name}: SLM policy {w['policy']} missing")
    check("index templates, ILM and SLM policies refer to each other consistently", not bad, "; ".join(bad))
    saved = [json.loads(l) for l in (DEPLOY / "logging/kibana/saved-searches.ndjson").read_text().splitlines() if l]
    queries = {json.loads(o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
               for o in saved if o.get("type") == "search"}
    guide_q = {'userId:"user123" AND log_level:ERROR', "service:payment AND status:failed",
               "response_time:>1000 AND http_status:200", "service:database AND log_level:ERROR"}
    check("Kibana saved searches: the guide's four queries", guide_q <= queries, str(queries))

    # compose (docker-compose config output, normalized), given as argv[1]
    if len(sys.argv) > 1:
        cfg = yaml.safe_load(pathlib.Path(sys.argv[1]).read_text())
        svcs = cfg["services"]

        def published(svc):
            out = set()
            for p in svcs.get(svc, {}).get("ports", []):
                if isinstance(p, dict):
                    out.add((int(p["published"]), int(p["target"])))
                else:
                    hp = str(p).split(":")
                    out.add((int(hp[-2]), int(hp[-1].split("/")[0])))
            return out
        need = {"grafana": {(3030, 3000)}, "kibana": {(5601, 5601)},
                "jaeger": {(16686, 16686), (4317, 4317), (4318, 4318)}, "prometheus": {(9090, 9090)},
                "alertmanager": {(9093, 9093)}}
        bad = [f"{s} {sorted(p - published(s))}" for s, p in need.items() if not p <= published(s)]
        check("compose publishes the guide's ports (Grafana 3030, Kibana 5601, Jaeger 16686/4317/4318, "
              "Prometheus 9090, Alertmanager 9093)", not bad, "; ".join(bad))
        want_svcs = {"service", "prometheus", "alertmanager", "grafana", "jaeger", "elasticsearch", "logstash",
                     "filebeat", "kibana", "node-exporter", "cadvisor", "blackbox", "redis", "redis-exporter"}
        check("compose runs the whole stack and the example service", want_svcs <= set(svcs),
              ", ".join(sorted(want_svcs - set(svcs))))
        env = svcs["service"].get("environment", {})
        check("example service wired: metrics 0.0.0.0:9464, OTLP to jaeger:4317, OTEL_SERVICE_NAME",
              env.get("GLIMPSE_METRICS_ADDR") == "0.0.0.0:9464"
              and env.get("OTEL_EXPORTER_OTLP_ENDPOINT") == "http://jaeger:4317"
              and bool(env.get("OTEL_SERVICE_NAME")), str(env))
        raw = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
        genv = raw["services"]["grafana"]["environment"]
        check("Grafana admin credentials come from the environment",
              "${GRAFANA_ADMIN_USER" in genv.get("GF_SECURITY_ADMIN_USER", "")
              and "${GRAFANA_ADMIN_PASSWORD" in genv.get("GF_SECURITY_ADMIN_PASSWORD", ""), str(genv))

    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
