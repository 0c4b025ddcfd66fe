#!/usr/bin/env python3
"""Checks deploy/production (run by .ci/ops-check.sh).

Prints one line per check, `ok - <check>` or `FAIL - <check>: <why>`, and
exits 1 if any failed:

  1. the generated ConfigMaps are fresh (deploy/production/generate.py);
  2. every manifest validates against its Kubernetes schema
     (kubernetes-validate --strict, offline schemas; the venv of
     .ci/install-tools.sh, or $KUBERNETES_VALIDATE);
  3. the configuration files, extracted from the ConfigMaps that mount
     them, pass their real checkers: `promtool check config` (Prometheus),
     `promtool check rules` (the rules Mimir's ruler loads, the replicas'
     meta-rules), `amtool check-config` and `amtool config routes test`
     (Alertmanager), and every PromQL query of the provisioned Grafana
     dashboards through promtool's parser; three real Alertmanagers started
     with the StatefulSet's flags (addresses on loopback) form one gossip
     cluster and share a silence;
  4. the OpenTelemetry Collector configs, merged the way the pods' --config
     flags merge them, against the component list they use: every component
     of a pipeline defined, every defined component used, every type one of
     the pinned collector-contrib release, the tail-sampling rules as the
     issue states them (errors, slower than the p95 KPI, a probabilistic
     share), loadbalancing keyed by trace ID (and a self-test: a config with
     a dangling name is rejected);
  5. the wiring: HA pair, gossip peers, quorum sizes, persistent queue,
     references between objects (ConfigMaps and their keys, Services and the
     pods they select, ports, service accounts), pinned images;
  6. secrets: no Secret object and no literal secret value in the repo; every
     Secret a manifest references is listed in deploy/production/README.md.
"""
import copy
import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROD = DEPLOY / "production"
K8S_VERSION = "1.30.0"
# The collector-contrib release the manifests pin, and the components of it
# the configs may use (from its components list; extend when a config
# needs another one).
OTELCOL_IMAGE = "otel/opentelemetry-collector-contrib:0.104.0"
OTELCOL_COMPONENTS = {
    "receivers": {"otlp", "jaeger", "zipkin", "prometheus", "hostmetrics", "filelog", "k8s_cluster", "kubeletstats"},
    "processors": {"batch", "memory_limiter", "tail_sampling", "probabilistic_sampler", "k8sattributes",
                   "resourcedetection", "resource", "attributes", "filter", "transform", "groupbytrace"},
    "exporters": {"otlp", "otlphttp", "loadbalancing", "debug", "prometheus", "prometheusremotewrite",
                  "elasticsearch", "file"},
    "extensions": {"health_check", "pprof", "zpages", "memory_ballast", "file_storage"},
    "connectors": {"spanmetrics", "servicegraph", "forward", "routing"},
}
TAIL_POLICY_TYPES = {"always_sample", "latency", "numeric_attribute", "probabilistic", "status_code",
                     "string_attribute", "rate_limiting", "span_count", "boolean_attribute", "ottl_condition",
                     "trace_state", "and", "composite", "drop"}
P95_KPI_MS = 500  # guide: "API Response Time: Target <200ms p50, <500ms p95"
SECRETISH = re.compile(r"(PASSWORD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE)", re.I)

results = []


def check(name, ok, why=""):
    results.append(bool(ok))
    print(f"ok - {name}" if ok else f"FAIL - {name}: {why}")


def rel(p):
    return str(pathlib.Path(p).relative_to(ROOT))


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------ loading
def manifest_files():
    return sorted(p for p in PROD.glob("[0-9][0-9]-*/*.yaml"))


def load_objects():
    objs = []
    for f in manifest_files():
        for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")):
            if doc:
                objs.append((f, doc))
    return objs


def by_kind(objs, kind):
    return {o["metadata"]["name"]: o for _, o in objs if o.get("kind") == kind}


