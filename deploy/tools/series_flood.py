#!/usr/bin/env python3
"""Proves the series bound of deploy/tools/capacity.py on the running example
service (run by .ci/series-bound.sh, itself run by .ci/e2e.sh).

  series_flood.py APP_URL METRICS_URL [REQUESTS]

Floods the example service with random values for every label a caller can
feed it (API key IDs in X-Api-Key, currencies of POST /payments; every other
label value of the example is a constant of its code), random paths, random
methods (the nine with a label of their own and extension methods, which
become `_OTHER`), random and broken bodies, random bearer users, WebSocket
upgrades (completed and refused); then reads /metrics and checks, per metric
family and in total, that the number of series is at most the bound that
`capacity.py series --json --profile deploy/tools/capacity/example-service.json`
computes, that every metric on /metrics is in that catalogue, that every
(route, status) seen is one the profile declares, and that the capped
families the flood drives past the cap sit exactly at their bound (the bound
is reached, not only respected). One `ok - ` / `FAIL - ` line per check;
exit 1 on failure. Loopback only, bounded: about REQUESTS requests (3000).
"""
import base64
import concurrent.futures
import http.client
import json
import os
import pathlib
import random
import re
import socket
import string
import subprocess
import sys
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROFILE = ROOT / "deploy/tools/capacity/example-service.json"
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE",
           "PURGE", "BREW", "PROPFIND", "X-RANDOM"]
ROUTES = ["/health", "/users", "/users/{id}", "/matches", "/messages", "/payments", "/slow", "/error", "/ws/chat"]

results = []


def check(name, ok, why=""):
    results.append(bool(ok))
    print(f"ok - {name}" if ok else f"FAIL - {name}: {why}")


def rword(rng, n=None):
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(n or rng.randint(1, 12)))


def iso_4217():
    """The ISO 4217 codes the crate accepts (its own table): only those take a
    slot of the currency label, anything else is `other` at once."""
    src = (pathlib.Path(__file__).resolve().parents[2] / "src/metrics/business.rs").read_text()
    table = src[src.index("const ISO_4217"):]
    table = table[:table.index("];")]
    return re.findall(r'b"([A-Z]{3})"', table)


ISO_CODES = None


def currency(rng):
    """Mostly real codes (they fill the cap, more of them than it admits),
    some junk (which must never take a slot)."""
    global ISO_CODES
    if ISO_CODES is None:
        ISO_CODES = iso_4217()
    if rng.random() < 0.1:
        return "".join(rng.choice(string.ascii_uppercase) for _ in range(3))
    return rng.choice(ISO_CODES)


