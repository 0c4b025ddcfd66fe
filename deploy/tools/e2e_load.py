#!/usr/bin/env python3
"""Drives load through every route of the example service (DESIGN.md section 7)
for a bounded time, loopback only. Standard library only.

    e2e_load.py http://127.0.0.1:3000 SECONDS

Threads:
  - main: first 110 payments in distinct currencies (label cardinality cap),
    then the HTTP routes in a loop (health, users incl. 404 and cache hits,
    matches, messages, payments incl. the declined card, error, auth failures);
  - slow: GET /slow?ms=... (50 ms .. 1.2 s);
  - ws-long: one WebSocket connection to /ws/chat held for the whole run,
    sending a message every 100 ms (keeps websocket_connections_active > 0);
  - ws-short: short WebSocket connections, opened, used and closed (connection
    duration, closes);
  - probes: GET /health/live and /health/ready every 0.5 s, as Kubernetes does
    (readiness runs the SQLite check once per cache interval).
Prints a summary of status codes; exits 1 if a route never answered as expected.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections import Counter

BASE = urllib.parse.urlparse(sys.argv[1])
HOST, PORT = BASE.hostname, BASE.port
assert HOST in ("127.0.0.1", "localhost", "::1"), "loopback only"
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 35.0
DEADLINE = time.time() + min(SECONDS, 120.0)
MAX_REQUESTS = 20000

stats = Counter()
lock = threading.Lock()
errors = []



# The example verifies bearer tokens: `<user>.<hex HMAC-SHA256 of user>` under
# GLIMPSE_EXAMPLE_TOKEN_KEY (its development default when unset).
TOKEN_KEY = os.environ.get("GLIMPSE_EXAMPLE_TOKEN_KEY", "glimpse-example-development-key").encode()


def bearer(user):
    sig = hmac.new(TOKEN_KEY, user.encode(), hashlib.sha256).hexdigest()
    return f"Bearer {user}.{sig}"


def note(key):
    with lock:
        stats[key] += 1


def request(conn_holder, method, path, body=None, headers=None):
    hdrs = {"content-type": "application/json"} if body is not None else {}
    hdrs.update(headers or {})
    data = json.dumps(body).encode() if body is not None else None
    for attempt in range(2):
        try:
            if conn_holder[0] is None:
                conn_holder[0] = http.client.HTTPConnection(HOST, PORT, timeout=15)
            c = conn_holder[0]
            c.request(method, path, body=data, headers=hdrs)
            r = c.getresponse()
            payload = r.read()
            route = path.split("?")[0]
            if route.startswith("/users/"):
                route = "/users/{id}"
            note(f"{method} {route} {r.status}")
            return r.status, payload
        except (OSError, http.client.HTTPException) as e:
            if conn_holder[0] is not None:
                conn_holder[0].close()
            conn_holder[0] = None
            if attempt:
                note(f"{method} {path.split('?')[0]} error")
                with lock:
                    errors.append(f"{method} {path}: {e!r}")
                return None, b""
    return None, b""


def overflow_currencies():
    """110 distinct currency codes: past the crate's cap of 100 caller-fed label
    values per metric, so glimpse_obs_label_overflow_total counts."""
    conn = [None]
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for n in range(110):
        if time.time() >= DEADLINE:
            break
        code = "Q" + letters[n // 26] + letters[n % 26]
        request(conn, "POST", "/payments", {"amount_minor": 100, "currency": code, "card": "4242424242424242"})


def main_loop():
    overflow_currencies()
    conn = [None]
    i = 0
    run = os.getpid()
    while time.time() < DEADLINE and i < MAX_REQUESTS:
        i += 1
        user = f"user{i % 7}"
        auth = {"authorization": bearer(user), "x-api-key": f"k_e2e_{i % 3}.not-a-real-secret"}
        request(conn, "GET", "/health")
        st, body = request(conn, "POST", "/users",
                           {"email": f"e2e-{run}-{i}@example.com", "password": "hunter2"}, auth)
        uid = None
        if st == 201:
            try:
                uid = json.loads(body)["id"]
            except (ValueError, KeyError):
                pass
        if uid:
            request(conn, "GET", f"/users/{uid}", headers=auth)   # miss, from the database
            request(conn, "GET", f"/users/{uid}", headers=auth)   # hit, from the cache
            request(conn, "GET", f"/users/{uid}",                 # admin action
                    headers={"authorization": bearer("admin-support")})
        request(conn, "GET", "/users/999999999", headers=auth)    # 404
        request(conn, "POST", "/matches", {"user_id": user, "other_id": f"user{(i + 3) % 7}"}, auth)
        request(conn, "POST", "/messages", {"match_id": str(i), "text": f"hello {i}"}, auth)
        request(conn, "POST", "/payments",
                {"amount_minor": 999, "currency": "eur", "card": "4242424242424242"}, auth)
        request(conn, "POST", "/payments",
                {"amount_minor": 1999, "currency": "usd", "card": "4000000000000002"}, auth)
        request(conn, "GET", "/error", headers=auth)
        request(conn, "GET", "/users/1", headers={"authorization": "Basic bm90LWJlYXJlcg=="})  # auth failure
        time.sleep(0.02)


def probe_loop():
    conn = [None]
    while time.time() < DEADLINE:
        request(conn, "GET", "/health/live")
        request(conn, "GET", "/health/ready")
        time.sleep(0.5)


def slow_loop():
    conn = [None]
    n = 0
    while time.time() < DEADLINE - 1.5 and n < 200:
        n += 1
        ms = random.choice([50, 150, 250, 400, 600, 800, 1200])
        request(conn, "GET", f"/slow?ms={ms}")


# ------------------------------------------------------------ WebSocket (RFC 6455)
class WS:
    def __init__(self):
        self.s = socket.create_connection((HOST, PORT), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET /ws/chat HTTP/1.1\r\nHost: {HOST}:{PORT}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        f"Sec-WebSocket-Version: 13\r\nAuthorization: {bearer('ws-user')}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(1024)
            if not chunk:
                raise OSError("closed during handshake")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise OSError(f"handshake failed: {status!r}")
        self.buf = head.split(b"\r\n\r\n", 1)[1]

    def send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            hdr = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.s.sendall(hdr + mask + masked)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(4096)
            if not chunk:
                raise OSError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        b1, b2 = self._read(2)
        n = b2 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        if b2 & 0x80:
            mask = self._read(4)
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read(n)))
        else:
            data = self._read(n)
        return b1 & 0x0F, data

    def echo(self, text):
        self.send(0x1, text.encode())
        while True:
            op, data = self.recv()
            if op in (0x1, 0x2):
                return data.decode(errors="replace")
            if op == 0x8:
                raise OSError("server closed")

    def close(self):
        try:
            self.send(0x8, struct.pack("!H", 1000))
            self.s.settimeout(2)
            while True:
                op, _ = self.recv()
                if op == 0x8:
                    break
        except OSError:
            pass
        self.s.close()


def ws_long():
    try:
        ws = WS()
        note("WS open")
        n = 0
        while time.time() < DEADLINE and n < 2000:
            n += 1
            if ws.echo(f"long {n}") == f"long {n}":
                note("WS echo")
            time.sleep(0.1)
        ws.close()
    except OSError as e:
        with lock:
            errors.append(f"ws-long: {e!r}")
        note("WS error")


def ws_short():
    n = 0
    while time.time() < DEADLINE and n < 100:
        n += 1
        try:
            ws = WS()
            note("WS open")
            for k in range(5):
                if ws.echo(f"short {n}.{k}") == f"short {n}.{k}":
                    note("WS echo")
            time.sleep(random.uniform(0.1, 1.0))
            ws.close()
            note("WS close")
        except OSError as e:
            with lock:
                errors.append(f"ws-short: {e!r}")
            note("WS error")
        time.sleep(0.3)


def main():
    threads = [threading.Thread(target=f, name=f.__name__, daemon=True)
               for f in (main_loop, slow_loop, ws_long, ws_short, probe_loop)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECONDS + 30)
    for k in sorted(stats):
        print(f"  {k}: {stats[k]}")
    for e in errors[:10]:
        print(f"  error: {e}")
    want = ["GET /health 200", "POST /users 201", "GET /users/{id} 200", "GET /users/{id} 404",
            "POST /matches 201", "POST /messages 201", "POST /payments 201", "POST /payments 402",
            "GET /slow 200", "GET /error 500", "WS echo", "WS close",
            "GET /health/live 200", "GET /health/ready 200"]
    missing = [w for w in want if not stats.get(w)]
    if missing:
        print(f"load: never saw {missing}")
    print("load: done", flush=True)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
