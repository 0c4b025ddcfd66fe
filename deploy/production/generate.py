#!/usr/bin/env python3
"""Generates the ConfigMaps of deploy/production from their source files.

Every configuration file the production stack runs is kept as a plain file
(the shared assets under deploy/, or deploy/production/*/config/) and packed
into a ConfigMap here, so the file that CI checks with promtool, amtool and
our own checks is byte for byte what the ConfigMap mounts
(deploy/tools/check_production.py extracts the ConfigMaps again and checks
the extracted copies).

  python3 deploy/production/generate.py          # rewrite the generated files
  python3 deploy/production/generate.py --check  # exit 1 if one is stale
"""
import pathlib
import sys

import yaml

HERE = pathlib.Path(__file__).resolve().parent
DEPLOY = HERE.parent
ROOT = DEPLOY.parent
NAMESPACE = "observability"


def rel(p):
    return str(pathlib.Path(p).resolve().relative_to(ROOT))


def read(p):
    return pathlib.Path(p).read_text(encoding="utf-8")


# ------------------------------------------------------------------ sources
def logstash_pipeline():
    """deploy/logging/logstash/pipeline/glimpse.conf with the Elasticsearch
    credentials (from the logstash-es Secret, via env) added to its output."""
    src = read(DEPLOY / "logging/logstash/pipeline/glimpse.conf")
    anchor = '    hosts => ["${ELASTICSEARCH_HOSTS:http://elasticsearch:9200}"]\n'
    if src.count(anchor) != 1:
        raise SystemExit("glimpse.conf: the elasticsearch output's hosts line changed; update generate.py")
    return src.replace(
        anchor,
        anchor
        + '    # production (deploy/production/generate.py): credentials from the Secret logstash-es\n'
        + '    user => "${ELASTICSEARCH_USER}"\n'
        + '    password => "${ELASTICSEARCH_PASSWORD}"\n',
    )


def es_setup_files():
    """(ConfigMap key, path under /setup, source file) of the Elasticsearch
    and Kibana setup: setup.sh finds its JSON files relative to itself."""
    out = []
    logging = DEPLOY / "logging"
    files = [logging / "elasticsearch/setup.sh", logging / "elasticsearch/snapshot-repository-s3.json"]
    for sub in ("ilm", "slm", "component-templates", "index-templates"):
        files += sorted((logging / "elasticsearch" / sub).glob("*.json"))
    files.append(logging / "kibana/saved-searches.ndjson")
    for f in files:
        path = str(f.relative_to(logging))
        out.append((path.replace("/", "."), path, f))
    return out


def configmap(name, data, sources, labels):
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels,
                     "annotations": {"glimpse.app/generated-from": ", ".join(sources)}},
        "data": data,
    }


def files_map(paths):
    return {pathlib.Path(p).name: read(p) for p in paths}


def es_setup_job(items):
    env_secret = lambda name, secret, key: {  # noqa: E731
        "name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "elasticsearch-setup", "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/name": "elasticsearch-setup"}},
        "spec": {
            "backoffLimit": 10,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "elasticsearch-setup"}},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{
                        "name": "setup",
                        "image": "curlimages/curl:8.8.0",
                        "command": ["sh", "/setup/elasticsearch/setup.sh"],
                        "env": [
                            {"name": "ELASTICSEARCH_URL", "value": "http://elasticsearch.observability.svc:9200"},
                            {"name": "KIBANA_URL", "value": "http://kibana.observability.svc:5601"},
                            {"name": "ELASTICSEARCH_USER", "value": "elastic"},
                            env_secret("ELASTICSEARCH_PASSWORD", "elasticsearch-credentials", "elastic-password"),
                            env_secret("GLIMPSE_ARCHIVE_BUCKET", "elasticsearch-s3", "bucket"),
                        ],
                        "volumeMounts": [{"name": "setup", "mountPath": "/setup", "readOnly": True}],
                    }],
                    "volumes": [{"name": "setup", "configMap": {
                        "name": "elasticsearch-setup",
                        "defaultMode": 0o555,
                        "items": [{"key": k, "path": p} for k, p, _ in items],
                    }}],
                },
            },
        },
    }


