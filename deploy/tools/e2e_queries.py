#!/usr/bin/env python3
"""Runs every dashboard query on the crate's metrics against a real Prometheus
(end-to-end test, .ci/e2e.sh) and checks the rule files loaded.

    e2e_queries.py http://127.0.0.1:9090 SERVICE ENV

One `ok - ...` / `FAIL - ...` line per check; exit 1 on any failure.
Queries that use only external exporters' metrics (node-exporter, cAdvisor,
redis-exporter, blackbox) are listed as skipped: nothing here runs them.
"""
import json
import math
import pathlib
import sys
import urllib.parse
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import check_assets as ca  # noqa: E402

PROM, SERVICE, ENV = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
results = []


def check(name, ok, why=""):
    results.append(ok)
    print(f"ok - {name}" if ok else f"FAIL - {name}: {why}", flush=True)


def api(path, **params):
    url = f"{PROM}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def query(expr):
    r = api("/api/v1/query", query=expr)
    if r.get("status") != "success":
        raise RuntimeError(r)
    return r["data"]["resultType"], r["data"]["result"]


def finite(result_type, result):
    if result_type == "scalar":
        return [float(result[1])]
    vals = [float(s["value"][1]) for s in result]
    return [v for v in vals if math.isfinite(v)]


def substitute(expr):
    return (expr.replace("${service:lucene}", SERVICE).replace("$service", SERVICE).replace("$env", ENV)
            .replace("$__rate_interval", "1m").replace("$__range", "5m").replace("$__interval", "15s"))


def main():
    crate, hist = ca.crate_metrics()
    rules = ca.load_rules()
    recorded = {r["record"] for _, _, r in rules if "record" in r}
    external_only = []
    for name, d in ca.dashboards().items():
        for where, expr in ca.prom_queries(d):
            names = ca.metric_names(expr)
            ours = {n for n in names if n in recorded or (ca.classify(n, crate, hist, set()) is None
                    and not any(n.startswith(p) for p in ca.EXTERNAL) and n not in ca.EXTERNAL_EXACT)}
            if where.startswith("variable"):
                # label_values(metric, label): the metric must have series of the service
                if not ours:
                    continue
                e = expr.strip()
                e = e if "{" in e else e + "{}"
                e = e.replace("{", f'{{service="{SERVICE}",', 1).replace(",}", "}")
                e = substitute(e)
            else:
                if not ours:
                    external_only.append(f"{name} {where}")
                    continue
                e = substitute(expr)
            label = f"{name} {where} returns data"
            try:
                rtype, res = query(e)
            except Exception as ex:  # noqa: BLE001
                check(label, False, f"{e}: {ex}")
                continue
            vals = finite(rtype, res)
            check(label, bool(vals), f"{'no series' if not res else 'only NaN/Inf'} for {e}")
    for q in external_only:
        print(f"# skipped (external exporter only): {q}")

    # every route of the example service has request metrics
    _, res = query(f'count by (route) (http_server_request_duration_seconds_count{{service="{SERVICE}"}})')
    routes = {s["metric"].get("route") for s in res}
    want = {"/users", "/users/{id}", "/matches", "/messages", "/payments", "/slow", "/error", "/ws/chat"}
    check("request metrics for every route (/health is excluded by the layer)", want <= routes,
          f"missing {sorted(want - routes)}, have {sorted(routes)}")

    # rule files loaded, every rule evaluated without error
    groups = api("/api/v1/rules")["data"]["groups"]
    files = {pathlib.Path(g["file"]).name for g in groups}
    want_files = {f.name for f in ca.rule_files()}
    check("Prometheus loaded every rule file", want_files <= files, f"loaded {sorted(files)}")
    n = sum(len(g["rules"]) for g in groups)
    check(f"Prometheus loaded all {len(rules)} rules", n == len(rules), f"loaded {n}")
    bad = [f"{g['name']}/{r.get('name')}: {r.get('health')} {r.get('lastError', '')}"
           for g in groups for r in g["rules"] if r.get("health") != "ok"]
    check("every rule evaluated with health ok", not bad, "; ".join(bad[:10]))

    # alerts whose conditions the load creates are pending or firing on the real series
    alerts = api("/api/v1/alerts")["data"]["alerts"]
    active = {(a["labels"]["alertname"], a["labels"].get("severity")) for a in alerts
              if a["labels"].get("service", SERVICE) == SERVICE}
    for name, sev in [("HighErrorRate", "critical"), ("PaymentFailuresHigh", "critical"),
                      ("ManyFailedLogins", "warning"), ("SLOBurnRateAvailability", "critical"),
                      ("SLOBurnRateErrorRate", "critical")]:
        check(f"alert {name} ({sev}) is pending/firing under the load's error mix", (name, sev) in active,
              f"active: {sorted(active)}")
    targets = api("/api/v1/targets")["data"]["activeTargets"]
    check("the example service's target is up", any(t["health"] == "up" for t in targets),
          str([(t["scrapeUrl"], t["health"], t.get("lastError")) for t in targets]))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
