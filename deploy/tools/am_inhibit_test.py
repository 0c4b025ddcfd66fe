#!/usr/bin/env python3
"""Checks the inhibition rules of deploy/alertmanager/alertmanager.yml on a
real Alertmanager (started by .ci/ops-check.sh on a loopback port).

    am_inhibit_test.py http://127.0.0.1:PORT

Posts a set of alerts and reads back which are inhibited: a critical alert
mutes the same service's (or, for host alerts, the same instance's) warnings,
never another service's, never security alerts. Prints one ok/FAIL line per
expectation; exits 1 on any failure.
"""
import json
import sys
import time
import urllib.request

BASE = sys.argv[1].rstrip("/")


def alert(name, severity, **labels):
    labels = dict(labels, alertname=name, severity=severity)
    return {"labels": labels, "annotations": {"summary": name}}


ALERTS = [
    alert("HighErrorRate", "critical", service="api", env="production"),
    alert("HighResponseTime", "warning", service="api", env="production"),          # muted
    alert("HighResponseTime", "warning", service="api", env="staging"),             # other env
    alert("HighResponseTime", "warning", service="feed", env="production"),         # other service
    alert("ManyFailedLogins", "warning", service="api", env="production", category="security"),
    alert("SLOBurnRateLatencyP95", "warning", service="api", env="production", slo="latency_p95",
          burn="ticket"),                                                           # muted
    alert("DiskSpaceLow", "critical", instance="node1:9100", mountpoint="/"),
    alert("MemoryUsageHigh", "warning", instance="node1:9100"),                     # muted
    alert("MemoryUsageHigh", "warning", instance="node2:9100"),                     # other host
]
EXPECT_MUTED = {
    ("HighResponseTime", "api", "production", ""): True,
    ("HighResponseTime", "api", "staging", ""): False,
    ("HighResponseTime", "feed", "production", ""): False,
    ("ManyFailedLogins", "api", "production", ""): False,
    ("SLOBurnRateLatencyP95", "api", "production", ""): True,
    ("MemoryUsageHigh", "", "", "node1:9100"): True,
    ("MemoryUsageHigh", "", "", "node2:9100"): False,
    ("HighErrorRate", "api", "production", ""): False,
    ("DiskSpaceLow", "", "", "node1:9100"): False,
}


def key(labels):
    return (labels["alertname"], labels.get("service", ""), labels.get("env", ""), labels.get("instance", ""))


def main():
    req = urllib.request.Request(BASE + "/api/v2/alerts", data=json.dumps(ALERTS).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    urllib.request.urlopen(req, timeout=5).read()
    got = {}
    deadline = time.time() + 10
    while time.time() < deadline:
        with urllib.request.urlopen(BASE + "/api/v2/alerts", timeout=5) as r:
            alerts = json.load(r)
        got = {key(a["labels"]): bool(a["status"]["inhibitedBy"]) for a in alerts}
        if all(got.get(k) == v for k, v in EXPECT_MUTED.items()):
            break
        time.sleep(0.5)
    failed = 0
    for k, want in EXPECT_MUTED.items():
        name = f"inhibition: {k[0]} {'/'.join(x for x in k[1:] if x)} {'muted' if want else 'not muted'}"
        if got.get(k) == want:
            print(f"ok - {name}")
        else:
            failed += 1
            print(f"FAIL - {name}: got {'absent' if k not in got else ('muted' if got[k] else 'not muted')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