# ------------------------------------------------------------------ outputs
def outputs():
    """{output path: (header sources, [objects])}"""
    prod = HERE
    rules = sorted((DEPLOY / "prometheus/rules").glob("*.yml"))
    dashboards = sorted((DEPLOY / "grafana/dashboards").glob("*.json"))
    es_items = es_setup_files()
    lbl = lambda n: {"app.kubernetes.io/name": n, "app.kubernetes.io/part-of": "glimpse-observability"}  # noqa: E731
    out = {}

    srcs = [prod / "01-mimir/config/mimir.yaml"]
    out[prod / "01-mimir/configmap.yaml"] = (srcs + rules, [
        configmap("mimir-config", files_map(srcs), [rel(p) for p in srcs], lbl("mimir")),
        configmap("mimir-rules", files_map(rules), ["deploy/prometheus/rules/*.yml"], lbl("mimir")),
    ])

    am = DEPLOY / "alertmanager/alertmanager.yml"
    out[prod / "02-alertmanager/configmap.yaml"] = ([am], [
        configmap("alertmanager-config", files_map([am]), [rel(am)], lbl("alertmanager")),
    ])

    srcs = [prod / "03-prometheus/config/prometheus.yml", prod / "03-prometheus/config/meta-rules.yml"]
    out[prod / "03-prometheus/configmap.yaml"] = (srcs, [
        configmap("prometheus-config", files_map(srcs), [rel(p) for p in srcs], lbl("prometheus")),
    ])

    out[prod / "04-elasticsearch/setup-job.yaml"] = ([f for _, _, f in es_items], [
        configmap("elasticsearch-setup", {k: read(f) for k, _, f in es_items},
                  ["deploy/logging/elasticsearch", "deploy/logging/kibana/saved-searches.ndjson"],
                  lbl("elasticsearch-setup")),
        es_setup_job(es_items),
    ])

    ls_cfg = [prod / "05-logstash/config/logstash.yml", DEPLOY / "logging/logstash/pipelines.yml"]
    pipe = DEPLOY / "logging/logstash/pipeline/glimpse.conf"
    out[prod / "05-logstash/configmap.yaml"] = (ls_cfg + [pipe], [
        configmap("logstash-config", files_map(ls_cfg), [rel(p) for p in ls_cfg], lbl("logstash")),
        configmap("logstash-pipeline", {"glimpse.conf": logstash_pipeline()},
                  [rel(pipe) + " (+ output credentials)"], lbl("logstash")),
    ])

    fb = prod / "06-filebeat/config/filebeat.yml"
    out[prod / "06-filebeat/configmap.yaml"] = ([fb], [
        configmap("filebeat-config", files_map([fb]), [rel(fb)], lbl("filebeat")),
    ])

    agent = [prod / "08-otel-collector/config/agent.yaml"]
    gateway = [prod / "08-otel-collector/config/gateway.yaml", prod / "08-otel-collector/config/sampling.yaml"]
    out[prod / "08-otel-collector/configmap.yaml"] = (agent + gateway, [
        configmap("otel-agent-config", files_map(agent), [rel(p) for p in agent], lbl("otel-agent")),
        configmap("otel-gateway-config", files_map(gateway), [rel(p) for p in gateway], lbl("otel-gateway")),
    ])

    ds = prod / "09-grafana/config/datasources.yml"
    prov = DEPLOY / "grafana/provisioning/dashboards/dashboards.yml"
    out[prod / "09-grafana/configmap.yaml"] = ([ds, prov] + dashboards, [
        configmap("grafana-datasources", files_map([ds]), [rel(ds)], lbl("grafana")),
        configmap("grafana-dashboards-provider", files_map([prov]), [rel(prov)], lbl("grafana")),
        configmap("grafana-dashboards", files_map(dashboards), ["deploy/grafana/dashboards/*.json"], lbl("grafana")),
    ])
    return out


class Dumper(yaml.SafeDumper):
    pass


def _str(dumper, s):
    # Multi-line file contents as literal blocks, readable in review.
    if "\n" in s:
        return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", s)


Dumper.add_representer(str, _str)


def render(objs):
    head = ("# GENERATED by deploy/production/generate.py from the files it names in\n"
            "# glimpse.app/generated-from: do not edit, edit those and run\n"
            "#   python3 deploy/production/generate.py\n")
    docs = [yaml.dump(o, Dumper=Dumper, sort_keys=False, width=120, allow_unicode=True) for o in objs]
    return head + "---\n".join(docs)


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for path, (_, objs) in outputs().items():
        text = render(objs)
        # The manifest must round-trip to the very same file contents.
        for o, back in zip(objs, yaml.safe_load_all(text)):
            if o != back:
                raise SystemExit(f"{rel(path)}: does not round-trip through YAML")
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(rel(path))
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {rel(path)}")
    if stale:
        print("stale generated files (run python3 deploy/production/generate.py): " + ", ".join(stale))
        sys.exit(1)


if __name__ == "__main__":
    main()
