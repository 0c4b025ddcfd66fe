"""An independent W3C Trace Context / Baggage peer for glimpse_obs, built on the
OpenTelemetry Python SDK (see tests/trace_python_peer.rs).

1. Serves GET /downstream on 127.0.0.1:<free port>; each request's headers are
   read with the Python SDK's own propagators (tracecontext + baggage).
2. Starts a CLIENT span "python-client" (resource service.name=python-peer)
   whose remote parent carries tracestate "peer=1", sets baggage tenant=acme,
   injects the headers with the Python propagators and calls
   <service>/relay?to=<downstream URL>: the Rust service continues the trace
   and calls back /downstream through glimpse_obs::propagation::inject.
3. Exports its span to <otlp>/v1/traces over OTLP/HTTP protobuf, then prints
   one JSON object with what it sent and what it saw downstream.

Usage: python w3c_peer.py <service base URL> <OTLP HTTP base URL>
"""

import json
import secrets
import sys
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import baggage, context, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
seen = []


class Downstream(BaseHTTPRequestHandler):
    def do_GET(self):
        carrier = {k.lower(): v for k, v in self.headers.items()}
        ctx = PROPAGATOR.extract(carrier)
        sc = trace.get_current_span(ctx).get_span_context()
        seen.append({
            "valid": sc.is_valid,
            "trace_id": format(sc.trace_id, "032x"),
            "parent_span_id": format(sc.span_id, "016x"),
            "sampled": bool(sc.trace_flags & TraceFlags.SAMPLED),
            "tracestate": sc.trace_state.to_header(),
            "baggage": dict(baggage.get_all(ctx)),
            "request_id": self.headers.get("x-request-id"),
            "raw": carrier,
        })
        body = b"downstream ok"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    service, otlp = sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Downstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    downstream = "http://127.0.0.1:%d/downstream" % server.server_address[1]

    provider = TracerProvider(resource=Resource.create({"service.name": "python-peer"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp + "/v1/traces", timeout=5)))
    tracer = provider.get_tracer("w3c_peer")

    upstream = SpanContext(
        trace_id=int(secrets.token_hex(16), 16),
        span_id=int(secrets.token_hex(8), 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("peer", "1")]),
    )
    parent = trace.set_span_in_context(NonRecordingSpan(upstream))
    parent = baggage.set_baggage("tenant", "acme", context=parent)
    token = context.attach(parent)
    try:
        with tracer.start_as_current_span("python-client", kind=SpanKind.CLIENT) as span:
            headers = {}
            PROPAGATOR.inject(headers)
            url = service + "/relay?to=" + urllib.parse.quote(downstream, safe="")
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
                status = resp.status
                response_headers = {k.lower(): v for k, v in resp.headers.items()}
                body = resp.read().decode()
            sc = span.get_span_context()
            client = {"trace_id": format(sc.trace_id, "032x"), "span_id": format(sc.span_id, "016x")}
    finally:
        context.detach(token)
    provider.shutdown()
    server.shutdown()
    print(json.dumps({
        "client": client,
        "sent": headers,
        "status": status,
        "body": body,
        "response_headers": response_headers,
        "downstream": seen,
    }))


if __name__ == "__main__":
    main()