def request(host, port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection(host, port, timeout=15)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        r.read()
        return r.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        c.close()


def websocket(host, port, rng, complete=True):
    """A WebSocket handshake on /ws/chat; a message and a close when `complete`."""
    key = base64.b64encode(os.urandom(16)).decode()
    hdr = (f"GET /ws/chat HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Version: {13 if complete else 8}\r\nSec-WebSocket-Key: {key}\r\n"
           f"X-Api-Key: k{rng.randrange(10**9)}.s\r\n\r\n")
    try:
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(hdr.encode())
            resp = s.recv(4096)
            if complete and resp.startswith(b"HTTP/1.1 101"):
                payload = b"hi"
                mask = os.urandom(4)
                s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
                s.recv(4096)
                mask = os.urandom(4)
                close = (1000).to_bytes(2, "big")
                s.sendall(bytes([0x88, 0x80 | len(close)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(close)))
                try:
                    s.recv(4096)
                except OSError:
                    pass
            return resp.split(b"\r\n", 1)[0].decode(errors="replace")
    except OSError:
        return None


def one(host, port, i, seed):
    rng = random.Random(seed * 100003 + i)
    headers = {}
    if rng.random() < 0.7:
        headers["X-Api-Key"] = f"k{rng.randrange(10**9)}.{rword(rng)}" if rng.random() < 0.9 else rword(rng)
    if rng.random() < 0.5:
        headers["Authorization"] = rng.choice([f"Bearer {rword(rng)}", f"Bearer admin{rword(rng)}", "Basic xyz", "Bearer "])
    kind = rng.random()
    method = rng.choice(METHODS)
    body = None
    if kind < 0.25:  # a payment with a random currency
        method = "POST" if rng.random() < 0.9 else method
        path = "/payments"
        card = rng.choice(["4242424242424242", "4000000000000002", "4000 0000 0000 0002"])
        body = json.dumps({"amount_minor": rng.randrange(1, 10**6), "currency": currency(rng)
                           if rng.random() < 0.95 else rword(rng), "card": card})
        headers["content-type"] = "application/json"
    elif kind < 0.45:  # a random path
        path = "/" + "/".join(rword(rng) for _ in range(rng.randint(1, 4)))
        if rng.random() < 0.3:
            path += "?" + urllib.parse.urlencode({rword(rng): rword(rng)})
    elif kind < 0.9:  # a known route, random method, maybe a broken body
        path = rng.choice(ROUTES)
        if path == "/users/{id}":
            path = "/users/" + rng.choice([str(rng.randrange(1, 50)), rword(rng), "%FF%FE"])
        if path == "/slow":
            path = "/slow?ms=" + rng.choice(["1", "5", "abc", "-3"])
        if method in ("POST", "PUT", "PATCH") or rng.random() < 0.2:
            r = rng.random()
            if r < 0.4:
                body = json.dumps({"email": f"{rword(rng)}@{rword(rng)}.x" if rng.random() < 0.8 else rword(rng),
                                   "password": rword(rng), "user_id": rword(rng), "other_id": rword(rng),
                                   "match_id": rword(rng), "text": rword(rng)})
                headers["content-type"] = "application/json"
            elif r < 0.6:
                body = "{not json"
                headers["content-type"] = "application/json"
            elif r < 0.8:
                body = json.dumps({"unexpected": 1})
                headers["content-type"] = "application/json"
            else:
                body = "plain"
                headers["content-type"] = "text/plain"
    else:  # a duplicate registration (409)
        method, path = "POST", "/users"
        body = json.dumps({"email": "dup@example.com", "password": "pw"})
        headers["content-type"] = "application/json"
    return request(host, port, method, path, body, headers)


def families(text):
    """{family: number of series} of a Prometheus text exposition."""
    types, counts = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(None, 3)
            types[name] = typ
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0)
        fam = name
        for suf in ("_bucket", "_sum", "_count"):
            if name.endswith(suf) and types.get(name[: -len(suf)]) in ("histogram", "summary"):
                fam = name[: -len(suf)]
        counts[fam] = counts.get(fam, 0) + 1
    return counts


def main():
    app, metrics = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
    u = urllib.parse.urlparse(app)
    host, port = u.hostname, u.port
    seed = int(os.environ.get("SERIES_FLOOD_SEED", random.randrange(10**6)))
    print(f"# seed {seed} (SERIES_FLOOD_SEED), {n} requests")
    statuses = {}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for st in pool.map(lambda i: one(host, port, i, seed), range(n)):
            statuses[st] = statuses.get(st, 0) + 1
    rng = random.Random(seed)
    ws = [websocket(host, port, rng, complete=i % 3 != 0) for i in range(12)]
    # A body over the 2 MB default limit (413) and a non-upgradable GET (426/400).
    statuses[request(host, port, "POST", "/users", "x" * (2 * 1024 * 1024 + 10),
                     {"content-type": "application/json"})] = 1
    statuses[request(host, port, "GET", "/ws/chat", headers={"Connection": "keep-alive"})] = 1
    print(f"# responses by status: {dict(sorted(statuses.items(), key=lambda kv: str(kv[0])))}")
    print(f"# websocket handshakes: {sorted(set(ws))}")
    check("the flood reached the service", sum(v for k, v in statuses.items() if k) > n * 0.9,
          f"statuses {statuses}")

    u = urllib.parse.urlparse(metrics)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
    c.request("GET", u.path or "/metrics")
    text = c.getresponse().read().decode()
    got = families(text)
    total = sum(got.values())
    out = subprocess.run([sys.executable, str(ROOT / "deploy/tools/capacity.py"), "series", "--json",
                          "--profile", str(PROFILE)], capture_output=True, text=True, check=True).stdout
    bound = json.loads(out)
    b = bound["metrics"]
    print(f"# /metrics: {total} series in {len(got)} families; bound {bound['total']} (label_cap {bound['label_cap']})")
    unknown = sorted(set(got) - set(b))
    check("every metric family on /metrics is in capacity.py's catalogue", not unknown, unknown)
    over = [f"{f}: {got[f]} > {b.get(f)}" for f in sorted(got) if f in b and got[f] > b[f]]
    check(f"every metric family has at most capacity.py's bound of series ({len(got)} families)", not over, over)
    check(f"series on /metrics ({total}) <= capacity.py's bound ({bound['total']}) for the example service",
          total <= bound["total"], f"{total} > {bound['total']}")
    # Exactly at the bound where the flood drove the caller-fed labels past the cap.
    for fam in ("glimpse_api_key_requests_total", "glimpse_payments_total", "glimpse_payment_amount_total"):
        check(f"{fam}: past the cap, exactly at the bound ({b[fam]} series)", got.get(fam) == b[fam],
              f"{got.get(fam)} series")
    overflow = set(re.findall(r'glimpse_obs_label_overflow_total\{[^}]*metric="([^"]+)"', text))
    check("glimpse_obs_label_overflow_total counts the flooded families",
          {"glimpse_api_key_requests_total", "glimpse_payments_total"} <= overflow, sorted(overflow))
    methods = set(re.findall(r'http_server_request_duration_seconds_count\{[^}]*method="([^"]+)"', text))
    check("random methods reached the method label, extension methods as _OTHER", "_OTHER" in methods
          and len(methods) >= 8, sorted(methods))
    # Every (route, status) on /metrics is one the profile declares.
    prof = json.loads(PROFILE.read_text())
    declared = {(r["template"], str(s)) for r in prof["routes"] for s in r["statuses"]}
    declared |= {("unmatched", str(s)) for s in prof["unmatched_statuses"]}
    seen = set()
    for line in text.splitlines():
        if line.startswith("http_server_request_duration_seconds_count{"):
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line))
            seen.add((labels["route"], labels["status"]))
    undeclared = sorted(seen - declared)
    check(f"every (route, status) on /metrics is declared in the profile ({len(seen)} of {len(declared)} seen)",
          not undeclared, undeclared)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