def pod_spec(o):
    spec = o.get("spec", {})
    if o["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    return spec.get("template", {}).get("spec")


WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def workloads(objs):
    return [o for _, o in objs if o.get("kind") in WORKLOADS]


def containers(o):
    ps = pod_spec(o) or {}
    return (ps.get("initContainers") or []) + (ps.get("containers") or [])


def cm_data(objs, name):
    cm = by_kind(objs, "ConfigMap").get(name)
    if cm is None:
        raise KeyError(f"ConfigMap {name} missing")
    return cm["data"]


def extract(objs, name, into):
    d = pathlib.Path(into) / name
    d.mkdir(parents=True, exist_ok=True)
    for k, v in cm_data(objs, name).items():
        (d / k).write_text(v, encoding="utf-8")
    return d


def run(cmd, cwd=None):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    return p.returncode, (p.stdout + p.stderr).strip()


def mount_of(o, volume_name):
    for c in containers(o):
        for m in c.get("volumeMounts") or []:
            if m["name"] == volume_name:
                return m["mountPath"]
    return None


def args_of(o, container=None):
    cs = [c for c in containers(o) if container in (None, c["name"])]
    return [a for c in cs for a in (c.get("command") or []) + (c.get("args") or [])]


def env_of(o):
    return {e["name"]: e for c in containers(o) for e in c.get("env") or []}


# ------------------------------------------------------------------ 1. fresh
def check_generated():
    gen = load_module(PROD / "generate.py", "glimpse_generate")
    stale = []
    for path, (_, objs) in gen.outputs().items():
        if not path.exists() or path.read_text(encoding="utf-8") != gen.render(objs):
            stale.append(rel(path))
    check("deploy/production: generated ConfigMaps are fresh (generate.py --check)", not stale,
          "stale: " + ", ".join(stale) + "; run python3 deploy/production/generate.py")


# ------------------------------------------------------------------ 2. schemas
def check_schemas():
    tool = os.environ.get("KUBERNETES_VALIDATE") or str(ROOT / ".ci/k8s/.venv/bin/kubernetes-validate")
    if not os.path.exists(tool) and not shutil.which(tool):
        check("kubernetes-validate installed", False, f"{tool} missing: run bash .ci/install-tools.sh")
        return
    # Self-test: the validator rejects a manifest that breaks its schema.
    with tempfile.TemporaryDirectory() as tmp:
        bad = pathlib.Path(tmp) / "bad.yaml"
        bad.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: two\n"
                       "  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n"
                       "    spec: {containers: [{name: c, image: 'i:1'}]}\n")
        rc, out = run([tool, "--strict", "--no-warn", "-k", K8S_VERSION, str(bad)])
        check("kubernetes-validate self-test: a Deployment with replicas: two is rejected", rc != 0, out)
    # One run over every file (the schemas load once); its lines name the file.
    files = manifest_files()
    rc, out = run([tool, "--strict", "--no-warn", "-k", K8S_VERSION, *map(str, files)])
    lines = out.splitlines()
    for f in files:
        n = len([d for d in yaml.safe_load_all(f.read_text()) if d])
        mine = [l for l in lines if f" {f} " in f" {l} "]
        passed = sum(" passed for resource " in l for l in mine)
        check(f"kubernetes-validate --strict (k8s {K8S_VERSION}): {rel(f)} ({n} objects)",
              passed == n and len(mine) == n, "\n".join(mine)[-1500:] or out[-1500:])
    check("kubernetes-validate exits 0 on the manifests", rc == 0, out[-1500:])


# ------------------------------------------------------------------ 3. real checkers
# Upstream Prometheus kubernetes_sd_config fields (docs: configuration,
# <kubernetes_sd_config>) and the HTTP client fields every SD accepts.
K8S_SD_FIELDS = {"api_server", "role", "kubeconfig_file", "namespaces", "selectors", "attach_metadata",
                 "basic_auth", "authorization", "oauth2", "tls_config", "proxy_url", "no_proxy",
                 "proxy_from_environment", "proxy_connect_header", "follow_redirects", "enable_http2"}
K8S_SD_ROLES = {"node", "service", "pod", "endpoints", "endpointslice", "ingress"}


FILE_KEYS = {"credentials_file", "ca_file", "cert_file", "key_file", "password_file", "bearer_token_file"}


