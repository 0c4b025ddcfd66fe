"""An independent OTLP/HTTP receiver for glimpse_obs, built on the
OpenTelemetry Python protobufs (see tests/otlp_all_signals.rs).

Serves POST /v1/traces, /v1/metrics and /v1/logs on 127.0.0.1:<free port>,
decodes each body (gzip when Content-Encoding says so) with the Python
`opentelemetry-proto` classes, and appends one JSON object per request to
<out>: {"signal": ..., "headers": {...}, "body": <MessageToDict of the
request, field names as in the proto (snake_case), int64 as strings, trace
and span IDs as lowercase hex>}.
A body the Python classes cannot decode is answered 400 and recorded as
{"signal": ..., "error": ...}, so the Rust test sees what went wrong.

Prints "listening <port>" on stdout once ready; runs until killed.

Usage: python otlp_peer.py <out.jsonl>
"""

import base64
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

SIGNALS = {
    "/v1/traces": ("traces", ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": ("metrics", ExportMetricsServiceRequest, ExportMetricsServiceResponse),
    "/v1/logs": ("logs", ExportLogsServiceRequest, ExportLogsServiceResponse),
}

ID_KEYS = {"trace_id", "span_id", "parent_span_id"}


def hex_ids(value):
    """MessageToDict writes bytes as base64: IDs become lowercase hex, as
    W3C Trace Context and the JSON log lines write them."""
    if isinstance(value, dict):
        return {
            k: base64.b64decode(v).hex() if k in ID_KEYS and isinstance(v, str) else hex_ids(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [hex_ids(v) for v in value]
    return value


lock = threading.Lock()
out = open(sys.argv[1], "a", encoding="utf-8")


def record(obj):
    with lock:
        out.write(json.dumps(obj) + "\n")
        out.flush()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        entry = SIGNALS.get(self.path)
        if entry is None:
            self.send_response(404)
            self.end_headers()
            return
        signal, request_cls, response_cls = entry
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            if headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            message = request_cls()
            message.ParseFromString(body)
        except Exception as e:  # noqa: BLE001 - reported to the test
            record({"signal": signal, "headers": headers, "error": repr(e)})
            self.send_response(400)
            self.end_headers()
            return
        record(
            {
                "signal": signal,
                "headers": headers,
                "body": hex_ids(MessageToDict(message, preserving_proto_field_name=True)),
            }
        )
        reply = response_cls().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
print("listening", server.server_address[1], flush=True)
server.serve_forever()