def placeholder_files(node, base):
    """`node` with every in-pod file path moved under `base`, where a
    placeholder file is created."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in FILE_KEYS and isinstance(v, str) and v.startswith("/"):
                f = base / v.lstrip("/")
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text("placeholder\n")
                out[k] = str(f)
            else:
                out[k] = placeholder_files(v, base)
        return out
    if isinstance(node, list):
        return [placeholder_files(v, base) for v in node]
    return node


def kubernetes_sd_errors(job, sd):
    errs = [f"{job}: kubernetes_sd_configs field {k} unknown" for k in sd if k not in K8S_SD_FIELDS]
    if sd.get("role") not in K8S_SD_ROLES:
        errs.append(f"{job}: kubernetes_sd_configs role {sd.get('role')!r} unknown")
    for sel in sd.get("selectors") or []:
        if sel.get("role") not in K8S_SD_ROLES:
            errs.append(f"{job}: selector role {sel.get('role')!r} unknown")
    return errs


def grafana_vars(expr):
    e = re.sub(r"\$__rate_interval|\$__interval|\$__range|\$\{__range\}|\$\{__rate_interval\}", "5m", expr)
    e = re.sub(r"\$\{(\w+)(:\w+)?\}|\$(\w+)", "x", e)
    return e


def check_real_tools(objs, tmp):
    # Prometheus replicas.
    d = extract(objs, "prometheus-config", tmp)
    # Files the pods have (the service-account token and CA) stand in as
    # placeholders under tmp: promtool checks that they exist.
    cfg = placeholder_files(yaml.safe_load((d / "prometheus.yml").read_text()), pathlib.Path(tmp) / "pod-files")
    (d / "prometheus.checked.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    rc, out = run(["promtool", "check", "config", str(d / "prometheus.checked.yml")])
    name = "promtool check config: prometheus.yml of ConfigMap prometheus-config (with meta-rules.yml)"
    missing_sd = [l for l in out.splitlines() if "not found in type config.ScrapeConfig" in l]
    if rc != 0 and missing_sd and all("kubernetes_sd_configs" in l for l in missing_sd):
        # Debian's promtool is built without Kubernetes service discovery
        # (it rejects the field itself). Check the same file with each
        # kubernetes_sd_configs block swapped for a file_sd_configs one, so
        # everything else (relabelling, remote_write, alerting, external
        # labels, rule files) is checked by promtool, and the Kubernetes SD
        # blocks against the upstream field list below.
        sd_errs = []
        for job in cfg["scrape_configs"]:
            for sd in job.pop("kubernetes_sd_configs", None) or []:
                sd_errs += kubernetes_sd_errors(job["job_name"], sd)
                job.setdefault("file_sd_configs", []).append({"files": ["/etc/prometheus/targets/*.json"]})
        (d / "prometheus-no-k8s-sd.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        rc, out = run(["promtool", "check", "config", str(d / "prometheus-no-k8s-sd.yml")])
        check(name + " [this promtool lacks Kubernetes SD: kubernetes_sd_configs checked against the upstream "
              "fields, the rest by promtool]", rc == 0 and not sd_errs, out + "; ".join(sd_errs))
    else:
        check(name, rc == 0, out)
    # Mimir's ruler: the rule files it loads.
    d = extract(objs, "mimir-rules", tmp)
    files = sorted(str(p) for p in d.iterdir())
    rc, out = run(["promtool", "check", "rules", *files])
    check(f"promtool check rules: the {len(files)} rule files of ConfigMap mimir-rules (Mimir's ruler)",
          rc == 0 and len(files) > 0, out)
    same = all((DEPLOY / "prometheus/rules" / pathlib.Path(f).name).read_text() == pathlib.Path(f).read_text()
               for f in files) and len(files) == len(list((DEPLOY / "prometheus/rules").glob("*.yml")))
    check("Mimir's ruler loads exactly the rule files of deploy/prometheus/rules", same)
    # Alertmanager.
    d = extract(objs, "alertmanager-config", tmp)
    amcfg = d / "alertmanager.yml"
    rc, out = run(["amtool", "check-config", str(amcfg)])
    check("amtool check-config: alertmanager.yml of ConfigMap alertmanager-config", rc == 0, out)
    check("Alertmanager runs the routing of deploy/alertmanager/alertmanager.yml unchanged",
          amcfg.read_text() == (DEPLOY / "alertmanager/alertmanager.yml").read_text())
    for want, labels in (("pagerduty", ["severity=critical", "alertname=HighErrorRate", "service=api"]),
                         ("slack-notifications", ["severity=warning", "alertname=HighResponseTime"]),
                         ("pagerduty", ["severity=critical", "alertname=RemoteWriteFailing"])):
        rc, out = run(["amtool", "config", "routes", "test", f"--config.file={amcfg}",
                       f"--verify.receivers={want}", *labels])
        check(f"amtool config routes test (production config): {' '.join(labels)} -> {want}", rc == 0, out)
    # The meta-alerts link to a runbook that exists.
    meta = yaml.safe_load(cm_data(objs, "prometheus-config")["meta-rules.yml"])
    headings = {re.sub(r"[^\w\- ]", "", l[3:].strip().lower()).replace(" ", "-")
                for l in (ROOT / "docs/runbooks.md").read_text().splitlines() if l.startswith("## ")}
    bad = [r["alert"] for g in meta["groups"] for r in g["rules"] if "alert" in r and (
        r["labels"].get("severity") not in ("critical", "warning")
        or r["annotations"].get("runbook_url", "").split("#")[-1] not in headings)]
    check("meta-rules.yml: every alert has a severity and a runbook_url anchor of docs/runbooks.md", not bad, bad)
    # Grafana: every Prometheus query of the provisioned dashboards parses
    # (promtool's PromQL parser, via a rules file of one recording rule each).
    assets = load_module(DEPLOY / "tools/check_assets.py", "glimpse_check_assets")
    dash = cm_data(objs, "grafana-dashboards")
    rules, n = [], 0
    for name, text in sorted(dash.items()):
        for where, expr in assets.prom_queries(json.loads(text)):
            n += 1
            rules.append({"record": f"glimpse:grafana_query_{n}", "expr": grafana_vars(expr),
                          "labels": {"dashboard": name, "where": where[:100]}})
    qf = pathlib.Path(tmp) / "grafana-queries.yml"
    qf.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    rc, out = run(["promtool", "check", "rules", str(qf)])
    check(f"promtool parses all {n} PromQL queries of the dashboards in ConfigMap grafana-dashboards",
          rc == 0 and n > 0, out)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url, data=None, timeout=3):
    import urllib.request
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def check_alertmanager_cluster(objs, tmp):
    """Three real Alertmanagers with the StatefulSet's arguments (addresses
    moved to loopback) and the production config form one gossip cluster and
    share silences."""
    import time
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not binary:
        check("Alertmanager binary found for the cluster check", False, "install prometheus-alertmanager")
        return
    am = by_kind(objs, "StatefulSet")["alertmanager"]
    n = am["spec"]["replicas"]
    base = pathlib.Path(tmp) / "am-cluster"
    secrets = base / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "pagerduty_routing_key").write_text("0123456789abcdef0123456789abcdef\n")
    (secrets / "slack_webhook_url").write_text("http://127.0.0.1:9/slack\n")
    cfg = cm_data(objs, "alertmanager-config")["alertmanager.yml"].replace(
        mount_of(am, "secrets") + "/", str(secrets) + "/")
    (base / "alertmanager.yml").write_text(cfg)
    web = [free_port() for _ in range(n)]
    mesh = [free_port() for _ in range(n)]
    procs = []
    try:
        for i in range(n):
            args = []
            for a in args_of(am, "alertmanager"):
                k = a.split("=", 1)[0]
                if k == "--config.file":
                    a = f"{k}={base / 'alertmanager.yml'}"
                elif k == "--storage.path":
                    a = f"{k}={base / f'data-{i}'}"
                elif k == "--web.listen-address":
                    a = f"{k}=127.0.0.1:{web[i]}"
                elif k == "--cluster.listen-address":
                    a = f"{k}=127.0.0.1:{mesh[i]}"
                elif k == "--cluster.advertise-address":
                    a = f"{k}=127.0.0.1:{mesh[i]}"
                elif k == "--cluster.peer":
                    j = int(re.match(r"--cluster\.peer=alertmanager-(\d+)\.", a).group(1))
                    a = f"{k}=127.0.0.1:{mesh[j]}"
                args.append(a)
            log = open(base / f"am-{i}.log", "w")
            procs.append(subprocess.Popen([binary, *args], stdout=log, stderr=subprocess.STDOUT))
        peers = []
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                peers = [len(http_json(f"http://127.0.0.1:{p}/api/v2/status")["cluster"].get("peers") or [])
                         for p in web]
                if peers == [n] * n:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        check(f"Alertmanager: {n} real peers with the StatefulSet's cluster flags form one gossip cluster",
              peers == [n] * n, f"peers seen by each: {peers}; " + (base / "am-0.log").read_text()[-800:])
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        sil = http_json(f"http://127.0.0.1:{web[0]}/api/v2/silences", {
            "matchers": [{"name": "alertname", "value": "GossipCheck", "isRegex": False, "isEqual": True}],
            "startsAt": now, "endsAt": end, "createdBy": "check_production.py", "comment": "gossip check"})
        seen = []
        deadline = time.time() + 15
        while time.time() < deadline:
            seen = [any(x["id"] == sil["silenceID"] for x in http_json(f"http://127.0.0.1:{p}/api/v2/silences"))
                    for p in web[1:]]
            if all(seen):
                break
            time.sleep(0.5)
        check("Alertmanager: a silence created on one peer reaches the others by gossip", seen and all(seen), seen)
    except (OSError, ValueError, KeyError) as e:
        check("Alertmanager cluster check ran", False, repr(e))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


# ------------------------------------------------------------------ 4. collector
def deep_merge(a, b):
    """The collector's merge of several --config files: maps merge key by key,
    anything else is replaced by the later file."""
    out = copy.deepcopy(a)
    for k, v in (b or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def collector_errors(cfg):
    """Problems of one merged collector config; [] when it is sound."""
    errs = []
    kinds = ("receivers", "processors", "exporters", "connectors", "extensions")
    defined = {k: set((cfg.get(k) or {}).keys()) for k in kinds}
    for k in kinds:
        for cid in defined[k]:
            typ = cid.split("/", 1)[0]
            if typ not in OTELCOL_COMPONENTS[k]:
                errs.append(f"{k[:-1]} {cid}: type {typ!r} is not a {k[:-1]} of {OTELCOL_IMAGE}")
    svc = cfg.get("service") or {}
    pipes = svc.get("pipelines") or {}
    if not pipes:
        errs.append("service.pipelines is empty")
    used = {k: set() for k in kinds}
    for ext in svc.get("extensions") or []:
        used["extensions"].add(ext)
        if ext not in defined["extensions"]:
            errs.append(f"service.extensions: {ext} is not defined")
    for pname, p in pipes.items():
        ptype = pname.split("/", 1)[0]
        if ptype not in ("traces", "metrics", "logs"):
            errs.append(f"pipeline {pname}: unknown signal {ptype}")
        if not p.get("receivers"):
            errs.append(f"pipeline {pname}: no receivers")
        if not p.get("exporters"):
            errs.append(f"pipeline {pname}: no exporters")
        for k in ("receivers", "processors", "exporters"):
            for cid in p.get(k) or []:
                if cid in defined[k]:
                    used[k].add(cid)
                elif k in ("receivers", "exporters") and cid in defined["connectors"]:
                    used["connectors"].add(cid)
                else:
                    errs.append(f"pipeline {pname}: {k[:-1]} {cid} is not defined")
            if len(set(p.get(k) or [])) != len(p.get(k) or []):
                errs.append(f"pipeline {pname}: a {k[:-1]} is listed twice")
        procs = p.get("processors") or []
        if "memory_limiter" in procs and procs[0] != "memory_limiter":
            errs.append(f"pipeline {pname}: memory_limiter must be the first processor")
        if "batch" in procs and "tail_sampling" in procs and procs.index("batch") < procs.index("tail_sampling"):
            errs.append(f"pipeline {pname}: batch before tail_sampling splits traces")
    for k in kinds:
        for cid in sorted(defined[k] - used[k]):
            errs.append(f"{k[:-1]} {cid} is defined but in no pipeline")
    return errs


def collector_configs(objs):
    """{workload name: (merged config, [file names])} from the --config flags."""
    out = {}
    for o in workloads(objs):
        for c in containers(o):
            if not c["image"].startswith("otel/opentelemetry-collector"):
                continue
            check(f"{o['metadata']['name']}: collector image is the pinned {OTELCOL_IMAGE}", c["image"] == OTELCOL_IMAGE,
                  c["image"])
            files = [a.split("=", 1)[1] for a in c.get("args") or [] if a.startswith("--config=")]
            merged, names = {}, []
            for f in files:
                mount = pathlib.PurePosixPath(f).parent
                vol = next(m["name"] for m in c["volumeMounts"] if m["mountPath"] == str(mount))
                cm = next(v["configMap"]["name"] for v in pod_spec(o)["volumes"] if v["name"] == vol)
                text = cm_data(objs, cm)[pathlib.PurePosixPath(f).name]
                merged = deep_merge(merged, yaml.safe_load(text))
                names.append(f"{cm}:{pathlib.PurePosixPath(f).name}")
            out[o["metadata"]["name"]] = (merged, names)
    return out


def check_collector(objs):
    # Self-test: the checker finds what it must find.
    bad = {"receivers": {"otlp": {}}, "exporters": {"otlp": {}, "debug": {}},
           "processors": {"batch": {}, "bogus_proc": {}},
           "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch", "tail_sampling"],
                                                "exporters": ["otlp"]}}}}
    errs = collector_errors(bad)
    want = ["tail_sampling is not defined", "debug is defined but in no pipeline", "'bogus_proc' is not a processor"]
    check("collector checker self-test: dangling, unused and unknown components are reported",
          all(any(w in e for e in errs) for w in want), "; ".join(errs))

    cfgs = collector_configs(objs)
    check("collector workloads: otel-agent (DaemonSet) and otel-gateway found", {"otel-agent", "otel-gateway"} <= set(cfgs),
          ", ".join(cfgs))
    for name, (cfg, files) in sorted(cfgs.items()):
        errs = collector_errors(cfg)
        check(f"collector {name} ({' + '.join(files)}): every pipeline component defined, every defined one used, "
              f"every type in {OTELCOL_IMAGE}", not errs, "; ".join(errs))
    services = by_kind(objs, "Service")
    if "otel-agent" in cfgs:
        cfg = cfgs["otel-agent"][0]
        lb = (cfg.get("exporters") or {}).get("loadbalancing") or {}
        check("agent: loadbalancing exporter keyed by traceID", lb.get("routing_key") == "traceID", lb.get("routing_key"))
        host = ((lb.get("resolver") or {}).get("dns") or {}).get("hostname", "")
        svc = services.get(host.split(".")[0])
        check("agent: loadbalancing resolves a headless Service of the gateway pods",
              svc is not None and svc["spec"].get("clusterIP") == "None"
              and svc["spec"]["selector"] == by_kind(objs, "Deployment")["otel-gateway"]["spec"]["selector"]["matchLabels"],
              host)
        traces = cfg["service"]["pipelines"].get("traces", {})
        check("agent: the traces pipeline exports only through loadbalancing (no sampling before the gateway)",
              traces.get("exporters") == ["loadbalancing"]
              and not any(p.split("/")[0] in ("tail_sampling", "probabilistic_sampler") for p in traces.get("processors", [])))
    if "otel-gateway" in cfgs:
        cfg, files = cfgs["otel-gateway"]
        ts = (cfg.get("processors") or {}).get("tail_sampling") or {}
        pol = ts.get("policies") or []
        types = [p.get("type") for p in pol]
        check("gateway: every tail_sampling policy has a known type and a unique name",
              all(t in TAIL_POLICY_TYPES for t in types) and len({p.get("name") for p in pol}) == len(pol), types)
        errors = [p for p in pol if p.get("type") == "status_code"
                  and (p.get("status_code") or {}).get("status_codes") == ["ERROR"]]
        slow = [p for p in pol if p.get("type") == "latency"
                and (p.get("latency") or {}).get("threshold_ms") == P95_KPI_MS]
        share = [p for p in pol if p.get("type") == "probabilistic"
                 and 0 < float((p.get("probabilistic") or {}).get("sampling_percentage", 0)) < 100]
        check(f"gateway: tail_sampling keeps all errors, all traces slower than the p95 KPI ({P95_KPI_MS} ms), "
              "a probabilistic share of the rest", errors and slow and share and len(pol) == 3, types)
        sampling_files = [f for f in files if "tail_sampling" in yaml.safe_load(
            cm_data(objs, f.split(":")[0])[f.split(":")[1]]).get("processors", {})]
        check("gateway: the sampling rules are in one file (sampling.yaml)",
              sampling_files == ["otel-gateway-config:sampling.yaml"], sampling_files)
        exp = (cfg.get("exporters") or {}).get("otlp/jaeger") or {}
        host, _, port = exp.get("endpoint", "").rpartition(":")
        svc = services.get(host.split(".")[0])
        check("gateway: exports to the jaeger-collector Service's OTLP port",
              svc is not None and any(str(p["port"]) == port for p in svc["spec"]["ports"]), exp.get("endpoint"))


# ------------------------------------------------------------------ 5. wiring
def check_wiring(objs):
    sts = by_kind(objs, "StatefulSet")
    services = by_kind(objs, "Service")
    cms = by_kind(objs, "ConfigMap")

    prom = sts["prometheus"]
    pcfg = yaml.safe_load(cm_data(objs, "prometheus-config")["prometheus.yml"])
    ext = pcfg["global"].get("external_labels", {})
    env = env_of(prom)
    check("Prometheus: an HA pair (2 replicas of one StatefulSet, one ConfigMap)", prom["spec"]["replicas"] == 2)
    check("Prometheus: external_labels cluster + replica=${POD_NAME} (pod name, expand-external-labels)",
          ext.get("cluster") and ext.get("replica") == "${POD_NAME}"
          and env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name"
          and "--enable-feature=expand-external-labels" in args_of(prom), ext)
    check("Prometheus: pods discovered by Kubernetes SD and kept by the prometheus.io/scrape annotation",
          any(any(sd.get("role") == "pod" for sd in j.get("kubernetes_sd_configs", []))
              and any(r.get("action") == "keep" and r.get("source_labels") ==
                      ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"] for r in j.get("relabel_configs", []))
              for j in pcfg["scrape_configs"]))
    check("Prometheus: the Glimpse rules are not evaluated by the replicas (only meta-rules.yml)",
          pcfg.get("rule_files") == ["meta-rules.yml"], pcfg.get("rule_files"))
    check("Prometheus: alerts leave without the replica label (Alertmanager deduplicates the pair)",
          any(r.get("action") == "labeldrop" and r.get("regex") == "replica"
              for r in pcfg["alerting"].get("alert_relabel_configs", [])))
    mimir = yaml.safe_load(cm_data(objs, "mimir-config")["mimir.yaml"])
    rw = pcfg.get("remote_write", [{}])[0].get("url", "")
    m = re.match(r"https?://([^.:/]+)[^:/]*:(\d+)(/.*)$", rw)
    check("Prometheus: remote_write to Mimir's Service, push path",
          m and m.group(1) in services and m.group(3) == "/api/v1/push"
          and any(str(p["port"]) == m.group(2) for p in services[m.group(1)]["spec"]["ports"]), rw)
    lim = mimir.get("limits", {})
    check("Mimir: HA tracker on, keyed by the replicas' cluster/replica labels, on etcd",
          mimir["distributor"]["ha_tracker"]["enable_ha_tracker"] and lim.get("accept_ha_samples")
          and lim.get("ha_cluster_label") == "cluster" and lim.get("ha_replica_label") == "replica"
          and mimir["distributor"]["ha_tracker"]["kvstore"]["store"] == "etcd" and "etcd" in sts)
    rules_mount = mount_of(sts["mimir"], "rules")
    check("Mimir: ruler storage is the mimir-rules ConfigMap, as tenant anonymous",
          mimir["ruler_storage"]["local"]["directory"] + "/anonymous" == rules_mount
          and not mimir.get("multitenancy_enabled", True), rules_mount)
    am = sts["alertmanager"]
    peers = [a.split("=", 1)[1] for a in args_of(am) if a.startswith("--cluster.peer=")]
    want = [f"alertmanager-{i}.alertmanager.observability.svc:9094" for i in range(am["spec"]["replicas"])]
    check("Alertmanager: 3 replicas gossiping with every peer by its stable DNS name",
          am["spec"]["replicas"] == 3 and sorted(peers) == want and am["spec"]["serviceName"] == "alertmanager"
          and services["alertmanager"]["spec"].get("clusterIP") == "None", peers)
    am_urls = sorted(u.split("//")[1] for u in mimir["ruler"]["alertmanager_url"].split(","))
    prom_ams = sorted(t for a in pcfg["alerting"]["alertmanagers"] for sc in a["static_configs"] for t in sc["targets"])
    want_http = [p.replace(":9094", ":9093") for p in want]
    check("Mimir's ruler and the Prometheus replicas send alerts to every Alertmanager peer",
          am_urls == want_http and prom_ams == want_http, f"{am_urls} {prom_ams}")
    amcfg = yaml.safe_load(cm_data(objs, "alertmanager-config")["alertmanager.yml"])
    files = {v for r in amcfg["receivers"] for kind, cs in r.items() if kind != "name"
             for c in cs for k, v in c.items() if k.endswith("_file")}
    mount = mount_of(am, "secrets")
    check("Alertmanager: every *_file secret of the config lives in the mounted Secret alertmanager-secrets",
          files and all(str(pathlib.PurePosixPath(f).parent) == mount for f in files), sorted(files))
    es = sts["elasticsearch"]
    e = {k: v.get("value") for k, v in env_of(es).items()}
    check("Elasticsearch: 3 master-eligible data nodes, initial masters = the pods",
          es["spec"]["replicas"] == 3 and "master" in e["node.roles"] and "data_hot" in e["node.roles"]
          and e["cluster.initial_master_nodes"].split(",") == [f"elasticsearch-{i}" for i in range(3)])
    ls = sts["logstash"]
    lcfg = yaml.safe_load(cm_data(objs, "logstash-config")["logstash.yml"])
    data = mount_of(ls, "data")
    check("Logstash: 2+ replicas, persisted queue on each pod's own volume",
          ls["spec"]["replicas"] >= 2 and lcfg.get("queue.type") == "persisted"
          and lcfg.get("path.data") == data and any(t["metadata"]["name"] == "data"
                                                    for t in ls["spec"].get("volumeClaimTemplates", [])))
    pipe = cm_data(objs, "logstash-pipeline")["glimpse.conf"]
    check("Logstash: the production pipeline is deploy/logging's, with credentials from env only",
          '"${ELASTICSEARCH_PASSWORD}"' in pipe and "data_stream_auto_routing => true" in pipe)
    fb = yaml.safe_load(cm_data(objs, "filebeat-config")["filebeat.yml"])
    want_ls = [f"logstash-{i}.logstash.observability.svc:5044" for i in range(ls["spec"]["replicas"])]
    check("Filebeat: load-balances over every Logstash replica",
          fb["output.logstash"]["hosts"] == want_ls and fb["output.logstash"].get("loadbalance") is True)
    check("Filebeat: drops lines without log_type, as the local filebeat.yml does",
          fb["processors"] == yaml.safe_load((DEPLOY / "logging/filebeat/filebeat.yml").read_text())["processors"])

    # Grafana: datasources, provider path, dashboards.
    ds = yaml.safe_load(cm_data(objs, "grafana-datasources")["datasources.yml"])
    uids = {d["uid"]: d for d in ds["datasources"]}
    used = set()
    for text in cm_data(objs, "grafana-dashboards").values():
        for m in re.finditer(r'"datasource":\s*\{[^}]*?"uid":\s*"([^"$]+)"', text):
            if not m.group(1).startswith("-- "):  # Grafana's built-in annotation source
                used.add(m.group(1))
    check("Grafana: every datasource uid the dashboards use is provisioned", used and used <= set(uids),
          sorted(used - set(uids)))
    bad = []
    for d in ds["datasources"]:
        m = re.match(r"https?://([^.:/]+)[^:/]*:(\d+)", d["url"])
        if not m or m.group(1) not in services or not any(
                str(p["port"]) == m.group(2) for p in services[m.group(1)]["spec"]["ports"]):
            bad.append(d["url"])
    check("Grafana: every datasource URL is a Service (and port) of deploy/production", not bad, bad)
    check("Grafana: datasources are Mimir, Elasticsearch, Jaeger (apiVersion 1, types known)",
          ds.get("apiVersion") == 1 and {d["type"] for d in ds["datasources"]} == {"prometheus", "elasticsearch", "jaeger"}
          and uids["prometheus"]["url"].endswith("/prometheus"))
    gdep = by_kind(objs, "Deployment")["grafana"]
    genv = env_of(gdep)
    refs = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", cm_data(objs, "grafana-datasources")["datasources.yml"]))
    check("Grafana: the variables the datasources expand are set from Secrets", refs and all(
        "secretKeyRef" in genv.get(r, {}).get("valueFrom", {}) for r in refs), sorted(refs))
    prov = yaml.safe_load(cm_data(objs, "grafana-dashboards-provider")["dashboards.yml"])
    check("Grafana: the dashboard provider reads where the dashboards ConfigMap is mounted",
          prov["providers"][0]["options"]["path"] == mount_of(gdep, "dashboards"))
    dashes = [json.loads(t) for t in cm_data(objs, "grafana-dashboards").values()]
    check("Grafana: 4 dashboards with unique uids and titles", len(dashes) == 4
          and len({d["uid"] for d in dashes}) == 4 and len({d["title"] for d in dashes}) == 4)

    # References between objects.
    problems = []
    sas = by_kind(objs, "ServiceAccount")
    for o in workloads(objs):
        n = f"{o['kind']}/{o['metadata']['name']}"
        ps = pod_spec(o)
        if ps.get("serviceAccountName") and ps["serviceAccountName"] not in sas:
            problems.append(f"{n}: ServiceAccount {ps['serviceAccountName']} missing")
        for v in ps.get("volumes") or []:
            if "configMap" in v:
                cm = cms.get(v["configMap"]["name"])
                if cm is None:
                    problems.append(f"{n}: ConfigMap {v['configMap']['name']} missing")
                    continue
                for it in v["configMap"].get("items") or []:
                    if it["key"] not in cm["data"]:
                        problems.append(f"{n}: ConfigMap {cm['metadata']['name']} has no key {it['key']}")
        for c in containers(o):
            for mnt in c.get("volumeMounts") or []:
                vol = next((v for v in ps.get("volumes") or [] if v["name"] == mnt["name"]), None)
                tmpl = [t["metadata"]["name"] for t in o["spec"].get("volumeClaimTemplates", [])]
                if vol is None and mnt["name"] not in tmpl:
                    problems.append(f"{n}: volumeMount {mnt['name']} has no volume")
                if vol and "configMap" in vol and mnt.get("subPath") and mnt["subPath"] not in cms.get(
                        vol["configMap"]["name"], {}).get("data", {}):
                    problems.append(f"{n}: subPath {mnt['subPath']} not in its ConfigMap")
            img = c["image"]
            if ":" not in img.split("/")[-1] or img.endswith(":latest"):
                problems.append(f"{n}: image {img} is not pinned")
        if o["kind"] in ("StatefulSet",) and o["spec"]["serviceName"] not in services:
            problems.append(f"{n}: serviceName {o['spec']['serviceName']} is no Service")
    pods = [(o, (o["spec"].get("template") or {}).get("metadata", {}).get("labels", {})) for o in workloads(objs)
            if o["kind"] != "CronJob"]
    for name, s in services.items():
        sel = s["spec"].get("selector") or {}
        match = [o for o, labels in pods if sel and all(labels.get(k) == v for k, v in sel.items())]
        if not match:
            problems.append(f"Service/{name}: selects no pods")
            continue
        ports = {p.get("name") for o in match for c in containers(o) for p in c.get("ports") or []}
        nums = {p["containerPort"] for o in match for c in containers(o) for p in c.get("ports") or []}
        for p in s["spec"]["ports"]:
            t = p.get("targetPort", p["port"])
            if (isinstance(t, str) and t not in ports) or (isinstance(t, int) and t not in nums):
                problems.append(f"Service/{name}: targetPort {t} is no container port")
    for name, pdb in by_kind(objs, "PodDisruptionBudget").items():
        sel = pdb["spec"]["selector"]["matchLabels"]
        if not any(all(labels.get(k) == v for k, v in sel.items()) for _, labels in pods):
            problems.append(f"PodDisruptionBudget/{name}: selects no pods")
    check("references: ServiceAccounts, ConfigMaps (and keys, subPaths), volumes, Services -> pods -> ports, "
          "PDBs, pinned images", not problems, "; ".join(problems))
    readme = (PROD / "README.md").read_text()
    folders = sorted(p.name for p in PROD.iterdir() if p.is_dir() and re.match(r"\d\d-", p.name))
    check("README.md gives the apply order of every component folder",
          all(f"{f}/" in readme for f in folders), [f for f in folders if f"{f}/" not in readme])


# ------------------------------------------------------------------ 6. secrets
def secret_findings(objs):
    """(literal secrets found, {referenced Secret: keys}) of (file, object) pairs."""
    secrets = {}
    literal = []
    for _, o in objs:
        if o.get("kind") == "Secret":
            literal.append(f"Secret/{o['metadata']['name']} is in the repository")
    for o in workloads(objs):
        ps = pod_spec(o)
        for v in ps.get("volumes") or []:
            if "secret" in v:
                secrets.setdefault(v["secret"]["secretName"], set())
        for c in containers(o):
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    secrets.setdefault(ref["name"], set()).add(ref["key"])
                elif SECRETISH.search(e["name"]) and "value" in e:
                    literal.append(f"{o['metadata']['name']}: env {e['name']} has a literal value")
            for ef in c.get("envFrom") or []:
                if "secretRef" in ef:
                    secrets.setdefault(ef["secretRef"]["name"], set())
    # Config files: secret-looking keys must be env references or *_file paths.
    for name, cm in by_kind(objs, "ConfigMap").items():
        for key, text in cm["data"].items():
            for m in re.finditer(r"^\s*([\w.]*(?:password|secret|token|api_key|access_key)[\w.]*)\s*(?::|=>)\s*(\S.*)$",
                                 text, re.I | re.M):
                val = m.group(2).strip().strip("'\"")
                if not (val.startswith("${") or val.startswith("$(") or m.group(1).lower().endswith("_file")
                        or val in ("", "true", "false") or val.startswith("#")):
                    literal.append(f"ConfigMap {name}/{key}: {m.group(1)} has a literal value")
    return literal, secrets


def check_secrets(objs):
    readme = (PROD / "README.md").read_text()
    # Self-test: the detector finds each kind of leak.
    leaky = [(None, {"kind": "Secret", "metadata": {"name": "s"}, "data": {}}),
             (None, {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [
                 {"name": "c", "image": "i:1", "env": [{"name": "DB_PASSWORD", "value": "hunter2"}]}]}}}}),
             (None, {"kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a.yml": "auth:\n  api_key: abc123\n"}})]
    found, _ = secret_findings(leaky)
    check("secret detector self-test: a Secret object, a literal env password, a literal key in a config file",
          len(found) == 3, found)
    literal, secrets = secret_findings(objs)
    check("no Secret object and no literal secret value in deploy/production", not literal, "; ".join(literal))
    missing = [f"{s}" + (f" ({', '.join(sorted(k))})" if k else "") for s, k in sorted(secrets.items())
               if f"`{s}`" not in readme or any(f"`{key}`" not in readme for key in k)]
    check(f"README.md lists every Secret the manifests reference, with its keys ({len(secrets)} Secrets)",
          not missing, "; ".join(missing))


def main():
    objs = load_objects()
    check_generated()
    check_schemas()
    with tempfile.TemporaryDirectory() as tmp:
        check_real_tools(objs, tmp)
        check_alertmanager_cluster(objs, tmp)
    check_collector(objs)
    check_wiring(objs)
    check_secrets(objs)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
